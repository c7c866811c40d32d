// fuzz_cursor: CursorCodec::decode (core/Cursor.h), which reads the cursor a long-poll or
// SSE client sends back, and Position::parse (core/Hub.h), which reads `since`.
// The first byte picks a mode:
//   0: the rest is a token as a client sends it (the MAC stops almost all of these);
//   1: the rest is a cursor body that this target signs with the codec's MAC, so the
//      layout parser behind the MAC is fuzzed too (as with a leaked secret);
//   2: the rest is a position, parsed and printed back.
// Whatever decodes must encode to a token that decodes the same.
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <string>

#include "core/Cursor.h"
#include "tests/fuzz/FuzzCheck.h"

namespace {

constexpr std::string_view kSecret = "fuzz cursor secret";
constexpr size_t kMacBytes = 12;  // the codec's truncated HMAC-SHA256 (core/Cursor.h)

std::string base64url(std::string_view in) {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (unsigned char c : in) {
    acc = (acc << 8) | c;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out += kAlphabet[(acc >> bits) & 63];
    }
  }
  if (bits > 0) out += kAlphabet[(acc << (6 - bits)) & 63];
  return out;
}

// A token for `body` as the codec would sign it.
std::string sign(std::string_view body) {
  unsigned char tag[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), kSecret.data(), static_cast<int>(kSecret.size()),
       reinterpret_cast<const unsigned char*>(body.data()), body.size(), tag, &len);
  std::string raw(body);
  raw.append(reinterpret_cast<const char*>(tag), kMacBytes);
  return base64url(raw);
}

const dingo::CursorCodec& codec() {
  static dingo::CursorCodec c{kSecret};
  return c;
}

}  // namespace

// Mode 1 is only worth running while sign() matches the codec: check that once, so a
// change to the cursor's MAC or encoding fails here instead of quietly fuzzing nothing.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  dingo::Cursor c;
  c.session = 42;
  c.positions.push_back({"/a", dingo::Position{"e1", 7}});
  std::string token = codec().encode(c);
  // Undo base64url and drop the MAC: the body the codec signed.
  std::string raw;
  uint32_t acc = 0;
  int bits = 0;
  for (char ch : token) {
    std::string_view alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    acc = (acc << 6) | static_cast<uint32_t>(alphabet.find(ch));
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      raw += static_cast<char>((acc >> bits) & 0xFF);
    }
  }
  FUZZ_CHECK(raw.size() > kMacBytes);
  if (sign(std::string_view(raw).substr(0, raw.size() - kMacBytes)) != token) {
    std::fprintf(stderr, "fuzz_cursor: sign() no longer matches CursorCodec::encode; update it\n");
    std::abort();
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  std::string_view rest = dingo::fuzz::text(data + 1, size - 1);
  switch (data[0] % 3) {
    case 0:
    case 1: {
      std::string token = data[0] % 3 == 0 ? std::string(rest) : sign(rest);
      auto c = codec().decode(token);
      if (!c) return 0;
      for (const auto& [name, pos] : c->positions) {
        FUZZ_CHECK(dingo::validChannel(name));
        FUZZ_CHECK(dingo::Position::parse(pos.toString()) == pos);
      }
      // Encoded again, it decodes to the same cursor; a token in the current version
      // comes back byte for byte (older versions are read, and written as the current).
      std::string again = codec().encode(*c);
      auto d = codec().decode(again);
      FUZZ_CHECK(d && d->session == c->session && d->positions == c->positions);
      if (codec().encode(*d) != again) FUZZ_CHECK(!"encode is not stable");
      break;
    }
    case 2: {
      auto p = dingo::Position::parse(rest);
      if (p) FUZZ_CHECK(dingo::Position::parse(p->toString()) == p);
      break;
    }
  }
  return 0;
}
