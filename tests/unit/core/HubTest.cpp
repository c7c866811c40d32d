#include "core/Hub.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "core/HubWire.h"

namespace dingo {
namespace {

struct Delivery {
  std::vector<Hub::LinkId> links;
  std::string channel;
  Position position;
  std::string data;
};

class HubTest : public ::testing::Test {
 protected:
  HubTest() { reset(); }

  void reset(HistoryConfig cfg = {}) {
    cfg_ = cfg;
    hub_ = std::make_unique<Hub>(
        cfg_,
        [this](const std::vector<Hub::LinkId>& links, std::string_view ch, const Position& p,
               const std::shared_ptr<const std::string>& d) {
          deliveries_.push_back({links, std::string(ch), p, *d});
        },
        [this] { return now_; }, [this] { return ++random_; });
  }

  HistoryConfig cfg_;
  int64_t now_ = 1'000'000;
  uint64_t random_ = 12345;
  std::vector<Delivery> deliveries_;
  std::unique_ptr<Hub> hub_;
};

TEST(PositionTest, ParsesAndPrints) {
  auto p = Position::parse("k2f9qzx1ab.42");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->epoch, "k2f9qzx1ab");
  EXPECT_EQ(p->seq, 42u);
  EXPECT_EQ(p->toString(), "k2f9qzx1ab.42");
  for (const char* bad : {"", ".", "abc", "abc.", ".5", "ABC.1", "a-b.1", "abc.-1", "abc.1x", "abc.1.2",
                          "abc.123456789012345678901", "abcdefghijabcdefghijabcdefghijabc.1"})
    EXPECT_FALSE(Position::parse(bad)) << bad;
}

// Exactly what the hub writes: kEpochLength characters of [0-9a-z], a dot, SEQ in
// canonical decimal (no sign, no leading zero, no overflow).
TEST(PositionTest, AcceptsExactlyTheHubsFormat) {
  for (const char* good : {"0123456789.0", "zzzzzzzzzz.1", "k2f9qzx1ab.18446744073709551615"})
    EXPECT_TRUE(Position::parse(good)) << good;
  for (const char* bad : {"K2F9QZX1AB.1", "k2f9qZx1ab.1", "k2f9qzx1a.1", "k2f9qzx1abc.1", "k2f9q.1",
                          "k2f9qzx1ab.18446744073709551616", "k2f9qzx1ab.99999999999999999999",
                          "k2f9qzx1ab.+1", "k2f9qzx1ab.01", "k2f9qzx1ab. 1", "k2f9qzx1ab.1 ", "k2f9qzx1ab.",
                          "k2f9qzx1ab", "k2f9qzx1ab.1.", "k2f9qzx1_b.1"})
    EXPECT_FALSE(Position::parse(bad)) << bad;
}

TEST(ChannelTest, Names) {
  EXPECT_TRUE(validChannel("/rooms/42"));
  EXPECT_TRUE(validChannel("/a-b_c.d:e/F"));
  EXPECT_TRUE(validChannel("/" + std::string(254, 'x')));
  EXPECT_FALSE(validChannel("/" + std::string(255, 'x')));
  EXPECT_FALSE(validChannel(""));
  EXPECT_FALSE(validChannel("rooms"));
  EXPECT_FALSE(validChannel("/a b"));
  EXPECT_FALSE(validChannel("/a?b"));
  EXPECT_FALSE(validChannel("/caf\xc3\xa9"));
}

TEST_F(HubTest, PositionsCountFromOneAndDeliverOnlyToInterestedLinks) {
  Catchup c = hub_->subscribe(7, "/a", std::nullopt);
  EXPECT_TRUE(c.recovered);
  EXPECT_EQ(c.position.seq, 0u);
  Position p1 = hub_->publish("/a", "1");
  Position p2 = hub_->publish("/a", "2");
  hub_->publish("/b", "x");  // nobody listens
  EXPECT_EQ(p1.epoch, c.position.epoch);
  EXPECT_EQ(p1.seq, 1u);
  EXPECT_EQ(p2.seq, 2u);
  ASSERT_EQ(deliveries_.size(), 2u);
  EXPECT_EQ(deliveries_[0].links, std::vector<Hub::LinkId>{7});
  EXPECT_EQ(deliveries_[1].data, "2");
  EXPECT_EQ(hub_->published(), 3u);
}

TEST_F(HubTest, SubscriberCountsPerLink) {
  hub_->subscribe(1, "/a", std::nullopt);
  hub_->subscribe(1, "/a", std::nullopt);
  hub_->subscribe(2, "/a", std::nullopt);
  EXPECT_EQ(hub_->info("/a").subscribers, 3u);
  hub_->unsubscribe(1, "/a");
  EXPECT_EQ(hub_->info("/a").subscribers, 2u);
  hub_->publish("/a", "x");
  ASSERT_EQ(deliveries_.size(), 1u);
  EXPECT_EQ(deliveries_[0].links.size(), 2u);
  hub_->dropLink(2);
  hub_->unsubscribe(1, "/a");
  hub_->unsubscribe(1, "/a");  // one too many: ignored
  EXPECT_EQ(hub_->info("/a").subscribers, 0u);
}

TEST_F(HubTest, TopChannelsAreTheMostSubscribedOverAllLinks) {
  using CC = Hub::ChannelCount;
  EXPECT_TRUE(hub_->topChannels(10).empty());
  // /b: 3 subscribers over two links; /a and /c: 2 each (a tie, by name); /d: 1;
  // /e: none left; /h: history only.
  for (int i = 0; i < 2; ++i) hub_->subscribe(1, "/b", std::nullopt);
  hub_->subscribe(2, "/b", std::nullopt);
  hub_->subscribe(2, "/c", std::nullopt);
  hub_->subscribe(1, "/c", std::nullopt);
  hub_->subscribe(1, "/a", std::nullopt);
  hub_->subscribe(3, "/a", std::nullopt);
  hub_->subscribe(1, "/d", std::nullopt);
  hub_->subscribe(1, "/e", std::nullopt);
  hub_->unsubscribe(1, "/e");
  hub_->publish("/h", "x");
  EXPECT_EQ(hub_->topChannels(10), (std::vector<CC>{{"/b", 3}, {"/a", 2}, {"/c", 2}, {"/d", 1}}));
  EXPECT_EQ(hub_->topChannels(2), (std::vector<CC>{{"/b", 3}, {"/a", 2}}));
  EXPECT_TRUE(hub_->topChannels(0).empty());
  // A link gone takes its subscribers with it: /b keeps 1, /a keeps 1, /c 1 (ties by name).
  hub_->dropLink(2);
  hub_->dropLink(3);
  EXPECT_EQ(hub_->topChannels(3), (std::vector<CC>{{"/b", 2}, {"/a", 1}, {"/c", 1}}));
  EXPECT_EQ(hub_->info("/b").subscribers, 2u);
}

TEST_F(HubTest, TopChannelsKeepsTheBestOfMany) {
  // 1000 channels with i % 97 + 1 subscribers, in hash order: the 5 kept are those with
  // 97 subscribers (channels 96, 193, ...), by name.
  for (int i = 0; i < 1000; ++i) {
    std::string name = "/c" + std::to_string(i);
    for (int k = 0; k <= i % 97; ++k) hub_->subscribe(static_cast<Hub::LinkId>(k % 3), name, std::nullopt);
  }
  auto top = hub_->topChannels(5);
  std::vector<std::string> names;
  for (const auto& c : top) {
    EXPECT_EQ(c.subscribers, 97u) << c.channel;
    names.push_back(c.channel);
  }
  std::vector<std::string> want = {"/c193", "/c290", "/c387", "/c484", "/c581"};
  EXPECT_EQ(names, want);
}

TEST_F(HubTest, RecoversExactlyWhatWasMissed) {
  Position start = hub_->subscribe(1, "/a", std::nullopt).position;
  for (int i = 1; i <= 5; ++i) hub_->publish("/a", std::to_string(i));
  Catchup c = hub_->subscribe(2, "/a", Position{start.epoch, 2});
  EXPECT_TRUE(c.recovered);
  ASSERT_EQ(c.messages.size(), 3u);
  EXPECT_EQ(c.messages[0].seq, 3u);
  EXPECT_EQ(*c.messages[2].data, "5");
  EXPECT_EQ(c.position.seq, 5u);
  // Up to date: recovered, nothing missed.
  Catchup now = hub_->subscribe(3, "/a", Position{start.epoch, 5});
  EXPECT_TRUE(now.recovered);
  EXPECT_TRUE(now.messages.empty());
}

TEST_F(HubTest, UnrecoverableAnswersFalseWithTheCurrentPosition) {
  Position start = hub_->subscribe(1, "/a", std::nullopt).position;
  hub_->publish("/a", "1");
  // Another epoch (a restarted hub), a position ahead of the channel.
  for (Position since : {Position{"zzzz", 0}, Position{start.epoch, 9}}) {
    Catchup c = hub_->subscribe(2, "/a", since);
    EXPECT_FALSE(c.recovered);
    EXPECT_TRUE(c.messages.empty());
    EXPECT_EQ(c.position, (Position{start.epoch, 1}));
  }
}

TEST_F(HubTest, HistoryBoundedByCount) {
  HistoryConfig cfg;
  cfg.size = 3;
  reset(cfg);
  Position start = hub_->subscribe(1, "/a", std::nullopt).position;
  for (int i = 1; i <= 5; ++i) hub_->publish("/a", std::to_string(i));
  EXPECT_EQ(hub_->historyMessages(), 3u);
  EXPECT_FALSE(hub_->subscribe(2, "/a", Position{start.epoch, 1}).recovered);  // needs 2, trimmed
  Catchup c = hub_->subscribe(2, "/a", Position{start.epoch, 2});               // needs 3..5, kept
  EXPECT_TRUE(c.recovered);
  EXPECT_EQ(c.messages.size(), 3u);
}

TEST_F(HubTest, HistoryBoundedByBytes) {
  HistoryConfig cfg;
  cfg.max_bytes = 3 * (100 + 64);
  reset(cfg);
  for (int i = 0; i < 10; ++i) hub_->publish("/a", std::string(100, 'x'));
  EXPECT_EQ(hub_->historyMessages(), 3u);
  EXPECT_LE(hub_->historyBytes(), cfg.max_bytes);
  // A message over the whole budget is not kept, and neither is anything before it:
  // history stays contiguous.
  hub_->publish("/a", std::string(1000, 'y'));
  EXPECT_EQ(hub_->historyMessages(), 0u);
  Catchup c = hub_->history("/a", Position{hub_->info("/a").position.epoch, 9}, 100);
  EXPECT_FALSE(c.recovered);
}

TEST_F(HubTest, HistoryExpiresByTtl) {
  Position start = hub_->subscribe(1, "/a", std::nullopt).position;
  hub_->publish("/a", "old");
  now_ += cfg_.ttl.count() - 1;
  hub_->publish("/a", "new");
  now_ += 2;  // "old" is past its TTL now, "new" is not
  Catchup c = hub_->subscribe(2, "/a", Position{start.epoch, 0});
  EXPECT_FALSE(c.recovered);
  c = hub_->subscribe(2, "/a", Position{start.epoch, 1});
  EXPECT_TRUE(c.recovered);
  ASSERT_EQ(c.messages.size(), 1u);
  EXPECT_EQ(*c.messages[0].data, "new");
}

TEST_F(HubTest, SweepForgetsIdleChannelsAndANewLifeHasANewEpoch) {
  Position first = hub_->publish("/a", "1");
  EXPECT_EQ(hub_->channels(), 1u);
  hub_->sweep();
  EXPECT_EQ(hub_->channels(), 1u);  // history keeps it
  now_ += cfg_.ttl.count() + 1;
  hub_->sweep();
  EXPECT_EQ(hub_->channels(), 0u);
  Position again = hub_->publish("/a", "2");
  EXPECT_NE(again.epoch, first.epoch);
  EXPECT_EQ(again.seq, 1u);
  Catchup c = hub_->history("/a", first, 10);
  EXPECT_FALSE(c.recovered);
  // A channel with subscribers stays even without history.
  hub_->subscribe(1, "/b", std::nullopt);
  now_ += cfg_.ttl.count() + 1;
  hub_->sweep();
  EXPECT_EQ(hub_->info("/b").subscribers, 1u);
}

TEST_F(HubTest, HistoryReadsPageAndNewest) {
  Position start = hub_->publish("/a", "1");
  for (int i = 2; i <= 10; ++i) hub_->publish("/a", std::to_string(i));
  Catchup page = hub_->history("/a", Position{start.epoch, 3}, 4);
  EXPECT_TRUE(page.recovered);
  ASSERT_EQ(page.messages.size(), 4u);
  EXPECT_EQ(page.messages.front().seq, 4u);
  EXPECT_EQ(page.messages.back().seq, 7u);
  Catchup newest = hub_->history("/a", std::nullopt, 3);
  EXPECT_FALSE(newest.recovered);
  ASSERT_EQ(newest.messages.size(), 3u);
  EXPECT_EQ(newest.messages.front().seq, 8u);
  EXPECT_EQ(newest.position.seq, 10u);
}

// Every frame type the protocol has, each field compared after a round trip. The list of
// types below must name all of hubwire::Type; the test checks that each was decoded.
TEST(HubWireTest, RoundTripsEveryFrame) {
  const std::vector<hubwire::Type> all_types = {
      hubwire::Type::Subscribe,    hubwire::Type::Unsubscribe,  hubwire::Type::Publish,
      hubwire::Type::History,      hubwire::Type::Info,         hubwire::Type::CatchupReply,
      hubwire::Type::PublishReply, hubwire::Type::InfoReply,    hubwire::Type::ErrorReply,
      hubwire::Type::Message,      hubwire::Type::Nodes};

  std::string buf;
  hubwire::encodeSubscribe(buf, 7, "/a", Position{"abc", 5});
  hubwire::encodeSubscribe(buf, 17, "/a2", std::nullopt);
  hubwire::encodeUnsubscribe(buf, "/b");
  hubwire::encodePublish(buf, 8, "/c", R"({"x":1})");
  hubwire::encodeHistory(buf, 11, "/h", Position{"h1", 40}, 25);
  hubwire::encodeHistory(buf, 12, "/h2", std::nullopt, 0);
  hubwire::encodeInfo(buf, 13, "/i");
  Catchup c;
  c.position = {"e1", 9};
  c.recovered = true;
  c.messages.push_back({8, std::make_shared<const std::string>("\"m8\""), 0});
  c.messages.push_back({9, std::make_shared<const std::string>("\"m9\""), 0});
  hubwire::encodeCatchup(buf, 9, c);
  Catchup lost;
  lost.position = {"e9", 1234567890123ULL};
  lost.recovered = false;
  hubwire::encodeCatchup(buf, 10, lost);
  hubwire::encodePublishReply(buf, 14, Position{"p1", 77});
  hubwire::encodeInfoReply(buf, 15, Hub::Info{Position{"i1", 3}, 4000000000ULL});
  hubwire::encodeError(buf, 16, "no such channel");
  hubwire::encodeMessage(buf, "/d", Position{"e2", 3}, "[1,2]");
  hubwire::encodeNodes(buf, R"({"version":3,"ttl_s":600,"nodes":[]})");

  std::vector<hubwire::Frame> frames;
  std::string_view rest = buf;
  while (!rest.empty()) {
    auto len = hubwire::frameLength(rest);
    ASSERT_TRUE(len && *len > 0);
    hubwire::Frame f;
    ASSERT_TRUE(hubwire::decode(rest.substr(0, *len), f)) << "frame " << frames.size();
    frames.push_back(f);
    rest.remove_prefix(*len);
  }
  ASSERT_EQ(frames.size(), 14u);

  std::vector<hubwire::Type> seen;
  for (const auto& f : frames)
    if (std::find(seen.begin(), seen.end(), f.type) == seen.end()) seen.push_back(f.type);
  EXPECT_EQ(seen, all_types) << "a frame type is not round-tripped";

  const auto& sub = frames[0];
  EXPECT_EQ(sub.type, hubwire::Type::Subscribe);
  EXPECT_EQ(sub.id, 7u);
  EXPECT_EQ(sub.channel, "/a");
  ASSERT_TRUE(sub.since);
  EXPECT_EQ(*sub.since, (Position{"abc", 5}));

  const auto& sub_fresh = frames[1];
  EXPECT_EQ(sub_fresh.type, hubwire::Type::Subscribe);
  EXPECT_EQ(sub_fresh.id, 17u);
  EXPECT_EQ(sub_fresh.channel, "/a2");
  EXPECT_FALSE(sub_fresh.since);

  EXPECT_EQ(frames[2].type, hubwire::Type::Unsubscribe);
  EXPECT_EQ(frames[2].channel, "/b");

  const auto& pub = frames[3];
  EXPECT_EQ(pub.type, hubwire::Type::Publish);
  EXPECT_EQ(pub.id, 8u);
  EXPECT_EQ(pub.channel, "/c");
  EXPECT_EQ(pub.data, R"({"x":1})");

  const auto& hist = frames[4];
  EXPECT_EQ(hist.type, hubwire::Type::History);
  EXPECT_EQ(hist.id, 11u);
  EXPECT_EQ(hist.channel, "/h");
  ASSERT_TRUE(hist.since);
  EXPECT_EQ(*hist.since, (Position{"h1", 40}));
  EXPECT_EQ(hist.limit, 25u);

  const auto& hist_all = frames[5];
  EXPECT_EQ(hist_all.type, hubwire::Type::History);
  EXPECT_EQ(hist_all.id, 12u);
  EXPECT_EQ(hist_all.channel, "/h2");
  EXPECT_FALSE(hist_all.since);
  EXPECT_EQ(hist_all.limit, 0u);

  const auto& info = frames[6];
  EXPECT_EQ(info.type, hubwire::Type::Info);
  EXPECT_EQ(info.id, 13u);
  EXPECT_EQ(info.channel, "/i");

  const auto& catchup = frames[7];
  EXPECT_EQ(catchup.type, hubwire::Type::CatchupReply);
  EXPECT_EQ(catchup.id, 9u);
  EXPECT_EQ(catchup.position, (Position{"e1", 9}));
  EXPECT_TRUE(catchup.recovered);
  ASSERT_EQ(catchup.messages.size(), 2u);
  EXPECT_EQ(catchup.messages[0].first, 8u);
  EXPECT_EQ(catchup.messages[0].second, "\"m8\"");
  EXPECT_EQ(catchup.messages[1].first, 9u);
  EXPECT_EQ(catchup.messages[1].second, "\"m9\"");

  const auto& not_recovered = frames[8];
  EXPECT_EQ(not_recovered.type, hubwire::Type::CatchupReply);
  EXPECT_EQ(not_recovered.id, 10u);
  EXPECT_EQ(not_recovered.position, (Position{"e9", 1234567890123ULL}));
  EXPECT_FALSE(not_recovered.recovered);
  EXPECT_TRUE(not_recovered.messages.empty());

  const auto& pub_reply = frames[9];
  EXPECT_EQ(pub_reply.type, hubwire::Type::PublishReply);
  EXPECT_EQ(pub_reply.id, 14u);
  EXPECT_EQ(pub_reply.position, (Position{"p1", 77}));

  const auto& info_reply = frames[10];
  EXPECT_EQ(info_reply.type, hubwire::Type::InfoReply);
  EXPECT_EQ(info_reply.id, 15u);
  EXPECT_EQ(info_reply.position, (Position{"i1", 3}));
  EXPECT_EQ(info_reply.subscribers, 4000000000ULL);

  const auto& error = frames[11];
  EXPECT_EQ(error.type, hubwire::Type::ErrorReply);
  EXPECT_EQ(error.id, 16u);
  EXPECT_EQ(error.error, "no such channel");

  const auto& message = frames[12];
  EXPECT_EQ(message.type, hubwire::Type::Message);
  EXPECT_EQ(message.channel, "/d");
  EXPECT_EQ(message.position, (Position{"e2", 3}));
  EXPECT_EQ(message.data, "[1,2]");

  const auto& nodes = frames[13];
  EXPECT_EQ(nodes.type, hubwire::Type::Nodes);
  EXPECT_EQ(nodes.data, R"({"version":3,"ttl_s":600,"nodes":[]})");
}

TEST(HubWireTest, RejectsTruncatedAndOversizedFrames) {
  std::string buf;
  hubwire::encodePublish(buf, 1, "/a", "123");
  EXPECT_EQ(hubwire::frameLength(std::string_view(buf).substr(0, buf.size() - 1)), 0u);
  hubwire::Frame f;
  std::string cut = buf;
  cut[0] = static_cast<char>(cut[0] - 1);  // length says one byte fewer than the fields need
  EXPECT_FALSE(hubwire::decode(std::string_view(cut).substr(0, cut.size() - 1), f));
  std::string huge = "\xff\xff\xff\x7f";
  EXPECT_FALSE(hubwire::frameLength(huge));
  std::string unknown = std::string("\x01\x00\x00\x00", 4) + "\x63";
  EXPECT_FALSE(hubwire::decode(unknown, f));
}

TEST_F(HubTest, EveryEpochItMakesParsesBack) {
  for (uint64_t i = 0; i < 50; ++i) {
    random_ = i * 0x9e3779b97f4a7c15ULL;  // spread over the whole 64-bit range
    Position p = hub_->publish("/c" + std::to_string(i), "1");
    auto back = Position::parse(p.toString());
    ASSERT_TRUE(back) << p.toString();
    EXPECT_EQ(*back, p);
  }
}

}  // namespace
// ---- reads of absent channels and the channel bound (hardening, defect 5) -------------

