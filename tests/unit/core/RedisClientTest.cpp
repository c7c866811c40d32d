// RedisClient against a real redis-server (Debian's, started here on a free loopback
// port with no persistence): pipelining, errors, pub/sub, deadlines, reconnects, bounds.
#include "core/RedisClient.h"

#include <gtest/gtest.h>

#include "core/Asio.h"
#include "tests/unit/core/RedisTestServer.h"

using namespace dingo;
using namespace dingo::test;
using namespace std::chrono_literals;

namespace {

class RedisClientTest : public ::testing::Test {
 protected:
  RedisOptions options(uint16_t port) {
    RedisOptions o;
    o.port = port;
    o.reply_timeout = 500ms;
    o.backoff_min = 10ms;
    o.backoff_max = 100ms;
    return o;
  }

  // Runs the loop until `done()` or `limit` passes.
  template <typename Pred>
  bool runUntil(Pred done, std::chrono::milliseconds limit = 5000ms) {
    auto until = std::chrono::steady_clock::now() + limit;
    while (!done()) {
      if (std::chrono::steady_clock::now() > until) return false;
      io_.restart();
      io_.run_for(5ms);
    }
    return true;
  }

  // One command, waited for: the reply or the error.
  std::pair<std::optional<RedisReply>, std::string> call(RedisClient& c, std::vector<std::string> args) {
    bool done = false;
    std::optional<RedisReply> reply;
    std::string error;
    c.command(std::move(args), [&](const RedisReply* r, std::string_view e) {
      done = true;
      if (r) reply = *r;
      error = e;
    });
    EXPECT_TRUE(runUntil([&] { return done; }));
    return {reply, error};
  }

  asio::io_context io_;
  uint16_t port_ = freePort();
};

}  // namespace

TEST_F(RedisClientTest, PipelinedCommandsAreAnsweredInOrder) {
  RedisServer server(port_);
  RedisClient c(io_, options(port_));
  c.start();
  ASSERT_TRUE(runUntil([&] { return c.connected(); }));
  std::vector<int64_t> got;
  for (int i = 0; i < 1000; ++i)
    c.command({"INCR", "n"}, [&](const RedisReply* r, std::string_view) { got.push_back(r ? r->integer : -1); });
  EXPECT_EQ(c.inFlight(), 1000u);  // all written before any reply is read
  ASSERT_TRUE(runUntil([&] { return got.size() == 1000; }));
  for (int i = 0; i < 1000; ++i) ASSERT_EQ(got[static_cast<size_t>(i)], i + 1);
  auto [value, error] = call(c, {"GET", "n"});
  ASSERT_TRUE(value);
  EXPECT_EQ(value->str, "1000");
}

TEST_F(RedisClientTest, RedisErrorsAreRepliesOfTypeError) {
  RedisServer server(port_);
  RedisClient c(io_, options(port_));
  c.start();
  ASSERT_TRUE(runUntil([&] { return c.connected(); }));
  call(c, {"SET", "s", "text"});
  auto [reply, error] = call(c, {"INCR", "s"});
  ASSERT_TRUE(reply);
  EXPECT_TRUE(reply->isError());
  EXPECT_NE(reply->str.find("not an integer"), std::string::npos);
  // Binary-safe arguments and replies.
  std::string binary("a\0b\r\n$3\r\n", 9);
  call(c, {"SET", "b", binary});
  EXPECT_EQ(call(c, {"GET", "b"}).first->str, binary);
}

TEST_F(RedisClientTest, PubSubMessagesGoToThePushHandler) {
  RedisServer server(port_);
  RedisClient sub(io_, options(port_)), pub(io_, options(port_));
  std::vector<std::string> messages;
  sub.setPushHandler([&](const RedisReply& m) { messages.push_back(m.elements[1].str + "=" + m.elements[2].str); });
  sub.start();
  pub.start();
  ASSERT_TRUE(runUntil([&] { return sub.connected() && pub.connected(); }));
  bool subscribed = false;
  sub.command({"SUBSCRIBE", "a", "b"}, [&](const RedisReply* r, std::string_view) { subscribed = r != nullptr; }, 2);
  ASSERT_TRUE(runUntil([&] { return subscribed; }));
  call(pub, {"PUBLISH", "a", "1"});
  call(pub, {"PUBLISH", "b", "2"});
  call(pub, {"PUBLISH", "c", "3"});  // not subscribed
  ASSERT_TRUE(runUntil([&] { return messages.size() == 2; }));
  EXPECT_EQ(messages, (std::vector<std::string>{"a=1", "b=2"}));
}

