#pragma once
// A worker's figures: the Stats report it sends every second (checked: one flat object
// of numbers), the hand-offs we counted, and what we measure of its process from
// /proc/PID/stat once a second (RSS, CPU %, requests/s). The status document's entry
// for a worker is rendered from them (workerStatus).
#include <sys/types.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string_view>

#include "supervisor/TimeSource.h"

namespace dingo {

struct Worker;

// What the prober measured of a worker (for status).
struct ProbeFigures {
  double last_probe_ms = -1;  // latency of the last successful probe (-1: none yet)
  uint64_t ok = 0, failed = 0, inconclusive = 0;
};

struct WorkerFigures {
  uint64_t handed = 0;  // sockets we handed it since it started
  nlohmann::json stats = nlohmann::json::object();  // its last report
  uint64_t reported_accepted = 0;
  uint64_t reported_connections = 0;
  uint64_t progress = 0;  // the sum of its progress counters (the prober's heartbeat)
  // Rates, from the previous sample.
  double requests_per_s = 0;
  double cpu_percent = 0;
  uint64_t rss_bytes = 0;
  double cpu_seconds = 0;
  uint64_t prev_requests = 0;
  uint64_t prev_cpu_ticks = 0;
  SteadyTime prev_sample{};

  // A fresh process: forgets the previous one's figures (keeps nothing).
  void reset();
  // Takes a report (validated by parseWorkerStats).
  void report(nlohmann::json stats);
  // Samples /proc/PID/stat.
  void sample(pid_t pid, SteadyTime now);
  // Open connections plus sockets handed since its last report (least-conn).
  uint64_t loadEstimate() const {
    uint64_t in_flight = handed > reported_accepted ? handed - reported_accepted : 0;
    return reported_connections + in_flight;
  }
};

// A worker's Stats payload, kept only if it is what a worker sends: one flat object of
// at most kMaxStatsKeys numbers and booleans with short names. A compromised worker
// must not be able to put anything else into status, metrics or our memory.
constexpr size_t kMaxStatsKeys = 128;
std::optional<nlohmann::json> parseWorkerStats(std::string_view payload);

// A worker's entry in the status document.
nlohmann::json workerStatus(const Worker& w, const ProbeFigures& probes, SteadyTime now);

}  // namespace dingo
