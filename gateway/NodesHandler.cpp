#include "gateway/NodesHandler.h"

#include <fmt/format.h>

#include <chrono>
#include <nlohmann/json.hpp>

#include "core/Hash.h"

namespace dingo {

namespace {

// `listener`'s address as the client sees it: a wildcard host is replaced by the host
// of `reached`, keeping the listener's port.
SockAddr asReached(const SockAddr& listener, const SockAddr& reached) {
  std::string host = listener.host();
  if (host != "0.0.0.0" && host != "::") return listener;
  SockAddr a = reached;
  if (a.family() == AF_INET6) reinterpret_cast<sockaddr_in6*>(&a.storage)->sin6_port = htons(listener.port());
  else reinterpret_cast<sockaddr_in*>(&a.storage)->sin_port = htons(listener.port());
  return a;
}

}  // namespace

void serveNodes(const GatewayContext& ctx, const HttpRequest& req, const SockAddr& reached, Reply& r) {
  if (!req.getOrHead()) {
    r.extra_headers = "Allow: GET, HEAD\r\n";
    setError(r, 405, "bad_request", "/v1/nodes answers GET and HEAD");
    return;
  }
  if (!ctx.nodes_document.empty()) {  // redis engine: every live host's endpoints (supervisor/NodeRegistry.h)
    r.body = ctx.nodes_document;
    return;
  }
  const Config& cfg = ctx.config;
  nlohmann::json list = nlohmann::json::array();
  auto add = [&](const SockAddr& a, bool tls) {
    list.push_back({{"host", a.host()}, {"port", a.port()}, {"tls", tls}});
  };
  if (!cfg.nodes.endpoints.empty()) {
    for (const auto& e : cfg.nodes.endpoints) add(validatedSockAddr(e.address), e.tls);
  } else {
    for (const auto& l : cfg.listen) add(asReached(validatedSockAddr(l.address), reached), l.tls);
  }
  std::string text = list.dump();
  // The version is [nodes] version, else a hash of the list: clients compare it to see a
  // change. It fits a JSON number exactly (52 bits) and is never 0.
  uint64_t version = cfg.nodes.version;
  if (version == 0) version = (fnv1a64(text) >> 12) | 1;
  r.body = fmt::format(R"({{"version":{},"ttl_s":{},"nodes":{}}})", version,
                       std::chrono::duration_cast<std::chrono::seconds>(cfg.nodes.ttl).count(), text);
}

}  // namespace dingo
