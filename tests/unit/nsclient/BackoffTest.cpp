#include "dingo/nsclient/Backoff.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>
#include <stdexcept>
#include <vector>

using namespace dingo::ns;
using namespace std::chrono_literals;
using std::chrono::milliseconds;

namespace {

// A policy whose ceiling never moves: every draw is over [0, ceiling_ms].
BackoffPolicy fixedCeiling(milliseconds ceiling_ms) {
  BackoffPolicy policy;
  policy.initial = ceiling_ms;
  policy.max = ceiling_ms;
  policy.multiplier = 1.0;
  policy.dropSpread = ceiling_ms;
  return policy;
}

struct Stats {
  double mean = 0;
  int64_t min = std::numeric_limits<int64_t>::max();
  int64_t max = 0;
  std::vector<int> quarters = std::vector<int>(4, 0);  // counts per quarter of [0, ceiling]
};

Stats stats(const std::vector<milliseconds>& delays, milliseconds ceiling) {
  Stats s;
  for (auto d : delays) {
    s.mean += static_cast<double>(d.count()) / static_cast<double>(delays.size());
    s.min = std::min(s.min, d.count());
    s.max = std::max(s.max, d.count());
    ++s.quarters[std::min<int64_t>(3, d.count() * 4 / ceiling.count())];
  }
  return s;
}

}  // namespace

TEST(Backoff, DefaultsAreGrpcLike) {
  Backoff backoff;
  EXPECT_EQ(backoff.policy().initial, 1000ms);
  EXPECT_DOUBLE_EQ(backoff.policy().multiplier, 1.6);
  EXPECT_EQ(backoff.policy().max, 120000ms);
  EXPECT_EQ(backoff.policy().stable, 30000ms);
  EXPECT_EQ(backoff.ceiling(), 1000ms);
  EXPECT_EQ(backoff.attempts(), 0);
}

TEST(Backoff, CeilingsGrowByTheMultiplierUpToMax) {
  Backoff backoff({}, 7);
  const std::vector<int64_t> expected = {1000,  1600,  2560,  4096,   6554,   10486,  16777,
                                         26844, 42950, 68719, 109951, 120000, 120000, 120000};
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ(backoff.ceiling().count(), expected[i]) << "after " << i << " failures";
    EXPECT_EQ(backoff.attempts(), static_cast<int>(i));
    backoff.nextDelay();
  }
}

TEST(Backoff, EveryDelayIsWithinTheCeiling) {
  for (uint64_t seed = 1; seed <= 50; ++seed) {
    Backoff backoff({}, seed);
    for (int i = 0; i < 40; ++i) {
      milliseconds ceiling = backoff.ceiling();
      milliseconds delay = backoff.nextDelay();
      ASSERT_GE(delay, 0ms);
      ASSERT_LE(delay, ceiling) << "seed " << seed << " failure " << i;
    }
  }
}

TEST(Backoff, JitterIsUniformOverTheWholeCeiling) {
  // 100,000 draws over [0, 10 s]: the mean's standard deviation is 9 ms, so 100 ms is
  // eleven of them, and each quarter's share is within 1% (about seven deviations).
  Backoff backoff(fixedCeiling(10000ms), 42);
  std::vector<milliseconds> delays;
  std::set<int64_t> distinct;
  for (int i = 0; i < 100000; ++i) {
    delays.push_back(backoff.nextDelay());
    distinct.insert(delays.back().count());
  }
  Stats s = stats(delays, 10000ms);
  EXPECT_NEAR(s.mean, 5000.0, 100.0);
  EXPECT_LT(s.min, 50);  // full jitter: no floor
  EXPECT_GT(s.max, 9950);
  for (int q = 0; q < 4; ++q) EXPECT_NEAR(s.quarters[q], 25000, 1000) << "quarter " << q;
  EXPECT_GT(distinct.size(), 9000u);
}

TEST(Backoff, TheSameSeedRepeatsAndAnotherDoesNot) {
  Backoff a({}, 5), b({}, 5), c({}, 6);
  std::vector<milliseconds> da, db, dc;
  for (int i = 0; i < 20; ++i) {
    da.push_back(a.nextDelay());
    db.push_back(b.nextDelay());
    dc.push_back(c.nextDelay());
  }
  EXPECT_EQ(da, db);
  EXPECT_NE(da, dc);
}

TEST(Backoff, ResetsOnlyAfterAStableConnection) {
  Backoff backoff({}, 11);
  for (int i = 0; i < 5; ++i) backoff.nextDelay();
  ASSERT_EQ(backoff.ceiling(), 10486ms);
  ASSERT_EQ(backoff.attempts(), 5);

  // Up 29 s: not stable, the backoff goes on where it was (and the draw is under the
  // current ceiling, which is above dropSpread here).
  milliseconds delay = backoff.afterDrop(29999ms);
  EXPECT_LE(delay, 10486ms);
  EXPECT_EQ(backoff.attempts(), 6);
  EXPECT_EQ(backoff.ceiling(), 16777ms);

  // Up 30 s: stable, back to the start; the drop's own retry counts as the first attempt.
  delay = backoff.afterDrop(30000ms);
  EXPECT_LE(delay, backoff.policy().dropSpread);
  EXPECT_EQ(backoff.attempts(), 1);
  EXPECT_EQ(backoff.ceiling(), 1600ms);
}

