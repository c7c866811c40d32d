#pragma once
// The worker processes, one per slot: it starts them (Processes), gives each its IPC
// socketpair and hub link, reads what they send (hello, stats, answers), respawns a
// worker that exits after restart_backoff, doubled while it keeps dying within
// stable_after (up to restart_backoff_max: a crash loop, never given up on), replaces
// them one slot at a time for a reload or drain-worker (generations: the successor
// takes the slot when it says hello, the old one drains), takes in workers adopted
// from a dead supervisor (watched through a pidfd), and drains or stops them all.
//
// It calls nobody back: what happens is reported through Events, which Supervisor
// wires to the other parts (ticket keys on hello, heartbeats to the prober, the
// workers file on every change, the exit of the event loop once stopped).
#include <sys/types.h>

#include <functional>
#include <list>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "core/Config.h"
#include "core/Ipc.h"
#include "core/UniqueFd.h"
#include "supervisor/Dispatcher.h"
#include "supervisor/HubService.h"
#include "supervisor/TimeSource.h"
#include "supervisor/Worker.h"

namespace boost::asio {
class io_context;
}

namespace dingo {

class WorkerPool {
 public:
  // How worker processes are started and signalled (GatewayProcesses; a fake in tests).
  class Processes {
   public:
    virtual ~Processes() = default;
    // Starts the worker of `slot`, `generation`, with `ipc_fd` as its fd 3 and `hub_fd`
    // as fd 4. Returns its pid, or -1 with `error` set.
    virtual pid_t start(int slot, int generation, int ipc_fd, int hub_fd, std::string& error) = 0;
    // Sends `sig` to `pid`, or through `pidfd` when it is >= 0 (an adopted worker, not
    // our child: a pidfd can never hit a reused pid).
    virtual void signal(pid_t pid, int pidfd, int sig) = 0;
  };

  struct Events {
    std::function<void(Worker&)> hello;             // said hello, before it takes any socket
    std::function<void()> ready;                    // a worker became ready
    std::function<void(const Worker&)> started;     // a process attached (spawned or adopted)
    std::function<void(const Worker&)> exited;      // its process is gone
    std::function<void(uint64_t id)> removed;       // the Worker object is gone for good
    std::function<void(const Worker&)> heartbeat;   // a Stats report arrived
    std::function<void(pid_t pid, uint64_t id, uint64_t closed)> disconnected;  // a Disconnect answered
    std::function<void()> changed;                 // workers came or went (the workers file)
    std::function<void(int generation, bool failed)> reloaded;  // a reload finished
    std::function<void()> stopped;                  // stopping, and no worker is left
  };

  // A successor that has not said hello by then is given up (the old worker stays).
  static constexpr auto kSuccessorReadyWithin = std::chrono::seconds(10);
  // A drain's deadline is the worker's own; the pool kills it this much later.
  static constexpr auto kDrainGrace = std::chrono::seconds(2);
  static constexpr auto kStopGrace = std::chrono::seconds(1);
  // At most this many older generations may still be draining.
  static constexpr int kLingeringGenerations = 2;

  // `config` is the running configuration (a reload replaces its value in place).
  WorkerPool(boost::asio::io_context& io, TimeSource& time, const SupervisorConfig& config, int worker_count,
             Processes& processes, HubService& hub, Events events);
  ~WorkerPool();

  // Starts a worker in every slot but those in `skip` (awaiting adoption).
  void start(const std::set<int>& skip = {});
  // Starts the slot's worker now (one that was awaited and did not re-attach).
  void spawnSlot(int slot);
  // A child reaped by the supervisor's SIGCHLD handler.
  void onChildExit(pid_t pid, const std::string& how, bool exit_zero);

  // Generations: a new one, replacing the workers one slot at a time.
  void beginReload(std::string_view what);
  bool reloading() const { return reloading_; }
  bool drainWorker(int slot, std::string& error);
  int generation() const { return generation_; }
  void raiseGeneration(int g) { generation_ = std::max(generation_, g); }

  // Takes in a worker that re-attached: into its slot when `keep_reason` is empty, else
  // as a replaced worker that drains (the reason is logged). `ipc` and `hub` are our ends.
  Worker& adopt(int slot, std::string_view keep_reason, pid_t pid, UniqueFd ipc, UniqueFd hub, UniqueFd pidfd,
                int generation, uint64_t connections);
  // Whether the slot's worker is running or being replaced (an orphan may not take it).
  bool slotTaken(int slot) const;

  // The prober's verdict: a suspect worker takes no new sockets.
  void setSuspect(uint64_t id, bool suspect);
  // What the dispatcher may look at, one view per slot: a worker takes sockets when it
  // is ready (not suspect, not starting) and its channel is open; while stopping, a
  // draining one takes those already accepted (it answers them once and closes).
  void views(std::vector<SlotView>& out) const;
  // Hands a client socket to the slot's worker and counts it: 0 or an errno value.
  int handOff(int slot, const ipc::HandoffInfo& info, int fd);
  // Samples every worker's process (/proc/PID/stat): RSS, CPU %, requests/s.
  void sample();
  // Sends a message to a worker: 0 or an errno value.
  int send(const Worker& w, ipc::MsgType type, std::string_view payload, int fd = -1);
  void signal(const Worker& w, int sig);

  // TERM: every worker drains within `drain`, then is killed. QUIT: stop now.
  void beginStop(Duration drain);
  void stopNow();
  bool stopping() const { return stopping_; }

  int size() const { return static_cast<int>(slots_.size()); }
  Worker& current(int slot) { return *slots_[static_cast<size_t>(slot)]; }
  const Worker& current(int slot) const { return *slots_[static_cast<size_t>(slot)]; }
  const std::list<std::unique_ptr<Worker>>& retired() const { return retired_; }
  bool anyStarting() const;
  bool allReady() const;
  Worker* find(uint64_t id);

  // Every worker object: current ones, their successors, replaced ones draining out.
  template <typename Fn>
  void forEach(Fn fn) {
    for (auto& w : slots_) {
      fn(*w);
      if (w->successor) fn(*w->successor);
    }
    for (auto& w : retired_) fn(*w);
  }

 private:
  std::unique_ptr<Worker> makeWorker(int slot);
  void spawn(Worker& w);
  void attach(Worker& w, pid_t pid, UniqueFd ipc, UniqueFd hub, int generation);
  void watchIpc(Worker& w);
  void readIpc(Worker& w);
  void watchPidfd(Worker& w);
  void onMessage(Worker& w, const ipc::Message& msg);
  void onExit(Worker& w, const std::string& how, bool exit_zero);
  void scheduleRespawn(Worker& w);
  void replaceNext(int slot);
  void startSuccessor(int slot);
  void promote(int slot);
  void retire(std::unique_ptr<Worker> w);
  void maybeFinishStop();

  boost::asio::io_context& io_;
  TimeSource& time_;
  const SupervisorConfig& config_;
  Processes& processes_;
  HubService& hub_;
  Events events_;
  std::vector<std::unique_ptr<Worker>> slots_;
  std::list<std::unique_ptr<Worker>> retired_;  // replaced workers, draining out
  uint64_t next_id_ = 1;
  int generation_ = 1;
  bool reloading_ = false;
  bool reload_failed_ = false;
  int draining_slot_ = -1;  // drain-worker under way
  bool stopping_ = false;
  std::unique_ptr<Timer> stop_timer_;
};

}  // namespace dingo
