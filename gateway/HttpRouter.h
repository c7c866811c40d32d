#pragma once
// Which endpoint a request path names (docs/protocol.md). Pure: no I/O, no Asio or
// Beast; HttpSession calls matchRoute once per request and hands the request to the
// endpoint's handler:
//   /v1/ws                  WebSocket upgrade     UpgradeHandshakes.h, then WsSession
//   /v1/sse                 event stream          UpgradeHandshakes.h, then SseSession
//   /v1/poll                long-poll             PollHandler.h
//   /v1/nodes               the node list         NodesHandler.h
//   /v1/client.js, /demo/…  embedded files        StaticFiles.h
//   /v1/publish/{channel}   publish               RestHandlers.h
//   /v1/history/{channel}   history               RestHandlers.h
//   /v1/channels/{channel}  a channel's position  RestHandlers.h
//   /healthz                liveness              RestHandlers.h
// Anything else is 404. Methods are checked by the handlers (each answers 405 itself).
#include <string_view>

namespace dingo {

struct EmbeddedFile;

enum class Route {
  WebSocket,
  Sse,
  Poll,
  Nodes,
  Static,
  Publish,
  History,
  ChannelInfo,
  Healthz,
  NotFound,
};

struct RouteMatch {
  Route route = Route::NotFound;
  // Publish, History, ChannelInfo: what follows the prefix, still percent-encoded and
  // without its leading '/' ("/v1/history/a%2Fb" gives "a%2Fb"; may be empty).
  std::string_view channel;
  const EmbeddedFile* file = nullptr;  // Static
};

// The endpoint at `path` (a target's path, without the query).
RouteMatch matchRoute(std::string_view path);

// The prefix of a REST route ("/v1/publish/"); empty for the others.
std::string_view routePrefix(Route route);

}  // namespace dingo
