#include "gateway/HttpAccess.h"

#include "core/Jwt.h"
#include "core/Secret.h"
#include "gateway/HttpQuery.h"

namespace dingo {

void setRefusal(Reply& r, const Refusal& refusal) {
  if (refusal.status == 401) r.extra_headers = "WWW-Authenticate: Bearer\r\n";
  setError(r, refusal.status, refusal.code, refusal.message);
}

bool identify(GatewayContext& ctx, const HttpRequest& req, Identity& who, Reply& r) {
  if (!ctx.auth || !ctx.auth->enabled()) return true;
  std::string token(bearerToken(req));
  bool bad = false;
  if (token.empty()) token = queryParam(req.query, "token", bad).value_or("");
  auto result = ctx.auth->authenticate(token, unixNowMs());
  if (auto* refusal = std::get_if<Refusal>(&result)) {
    setRefusal(r, *refusal);
    return false;
  }
  who = std::get<Identity>(std::move(result));
  return true;
}

bool allowedAll(GatewayContext& ctx, const Identity& who, Right right, const std::vector<std::string>& channels,
                Reply& r) {
  if (!ctx.auth || !ctx.auth->enabled()) return true;
  for (const auto& c : channels) {
    if (auto refusal = ctx.auth->check(who, right, c)) {
      setRefusal(r, *refusal);
      return false;
    }
  }
  return true;
}

bool restAllowed(GatewayContext& ctx, const HttpRequest& req, Right right, const std::string& channel, Reply& r) {
  const std::string& static_token = ctx.config.gateway.publish_token;
  std::string_view bearer = bearerToken(req);
  // Compared in constant time, lengths included (core/Secret.h).
  if (!static_token.empty() && !bearer.empty() && constantTimeEquals(bearer, static_token)) return true;
  bool auth_on = ctx.auth && ctx.auth->enabled();
  if (!auth_on) {
    if (right == Right::Subscribe) return true;
    if (!static_token.empty()) {
      setRefusal(r, {401, "unauthorized", "publishing needs Authorization: Bearer <publish_token>"});
      return false;
    }
    if (peerIsLoopback(req.socket)) return true;
    setError(r, 403, "forbidden", "without a publish_token only loopback clients may publish");
    return false;
  }
  if (bearer.empty() && static_token.empty() && peerIsLoopback(req.socket)) return true;
  auto result = ctx.auth->authenticate(bearer, unixNowMs());
  if (auto* refusal = std::get_if<Refusal>(&result)) {
    setRefusal(r, *refusal);
    return false;
  }
  return allowedAll(ctx, std::get<Identity>(result), right, {channel}, r);
}

}  // namespace dingo