TEST_F(HubTest, ReadingAnAbsentChannelCreatesNothing) {
  Hub::Info i = hub_->info("/nobody");
  Catchup h = hub_->history("/nobody", std::nullopt, 10);
  EXPECT_EQ(hub_->channels(), 0u);
  EXPECT_EQ(i.position.seq, 0u);
  EXPECT_TRUE(Position::parse(i.position.toString())) << i.position.toString();
  EXPECT_TRUE(h.messages.empty());
}

TEST_F(HubTest, AResumeFromAnAbsentPositionIsExactWithinATtl) {
  Position absent = hub_->info("/a").position;
  now_ += 1000;
  Position p1 = hub_->publish("/a", "one");
  EXPECT_NE(p1.epoch, absent.epoch);
  // The channel was born after the absent position was read: the client missed only
  // what this life of the channel has, and gets it.
  Catchup c = hub_->subscribe(1, "/a", absent);
  EXPECT_TRUE(c.recovered);
  ASSERT_EQ(c.messages.size(), 1u);
  EXPECT_EQ(*c.messages[0].data, "one");
  Catchup h = hub_->history("/a", absent, 10);
  EXPECT_TRUE(h.recovered);
  EXPECT_EQ(h.messages.size(), 1u);
}

TEST_F(HubTest, AnAbsentPositionOlderThanATtlIsNotTrusted) {
  Position absent = hub_->info("/a").position;
  // A whole life of /a could have come and gone since: published, expired, forgotten.
  now_ += cfg_.ttl.count() + 1000;
  hub_->publish("/a", "later");
  EXPECT_FALSE(hub_->subscribe(1, "/a", absent).recovered);
  EXPECT_FALSE(hub_->history("/b", absent, 10).recovered);
}

