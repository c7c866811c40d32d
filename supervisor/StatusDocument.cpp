#include "supervisor/StatusDocument.h"

#include <unistd.h>

#include "core/Json.h"
#include "supervisor/Acceptor.h"
#include "supervisor/AdminServer.h"
#include "supervisor/Adoption.h"
#include "supervisor/HandOff.h"
#include "supervisor/HubService.h"
#include "supervisor/KernelAccept.h"
#include "supervisor/Prober.h"
#include "supervisor/WorkerPool.h"
#include "supervisor/WorkerStats.h"

namespace dingo {

using json = nlohmann::json;

json statusDocument(const StatusSources& s, SteadyTime now, size_t top_channels) {
  json st;
  st["pid"] = ::getpid();
  st["version"] = DINGO_VERSION;
  st["uptime_s"] = std::chrono::duration<double>(now - s.started).count();
  st["start_time_unix"] =
      std::chrono::duration_cast<std::chrono::seconds>(s.started_wall.time_since_epoch()).count();
  st["generation"] = s.pool.generation();
  st["dispatch"] = dispatchName(s.config.supervisor.dispatch);
  st["state"] = s.stopping ? "stopping" : "running";
  st["reloading"] = s.pool.reloading() || s.upgrading;
  st["config"] = s.config_path;
  st["listeners"] = s.acceptor.stats();
  st["adopted_total"] = s.adoption.adoptedTotal();
  st["handoff"] = s.hand_off.stats();
  st["accept"] = s.kernel ? s.kernel->stats() : json{{"mode", "handoff"}};
  json ws = json::array();
  uint64_t total_authenticated = 0, total_anonymous = 0;
  auto add = [&](const Worker& w) {
    json j = workerStatus(w, s.prober.figures(w.id), now);
    uint64_t anonymous = field<uint64_t>(j, "anonymous").value_or(0);
    total_anonymous += anonymous;
    total_authenticated += field<uint64_t>(j, "connections").value_or(0) - anonymous;
    ws.push_back(std::move(j));
  };
  for (int i = 0; i < s.pool.size(); ++i) add(s.pool.current(i));
  for (const auto& w : s.pool.retired()) add(*w);
  st["workers"] = ws;
  st["auth"] = {{"enabled", s.config.auth.enabled()},
                {"required", s.config.auth.required},
                {"authenticated", total_authenticated},
                {"anonymous", total_anonymous}};
  if (s.hub) st["hub"] = s.hub->stats(top_channels);
  if (s.admin) st["admin"] = s.admin->stats();
  // The bus carries publishes between workers. The local engine's bus is the hub in the
  // supervisor: degraded only if it is not running. (The Redis engine reports degraded
  // while Redis cannot be reached.)
  st["bus"] = {{"engine", s.config.bus.engine}, {"degraded", s.hub == nullptr || s.hub->degraded()}};
  return st;
}

std::pair<int, std::string> healthzAnswer(const StatusSources& s) {
  int ready = 0;
  for (int i = 0; i < s.pool.size(); ++i)
    if (s.pool.current(i).state == WorkerState::Ready) ++ready;
  bool up = ready > 0 && !s.stopping;
  bool degraded = s.hub && s.hub->degraded();
  json j = {{"status", !up ? "unavailable" : degraded ? "degraded" : "ok"},
            {"pid", ::getpid()},
            {"workers_ready", ready},
            {"workers", s.worker_count},
            {"bus", degraded ? "degraded" : "ok"}};
  return {up ? 200 : 503, j.dump()};
}

}  // namespace dingo
