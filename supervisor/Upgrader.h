#pragma once
// The upgrade (USR2 or `dingoctl upgrade`): starts the dingo-supervisor binary now beside
// ours with --upgrade-from OUR_PID and our listening sockets on fd 3 onward (LISTEN_FDS).
// The new supervisor takes the control socket path and the pid file at once
// (handedOver()), starts its workers and, when they are all ready, sends us SIGTERM
// (tellPredecessor(), on its side): we drain. Both accept from the same sockets
// meanwhile, so nothing is refused. A new binary that exits first is reported by
// onChildExit(); the supervisor then takes its files back and goes on.
#include <sys/types.h>

#include <functional>
#include <string>
#include <vector>

namespace dingo {

class Upgrader {
 public:
  // `config_path` is passed on to the new binary (empty: it runs on built-in defaults).
  explicit Upgrader(std::string config_path) : config_path_(std::move(config_path)) {}

  // Forks and execs the new binary with `listener_fds`, calling `before_fork` once the
  // binary is found (what the new supervisor must bind, we let go of). False with `error`
  // set when it could not be started or one is already under way.
  bool start(const std::vector<int>& listener_fds, const std::function<void()>& before_fork, std::string& error);

  bool running() const { return child_ > 0; }
  pid_t child() const { return child_; }
  // From the new supervisor's start on, the pid file and the control socket are its.
  bool handedOver() const { return handed_over_; }

  // A reaped child. True when it was the new supervisor: the upgrade failed (logged),
  // and the files are ours again.
  bool onChildExit(pid_t pid, int status);

  // The new supervisor's side: every worker is ready, the old one (`predecessor`) may drain.
  static void tellPredecessor(pid_t predecessor);

 private:
  std::string config_path_;
  pid_t child_ = -1;
  bool handed_over_ = false;
};

}  // namespace dingo
