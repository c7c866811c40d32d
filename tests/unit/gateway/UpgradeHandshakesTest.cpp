// gateway/UpgradeHandshakes: the checks of GET /v1/ws (RFC 6455 4.2.1) and GET /v1/sse
// before the connection is handed over.
#include "gateway/UpgradeHandshakes.h"

#include <gtest/gtest.h>

#include <vector>

#include "core/Config.h"
#include "gateway/SseSession.h"

namespace dingo {
namespace {

class UpgradeHandshakesTest : public ::testing::Test {
 protected:
  UpgradeHandshakesTest() {
    fields_ = {{"Host", "a"},
               {"Upgrade", "websocket"},
               {"Connection", "keep-alive, Upgrade"},
               {"Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="},
               {"Sec-WebSocket-Version", "13"}};
    req_.setTarget("/v1/ws");
  }

  bool upgrade() {
    req_.fields = fields_;
    reply_ = Reply{};
    accept_.clear();
    return checkWebSocketUpgrade(ctx_, req_, accept_, reply_);
  }

  Config config_;
  GatewayContext ctx_{config_};
  std::vector<HeaderField> fields_;
  HttpRequest req_;
  std::string accept_;
  Reply reply_;
};

TEST_F(UpgradeHandshakesTest, Rfc6455Example) {
  ASSERT_TRUE(upgrade()) << reply_.body;
  EXPECT_EQ(accept_, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");  // RFC 6455 1.3
}

TEST_F(UpgradeHandshakesTest, GetOverHttp11Only) {
  req_.method = HttpMethod::Post;
  EXPECT_FALSE(upgrade());
  EXPECT_EQ(reply_.status, 405);
  EXPECT_EQ(reply_.extra_headers, "Allow: GET\r\n");
  req_.method = HttpMethod::Get;
  req_.version = 10;
  EXPECT_FALSE(upgrade());
  EXPECT_EQ(reply_.status, 400);
}

TEST_F(UpgradeHandshakesTest, HeadersAtFault) {
  auto without = [&](size_t i) {
    auto saved = fields_;
    fields_.erase(fields_.begin() + static_cast<long>(i));
    bool ok = upgrade();
    fields_ = saved;
    return ok;
  };
  for (size_t i = 1; i < 5; ++i) {
    EXPECT_FALSE(without(i)) << fields_[i].name;
    EXPECT_EQ(reply_.status, 400);
  }
  fields_.push_back({"sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="});
  EXPECT_FALSE(upgrade());
  EXPECT_NE(reply_.body.find("one base64 value of 16 bytes"), std::string::npos);
  fields_.pop_back();
  fields_[3].value = "c2hvcnQ=";  // 5 bytes
  EXPECT_FALSE(upgrade());
  EXPECT_NE(reply_.body.find("one base64 value of 16 bytes"), std::string::npos);
  fields_[3].value = "dGhlIHNhbXBsZSBub25jZQ==";
  fields_[4].value = "8";
  EXPECT_FALSE(upgrade());
  EXPECT_EQ(reply_.extra_headers, "Sec-WebSocket-Version: 13\r\n");
}

TEST_F(UpgradeHandshakesTest, NotWhileDraining) {
  ctx_.draining = true;
  EXPECT_FALSE(upgrade());
  EXPECT_EQ(reply_.status, 503);
  EXPECT_EQ(reply_.extra_headers, "Retry-After: 1\r\n");
}

TEST_F(UpgradeHandshakesTest, SseChecksTheMethodThenTheChannelsThenTheBroker) {
  SseRequest out;
  req_.setTarget("/v1/sse?channel=/a");
  req_.method = HttpMethod::Head;
  EXPECT_FALSE(checkSseRequest(ctx_, req_, out, reply_));
  EXPECT_EQ(reply_.status, 405);
  req_.method = HttpMethod::Get;
  req_.setTarget("/v1/sse?channel=a");
  reply_ = Reply{};
  EXPECT_FALSE(checkSseRequest(ctx_, req_, out, reply_));
  EXPECT_EQ(reply_.status, 400);
  req_.setTarget("/v1/sse?channel=/a");
  reply_ = Reply{};
  EXPECT_FALSE(checkSseRequest(ctx_, req_, out, reply_));  // no broker
  EXPECT_EQ(reply_.status, 503);
  EXPECT_TRUE(out.channels.empty());
}

}  // namespace
}  // namespace dingo
