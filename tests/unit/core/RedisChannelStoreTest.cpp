// RedisChannelStore against a real redis-server: positions, history and its trimming,
// resumes, a Redis that lost its data, reads that create nothing, the message on pub/sub.
#include "core/RedisChannelStore.h"

#include <gtest/gtest.h>

#include "core/Asio.h"
#include "core/RedisClient.h"
#include "core/RedisRing.h"
#include "tests/unit/core/RedisTestServer.h"

using namespace dingo;
using namespace dingo::test;

namespace {

class RedisChannelStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = std::make_unique<RedisServer>(port_);
    RedisOptions o;
    o.port = port_;
    client_ = std::make_unique<RedisClient>(io_, o);
    client_->start();
    ASSERT_TRUE(runUntil([&] { return client_->connected(); }));
    RedisChannelOptions co;
    co.history_size = 5;
    ring_ = std::make_unique<RedisRing>(io_, std::vector<std::string>{fmt::format("127.0.0.1:{}", port_)}, RedisOptions{});
    ring_->start({});
    ASSERT_TRUE(runUntil([&] { return ring_->connected(); }));
    store_ = std::make_unique<RedisChannelStore>(*ring_, co);
  }

  template <typename Pred>
  bool runUntil(Pred done) {
    auto until = std::chrono::steady_clock::now() + 5s;
    while (!done()) {
      if (std::chrono::steady_clock::now() > until) return false;
      io_.restart();
      io_.run_for(5ms);
    }
    return true;
  }

  Position publish(const std::string& channel, const std::string& data) {
    std::optional<Position> got;
    std::string error = "none";
    store_->publish(channel, data, [&](const Position* p, std::string_view e) {
      if (p) got = *p;
      error = e;
    });
    EXPECT_TRUE(runUntil([&] { return got || error != "none"; }));
    EXPECT_TRUE(got) << error;
    return got.value_or(Position{});
  }

  Catchup history(const std::string& channel, std::optional<Position> since, size_t limit = 100) {
    std::optional<Catchup> got;
    std::string error = "none";
    store_->history(channel, since, limit, [&](const Catchup* c, std::string_view e) {
      if (c) got = *c;
      error = e;
    });
    EXPECT_TRUE(runUntil([&] { return got || error != "none"; }));
    EXPECT_TRUE(got) << error;
    return got.value_or(Catchup{});
  }

  RedisReply raw(std::vector<std::string> args) {
    std::optional<RedisReply> got;
    client_->command(std::move(args), [&](const RedisReply* r, std::string_view) { got = r ? *r : RedisReply{}; });
    EXPECT_TRUE(runUntil([&] { return got.has_value(); }));
    return got.value_or(RedisReply{});
  }

  static std::vector<uint64_t> seqs(const Catchup& c) {
    std::vector<uint64_t> out;
    for (const auto& m : c.messages) out.push_back(m.seq);
    return out;
  }

  asio::io_context io_;
  uint16_t port_ = freePort();
  std::unique_ptr<RedisServer> server_;
  std::unique_ptr<RedisClient> client_;
  std::unique_ptr<RedisRing> ring_;
  std::unique_ptr<RedisChannelStore> store_;
};

}  // namespace

TEST_F(RedisChannelStoreTest, PublishesNumberMessagesInOneEpoch) {
  Position a = publish("/rooms/1", R"({"n":1})");
  Position b = publish("/rooms/1", R"({"n":2})");
  EXPECT_EQ(a.seq, 1u);
  EXPECT_EQ(b.seq, 2u);
  EXPECT_EQ(a.epoch, b.epoch);
  EXPECT_EQ(a.epoch.size(), Position::kEpochLength);
  EXPECT_NE(a.epoch[0], 'z');
  EXPECT_NE(publish("/rooms/2", "1").epoch, a.epoch);  // each channel its own
  // Keys hash-tagged by channel, with TTLs.
  EXPECT_GT(raw({"PTTL", "dingo:{/rooms/1}:s"}).integer, 0);
  EXPECT_GT(raw({"PTTL", "dingo:{/rooms/1}:m"}).integer, raw({"PTTL", "dingo:{/rooms/1}:s"}).integer);
}

