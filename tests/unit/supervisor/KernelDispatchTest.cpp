// KernelDispatch's decisions with a moved clock: the grace of a dead or starting slot,
// suspect slots leaving at once, and the fallback when nobody is left.
#include "supervisor/KernelDispatch.h"

#include <gtest/gtest.h>

using namespace dingo;
using namespace std::chrono_literals;
using Slot = KernelDispatch::Slot;

namespace {

const auto t0 = KernelDispatch::Clock::time_point{} + 1000s;

}  // namespace

TEST(KernelDispatch, StartingSlotsWaitForTheirWorkersDuringTheGrace) {
  KernelDispatch kd(DispatchPolicy::RoundRobin, 2, 1s, t0);
  kd.update({Slot::Starting, Slot::Starting}, t0 + 100ms);
  EXPECT_EQ(kd.inProgram(), (std::vector<bool>{true, true}));
  EXPECT_FALSE(kd.fallback(0));
  EXPECT_EQ(kd.nextDeadline(), t0 + 1s);
  kd.update({Slot::Serving, Slot::Starting}, t0 + 1100ms);  // slot 1 is slow to start
  EXPECT_EQ(kd.inProgram(), (std::vector<bool>{true, false}));
  EXPECT_FALSE(kd.fallback(0));
  EXPECT_TRUE(kd.fallback(1));
  kd.update({Slot::Serving, Slot::Serving}, t0 + 1200ms);
  EXPECT_EQ(kd.inProgram(), (std::vector<bool>{true, true}));
  EXPECT_FALSE(kd.fallback(1));
  EXPECT_EQ(kd.nextDeadline(), KernelDispatch::Clock::time_point::max());
}

TEST(KernelDispatch, DeadSlotKeepsItsQueueForAMomentThenFallsBack) {
  KernelDispatch kd(DispatchPolicy::IpHash, 3, 1s, t0);
  kd.update({Slot::Serving, Slot::Serving, Slot::Serving}, t0);
  auto died = t0 + 10s;
  EXPECT_FALSE(kd.update({Slot::Serving, Slot::Down, Slot::Serving}, died));
  EXPECT_TRUE(kd.inProgram()[1]);
  EXPECT_FALSE(kd.fallback(1));
  EXPECT_EQ(kd.nextDeadline(), died + 1s);
  // The replacement is starting, still within the grace.
  EXPECT_FALSE(kd.update({Slot::Serving, Slot::Starting, Slot::Serving}, died + 500ms));
  EXPECT_TRUE(kd.inProgram()[1]);
  // Past it: out of the program, and the supervisor takes what is queued.
  EXPECT_TRUE(kd.update({Slot::Serving, Slot::Starting, Slot::Serving}, died + 1001ms));
  EXPECT_FALSE(kd.inProgram()[1]);
  EXPECT_TRUE(kd.fallback(1));
  EXPECT_TRUE(kd.update({Slot::Serving, Slot::Serving, Slot::Serving}, died + 3s));
  EXPECT_TRUE(kd.inProgram()[1]);
  EXPECT_FALSE(kd.fallback(1));
}

TEST(KernelDispatch, SuspectSlotLeavesAtOnce) {
  KernelDispatch kd(DispatchPolicy::RoundRobin, 2, 1s, t0);
  kd.update({Slot::Serving, Slot::Serving}, t0);
  EXPECT_TRUE(kd.update({Slot::Suspect, Slot::Serving}, t0 + 5s));
  EXPECT_EQ(kd.inProgram(), (std::vector<bool>{false, true}));
  EXPECT_TRUE(kd.fallback(0));
  // Killed by the watchdog and respawned: no new grace, it was not serving already.
  kd.update({Slot::Down, Slot::Serving}, t0 + 6s);
  EXPECT_FALSE(kd.inProgram()[0]);
  EXPECT_TRUE(kd.fallback(0));
}

TEST(KernelDispatch, NobodyLeftMeansEverySlotKeepsItsShareAndFallsBack) {
  KernelDispatch kd(DispatchPolicy::RoundRobin, 2, 1s, t0);
  kd.update({Slot::Serving, Slot::Serving}, t0);
  kd.update({Slot::Suspect, Slot::Suspect}, t0 + 1s);
  EXPECT_EQ(kd.inProgram(), (std::vector<bool>{true, true}));
  EXPECT_TRUE(kd.fallback(0));
  EXPECT_TRUE(kd.fallback(1));
  EXPECT_TRUE(kd.fallback(2));  // an extra inherited socket always falls back
}

TEST(KernelDispatch, AttachesToRealGroupsOnlyWhenTheSetChanges) {
  auto socks = openReusePortSockets(*parseSockAddr("127.0.0.1:0"), 16, 2, {});
  KernelDispatch kd(DispatchPolicy::IpHash, 2, 1s, t0);
  kd.addGroup(AF_INET, {socks[0].get(), socks[1].get()});
  EXPECT_EQ(kd.programsAttached(), 1u);
  kd.update({Slot::Serving, Slot::Serving}, t0 + 100ms);
  EXPECT_EQ(kd.programsAttached(), 1u);  // same set: nothing to attach
  kd.update({Slot::Suspect, Slot::Serving}, t0 + 200ms);
  EXPECT_EQ(kd.programsAttached(), 2u);
}
