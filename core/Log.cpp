#include "core/Log.h"

#include <cerrno>

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>

namespace dingo {

namespace {
LogFormat g_format = LogFormat::Text;
LogLevel g_level = LogLevel::Info;

const char* levelName(LogLevel level) {
  switch (level) {
    case LogLevel::Debug: return "debug";
    case LogLevel::Info: return "info";
    case LogLevel::Warn: return "warn";
    case LogLevel::Error: return "error";
  }
  return "info";
}

std::string timestamp() {
  auto now = std::chrono::system_clock::now();
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
  std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>(ms % 1000));
  return buf;
}
}  // namespace

void logSetup(LogFormat format, LogLevel level) {
  g_format = format;
  g_level = level;
}

bool logEnabled(LogLevel level) { return level >= g_level; }

std::optional<LogLevel> parseLogLevel(std::string_view s) {
  if (s == "debug") return LogLevel::Debug;
  if (s == "info") return LogLevel::Info;
  if (s == "warn") return LogLevel::Warn;
  if (s == "error") return LogLevel::Error;
  return std::nullopt;
}

std::optional<LogFormat> parseLogFormat(std::string_view s) {
  if (s == "text") return LogFormat::Text;
  if (s == "json") return LogFormat::Json;
  return std::nullopt;
}

std::string jsonEscape(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 8);
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += ch;
        }
    }
  }
  return out;
}

void logWrite(LogLevel level, std::string_view component, std::string_view message) {
  std::string line;
  if (g_format == LogFormat::Json) {
    line = fmt::format(R"({{"ts":"{}","level":"{}","component":"{}","pid":{},"msg":"{}"}})",
                       timestamp(), levelName(level), jsonEscape(component), ::getpid(),
                       jsonEscape(message));
  } else {
    line = fmt::format("{} {:<5} {}[{}]: {}", timestamp(), levelName(level), component,
                       ::getpid(), message);
  }
  line += '\n';
  // One write(2) per line so that lines from several processes never interleave.
  const char* p = line.data();
  size_t left = line.size();
  while (left > 0) {
    ssize_t n = ::write(STDERR_FILENO, p, left);
    if (n < 0 && errno == EINTR) continue;  // a signal came first: the line still goes out
    if (n <= 0) break;  // nowhere to log to; never worth stopping for
    p += n;
    left -= static_cast<size_t>(n);
  }
}

std::string errnoText(int err) {
  char buf[128];
  const char* s = strerror_r(err, buf, sizeof buf);
  return fmt::format("{} (errno {})", s, err);
}

}  // namespace dingo
