#include "supervisor/Dispatcher.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <map>
#include <random>

#include "core/Net.h"

using namespace dingo;

namespace {

std::string ipv4(uint32_t n) {
  uint32_t be = htonl(n);
  return std::string(reinterpret_cast<const char*>(&be), 4);
}

// ::ffff:a.b.c.d, as a dual-stack (IPv6) listener reports an IPv4 client.
std::string ipv4Mapped(uint32_t n) {
  std::string v6(16, '\0');
  v6[10] = '\xff';
  v6[11] = '\xff';
  return v6.replace(12, 4, ipv4(n));
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
  v6[15] = 1;  // ::1
  EXPECT_GE(first(*d, v6, slots), 0);
  // An IPv4 client is the same client whether it reached an IPv4 or a dual-stack
  // listener: same hash, same worker, same fallback order.
  std::mt19937 rng(5);
  std::map<int, int> count;
  for (int i = 0; i < 1000; ++i) {
    uint32_t n = i == 0 ? 0x7f000001 : static_cast<uint32_t>(rng());
    SCOPED_TRACE(testing::Message() << "address " << i);
    EXPECT_EQ(hashPeer(ipv4Mapped(n)), hashPeer(ipv4(n)));
    std::vector<int> plain, mapped;
    d->order(ipv4(n), slots, 3, plain);
    d->order(ipv4Mapped(n), slots, 3, mapped);
    EXPECT_EQ(mapped, plain);
    ++count[plain[0]];
  }
  EXPECT_EQ(count.size(), 3u) << "the addresses all hashed to one worker";
  // Not every 16-byte address is a mapped one: ::a.b.c.d (deprecated IPv4-compatible) and
  // 64:ff9b::a.b.c.d (NAT64) are IPv6 clients of their own.
  std::string compatible = ipv4Mapped(0x0a000001);
  compatible[10] = compatible[11] = '\0';
  EXPECT_NE(hashPeer(compatible), hashPeer(ipv4(0x0a000001)));
  std::string nat64 = ipv4Mapped(0x0a000001);
  nat64[10] = nat64[11] = '\0';
  nat64[0] = 0x00;
  nat64[1] = 0x64;
  nat64[2] = '\xff';
  nat64[3] = '\x9b';
  EXPECT_NE(hashPeer(nat64), hashPeer(ipv4(0x0a000001)));
}

// The supervisor dispatches on SockAddr::ipBytes: a dual-stack listener's IPv4 client
// gives the same bytes as on an IPv4 listener.
TEST(IpHash, PeerBytesOfAMappedSocketAddressAreItsIpv4Address) {
  auto plain = parseSockAddr("10.1.2.3:80");
  auto mapped = parseSockAddr("[::ffff:10.1.2.3]:80");
  ASSERT_TRUE(plain && mapped);
  EXPECT_EQ(mapped->family(), AF_INET6);
  EXPECT_EQ(mapped->ipBytes(), plain->ipBytes());
  EXPECT_EQ(mapped->ipBytes(), ipv4(0x0a010203));
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
