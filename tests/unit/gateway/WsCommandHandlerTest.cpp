// gateway/WsCommandHandler: what WebSocket commands do, through a fake connection (which
// records the text it is asked to send and its close) and a fake broker whose results
// come when the test says.
#include "gateway/WsCommandHandler.h"

#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/Config.h"
#include "core/WebSocket.h"
#include "gateway/Broker.h"

namespace dingo {
namespace {

class FakeConnection final : public WsConnection {
 public:
  void sendText(std::string_view text) override { sent.emplace_back(text); }
  void startClose(uint16_t code, std::string_view reason) override {
    if (close_code) return;
    close_code = code;
    close_reason = reason;
  }
  void closeUnread(uint16_t code, std::string_view reason) override {
    unread = true;
    startClose(code, reason);
  }
  bool closing() const override { return close_code != 0; }
  void deadlinesChanged() override {}
  void push(const Delivery&) override {}
  void onGap(std::string_view) override {}

  std::string last() const { return sent.empty() ? "" : sent.back(); }
  std::vector<std::string> sent;
  uint16_t close_code = 0;
  std::string close_reason;
  bool unread = false;
};

// Subscribes answer when the test calls answerSubscribes(); publishes at once.
class FakeBroker final : public Broker {
 public:
  void setSink(BrokerSink*) override {}
  void subscribe(std::string_view channel, const std::optional<Position>& since, CatchupFn done) override {
    subscribes.push_back({std::string(channel), since, std::move(done)});
  }
  void unsubscribe(std::string_view channel) override { unsubscribed.emplace_back(channel); }
  void publish(std::string_view channel, std::string data, PublishFn done) override {
    published.emplace_back(std::string(channel), data);
    Position p{"0123456789", 8};
    done(&p, {});
  }
  void history(std::string_view, const std::optional<Position>&, uint32_t, CatchupFn) override { ADD_FAILURE(); }
  void info(std::string_view, InfoFn) override { ADD_FAILURE(); }
  bool available() const override { return true; }

  void answerSubscribes() {
    auto now = std::move(subscribes);
    subscribes.clear();
    for (auto& s : now) {
      Catchup c;
      c.position = {"0123456789", 3};
      c.recovered = s.since.has_value();
      s.done(&c, {});
    }
  }

  struct Pending {
    std::string channel;
    std::optional<Position> since;
    CatchupFn done;
  };
  std::vector<Pending> subscribes;
  std::vector<std::string> unsubscribed;
  std::vector<std::pair<std::string, std::string>> published;
};

class WsCommandHandlerTest : public ::testing::Test {
 protected:
  WsCommandHandlerTest() {
    ctx_.broker = &broker_;
    ctx_.channels = &table_;
    ctx_.users = &users_;
  }
  WsCommandHandler& handler() {
    if (!handler_) handler_ = std::make_unique<WsCommandHandler>(ctx_, conn_, steadyNowMs());
    return *handler_;
  }
  std::string command(std::string_view text) {
    handler().onCommand(text);
    return conn_.last();
  }

