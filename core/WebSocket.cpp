#include "core/WebSocket.h"

#include <openssl/evp.h>

#include <algorithm>
#include <cstring>

namespace dingo::ws {

bool validCloseCode(uint16_t code) {
  if (code >= 3000 && code <= 4999) return true;
  switch (code) {
    case 1000: case 1001: case 1002: case 1003:
    case 1007: case 1008: case 1009: case 1010: case 1011:
    case 1012: case 1013: case 1014:
      return true;
  }
  return false;
}

void appendFrameHeader(std::string& out, Opcode op, size_t payload_len) {
  out.push_back(static_cast<char>(0x80 | static_cast<uint8_t>(op)));
  if (payload_len < 126) {
    out.push_back(static_cast<char>(payload_len));
  } else if (payload_len < 65536) {
    out.push_back(static_cast<char>(126));
    out.push_back(static_cast<char>(payload_len >> 8));
    out.push_back(static_cast<char>(payload_len));
  } else {
    out.push_back(static_cast<char>(127));
    for (int i = 7; i >= 0; --i) out.push_back(static_cast<char>(static_cast<uint64_t>(payload_len) >> (8 * i)));
  }
}

std::string frame(Opcode op, std::string_view payload) {
  std::string out;
  out.reserve(payload.size() + 10);
  appendFrameHeader(out, op, payload.size());
  out.append(payload);
  return out;
}

std::string closeFrame(uint16_t code, std::string_view reason) {
  // At most 123 bytes of reason, cut before a UTF-8 continuation byte.
  if (reason.size() > 123) {
    size_t n = 123;
    while (n > 0 && (static_cast<uint8_t>(reason[n]) & 0xC0) == 0x80) --n;
    reason = reason.substr(0, n);
  }
  std::string payload;
  payload.push_back(static_cast<char>(code >> 8));
  payload.push_back(static_cast<char>(code));
  payload.append(reason);
  return frame(Opcode::Close, payload);
}

std::string acceptKey(std::string_view client_key) {
  static constexpr std::string_view kGuid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  std::string input(client_key);
  input.append(kGuid);
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(input.data(), input.size(), digest, &len, EVP_sha1(), nullptr) != 1) return {};
  unsigned char b64[64];
  int n = EVP_EncodeBlock(b64, digest, static_cast<int>(len));
  return std::string(reinterpret_cast<char*>(b64), static_cast<size_t>(n));
}

bool validClientKey(std::string_view key) {
  // 16 bytes are 128 bits: 21 characters of 6 bits and one of 2 bits (its low 4 bits zero).
  static constexpr size_t kKeyLength = 24;
  static constexpr std::string_view kLastDataChars = "AQgw";
  if (key.size() != kKeyLength || key.substr(22) != "==") return false;
  auto isBase64 = [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/';
  };
  for (size_t i = 0; i < 21; ++i)
    if (!isBase64(key[i])) return false;
  return kLastDataChars.find(key[21]) != std::string_view::npos;
}

// ---- UTF-8 ------------------------------------------------------------------------------

bool Utf8Validator::feed(std::string_view bytes) {
  const auto* p = reinterpret_cast<const uint8_t*>(bytes.data());
  const uint8_t* end = p + bytes.size();
  while (p < end) {
    if (need_ == 0) {
      // ASCII fast path, eight bytes at a time.
      while (end - p >= 8) {
        uint64_t word;
        std::memcpy(&word, p, 8);
        if (word & 0x8080808080808080ULL) break;
        p += 8;
      }
      if (p == end) break;
      uint8_t c = *p++;
      if (c < 0x80) continue;
      lower_ = 0x80;
      upper_ = 0xBF;
      if (c >= 0xC2 && c <= 0xDF) {
        need_ = 1;
      } else if (c >= 0xE0 && c <= 0xEF) {
        need_ = 2;
        if (c == 0xE0) lower_ = 0xA0;       // no overlongs
        else if (c == 0xED) upper_ = 0x9F;  // no surrogates
      } else if (c >= 0xF0 && c <= 0xF4) {
        need_ = 3;
        if (c == 0xF0) lower_ = 0x90;       // no overlongs
        else if (c == 0xF4) upper_ = 0x8F;  // <= U+10FFFF
      } else {
        return false;  // 80..C1, F5..FF
      }
    } else {
      uint8_t c = *p++;
      if (c < lower_ || c > upper_) return false;
      lower_ = 0x80;
      upper_ = 0xBF;
      --need_;
    }
  }
  return true;
}

// ---- Parser -------------------------------------------------------------------------------

namespace {

bool isControl(Opcode op) { return op == Opcode::Close || op == Opcode::Ping || op == Opcode::Pong; }

// out[i] = in[i] ^ mask[(pos + i) % 4], eight bytes at a time. `out` may equal `in`.
void unmask(char* out, const char* in, size_t n, const uint8_t mask[4], uint64_t pos) {
  uint8_t rotated[8];
  for (size_t i = 0; i < 8; ++i) rotated[i] = mask[(pos + i) & 3];
  uint64_t word_mask;
  std::memcpy(&word_mask, rotated, 8);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t word;
    std::memcpy(&word, in + i, 8);
    word ^= word_mask;
    std::memcpy(out + i, &word, 8);
  }
  for (; i < n; ++i) out[i] = static_cast<char>(static_cast<uint8_t>(in[i]) ^ rotated[i & 7]);
}

// Frees a string's heap buffer, if it has one.
void release(std::string& s) {
  if (s.capacity() > std::string().capacity()) std::string().swap(s);
  else s.clear();
}

}  // namespace

