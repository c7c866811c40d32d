// NodeRegistry: entries parsed and bounded, the /v1/nodes document built the same on
// every host, and, against a real redis-server, hosts that register, withdraw, and die
// (their entry expires in Redis's clock and is deleted by the next reader).
#include "supervisor/NodeRegistry.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "core/Asio.h"
#include "core/RedisClient.h"
#include "tests/unit/core/RedisTestServer.h"

using namespace dingo;
using namespace dingo::test;

namespace {

std::vector<NodeEndpoint> twoEndpoints() { return {{"10.0.0.1", 443, true}, {"10.0.0.1", 80, false}}; }

// ---- alone -------------------------------------------------------------------------------

TEST(NodeRegistryParse, AnEntryWrittenParsesBack) {
  std::string tail = NodeRegistry::encodeEntryTail(twoEndpoints(), "web-1", 42);
  auto parsed = NodeRegistry::parseEntry(R"({"expires_ms":1764790000000,)" + tail);
  ASSERT_TRUE(parsed);
  EXPECT_EQ(*parsed, twoEndpoints());
  auto j = nlohmann::json::parse(R"({"expires_ms":1,)" + tail);
  EXPECT_EQ(j["hostname"], "web-1");
  EXPECT_EQ(j["pid"], 42);
  // IPv6 too.
  auto v6 = NodeRegistry::parseEntry(R"({"expires_ms":1,)" +
                                     NodeRegistry::encodeEntryTail({{"2001:db8::1", 8443, true}}, "h", 1));
  ASSERT_TRUE(v6);
  EXPECT_EQ(v6->at(0).host, "2001:db8::1");
}

TEST(NodeRegistryParse, MalformedOrOversizedEntriesAreRefused) {
  for (const char* bad : {
           "",
           "not json",
           "[1,2]",
           R"({"endpoints":[]})",                                                      // no expiry
           R"({"expires_ms":"soon","endpoints":[]})",                                  // expiry not a number
           R"({"expires_ms":1,"endpoints":{}})",                                       // not a list
           R"({"expires_ms":1,"endpoints":[{"host":"10.0.0.1","port":0,"tls":true}]})",      // port 0
           R"({"expires_ms":1,"endpoints":[{"host":"10.0.0.1","port":70000,"tls":true}]})",  // port too big
           R"({"expires_ms":1,"endpoints":[{"host":"10.0.0.1","port":-1,"tls":true}]})",
           R"({"expires_ms":1,"endpoints":[{"host":"example.com","port":443,"tls":true}]})",  // not numeric
           R"({"expires_ms":1,"endpoints":[{"host":"10.0.0.1","port":443}]})",                // no tls
           R"({"expires_ms":1,"endpoints":[{"host":"10.0.0.1","port":443,"tls":1}]})",
           R"({"expires_ms":1,"endpoints":["10.0.0.1:443"]})",
       })
    EXPECT_FALSE(NodeRegistry::parseEntry(bad)) << bad;

  std::vector<NodeEndpoint> many(NodeRegistry::kMaxEndpointsPerHost + 1, NodeEndpoint{"10.0.0.1", 1, true});
  EXPECT_FALSE(NodeRegistry::parseEntry(R"({"expires_ms":1,)" + NodeRegistry::encodeEntryTail(many, "h", 1)));
  many.pop_back();
  EXPECT_TRUE(NodeRegistry::parseEntry(R"({"expires_ms":1,)" + NodeRegistry::encodeEntryTail(many, "h", 1)));
  std::string huge = R"({"expires_ms":1,"endpoints":[],"hostname":")" +
                     std::string(NodeRegistry::kMaxEntryBytes, 'x') + R"("})";
  EXPECT_FALSE(NodeRegistry::parseEntry(huge));
}

