#pragma once
#include <sys/types.h>

#include <string>
#include <vector>

namespace dingo {

// Starts `exe` with `args`, handing it `ipc_fd` as fd 3 and `hub_fd` as fd 4 (every
// other fd of ours is close-on-exec). The child is detached: the caller reaps it with waitpid. Returns the
// pid, or -1 with `error` set.
pid_t spawnWorker(const std::string& exe, const std::vector<std::string>& args, int ipc_fd, int hub_fd,
                  std::string& error);

}  // namespace dingo
