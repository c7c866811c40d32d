#include "core/Cursor.h"

#include <cstring>
#include <random>
#include <stdexcept>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/core_names.h>
#include <openssl/params.h>

namespace dingo {

namespace {

constexpr uint8_t kVersion = 2;     // 16-bit channel count
constexpr uint8_t kVersionOne = 1;  // 8-bit channel count: read, never written
constexpr size_t kMacBytes = 12;
constexpr std::string_view kBuiltinKey = "dingo cursor integrity key, v1";
constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

std::string base64url(std::string_view in) {
  std::string out;
  out.reserve((in.size() * 4 + 2) / 3);
  size_t i = 0;
  auto byte = [&](size_t k) { return static_cast<uint32_t>(static_cast<uint8_t>(in[k])); };
  for (; i + 3 <= in.size(); i += 3) {
    uint32_t v = (byte(i) << 16) | (byte(i + 1) << 8) | byte(i + 2);
    for (int s = 18; s >= 0; s -= 6) out += kAlphabet[(v >> s) & 63];
  }
  if (size_t rest = in.size() - i) {
    uint32_t v = byte(i) << 16;
    if (rest == 2) v |= byte(i + 1) << 8;
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    if (rest == 2) out += kAlphabet[(v >> 6) & 63];
  }
  return out;
}

std::optional<std::string> unbase64url(std::string_view in) {
  if (in.size() % 4 == 1) return std::nullopt;
  std::string out;
  out.reserve(in.size() * 3 / 4);
  uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    int v;
    if (c >= 'A' && c <= 'Z') v = c - 'A';
    else if (c >= 'a' && c <= 'z') v = c - 'a' + 26;
    else if (c >= '0' && c <= '9') v = c - '0' + 52;
    else if (c == '-') v = 62;
    else if (c == '_') v = 63;
    else return std::nullopt;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xFF);
    }
  }
  return out;
}

void putU64(std::string& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out += static_cast<char>(v >> (8 * i));
}

}  // namespace

uint64_t newCursorSession() {
  static std::mt19937_64 rng{std::random_device{}()};
  return rng();
}

const Position* Cursor::find(std::string_view channel) const {
  for (const auto& [name, pos] : positions)
    if (name == channel) return &pos;
  return nullptr;
}

CursorCodec::CursorCodec(std::string_view secret) : key_(secret.empty() ? kBuiltinKey : secret) {
  EVP_MAC* hmac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
  keyed_ = hmac ? EVP_MAC_CTX_new(hmac) : nullptr;
  EVP_MAC_free(hmac);
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0), OSSL_PARAM_construct_end()};
  if (!keyed_ || EVP_MAC_init(keyed_, reinterpret_cast<const unsigned char*>(key_.data()), key_.size(), params) != 1)
    throw std::runtime_error("cannot set up HMAC-SHA256 for cursors");
}

CursorCodec::~CursorCodec() { EVP_MAC_CTX_free(keyed_); }

void CursorCodec::mac(std::string_view data, unsigned char out[32]) const {
  EVP_MAC_CTX* c = EVP_MAC_CTX_dup(keyed_);
  size_t len = 0;
  bool ok = c && EVP_MAC_update(c, reinterpret_cast<const unsigned char*>(data.data()), data.size()) == 1 &&
            EVP_MAC_final(c, out, &len, 32) == 1;
  EVP_MAC_CTX_free(c);
  if (!ok) std::memset(out, 0, 32);  // never matches a real MAC... and never happens
}

std::string CursorCodec::encode(const Cursor& c) const {
  std::string raw;
  size_t n = c.positions.size();
  if (n > kMaxChannels) throw std::length_error("a cursor carries at most 65535 channels");
  raw += static_cast<char>(kVersion);
  putU64(raw, c.session);
  raw += static_cast<char>(n & 0xFF);
  raw += static_cast<char>(n >> 8);
  for (size_t i = 0; i < n; ++i) {
    const auto& [name, pos] = c.positions[i];
    raw += static_cast<char>(std::min<size_t>(name.size(), 255));
    raw.append(name, 0, 255);
    raw += static_cast<char>(std::min<size_t>(pos.epoch.size(), 255));
    raw.append(pos.epoch, 0, 255);
    putU64(raw, pos.seq);
  }
  unsigned char tag[32];
  mac(raw, tag);
  raw.append(reinterpret_cast<const char*>(tag), kMacBytes);
  return base64url(raw);
}

size_t CursorCodec::encodedSize(const std::vector<std::string>& channels, size_t epoch_size) {
  size_t raw = 1 + 8 + 2 + kMacBytes;
  for (const auto& name : channels) raw += 1 + std::min<size_t>(name.size(), 255) + 1 + epoch_size + 8;
  return (raw * 4 + 2) / 3;  // base64url without padding
}

std::optional<Cursor> CursorCodec::decode(std::string_view text) const {
  if (text.empty() || text.size() > kMaxText) return std::nullopt;
  auto raw = unbase64url(text);
  if (!raw || raw->size() < 1 + 8 + 1 + kMacBytes) return std::nullopt;
  // Only the canonical spelling: the unused low bits of the last character are zero.
  if (base64url(*raw) != text) return std::nullopt;
  std::string_view body(raw->data(), raw->size() - kMacBytes);
  unsigned char tag[32];
  mac(body, tag);
  if (CRYPTO_memcmp(tag, raw->data() + body.size(), kMacBytes) != 0) return std::nullopt;

  size_t at = 0;
  auto u8 = [&](uint8_t& v) {
    if (at >= body.size()) return false;
    v = static_cast<uint8_t>(body[at++]);
    return true;
  };
  auto u64 = [&](uint64_t& v) {
    if (body.size() - at < 8) return false;
    v = 0;
    for (int i = 0; i < 8; ++i) v |= static_cast<uint64_t>(static_cast<uint8_t>(body[at + i])) << (8 * i);
    at += 8;
    return true;
  };
  auto str = [&](std::string& s) {
    uint8_t n = 0;
    if (!u8(n) || body.size() - at < n) return false;
    s.assign(body.substr(at, n));
    at += n;
    return true;
  };
  uint8_t version = 0, count_lo = 0, count_hi = 0;
  Cursor c;
  if (!u8(version) || (version != kVersion && version != kVersionOne) || !u64(c.session) || !u8(count_lo))
    return std::nullopt;
  if (version == kVersion && !u8(count_hi)) return std::nullopt;
  size_t count = count_lo | (size_t{count_hi} << 8);
  for (size_t i = 0; i < count; ++i) {
    std::string name;
    Position p;
    if (!str(name) || !str(p.epoch) || !u64(p.seq)) return std::nullopt;
    // A valid MAC over invalid content can only come from a leaked secret; still,
    // nothing malformed gets past here.
    if (!validChannel(name) || !Position::parse(p.toString())) return std::nullopt;
    c.positions.emplace_back(std::move(name), std::move(p));
  }
  if (at != body.size()) return std::nullopt;
  return c;
}

}  // namespace dingo