TEST(NodeRegistryParse, TheDocumentIsTheSameOnEveryHostForTheSameList) {
  using namespace std::chrono_literals;
  std::vector<NodeEndpoint> a = {{"10.0.0.2", 443, true}, {"10.0.0.1", 443, true}, {"10.0.0.1", 80, false}};
  std::vector<NodeEndpoint> b = {{"10.0.0.1", 80, false}, {"10.0.0.1", 443, true}, {"10.0.0.2", 443, true},
                                 {"10.0.0.2", 443, true}};  // another order, a duplicate
  std::string doc = NodeRegistry::buildDocument(a, 600s);
  EXPECT_EQ(doc, NodeRegistry::buildDocument(b, 600s));
  auto j = nlohmann::json::parse(doc);
  EXPECT_EQ(j["ttl_s"], 600);
  EXPECT_EQ(j["nodes"], nlohmann::json::parse(R"([{"host":"10.0.0.1","port":80,"tls":false},
                                                   {"host":"10.0.0.1","port":443,"tls":true},
                                                   {"host":"10.0.0.2","port":443,"tls":true}])"));
  ASSERT_TRUE(j["version"].is_number_unsigned());
  EXPECT_NE(j["version"], 0u);
  EXPECT_LT(j["version"].get<uint64_t>(), uint64_t{1} << 53);  // exact as a JSON number anywhere
  // The version changes with the list, and only with it.
  a.pop_back();
  auto j2 = nlohmann::json::parse(NodeRegistry::buildDocument(a, 600s));
  EXPECT_NE(j2["version"], j["version"]);
  EXPECT_EQ(nlohmann::json::parse(NodeRegistry::buildDocument(b, 60s))["version"], j["version"]);
}

TEST(NodeRegistryParse, AReplyKeepsTheGoodEntriesSortedByHost) {
  RedisReply reply;
  reply.type = RedisReply::Type::Array;
  auto str = [](std::string s) {
    RedisReply r;
    r.type = RedisReply::Type::String;
    r.str = std::move(s);
    return r;
  };
  std::string good = R"({"expires_ms":1,)" + NodeRegistry::encodeEntryTail(twoEndpoints(), "h", 1);
  reply.elements = {str("zz"), str(good), str("bad"), str("{}"), str("aa"), str(good), str("odd")};
  size_t malformed = 0;
  auto entries = NodeRegistry::parseReply(reply, malformed);
  EXPECT_EQ(malformed, 1u);
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries[0].first, "aa");
  EXPECT_EQ(entries[1].first, "zz");
  EXPECT_EQ(entries[1].second, twoEndpoints());
  RedisReply error;
  error.type = RedisReply::Type::Error;
  EXPECT_TRUE(NodeRegistry::parseReply(error, malformed).empty());
  EXPECT_EQ(malformed, 1u);
}

TEST(NodeRegistryParse, AHostAdvertisesItsNodesEndpointsElseItsListeners) {
  Config cfg = parseConfig(R"(
[[listen]]
address = "127.0.0.1:8080"
[[listen]]
address = "[::1]:8443"
[nodes]
heartbeat = "500ms"
ttl = "1m"
)",
                           "");
  NodeRegistryOptions o = nodeRegistryOptions(cfg);
  EXPECT_EQ(o.endpoints, (std::vector<NodeEndpoint>{{"127.0.0.1", 8080, false}, {"::1", 8443, false}}));
  EXPECT_EQ(o.heartbeat, std::chrono::milliseconds(500));
  EXPECT_EQ(o.ttl, std::chrono::minutes(1));
  cfg = parseConfig(R"(
[[listen]]
address = "0.0.0.0:8080"
[bus]
engine = "redis"
redis = "127.0.0.1:6379"
[nodes]
endpoints = ["203.0.113.7:443", {address = "203.0.113.7:80", tls = false}]
)",
                    "");
  EXPECT_EQ(nodeRegistryOptions(cfg).endpoints,
            (std::vector<NodeEndpoint>{{"203.0.113.7", 443, true}, {"203.0.113.7", 80, false}}));
}

// ---- against Redis -----------------------------------------------------------------------

class NodeRegistryRedisTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = std::make_unique<RedisServer>(port_);
    RedisOptions o;
    o.port = port_;
    o.reply_timeout = 500ms;
    client_ = std::make_unique<RedisClient>(io_, o);
    client_->start();
    ASSERT_TRUE(runUntil([&] { return client_->connected(); }));
  }

  struct Host {
    std::unique_ptr<NodeRegistry> registry;
    int changes = 0;
  };

  std::unique_ptr<Host> host(const std::string& id, std::vector<NodeEndpoint> endpoints) {
    auto h = std::make_unique<Host>();
    NodeRegistryOptions o;
    o.endpoints = std::move(endpoints);
    o.heartbeat = 100ms;  // entries live 500 ms
    o.ttl = 60s;
    Host* raw = h.get();
    auto command = [this](std::vector<std::string> args, RedisClient::Done done) {
      client_->command(std::move(args), std::move(done));
    };
    h->registry = std::make_unique<NodeRegistry>(io_, command, "t:{nodes}", id, std::move(o),
                                                 [raw](const std::string&) { ++raw->changes; });
    h->registry->start();
    return h;
  }

  static std::vector<std::string> listed(const NodeRegistry& r) {
    std::vector<std::string> out;
    auto document = nlohmann::json::parse(r.document());
    for (const auto& n : document["nodes"])
      out.push_back(fmt::format("{}:{}", n["host"].get<std::string>(), n["port"].get<int>()));
    return out;
  }

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

  void runFor(std::chrono::milliseconds d) {
    auto until = std::chrono::steady_clock::now() + d;
    runUntil([&] { return std::chrono::steady_clock::now() >= until; }, d + 100ms);
  }

  RedisReply raw(std::vector<std::string> args) {
    std::optional<RedisReply> got;
    client_->command(std::move(args), [&](const RedisReply* r, std::string_view) { got = r ? *r : RedisReply{}; });
    EXPECT_TRUE(runUntil([&] { return got.has_value(); }));
    return got.value_or(RedisReply{});
  }

  asio::io_context io_;
  uint16_t port_ = freePort();
  std::unique_ptr<RedisServer> server_;
  std::unique_ptr<RedisClient> client_;
};

TEST_F(NodeRegistryRedisTest, HostsSeeEachOtherAndAWithdrawnHostLeavesAtOnce) {
  auto a = host("host-a", {{"127.0.0.1", 8001, false}});
  EXPECT_EQ(listed(*a->registry), (std::vector<std::string>{"127.0.0.1:8001"}));  // itself, before any read
  EXPECT_EQ(a->registry->hosts(), 1u);
  auto b = host("host-b", {{"127.0.0.2", 8002, false}});
  std::vector<std::string> both = {"127.0.0.1:8001", "127.0.0.2:8002"};
  ASSERT_TRUE(runUntil([&] { return listed(*a->registry) == both && listed(*b->registry) == both; }));
  EXPECT_EQ(a->registry->document(), b->registry->document());  // the same bytes on every host
  EXPECT_EQ(a->registry->hosts(), 2u);
  // The hash outlives its entries by no more than one lifetime.
  auto ttl = raw({"PTTL", "t:{nodes}"});
  EXPECT_GT(ttl.integer, 0);
  EXPECT_LE(ttl.integer, 500);

  int changes = a->changes;
  b->registry->withdraw();
  EXPECT_EQ(listed(*b->registry), (std::vector<std::string>{"127.0.0.1:8001"}));  // no longer itself
  EXPECT_EQ(raw({"HEXISTS", "t:{nodes}", "host-b"}).integer, 0);  // deleted at once, not expired
  ASSERT_TRUE(runUntil([&] { return listed(*a->registry) == std::vector<std::string>{"127.0.0.1:8001"}; }, 300ms));
  EXPECT_GT(a->changes, changes);
  runFor(300ms);  // a withdrawn host reads on but never writes itself back
  EXPECT_EQ(raw({"HEXISTS", "t:{nodes}", "host-b"}).integer, 0);
  EXPECT_EQ(listed(*b->registry), (std::vector<std::string>{"127.0.0.1:8001"}));
}

