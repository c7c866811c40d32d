#pragma once
// The checks before a connection stops being plain HTTP: GET /v1/ws (RFC 6455 4.2.1,
// then WsSession) and GET /v1/sse (then SseSession). Each either accepts, saying what
// the new session needs, or fills the error answer the client gets instead; the session
// loop (HttpSession.cpp) writes the 101 or hands the connection over. No Asio or Beast.
#include <string>

#include "gateway/Context.h"
#include "gateway/HttpReply.h"
#include "gateway/HttpRequest.h"

namespace dingo {

struct SseRequest;

// GET /v1/ws: true with the Sec-WebSocket-Accept value in `accept`; false with the error
// answer (405, 400 with the header at fault, 503 while draining).
bool checkWebSocketUpgrade(const GatewayContext& ctx, const HttpRequest& req, std::string& accept, Reply& r);

// GET /v1/sse: true with what the stream serves in `out` (channels, positions, who, and
// chunked unless HTTP/1.0); false with the error answer (405, 400, 401, 403, 413, 503).
bool checkSseRequest(GatewayContext& ctx, const HttpRequest& req, SseRequest& out, Reply& r);

}  // namespace dingo
