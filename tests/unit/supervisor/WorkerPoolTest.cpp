#include "supervisor/WorkerPool.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
#include <map>
#include <nlohmann/json.hpp>

#include "FakeTime.h"
#include "core/Asio.h"
#include "supervisor/HandOff.h"
#include "supervisor/Prober.h"

using namespace dingo;
using namespace std::chrono_literals;

namespace {

// Processes that are not: each start hands out a made-up pid and keeps the worker's end
// of its IPC socket, so that the test can speak for the worker.
struct FakeProcesses final : WorkerPool::Processes {
  std::vector<pid_t> started;
  std::map<pid_t, UniqueFd> ends;
  std::vector<std::pair<pid_t, int>> signals;
  bool fail = false;

  pid_t start(int, int, int ipc_fd, int, std::string& error) override {
    if (fail) {
      error = "(fake): cannot";
      return -1;
    }
    pid_t pid = 7000000 + static_cast<pid_t>(started.size());  // above pid_max: never a real process
    started.push_back(pid);
    ends[pid] = UniqueFd(::dup(ipc_fd));
    return pid;
  }
  void signal(pid_t pid, int, int sig) override { signals.emplace_back(pid, sig); }
};

struct FakeHub final : HubService {
  uint32_t attach(int fd, int) override {
    ::close(fd);
    return ++links;
  }
  void detach(uint32_t) override {}
  nlohmann::json stats(size_t) const override { return nlohmann::json::object(); }
  uint32_t links = 0;
};

struct PoolTest : ::testing::Test {
  asio::io_context io;
  test::FakeTime time;
  SupervisorConfig config;
  FakeProcesses processes;
  FakeHub hub;
  int stopped = 0;
  std::unique_ptr<WorkerPool> pool;

  void make(int workers) {
    config.restart_backoff = 100ms;
    config.restart_backoff_max = 1s;
    config.stable_after = 10s;
    config.drain_timeout = 5s;
    WorkerPool::Events events;
    events.stopped = [this] { ++stopped; };
    pool = std::make_unique<WorkerPool>(io, time, config, workers, processes, hub, events);
  }
  void crash(int slot) { pool->onChildExit(pool->current(slot).pid, "killed by signal 9", false); }
  size_t starts() const { return processes.started.size(); }
  // The worker of `slot` says hello, as a gateway does once it is up.
  void hello(int slot) {
    ASSERT_EQ(ipc::send(processes.ends[pool->current(slot).pid].get(), ipc::MsgType::Hello, "{}"), 0);
    for (int i = 0; i < 50 && pool->current(slot).state == WorkerState::Starting; ++i) {
      io.restart();
      io.run_for(5ms);
    }
  }
};

}  // namespace

TEST_F(PoolTest, RespawnBacksOffWhileAWorkerKeepsDyingAndResetsOnceItRanStably) {
  make(1);
  pool->start();
  ASSERT_EQ(starts(), 1u);
  size_t n = 1;
  for (auto delay : {100ms, 200ms, 400ms, 800ms, 1000ms, 1000ms}) {
    time.advance(50ms);  // a worker that dies soon after its start
    crash(0);
    EXPECT_EQ(pool->current(0).state, WorkerState::Exited);
    time.advance(delay - 1ms);
    EXPECT_EQ(starts(), n) << "respawned before its backoff of " << delay.count() << "ms";
    time.advance(1ms);
    EXPECT_EQ(starts(), ++n) << "not respawned after its backoff of " << delay.count() << "ms";
  }
  // It ran longer than stable_after: back to the first delay.
  time.advance(10s);
  crash(0);
  time.advance(99ms);
  EXPECT_EQ(starts(), n);
  time.advance(1ms);
  EXPECT_EQ(starts(), n + 1);
  EXPECT_EQ(pool->current(0).restarts, 7);
}

TEST_F(PoolTest, AFailedStartIsRetriedAfterTheBackoff) {
  make(1);
  processes.fail = true;
  pool->start();
  EXPECT_FALSE(pool->current(0).alive());
  processes.fail = false;
  time.advance(99ms);
  EXPECT_EQ(starts(), 0u);
  time.advance(1ms);
  EXPECT_EQ(starts(), 1u);
  EXPECT_TRUE(pool->current(0).alive());
}

TEST_F(PoolTest, StoppingCancelsRespawnsAndReportsWhenTheLastWorkerIsGone) {
  make(2);
  pool->start();
  crash(0);  // its respawn is pending
  pool->beginStop(5s);
  EXPECT_EQ(stopped, 0);
  time.advance(1s);
  EXPECT_EQ(starts(), 2u) << "no respawn while stopping";
  crash(1);
  EXPECT_EQ(stopped, 1);
}

TEST_F(PoolTest, AStopBackstopKillsWorkersPastTheDrainDeadline) {
  make(1);
  pool->start();
  pid_t pid = pool->current(0).pid;
  pool->beginStop(5s);
  time.advance(5s + WorkerPool::kStopGrace - 1ms);
  EXPECT_EQ(std::count(processes.signals.begin(), processes.signals.end(), std::make_pair(pid, SIGKILL)), 0);
  time.advance(1ms);
  EXPECT_EQ(std::count(processes.signals.begin(), processes.signals.end(), std::make_pair(pid, SIGKILL)), 1);
}

