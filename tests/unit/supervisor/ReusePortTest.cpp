// The kernel dispatch mode's CBPF program, run by the kernel on real loopback sockets:
// connections from different source addresses must land in the accept queue of the
// socket the program says.
#include "supervisor/ReusePort.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <unistd.h>

#include <map>

#include "core/Net.h"

using namespace dingo;

namespace {

struct Group {
  std::vector<UniqueFd> socks;
  SockAddr address;
};

Group openGroup(size_t n, const char* host = "127.0.0.1:0") {
  Group g;
  g.socks = openReusePortSockets(*parseSockAddr(host), 128, n, {});
  g.address = localAddress(g.socks.front().get());
  return g;
}

std::string v4bytes(const std::string& ip) {
  in_addr a{};
  inet_pton(AF_INET, ip.c_str(), &a);
  return std::string(reinterpret_cast<const char*>(&a), 4);
}

// Connects from `source` (127.x.y.z), waits for the connection to be queued, and
// returns the index of the listening socket that has it (accepting and closing it).
int landsOn(const Group& g, const std::string& source) {
  UniqueFd c(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in from{};
  from.sin_family = AF_INET;
  inet_pton(AF_INET, source.c_str(), &from.sin_addr);
  if (::bind(c.get(), reinterpret_cast<sockaddr*>(&from), sizeof from) != 0) return -2;
  if (::connect(c.get(), g.address.addr(), g.address.len) != 0) return -3;
  std::vector<pollfd> fds;
  for (const auto& s : g.socks) fds.push_back({s.get(), POLLIN, 0});
  if (::poll(fds.data(), fds.size(), 2000) <= 0) return -4;
  int found = -1;
  for (size_t i = 0; i < fds.size(); ++i) {
    if (!(fds[i].revents & POLLIN)) continue;
    UniqueFd a(::accept4(g.socks[i].get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (a) {
      if (found >= 0) return -5;  // two queues had one: not ours to judge
      found = static_cast<int>(i);
    }
  }
  return found;
}

std::string source(int i) { return "127." + std::to_string(1 + i / 250) + "." + std::to_string(i % 250) + ".7"; }

}  // namespace

TEST(ReusePortProgram, AddressHashLandsWhereTheProgramSays) {
  Group g = openGroup(4);
  std::vector<bool> in(4, true);
  ReusePortProgram p(ReusePortProgram::Pick::AddressHash, AF_INET, in);
  ASSERT_EQ(p.attach(g.socks[2].get()), 0);  // any member carries the group's program
  std::map<int, int> count;
  for (int i = 0; i < 80; ++i) {
    std::string src = source(i * 37);
    int expected = p.slotFor(v4bytes(src));
    int got = landsOn(g, src);
    EXPECT_EQ(got, expected) << src;
    ++count[got];
    // Sticky: the same address lands on the same socket again.
    if (i % 10 == 0) {
      EXPECT_EQ(landsOn(g, src), expected) << src;
    }
  }
  for (int s = 0; s < 4; ++s) EXPECT_GT(count[s], 5) << "slot " << s << " got almost nothing";
}

TEST(ReusePortProgram, SlotLeftOutGetsNothingAndOnlyItsClientsMove) {
  Group g = openGroup(3);
  ReusePortProgram all(ReusePortProgram::Pick::AddressHash, AF_INET, {true, true, true});
  ReusePortProgram without1(ReusePortProgram::Pick::AddressHash, AF_INET, {true, false, true});
  ASSERT_EQ(without1.attach(g.socks[0].get()), 0);
  int moved = 0;
  for (int i = 0; i < 60; ++i) {
    std::string src = source(i * 53 + 11);
    int before = all.slotFor(v4bytes(src));
    int got = landsOn(g, src);
    EXPECT_NE(got, 1) << src;
    if (before != 1) {
      EXPECT_EQ(got, before) << src << " moved though its slot is still in";
    } else {
      ++moved;
    }
  }
  EXPECT_GT(moved, 5);
  // The slot comes back: its clients too.
  ASSERT_EQ(all.attach(g.socks[1].get()), 0);
  for (int i = 0; i < 30; ++i) {
    std::string src = source(i * 53 + 11);
    EXPECT_EQ(landsOn(g, src), all.slotFor(v4bytes(src))) << src;
  }
}

TEST(ReusePortProgram, RandomSpreadsOverTheSlotsIn) {
  Group g = openGroup(3);
  ReusePortProgram p(ReusePortProgram::Pick::Random, AF_INET, {true, true, false});
  ASSERT_EQ(p.attach(g.socks[0].get()), 0);
  std::map<int, int> count;
  for (int i = 0; i < 120; ++i) ++count[landsOn(g, "127.0.0.1")];
  EXPECT_EQ(count[2], 0);
  EXPECT_GT(count[0], 30);
  EXPECT_GT(count[1], 30);
  EXPECT_EQ(count[0] + count[1], 120);
}

TEST(ReusePortProgram, Ipv6SourceAddressIsHashed) {
  Group g;
  try {
    g = openGroup(2, "[::1]:0");
  } catch (const std::exception&) {
    GTEST_SKIP() << "no IPv6 loopback";
  }
  ReusePortProgram p(ReusePortProgram::Pick::AddressHash, AF_INET6, {true, true});
  ASSERT_EQ(p.attach(g.socks[0].get()), 0);
  in6_addr a{};
  inet_pton(AF_INET6, "::1", &a);
  int expected = p.slotFor(std::string_view(reinterpret_cast<const char*>(&a), 16));
  for (int i = 0; i < 10; ++i) {
    UniqueFd c(::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0));
    ASSERT_EQ(::connect(c.get(), g.address.addr(), g.address.len), 0);
    pollfd fds[2] = {{g.socks[0].get(), POLLIN, 0}, {g.socks[1].get(), POLLIN, 0}};
    ASSERT_GT(::poll(fds, 2, 2000), 0);
    EXPECT_TRUE(fds[expected].revents & POLLIN);
    EXPECT_FALSE(fds[1 - expected].revents & POLLIN);
    UniqueFd a1(::accept4(g.socks[static_cast<size_t>(expected)].get(), nullptr, nullptr, SOCK_CLOEXEC));
  }
}

TEST(ReusePortProgram, ManySlotsStayWithinTheInstructionLimit) {
  std::vector<bool> in(200, true);
  for (size_t i = 0; i < in.size(); i += 3) in[i] = false;
  ReusePortProgram p(ReusePortProgram::Pick::AddressHash, AF_INET, in);
  EXPECT_LE(p.code().size(), 4096u);
  for (uint32_t i = 0; i < 5000; ++i) {
    uint32_t be = htonl(0x0a000000 + i * 7919);
    EXPECT_TRUE(in[static_cast<size_t>(p.slotFor(std::string_view(reinterpret_cast<const char*>(&be), 4)))]);
  }
}
