#pragma once
#include <fmt/format.h>

#include <optional>
#include <string>
#include <string_view>

namespace dingo {

enum class LogLevel { Debug = 0, Info = 1, Warn = 2, Error = 3 };
enum class LogFormat { Text, Json };

// Process-wide logger: one line per event on stderr, `text` or `json`.
// Each line carries a timestamp, level, component tag and the process id.
void logSetup(LogFormat format, LogLevel level);
bool logEnabled(LogLevel level);
void logWrite(LogLevel level, std::string_view component, std::string_view message);

std::optional<LogLevel> parseLogLevel(std::string_view s);
std::optional<LogFormat> parseLogFormat(std::string_view s);

// Escapes a string for inclusion in a JSON string literal (without the quotes).
std::string jsonEscape(std::string_view s);

template <typename... Args>
void logAt(LogLevel level, std::string_view component, fmt::format_string<Args...> f,
           Args&&... args) {
  if (!logEnabled(level)) return;
  logWrite(level, component, fmt::format(f, std::forward<Args>(args)...));
}

template <typename... Args>
void logDebug(std::string_view c, fmt::format_string<Args...> f, Args&&... a) {
  logAt(LogLevel::Debug, c, f, std::forward<Args>(a)...);
}
template <typename... Args>
void logInfo(std::string_view c, fmt::format_string<Args...> f, Args&&... a) {
  logAt(LogLevel::Info, c, f, std::forward<Args>(a)...);
}
template <typename... Args>
void logWarn(std::string_view c, fmt::format_string<Args...> f, Args&&... a) {
  logAt(LogLevel::Warn, c, f, std::forward<Args>(a)...);
}
template <typename... Args>
void logError(std::string_view c, fmt::format_string<Args...> f, Args&&... a) {
  logAt(LogLevel::Error, c, f, std::forward<Args>(a)...);
}

// strerror for an errno value, thread-safe.
std::string errnoText(int err);

}  // namespace dingo
