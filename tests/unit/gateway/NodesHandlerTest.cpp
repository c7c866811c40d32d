// gateway/NodesHandler: GET /v1/nodes, the list nsclient keeps as its fallback.
#include "gateway/NodesHandler.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "core/Config.h"

namespace dingo {
namespace {

class NodesHandlerTest : public ::testing::Test {
 protected:
  nlohmann::json get(const SockAddr& reached) {
    HttpRequest req;
    req.method = HttpMethod::Get;
    reply_ = Reply{};
    serveNodes(ctx_, req, reached, reply_);
    EXPECT_EQ(reply_.status, 200);
    return nlohmann::json::parse(reply_.body);
  }

  Config config_;
  GatewayContext ctx_{config_};
  Reply reply_;
};

TEST_F(NodesHandlerTest, ConfiguredEndpoints) {
  config_.nodes.endpoints = {{"192.0.2.1:443", true}, {"[2001:db8::1]:8080", false}};
  config_.nodes.version = 7;
  config_.nodes.ttl = std::chrono::minutes(2);
  nlohmann::json j = get(*parseSockAddr("127.0.0.1:1"));
  EXPECT_EQ(j["version"], 7);
  EXPECT_EQ(j["ttl_s"], 120);
  ASSERT_EQ(j["nodes"].size(), 2u);
  EXPECT_EQ(j["nodes"][0], (nlohmann::json{{"host", "192.0.2.1"}, {"port", 443}, {"tls", true}}));
  EXPECT_EQ(j["nodes"][1], (nlohmann::json{{"host", "2001:db8::1"}, {"port", 8080}, {"tls", false}}));
}

TEST_F(NodesHandlerTest, OwnListenersWithWildcardsAsReached) {
  config_.listen = {{"0.0.0.0:8443", true, 4096}, {"127.0.0.2:8080", false, 4096}};
  nlohmann::json j = get(*parseSockAddr("127.0.0.9:8443"));
  ASSERT_EQ(j["nodes"].size(), 2u);
  EXPECT_EQ(j["nodes"][0], (nlohmann::json{{"host", "127.0.0.9"}, {"port", 8443}, {"tls", true}}));
  EXPECT_EQ(j["nodes"][1], (nlohmann::json{{"host", "127.0.0.2"}, {"port", 8080}, {"tls", false}}));
  // The wildcard keeps its own port whichever listener the client came through.
  j = get(*parseSockAddr("[::1]:9999"));
  EXPECT_EQ(j["nodes"][0], (nlohmann::json{{"host", "::1"}, {"port", 8443}, {"tls", true}}));
}

TEST_F(NodesHandlerTest, TheVersionFollowsTheList) {
  config_.nodes.endpoints = {{"192.0.2.1:443", true}};
  uint64_t v1 = get(SockAddr{})["version"];
  EXPECT_NE(v1, 0u);
  EXPECT_LT(v1, uint64_t{1} << 53);  // exact as a JSON number
  EXPECT_EQ(get(SockAddr{})["version"], v1);
  config_.nodes.endpoints[0].tls = false;
  EXPECT_NE(get(SockAddr{})["version"], v1);
}

TEST_F(NodesHandlerTest, GetAndHeadOnly) {
  HttpRequest req;
  req.method = HttpMethod::Head;
  serveNodes(ctx_, req, SockAddr{}, reply_);
  EXPECT_EQ(reply_.status, 200);
  req.method = HttpMethod::Post;
  reply_ = Reply{};
  serveNodes(ctx_, req, SockAddr{}, reply_);
  EXPECT_EQ(reply_.status, 405);
  EXPECT_EQ(reply_.extra_headers, "Allow: GET, HEAD\r\n");
}

TEST(NodesHandlerDeathTest, AnAddressThatSlippedPastTheConfigCheckAborts) {
  Config config;
  config.nodes.endpoints = {{"not an address", true}};
  GatewayContext ctx{config};
  HttpRequest req;
  Reply r;
  EXPECT_DEATH(serveNodes(ctx, req, SockAddr{}, r), "invariant broken");
}

}  // namespace
}  // namespace dingo
