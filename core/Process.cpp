#include "core/Process.h"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <system_error>

#include "core/Log.h"

namespace dingo {

uint64_t raiseFdLimit(std::string_view component) {
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) {
    logWarn(component, "getrlimit(RLIMIT_NOFILE): {}", errnoText(errno));
    return 0;
  }
  if (rl.rlim_cur < rl.rlim_max) {
    rlim_t old = rl.rlim_cur;
    rl.rlim_cur = rl.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &rl) != 0) {
      logWarn(component, "raising the fd limit from {} to {}: {}", old, rl.rlim_max,
              errnoText(errno));
      return old;
    }
    logInfo(component, "raised the fd limit from {} to {} (the hard limit)", old, rl.rlim_max);
  } else {
    logInfo(component, "fd limit is {} (already the hard limit)", rl.rlim_cur);
  }
  return rl.rlim_cur;
}

long clockTicksPerSecond() {
  static long ticks = ::sysconf(_SC_CLK_TCK);
  return ticks > 0 ? ticks : 100;
}

std::optional<ProcStats> readProcStats(pid_t pid) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(pid));
  int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  char buf[1024];
  ssize_t n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  if (n <= 0) return std::nullopt;
  buf[n] = 0;
  // The command name is in parentheses and may contain spaces: parse after the last ')'.
  const char* p = std::strrchr(buf, ')');
  if (!p) return std::nullopt;
  p += 2;
  // Fields from 3 (state) on; we want 14 utime, 15 stime, 22 starttime, 24 rss (pages).
  unsigned long long fields[25] = {};
  int field = 3;
  const char* s = p;
  while (*s && field <= 24) {
    if (field >= 4) fields[field] = std::strtoull(s, nullptr, 10);
    while (*s && *s != ' ') ++s;
    while (*s == ' ') ++s;
    ++field;
  }
  ProcStats st;
  st.state = *p;
  st.cpu_ticks = fields[14] + fields[15];
  st.start_ticks = fields[22];
  st.rss_bytes = fields[24] * static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  return st;
}

std::string selfExeDir() {
  std::error_code ec;
  auto p = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) return ".";
  return p.parent_path().string();
}

void ensureParentDir(const std::string& path) {
  auto parent = std::filesystem::path(path).parent_path();
  if (parent.empty()) return;
  std::error_code ec;
  std::filesystem::create_directories(parent, ec);
  if (ec) throw std::system_error(ec, "creating directory " + parent.string());
}

std::optional<std::string> readFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n > 0) {
      out.append(buf, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    int err = errno;
    ::close(fd);
    if (n < 0) {
      errno = err;
      return std::nullopt;
    }
    return out;
  }
}

void writeFileAtomically(const std::string& path, std::string_view text) {
  ensureParentDir(path);
  std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw std::system_error(errno, std::generic_category(), "writing " + tmp);
  ssize_t n = ::write(fd, text.data(), text.size());
  int err = errno;
  ::close(fd);
  if (n != static_cast<ssize_t>(text.size())) throw std::system_error(err, std::generic_category(), "writing " + tmp);
  if (::rename(tmp.c_str(), path.c_str()) != 0)
    throw std::system_error(errno, std::generic_category(), "renaming " + tmp + " to " + path);
}

void writePidFile(const std::string& path, pid_t pid) { writeFileAtomically(path, std::to_string(pid) + "\n"); }

void dropPrivileges(std::string_view component, const std::string& user, const std::vector<std::string>& files) {
  if (user.empty()) return;
  passwd* pw = ::getpwnam(user.c_str());
  if (!pw) throw std::runtime_error("[supervisor] user '" + user + "' does not exist");
  if (::geteuid() == pw->pw_uid) return;
  if (::geteuid() != 0)
    throw std::runtime_error("[supervisor] user = '" + user + "' needs the supervisor to start as root");
  // The files we made while root must stay usable after the switch.
  for (const auto& f : files)
    if (::chown(f.c_str(), pw->pw_uid, pw->pw_gid) != 0) logWarn(component, "chown {} to {}: {}", f, user, errnoText(errno));
  if (::initgroups(user.c_str(), pw->pw_gid) != 0 || ::setgid(pw->pw_gid) != 0 || ::setuid(pw->pw_uid) != 0)
    throw std::runtime_error("dropping privileges to '" + user + "': " + errnoText(errno));
  logInfo(component, "running as user {} (uid {})", user, pw->pw_uid);
}

}  // namespace dingo
