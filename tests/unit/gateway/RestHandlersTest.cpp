// gateway/RestHandlers: GET /healthz and the pub/sub REST endpoints, against a fake
// broker that answers at once (as the in-process LocalBroker does).
#include "gateway/RestHandlers.h"

#include <gtest/gtest.h>

#include <vector>

#include "core/Config.h"
#include "gateway/Broker.h"

namespace dingo {
namespace {

class FakeBroker final : public Broker {
 public:
  void setSink(BrokerSink*) override {}
  void subscribe(std::string_view, const std::optional<Position>&, CatchupFn) override { ADD_FAILURE(); }
  void unsubscribe(std::string_view) override { ADD_FAILURE(); }
  void publish(std::string_view channel, std::string data, PublishFn done) override {
    published.emplace_back(channel, std::move(data));
    Position p{"0123456789", published.size()};
    done(&p, {});
  }
  void history(std::string_view channel, const std::optional<Position>& since, uint32_t limit,
               CatchupFn done) override {
    asked_channel = channel;
    asked_since = since;
    asked_limit = limit;
    Catchup c;
    c.position = {"0123456789", 2};
    c.recovered = true;
    c.messages.push_back({2, std::make_shared<const std::string>(R"({"n":2})")});
    done(&c, {});
  }
  void info(std::string_view channel, InfoFn done) override {
    asked_channel = channel;
    if (!up) return done(nullptr, "the hub did not answer");
    Hub::Info i{{"0123456789", 4}, 3};
    done(&i, {});
  }
  bool available() const override { return true; }

  bool up = true;
  std::vector<std::pair<std::string, std::string>> published;
  std::string asked_channel;
  std::optional<Position> asked_since;
  uint32_t asked_limit = 0;
};

class RestHandlersTest : public ::testing::Test {
 protected:
  RestHandlersTest() {
    ctx_.broker = &broker_;
    ctx_.pid = 12;
    ctx_.worker_id = 3;
  }

  // Runs the request to its answer.
  Reply rest(HttpMethod method, std::string_view target, std::string_view body = {}) {
    HttpRequest req;
    req.method = method;
    req.setTarget(target);
    req.body = body;
    Reply r;
    asio::io_context io;
    RouteMatch match = matchRoute(req.path);  // the coroutine keeps a reference: it must outlive io.run()
    asio::co_spawn(io, servePubSubRest(ctx_, req, match, r), asio::detached);
    io.run();
    return r;
  }

