#include "supervisor/Upgrader.h"

#include <linux/close_range.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>

#include "core/Log.h"
#include "core/Process.h"
#include "core/Systemd.h"

namespace dingo {

namespace {
constexpr const char* kLog = "supervisor";
}

bool Upgrader::start(const std::vector<int>& listener_fds, const std::function<void()>& before_fork,
                     std::string& error) {
  if (child_ > 0) {
    error = "an upgrade is already under way";
    return false;
  }
  std::string exe = selfExeDir() + "/dingo-supervisor";
  if (::access(exe.c_str(), X_OK) != 0) {
    error = exe + ": " + errnoText(errno);
    return false;
  }
  before_fork();
  pid_t me = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) {
    error = "fork: " + errnoText(errno);
    return false;
  }
  if (pid == 0) {
    systemd::passListenFds(listener_fds);
    // systemd's watchdog (NotifyAccess=all, MAINPID) is the new supervisor's to feed.
    if (std::getenv("WATCHDOG_PID")) ::setenv("WATCHDOG_PID", std::to_string(::getpid()).c_str(), 1);
    // Asio opens some sockets without SOCK_CLOEXEC (control, admin): nothing else goes.
    ::close_range(3 + static_cast<unsigned>(listener_fds.size()), ~0U, CLOSE_RANGE_CLOEXEC);
    std::string from = std::to_string(me);
    if (config_path_.empty())
      ::execl(exe.c_str(), exe.c_str(), "--upgrade-from", from.c_str(), static_cast<char*>(nullptr));
    else
      ::execl(exe.c_str(), exe.c_str(), "--config", config_path_.c_str(), "--upgrade-from", from.c_str(),
              static_cast<char*>(nullptr));
    ::_exit(127);
  }
  child_ = pid;
  handed_over_ = true;
  logInfo(kLog, "upgrade: started {} (pid {}); it takes over when its workers are ready", exe, pid);
  return true;
}

bool Upgrader::onChildExit(pid_t pid, int status) {
  if (pid != child_) return false;
  child_ = -1;
  handed_over_ = false;
  logError(kLog, "upgrade failed: the new supervisor {}; this one goes on",
           WIFSIGNALED(status) ? fmt::format("was killed by signal {}", WTERMSIG(status))
                               : fmt::format("exited with code {}", WEXITSTATUS(status)));
  return true;
}

void Upgrader::tellPredecessor(pid_t predecessor) {
  logInfo(kLog, "upgrade: every worker is ready; asking the old supervisor (pid {}) to drain", predecessor);
  if (::kill(predecessor, SIGTERM) != 0)
    logError(kLog, "upgrade: SIGTERM to the old supervisor (pid {}): {}", predecessor, errnoText(errno));
}

}  // namespace dingo
