#include "supervisor/Adoption.h"

#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/Json.h"
#include "core/Log.h"
#include "core/Process.h"
#include "supervisor/WorkerPool.h"

namespace dingo {

namespace {
constexpr const char* kLog = "supervisor";
using json = nlohmann::json;
}  // namespace

Adoption::Adoption(TimeSource& time, WorkerPool& pool, const Config& config)
    : time_(time), pool_(pool), config_(config), timer_(time.makeTimer()) {}

// supervisor.pid -> supervisor.workers
std::string Adoption::workersFile(std::string pid_file) {
  if (pid_file.ends_with(".pid")) pid_file.resize(pid_file.size() - 4);
  return pid_file + ".workers";
}

void Adoption::saveWorkers() {
  json ws = json::array();
  pool_.forEach([&](Worker& w) {
    if (!w.alive()) return;
    auto ps = readProcStats(w.pid);
    if (ps) ws.push_back({{"slot", w.slot}, {"pid", w.pid}, {"start_ticks", ps->start_ticks}});
  });
  json j = {{"supervisor", ::getpid()}, {"generation", pool_.generation()}, {"workers", std::move(ws)}};
  try {
    writeFileAtomically(workersFile(), j.dump() + "\n");
  } catch (const std::exception& e) {
    logWarn(kLog, "{}", e.what());
  }
}

void Adoption::start(bool upgrading) {
  std::map<int, pid_t> orphans;
  if (!upgrading) orphans = readOrphans();
  for (const auto& [slot, pid] : orphans) awaiting_.insert(slot);
  pool_.start(awaiting_);
  if (orphans.empty()) return;
  logInfo(kLog, "{} worker(s) of the previous supervisor are still running; waiting up to {}s for them to re-attach",
          orphans.size(), kAdoptWait.count());
  timer_->start(kAdoptWait, [this, orphans] {
    if (pool_.stopping()) return;
    awaiting_.clear();
    for (const auto& [slot, pid] : orphans) {
      if (pool_.current(slot).alive()) continue;
      logWarn(kLog, "worker {} (pid {}) did not re-attach; starting a new one", slot, pid);
      pool_.spawnSlot(slot);
    }
  });
}

std::map<int, pid_t> Adoption::readOrphans() {
  std::map<int, pid_t> out;
  auto text = readFile(workersFile());
  if (!text) return out;
  // Written by our predecessor, but a file on disk: a damaged one is ignored, entry by
  // entry, and never stops the start.
  ParsedJson parsed = parseJson(*text);
  const json& j = parsed.value;
  if (!parsed.ok() || !j.is_object() || !j.contains("workers") || !j["workers"].is_array()) {
    logWarn(kLog, "{} is not a workers file; ignored", workersFile());
    return out;
  }
  pool_.raiseGeneration(field<int>(j, "generation").value_or(1));
  for (const auto& w : j["workers"]) {
    int slot = field<int>(w, "slot").value_or(-1);
    pid_t pid = field<int>(w, "pid").value_or(0);
    auto start_ticks = field<uint64_t>(w, "start_ticks");
    auto ps = pid > 0 && start_ticks ? readProcStats(pid) : std::nullopt;
    // The start time tells the worker from a process that reused its pid; a zombie has
    // exited already (an idle orphan leaves at once).
    if (ps && ps->state != 'Z' && ps->state != 'X' && ps->start_ticks == *start_ticks && slot >= 0 &&
        slot < pool_.size())
      out[slot] = pid;
  }
  return out;
}

json Adoption::adopt(const AdoptRequest& req, int sock, std::vector<UniqueFd>& pass) {
  auto refuse = [](const std::string& why) { return json{{"ok", false}, {"error", why}}; };
  ucred cred{};
  socklen_t len = sizeof cred;
  if (::getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return refuse("SO_PEERCRED: " + errnoText(errno));
  pid_t pid = req.pid;
  int slot = req.slot;
  if (cred.pid != pid) return refuse("the pid does not match the peer's");
  if (cred.uid != ::geteuid()) return refuse("the worker runs as another user");
  std::error_code fs_ec;
  std::string exe = std::filesystem::read_symlink(fmt::format("/proc/{}/exe", pid), fs_ec).filename().string();
  if (fs_ec || !exe.starts_with("dingo-gateway")) return refuse("the peer is not a dingo-gateway");
  if (pool_.stopping()) return refuse("the supervisor is stopping");
  bool known = false;
  pool_.forEach([&](Worker& w) { known = known || w.pid == pid; });
  if (known) return refuse("this worker is attached already");

  int sv[2], hv[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) return refuse("socketpair: " + errnoText(errno));
  UniqueFd ipc_ours(sv[0]), ipc_theirs(sv[1]);
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, hv) != 0) return refuse("socketpair: " + errnoText(errno));
  UniqueFd hub_ours(hv[0]), hub_theirs(hv[1]);
  UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  if (!pidfd) return refuse("pidfd_open: " + errnoText(errno));

  std::string why_not;
  if (slot < 0 || slot >= pool_.size()) why_not = fmt::format("there is no slot {}", slot);
  else if (req.config_digest != config_.digest) why_not = "it read another configuration";
  else if (pool_.slotTaken(slot)) why_not = "its slot has a new worker already";
  else if (pool_.reloading()) why_not = "a reload is under way";
  if (why_not.empty()) awaiting_.erase(slot);

  ++adopted_total_;
  pool_.adopt(slot, why_not, pid, std::move(ipc_ours), std::move(hub_ours), std::move(pidfd),
              req.generation.value_or(pool_.generation()), req.connections);
  pass.push_back(std::move(ipc_theirs));
  pass.push_back(std::move(hub_theirs));
  return json{{"ok", true}, {"worker", slot}, {"kept", why_not.empty()}};
}

}  // namespace dingo
