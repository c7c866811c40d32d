#include "supervisor/KernelDispatch.h"

#include "core/Log.h"

namespace dingo {

namespace {
constexpr const char* kLog = "supervisor";
}

KernelDispatch::KernelDispatch(DispatchPolicy policy, size_t slots, Duration grace, Clock::time_point now)
    : pick_(policy == DispatchPolicy::IpHash ? ReusePortProgram::Pick::AddressHash : ReusePortProgram::Pick::Random),
      grace_(grace),
      state_(slots, Slot::Starting),
      unserved_since_(slots, now),
      in_(slots, true),
      fallback_(slots, false) {
  next_ = now + grace_;
}

void KernelDispatch::addGroup(int family, std::vector<int> fds) {
  groups_.push_back({family, std::move(fds)});
  attachAll();
}

bool KernelDispatch::update(const std::vector<Slot>& slots, Clock::time_point now) {
  std::vector<bool> in(state_.size(), false), fallback(state_.size(), false);
  next_ = Clock::time_point::max();
  bool any_in = false;
  for (size_t s = 0; s < state_.size(); ++s) {
    Slot st = s < slots.size() ? slots[s] : Slot::Down;
    if (st != Slot::Serving && state_[s] == Slot::Serving) unserved_since_[s] = now;
    state_[s] = st;
    bool waiting = (st == Slot::Starting || st == Slot::Down) && now - unserved_since_[s] < grace_;
    if (waiting) next_ = std::min(next_, unserved_since_[s] + grace_);
    in[s] = st == Slot::Serving || waiting;
    fallback[s] = !in[s];
    any_in = any_in || in[s];
  }
  if (!any_in) in.assign(state_.size(), true);  // every slot keeps its share; all fall back
  bool changed = in != in_ || fallback != fallback_;
  bool program_changed = in != in_;
  in_ = std::move(in);
  fallback_ = std::move(fallback);
  if (program_changed) attachAll();
  return changed;
}

void KernelDispatch::attachAll() {
  for (auto& g : groups_) {
    if (g.fds.empty()) continue;
    // Extra inherited sockets are past the slots: the program never returns them.
    ReusePortProgram program(pick_, g.family, in_);
    int err = program.attach(g.fds.front());
    if (err != 0) {
      // Without a program the kernel spreads by its own hash over every socket: workers
      // still accept theirs and the supervisor its fallback ones. Said once per group.
      if (g.attached || attached_ == 0)
        logError(kLog, "SO_ATTACH_REUSEPORT_CBPF: {}; the kernel spreads connections by its own hash", errnoText(err));
      g.attached = false;
      continue;
    }
    g.attached = true;
    ++attached_;
  }
}

}  // namespace dingo
