#include "supervisor/WorkerStats.h"

#include <cmath>

#include "core/Json.h"
#include "core/Process.h"
#include "supervisor/Worker.h"

namespace dingo {

using json = nlohmann::json;

void WorkerFigures::reset() {
  handed = 0;
  stats = json::object();
  reported_accepted = reported_connections = 0;
  progress = 0;
  prev_requests = prev_cpu_ticks = 0;
  requests_per_s = cpu_percent = 0;
  prev_sample = {};
}

void WorkerFigures::report(json s) {
  stats = std::move(s);
  progress = 0;
  for (const char* k : {"accepted", "requests", "bytes_in", "bytes_out", "delivered", "polls", "probes"})
    progress += field<uint64_t>(stats, k).value_or(0);
  reported_accepted = field<uint64_t>(stats, "accepted").value_or(0);
  reported_connections = field<uint64_t>(stats, "connections").value_or(0);
}

void WorkerFigures::sample(pid_t pid, SteadyTime now) {
  auto ps = readProcStats(pid);
  if (!ps) return;
  uint64_t requests = field<uint64_t>(stats, "requests").value_or(0);
  if (prev_sample != SteadyTime{}) {
    double dt = std::chrono::duration<double>(now - prev_sample).count();
    if (dt > 0) {
      requests_per_s = static_cast<double>(requests - std::min(requests, prev_requests)) / dt;
      cpu_percent = 100.0 * static_cast<double>(ps->cpu_ticks - std::min(ps->cpu_ticks, prev_cpu_ticks)) /
                    static_cast<double>(clockTicksPerSecond()) / dt;
    }
  }
  prev_sample = now;
  prev_requests = requests;
  prev_cpu_ticks = ps->cpu_ticks;
  rss_bytes = ps->rss_bytes;
  cpu_seconds = static_cast<double>(ps->cpu_ticks) / static_cast<double>(clockTicksPerSecond());
}

std::optional<json> parseWorkerStats(std::string_view payload) {
  ParsedJson parsed = parseJson(payload, 1);
  if (!parsed.ok() || !parsed.value.is_object() || parsed.value.size() > kMaxStatsKeys) return std::nullopt;
  for (const auto& [key, value] : parsed.value.items()) {
    bool number = value.is_number_integer() || (value.is_number_float() && std::isfinite(value.get<double>()));
    if (key.empty() || key.size() > 64 || !(number || value.is_boolean())) return std::nullopt;
  }
  return std::move(parsed.value);
}

json workerStatus(const Worker& w, const ProbeFigures& probes, SteadyTime now) {
  const WorkerFigures& f = w.figures;
  json j = {{"id", w.slot},
            {"pid", w.pid > 0 ? w.pid : 0},
            {"generation", w.generation},
            {"state", stateName(w.state)},
            {"uptime_s", w.alive() ? std::chrono::duration<double>(now - w.started_at).count() : 0.0},
            {"handed", f.handed},
            {"requests_per_s", f.requests_per_s},
            {"rss_bytes", w.alive() ? f.rss_bytes : 0},
            {"cpu_percent", w.alive() ? f.cpu_percent : 0.0},
            {"cpu_seconds", w.alive() ? f.cpu_seconds : 0.0},
            {"restarts", w.restarts},
            {"adopted", w.adopted},
            {"last_probe_ms", probes.last_probe_ms >= 0 ? json(probes.last_probe_ms) : json(nullptr)},
            {"probes_ok", probes.ok},
            {"probes_failed", probes.failed},
            {"probes_inconclusive", probes.inconclusive}};
  for (const char* key : {"connections", "accepted", "requests", "bytes_in", "bytes_out", "tls_handshakes",
                          "tls_resumed", "tls_failures", "timeouts", "bad_requests", "loop_lag_ms", "ws_connections",
                          "ws_upgrades", "ws_commands", "ws_protocol_errors", "published", "delivered", "recovered",
                          "not_recovered", "slow_consumers", "rate_limited", "channels", "polls", "held_polls",
                          "poll_cache_hits", "poll_cache_misses", "poll_sessions", "poll_session_bytes",
                          "poll_evictions", "sse_streams", "sse_total", "rejected", "reattached", "resets",
                          "peer_limited", "stream_limited", "peers_tracked", "authenticated", "gaps"})
    j[key] = w.alive() ? f.stats.value(key, json(0)) : json(0);
  uint64_t conns = field<uint64_t>(j, "connections").value_or(0);
  uint64_t authed = std::min(conns, field<uint64_t>(j, "authenticated").value_or(0));
  j["anonymous"] = conns - authed;
  if (w.alive())  // auth counters: refusals by reason, cache use (docs/auth.md)
    for (const auto& [key, value] : f.stats.items())
      if (key.starts_with("auth_")) j[key] = value;
  j["probes_served"] = w.alive() ? f.stats.value("probes", json(0)) : json(0);  // the worker's count
  return j;
}

}  // namespace dingo