TEST_F(HubTest, AChannelThatHadMessagesOutlivesItsHistoryByATtl) {
  HistoryConfig cfg;
  cfg.max_bytes = 100;  // a bigger message empties the history at once
  reset(cfg);
  Position absent = hub_->info("/a").position;
  hub_->publish("/a", std::string(200, 'x'));
  hub_->sweep();
  EXPECT_EQ(hub_->channels(), 1u) << "forgotten right after a publish";
  // Were it forgotten, a new life would be born within a TTL of `absent` and the
  // client would wrongly be told it missed nothing.
  EXPECT_FALSE(hub_->subscribe(1, "/a", absent).recovered);
  hub_->unsubscribe(1, "/a");
  now_ += cfg_.ttl.count();
  EXPECT_EQ(hub_->sweep(), 1u);
}

TEST_F(HubTest, AbsentPositionsOfAnotherHubAreNotTrusted) {
  Position absent = hub_->info("/a").position;
  random_ = 999;  // another hub: another tag
  reset();
  hub_->publish("/a", "x");
  EXPECT_FALSE(hub_->subscribe(1, "/a", absent).recovered);
}

TEST_F(HubTest, ChannelEpochsNeverLookAbsent) {
  for (int i = 0; i < 1000; ++i) {
    Position p = hub_->publish("/e" + std::to_string(i), "x");
    EXPECT_NE(p.epoch[0], 'z');
  }
}

TEST_F(HubTest, NewChannelsPastMaxChannelsAreNotAdmitted) {
  HistoryConfig cfg;
  cfg.max_channels = 2;
  reset(cfg);
  hub_->subscribe(1, "/a", std::nullopt);
  hub_->publish("/b", "x");
  EXPECT_FALSE(hub_->admits("/c"));
  EXPECT_TRUE(hub_->admits("/a"));
  // Reads still answer, and still create nothing.
  EXPECT_EQ(hub_->info("/c").position.seq, 0u);
  EXPECT_EQ(hub_->channels(), 2u);
}

}  // namespace dingo