TEST_F(RedisClientTest, AStuckServerFailsCommandsAtTheDeadlineAndIsReconnected) {
  RedisServer server(port_);
  RedisClient c(io_, options(port_));
  std::vector<bool> states;
  c.setStateHandler([&](bool up, std::string_view) { states.push_back(up); });
  c.start();
  ASSERT_TRUE(runUntil([&] { return c.connected(); }));
  server.pause();
  auto start = std::chrono::steady_clock::now();
  auto [reply, error] = call(c, {"PING"});
  EXPECT_FALSE(reply);
  EXPECT_NE(error.find("no reply within"), std::string::npos) << error;
  EXPECT_GE(std::chrono::steady_clock::now() - start, 450ms);
  EXPECT_FALSE(c.connected());
  server.resume();
  ASSERT_TRUE(runUntil([&] { return c.connected(); }));
  EXPECT_EQ(call(c, {"PING"}).first->str, "PONG");
  EXPECT_EQ(states, (std::vector<bool>{true, false, true}));
}

// A connection that fails with a write still in progress (a command too big for the
// socket buffers, to a server that stopped reading) leaves nothing of that write behind:
// the next connection's commands are written and answered.
TEST_F(RedisClientTest, AWriteCutShortByAFailureDoesNotHoldBackTheNextConnection) {
  RedisServer server(port_);
  RedisClient c(io_, options(port_));
  c.start();
  ASSERT_TRUE(runUntil([&] { return c.connected(); }));
  server.pause();
  auto [reply, error] = call(c, {"SET", "big", std::string(64 * 1024 * 1024, 'x')});
  EXPECT_FALSE(reply);
  EXPECT_NE(error.find("no reply within"), std::string::npos) << error;
  server.resume();
  ASSERT_TRUE(runUntil([&] { return c.connected(); }));
  auto [pong, why] = call(c, {"PING"});
  ASSERT_TRUE(pong) << why;
  EXPECT_EQ(pong->str, "PONG");
}

TEST_F(RedisClientTest, ARestartedServerIsFoundAgainAndWaitingCommandsFail) {
  auto server = std::make_unique<RedisServer>(port_);
  RedisClient c(io_, options(port_));
  c.start();
  ASSERT_TRUE(runUntil([&] { return c.connected(); }));
  server->pause();
  std::string error;
  c.command({"PING"}, [&](const RedisReply*, std::string_view e) { error = e; });
  server->kill();  // with the command unanswered
  ASSERT_TRUE(runUntil([&] { return !error.empty(); }));
  EXPECT_FALSE(c.connected());
  // Commands while down fail at once, without waiting.
  EXPECT_EQ(call(c, {"PING"}).second, "not connected to Redis");
  server = std::make_unique<RedisServer>(port_);
  ASSERT_TRUE(runUntil([&] { return c.connected(); }));
  EXPECT_EQ(call(c, {"PING"}).first->str, "PONG");
}

TEST_F(RedisClientTest, AuthenticatesWithAPassword) {
  RedisServer server(port_, "s3cret");
  RedisOptions wrong = options(port_);
  wrong.password = "nope";
  RedisClient bad(io_, wrong);
  bad.start();
  EXPECT_FALSE(runUntil([&] { return bad.connected(); }, 300ms));
  RedisOptions right = options(port_);
  right.password = "s3cret";
  RedisClient good(io_, right);
  good.start();
  ASSERT_TRUE(runUntil([&] { return good.connected(); }));
  EXPECT_EQ(call(good, {"PING"}).first->str, "PONG");
}

TEST_F(RedisClientTest, AReplyOverTheBoundClosesTheConnection) {
  RedisServer server(port_);
  RedisOptions o = options(port_);
  o.max_reply_bytes = 64 * 1024;
  RedisClient c(io_, o);
  c.start();
  ASSERT_TRUE(runUntil([&] { return c.connected(); }));
  call(c, {"SET", "big", std::string(1024 * 1024, 'x')});
  auto [reply, error] = call(c, {"GET", "big"});
  EXPECT_FALSE(reply);
  EXPECT_NE(error.find("a reply over 65536 bytes"), std::string::npos) << error;
  ASSERT_TRUE(runUntil([&] { return c.connected(); }));  // and it comes back
  EXPECT_EQ(call(c, {"STRLEN", "big"}).first->integer, 1024 * 1024);
}

TEST_F(RedisClientTest, InFlightCommandsAreBounded) {
  RedisServer server(port_);
  RedisOptions o = options(port_);
  o.max_in_flight = 10;
  RedisClient c(io_, o);
  c.start();
  ASSERT_TRUE(runUntil([&] { return c.connected(); }));
  int ok = 0, refused = 0;
  for (int i = 0; i < 15; ++i)
    c.command({"PING"}, [&](const RedisReply* r, std::string_view) { ++(r ? ok : refused); });
  ASSERT_TRUE(runUntil([&] { return ok + refused == 15; }));
  EXPECT_EQ(ok, 10);
  EXPECT_EQ(refused, 5);
}
