#include "core/Systemd.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>

namespace dingo::systemd {

namespace {

std::optional<long long> envNumber(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v) return std::nullopt;
  char* end = nullptr;
  long long n = std::strtoll(v, &end, 10);
  if (*end != '\0' || n < 0) return std::nullopt;
  return n;
}

}  // namespace

bool notify(std::string_view state) {
  const char* path = std::getenv("NOTIFY_SOCKET");
  if (!path || !*path) return false;
  size_t len = std::strlen(path);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (len >= sizeof addr.sun_path) return false;
  std::memcpy(addr.sun_path, path, len);
  if (addr.sun_path[0] == '@') addr.sun_path[0] = '\0';  // abstract namespace
  UniqueFd fd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!fd) return false;
  socklen_t alen = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + len);
  return ::sendto(fd.get(), state.data(), state.size(), MSG_NOSIGNAL, reinterpret_cast<sockaddr*>(&addr), alen) ==
         static_cast<ssize_t>(state.size());
}

std::optional<Duration> watchdogInterval() {
  auto usec = envNumber("WATCHDOG_USEC");
  if (!usec || *usec == 0) return std::nullopt;
  if (auto pid = envNumber("WATCHDOG_PID"); pid && *pid != ::getpid()) return std::nullopt;
  return Duration(std::max<long long>(1, *usec / 2000));
}

std::vector<UniqueFd> takeListenFds() {
  std::vector<UniqueFd> out;
  auto pid = envNumber("LISTEN_PID");
  auto n = envNumber("LISTEN_FDS");
  if (pid && n && *pid == ::getpid()) {
    for (long long i = 0; i < *n && i < 1024; ++i) {
      int fd = 3 + static_cast<int>(i);
      ::fcntl(fd, F_SETFD, FD_CLOEXEC);
      out.emplace_back(fd);
    }
  }
  ::unsetenv("LISTEN_PID");
  ::unsetenv("LISTEN_FDS");
  ::unsetenv("LISTEN_FDNAMES");
  return out;
}

void passListenFds(const std::vector<int>& fds) {
  std::vector<int> high;
  for (int fd : fds) high.push_back(::fcntl(fd, F_DUPFD_CLOEXEC, 100));
  for (size_t i = 0; i < high.size(); ++i) ::dup2(high[i], 3 + static_cast<int>(i));  // clears FD_CLOEXEC
  ::setenv("LISTEN_FDS", std::to_string(high.size()).c_str(), 1);
  ::setenv("LISTEN_PID", std::to_string(::getpid()).c_str(), 1);
}

}  // namespace dingo::systemd
