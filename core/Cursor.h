#pragma once
// Long-poll and SSE cursors: every channel's position in one opaque, URL-safe token,
// so that any worker, after any restart, can resume a client from it.
//
// Layout before encoding: version (1), session id (8), channel count (2, little-endian;
// version 1 had 1 byte and is still read), then per channel: name length (1), name,
// epoch length (1), epoch, seq (8), and finally the first 12 bytes of an HMAC-SHA256 of
// everything before it. Encoded as base64url without padding. The MAC makes a cursor that was edited or made up a bad_request;
// its key is `[gateway] cursor_secret` (a built-in key when unset: then the MAC only
// catches corruption, which is all a cursor needs, since it grants nothing that
// /v1/history does not).
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/Hub.h"

struct evp_mac_ctx_st;  // OpenSSL's EVP_MAC_CTX

namespace dingo {

struct Cursor {
  uint64_t session = 0;  // the session cache entry that served it last
  std::vector<std::pair<std::string, Position>> positions;  // channel -> position

  const Position* find(std::string_view channel) const;
};

// A fresh random session id for a cursor.
uint64_t newCursorSession();

class CursorCodec {
 public:
  // Every channel a client may name (kMaxChannelsPerClient in core/Config.h).
  static constexpr size_t kMaxChannels = 65535;
  // The longest cursor text decode() reads: 65535 channels with short names, more
  // than any request head may hold (kMaxHeaderBytes).
  static constexpr size_t kMaxText = 4 * 1024 * 1024;
  explicit CursorCodec(std::string_view secret);
  ~CursorCodec();
  CursorCodec(const CursorCodec&) = delete;
  CursorCodec& operator=(const CursorCodec&) = delete;

  // Throws std::length_error for more than kMaxChannels channels: callers refuse such
  // requests before they get here, and a cursor must never silently drop one.
  std::string encode(const Cursor& c) const;
  // The length of encode()'s text for these channels when every epoch is `epoch_size`
  // characters: lets a request be refused before its cursor would outgrow the request
  // head the client must send it back in.
  static size_t encodedSize(const std::vector<std::string>& channels, size_t epoch_size);
  // nullopt when malformed, or when the MAC does not match.
  std::optional<Cursor> decode(std::string_view text) const;

 private:
  // HMAC-SHA256 keyed once; each use works on a copy (OpenSSL 3's one-shot HMAC()
  // fetches the algorithm on every call, which costs more than the MAC itself).
  void mac(std::string_view data, unsigned char out[32]) const;
  std::string key_;
  ::evp_mac_ctx_st* keyed_ = nullptr;
};

}  // namespace dingo
