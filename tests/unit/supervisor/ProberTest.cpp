#include "supervisor/Prober.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
#include <map>

#include "FakeTime.h"
#include "core/Asio.h"
#include "core/UniqueFd.h"

using namespace dingo;
using namespace std::chrono_literals;

namespace {

// Workers as the prober sees them: each keeps the probe sockets it was handed.
struct FakeWorkers final : Prober::Workers {
  std::vector<Prober::Target> targets;
  std::map<uint64_t, std::vector<UniqueFd>> probes;  // the worker ends, oldest first
  std::map<uint64_t, int> send_result;               // errno to answer sendProbe with
  std::vector<std::pair<uint64_t, int>> signals;
  std::map<uint64_t, bool> suspect_verdict;

  std::vector<Prober::Target> current() override { return targets; }
  int sendProbe(uint64_t id, int fd) override {
    if (send_result[id]) return send_result[id];
    probes[id].emplace_back(::dup(fd));
    return 0;
  }
  void signal(uint64_t id, pid_t pid, int sig) override {
    for (auto& t : targets)
      if (t.id == id && t.pid == pid) signals.emplace_back(id, sig);
  }
  void suspect(uint64_t id, bool on) override { suspect_verdict[id] = on; }

  int count(uint64_t id, int sig) const {
    return static_cast<int>(std::count(signals.begin(), signals.end(), std::make_pair(id, sig)));
  }
  // The worker answers its latest probe as the gateway does, and closes it.
  void answer(uint64_t id, std::string_view text = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok") {
    ASSERT_FALSE(probes[id].empty());
    ASSERT_EQ(::send(probes[id].back().get(), text.data(), text.size(), MSG_NOSIGNAL), static_cast<ssize_t>(text.size()));
    probes[id].back().reset();
  }
};

struct ProberTest : ::testing::Test {
  asio::io_context io;
  test::FakeTime time;
  WatchdogConfig config;
  FakeWorkers workers;
  std::unique_ptr<Prober> prober;

  void make(int count, double fraction = 0.5) {
    config.interval = 1s;
    config.timeout = 500ms;
    config.failures = 2;
    config.max_kill_fraction = fraction;
    for (int i = 0; i < count; ++i)
      workers.targets.push_back({static_cast<uint64_t>(100 + i), i, 5000 + i, true});
    prober = std::make_unique<Prober>(io, time, config, count, workers);
    prober->start();
    time.advance(500ms);  // so that each half() below starts a round or ends its probes
  }
  // Lets the probe sockets' reads complete.
  template <typename Done>
  void settle(Done done) {
    for (int i = 0; i < 50 && !done(); ++i) {
      io.restart();
      io.run_for(10ms);
    }
  }
  // Half an interval: a round starts probes, or their timeouts fire.
  void half() {
    time.advance(500ms);
    io.poll();
    io.restart();
  }
};

}  // namespace

TEST_F(ProberTest, AnAnsweringWorkerIsOk) {
  make(1);
  half();  // round 1
  ASSERT_EQ(workers.probes[100].size(), 1u);
  time.advance(3ms);
  workers.answer(100);
  settle([&] { return prober->figures(100).ok > 0; });
  EXPECT_EQ(prober->figures(100).ok, 1u);
  EXPECT_NEAR(prober->figures(100).last_probe_ms, 3.0, 0.001);
  EXPECT_FALSE(prober->suspect(100));
}

TEST_F(ProberTest, ABusyWorkerWhoseHeartbeatMovesIsNeverPunished) {
  make(1);
  uint64_t progress = 0;
  for (int round = 0; round < 6; ++round) {
    half();                                 // a probe starts; the worker does not answer it
    time.advance(1ms);
    prober->heartbeat(100, progress += 7);  // but its own report comes, and moves
    time.advance(499ms);                    // the probe times out
  }
  EXPECT_EQ(prober->figures(100).inconclusive, 6u);
  EXPECT_EQ(prober->figures(100).failed, 0u);
  EXPECT_TRUE(workers.suspect_verdict.empty());
  EXPECT_TRUE(workers.signals.empty());
}