  Config config_;
  GatewayContext ctx_{config_};
  FakeBroker broker_;
  ChannelTable table_{ctx_};
  UserRegistry users_;
  FakeConnection conn_;
  std::unique_ptr<WsCommandHandler> handler_;
};

TEST_F(WsCommandHandlerTest, PingAndMalformedCommands) {
  EXPECT_EQ(command(R"({"id":1,"op":"ping"})"), R"({"id":1,"ok":true})");
  EXPECT_EQ(command(R"({"id":"a","op":"ping"})"), R"({"id":"a","ok":true})");
  EXPECT_NE(command("not json").find(R"({"id":null,"ok":false,"error":{"code":"bad_request")"), std::string::npos);
  EXPECT_NE(command(R"({"id":[1],"op":"ping"})").find("id must be a number or a string"), std::string::npos);
  EXPECT_NE(command(R"({"id":2})").find("op is missing"), std::string::npos);
  EXPECT_NE(command(R"({"id":3,"op":"dance"})").find("unknown op 'dance'"), std::string::npos);
  EXPECT_EQ(ctx_.counters.ws_commands, 6u);
  EXPECT_EQ(conn_.close_code, 0);
}

TEST_F(WsCommandHandlerTest, RateLimitThenClose) {
  config_.gateway.commands_per_second = 1;
  // A burst of kCommandBurstFactor times the rate, then refusals.
  EXPECT_EQ(command(R"({"id":1,"op":"ping"})"), R"({"id":1,"ok":true})");
  EXPECT_EQ(command(R"({"id":2,"op":"ping"})"), R"({"id":2,"ok":true})");
  EXPECT_NE(command(R"({"id":3,"op":"ping"})").find(R"({"id":3,"ok":false,"error":{"code":"limit")"),
            std::string::npos);
  for (uint32_t i = 1; i < WsCommandHandler::kMaxRefusedInRow; ++i) handler().onCommand("{}");
  EXPECT_EQ(conn_.close_code, 0);
  handler().onCommand("{}");
  EXPECT_EQ(conn_.close_code, ws::kPolicyViolation);
  EXPECT_TRUE(conn_.unread);
}

TEST_F(WsCommandHandlerTest, SubscribeThenUnsubscribe) {
  command(R"({"id":1,"op":"subscribe","channel":"/a","since":"0123456789.1"})");
  EXPECT_TRUE(conn_.sent.empty());  // the reply waits for the broker
  ASSERT_EQ(broker_.subscribes.size(), 1u);
  EXPECT_EQ(broker_.subscribes[0].since, (Position{"0123456789", 1}));
  EXPECT_TRUE(handler().subscribed());
  EXPECT_NE(command(R"({"id":2,"op":"subscribe","channel":"/a"})").find("already subscribed to /a"),
            std::string::npos);
  broker_.answerSubscribes();
  EXPECT_EQ(conn_.last(), R"({"id":1,"ok":true,"position":"0123456789.3","recovered":true,"messages":[]})");
  EXPECT_EQ(table_.channels(), 1u);
  EXPECT_EQ(ctx_.counters.recovered, 1u);
  EXPECT_EQ(command(R"({"id":3,"op":"unsubscribe","channel":"/a"})"), R"({"id":3,"ok":true})");
  EXPECT_EQ(broker_.unsubscribed, std::vector<std::string>{"/a"});
  EXPECT_FALSE(handler().subscribed());
}

TEST_F(WsCommandHandlerTest, BadSubscribes) {
  EXPECT_NE(command(R"({"id":1,"op":"subscribe","channel":"a"})").find("a channel is 1 to 255"), std::string::npos);
  EXPECT_NE(command(R"({"id":1,"op":"subscribe","channel":"/a","since":"x"})").find("since must be a position"),
            std::string::npos);
  config_.gateway.max_channels = 1;
  command(R"({"id":1,"op":"subscribe","channel":"/a"})");
  EXPECT_NE(command(R"({"id":2,"op":"subscribe","channel":"/b"})").find("at most 1 channels per connection"),
            std::string::npos);
  EXPECT_EQ(broker_.subscribes.size(), 1u);
}

TEST_F(WsCommandHandlerTest, AResultThatFindsTheSubscriptionGoneTellsTheHub) {
  command(R"({"id":1,"op":"subscribe","channel":"/a"})");
  command(R"({"id":2,"op":"unsubscribe","channel":"/a"})");  // before the result
  broker_.answerSubscribes();
  EXPECT_EQ(broker_.unsubscribed, std::vector<std::string>{"/a"});
  EXPECT_EQ(table_.channels(), 0u);
  // Closing: the result is answered but subscribes nothing.
  command(R"({"id":3,"op":"subscribe","channel":"/b"})");
  conn_.close_code = ws::kNormal;
  broker_.answerSubscribes();
  EXPECT_EQ(broker_.unsubscribed, (std::vector<std::string>{"/a", "/b"}));
  EXPECT_EQ(table_.channels(), 0u);
  // The handler gone: the result tells the hub and touches nothing.
  conn_.close_code = 0;
  command(R"({"id":4,"op":"subscribe","channel":"/c"})");
  handler_.reset();
  size_t sent = conn_.sent.size();
  broker_.answerSubscribes();
  EXPECT_EQ(broker_.unsubscribed.back(), "/c");
  EXPECT_EQ(conn_.sent.size(), sent);
}

TEST_F(WsCommandHandlerTest, PublishOnlyWhenEnabled) {
  EXPECT_NE(command(R"({"id":1,"op":"publish","channel":"/a","data":1})").find("client_publish"), std::string::npos);
  config_.gateway.client_publish = true;
  handler_.reset();
  EXPECT_NE(command(R"({"id":2,"op":"publish","channel":"/a"})").find("publish needs data"), std::string::npos);
  EXPECT_EQ(command(R"({"id":3,"op":"publish","channel":"/a","data":{"x": [1, 2]}})"),
            R"({"id":3,"ok":true,"position":"0123456789.8"})");
  ASSERT_EQ(broker_.published.size(), 1u);
  EXPECT_EQ(broker_.published[0].second, R"({"x":[1,2]})");
}

TEST_F(WsCommandHandlerTest, WithAuthOffTokensAreRefusedAndNothingExpires) {
  EXPECT_NE(command(R"({"id":1,"op":"auth","token":"t"})").find("this service checks no tokens"), std::string::npos);
  EXPECT_NE(command(R"({"id":1,"op":"auth"})").find("auth needs a token"), std::string::npos);
  handler().authenticateWith("t");  // ignored with auth off
  EXPECT_EQ(handler().tokenDeadlineMs(), 0);
  EXPECT_EQ(conn_.close_code, 0);
}

TEST_F(WsCommandHandlerTest, AnOperatorsDisconnectClosesWith4003) {
  handler().disconnectUser(std::string(200, 'x'));
  EXPECT_EQ(conn_.close_code, ws::kDisconnected);
  EXPECT_EQ(conn_.close_reason, std::string(123, 'x'));  // a close reason's limit
}

}  // namespace
}  // namespace dingo
