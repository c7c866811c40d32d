// Boost.Process v1 lives in this file alone: its headers are heavy.
#include "supervisor/Spawn.h"

#include <fcntl.h>
#include <linux/close_range.h>
#include <unistd.h>

#include <utility>

#include <boost/process/args.hpp>
#include <boost/process/child.hpp>
#include <boost/process/exe.hpp>
#include <boost/process/extend.hpp>

namespace dingo {

namespace bp = boost::process;

pid_t spawnWorker(const std::string& exe, const std::vector<std::string>& args, int ipc_fd, int hub_fd,
                  std::string& error) {
  std::error_code ec;
  // Runs in the child between fork and exec: the IPC socket goes to fd 3 and the hub
  // link to fd 4, without close-on-exec. Copies above 10 first, so that neither dup2
  // can overwrite the other's source.
  auto put_fds = bp::extend::on_exec_setup = [ipc_fd, hub_fd](auto&) {
    int ipc = ::fcntl(ipc_fd, F_DUPFD, 10);
    int hub = ::fcntl(hub_fd, F_DUPFD, 10);
    ::dup2(ipc, 3);  // dup2 onto another number clears FD_CLOEXEC
    ::dup2(hub, 4);
    // Nothing above fd 4 reaches a worker (Asio opens some sockets without
    // SOCK_CLOEXEC: the admin and control listeners and their connections).
    ::close_range(5, ~0U, CLOSE_RANGE_CLOEXEC);
  };
  bp::child child(bp::exe = exe, bp::args = args, put_fds, ec);
  if (ec) {
    error = ec.message();
    return -1;
  }
  pid_t pid = child.id();
  // We reap it ourselves with waitpid() from one SIGCHLD handler; a detached
  // bp::child neither terminates nor waits for the process when destroyed.
  child.detach();
  return pid;
}

}  // namespace dingo
