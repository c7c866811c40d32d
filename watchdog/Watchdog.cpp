#include "watchdog/Watchdog.h"

#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "core/Config.h"
#include "core/Log.h"
#include "core/Net.h"
#include "core/Process.h"
#include "core/Systemd.h"
#include "core/UniqueFd.h"

namespace dingo {

namespace {

constexpr const char* kLog = "watchdog";
using Clock = std::chrono::steady_clock;
volatile sig_atomic_t g_signal = 0;

int msLeft(Clock::time_point deadline) {
  return static_cast<int>(
      std::max<int64_t>(0, std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count()));
}

// A non-blocking connect that gives up at `deadline`.
UniqueFd connectBy(const SockAddr& addr, Clock::time_point deadline, std::string& detail) {
  UniqueFd fd(::socket(addr.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) {
    detail = "socket: " + errnoText(errno);
    return {};
  }
  if (::connect(fd.get(), addr.addr(), addr.len) != 0 && errno != EINPROGRESS) {
    detail = "connect: " + errnoText(errno);
    return {};
  }
  pollfd p{fd.get(), POLLOUT, 0};
  if (::poll(&p, 1, msLeft(deadline)) <= 0) {
    detail = "connect timed out";
    return {};
  }
  int err = 0;
  socklen_t len = sizeof err;
  ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
  if (err) {
    detail = "connect: " + errnoText(err);
    return {};
  }
  return fd;
}

struct Check {
  enum Kind { Tcp, Http } kind;
  std::string url;
  SockAddr addr;
  std::string hostport;
  std::string path;
  int failures = 0;
};

Check parseCheck(const std::string& url) {
  Check c;
  c.url = url;
  std::string rest;
  if (url.rfind("tcp://", 0) == 0) {
    c.kind = Check::Tcp;
    rest = url.substr(6);
  } else if (url.rfind("http://", 0) == 0) {
    c.kind = Check::Http;
    rest = url.substr(7);
  } else {
    throw ConfigError("--check", 0, "check", "'" + url + "' is neither tcp://HOST:PORT nor http://HOST:PORT/PATH");
  }
  size_t slash = rest.find('/');
  c.hostport = rest.substr(0, slash);
  c.path = slash == std::string::npos ? "/" : rest.substr(slash);
  auto addr = parseSockAddr(c.hostport);
  if (!addr) throw ConfigError("--check", 0, "check", "'" + c.hostport + "' is not a numeric HOST:PORT");
  c.addr = *addr;
  return c;
}

bool runCheck(const Check& c, Duration timeout, std::string& detail) {
  auto deadline = Clock::now() + timeout;
  UniqueFd fd = connectBy(c.addr, deadline, detail);
  if (!fd) return false;
  if (c.kind == Check::Tcp) return true;
  std::string req = "GET " + c.path + " HTTP/1.1\r\nHost: " + c.hostport + "\r\nConnection: close\r\n\r\n";
  if (::send(fd.get(), req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size())) {
    detail = "send: " + errnoText(errno);
    return false;
  }
  std::string reply;
  char buf[4096];
  while (reply.find("\r\n") == std::string::npos && reply.size() < 8192) {
    pollfd p{fd.get(), POLLIN, 0};
    if (::poll(&p, 1, msLeft(deadline)) <= 0) {
      detail = "no answer in time";
      return false;
    }
    ssize_t n = ::recv(fd.get(), buf, sizeof buf, 0);
    if (n <= 0) break;
    reply.append(buf, static_cast<size_t>(n));
  }
  if (reply.size() >= 12 && reply.compare(0, 5, "HTTP/") == 0 && reply[9] == '2') return true;
  detail = "answered " + reply.substr(0, reply.find("\r\n")).substr(0, 80);
  return false;
}

// Runs `cmd` with /bin/sh and `env` added; waits up to `timeout`. Returns its status.
int runCommand(const std::string& cmd, const std::vector<std::pair<std::string, std::string>>& env,
               Duration timeout) {
  pid_t pid = ::fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    for (const auto& [k, v] : env) ::setenv(k.c_str(), v.c_str(), 1);
    ::execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  auto deadline = Clock::now() + timeout;
  int status = 0;
  while (::waitpid(pid, &status, WNOHANG) == 0) {
    if (Clock::now() > deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return status;
}

class Watchdog {
 public:
  explicit Watchdog(const WatchdogOptions& o) : o_(o) {
    if (!o_.config.empty()) config_ = loadConfig(o_.config);
    pidfile_ = !o_.pidfile.empty() ? o_.pidfile : (config_ ? config_->supervisor.pid_file : std::string());
    for (const auto& url : o_.checks) checks_.push_back(parseCheck(url));
    if (checks_.empty() && config_)
      for (const auto& l : config_->listen) checks_.push_back(parseCheck("tcp://" + l.address));
    if (o_.exec_cmd.empty() && pidfile_.empty() && checks_.empty())
      throw ConfigError("", 0, "", "nothing to watch: give --config, --pidfile, --check or --exec");
    if (o_.hold_listeners) {
      if (o_.exec_cmd.empty() || !config_)
        throw ConfigError("", 0, "hold-listeners", "--hold-listeners needs --exec and --config");
      for (const auto& l : config_->listen) {
        held_.push_back(listenTcp(*parseSockAddr(l.address), ListenOptions{l.backlog, false}));
        logInfo(kLog, "holding {} for the supervisor", l.address);
      }
    }
  }

  int run() {
    if (!o_.exec_cmd.empty()) startChild();
    auto next = Clock::now();
    while (!g_signal) {
      if (!o_.exec_cmd.empty() && reapChild()) return 0;
      if (Clock::now() >= next) {
        tick();
        next = Clock::now() + o_.interval;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    logInfo(kLog, "signal {}: exiting", static_cast<int>(g_signal));
    if (child_ > 0) {
      ::kill(child_, SIGTERM);
      int status = 0;
      ::waitpid(child_, &status, 0);
    }
    return 0;
  }

 private:
  // One round of checks; acts when one has failed `failures` times in a row.
  void tick() {
    std::string failing, detail;
    if (!processAlive(detail)) failing = "process";
    for (auto& c : checks_) {
      std::string d;
      if (runCheck(c, o_.timeout, d)) {
        c.failures = 0;
      } else if (++c.failures >= o_.failures && failing.empty()) {
        failing = c.url;
        detail = d;
      } else {
        logWarn(kLog, "check {} failed ({} of {}): {}", c.url, c.failures, o_.failures, d);
      }
    }
    if (failing == "process") {
      if (++process_failures_ < o_.failures) {
        logWarn(kLog, "supervisor process check failed ({} of {}): {}", process_failures_, o_.failures, detail);
        failing.clear();
      }
    } else {
      process_failures_ = 0;
    }
    if (failing.empty()) {
      if (Clock::now() - last_restart_ > std::max<Duration>(o_.interval * 10, std::chrono::seconds(30)))
        backoff_ = std::chrono::seconds(1);  // stable again
      return;
    }
    if (plannedChange()) {
      logInfo(kLog, "{} failing ({}), but a reload, upgrade or stop is under way: standing down", failing, detail);
      return;
    }
    restart(failing, detail);
  }

  // With --exec, the child; else the pid file's process, with the start time it had
  // when first seen (a reused pid is not the supervisor).
  bool processAlive(std::string& detail) {
    if (!o_.exec_cmd.empty()) {
      if (child_ > 0) return true;
      detail = "not running";
      return false;
    }
    if (pidfile_.empty()) return true;
    std::ifstream in(pidfile_);
    long pid = 0;
    if (!(in >> pid) || pid <= 0) {
      detail = "no pid in " + pidfile_;
      return false;
    }
    auto st = readProcStats(static_cast<pid_t>(pid));
    if (!st) {
      detail = "pid " + std::to_string(pid) + " is gone";
      return false;
    }
    if (pid == seen_pid_ && st->start_ticks != seen_start_) {
      detail = "pid " + std::to_string(pid) + " now belongs to another process";
      return false;
    }
    seen_pid_ = pid;
    seen_start_ = st->start_ticks;
    return true;
  }

  // Asks the supervisor (control socket from --config) whether it is reloading,
  // upgrading or stopping on purpose.
  bool plannedChange() {
    if (!config_) return false;
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    const std::string& path = config_->supervisor.control_socket;
    if (path.size() >= sizeof addr.sun_path) return false;
    std::memcpy(addr.sun_path, path.data(), path.size());
    timeval tv{1, 0};
    ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) return false;
    std::string req = "{\"cmd\":\"status\"}\n";
    if (::send(fd.get(), req.data(), req.size(), MSG_NOSIGNAL) <= 0) return false;
    std::string reply;
    char buf[65536];
    while (reply.find('\n') == std::string::npos) {
      ssize_t n = ::recv(fd.get(), buf, sizeof buf, 0);
      if (n <= 0) break;
      reply.append(buf, static_cast<size_t>(n));
    }
    auto j = nlohmann::json::parse(reply, nullptr, false);
    if (j.is_discarded() || !j.contains("status")) return false;
    const auto& st = j["status"];
    return st.value("reloading", false) || st.value("state", std::string()) == "stopping";
  }

  void restart(const std::string& failing, const std::string& detail) {
    auto now = Clock::now();
    if (now < not_before_) {
      logWarn(kLog, "{} failing ({}); next restart in {} (backoff)", failing, detail,
              formatDuration(std::chrono::duration_cast<Duration>(not_before_ - now)));
      return;
    }
    ++restarts_;
    logError(kLog, "{} failing ({}): restarting the supervisor (restart {}, next backoff {})", failing, detail,
             restarts_, formatDuration(backoff_));
    alert("restart", failing, detail);
    if (!o_.exec_cmd.empty()) {
      stopChild();
      startChild();
    } else if (!o_.restart_cmd.empty()) {
      int status = runCommand(o_.restart_cmd, {}, std::chrono::seconds(120));
      if (status != 0) {
        logError(kLog, "restart command failed (status {})", status);
        alert("restart-failed", failing, "the restart command failed");
      }
    } else {
      logError(kLog, "no --restart-cmd or --exec: alerting only");
    }
    for (auto& c : checks_) c.failures = 0;
    process_failures_ = 0;
    seen_pid_ = 0;
    last_restart_ = Clock::now();
    not_before_ = last_restart_ + backoff_;
    backoff_ = std::min(backoff_ * 2, o_.backoff_max);
  }

  void alert(const std::string& event, const std::string& check, const std::string& detail) {
    if (o_.on_alert.empty()) return;
    int status = runCommand(o_.on_alert,
                            {{"DINGO_WATCHDOG_EVENT", event},
                             {"DINGO_WATCHDOG_CHECK", check},
                             {"DINGO_WATCHDOG_DETAIL", detail},
                             {"DINGO_WATCHDOG_RESTARTS", std::to_string(restarts_)},
                             {"DINGO_WATCHDOG_PIDFILE", pidfile_}},
                            std::chrono::seconds(30));
    if (status != 0) logWarn(kLog, "alert hook exited with status {}", status);
  }

  void startChild() {
    pid_t pid = ::fork();
    if (pid < 0) {
      logError(kLog, "fork: {}", errnoText(errno));
      return;
    }
    if (pid == 0) {
      if (!held_.empty()) {
        // The held listeners, for the supervisor to adopt.
        std::vector<int> fds;
        for (const auto& h : held_) fds.push_back(h.get());
        systemd::passListenFds(fds);
      }
      std::string cmd = "exec " + o_.exec_cmd;
      ::execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    child_ = pid;
    logInfo(kLog, "started the supervisor (pid {}): {}", pid, o_.exec_cmd);
  }

  void stopChild() {
    if (child_ <= 0) return;
    ::kill(child_, SIGTERM);
    auto deadline = Clock::now() + std::chrono::seconds(10);
    int status = 0;
    while (::waitpid(child_, &status, WNOHANG) == 0) {
      if (Clock::now() > deadline) {
        ::kill(child_, SIGKILL);
        ::waitpid(child_, &status, 0);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    child_ = -1;
  }

  // True when the child stopped on purpose (status 0): the watchdog stops too. A child
  // that died otherwise is restarted at once (within the backoff).
  bool reapChild() {
    if (child_ <= 0) return false;
    int status = 0;
    if (::waitpid(child_, &status, WNOHANG) != child_) return false;
    child_ = -1;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
      logInfo(kLog, "the supervisor exited normally; stopping too");
      return true;
    }
    std::string how = WIFSIGNALED(status) ? "killed by signal " + std::to_string(WTERMSIG(status))
                                          : "exited with status " + std::to_string(WEXITSTATUS(status));
    restart("process", "the supervisor " + how);
    return false;
  }

  WatchdogOptions o_;
  std::optional<Config> config_;
  std::string pidfile_;
  std::vector<Check> checks_;
  std::vector<UniqueFd> held_;
  pid_t child_ = -1;
  long seen_pid_ = 0;
  uint64_t seen_start_ = 0;
  int process_failures_ = 0;
  int restarts_ = 0;
  Duration backoff_ = std::chrono::seconds(1);
  Clock::time_point not_before_{};
  Clock::time_point last_restart_{};
};

}  // namespace

int runWatchdog(const WatchdogOptions& options) {
  ::signal(SIGPIPE, SIG_IGN);
  struct sigaction sa {};
  sa.sa_handler = [](int sig) { g_signal = sig; };
  ::sigaction(SIGTERM, &sa, nullptr);
  ::sigaction(SIGINT, &sa, nullptr);
  Watchdog w(options);
  return w.run();
}

}  // namespace dingo
