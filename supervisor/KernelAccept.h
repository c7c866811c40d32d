#pragma once
// The kernel accept mode, running: gives each worker its slot's SO_REUSEPORT socket of
// every kernel-mode listener (an IPC Listen message, at its hello), and keeps
// KernelDispatch's view of the slots current (on every worker state change and every
// kTick, or sooner when a slot's grace ends), so the CBPF program leaves out suspect
// and long-dead slots and the Acceptor accepts only from the slots that fall back.
//
// It holds no sockets and calls no part: the Acceptor's groups come in at construction;
// the workers' states, the send and "the fallback changed" are callbacks (Supervisor).
#include <functional>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string_view>
#include <vector>

#include "core/Config.h"
#include "core/Ipc.h"
#include "supervisor/Acceptor.h"
#include "supervisor/KernelDispatch.h"
#include "supervisor/TimeSource.h"
#include "supervisor/Worker.h"

namespace dingo {

class KernelAccept {
 public:
  static constexpr auto kTick = std::chrono::milliseconds(100);

  struct Hooks {
    // Every slot's state now, in slot order.
    std::function<std::vector<KernelDispatch::Slot>()> slots;
    // Sends the Listen message with `fd` to a worker: 0 or an errno value.
    std::function<int(const Worker& w, std::string_view payload, int fd)> send;
    // Which slots fall back changed: the Acceptor re-reads it (resume()).
    std::function<void()> fallbackChanged;
  };

  KernelAccept(TimeSource& time, DispatchPolicy policy, size_t slots, Duration grace,
               std::vector<Acceptor::Group> groups, Hooks hooks);
  ~KernelAccept();

  // What KernelDispatch sees of a slot's current worker.
  static KernelDispatch::Slot slotOf(const Worker& w);
  // Whether the supervisor accepts from slot `slot`'s sockets.
  bool fallback(size_t slot) const { return dispatch_.fallback(slot); }
  // Gives a worker its slot's sockets (at its hello).
  void give(const Worker& w);
  // Re-reads the slots' states now (and re-arms the tick).
  void update();
  void stop();
  // {"mode":"kernel","slots_in_program":[...],"slots_fallback":[...],"programs_attached":N}
  nlohmann::json stats() const;

 private:
  TimeSource& time_;
  KernelDispatch dispatch_;
  std::vector<Acceptor::Group> groups_;
  Hooks hooks_;
  std::unique_ptr<Timer> timer_;
  bool stopped_ = false;
};

}  // namespace dingo
