#pragma once
// Per-source limits of one worker: open connections and new connections per second
// from one client address ([gateway] max_connections_per_ip, new_connections_per_ip).
// An IPv4 address counts alone; an IPv6 address counts with its /64, which is what one
// subscriber is usually given. Counted per worker: with `dispatch = "ip-hash"` every
// connection of an address reaches the same worker, so the limits hold for the whole
// box; with the other policies an address may have up to `workers` times as many.
//
// The table is bounded: addresses with no open connection and a full token bucket are
// forgotten by sweep(), and past kMaxTracked addresses new ones are admitted untracked
// rather than let the table grow (counted, so an operator sees it).
#include <array>
#include <cstdint>
#include <unordered_map>

#include <sys/socket.h>

namespace dingo {

class PeerLimits {
 public:
  enum class Verdict { Admitted, TooManyOpen, TooFast };
  static constexpr size_t kMaxTracked = 200000;

  // 0 turns a limit off.
  PeerLimits(uint32_t max_open, uint32_t per_second) : max_open_(max_open), per_second_(per_second) {}

  bool enabled() const { return max_open_ > 0 || per_second_ > 0; }
  // A new connection from `peer`. When admitted with `counted` set, call release()
  // with the same address once it closes.
  Verdict admit(const sockaddr_storage& peer, int64_t now_ms, bool& counted);
  void release(const sockaddr_storage& peer);
  // Forgets addresses that have nothing open and nothing to remember. About once a second.
  void sweep(int64_t now_ms);

  size_t tracked() const { return table_.size(); }
  uint64_t untracked = 0;  // admitted without a table entry (the table was full)

 private:
  using Key = std::array<uint8_t, 9>;  // family, then 4 (IPv4) or 8 (IPv6 /64) bytes
  struct KeyHash {
    size_t operator()(const Key& k) const;
  };
  struct Entry {
    uint32_t open = 0;
    double tokens = 0;
    int64_t refilled_ms = 0;
  };
  static bool keyOf(const sockaddr_storage& peer, Key& key);
  void refill(Entry& e, int64_t now_ms) const;

  uint32_t max_open_;
  uint32_t per_second_;
  std::unordered_map<Key, Entry, KeyHash> table_;
};

}  // namespace dingo
