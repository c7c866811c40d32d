#include "gateway/PeerLimits.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <gtest/gtest.h>

namespace dingo {
namespace {

sockaddr_storage v4(const char* ip) {
  sockaddr_storage s{};
  auto& a = reinterpret_cast<sockaddr_in&>(s);
  a.sin_family = AF_INET;
  inet_pton(AF_INET, ip, &a.sin_addr);
  return s;
}

sockaddr_storage v6(const char* ip) {
  sockaddr_storage s{};
  auto& a = reinterpret_cast<sockaddr_in6&>(s);
  a.sin6_family = AF_INET6;
  inet_pton(AF_INET6, ip, &a.sin6_addr);
  return s;
}

using V = PeerLimits::Verdict;

TEST(PeerLimitsTest, OpenConnectionsPerAddress) {
  PeerLimits l(2, 0);
  bool counted = false;
  EXPECT_EQ(l.admit(v4("10.0.0.1"), 0, counted), V::Admitted);
  EXPECT_EQ(l.admit(v4("10.0.0.1"), 0, counted), V::Admitted);
  EXPECT_EQ(l.admit(v4("10.0.0.1"), 0, counted), V::TooManyOpen);
  EXPECT_FALSE(counted);
  EXPECT_EQ(l.admit(v4("10.0.0.2"), 0, counted), V::Admitted);
  l.release(v4("10.0.0.1"));
  EXPECT_EQ(l.admit(v4("10.0.0.1"), 0, counted), V::Admitted);
}

TEST(PeerLimitsTest, MappedAddressesAndIpv6Prefixes) {
  PeerLimits l(1, 0);
  bool counted = false;
  EXPECT_EQ(l.admit(v4("10.0.0.1"), 0, counted), V::Admitted);
  EXPECT_EQ(l.admit(v6("::ffff:10.0.0.1"), 0, counted), V::TooManyOpen);  // the same client
  EXPECT_EQ(l.admit(v6("2001:db8:1:2::1"), 0, counted), V::Admitted);
  EXPECT_EQ(l.admit(v6("2001:db8:1:2::ffff"), 0, counted), V::TooManyOpen);  // same /64
  EXPECT_EQ(l.admit(v6("2001:db8:1:3::1"), 0, counted), V::Admitted);       // another /64
}

TEST(PeerLimitsTest, NewConnectionsPerSecond) {
  PeerLimits l(0, 10);
  bool counted = false;
  int admitted = 0;
  for (int i = 0; i < 30; ++i) admitted += l.admit(v4("10.0.0.1"), 1000, counted) == V::Admitted;
  EXPECT_EQ(admitted, 10);  // a burst of one second's worth
  EXPECT_EQ(l.admit(v4("10.0.0.1"), 1000, counted), V::TooFast);
  EXPECT_EQ(l.admit(v4("10.0.0.1"), 1100, counted), V::Admitted);  // 100 ms: one more token
  EXPECT_EQ(l.admit(v4("10.0.0.1"), 1100, counted), V::TooFast);
}

TEST(PeerLimitsTest, SweepForgetsWhatHasNothingToRemember) {
  PeerLimits l(5, 10);
  bool counted = false;
  l.admit(v4("10.0.0.1"), 0, counted);
  l.admit(v4("10.0.0.2"), 0, counted);
  l.release(v4("10.0.0.2"));
  l.sweep(0);
  EXPECT_EQ(l.tracked(), 2u);  // .2's bucket is not full yet
  l.sweep(5000);
  EXPECT_EQ(l.tracked(), 1u);  // .1 still has a connection open
}

TEST(PeerLimitsTest, OffMeansOff) {
  PeerLimits l(0, 0);
  bool counted = true;
  for (int i = 0; i < 1000; ++i) EXPECT_EQ(l.admit(v4("10.0.0.1"), 0, counted), V::Admitted);
  EXPECT_FALSE(counted);
  EXPECT_EQ(l.tracked(), 0u);
}

}  // namespace
}  // namespace dingo