TEST(Backoff, ResetStartsOver) {
  Backoff backoff({}, 3);
  for (int i = 0; i < 8; ++i) backoff.nextDelay();
  backoff.reset();
  EXPECT_EQ(backoff.attempts(), 0);
  EXPECT_EQ(backoff.ceiling(), 1000ms);
  EXPECT_LE(backoff.nextDelay(), 1000ms);
}

TEST(Backoff, TheFirstRetryAfterADropIsJitteredOverTheDropSpread) {
  // A fresh client per draw, as in a restart: 20,000 clients whose stable connections
  // drop at the same instant. Their first retries must cover [0, 8 s] evenly, not come
  // back at once or within `initial`.
  BackoffPolicy policy;
  ASSERT_EQ(policy.dropSpread, 8000ms);
  std::vector<milliseconds> delays;
  for (uint64_t client = 0; client < 20000; ++client) {
    Backoff backoff(policy, 1000 + client);
    delays.push_back(backoff.afterDrop(1h));
    ASSERT_LE(delays.back(), 8000ms);
  }
  Stats s = stats(delays, 8000ms);
  EXPECT_NEAR(s.mean, 4000.0, 150.0);  // the mean's deviation is 16 ms
  EXPECT_LT(s.min, 100);
  EXPECT_GT(s.max, 7900);
  for (int q = 0; q < 4; ++q) EXPECT_NEAR(s.quarters[q], 5000, 400) << "quarter " << q;
}

TEST(Backoff, AfterTheDropRetryFailuresFollowTheOrdinarySequence) {
  Backoff backoff({}, 21);
  backoff.afterDrop(1h);
  EXPECT_EQ(backoff.ceiling(), 1600ms);
  EXPECT_LE(backoff.nextDelay(), 1600ms);
  EXPECT_EQ(backoff.ceiling(), 2560ms);
}

TEST(Backoff, WithoutADropSpreadTheFirstRetryIsDrawnUnderTheCeiling) {
  BackoffPolicy policy;
  policy.dropSpread = 0ms;
  std::vector<milliseconds> delays;
  for (uint64_t client = 0; client < 4000; ++client) {
    Backoff backoff(policy, client);
    delays.push_back(backoff.afterDrop(1h));
    ASSERT_LE(delays.back(), 1000ms);
  }
  Stats s = stats(delays, 1000ms);
  EXPECT_NEAR(s.mean, 500.0, 30.0);  // still jittered: the deviation is 5 ms
  EXPECT_GT(s.max, 950);
}

TEST(Backoff, TheHintIsHonouredAsSent) {
  Backoff backoff({}, 9);
  for (int i = 0; i < 3; ++i) backoff.nextDelay();
  const milliseconds ceiling = backoff.ceiling();

  for (auto hint : {0ms, 250ms, 2345ms, 5000ms}) {
    EXPECT_EQ(backoff.afterHint(hint), hint);  // unjittered: the server already spread it
  }
  // A hint is not a failed attempt, and without an uptime it never resets.
  EXPECT_EQ(backoff.attempts(), 3);
  EXPECT_EQ(backoff.ceiling(), ceiling);

  // Out-of-range hints are clamped, not obeyed blindly.
  EXPECT_EQ(backoff.afterHint(-5ms), 0ms);
  EXPECT_EQ(backoff.afterHint(600000ms), 120000ms);
}

TEST(Backoff, AHintAfterAStableConnectionResets) {
  Backoff backoff({}, 13);
  for (int i = 0; i < 4; ++i) backoff.nextDelay();
  EXPECT_EQ(backoff.afterHint(1200ms, 29999ms), 1200ms);
  EXPECT_EQ(backoff.attempts(), 4);
  EXPECT_EQ(backoff.afterHint(1200ms, 30000ms), 1200ms);
  EXPECT_EQ(backoff.attempts(), 0);
  EXPECT_EQ(backoff.ceiling(), 1000ms);
}

TEST(Backoff, BadPoliciesThrow) {
  auto with = [](auto change) {
    BackoffPolicy policy;
    change(policy);
    return policy;
  };
  const std::vector<BackoffPolicy> bad = {
      with([](BackoffPolicy& p) { p.initial = 0ms; }),
      with([](BackoffPolicy& p) { p.initial = -1ms; }),
      with([](BackoffPolicy& p) { p.multiplier = 0.99; }),
      with([](BackoffPolicy& p) { p.multiplier = std::nan(""); }),
      with([](BackoffPolicy& p) { p.multiplier = std::numeric_limits<double>::infinity(); }),
      with([](BackoffPolicy& p) { p.max = 999ms; }),
      with([](BackoffPolicy& p) { p.stable = -1ms; }),
      with([](BackoffPolicy& p) { p.dropSpread = -1ms; }),
      with([](BackoffPolicy& p) { p.dropSpread = p.max + 1ms; }),
  };
  for (size_t i = 0; i < bad.size(); ++i) {
    EXPECT_THROW(validate(bad[i]), std::invalid_argument) << "case " << i;
    EXPECT_THROW(Backoff(bad[i], 1), std::invalid_argument) << "case " << i;
  }
  // The edges are allowed.
  EXPECT_NO_THROW(Backoff(with([](BackoffPolicy& p) {
    p.multiplier = 1.0;
    p.max = p.initial;
    p.stable = 0ms;
    p.dropSpread = 0ms;
  }), 1));
}
