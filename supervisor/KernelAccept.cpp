#include "supervisor/KernelAccept.h"

#include <nlohmann/json.hpp>

#include "core/Log.h"

namespace dingo {

namespace {
constexpr const char* kLog = "supervisor";
}

KernelAccept::KernelAccept(TimeSource& time, DispatchPolicy policy, size_t slots, Duration grace,
                           std::vector<Acceptor::Group> groups, Hooks hooks)
    : time_(time),
      dispatch_(policy, slots, grace, time.now()),
      groups_(std::move(groups)),
      hooks_(std::move(hooks)),
      timer_(time.makeTimer()) {
  for (const auto& g : groups_) dispatch_.addGroup(g.family, g.fds);
}

KernelAccept::~KernelAccept() = default;

KernelDispatch::Slot KernelAccept::slotOf(const Worker& w) {
  switch (w.state) {
    case WorkerState::Ready: return KernelDispatch::Slot::Serving;
    case WorkerState::Suspect: return KernelDispatch::Slot::Suspect;
    case WorkerState::Starting: return KernelDispatch::Slot::Starting;
    default: return KernelDispatch::Slot::Down;  // exited, or draining out of the slot
  }
}

void KernelAccept::give(const Worker& w) {
  if (stopped_ || !w.connected() || w.slot < 0) return;
  int slot = w.slot;
  for (const auto& g : groups_) {
    if (static_cast<size_t>(slot) >= g.fds.size()) continue;
    ipc::ListenInfo info;
    info.listener = g.listener;
    info.tls = g.tls ? 1 : 0;
    int err = hooks_.send(w, ipc::asBytes(info), g.fds[static_cast<size_t>(slot)]);
    if (err != 0) logWarn(kLog, "giving worker {} its socket of listener {}: {}", slot, g.listener, errnoText(err));
  }
}

void KernelAccept::update() {
  if (stopped_) return;
  auto now = time_.now();
  if (dispatch_.update(hooks_.slots(), now)) hooks_.fallbackChanged();
  auto next = std::min(dispatch_.nextDeadline(), now + kTick);
  timer_->start(std::max(next - now, SteadyDuration::zero()), [this] { update(); });
}

void KernelAccept::stop() {
  stopped_ = true;
  timer_->cancel();
}

nlohmann::json KernelAccept::stats() const {
  nlohmann::json in = nlohmann::json::array(), fallback = nlohmann::json::array();
  for (size_t s = 0; s < dispatch_.inProgram().size(); ++s) {
    if (dispatch_.inProgram()[s]) in.push_back(s);
    if (dispatch_.fallback(s)) fallback.push_back(s);
  }
  return {{"mode", "kernel"},
          {"slots_in_program", in},
          {"slots_fallback", fallback},
          {"programs_attached", dispatch_.programsAttached()}};
}

}  // namespace dingo
