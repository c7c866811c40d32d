// The order rule of gateway/PubSub.h: each subscription gets each message once, in
// order; a message that does not follow its last one is a gap.
#include <gtest/gtest.h>

#include "gateway/PubSub.h"

using namespace dingo;
using C = ChannelTable::Continuity;

TEST(ChannelContinuity, TheNextSeqOfTheSameEpochFollows) {
  EXPECT_EQ(ChannelTable::continuity({"abcdefghij", 4}, {"abcdefghij", 5}), C::Next);
  EXPECT_EQ(ChannelTable::continuity({"abcdefghij", 0}, {"abcdefghij", 1}), C::Next);
}

TEST(ChannelContinuity, WhatASubscriptionHadIsSkipped) {
  // Its catch-up already held it, or it came twice.
  EXPECT_EQ(ChannelTable::continuity({"abcdefghij", 5}, {"abcdefghij", 5}), C::Seen);
  EXPECT_EQ(ChannelTable::continuity({"abcdefghij", 5}, {"abcdefghij", 2}), C::Seen);
}

TEST(ChannelContinuity, AJumpOrANewEpochIsAGap) {
  EXPECT_EQ(ChannelTable::continuity({"abcdefghij", 5}, {"abcdefghij", 7}), C::Gap);
  EXPECT_EQ(ChannelTable::continuity({"abcdefghij", 5}, {"bbcdefghij", 1}), C::Gap);
  EXPECT_EQ(ChannelTable::continuity({"abcdefghij", 5}, {"bbcdefghij", 6}), C::Gap);
}

TEST(ChannelContinuity, AnAbsentChannelsFirstMessageFollows) {
  // A channel read while it did not exist ('z' epochs), born since.
  EXPECT_EQ(ChannelTable::continuity({"zabcd00012", 0}, {"k2f9qzx1ab", 1}), C::Next);
  EXPECT_EQ(ChannelTable::continuity({"zabcd00012", 0}, {"k2f9qzx1ab", 3}), C::Gap);
}
