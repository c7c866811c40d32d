#pragma once
// One client connection: optional TLS handshake, then HTTP/1.1 with keep-alive.
#include "core/Asio.h"
#include "gateway/Context.h"

namespace dingo {

// Takes ownership of a connected TCP socket and serves it until it closes.
void startSession(GatewayContext& ctx, asio::ip::tcp::socket socket, bool tls);

// Cancels the I/O of every session whose deadline has passed. The gateway calls it a few
// times a second: one sweep of a list replaces a timer per connection, which costs
// memory per connection and timer-queue work on every request.
void sweepDeadlines(GatewayContext& ctx);

}  // namespace dingo
