// gateway/Polling: a long-poll session's cache entry between the hub's subscribe result
// and the poll's answer, against a fake broker that answers when the test says. Live
// messages may reach the entry before the poll that built it answers (its coroutine
// resumes a turn later, and the hub's messages follow its results on one socket).
#include "gateway/Polling.h"

#include <gtest/gtest.h>

#include <deque>
#include <string>
#include <vector>

#include "core/Config.h"
#include "gateway/Broker.h"
#include "gateway/Context.h"

namespace dingo {
namespace {

// Holds each subscribe's callback until answer() runs it.
class FakeBroker final : public Broker {
 public:
  void setSink(BrokerSink*) override {}
  void subscribe(std::string_view, const std::optional<Position>& since, CatchupFn done) override {
    asked_since.push_back(since);
    pending.push_back(std::move(done));
  }
  void unsubscribe(std::string_view) override { ++unsubscribed; }
  void publish(std::string_view, std::string, PublishFn) override { ADD_FAILURE(); }
  void history(std::string_view, const std::optional<Position>&, uint32_t, CatchupFn) override { ADD_FAILURE(); }
  void info(std::string_view, InfoFn) override { ADD_FAILURE(); }
  bool available() const override { return true; }

  // Runs the oldest subscribe's callback with `c`.
  void answer(const Catchup& c) {
    ASSERT_FALSE(pending.empty());
    CatchupFn done = std::move(pending.front());
    pending.pop_front();
    done(&c, {});
  }

  std::deque<CatchupFn> pending;
  std::vector<std::optional<Position>> asked_since;
  int unsubscribed = 0;
};

Catchup lostAt(const Position& now) {
  Catchup c;
  c.position = now;
  c.recovered = false;
  return c;
}

class PollingTest : public ::testing::Test {
 protected:
  PollingTest() {
    ctx_.broker = &broker_;
    ctx_.channels = &channels_;
  }

  // An entry built from a poll whose cursor has `channel` at `from`.
  std::shared_ptr<PollEntry> entryFrom(const std::string& channel, const Position& from) {
    auto e = cache_.create(7, 1);
    e->channels().push_back({channel, from, nullptr, from});
    e->startSubscribe(0, from);
    return e;
  }

  void publishLive(const std::string& channel, const Position& p) { channels_.onMessage(channel, p, "1"); }

  // An entry on /a whose resume from oldepoch01.40 the hub answered recovered:false at
  // newepoch01.24, and which has had 25 live since.
  std::shared_ptr<PollEntry> lostEntry() {
    auto e = entryFrom("/a", {"oldepoch01", 40});
    broker_.answer(lostAt({"newepoch01", 24}));
    publishLive("/a", {"newepoch01", 25});
    return e;
  }

  // The SEQs a poll answer on `e` carries.
  static std::vector<uint64_t> answered(const PollEntry& e) {
    std::vector<uint64_t> seqs;
    for (const PollEntry::Message& m : e.log())
      if (e.answers(m)) seqs.push_back(m.seq);
    return seqs;
  }

