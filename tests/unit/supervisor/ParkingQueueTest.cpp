#include "supervisor/ParkingQueue.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>

#include "FakeTime.h"
#include "core/Net.h"
#include "supervisor/HandOff.h"

using namespace dingo;
using namespace std::chrono_literals;

namespace {

// A connected socket, standing for an accepted client; the test keeps the other end.
struct Client {
  UniqueFd ours, theirs;
  Client() {
    int sv[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    ours = UniqueFd(sv[0]);
    theirs = UniqueFd(sv[1]);
  }
  // The supervisor's copy was closed: the client end reads end-of-file.
  bool closedByUs() const {
    char c;
    return ::recv(ours.get(), &c, 1, MSG_DONTWAIT) == 0;
  }
};

SockAddr peer(uint32_t n) {
  auto a = parseSockAddr(fmt::format("127.0.0.{}:{}", 1 + n % 200, 40000 + n));
  return *a;
}

ParkedSocket parked(UniqueFd fd, uint16_t listener, SteadyTime since) {
  return ParkedSocket{std::move(fd), peer(listener), listener, false, since};
}

}  // namespace

TEST(ParkingQueue, RefusesBeyondItsCapacityAndLeavesTheSocketWithTheCaller) {
  ParkingQueue q(3);
  std::vector<Client> clients(4);
  for (int i = 0; i < 3; ++i) {
    ParkedSocket p = parked(std::move(clients[i].theirs), static_cast<uint16_t>(i), SteadyTime{});
    EXPECT_TRUE(q.push(p));
  }
  ParkedSocket extra = parked(std::move(clients[3].theirs), 3, SteadyTime{});
  int fd = extra.fd.get();
  EXPECT_FALSE(q.push(extra));
  EXPECT_EQ(extra.fd.get(), fd) << "a refused socket stays with the caller, who closes it";
  EXPECT_EQ(q.size(), 3u);
  EXPECT_EQ(q.total(), 3u);
  q.pop();
  EXPECT_TRUE(q.push(extra));
  EXPECT_EQ(q.size(), 3u);
  EXPECT_EQ(q.total(), 4u);
}

TEST(ParkingQueue, KeepsOrder) {
  ParkingQueue q;
  EXPECT_EQ(q.capacity(), ParkingQueue::kMaxParked);
  std::vector<Client> clients(5);
  for (int i = 0; i < 5; ++i) {
    ParkedSocket p = parked(std::move(clients[i].theirs), static_cast<uint16_t>(i), SteadyTime{});
    ASSERT_TRUE(q.push(p));
  }
  for (uint16_t i = 0; i < 5; ++i) {
    EXPECT_EQ(q.front().listener, i);
    q.pop();
  }
  EXPECT_TRUE(q.empty());
}

TEST(ParkingQueue, WaitsAtMostTheLimit) {
  SteadyTime t0{std::chrono::hours(1)};
  Client c;
  ParkedSocket p = parked(std::move(c.theirs), 0, t0);
  EXPECT_TRUE(ParkingQueue::mayWait(p, t0, 10s));
  EXPECT_TRUE(ParkingQueue::mayWait(p, t0 + 9999ms, 10s));
  EXPECT_FALSE(ParkingQueue::mayWait(p, t0 + 10s, 10s));
}

// The hand-off through its interface: workers whose queues are full, one that is coming.
namespace {

struct FakeSlots final : HandOff::Workers {
  explicit FakeSlots(size_t n) : views_(n, SlotView{true, 0}), result(n, 0) {}
  void views(std::vector<SlotView>& out) override { out = views_; }
  int send(int slot, const ipc::HandoffInfo& info, int fd) override {
    if (result[static_cast<size_t>(slot)] != 0) return result[static_cast<size_t>(slot)];
    received[slot].push_back(info.listener);
    (void)fd;  // the real send passes a copy; ours is closed by the hand-off
    return 0;
  }
  bool coming() const override { return coming_; }
  std::vector<SlotView> views_;
  std::vector<int> result;  // what send() answers per slot (0: taken)
  std::map<int, std::vector<uint16_t>> received;
  bool coming_ = false;
};

struct HandOffFixture : ::testing::Test {
  test::FakeTime time;
  FakeSlots slots{2};
  GatewayConfig gateway;
  int resumed = 0;
  std::unique_ptr<HandOff> hand_off;
  std::vector<Client> clients;

