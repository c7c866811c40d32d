#include "core/ChannelPattern.h"

#include <gtest/gtest.h>

#include <string>

using namespace dingo;

namespace {

bool match(std::string_view pattern, std::string_view channel, std::string_view sub = "alice") {
  auto p = ChannelPattern::parse(pattern);
  EXPECT_TRUE(p.has_value()) << pattern;
  return p && p->matches(channel, sub);
}

}  // namespace

TEST(ChannelPattern, AnExactNameMatchesItselfOnly) {
  EXPECT_TRUE(match("/rooms/42", "/rooms/42"));
  EXPECT_FALSE(match("/rooms/42", "/rooms/4"));
  EXPECT_FALSE(match("/rooms/42", "/rooms/420"));
  EXPECT_FALSE(match("/rooms/42", "/rooms/42/x"));
}

TEST(ChannelPattern, SlashStarIsEveryChannelBelowButNotTheNameItself) {
  EXPECT_TRUE(match("/rooms/*", "/rooms/42"));
  EXPECT_TRUE(match("/rooms/*", "/rooms/42/deep/er"));
  EXPECT_FALSE(match("/rooms/*", "/rooms"));
  EXPECT_FALSE(match("/rooms/*", "/rooms/"));
  EXPECT_FALSE(match("/rooms/*", "/roomsx/1"));
  EXPECT_TRUE(match("/*", "/a"));
  EXPECT_TRUE(match("/*", "/a/b/c"));
}

TEST(ChannelPattern, SubStandsForTheTokensOwnUser) {
  EXPECT_TRUE(match("/users/{sub}", "/users/alice"));
  EXPECT_FALSE(match("/users/{sub}", "/users/bob"));
  EXPECT_FALSE(match("/users/{sub}", "/users/alice/x"));
  EXPECT_FALSE(match("/users/{sub}", "/users/alicex"));
  EXPECT_TRUE(match("/users/{sub}/*", "/users/alice/inbox"));
  EXPECT_FALSE(match("/users/{sub}/*", "/users/alice"));
  EXPECT_TRUE(match("/dm/{sub}-{sub}", "/dm/alice-alice"));
  EXPECT_FALSE(match("/dm/{sub}-{sub}", "/dm/alice-bob"));
  EXPECT_TRUE(match("/u.{sub}.x", "/u.alice.x"));
}

TEST(ChannelPattern, AUserThatCouldReachAnotherUsersChannelsMatchesNothing) {
  // With "/" in sub, /users/{sub}/* would cover /users/alice/... for the user "alice/..".
  EXPECT_FALSE(match("/users/{sub}/*", "/users/alice/inbox/x", "alice/inbox"));
  EXPECT_FALSE(match("/users/{sub}", "/users/", ""));
  EXPECT_FALSE(match("/users/{sub}", "/users/a b", "a b"));
  EXPECT_FALSE(match("/users/{sub}", "/users/*", "*"));
  // Patterns without {sub} do not care who the user is.
  EXPECT_TRUE(match("/rooms/*", "/rooms/1", ""));
  EXPECT_TRUE(match("/rooms/*", "/rooms/1", "a/b"));
}

TEST(ChannelPattern, WhatIsNotAPatternIsRefused) {
  for (std::string_view bad : {"", "rooms", "*", "/rooms/*/x", "/rooms*", "/ro*oms", "/{user}", "/{sub",
                               "/a b", "/rooms/**", "/x/{SUB}", "/\xc3\xa9"})
    EXPECT_FALSE(ChannelPattern::parse(bad).has_value()) << bad;
  EXPECT_FALSE(ChannelPattern::parse("/" + std::string(600, 'a')).has_value());
  EXPECT_TRUE(ChannelPattern::parse("/" + std::string(254, 'a')).has_value());
}

TEST(ChannelPattern, ManySubsAreMatchedInOrder) {
  // Many {sub} against a long channel: each piece is compared once, left to right.
  std::string pattern = "/";
  for (int i = 0; i < 50; ++i) pattern += "{sub}";
  pattern += "/*";
  auto p = ChannelPattern::parse(pattern);
  ASSERT_TRUE(p);
  std::string channel = "/" + std::string(200, 'a') + "/b";
  EXPECT_TRUE(p->matches(channel, "aaaa"));  // 50 times "aaaa" is 200 a's, then /b
  EXPECT_FALSE(p->matches(channel, "aaa"));
  EXPECT_FALSE(p->matches(channel, "aaaaa"));
}

TEST(ChannelPattern, AnyMatchesTriesEachPattern) {
  std::vector<ChannelPattern> ps;
  for (auto t : {"/a/*", "/users/{sub}"}) ps.push_back(*ChannelPattern::parse(t));
  EXPECT_TRUE(anyMatches(ps, "/a/1", "bob"));
  EXPECT_TRUE(anyMatches(ps, "/users/bob", "bob"));
  EXPECT_FALSE(anyMatches(ps, "/users/alice", "bob"));
  EXPECT_FALSE(anyMatches({}, "/a/1", "bob"));
}
