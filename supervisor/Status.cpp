#include "supervisor/Status.h"

#include <fmt/format.h>

#include <algorithm>
#include <vector>

#include <nlohmann/json.hpp>

namespace dingo {

namespace {

using json = nlohmann::json;

class MetricWriter {
 public:
  // Starts a metric family. Its HELP and TYPE lines are written with its first sample:
  // a family with no series is left out, so that a test looking for a family's name
  // finds it only when there is a value to read.
  void family(const char* name, const char* type, const char* help) {
    pending_ = fmt::format("# HELP dingo_{} {}\n# TYPE dingo_{} {}\n", name, help, name, type);
  }
  void sample(const char* name, const std::string& labels, double value) {
    out_ += pending_;
    pending_.clear();
    if (labels.empty()) out_ += fmt::format("dingo_{} {}\n", name, value);
    else out_ += fmt::format("dingo_{}{{{}}} {}\n", name, labels, value);
  }
  std::string take() { return std::move(out_); }

 private:
  std::string out_;
  std::string pending_;  // the current family's HELP and TYPE, until its first sample
};

std::string labelValue(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

double num(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_number()) return 0;
  return it->get<double>();
}

}  // namespace

std::string renderMetrics(const json& status) {
  MetricWriter m;
  m.family("build_info", "gauge", "Build information; the value is always 1.");
  m.sample("build_info", fmt::format("version=\"{}\"", labelValue(status.value("version", ""))), 1);
  m.family("supervisor_uptime_seconds", "gauge", "Seconds since the supervisor started.");
  m.sample("supervisor_uptime_seconds", "", num(status, "uptime_s"));
  m.family("supervisor_generation", "gauge", "Current worker generation.");
  m.sample("supervisor_generation", "", num(status, "generation"));

  const json& listeners = status.contains("listeners") ? status["listeners"] : json::array();
  m.family("listener_accepted_total", "counter", "TCP connections accepted, per listener.");
  for (const auto& l : listeners)
    m.sample("listener_accepted_total",
             fmt::format("listener=\"{}\",tls=\"{}\"", labelValue(l.value("address", "")),
                         l.value("tls", false) ? "true" : "false"),
             num(l, "accepted"));

  m.family("workers_adopted_total", "counter",
           "Workers of a supervisor that died, adopted by this one when they re-attached.");
  m.sample("workers_adopted_total", "", num(status, "adopted_total"));

  const json& h = status.contains("handoff") ? status["handoff"] : json::object();
  m.family("handoffs_total", "counter", "Accepted sockets handed to a worker.");
  m.sample("handoffs_total", "", num(h, "handed"));
  m.family("handoff_retries_total", "counter",
           "Hand-offs a worker refused (queue full or gone), retried on the next worker.");
  m.sample("handoff_retries_total", "", num(h, "retries"));
  m.family("handoff_waited_total", "counter",
           "Accepted sockets that waited in the supervisor because every worker's queue was full.");
  m.sample("handoff_waited_total", "", num(h, "waited"));
  m.family("handoff_dropped_total", "counter",
           "Accepted sockets closed because no worker could take them.");
  m.sample("handoff_dropped_total", "", num(h, "dropped"));

  const json& workers = status.contains("workers") ? status["workers"] : json::array();
  m.family("workers", "gauge", "Workers by state.");
  for (const char* state : {"starting", "ready", "draining", "suspect", "exited"}) {
    int n = 0;
    for (const auto& w : workers)
      if (w.value("state", "") == state) ++n;
    m.sample("workers", fmt::format("state=\"{}\"", state), n);
  }

  struct PerWorker {
    const char* name;
    const char* type;
    const char* help;
    const char* key;
    double scale;
  };
  const PerWorker per_worker[] = {
      {"worker_connections", "gauge", "Open client connections.", "connections", 1},
      {"worker_accepted_total", "counter", "Client connections adopted by the worker process.",
       "accepted", 1},
      {"worker_requests_total", "counter", "HTTP requests served by the worker process.",
       "requests", 1},
      {"worker_received_bytes_total", "counter", "Bytes received from clients.", "bytes_in", 1},
      {"worker_sent_bytes_total", "counter", "Bytes sent to clients.", "bytes_out", 1},
      {"worker_tls_handshakes_total", "counter", "Completed TLS handshakes.", "tls_handshakes", 1},
      {"worker_tls_resumed_total", "counter", "TLS handshakes that resumed a session.",
       "tls_resumed", 1},
      {"worker_tls_handshake_failures_total", "counter", "Failed or timed-out TLS handshakes.",
       "tls_failures", 1},
      {"worker_timeouts_total", "counter", "Connections closed by a deadline.", "timeouts", 1},
      {"worker_bad_requests_total", "counter", "Malformed requests answered with an error.",
       "bad_requests", 1},
      {"worker_resident_memory_bytes", "gauge", "Resident set size of the worker process.",
       "rss_bytes", 1},
      {"worker_cpu_seconds_total", "counter", "CPU time (user + system) of the worker process.",
       "cpu_seconds", 1},
      {"worker_restarts_total", "counter", "Times this worker slot was respawned.", "restarts", 1},
      {"worker_event_loop_lag_seconds", "gauge", "Worker event-loop lag at its last report.",
       "loop_lag_ms", 0.001},
      {"worker_websockets", "gauge", "Open WebSocket connections.", "ws_connections", 1},
      {"worker_websocket_upgrades_total", "counter", "WebSocket upgrades accepted.", "ws_upgrades", 1},
      {"worker_websocket_commands_total", "counter", "WebSocket commands received.", "ws_commands", 1},
      {"worker_websocket_protocol_errors_total", "counter",
       "WebSocket connections closed for a protocol error (1002, 1003, 1007, 1009).", "ws_protocol_errors", 1},
      {"worker_channels", "gauge", "Channels with at least one subscriber on this worker.", "channels", 1},
      {"worker_messages_published_total", "counter", "Messages published through this worker (REST and WebSocket).",
       "published", 1},
      {"worker_messages_delivered_total", "counter", "Messages pushed to subscribers.", "delivered", 1},
      {"worker_subscription_gaps_total", "counter",
       "Subscriptions that met a message not following their last one; their clients resumed.", "gaps", 1},
      {"worker_recoveries_total", "counter", "Subscribes with since that got every missed message.", "recovered", 1},
      {"worker_recovery_failures_total", "counter", "Subscribes with since answered recovered: false.",
       "not_recovered", 1},
      {"worker_slow_consumer_disconnects_total", "counter",
       "Connections closed because their send queue overflowed.", "slow_consumers", 1},
      {"worker_rate_limited_total", "counter", "WebSocket commands refused over the per-connection rate.",
       "rate_limited", 1},
      {"worker_probes_ok_total", "counter", "Internal watchdog probes answered in time.", "probes_ok", 1},
      {"worker_probes_failed_total", "counter", "Probes failed or timed out with no heartbeat progress.",
       "probes_failed", 1},
      {"worker_probes_inconclusive_total", "counter",
       "Probes that timed out (or found the queue full) while the worker's heartbeat still moved.",
       "probes_inconclusive", 1},
      {"worker_probe_latency_seconds", "gauge", "Latency of the worker's last successful probe.", "last_probe_ms",
       0.001},
      {"worker_polls_total", "counter", "Long-polls answered.", "polls", 1},
      {"worker_held_polls", "gauge", "Long-polls held now, waiting for a message.", "held_polls", 1},
      {"worker_poll_cache_hits_total", "counter", "Polls served from the worker's session cache.", "poll_cache_hits", 1},
      {"worker_poll_cache_misses_total", "counter", "Polls with a cursor rebuilt from the hub's history.",
       "poll_cache_misses", 1},
      {"worker_poll_sessions", "gauge", "Long-poll sessions in the worker's cache.", "poll_sessions", 1},
      {"worker_poll_session_bytes", "gauge", "Bytes of messages the session cache keeps for its clients.",
       "poll_session_bytes", 1},
      {"worker_poll_cache_evictions_total", "counter", "Session cache entries dropped (idle past session_ttl, or over the bounds).",
       "poll_evictions", 1},
      {"worker_sse_streams", "gauge", "Open SSE streams.", "sse_streams", 1},
      {"worker_sse_streams_total", "counter", "SSE streams opened.", "sse_total", 1},
      {"worker_rejected_total", "counter",
       "Connections closed unserved: over max_connections, or TLS with no certificate loaded.", "rejected", 1},
      {"worker_resets_total", "counter",
       "Connections cut with a reset (SO_LINGER 0): timed out, too slow to read, or silent after our close.",
       "resets", 1},
      {"worker_peer_limited_total", "counter",
       "Connections refused by max_connections_per_ip or new_connections_per_ip.", "peer_limited", 1},
      {"worker_stream_limited_total", "counter", "Long-polls and SSE streams refused over max_streams.",
       "stream_limited", 1},
      {"worker_peers_tracked", "gauge", "Client addresses the per-address limits remember.", "peers_tracked", 1},
      {"worker_probes_served_total", "counter", "Internal watchdog probes the worker process answered.",
       "probes_served", 1},
      {"worker_reattachments_total", "counter",
       "Times the worker process re-attached to a new supervisor after its own died.", "reattached", 1},
  };
  // A slot can hold two processes at once (a reload or drain-worker starts the new one
  // while the old one drains), so a series is per process: the slot and the pid. The
  // same (slot, pid) twice (an exited slot and an exited replaced worker, both pid 0)
  // is written once, so that no scrape ever has a duplicate series.
  std::vector<std::string> worker_labels;
  std::vector<const json*> worker_rows;
  for (const auto& w : workers) {
    std::string labels = fmt::format("worker=\"{}\",pid=\"{}\"", w.value("id", 0), w.value("pid", 0));
    if (std::find(worker_labels.begin(), worker_labels.end(), labels) != worker_labels.end()) continue;
    worker_labels.push_back(std::move(labels));
    worker_rows.push_back(&w);
  }
  for (const auto& metric : per_worker) {
    m.family(metric.name, metric.type, metric.help);
    for (size_t i = 0; i < worker_rows.size(); ++i)
      m.sample(metric.name, worker_labels[i], num(*worker_rows[i], metric.key) * metric.scale);
  }

  m.family("worker_authenticated_connections", "gauge",
           "WebSocket connections, SSE streams and held polls with a verified token.");
  for (size_t i = 0; i < worker_rows.size(); ++i)
    m.sample("worker_authenticated_connections", worker_labels[i], num(*worker_rows[i], "authenticated"));
  // auth_refused_<code>_<reason> in a worker's stats: one series per code and reason.
  m.family("worker_auth_refusals_total", "counter",
           "Requests and commands refused by auth, by code (unauthorized, forbidden) and reason (docs/auth.md).");
  for (size_t i = 0; i < worker_rows.size(); ++i) {
    for (const auto& [key, value] : worker_rows[i]->items()) {
      if (!key.starts_with("auth_refused_") || !value.is_number()) continue;
      std::string_view rest = std::string_view(key).substr(13);
      size_t cut = rest.find('_');
      if (cut == std::string_view::npos) continue;
      m.sample("worker_auth_refusals_total",
               fmt::format("{},code=\"{}\",reason=\"{}\"", worker_labels[i], labelValue(std::string(rest.substr(0, cut))),
                           labelValue(std::string(rest.substr(cut + 1)))),
               value.get<double>());
    }
  }
  m.family("worker_auth_cache_hits_total", "counter", "Tokens found verified in the worker's cache.");
  for (size_t i = 0; i < worker_rows.size(); ++i)
    if (worker_rows[i]->contains("auth_cache_hits"))
      m.sample("worker_auth_cache_hits_total", worker_labels[i], num(*worker_rows[i], "auth_cache_hits"));
  m.family("worker_auth_cache_misses_total", "counter", "Tokens verified (signature checked) by the worker.");
  for (size_t i = 0; i < worker_rows.size(); ++i)
    if (worker_rows[i]->contains("auth_cache_misses"))
      m.sample("worker_auth_cache_misses_total", worker_labels[i], num(*worker_rows[i], "auth_cache_misses"));

  // bus.degraded in the status document: 1 while publishes cannot reach every worker.
  if (status.contains("bus") && status["bus"].contains("degraded")) {
    const json& degraded = status["bus"]["degraded"];
    m.family("bus_degraded", "gauge",
             "1 while the bus cannot carry publishes between workers (redis engine: Redis unreachable), else 0.");
    m.sample("bus_degraded", fmt::format("engine=\"{}\"", labelValue(status["bus"].value("engine", ""))),
             degraded.is_boolean() && degraded.get<bool>() ? 1 : 0);
  }

  if (status.contains("hub")) {
    const json& hub = status["hub"];
    m.family("hub_channels", "gauge", "Channels the hub knows (with subscribers or history).");
    m.sample("hub_channels", "", num(hub, "channels"));
    m.family("hub_messages_published_total", "counter", "Messages the hub sequenced.");
    m.sample("hub_messages_published_total", "", num(hub, "published"));
    m.family("hub_history_messages", "gauge", "Messages kept in history.");
    m.sample("hub_history_messages", "", num(hub, "history_messages"));
    m.family("hub_history_bytes", "gauge", "Bytes of history kept (payload plus overhead).");
    m.sample("hub_history_bytes", "", num(hub, "history_bytes"));
    m.family("hub_link_overflows_total", "counter", "Worker links closed because the worker stopped reading.");
    m.sample("hub_link_overflows_total", "", num(hub, "link_overflows"));
    m.family("hub_refused_full_total", "counter",
             "Subscribes and publishes to new channels refused at [history] max_channels.");
    m.sample("hub_refused_full_total", "", num(hub, "refused_full"));
    if (hub.contains("nodes")) {  // the redis engine's node registry
      m.family("hub_nodes", "gauge",
               "Hosts in the node registry (redis engine), this one included: /v1/nodes lists their endpoints.");
      m.sample("hub_nodes", "", num(hub, "nodes"));
    }
  }
  return m.take();
}

std::string humanBytes(double bytes) {
  const char* units[] = {"B", "K", "M", "G", "T"};
  int u = 0;
  while (bytes >= 1024 && u < 4) {
    bytes /= 1024;
    ++u;
  }
  if (u == 0) return fmt::format("{:.0f}B", bytes);
  return fmt::format("{:.1f}{}", bytes, units[u]);
}

std::string humanDuration(double seconds) {
  long s = static_cast<long>(seconds);
  if (s >= 86400) return fmt::format("{}d{}h", s / 86400, (s % 86400) / 3600);
  if (s >= 3600) return fmt::format("{}h{:02}m", s / 3600, (s % 3600) / 60);
  if (s >= 60) return fmt::format("{}m{:02}s", s / 60, s % 60);
  return fmt::format("{}s", s);
}

std::string renderStatusTable(const json& st) {
  std::string out = fmt::format(
      "supervisor  pid {}  version {}  uptime {}  generation {}  dispatch {}\n",
      st.value("pid", 0), st.value("version", "?"), humanDuration(num(st, "uptime_s")),
      st.value("generation", 0), st.value("dispatch", "?"));
  if (st.contains("listeners")) {
    out += "listeners  ";
    bool first = true;
    for (const auto& l : st["listeners"]) {
      out += fmt::format("{}{} ({}, {} accepted)", first ? "" : "  ", l.value("address", ""),
                         l.value("tls", false) ? "tls" : "plain", l.value("accepted", 0));
      first = false;
    }
    out += "\n";
  }
  if (st.contains("handoff")) {
    const auto& h = st["handoff"];
    out += fmt::format("handoff    {} handed, {} retried, {} dropped\n", h.value("handed", 0),
                       h.value("retries", 0), h.value("dropped", 0));
  }
  if (st.contains("auth") && st["auth"].value("enabled", false)) {
    const auto& a = st["auth"];
    out += fmt::format("auth       tokens {}, {} authenticated, {} anonymous\n",
                       a.value("required", false) ? "required" : "optional", a.value("authenticated", 0),
                       a.value("anonymous", 0));
  }
  if (st.contains("hub")) {
    const auto& h = st["hub"];
    out += fmt::format("hub        {} channels, {} published, {} in history ({}){}\n", h.value("channels", 0),
                       h.value("published", 0), h.value("history_messages", 0),
                       humanBytes(num(h, "history_bytes")),
                       h.contains("nodes") ? fmt::format(", {} nodes", h.value("nodes", 0)) : std::string());
  }
  out += fmt::format("{:<4}{:<9}{:<10}{:>7}{:>10}{:>9}{:>9}{:>9}{:>8}{:>7}{:>10}{:>8}\n", "ID",
                     "PID", "STATE", "CONNS", "ACCEPTED", "REQ/S", "IN", "OUT", "RSS", "CPU%",
                     "RESTARTS", "PROBE");
  if (st.contains("workers")) {
    for (const auto& w : st["workers"]) {
      std::string probe = "-";
      if (w.contains("last_probe_ms") && w["last_probe_ms"].is_number())
        probe = fmt::format("{:.1f}ms", w["last_probe_ms"].get<double>());
      out += fmt::format("{:<4}{:<9}{:<10}{:>7}{:>10}{:>9.1f}{:>9}{:>9}{:>8}{:>7.1f}{:>10}{:>8}\n",
                         w.value("id", 0), w.value("pid", 0), w.value("state", "?"),
                         w.value("connections", 0), w.value("accepted", 0),
                         num(w, "requests_per_s"), humanBytes(num(w, "bytes_in")),
                         humanBytes(num(w, "bytes_out")), humanBytes(num(w, "rss_bytes")),
                         num(w, "cpu_percent"), w.value("restarts", 0), probe);
    }
  }
  return out;
}

}  // namespace dingo
