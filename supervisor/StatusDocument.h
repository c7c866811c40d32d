#pragma once
// The running supervisor's status document (`dingoctl status --json`, the admin
// listener's /v1/status, and /metrics rendered from it) and its /healthz answer, built
// from what each part reports. Supervisor.cpp fills a StatusSources and calls these.
#include <nlohmann/json.hpp>

#include <chrono>
#include <string>
#include <utility>

#include "core/Config.h"
#include "supervisor/TimeSource.h"

namespace dingo {

class Acceptor;
class AdminServer;
class Adoption;
class HandOff;
class HubService;
class KernelAccept;
class Prober;
class WorkerPool;

struct StatusSources {
  const Config& config;
  const std::string& config_path;
  SteadyTime started;
  std::chrono::system_clock::time_point started_wall;
  int worker_count;
  bool stopping;
  bool upgrading;
  const WorkerPool& pool;
  const Prober& prober;
  const Acceptor& acceptor;
  const HandOff& hand_off;
  const Adoption& adoption;
  const KernelAccept* kernel;  // null in handoff mode
  const HubService* hub;
  const AdminServer* admin;
};

// `top_channels`: how many of the busiest channels the hub lists (0: none; metrics do
// not export them, and listing them is a pass over every channel).
nlohmann::json statusDocument(const StatusSources& s, SteadyTime now, size_t top_channels);

// 200 while a worker is ready and the supervisor is not stopping, else 503; the body
// says "degraded" while the bus cannot serve (Redis away): its connections still work.
std::pair<int, std::string> healthzAnswer(const StatusSources& s);

}  // namespace dingo
