#include "supervisor/Dispatcher.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <map>
#include <random>

using namespace dingo;

namespace {

std::string ipv4(uint32_t n) {
  uint32_t be = htonl(n);
  return std::string(reinterpret_cast<const char*>(&be), 4);
}

std::vector<SlotView> allEligible(size_t n) { return std::vector<SlotView>(n, SlotView{true, 0}); }

int first(Dispatcher& d, const std::string& ip, const std::vector<SlotView>& slots) {
  std::vector<int> out;
  d.order(ip, slots, 3, out);
  return out.empty() ? -1 : out[0];
}

}  // namespace

TEST(IpHash, SameAddressSameWorker) {
  auto d = makeDispatcher(DispatchPolicy::IpHash, 4);
  auto slots = allEligible(4);
  for (uint32_t i = 0; i < 100; ++i) {
    std::string ip = ipv4(0x7f000001 + i);
    int w = first(*d, ip, slots);
    for (int k = 0; k < 5; ++k) EXPECT_EQ(first(*d, ip, slots), w);
  }
}

TEST(IpHash, SpreadsClientsEvenly) {
  auto d = makeDispatcher(DispatchPolicy::IpHash, 4);
  auto slots = allEligible(4);
  std::map<int, int> count;
  std::mt19937 rng(7);
  const int n = 40000;
  for (int i = 0; i < n; ++i) ++count[first(*d, ipv4(rng()), slots)];
  for (int s = 0; s < 4; ++s) {
    EXPECT_GT(count[s], n / 4 * 0.75) << "slot " << s;
    EXPECT_LT(count[s], n / 4 * 1.25) << "slot " << s;
  }
}

TEST(IpHash, AWorkersDeathMovesOnlyItsShare) {
  const size_t workers = 4;
  auto d = makeDispatcher(DispatchPolicy::IpHash, workers);
  auto slots = allEligible(workers);
  std::mt19937 rng(11);
  std::vector<std::string> ips;
  std::vector<int> before;
  for (int i = 0; i < 20000; ++i) {
    ips.push_back(ipv4(rng()));
    before.push_back(first(*d, ips.back(), slots));
  }
  slots[2].eligible = false;  // worker 2 dies
  std::map<int, int> moved_to;
  for (size_t i = 0; i < ips.size(); ++i) {
    int now = first(*d, ips[i], slots);
    if (before[i] == 2) {
      EXPECT_NE(now, 2);
      ++moved_to[now];
    } else {
      EXPECT_EQ(now, before[i]) << "a client of a live worker moved";
    }
  }
  // The dead worker's clients spread over the survivors instead of piling onto one.
  EXPECT_EQ(moved_to.size(), 3u);
  slots[2].eligible = true;  // its replacement gets exactly its old share back
  for (size_t i = 0; i < ips.size(); ++i) EXPECT_EQ(first(*d, ips[i], slots), before[i]);
}

TEST(IpHash, FallbackOrderIsDistinctAndEligible) {
  auto d = makeDispatcher(DispatchPolicy::IpHash, 4);
  auto slots = allEligible(4);
  slots[1].eligible = false;
  std::vector<int> out;
  d->order(ipv4(0x7f000005), slots, 3, out);
  ASSERT_EQ(out.size(), 3u);
  EXPECT_NE(out[0], out[1]);
  EXPECT_NE(out[1], out[2]);
  EXPECT_NE(out[0], out[2]);
  for (int s : out) EXPECT_NE(s, 1);
}

TEST(IpHash, Ipv6AndMappedAddresses) {
  auto d = makeDispatcher(DispatchPolicy::IpHash, 3);
  auto slots = allEligible(3);
  std::string v6(16, '\0');
  v6[15] = 1;
  EXPECT_GE(first(*d, v6, slots), 0);
}

TEST(RoundRobin, TakesTurnsAndSkipsIneligible) {
  auto d = makeDispatcher(DispatchPolicy::RoundRobin, 3);
  auto slots = allEligible(3);
  std::vector<int> seq;
  for (int i = 0; i < 6; ++i) seq.push_back(first(*d, "", slots));
  EXPECT_EQ(seq, (std::vector<int>{0, 1, 2, 0, 1, 2}));
  slots[1].eligible = false;
  std::map<int, int> count;
  for (int i = 0; i < 6; ++i) ++count[first(*d, "", slots)];
  EXPECT_EQ(count[1], 0);
  EXPECT_EQ(count[0] + count[2], 6);
}

TEST(LeastConn, PicksTheLeastLoaded) {
  auto d = makeDispatcher(DispatchPolicy::LeastConn, 3);
  std::vector<SlotView> slots = {{true, 10}, {true, 3}, {true, 7}};
  std::vector<int> out;
  d->order("", slots, 3, out);
  EXPECT_EQ(out, (std::vector<int>{1, 2, 0}));
  slots[1].eligible = false;
  EXPECT_EQ(first(*d, "", slots), 2);
}

TEST(LeastConn, TiesShareTheBurst) {
  auto d = makeDispatcher(DispatchPolicy::LeastConn, 2);
  auto slots = allEligible(2);
  std::map<int, int> count;
  for (int i = 0; i < 10; ++i) ++count[first(*d, "", slots)];
  EXPECT_EQ(count[0], 5);
  EXPECT_EQ(count[1], 5);
}

TEST(Dispatch, NoEligibleWorkerGivesNoCandidate) {
  for (auto p : {DispatchPolicy::IpHash, DispatchPolicy::RoundRobin, DispatchPolicy::LeastConn}) {
    auto d = makeDispatcher(p, 2);
    std::vector<SlotView> slots(2, SlotView{false, 0});
    EXPECT_EQ(first(*d, ipv4(1), slots), -1) << dispatchName(p);
  }
}
