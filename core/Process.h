#pragma once
// Process-level helpers: the fd limit, /proc/PID/stat figures, the executable's folder,
// whole-file reads and atomic writes, pid files, and dropping root privileges.
#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace dingo {

// Raises the soft RLIMIT_NOFILE to the hard limit and logs what it did.
// Returns the limit now in force.
uint64_t raiseFdLimit(std::string_view component);

struct ProcStats {
  uint64_t rss_bytes = 0;
  uint64_t cpu_ticks = 0;   // utime + stime, in clock ticks
  uint64_t start_ticks = 0; // process start time since boot, in clock ticks
  char state = '?';         // R, S, D, T, Z (zombie: exited, not yet reaped), ...
};

// Reads /proc/PID/stat. nullopt when the process is gone.
std::optional<ProcStats> readProcStats(pid_t pid);
long clockTicksPerSecond();


// The directory holding the running executable.
std::string selfExeDir();

// The whole file, or nullopt with errno set.
std::optional<std::string> readFile(const std::string& path);

// Writes a file atomically (a temp file beside it, renamed). Throws std::system_error.
void writeFileAtomically(const std::string& path, std::string_view text);

// Writes the pid file atomically (write to a temp file, rename). Throws std::system_error.
void writePidFile(const std::string& path, pid_t pid);

// Creates the parent directory of `path` if missing (mode 0755). Throws std::system_error.
void ensureParentDir(const std::string& path);

// Switches to `user` (its uid, gid and groups) when running as root, first giving it
// `files` (made while root, still needed after). Nothing when `user` is empty or is us.
// Throws std::runtime_error when the user does not exist or the switch fails. Logs with
// the `component` tag.
void dropPrivileges(std::string_view component, const std::string& user, const std::vector<std::string>& files);

}  // namespace dingo