TEST_F(ProberTest, AHeartbeatThatDoesNotMoveIsNoExcuse) {
  make(1);
  for (int round = 0; round < 3; ++round) {
    half();
    time.advance(1ms);
    prober->heartbeat(100, 42);  // reports come, but after the first nothing progresses
    time.advance(499ms);
  }
  EXPECT_EQ(prober->figures(100).inconclusive, 1u);
  EXPECT_EQ(prober->figures(100).failed, 2u);
  EXPECT_TRUE(workers.suspect_verdict[100]);
}

TEST_F(ProberTest, AFullQueueIsInconclusive) {
  make(1);
  workers.send_result[100] = EAGAIN;
  for (int round = 0; round < 4; ++round) half(), half();
  EXPECT_EQ(prober->figures(100).inconclusive, 4u);
  EXPECT_TRUE(workers.suspect_verdict.empty());
}

TEST_F(ProberTest, SilentWorkerBecomesSuspectThenIsKilled) {
  make(2);
  half(), half();  // round 1: first failure
  EXPECT_EQ(prober->figures(100).failed, 1u);
  EXPECT_FALSE(workers.suspect_verdict.count(100));
  half(), half();  // round 2: `failures` in a row
  EXPECT_TRUE(workers.suspect_verdict[100]) << "suspect after 2 failures";
  EXPECT_TRUE(prober->suspect(100));
  EXPECT_EQ(workers.count(100, SIGABRT), 0);
  workers.targets[0].serving = true;  // still ready-or-suspect as the pool sees it
  half(), half();                     // one more: killed
  EXPECT_EQ(workers.count(100, SIGCONT), 1);
  EXPECT_EQ(workers.count(100, SIGABRT), 1);
  EXPECT_EQ(workers.count(100, SIGKILL), 0);
  time.advance(Prober::kKillGrace);
  EXPECT_EQ(workers.count(100, SIGKILL), 1);
}

TEST_F(ProberTest, ASuspectWorkerThatAnswersAgainIsCleared) {
  make(1);
  for (int i = 0; i < 4; ++i) half();
  ASSERT_TRUE(workers.suspect_verdict[100]);
  half();  // the next probe starts
  workers.answer(100);
  settle([&] { return !workers.suspect_verdict[100]; });
  EXPECT_FALSE(workers.suspect_verdict[100]);
  EXPECT_FALSE(prober->suspect(100));
}

TEST_F(ProberTest, NeverKillsMoreThanTheFractionAtOnce) {
  make(4, 0.25);  // one of four at a time
  for (int i = 0; i < 12; ++i) half();
  int killed = 0;
  uint64_t first = 0;
  for (uint64_t id = 100; id < 104; ++id) {
    EXPECT_TRUE(workers.suspect_verdict[id]);
    if (workers.count(id, SIGABRT)) ++killed, first = id;
  }
  EXPECT_EQ(killed, 1);
  // The killed one is gone (and its slot waits for a respawn): the next may go.
  for (auto& t : workers.targets)
    if (t.id == first) t.pid = -1, t.serving = false;
  prober->workerExited(first);
  for (int i = 0; i < 4; ++i) half();
  killed = 0;
  for (uint64_t id = 100; id < 104; ++id) killed += workers.count(id, SIGABRT);
  EXPECT_EQ(killed, 2);
}

TEST_F(ProberTest, ANewProcessStartsWithACleanRecord) {
  make(1);
  for (int i = 0; i < 5; ++i) half();
  ASSERT_TRUE(prober->suspect(100));
  prober->workerExited(100);
  prober->workerStarted(100);
  EXPECT_FALSE(prober->suspect(100));
  EXPECT_GE(prober->figures(100).failed, 2u) << "the counts stay, for status";
}
