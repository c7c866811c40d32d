#pragma once
// The kernel dispatch mode's decisions, without I/O of its own: which worker slots the
// kernel may send new connections to (the CBPF program of every listener's SO_REUSEPORT
// group), and from which slots' sockets the supervisor must accept itself and hand the
// connections off (the fallback).
//
// - A slot whose worker is ready accepts from its own sockets: in the program, no
//   fallback.
// - A slot whose worker is starting or dead stays in the program for `grace` after it
//   stopped serving: its new connections wait in its queue for the replacement, which
//   is given the same sockets (the supervisor keeps them open). Past the grace it
//   leaves the program and the supervisor accepts what is left in its queue.
// - A suspect slot leaves the program at once (no new connections) and falls back.
// - With no slot in the program (every worker suspect, or down past the grace) every
//   slot keeps its own share, and the supervisor accepts from all of them (its hand-off
//   parks connections until a worker is ready, as in the handoff mode).
#include <chrono>
#include <cstdint>
#include <vector>

#include "core/Config.h"
#include "supervisor/ReusePort.h"

namespace dingo {

class KernelDispatch {
 public:
  using Clock = std::chrono::steady_clock;
  enum class Slot { Serving, Starting, Down, Suspect };

  KernelDispatch(DispatchPolicy policy, size_t slots, Duration grace, Clock::time_point now);

  // A listener's group: `fds[s]` is slot s's socket (more than `slots` may be given:
  // the extra ones, inherited from an upgrade, are never picked and always fall back).
  void addGroup(int family, std::vector<int> fds);

  // Takes every slot's state now; re-attaches the program of each group whose set of
  // slots changed. Returns true when anything changed (the caller then re-arms the
  // sockets that fall back).
  bool update(const std::vector<Slot>& slots, Clock::time_point now);

  // True when the supervisor must accept from slot `slot`'s sockets (any slot index
  // past the worker count: an extra inherited socket).
  bool fallback(size_t slot) const { return slot >= fallback_.size() || fallback_[slot]; }
  // The slots in the program now (for status and tests).
  const std::vector<bool>& inProgram() const { return in_; }
  // The earliest moment update() must run again though nothing else changed (a grace
  // ending), or Clock::time_point::max().
  Clock::time_point nextDeadline() const { return next_; }
  uint64_t programsAttached() const { return attached_; }

 private:
  struct Group {
    int family;
    std::vector<int> fds;
    bool attached = false;
  };
  void attachAll();

  ReusePortProgram::Pick pick_;
  Duration grace_;
  std::vector<Slot> state_;
  std::vector<Clock::time_point> unserved_since_;
  std::vector<bool> in_, fallback_;
  std::vector<Group> groups_;
  Clock::time_point next_ = Clock::time_point::max();
  uint64_t attached_ = 0;
};

}  // namespace dingo
