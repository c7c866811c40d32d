#include "core/Duration.h"

#include <cctype>
#include <limits>

namespace dingo {

namespace {

bool takeNumber(std::string_view& s, uint64_t& out) {
  size_t i = 0;
  uint64_t v = 0;
  while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) {
    uint64_t digit = static_cast<uint64_t>(s[i] - '0');
    if (v > (std::numeric_limits<uint64_t>::max() - digit) / 10) return false;
    v = v * 10 + digit;
    ++i;
  }
  if (i == 0) return false;
  out = v;
  s.remove_prefix(i);
  return true;
}

std::string_view takeUnit(std::string_view& s) {
  size_t i = 0;
  while (i < s.size() && std::isalpha(static_cast<unsigned char>(s[i]))) ++i;
  std::string_view unit = s.substr(0, i);
  s.remove_prefix(i);
  return unit;
}

}  // namespace

std::optional<Duration> parseDuration(std::string_view text) {
  if (text.empty()) return std::nullopt;
  uint64_t total_ms = 0;
  while (!text.empty()) {
    uint64_t n = 0;
    if (!takeNumber(text, n)) return std::nullopt;
    std::string_view unit = takeUnit(text);
    uint64_t scale = 0;
    if (unit == "ms") scale = 1;
    else if (unit == "s") scale = 1000;
    else if (unit == "m") scale = 60'000;
    else if (unit == "h") scale = 3'600'000;
    else if (unit == "d") scale = 86'400'000;
    else return std::nullopt;
    constexpr uint64_t kMax = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
    if (n > kMax / scale || total_ms > kMax - n * scale) return std::nullopt;
    total_ms += n * scale;
  }
  return Duration(static_cast<int64_t>(total_ms));
}

std::string formatDuration(Duration d) {
  int64_t ms = d.count();
  if (ms == 0) return "0s";
  std::string out;
  if (ms < 0) {
    out = "-";
    ms = -ms;
  }
  const struct {
    int64_t scale;
    const char* unit;
  } units[] = {{86'400'000, "d"}, {3'600'000, "h"}, {60'000, "m"}, {1000, "s"}, {1, "ms"}};
  for (const auto& u : units) {
    if (ms >= u.scale) {
      out += std::to_string(ms / u.scale) + u.unit;
      ms %= u.scale;
    }
  }
  return out;
}

std::optional<uint64_t> parseSize(std::string_view text) {
  uint64_t n = 0;
  if (!takeNumber(text, n)) return std::nullopt;
  std::string_view unit = takeUnit(text);
  if (!text.empty()) return std::nullopt;
  uint64_t scale = 0;
  if (unit.empty() || unit == "B") scale = 1;
  else if (unit == "K" || unit == "KiB" || unit == "KB") scale = 1ull << 10;
  else if (unit == "M" || unit == "MiB" || unit == "MB") scale = 1ull << 20;
  else if (unit == "G" || unit == "GiB" || unit == "GB") scale = 1ull << 30;
  else return std::nullopt;
  if (n > std::numeric_limits<uint64_t>::max() / scale) return std::nullopt;
  return n * scale;
}

}  // namespace dingo
