#pragma once
// Starting and signalling dingo-gateway worker processes (Boost.Process lives in
// Spawn.cpp alone: its headers are heavy).
#include <sys/types.h>

#include <string>
#include <vector>

#include "supervisor/WorkerPool.h"

namespace dingo {

// Starts `exe` with `args`, handing it `ipc_fd` as fd 3 and `hub_fd` as fd 4 (every
// other fd of ours is close-on-exec). The child is detached: the caller reaps it with waitpid. Returns the
// pid, or -1 with `error` set.
pid_t spawnWorker(const std::string& exe, const std::vector<std::string>& args, int ipc_fd, int hub_fd,
                  std::string& error);

// The pool's real processes: `dingo-gateway --worker` with the slot, the generation and
// the config file; signals by pid, or by pidfd for adopted workers.
class GatewayProcesses final : public WorkerPool::Processes {
 public:
  GatewayProcesses(std::string exe, std::string config_path)
      : exe_(std::move(exe)), config_path_(std::move(config_path)) {}
  pid_t start(int slot, int generation, int ipc_fd, int hub_fd, std::string& error) override;
  void signal(pid_t pid, int pidfd, int sig) override;

 private:
  std::string exe_;
  std::string config_path_;
};

}  // namespace dingo