bool Parser::fail(const Callback& on_event, uint16_t code, std::string_view why) {
  failed_ = true;
  in_payload_ = false;
  in_message_ = false;
  header_len_ = 0;
  std::string().swap(message_);
  std::string().swap(control_);
  Event e{Event::Kind::Error, why, code};
  on_event(e);
  return false;
}

// The header is complete: check it and get ready for the payload.
bool Parser::startFrame(const Callback& on_event) {
  const uint8_t b0 = header_[0], b1 = header_[1];
  header_len_ = 0;  // everything needed is copied out below
  if (b0 & 0x70) return fail(on_event, kProtocolError);    // RSV bits: no extension agreed
  if (!(b1 & 0x80)) return fail(on_event, kProtocolError);  // clients must mask
  fin_ = (b0 & 0x80) != 0;
  const uint8_t op = b0 & 0x0F;
  const uint8_t len7 = b1 & 0x7F;
  const size_t len_bytes = len7 == 126 ? 2 : len7 == 127 ? 8 : 0;
  uint64_t len = len7;
  if (len_bytes) {
    len = 0;
    for (size_t i = 0; i < len_bytes; ++i) len = (len << 8) | header_[2 + i];
    if (len >> 63) return fail(on_event, kProtocolError);
  }
  std::memcpy(mask_, header_ + 2 + len_bytes, 4);
  mask_pos_ = 0;
  remaining_ = len;
  switch (op) {
    case 0x0:  // continuation
      if (!in_message_) return fail(on_event, kProtocolError);
      if (++message_frames_ > max_frames_) return fail(on_event, kTooBig, "too many frames in one message");
      opcode_ = Opcode::Continuation;
      break;
    case 0x1:
    case 0x2:
      if (in_message_) return fail(on_event, kProtocolError);  // the previous one is unfinished
      opcode_ = static_cast<Opcode>(op);
      in_message_ = true;
      message_frames_ = 1;
      message_text_ = op == 0x1;
      utf8_.reset();
      break;
    case 0x8:
    case 0x9:
    case 0xA:
      if (!fin_ || len > 125) return fail(on_event, kProtocolError);
      opcode_ = static_cast<Opcode>(op);
      control_.clear();
      break;
    default:
      return fail(on_event, kProtocolError);
  }
  // No reserve() for the declared length: a client announcing a large frame and then
  // sending nothing must not make us hold max_message bytes.
  if (!isControl(opcode_) && len > max_message_ - message_.size()) return fail(on_event, kTooBig);
  in_payload_ = true;
  return true;
}

bool Parser::finishFrame(const Callback& on_event) {
  in_payload_ = false;
  header_len_ = 0;
  switch (opcode_) {
    case Opcode::Ping:
    case Opcode::Pong: {
      Event e{opcode_ == Opcode::Ping ? Event::Kind::Ping : Event::Kind::Pong, control_, 0};
      on_event(e);
      release(control_);
      return true;
    }
    case Opcode::Close: {
      if (control_.size() == 1) return fail(on_event, kProtocolError);
      uint16_t code = kNoStatus;
      std::string_view reason;
      if (control_.size() >= 2) {
        code = static_cast<uint16_t>((static_cast<uint8_t>(control_[0]) << 8) | static_cast<uint8_t>(control_[1]));
        if (!validCloseCode(code)) return fail(on_event, kProtocolError);
        reason = std::string_view(control_).substr(2);
        Utf8Validator v;
        if (!v.feed(reason) || !v.complete()) return fail(on_event, kInvalidPayload);
      }
      Event e{Event::Kind::Close, reason, code};
      on_event(e);
      release(control_);
      return true;
    }
    default:
      break;
  }
  if (!fin_) return true;  // more fragments to come
  if (message_text_ && !utf8_.complete()) return fail(on_event, kInvalidPayload);
  in_message_ = false;
  Event e{message_text_ ? Event::Kind::Text : Event::Kind::Binary, message_, 0};
  on_event(e);
  if (message_.capacity() > 4096) std::string().swap(message_);
  else message_.clear();
  return true;
}

bool Parser::feed(std::string_view data, const Callback& on_event) {
  while (!failed_) {
    if (!in_payload_) {
      if (data.empty()) break;
      // Header: 2 bytes, then the extended length and the mask key.
      while (header_len_ < 2 && !data.empty()) {
        header_[header_len_++] = static_cast<uint8_t>(data[0]);
        data.remove_prefix(1);
      }
      if (header_len_ < 2) break;
      if (!(header_[1] & 0x80)) return fail(on_event, kProtocolError);  // unmasked: fail without waiting
      const uint8_t len7 = header_[1] & 0x7F;
      const size_t need = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + 4;
      const size_t take = std::min(need - header_len_, data.size());
      std::memcpy(header_ + header_len_, data.data(), take);
      header_len_ += take;
      data.remove_prefix(take);
      if (header_len_ < need) break;
      if (!startFrame(on_event)) return false;
      if (remaining_ == 0 && !finishFrame(on_event)) return false;
      continue;
    }
    if (data.empty()) break;
    const size_t n = static_cast<size_t>(std::min<uint64_t>(remaining_, data.size()));
    const bool control = isControl(opcode_);
    std::string& dest = control ? control_ : message_;
    const size_t at = dest.size();
    dest.resize(at + n);
    char* out = dest.data() + at;
    unmask(out, data.data(), n, mask_, mask_pos_);
    mask_pos_ += n;
    remaining_ -= n;
    data.remove_prefix(n);
    // Text is checked as it arrives, so bad UTF-8 fails before the message is complete.
    if (!control && message_text_ && !utf8_.feed(std::string_view(out, n))) return fail(on_event, kInvalidPayload);
    if (remaining_ == 0 && !finishFrame(on_event)) return false;
  }
  return !failed_;
}

}  // namespace dingo::ws
