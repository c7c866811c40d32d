#pragma once
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace dingo {

using Duration = std::chrono::milliseconds;

// Parses "250ms", "30s", "5m", "1h", "1d" and sequences such as "1m30s".
// Returns nullopt on anything else (no unit, negative, unknown unit, overflow).
std::optional<Duration> parseDuration(std::string_view text);

// Formats a duration in the shortest exact form parseDuration accepts ("1m30s").
std::string formatDuration(Duration d);

// Parses a byte size: "65536", "64KiB", "64K", "1MiB", "1M", "2GiB" (K/M/G are 1024-based).
std::optional<uint64_t> parseSize(std::string_view text);

}  // namespace dingo
