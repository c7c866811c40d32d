#include "supervisor/Disconnects.h"

#include <nlohmann/json.hpp>

#include "core/Log.h"

namespace dingo {

namespace {
constexpr const char* kLog = "supervisor";
}

void Disconnects::start(const std::string& user, const std::string& reason, Reply reply) {
  uint64_t id = next_id_++;
  Pending& p = pending_[id];
  p.reply = std::move(reply);
  p.waiting = ask_(nlohmann::json{{"id", id}, {"user", user}, {"reason", reason}}.dump());
  p.asked = static_cast<int>(p.waiting.size());
  logInfo(kLog, "disconnect user {}{}: asked {} workers", user, reason.empty() ? "" : " (" + reason + ")", p.asked);
  p.timer = time_.makeTimer();
  p.timer->start(kWait, [this, id] { finish(id); });
  if (p.waiting.empty()) finish(id);
}

void Disconnects::answer(uint64_t id, pid_t pid, uint64_t closed) {
  auto it = pending_.find(id);
  if (it == pending_.end()) return;  // answered already (timed out)
  Pending& p = it->second;
  if (std::erase(p.waiting, pid) == 0) return;
  p.closed += closed;
  if (p.waiting.empty()) finish(id);
}

void Disconnects::finish(uint64_t id) {
  auto it = pending_.find(id);
  if (it == pending_.end()) return;
  Pending p = std::move(it->second);
  pending_.erase(it);
  p.timer->cancel();
  int answered = p.asked - static_cast<int>(p.waiting.size());
  nlohmann::json reply = {{"ok", true}, {"closed", p.closed}, {"workers", answered}};
  if (!p.waiting.empty()) reply["unanswered"] = p.waiting.size();
  p.reply(reply);
}

}  // namespace dingo
