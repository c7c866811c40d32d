#pragma once
// RFC 6455 framing for the server side: a parser for client frames (masked) and
// builders for server frames (unmasked). No I/O here: the gateway feeds bytes in and
// writes the built frames out, and unit tests drive both with plain strings.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

namespace dingo::ws {

enum class Opcode : uint8_t { Continuation = 0, Text = 1, Binary = 2, Close = 8, Ping = 9, Pong = 10 };

// Close codes (RFC 6455 section 7.4.1).
constexpr uint16_t kNormal = 1000;
constexpr uint16_t kGoingAway = 1001;
constexpr uint16_t kProtocolError = 1002;
constexpr uint16_t kUnsupportedData = 1003;
constexpr uint16_t kNoStatus = 1005;  // never sent: "the close frame had no code"
constexpr uint16_t kInvalidPayload = 1007;
constexpr uint16_t kPolicyViolation = 1008;
constexpr uint16_t kTooBig = 1009;
constexpr uint16_t kInternalError = 1011;
constexpr uint16_t kServiceRestart = 1012;
// Ours, in the range for applications (docs/auth.md).
constexpr uint16_t kUnauthorized = 4001;  // no valid token: get one and come back
constexpr uint16_t kDisconnected = 4003;  // an operator put the user out: do not come back by yourself

// True for the codes a peer may put in a close frame: 1000-1003, 1007-1011 (and the
// registered 1012-1014), 3000-4999. 1004, 1005, 1006, 1015 and everything else are not.
bool validCloseCode(uint16_t code);

// The header of a server frame (FIN set, no mask) for a payload of `payload_len` bytes.
void appendFrameHeader(std::string& out, Opcode op, size_t payload_len);
// A whole server frame: header and payload in one string.
std::string frame(Opcode op, std::string_view payload);
// A close frame with a code and a reason (truncated so the payload stays <= 125 bytes).
std::string closeFrame(uint16_t code, std::string_view reason = {});

// The Sec-WebSocket-Accept value for a client's Sec-WebSocket-Key.
std::string acceptKey(std::string_view client_key);

// True when `key` is a valid Sec-WebSocket-Key (RFC 6455 4.1, 4.2.1): the base64 of
// exactly 16 bytes, so 22 characters of the base64 alphabet, the last of them carrying no
// stray bits, then "==".
bool validClientKey(std::string_view key);

// At most this many frames (the first and its continuations; control frames between
// them do not count) make one message. Beyond it the connection closes with 1009: an
// endless run of empty fragments is otherwise cheap to send and costs us a loop per
// frame, and no size limit ever sees it. Clients that fragment at all use a few frames
// per message; even 1-byte fragments of a 4 KB message stay within it.
constexpr size_t kMaxFramesPerMessage = 4096;

// Incremental UTF-8 validation (RFC 3629: no overlongs, no surrogates, <= U+10FFFF),
// across chunk boundaries: a code point may be split between two feed() calls.
class Utf8Validator {
 public:
  // False as soon as the bytes so far cannot be the start of valid UTF-8.
  bool feed(std::string_view bytes);
  // True when no code point is left half-finished.
  bool complete() const { return need_ == 0; }
  void reset() { need_ = 0; lower_ = 0x80; upper_ = 0xBF; }

 private:
  int need_ = 0;           // continuation bytes still expected
  uint8_t lower_ = 0x80;   // bounds for the next continuation byte
  uint8_t upper_ = 0xBF;
};

// One thing a client sent, as the parser reports it.
struct Event {
  enum class Kind { Text, Binary, Ping, Pong, Close, Error };
  Kind kind;
  // Text/Binary: the whole (reassembled) message. Ping/Pong: the application data.
  // Close: the reason. Error: what was wrong, when more than the code says (else empty).
  // Valid only during the callback.
  std::string_view payload;
  // Close: the peer's code (kNoStatus when its frame had none).
  // Error: the close code to answer with (1002, 1007 or 1009).
  uint16_t code = 0;
};

// Parses client-to-server frames incrementally. Feed it bytes as they arrive, in any
// chunking; it reassembles fragmented messages (control frames may come between the
// fragments) and reports each message and control frame once complete.
// Protocol errors are reported once as Kind::Error with the close code to send, after
// which the parser ignores further input:
// - 1002: unmasked frame, RSV bits set, unknown opcode, control frame fragmented or
//   longer than 125 bytes, continuation with no message started, a new data frame
//   while a fragmented one is unfinished, a close payload of 1 byte, a close code not
//   allowed on the wire, a 64-bit length with the top bit set.
// - 1007: a text message or close reason that is not valid UTF-8 (detected as early as
//   possible, before the message is complete).
// - 1009: a message whose total length would exceed max_message (detected from the
//   frame header, before the payload arrives), or one of more than max_frames frames
//   (kMaxFramesPerMessage unless set; empty fragments count too).
// The Error event's payload says which rule was broken, in words for the close reason.
// Memory: only a partial frame header (<= 14 bytes) and the message being assembled are
// kept; the message buffer is released after each message larger than 4 KB, so an idle
// connection holds no heap memory.
class Parser {
 public:
  using Callback = std::function<void(const Event&)>;
  explicit Parser(size_t max_message, size_t max_frames = kMaxFramesPerMessage)
      : max_message_(max_message), max_frames_(max_frames) {}

  // Consumes all of `data`, calling `on_event` for each complete message or control
  // frame, in order. Returns false once an error was reported (now or before).
  bool feed(std::string_view data, const Callback& on_event);
  bool failed() const { return failed_; }
  // Bytes held for a message or frame not yet complete.
  size_t buffered() const { return message_.size() + control_.size() + header_len_; }

 private:
  bool fail(const Callback& on_event, uint16_t code, std::string_view why = {});
  bool startFrame(const Callback& on_event);  // header complete: validate it
  bool finishFrame(const Callback& on_event);

  size_t max_message_;
  size_t max_frames_;
  bool failed_ = false;
  // The frame header being read.
  uint8_t header_[14] = {};
  size_t header_len_ = 0;
  // The frame being read.
  bool in_payload_ = false;
  bool fin_ = false;
  Opcode opcode_ = Opcode::Continuation;
  uint64_t remaining_ = 0;  // payload bytes still to come
  uint8_t mask_[4] = {};
  uint64_t mask_pos_ = 0;
  // The data message being assembled (across fragments).
  bool in_message_ = false;
  bool message_text_ = false;
  size_t message_frames_ = 0;  // frames of the message so far
  std::string message_;
  Utf8Validator utf8_;
  // The control frame being read (<= 125 bytes).
  std::string control_;
};

}  // namespace dingo::ws
