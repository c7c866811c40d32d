#pragma once
// The supervisor's status is one JSON document (what `dingoctl status --json` prints);
// the Prometheus text and the status table are both rendered from it.
#include <nlohmann/json_fwd.hpp>
#include <string>

namespace dingo {

// Prometheus text exposition format 0.0.4, every name prefixed `dingo_`.
std::string renderMetrics(const nlohmann::json& status);

// The human table `dingoctl status` prints.
std::string renderStatusTable(const nlohmann::json& status);

// "1.5K", "3.2M": byte counts for people.
std::string humanBytes(double bytes);
// "3d4h", "2h05m", "1m02s", "45s".
std::string humanDuration(double seconds);

}  // namespace dingo