TEST_F(RedisChannelStoreTest, AResumeGetsWhatWasMissedWhileItIsInHistory) {
  Position p1 = publish("/c", "1");
  for (int i = 2; i <= 4; ++i) publish("/c", std::to_string(i));
  Catchup c = history("/c", p1);
  EXPECT_TRUE(c.recovered);
  EXPECT_EQ(seqs(c), (std::vector<uint64_t>{2, 3, 4}));
  EXPECT_EQ(*c.messages[0].data, "2");
  EXPECT_EQ(c.position.seq, 4u);
  // Up to date: recovered, nothing to send.
  Catchup now = history("/c", c.position);
  EXPECT_TRUE(now.recovered);
  EXPECT_TRUE(now.messages.empty());
  // A limit cuts the answer, from the oldest.
  EXPECT_EQ(seqs(history("/c", p1, 2)), (std::vector<uint64_t>{2, 3}));
  // Ahead of the channel, or from another epoch: not recovered.
  EXPECT_FALSE(history("/c", Position{p1.epoch, 99}).recovered);
  EXPECT_FALSE(history("/c", Position{"abcdefghij", 1}).recovered);
}

TEST_F(RedisChannelStoreTest, HistoryIsTrimmedToItsSize) {
  Position first = publish("/t", "1");
  for (int i = 2; i <= 8; ++i) publish("/t", std::to_string(i));
  EXPECT_EQ(raw({"XLEN", "dingo:{/t}:s"}).integer, 5);
  EXPECT_FALSE(history("/t", first).recovered);  // 2 and 3 are gone
  Catchup c = history("/t", Position{first.epoch, 3});
  EXPECT_TRUE(c.recovered);
  EXPECT_EQ(seqs(c), (std::vector<uint64_t>{4, 5, 6, 7, 8}));
  // Without since: the newest, oldest first, recovered false.
  Catchup newest = history("/t", std::nullopt, 2);
  EXPECT_FALSE(newest.recovered);
  EXPECT_EQ(seqs(newest), (std::vector<uint64_t>{7, 8}));
}

TEST_F(RedisChannelStoreTest, ARedisThatLostItsDataStartsANewEpoch) {
  Position before = publish("/lost", "1");
  raw({"FLUSHALL"});
  raw({"SCRIPT", "FLUSH"});  // and its scripts: EVALSHA falls back to EVAL
  Position after = publish("/lost", "2");
  EXPECT_NE(after.epoch, before.epoch);
  EXPECT_EQ(after.seq, 1u);
  Catchup c = history("/lost", before);
  EXPECT_FALSE(c.recovered);
  EXPECT_TRUE(c.messages.empty());
  EXPECT_EQ(c.position, after);
}

TEST_F(RedisChannelStoreTest, ReadsOfAnAbsentChannelCreateNothing) {
  Catchup c = history("/nobody", std::nullopt, 10);
  EXPECT_EQ(c.position.seq, 0u);
  EXPECT_EQ(c.position.epoch[0], 'z');
  EXPECT_EQ(raw({"DBSIZE"}).integer, 0);
  // Resuming from the absent position: exact while the channel stays absent ...
  EXPECT_TRUE(history("/nobody", c.position).recovered);
  // ... and once it is born (within a TTL of that position), from its first message.
  publish("/nobody", "1");
  publish("/nobody", "2");
  Catchup later = history("/nobody", c.position);
  EXPECT_TRUE(later.recovered);
  EXPECT_EQ(seqs(later), (std::vector<uint64_t>{1, 2}));
}

TEST_F(RedisChannelStoreTest, PubSubCarriesThePositionWithTheData) {
  RedisOptions o;
  o.port = port_;
  RedisClient sub(io_, o);
  std::vector<std::string> got;
  sub.setPushHandler([&](const RedisReply& m) { got.push_back(m.elements[2].str); });
  sub.start();
  ASSERT_TRUE(runUntil([&] { return sub.connected(); }));
  bool subscribed = false;
  sub.command({"SUBSCRIBE", store_->pubsubChannel("/p")}, [&](const RedisReply* r, std::string_view) { subscribed = r; });
  ASSERT_TRUE(runUntil([&] { return subscribed; }));
  Position p = publish("/p", R"({"x":[1,2]})");
  ASSERT_TRUE(runUntil([&] { return !got.empty(); }));
  auto parsed = RedisChannelStore::parseMessage(got[0]);
  ASSERT_TRUE(parsed);
  EXPECT_EQ(parsed->first, p);
  EXPECT_EQ(parsed->second, R"({"x":[1,2]})");
  EXPECT_FALSE(RedisChannelStore::parseMessage("nospace"));
  EXPECT_FALSE(RedisChannelStore::parseMessage("BAD.1 {}"));
}
