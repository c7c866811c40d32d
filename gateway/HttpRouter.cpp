#include "gateway/HttpRouter.h"

#include "gateway/StaticFiles.h"

namespace dingo {

namespace {

constexpr std::string_view kPublishPrefix = "/v1/publish/";
constexpr std::string_view kHistoryPrefix = "/v1/history/";
constexpr std::string_view kChannelsPrefix = "/v1/channels/";

}  // namespace

std::string_view routePrefix(Route route) {
  switch (route) {
    case Route::Publish: return kPublishPrefix;
    case Route::History: return kHistoryPrefix;
    case Route::ChannelInfo: return kChannelsPrefix;
    default: return {};
  }
}

RouteMatch matchRoute(std::string_view path) {
  RouteMatch m;
  if (path == "/v1/ws") {
    m.route = Route::WebSocket;
  } else if (path == "/v1/sse") {
    m.route = Route::Sse;
  } else if (path == "/v1/poll") {
    m.route = Route::Poll;
  } else if (path == "/v1/nodes") {
    m.route = Route::Nodes;
  } else if ((m.file = findEmbeddedFile(path))) {
    m.route = Route::Static;
  } else if (path.starts_with("/v1/")) {
    for (Route r : {Route::Publish, Route::History, Route::ChannelInfo}) {
      std::string_view prefix = routePrefix(r);
      if (path.starts_with(prefix)) {
        m.route = r;
        m.channel = path.substr(prefix.size());
        break;
      }
    }
  } else if (path == "/healthz") {
    m.route = Route::Healthz;
  }
  return m;
}

}  // namespace dingo
