#pragma once
// Server-sent events (GET /v1/sse): each message is an event whose id is a cursor.
#include <optional>
#include <string>
#include <vector>

#include "core/Asio.h"
#include "core/Hub.h"
#include "gateway/Auth.h"
#include "gateway/Context.h"

namespace dingo {

class PlainSocket;
class TlsSocket;

// What the HTTP request asked for, validated.
struct SseRequest {
  std::vector<std::string> channels;
  std::vector<std::optional<Position>> from;  // per channel: resume after this
  // HTTP/1.1 clients get a chunked body. An HTTP/1.0 client knows no chunking: its body
  // is the bare event stream, delimited by the close (RFC 9112 6.3 rule 8).
  bool chunked = true;
  Identity who;  // the stream ends when its token does
};

// Runs an event stream on a connection whose request was validated; the response head
// is sent from here. Returns once the connection is closed.
asio::awaitable<void> serveSse(GatewayContext& ctx, PlainSocket& stream, SseRequest req);
asio::awaitable<void> serveSse(GatewayContext& ctx, TlsSocket& stream, SseRequest req);

}  // namespace dingo
