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

pid_t spawnWorker(const std::string& exe, const std::vector<std::string>& args, int ipc_fd,
                  std::string& error) {
  std::error_code ec;
  // Runs in the child between fork and exec: put the IPC socket on fd 3 without
  // close-on-exec. dup2 onto itself would keep the flag, so clear it by hand then.
  auto put_ipc_on_fd3 = bp::extend::on_exec_setup = [ipc_fd](auto&) {
    if (ipc_fd == 3) {
      ::fcntl(3, F_SETFD, 0);
    } else {
      ::dup2(ipc_fd, 3);
    }
    // Belt and braces: Asio opens some sockets without SOCK_CLOEXEC (the admin and
    // control listeners and their connections). Nothing above fd 3 reaches a worker.
    ::close_range(4, ~0U, CLOSE_RANGE_CLOEXEC);
  };
  bp::child child(bp::exe = exe, bp::args = args, put_ipc_on_fd3, ec);
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
