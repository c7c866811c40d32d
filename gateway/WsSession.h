#pragma once
// WebSocket sessions (GET /v1/ws): the pub/sub protocol of SPEC section 3 over RFC 6455.
#include <string>

#include "core/Asio.h"
#include "gateway/Context.h"

namespace dingo {

class PlainSocket;
class TlsSocket;

// Runs the WebSocket protocol on a connection whose HTTP upgrade was answered with 101.
// `leftover` holds bytes the client sent after its upgrade request, `token` the
// request's ?token= (empty when none). Returns once the connection is closed.
asio::awaitable<void> serveWebSocket(GatewayContext& ctx, PlainSocket& stream, std::string leftover,
                                     std::string token);
asio::awaitable<void> serveWebSocket(GatewayContext& ctx, TlsSocket& stream, std::string leftover,
                                     std::string token);

}  // namespace dingo