  void make(size_t max_parked) {
    gateway.handshake_timeout = 10s;
    hand_off = std::make_unique<HandOff>(time, slots, makeDispatcher(DispatchPolicy::RoundRobin, 2), gateway,
                                         [this] { ++resumed; }, max_parked);
    clients.resize(64);
  }
  void offer(int i) { hand_off->offer(std::move(clients[static_cast<size_t>(i)].theirs), peer(i), static_cast<uint16_t>(i), false); }
};

}  // namespace

TEST_F(HandOffFixture, ParksWhileEveryQueueIsFullUpToTheBoundThenDrops) {
  make(4);
  slots.result = {EAGAIN, EAGAIN};
  for (int i = 0; i < 6; ++i) offer(i);
  EXPECT_TRUE(hand_off->parked());
  EXPECT_EQ(hand_off->stats()["waiting"], 4);
  EXPECT_EQ(hand_off->dropped(), 2u) << "beyond the bound a socket is closed";
  EXPECT_TRUE(clients[4].closedByUs());
  EXPECT_TRUE(clients[5].closedByUs());
  EXPECT_FALSE(clients[0].closedByUs());

  // Room again: the parked sockets go out in order, and accepting resumes once.
  slots.result = {0, 0};
  time.advance(HandOff::kParkedRetry);
  EXPECT_FALSE(hand_off->parked());
  EXPECT_EQ(resumed, 1);
  std::vector<uint16_t> all;
  for (auto& [slot, listeners] : slots.received) all.insert(all.end(), listeners.begin(), listeners.end());
  std::sort(all.begin(), all.end());
  EXPECT_EQ(all, (std::vector<uint16_t>{0, 1, 2, 3}));
  EXPECT_EQ(hand_off->stats()["waited"], 4);
  EXPECT_EQ(hand_off->stats()["handed"], 4);
}

TEST_F(HandOffFixture, AParkedSocketWaitsNoLongerThanTheHandshakeTimeout) {
  make(16);
  slots.result = {EAGAIN, EAGAIN};
  offer(0);
  time.advance(5s);
  offer(1);
  EXPECT_EQ(hand_off->dropped(), 0u);
  time.advance(5s);  // the first has waited 10 s: closed; the second waits on
  EXPECT_EQ(hand_off->dropped(), 1u);
  EXPECT_TRUE(clients[0].closedByUs());
  EXPECT_FALSE(clients[1].closedByUs());
  EXPECT_TRUE(hand_off->parked());
  time.advance(5s);
  EXPECT_EQ(hand_off->dropped(), 2u);
  EXPECT_FALSE(hand_off->parked());
  EXPECT_EQ(resumed, 1);
}

TEST_F(HandOffFixture, NoWorkerReadyParksOnlyWhenOneIsComing) {
  make(16);
  slots.views_ = {SlotView{false, 0}, SlotView{false, 0}};
  offer(0);
  EXPECT_EQ(hand_off->dropped(), 1u) << "nobody ready, nobody coming: closed";
  slots.coming_ = true;
  offer(1);
  EXPECT_EQ(hand_off->dropped(), 1u);
  EXPECT_TRUE(hand_off->parked());
  slots.views_ = {SlotView{false, 0}, SlotView{true, 0}};  // the worker said hello
  time.advance(HandOff::kParkedRetry);
  EXPECT_FALSE(hand_off->parked());
  EXPECT_EQ(slots.received[1], (std::vector<uint16_t>{1}));
}