  Config config_;
  GatewayContext ctx_{config_};
  FakeBroker broker_;
  ChannelTable channels_{ctx_};
  PollCache cache_{ctx_};
};

TEST_F(PollingTest, AnExactResumeAnswersWhatWasMissedThenWhatCameLive) {
  auto e = entryFrom("/a", {"epoch00001", 3});
  ASSERT_FALSE(e->ready());
  Catchup c;
  c.position = {"epoch00001", 5};
  c.recovered = true;
  c.messages.push_back({4, std::make_shared<const std::string>("4")});
  c.messages.push_back({5, std::make_shared<const std::string>("5")});
  broker_.answer(c);
  publishLive("/a", {"epoch00001", 6});
  ASSERT_TRUE(e->ready());
  EXPECT_TRUE(e->recovered());
  EXPECT_EQ(answered(*e), (std::vector<uint64_t>{4, 5, 6}));
  EXPECT_EQ(e->cursorAfterLog().positions[0].second, (Position{"epoch00001", 6}));
}

// What CI saw in test_redis_hosts: a resume across a Redis restart answered
// recovered:false at position 24 of the new epoch, and carried 25 and 26, which had come
// live meanwhile, with `positions` at 26; the client refetched its state as of 26 and
// then got 25 and 26 on top of it.
TEST_F(PollingTest, MessagesThatCameAfterALostResumeAreInItsPositionNotInItsAnswer) {
  auto e = lostEntry();
  publishLive("/a", {"newepoch01", 26});
  EXPECT_FALSE(e->recovered());
  EXPECT_EQ(answered(*e), std::vector<uint64_t>{});
  EXPECT_EQ(e->cursorAfterLog().positions[0].second, (Position{"newepoch01", 26}));
}

// The client never heard the recovered:false answer (it was lost) and sends its old
// cursor again: it must hear it now, not an exact resume from a position it does not have.
TEST_F(PollingTest, ARetryWithTheOldCursorIsStillToldTheResumeWasNotExact) {
  auto e = lostEntry();
  ASSERT_TRUE(e->canServe({"/a"}, {Position{"oldepoch01", 40}}));
  e->acknowledge({Position{"oldepoch01", 40}});
  publishLive("/a", {"newepoch01", 26});
  EXPECT_FALSE(e->recovered());
  EXPECT_EQ(answered(*e), std::vector<uint64_t>{});
  EXPECT_EQ(e->cursorAfterLog().positions[0].second, (Position{"newepoch01", 26}));
}

// Back with the position the recovered:false answer gave: it heard, and from there on
// every message comes, exactly.
TEST_F(PollingTest, APollWithThePositionItWasGivenResumesExactlyFromThere) {
  auto e = lostEntry();
  Position given = e->cursorAfterLog().positions[0].second;
  ASSERT_EQ(given, (Position{"newepoch01", 25}));
  publishLive("/a", {"newepoch01", 26});
  ASSERT_TRUE(e->canServe({"/a"}, {given}));
  e->acknowledge({given});
  EXPECT_TRUE(e->recovered());
  EXPECT_EQ(answered(*e), std::vector<uint64_t>{26});
}

// A hub that answers recovered:false at the very position the client sent: its next poll
// with that position must end the loss (it cannot be told from a retry), or every poll
// would be answered at once, for ever.
TEST_F(PollingTest, ALossAtThePositionTheClientSentEndsWithItsNextPoll) {
  Position at{"epoch00001", 8};
  auto e = entryFrom("/a", at);
  broker_.answer(lostAt(at));
  EXPECT_FALSE(e->recovered());
  ASSERT_TRUE(e->canServe({"/a"}, {at}));
  e->acknowledge({at});
  EXPECT_TRUE(e->recovered());
}

// Per channel: a channel that resumed exactly keeps its messages in an answer that says
// recovered:false for another.
TEST_F(PollingTest, OnlyTheChannelThatWasLostLosesItsMessagesFromTheAnswer) {
  auto e = cache_.create(7, 2);
  Position a_from{"epochaaaaa", 1}, b_from{"oldepoch01", 9};
  e->channels().push_back({"/a", a_from, nullptr, a_from});
  e->channels().push_back({"/b", b_from, nullptr, b_from});
  e->startSubscribe(0, a_from);
  e->startSubscribe(1, b_from);
  Catchup a;
  a.position = {"epochaaaaa", 2};
  a.recovered = true;
  a.messages.push_back({2, std::make_shared<const std::string>("2")});
  broker_.answer(a);
  broker_.answer(lostAt({"newepoch01", 5}));
  publishLive("/b", {"newepoch01", 6});
  EXPECT_FALSE(e->recovered());
  ASSERT_EQ(e->log().size(), 2u);
  EXPECT_TRUE(e->answers(e->log()[0]));   // /a at 2
  EXPECT_FALSE(e->answers(e->log()[1]));  // /b at 6
  Cursor next = e->cursorAfterLog();
  EXPECT_EQ(next.positions[0].second, (Position{"epochaaaaa", 2}));
  EXPECT_EQ(next.positions[1].second, (Position{"newepoch01", 6}));
}

}  // namespace
}  // namespace dingo
