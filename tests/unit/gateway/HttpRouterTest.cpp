// gateway/HttpRouter: which endpoint each path names, as HttpSession dispatches on it.
#include "gateway/HttpRouter.h"

#include <gtest/gtest.h>

#include <string>

#include "gateway/StaticFiles.h"

namespace dingo {
namespace {

TEST(HttpRouterTest, FixedPaths) {
  EXPECT_EQ(matchRoute("/v1/ws").route, Route::WebSocket);
  EXPECT_EQ(matchRoute("/v1/sse").route, Route::Sse);
  EXPECT_EQ(matchRoute("/v1/poll").route, Route::Poll);
  EXPECT_EQ(matchRoute("/v1/nodes").route, Route::Nodes);
  EXPECT_EQ(matchRoute("/healthz").route, Route::Healthz);
}

TEST(HttpRouterTest, FixedPathsMatchExactly) {
  for (const char* path : {"/v1/ws/", "/v1/wsx", "/v1/sse/a", "/v1/Poll", "/v1/nodes/", "/healthz/", "/healthzz",
                           "/v1/healthz", "/", "", "/v1", "/v1/"})
    EXPECT_EQ(matchRoute(path).route, Route::NotFound) << path;
}

TEST(HttpRouterTest, RestRoutesCarryTheChannelStillEncoded) {
  RouteMatch m = matchRoute("/v1/publish/chat%2Froom");
  EXPECT_EQ(m.route, Route::Publish);
  EXPECT_EQ(m.channel, "chat%2Froom");
  m = matchRoute("/v1/history/a/b");
  EXPECT_EQ(m.route, Route::History);
  EXPECT_EQ(m.channel, "a/b");
  m = matchRoute("/v1/channels/x");
  EXPECT_EQ(m.route, Route::ChannelInfo);
  EXPECT_EQ(m.channel, "x");
  // Nothing after the prefix: the handler takes it for the channel "/".
  m = matchRoute("/v1/publish/");
  EXPECT_EQ(m.route, Route::Publish);
  EXPECT_EQ(m.channel, "");
}

TEST(HttpRouterTest, RestPrefixesNeedTheirSlash) {
  EXPECT_EQ(matchRoute("/v1/publish").route, Route::NotFound);
  EXPECT_EQ(matchRoute("/v1/publishx/a").route, Route::NotFound);
  EXPECT_EQ(matchRoute("/v1/channel/a").route, Route::NotFound);
  EXPECT_EQ(matchRoute("/publish/a").route, Route::NotFound);
}

TEST(HttpRouterTest, EmbeddedFilesComeBeforeTheV1Routes) {
  ASSERT_GT(kEmbeddedFileCount, 0u);
  for (size_t i = 0; i < kEmbeddedFileCount; ++i) {
    RouteMatch m = matchRoute(kEmbeddedFiles[i].path);
    EXPECT_EQ(m.route, Route::Static) << kEmbeddedFiles[i].path;
    EXPECT_EQ(m.file, &kEmbeddedFiles[i]);
  }
  EXPECT_EQ(matchRoute("/v1/client.js").route, Route::Static);
  EXPECT_EQ(matchRoute("/v1/client.jsx").route, Route::NotFound);
}

TEST(HttpRouterTest, PrefixesOfTheRestRoutes) {
  EXPECT_EQ(routePrefix(Route::Publish), "/v1/publish/");
  EXPECT_EQ(routePrefix(Route::History), "/v1/history/");
  EXPECT_EQ(routePrefix(Route::ChannelInfo), "/v1/channels/");
  EXPECT_EQ(routePrefix(Route::Poll), "");
}

}  // namespace
}  // namespace dingo
