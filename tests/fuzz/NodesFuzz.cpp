// fuzz_nodes: parseNodeList (nsclient/include/dingo/nsclient/Resolver.h), which reads the
// GET /v1/nodes document that dingo-nsclient fetches from any gateway it reaches (over
// TLS, but from a server it has never met when it dials a seed or a stale list entry).
// Whatever it keeps must be a numeric address and a port a client can dial.
#include "dingo/nsclient/Resolver.h"
#include "tests/fuzz/FuzzCheck.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto list = dingo::ns::parseNodeList(dingo::fuzz::text(data, size));
  if (!list) return 0;
  FUZZ_CHECK(list->ttl_s >= 1);
  for (const auto& n : list->nodes) {
    FUZZ_CHECK(n.port != 0);
    auto ep = dingo::ns::parseEndpoint(dingo::ns::Endpoint{n.host, n.port, n.tls}.toString(), n.tls);
    FUZZ_CHECK(ep && ep->host == n.host && ep->port == n.port);
  }
  return 0;
}
