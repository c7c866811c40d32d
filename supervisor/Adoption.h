#pragma once
// Adoption of the workers of a supervisor that died (kill -9, a crash). Its workers go on
// serving and knock on the control socket every 100 ms (gateway/Reattacher.h). The
// workers file, beside the pid file (supervisor.pid -> supervisor.workers), says which
// workers the dead supervisor had; start() leaves their slots empty for up to kAdoptWait
// before the pool starts new workers in them. adopt() answers a worker's request: it
// checks the peer (SO_PEERCRED: the pid claimed, our uid, a dingo-gateway binary), makes
// its new IPC socket and hub link and a pidfd, and hands it to the pool, into its slot
// (same config file, slot free) or to drain out.
#include <sys/types.h>

#include <chrono>
#include <map>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <set>
#include <string>
#include <vector>

#include "core/Config.h"
#include "core/UniqueFd.h"
#include "supervisor/ControlRequest.h"
#include "supervisor/TimeSource.h"

namespace dingo {

class WorkerPool;

class Adoption {
 public:
  static constexpr std::chrono::seconds kAdoptWait{2};

  // `config` is the running configuration.
  Adoption(TimeSource& time, WorkerPool& pool, const Config& config);

  // Starts the pool: every slot, except those whose worker outlived the previous
  // supervisor (read from the workers file unless `upgrading`: then the old supervisor
  // is alive and keeps its workers).
  void start(bool upgrading);
  // Slots whose old worker may still re-attach.
  bool awaiting() const { return !awaiting_.empty(); }

  // The control socket's "adopt" command from the peer on `sock`. On success `pass`
  // holds the worker's ends of its new IPC socket and hub link, to send with the answer.
  nlohmann::json adopt(const AdoptRequest& req, int sock, std::vector<UniqueFd>& pass);
  uint64_t adoptedTotal() const { return adopted_total_; }

  // {"supervisor":PID,"generation":G,"workers":[{"slot":S,"pid":P,"start_ticks":T}...]}
  void saveWorkers();
  std::string workersFile() const { return workersFile(config_.supervisor.pid_file); }
  static std::string workersFile(std::string pid_file);

 private:
  std::map<int, pid_t> readOrphans();

  TimeSource& time_;
  WorkerPool& pool_;
  const Config& config_;
  std::unique_ptr<Timer> timer_;
  std::set<int> awaiting_;
  uint64_t adopted_total_ = 0;
};

}  // namespace dingo
