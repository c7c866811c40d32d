#pragma once
// Who may do what over HTTP (docs/auth.md): the identity a poll or event stream proves,
// whether it may use its channels, and the rule for the REST endpoints. Each check
// either passes or fills the refusal (401 with WWW-Authenticate: Bearer, or 403) into
// the reply. WebSocket sessions apply the same Authenticator per command (WsSession).
#include <string>
#include <vector>

#include "gateway/Auth.h"
#include "gateway/Context.h"
#include "gateway/HttpReply.h"
#include "gateway/HttpRequest.h"

namespace dingo {

// The refusal as an HTTP answer.
void setRefusal(Reply& r, const Refusal& refusal);

// Who a poll or event stream is: the token of Authorization: Bearer, else of ?token=.
// False with the refusal when the token is refused. With auth off everyone is the
// anonymous client, who may do everything.
bool identify(GatewayContext& ctx, const HttpRequest& req, Identity& who, Reply& r);

// Whether `who` may act on every one of `channels`; false with 403 when not.
bool allowedAll(GatewayContext& ctx, const Identity& who, Right right, const std::vector<std::string>& channels,
                Reply& r);

// REST (publish, history, channels): the static publish token may do everything; so
// may loopback peers without a token when no publish token is set (the backend on this
// host). With auth on, a JWT may do what its patterns say, and a request without a token
// what the anonymous patterns say. With auth off, reads are open to all.
bool restAllowed(GatewayContext& ctx, const HttpRequest& req, Right right, const std::string& channel, Reply& r);

}  // namespace dingo
