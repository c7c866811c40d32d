#pragma once
// The REST endpoints (docs/protocol.md): GET /healthz, POST /v1/publish/{channel},
// GET /v1/history/{channel} and GET /v1/channels/{channel}, and the 404 for paths no
// route names. The pub/sub ones go through the broker and answer 503 when it is gone or
// does not answer. GET /v1/nodes has its own file (NodesHandler.h), as do long-polls
// (PollHandler.h) and the upgrades (UpgradeHandshakes.h).
//
// Included by HttpSession.cpp only (Asio, for the coroutines).
#include <string_view>

#include "core/Asio.h"
#include "gateway/Context.h"
#include "gateway/HttpReply.h"
#include "gateway/HttpRequest.h"
#include "gateway/HttpRouter.h"

namespace dingo {

// GET /healthz: {"status":"ok","pid":P,"worker":W}.
void serveHealthz(GatewayContext& ctx, const HttpRequest& req, Reply& r);

// 404 for a path no route names.
void setNotFound(Reply& r, std::string_view path);

// Route::Publish, History or ChannelInfo: checks the method, the channel (`match.channel`)
// and the caller's rights (HttpAccess.h), then asks the broker.
asio::awaitable<void> servePubSubRest(GatewayContext& ctx, const HttpRequest& req, const RouteMatch& match,
                                      Reply& r);

}  // namespace dingo
