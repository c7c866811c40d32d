#pragma once
#include <cstdint>
#include <string_view>

namespace dingo {

// FNV-1a, 64 bits: a fast, stable hash of bytes (not for anything an attacker chooses
// to collide with unless mixed further, as the dispatcher does).
inline uint64_t fnv1a64(std::string_view bytes) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : bytes) h = (h ^ c) * 0x100000001b3ULL;
  return h;
}

}  // namespace dingo
