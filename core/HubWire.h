#pragma once
// The hub protocol between a gateway worker and the supervisor's hub: length-prefixed
// binary frames over a SOCK_STREAM socketpair (one per worker, fd 4 of the worker).
// A stream, not SOCK_SEQPACKET like the control messages, because a history answer
// may be megabytes. The hub answers requests in order and sends a channel's messages
// in position order on the same stream, which is what makes recovery exact: the reply
// to a subscribe comes after every message it covers and before every one it doesn't.
//
// Frame: u32 length of what follows (little-endian), u8 type, then the type's fields.
// Integers are little-endian; a string is a u32 length and its bytes.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/Hub.h"

namespace dingo::hubwire {

constexpr size_t kMaxFrame = 256u << 20;

enum class Type : uint8_t {
  // worker -> hub
  Subscribe = 1,    // id, channel, since?
  Unsubscribe = 2,  // channel (no reply)
  Publish = 3,      // id, channel, data
  History = 4,      // id, channel, since?, limit
  Info = 5,         // id, channel
  // hub -> worker
  CatchupReply = 10,  // id, position, recovered, messages (answers Subscribe and History)
  PublishReply = 11,  // id, position
  InfoReply = 12,     // id, position, subscribers
  ErrorReply = 13,    // id, message
  Message = 14,       // channel, position, data
  Nodes = 15,         // data: the GET /v1/nodes document of every host (the Redis engine's
                      // node registry), sent when a link attaches and when the list changes
};

// A decoded frame. Views point into the buffer the frame was decoded from.
struct Frame {
  Type type{};
  uint64_t id = 0;
  std::string_view channel;
  std::optional<Position> since;
  uint32_t limit = 0;
  std::string_view data;  // Publish, Message, Nodes
  Position position;      // replies, Message
  bool recovered = false;
  uint64_t subscribers = 0;
  std::string_view error;
  std::vector<std::pair<uint64_t, std::string_view>> messages;  // CatchupReply: (seq, data)
};

void encodeSubscribe(std::string& out, uint64_t id, std::string_view channel, const std::optional<Position>& since);
void encodeUnsubscribe(std::string& out, std::string_view channel);
void encodePublish(std::string& out, uint64_t id, std::string_view channel, std::string_view data);
void encodeHistory(std::string& out, uint64_t id, std::string_view channel, const std::optional<Position>& since,
                   uint32_t limit);
void encodeInfo(std::string& out, uint64_t id, std::string_view channel);
void encodeCatchup(std::string& out, uint64_t id, const Catchup& c);
void encodePublishReply(std::string& out, uint64_t id, const Position& p);
void encodeInfoReply(std::string& out, uint64_t id, const Hub::Info& info);
void encodeError(std::string& out, uint64_t id, std::string_view message);
void encodeMessage(std::string& out, std::string_view channel, const Position& p, std::string_view data);
void encodeNodes(std::string& out, std::string_view document);

// The length of the first complete frame in `buffer` (prefix included), 0 when more
// bytes are needed, or nullopt when the length is over kMaxFrame.
std::optional<size_t> frameLength(std::string_view buffer);
// Decodes one whole frame (prefix included). False when malformed.
bool decode(std::string_view frame, Frame& out);

}  // namespace dingo::hubwire