TEST_F(NodeRegistryRedisTest, AHostThatDiesIsDroppedAfterItsEntryExpires) {
  auto a = host("host-a", {{"127.0.0.1", 8001, false}});
  auto b = host("host-b", {{"127.0.0.2", 8002, true}});
  ASSERT_TRUE(runUntil([&] { return a->registry->hosts() == 2; }));
  b.reset();  // dies: no withdraw, no more heartbeats
  auto died = std::chrono::steady_clock::now();
  ASSERT_TRUE(runUntil([&] { return a->registry->hosts() == 1; }, 2000ms));
  auto after = std::chrono::steady_clock::now() - died;
  EXPECT_GE(after, 300ms) << "dropped before its entry could have expired";
  EXPECT_LE(after, 900ms) << "an entry lives 5 heartbeats (500 ms); read every 100 ms";
  EXPECT_EQ(listed(*a->registry), (std::vector<std::string>{"127.0.0.1:8001"}));
  EXPECT_EQ(raw({"HEXISTS", "t:{nodes}", "host-b"}).integer, 0);  // the reader deleted it
}

TEST_F(NodeRegistryRedisTest, MalformedAndExpiredEntriesAreDeletedAndLeftOut) {
  raw({"HSET", "t:{nodes}", "junk", "hello", "old", R"({"expires_ms":1,"endpoints":[]})", "bad-endpoints",
       R"({"expires_ms":99999999999999,"endpoints":[{"host":"name.example","port":1,"tls":true}]})"});
  auto a = host("host-a", {{"127.0.0.1", 8001, false}});
  ASSERT_TRUE(runUntil([&] { return raw({"HEXISTS", "t:{nodes}", "host-a"}).integer == 1; }));
  runFor(150ms);
  EXPECT_EQ(raw({"HEXISTS", "t:{nodes}", "junk"}).integer, 0);
  EXPECT_EQ(raw({"HEXISTS", "t:{nodes}", "old"}).integer, 0);
  // Well-formed for Redis (an expiry) but not for us: left out of the list, left in Redis.
  EXPECT_EQ(raw({"HEXISTS", "t:{nodes}", "bad-endpoints"}).integer, 1);
  EXPECT_EQ(listed(*a->registry), (std::vector<std::string>{"127.0.0.1:8001"}));
  EXPECT_EQ(a->registry->hosts(), 1u);
}

TEST_F(NodeRegistryRedisTest, WhileRedisIsAwayTheLastListStays) {
  auto a = host("host-a", {{"127.0.0.1", 8001, false}});
  auto b = host("host-b", {{"127.0.0.2", 8002, false}});
  ASSERT_TRUE(runUntil([&] { return a->registry->hosts() == 2; }));
  std::string before = a->registry->document();
  server_->pause();  // replies stop: every heartbeat times out
  runFor(1200ms);
  EXPECT_EQ(a->registry->document(), before);
  server_->resume();
  b.reset();
  ASSERT_TRUE(runUntil([&] { return a->registry->hosts() == 1; }, 5000ms));
}

TEST_F(NodeRegistryRedisTest, AHostRegistersAsSoonAsItsConnectionIsUpNotAHeartbeatLater) {
  RedisOptions o;
  o.port = port_;
  RedisClient late(io_, o);  // not connected yet when the registry starts, as at start-up
  NodeRegistryOptions options;
  options.endpoints = {{"127.0.0.1", 8001, false}};
  options.heartbeat = 3s;
  auto command = [&](std::vector<std::string> args, RedisClient::Done done) {
    late.command(std::move(args), std::move(done));
  };
  NodeRegistry registry(io_, command, "t:{nodes}", "host-a", options, nullptr);
  registry.start();
  runFor(50ms);  // the first heartbeat has failed: not connected
  auto began = std::chrono::steady_clock::now();
  late.start();
  ASSERT_TRUE(runUntil([&] { return raw({"HEXISTS", "t:{nodes}", "host-a"}).integer == 1; }, 2500ms));
  EXPECT_LT(std::chrono::steady_clock::now() - began, 1s);
  late.stop();
}

}  // namespace
