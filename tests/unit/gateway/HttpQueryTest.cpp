// gateway/HttpQuery: percent-decoding and query strings, for ?channel=, ?cursor=,
// ?since=, ?limit= and ?token=.
#include "gateway/HttpQuery.h"

#include <gtest/gtest.h>

namespace dingo {
namespace {

TEST(HttpQueryTest, PercentDecode) {
  EXPECT_EQ(percentDecode("%2Fchat%2froom", true), "/chat/room");
  EXPECT_EQ(percentDecode("a+b", true), "a b");
  EXPECT_EQ(percentDecode("a+b", false), "a+b");  // paths: '+' is itself
  EXPECT_EQ(percentDecode("%2B", true), "+");
  EXPECT_EQ(percentDecode("", true), "");
  EXPECT_EQ(percentDecode("%00", true), std::string(1, '\0'));
  EXPECT_EQ(percentDecode("x%41", true), "xA");  // an escape at the very end
}

TEST(HttpQueryTest, MalformedEscapesAreRefused) {
  for (const char* bad : {"%", "%4", "a%", "%G1", "%1G", "%%41", "a%4"}) EXPECT_FALSE(percentDecode(bad, true)) << bad;
}

TEST(HttpQueryTest, QueryValues) {
  using V = std::vector<std::string_view>;
  EXPECT_EQ(queryValues("channel=/a&x=1&channel=/b", "channel"), (V{"/a", "/b"}));
  EXPECT_EQ(queryValues("channelx=/a&xchannel=/b", "channel"), V{});
  EXPECT_EQ(queryValues("a&a=&a=1", "a"), (V{"", "", "1"}));  // without '=' the value is empty
  EXPECT_EQ(queryValues("&&a=1&&", "a"), (V{"1"}));
  EXPECT_EQ(queryValues("a=1=2", "a"), (V{"1=2"}));
  EXPECT_EQ(queryValues("", "a"), V{});
  EXPECT_EQ(queryValues("a=%2F", "a"), (V{"%2F"}));  // raw: decoding is the caller's
}

TEST(HttpQueryTest, QueryParamTakesTheFirstValueDecoded) {
  bool bad = false;
  EXPECT_EQ(queryParam("limit=5&limit=7", "limit", bad), "5");
  EXPECT_EQ(queryParam("token=a%2Bb+c", "token", bad), "a+b c");
  EXPECT_FALSE(queryParam("x=1", "limit", bad));
  EXPECT_FALSE(bad);
  EXPECT_FALSE(queryParam("limit=%zz", "limit", bad));
  EXPECT_TRUE(bad);
  bad = false;
  EXPECT_EQ(queryParam("limit=1&limit=%zz", "limit", bad), "1");  // only the first is read
  EXPECT_FALSE(bad);
}

}  // namespace
}  // namespace dingo