TEST_F(PoolTest, OnlyReadyWorkersTakeSockets) {
  make(2);
  pool->start();
  std::vector<SlotView> views;
  pool->views(views);
  EXPECT_FALSE(views[0].eligible) << "starting";
  hello(0);
  hello(1);
  ASSERT_EQ(pool->current(0).state, WorkerState::Ready);
  pool->views(views);
  EXPECT_TRUE(views[0].eligible && views[1].eligible);
  pool->setSuspect(pool->current(1).id, true);
  EXPECT_EQ(pool->current(1).state, WorkerState::Suspect);
  pool->views(views);
  EXPECT_TRUE(views[0].eligible);
  EXPECT_FALSE(views[1].eligible) << "a suspect worker gets no sockets";
  pool->setSuspect(pool->current(1).id, false);
  pool->views(views);
  EXPECT_TRUE(views[1].eligible);
}

// The prober's verdict, through the pool, keeps the hand-off away from a stuck worker:
// the three parts wired as Supervisor wires them.
namespace {

struct PoolForProber final : Prober::Workers {
  explicit PoolForProber(WorkerPool& p) : pool(p) {}
  std::vector<Prober::Target> current() override {
    std::vector<Prober::Target> out;
    for (int i = 0; i < pool.size(); ++i) {
      const Worker& w = pool.current(i);
      out.push_back({w.id, w.slot, w.pid, w.state == WorkerState::Ready || w.state == WorkerState::Suspect});
    }
    return out;
  }
  int sendProbe(uint64_t id, int fd) override {
    ipc::HandoffInfo info;
    info.listener = ipc::kProbeListener;
    return pool.send(*pool.find(id), ipc::MsgType::Handoff, ipc::asBytes(info), fd);
  }
  void signal(uint64_t id, pid_t, int sig) override { pool.signal(*pool.find(id), sig); }
  void suspect(uint64_t id, bool on) override { pool.setSuspect(id, on); }
  WorkerPool& pool;
};

struct PoolForHandOff final : HandOff::Workers {
  explicit PoolForHandOff(WorkerPool& p) : pool(p) {}
  void views(std::vector<SlotView>& out) override { pool.views(out); }
  int send(int slot, const ipc::HandoffInfo& info, int fd) override { return pool.handOff(slot, info, fd); }
  bool coming() const override { return pool.anyStarting(); }
  WorkerPool& pool;
};

// What a worker end received: client sockets and probes. Probes are answered when `answer`.
std::pair<int, int> drain(int end, bool answer) {
  int clients = 0, probes = 0;
  for (;;) {
    ipc::Message msg;
    if (ipc::receive(end, msg) != 0) break;
    ipc::HandoffInfo info;
    if (msg.type != ipc::MsgType::Handoff || !ipc::fromBytes(msg.payload, info)) continue;
    if (info.listener != ipc::kProbeListener) {
      ++clients;
      continue;
    }
    ++probes;
    if (answer) {
      std::string_view ok = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
      (void)::send(msg.fd.get(), ok.data(), ok.size(), MSG_NOSIGNAL);
    }
  }
  return {clients, probes};
}

}  // namespace

TEST_F(PoolTest, ASuspectWorkerGetsNoConnections) {
  make(2);
  pool->start();
  hello(0);
  hello(1);
  WatchdogConfig watchdog;
  watchdog.interval = 1s;
  watchdog.timeout = 500ms;
  watchdog.failures = 2;
  PoolForProber for_prober(*pool);
  Prober prober(io, time, watchdog, 2, for_prober);
  prober.start();
  int end0 = processes.ends[pool->current(0).pid].get();
  int end1 = processes.ends[pool->current(1).pid].get();
  // Worker 0 answers its probes; worker 1 is stuck: no answer, no heartbeat.
  for (int half = 0; half < 8 && pool->current(1).state != WorkerState::Suspect; ++half) {
    time.advance(500ms);
    drain(end0, true);
    drain(end1, false);
    io.restart();
    io.run_for(20ms);
  }
  ASSERT_EQ(pool->current(1).state, WorkerState::Suspect);
  EXPECT_EQ(pool->current(0).state, WorkerState::Ready);

  GatewayConfig gateway;
  PoolForHandOff for_hand_off(*pool);
  HandOff hand_off(time, for_hand_off, makeDispatcher(DispatchPolicy::RoundRobin, 2), gateway, [] {});
  for (int i = 0; i < 20; ++i) {
    int sv[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    UniqueFd client(sv[0]), accepted(sv[1]);
    hand_off.offer(std::move(accepted), *parseSockAddr(fmt::format("127.0.0.{}:5000", i + 1)), 0, false);
  }
  EXPECT_EQ(drain(end0, true).first, 20);
  EXPECT_EQ(drain(end1, false).first, 0);
  EXPECT_EQ(hand_off.dropped(), 0u);
}
