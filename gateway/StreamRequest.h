#pragma once
// What GET /v1/poll and GET /v1/sse ask for (docs/protocol.md): the channels, and where
// each one starts: channel=C (repeatable), cursor=K (or Last-Event-ID), since=C@POS
// (repeatable, to come from WebSocket positions). Parsed and checked against
// [gateway] max_channels and max_header_bytes before anything is subscribed.
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/Cursor.h"
#include "core/Hub.h"
#include "gateway/Context.h"
#include "gateway/HttpReply.h"

namespace dingo {

struct StreamRequest {
  std::vector<std::string> channels;          // distinct, in the order first named
  std::vector<std::optional<Position>> from;  // per channel: the client's position, if any
  std::optional<Cursor> cursor;
  bool resuming = false;  // a cursor or a since was given
};

// Room in a request head for what is not the query and the cursor: request line,
// Host, User-Agent and the like.
constexpr size_t kRequestHeadSlack = 512;

// Parses `query` (and `last_event_id`, used when the query has no cursor) into `req`.
// False with the error reply (400, or 413 when the cursor could not come back in a
// request head) when anything is bad.
bool parseStreamRequest(std::string_view query, std::string_view last_event_id, const GatewayContext& ctx,
                        StreamRequest& req, Reply& r);

// Held polls and event streams are the connections that cost a worker the most to keep
// (subscriptions, buffers): [gateway] max_streams bounds them together. True (counted in
// stream_limited) when a new one must be refused.
bool streamsFull(GatewayContext& ctx);

}  // namespace dingo
