#pragma once
// One client connection: optional TLS handshake, then HTTP/1.1 with keep-alive.
#include "core/Asio.h"
#include "gateway/Context.h"

namespace dingo {

// Takes ownership of a connected TCP socket and serves it until it closes.
void startSession(GatewayContext& ctx, asio::ip::tcp::socket socket, bool tls);

}  // namespace dingo
