#include "gateway/UpgradeHandshakes.h"

#include <fmt/format.h>

#include "core/WebSocket.h"
#include "gateway/Broker.h"
#include "gateway/HttpAccess.h"
#include "gateway/SseSession.h"
#include "gateway/StreamRequest.h"

namespace dingo {

bool checkWebSocketUpgrade(const GatewayContext& ctx, const HttpRequest& req, std::string& accept, Reply& r) {
  if (req.method != HttpMethod::Get) {
    r.extra_headers = "Allow: GET\r\n";
    setError(r, 405, "bad_request", "/v1/ws answers GET");
    return false;
  }
  if (req.version < 11) {  // RFC 6455 4.1: HTTP/1.1 or higher
    setError(r, 400, "bad_request", "a WebSocket upgrade needs HTTP/1.1");
    return false;
  }
  std::string_view key = req.header("Sec-WebSocket-Key");
  if (!hasToken(req.header("Upgrade"), "websocket") || !hasToken(req.header("Connection"), "upgrade") ||
      key.empty()) {
    setError(r, 400, "bad_request",
             "a WebSocket upgrade needs Upgrade: websocket, Connection: Upgrade and Sec-WebSocket-Key");
    return false;
  }
  if (req.headerCount("Sec-WebSocket-Key") != 1 || !ws::validClientKey(key)) {
    setError(r, 400, "bad_request", "Sec-WebSocket-Key must be one base64 value of 16 bytes");
    return false;
  }
  if (req.header("Sec-WebSocket-Version") != "13") {
    r.extra_headers = "Sec-WebSocket-Version: 13\r\n";
    setError(r, 400, "bad_request", "only WebSocket version 13 is supported");
    return false;
  }
  if (ctx.draining) {
    setUnavailable(r, "this worker is draining");
    return false;
  }
  accept = ws::acceptKey(key);
  return true;
}

bool checkSseRequest(GatewayContext& ctx, const HttpRequest& req, SseRequest& out, Reply& r) {
  if (req.method != HttpMethod::Get) {
    r.extra_headers = "Allow: GET\r\n";
    setError(r, 405, "bad_request", "/v1/sse answers GET");
    return false;
  }
  StreamRequest sr;
  if (!parseStreamRequest(req.query, req.header("Last-Event-ID"), ctx, sr, r)) return false;
  Identity who;
  if (!identify(ctx, req, who, r) || !allowedAll(ctx, who, Right::Subscribe, sr.channels, r)) return false;
  if (!ctx.broker || !ctx.broker->available()) {
    setUnavailable(r, "pub/sub is unavailable");
    return false;
  }
  if (ctx.draining) {
    setUnavailable(r, "this worker is draining");
    return false;
  }
  if (streamsFull(ctx)) {
    setUnavailable(r, fmt::format("this worker holds max_streams ({}) polls and event streams",
                                  ctx.config.gateway.max_streams));
    return false;
  }
  out.channels = std::move(sr.channels);
  out.from = std::move(sr.from);
  out.who = std::move(who);
  out.chunked = req.version >= 11;
  return true;
}

}  // namespace dingo
