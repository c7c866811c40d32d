// gateway/StreamRequest: what GET /v1/poll and GET /v1/sse ask for, and the limits it is
// held to before anything is subscribed.
#include "gateway/StreamRequest.h"

#include <gtest/gtest.h>

#include <string>

#include "core/Config.h"
#include "core/Cursor.h"

namespace dingo {
namespace {

class StreamRequestTest : public ::testing::Test {
 protected:
  StreamRequestTest() : codec_("0123456789abcdef0123456789abcdef") { ctx_.cursors = &codec_; }

  // Parses `query`; the error reply's body when it fails, "" when it succeeds.
  std::string parse(std::string_view query, std::string_view last_event_id = {}) {
    req_ = StreamRequest{};
    reply_ = Reply{};
    if (parseStreamRequest(query, last_event_id, ctx_, req_, reply_)) return "";
    EXPECT_NE(reply_.status, 200);
    return reply_.body;
  }

  static std::string channels(size_t n, std::string_view prefix = "/c") {
    std::string q;
    for (size_t i = 0; i < n; ++i) q += fmt::format("{}channel={}{}", i ? "&" : "", prefix, i);
    return q;
  }

  Config config_;
  CursorCodec codec_;
  GatewayContext ctx_{config_};
  StreamRequest req_;
  Reply reply_;
};

const std::string kBadChannel = "a channel is 1 to 255 characters";
const std::string kCount = "channels with channel=";

TEST_F(StreamRequestTest, ChannelsAreDecodedAndDeduplicatedInOrder) {
  EXPECT_EQ(parse("channel=%2Fb&channel=/a&channel=/b&channel=/a"), "");
  EXPECT_EQ(req_.channels, (std::vector<std::string>{"/b", "/a"}));
  EXPECT_EQ(req_.from.size(), 2u);
  EXPECT_FALSE(req_.resuming);
  EXPECT_FALSE(req_.cursor);
}

TEST_F(StreamRequestTest, NoChannelOrABadOne) {
  EXPECT_NE(parse("").find(kCount), std::string::npos);
  EXPECT_NE(parse("since=/a@0123456789.1").find(kCount), std::string::npos);
  EXPECT_NE(parse("channel=nope").find(kBadChannel), std::string::npos);
  EXPECT_NE(parse("channel=/a&channel=%zz").find(kBadChannel), std::string::npos);
  EXPECT_EQ(reply_.status, 400);
}

TEST_F(StreamRequestTest, MaxChannelsCountsDistinctChannels) {
  config_.gateway.max_channels = 3;
  EXPECT_EQ(parse(channels(3)), "");
  EXPECT_NE(parse(channels(4)).find("name 1 to 3 channels"), std::string::npos);
  // Duplicates do not count: the same three, many times over.
  std::string q = channels(3);
  for (int i = 0; i < 50; ++i) q += "&" + channels(3);
  EXPECT_EQ(parse(q), "");
  EXPECT_EQ(req_.channels.size(), 3u);
  // A bad channel is reported as such, even after the limit was passed.
  EXPECT_NE(parse(channels(5) + "&channel=bad").find(kBadChannel), std::string::npos);
}

TEST_F(StreamRequestTest, LongListsAreDeduplicatedToo) {
  // Past the length where duplicates are found with a hash set.
  config_.gateway.max_channels = 40;
  config_.gateway.max_header_bytes = 64 * 1024;
  std::string q = channels(40) + "&" + channels(40) + "&channel=/c7&channel=/c39";
  EXPECT_EQ(parse(q), "");
  ASSERT_EQ(req_.channels.size(), 40u);
  for (size_t i = 0; i < 40; ++i) EXPECT_EQ(req_.channels[i], fmt::format("/c{}", i));
  EXPECT_NE(parse(q + "&channel=/new").find("name 1 to 40 channels"), std::string::npos);
  EXPECT_EQ(parse(q + "&channel=/c0"), "");
}

TEST_F(StreamRequestTest, ACursorMustFitTheRequestHeadItComesBackIn) {
  config_.gateway.max_header_bytes = 1024;
  EXPECT_EQ(parse(channels(2)), "");
  std::string body = parse(channels(40));
  EXPECT_EQ(reply_.status, 413);
  EXPECT_NE(body.find("max_header_bytes (1024)"), std::string::npos);
}

TEST_F(StreamRequestTest, SinceSetsAChannelsPosition) {
  EXPECT_EQ(parse("channel=/a&channel=/b&since=%2Fb%400123456789.7"), "");
  EXPECT_TRUE(req_.resuming);
  EXPECT_FALSE(req_.from[0]);
  ASSERT_TRUE(req_.from[1]);
  EXPECT_EQ(req_.from[1]->toString(), "0123456789.7");
  // Only for a channel named with channel=, and only a real position.
  EXPECT_NE(parse("channel=/a&since=/b@0123456789.7").find("since is CHANNEL@EPOCH.SEQ"), std::string::npos);
  EXPECT_NE(parse("channel=/a&since=/a@xyz").find("since is CHANNEL@EPOCH.SEQ"), std::string::npos);
  EXPECT_NE(parse("channel=/a&since=/a").find("since is CHANNEL@EPOCH.SEQ"), std::string::npos);
}

TEST_F(StreamRequestTest, CursorFromTheQueryOrLastEventId) {
  Cursor c;
  c.session = 42;
  c.positions.emplace_back("/a", Position{"0123456789", 5});
  c.positions.emplace_back("/z", Position{"0123456789", 9});
  std::string text = codec_.encode(c);
  for (int via_header = 0; via_header < 2; ++via_header) {
    SCOPED_TRACE(via_header);
    std::string q = "channel=/a&channel=/b";
    EXPECT_EQ(via_header ? parse(q, text) : parse(q + "&cursor=" + text), "");
    ASSERT_TRUE(req_.cursor);
    EXPECT_EQ(req_.cursor->session, 42u);
    EXPECT_TRUE(req_.resuming);
    ASSERT_TRUE(req_.from[0]);
    EXPECT_EQ(req_.from[0]->seq, 5u);
    EXPECT_FALSE(req_.from[1]);  // the cursor does not know /b
  }
  // The query's cursor wins over Last-Event-ID, even a malformed one.
  EXPECT_NE(parse("channel=/a&cursor=%zz", text).find("the cursor is malformed"), std::string::npos);
  EXPECT_NE(parse("channel=/a&cursor=" + text + "x").find("the cursor is malformed"), std::string::npos);
}

TEST_F(StreamRequestTest, StreamsFullCountsPollsAndStreamsTogether) {
  config_.gateway.max_streams = 3;
  ctx_.counters.held_polls = 1;
  ctx_.counters.sse_streams = 1;
  EXPECT_FALSE(streamsFull(ctx_));
  ctx_.counters.sse_streams = 2;
  EXPECT_TRUE(streamsFull(ctx_));
  EXPECT_EQ(ctx_.counters.stream_limited, 1u);
}

}  // namespace
}  // namespace dingo
