#include "core/Duration.h"

#include <gtest/gtest.h>

using namespace dingo;
using namespace std::chrono_literals;

TEST(Duration, ParsesUnitsAndSequences) {
  EXPECT_EQ(parseDuration("250ms"), Duration(250));
  EXPECT_EQ(parseDuration("30s"), Duration(30'000));
  EXPECT_EQ(parseDuration("5m"), Duration(300'000));
  EXPECT_EQ(parseDuration("1h"), Duration(3'600'000));
  EXPECT_EQ(parseDuration("1d"), Duration(86'400'000));
  EXPECT_EQ(parseDuration("1m30s"), Duration(90'000));
  EXPECT_EQ(parseDuration("0s"), Duration(0));
}

TEST(Duration, RejectsMalformed) {
  for (const char* bad : {"", "30", "s", "-5s", "5 s", "5sec", "1.5s", "5S", "99999999999999999999s"})
    EXPECT_FALSE(parseDuration(bad)) << bad;
}

TEST(Duration, FormatsRoundTrip) {
  for (auto d : {Duration(0), Duration(250), Duration(90'000), Duration(3'723'004)}) {
    EXPECT_EQ(parseDuration(formatDuration(d)), d) << formatDuration(d);
  }
  EXPECT_EQ(formatDuration(Duration(90'000)), "1m30s");
}

TEST(Size, ParsesUnits) {
  EXPECT_EQ(parseSize("65536"), 65536u);
  EXPECT_EQ(parseSize("64KiB"), 65536u);
  EXPECT_EQ(parseSize("1M"), 1u << 20);
  EXPECT_FALSE(parseSize("1X"));
  EXPECT_FALSE(parseSize("K"));
  EXPECT_FALSE(parseSize("1 M"));
}
