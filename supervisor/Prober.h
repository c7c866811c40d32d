#pragma once
// The internal watchdog. Every [watchdog] interval each ready worker gets a synthetic
// GET /healthz over a socketpair handed to it like a client connection: no TCP connect
// that a connection storm could time out. Its verdicts:
//   - an answer (200) within `timeout`: ok (the latency is kept); a suspect worker is
//     cleared;
//   - a failure or timeout while the worker's heartbeat (its Stats report, every second)
//     has shown progress since the probe began, or a full hand-off queue: inconclusive,
//     a busy worker is never punished;
//   - otherwise a failure: `failures` in a row make the worker suspect (it gets no new
//     connections), one more kills it (SIGCONT and SIGABRT for a core, SIGKILL
//     kKillGrace later), never more than max_kill_fraction of the workers at once.
// It sees the workers only through Prober::Workers and reports its verdicts there;
// Supervisor wires them to the pool.
#include <sys/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <vector>

#include "core/Config.h"
#include "supervisor/TimeSource.h"
#include "supervisor/WorkerStats.h"

namespace boost::asio {
class io_context;
}

namespace dingo {

class Prober {
 public:
  // A worker as the prober sees it.
  struct Target {
    uint64_t id = 0;     // Worker::id
    int slot = 0;
    pid_t pid = -1;      // -1: no process
    bool serving = false;  // ready or suspect: probed, and judged
  };

  class Workers {
   public:
    virtual ~Workers() = default;
    // The current worker of every slot.
    virtual std::vector<Target> current() = 0;
    // Hands the worker our probe's other end, as a client socket: 0 or an errno value.
    virtual int sendProbe(uint64_t id, int fd) = 0;
    // Signals the worker if it still runs `pid`.
    virtual void signal(uint64_t id, pid_t pid, int sig) = 0;
    // The verdict: suspect (no new connections) or not.
    virtual void suspect(uint64_t id, bool suspect) = 0;
  };

  static constexpr auto kKillGrace = std::chrono::seconds(2);  // SIGABRT, then SIGKILL
  static constexpr size_t kMaxReply = 8 * 1024;                // more is not a health answer

  // `config` is the running configuration; `worker_count` the number of slots.
  Prober(boost::asio::io_context& io, TimeSource& time, const WatchdogConfig& config, int worker_count,
         Workers& workers);
  ~Prober();

  // Probes every interval until stop() (probes under way finish).
  void start();
  void stop();

  // Events of the pool, wired by Supervisor:
  void workerStarted(uint64_t id);   // a fresh process: forget its failures
  void workerExited(uint64_t id);    // the probe and kill under way end
  void workerRemoved(uint64_t id);   // forget it
  void heartbeat(uint64_t id, uint64_t progress);  // a Stats report: the sum of its progress counters

  ProbeFigures figures(uint64_t id) const;
  bool suspect(uint64_t id) const;

 private:
  enum class Outcome { Ok, Failed, Busy };
  struct Probe;
  struct Record;
  void round();
  void startProbe(const Target& t);
  void readReply(uint64_t id, uint64_t seq);
  void finish(uint64_t id, Outcome outcome);
  void endProbe(Record& r);
  void kill(Record& r, const Target& t);
  Record* record(uint64_t id);

  boost::asio::io_context& io_;
  TimeSource& time_;
  const WatchdogConfig& config_;
  int worker_count_;
  Workers& workers_;
  std::unique_ptr<Timer> interval_timer_;
  std::map<uint64_t, std::unique_ptr<Record>> records_;
  uint64_t next_seq_ = 1;
};

}  // namespace dingo