  Config config_;
  GatewayContext ctx_{config_};
  FakeBroker broker_;
};

TEST_F(RestHandlersTest, Healthz) {
  HttpRequest req;
  Reply r;
  serveHealthz(ctx_, req, r);
  EXPECT_EQ(r.body, R"({"status":"ok","pid":12,"worker":3})");
  req.method = HttpMethod::Post;
  r = Reply{};
  serveHealthz(ctx_, req, r);
  EXPECT_EQ(r.status, 405);
  EXPECT_EQ(r.extra_headers, "Allow: GET, HEAD\r\n");
}

TEST_F(RestHandlersTest, NotFoundQuotesAtMost200BytesOfThePath) {
  Reply r;
  setNotFound(r, "/" + std::string(300, 'x'));
  EXPECT_EQ(r.status, 404);
  EXPECT_NE(r.body.find("/" + std::string(199, 'x') + "\""), std::string::npos);
  EXPECT_EQ(r.body.find(std::string(200, 'x')), std::string::npos);
}

TEST_F(RestHandlersTest, Methods) {
  Reply r = rest(HttpMethod::Get, "/v1/publish/a");
  EXPECT_EQ(r.status, 405);
  EXPECT_EQ(r.extra_headers, "Allow: POST\r\n");
  EXPECT_NE(r.body.find("/v1/publish/ answers POST"), std::string::npos);
  r = rest(HttpMethod::Post, "/v1/history/a");
  EXPECT_EQ(r.status, 405);
  EXPECT_EQ(r.extra_headers, "Allow: GET, HEAD\r\n");
  EXPECT_NE(r.body.find("/v1/history/ answers GET"), std::string::npos);
  r = rest(HttpMethod::Other, "/v1/channels/a");
  EXPECT_NE(r.body.find("/v1/channels/ answers GET"), std::string::npos);
}

TEST_F(RestHandlersTest, ChannelsArePercentDecodedPathsNotQueries) {
  EXPECT_EQ(rest(HttpMethod::Get, "/v1/channels/chat%2Froom").status, 200);
  EXPECT_EQ(broker_.asked_channel, "/chat/room");
  EXPECT_EQ(rest(HttpMethod::Get, "/v1/channels/a+b").status, 400);  // '+' stays '+': not a channel character
  EXPECT_EQ(rest(HttpMethod::Get, "/v1/channels/").status, 200);  // the channel "/"
  EXPECT_EQ(broker_.asked_channel, "/");
  EXPECT_EQ(rest(HttpMethod::Get, "/v1/channels/a%00").status, 400);
  EXPECT_EQ(rest(HttpMethod::Get, "/v1/channels/a%2").status, 400);
}

TEST_F(RestHandlersTest, PublishFromLoopbackOnlyWithoutAToken) {
  // The request has no socket here, so no loopback peer: refused.
  Reply r = rest(HttpMethod::Post, "/v1/publish/a", R"({"x": 1})");
  EXPECT_EQ(r.status, 403);
  EXPECT_TRUE(broker_.published.empty());
  // With the publish token it goes through, compacted.
  config_.gateway.publish_token = "secret";
  std::vector<HeaderField> fields{{"Authorization", "Bearer secret"}};
  HttpRequest req;
  req.method = HttpMethod::Post;
  req.setTarget("/v1/publish/a");
  req.body = R"({"x": 1})";
  req.fields = fields;
  Reply ok;
  asio::io_context io;
  RouteMatch match = matchRoute(req.path);
  asio::co_spawn(io, servePubSubRest(ctx_, req, match, ok), asio::detached);
  io.run();
  EXPECT_EQ(ok.body, R"({"channel":"/a","position":"0123456789.1"})");
  ASSERT_EQ(broker_.published.size(), 1u);
  EXPECT_EQ(broker_.published[0], (std::pair<std::string, std::string>{"/a", R"({"x":1})"}));
}

TEST_F(RestHandlersTest, HistoryParameters) {
  Reply r = rest(HttpMethod::Get, "/v1/history/a?since=0123456789.1&limit=5");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(broker_.asked_since, (Position{"0123456789", 1}));
  EXPECT_EQ(broker_.asked_limit, 5u);
  EXPECT_EQ(r.body,
            R"({"channel":"/a","position":"0123456789.2","recovered":true,"messages":[)"
            R"({"channel":"/a","position":"0123456789.2","data":{"n":2}}]})");
  r = rest(HttpMethod::Get, "/v1/history/a");
  EXPECT_FALSE(broker_.asked_since);
  EXPECT_EQ(broker_.asked_limit, config_.history.size);
  for (const char* bad : {"limit=0", "limit=-1", "limit=5x", "since=nope", "since=%zz"})
    EXPECT_EQ(rest(HttpMethod::Get, std::string("/v1/history/a?") + bad).status, 400) << bad;
}

TEST_F(RestHandlersTest, ABrokerThatDoesNotAnswerIs503) {
  broker_.up = false;
  Reply r = rest(HttpMethod::Get, "/v1/channels/a");
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(r.extra_headers, "Retry-After: 1\r\n");
  broker_.up = true;
  r = rest(HttpMethod::Get, "/v1/channels/a");
  EXPECT_EQ(r.body, R"({"channel":"/a","position":"0123456789.4","subscribers":3})");
  ctx_.broker = nullptr;
  EXPECT_EQ(rest(HttpMethod::Get, "/v1/channels/a").status, 503);
}

}  // namespace
}  // namespace dingo
