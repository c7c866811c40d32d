#pragma once
// GET /v1/nodes: the list of gateway endpoints that nsclient keeps as its fallback
// (docs/protocol.md, nsclient/). The one place that decides what the list holds:
//   {"version":V,"ttl_s":S,"nodes":[{"host":H,"port":P,"tls":B}...]}
// Under the redis engine, the document the hub pushed (every live host, supervisor/
// NodeRegistry.h); else [nodes] endpoints, else this gateway's own [[listen]] addresses. No Asio or
// Beast here; unit tests call it with a config and a request.
#include "core/Net.h"
#include "gateway/Context.h"
#include "gateway/HttpReply.h"
#include "gateway/HttpRequest.h"

namespace dingo {

// Answers GET and HEAD (405 otherwise). `reached` is the local address the client
// connected to: a wildcard listener (0.0.0.0, ::) is reported with its host.
void serveNodes(const GatewayContext& ctx, const HttpRequest& req, const SockAddr& reached, Reply& r);

}  // namespace dingo
