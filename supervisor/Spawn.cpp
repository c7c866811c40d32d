// Boost.Process v1 lives in this file alone: its headers are heavy.
#include "supervisor/Spawn.h"

#include <fcntl.h>
#include <sys/syscall.h>
#include <linux/close_range.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <utility>

#include <boost/process/args.hpp>
#include <boost/process/child.hpp>
#include <boost/process/exe.hpp>
#include <boost/process/extend.hpp>

#include "core/Log.h"

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

pid_t GatewayProcesses::start(int slot, int generation, int ipc_fd, int hub_fd, std::string& error) {
  std::vector<std::string> args = {"--worker",     "--ipc-fd",   "3", "--hub-fd", "4", "--worker-id", std::to_string(slot),
                                   "--generation", std::to_string(generation)};
  if (!config_path_.empty()) {
    args.push_back("--config");
    args.push_back(config_path_);
  }
  std::string why;
  pid_t pid = spawnWorker(exe_, args, ipc_fd, hub_fd, why);
  if (pid < 0) error = "(" + exe_ + "): " + why;
  return pid;
}

void GatewayProcesses::signal(pid_t pid, int pidfd, int sig) {
  int rc = pidfd >= 0 ? static_cast<int>(::syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0)) : ::kill(pid, sig);
  // ESRCH: it exited meanwhile (its exit is on its way to us).
  if (rc != 0 && errno != ESRCH) logWarn("supervisor", "signal {} to worker pid {}: {}", sig, pid, errnoText(errno));
}

}  // namespace dingo
