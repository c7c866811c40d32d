#pragma once
// A TimeSource for tests: time stands still until advance() moves it, firing the timers
// that fall due on the way, in order, each at its own deadline. Timers due at the same
// moment fire in the order they were started, as a real clock would have them expire
// (not in the order of their addresses, which varies from run to run).
#include <algorithm>
#include <cstdint>
#include <set>

#include "supervisor/TimeSource.h"

namespace dingo::test {

class FakeTime final : public TimeSource {
 public:
  SteadyTime now() const override { return now_; }

  std::unique_ptr<Timer> makeTimer() override { return std::make_unique<FakeTimer>(*this); }

  void advance(SteadyDuration by) {
    SteadyTime until = now_ + by;
    for (;;) {
      FakeTimer* next = nullptr;
      for (FakeTimer* t : timers_)
        if (t->pending_ && t->at_ <= until &&
            (!next || t->at_ < next->at_ || (t->at_ == next->at_ && t->started_ < next->started_)))
          next = t;
      if (!next) break;
      now_ = std::max(now_, next->at_);
      next->pending_ = false;
      auto fire = std::move(next->fire_);
      fire();  // may restart or destroy timers
    }
    now_ = until;
  }

  size_t pendingTimers() const {
    return static_cast<size_t>(std::count_if(timers_.begin(), timers_.end(), [](auto* t) { return t->pending_; }));
  }

 private:
  class FakeTimer final : public Timer {
   public:
    explicit FakeTimer(FakeTime& time) : time_(time) { time_.timers_.insert(this); }
    ~FakeTimer() override { time_.timers_.erase(this); }
    void start(SteadyDuration after, std::function<void()> fire) override {
      at_ = time_.now_ + after;
      started_ = ++time_.starts_;
      fire_ = std::move(fire);
      pending_ = true;
    }
    void cancel() override {
      pending_ = false;
      fire_ = nullptr;
    }
    bool pending() const override { return pending_; }

    FakeTime& time_;
    SteadyTime at_{};
    uint64_t started_ = 0;  // the order of start() calls: ties at one deadline
    std::function<void()> fire_;
    bool pending_ = false;
  };

  SteadyTime now_{std::chrono::hours(1000)};
  std::set<FakeTimer*> timers_;
  uint64_t starts_ = 0;
};

}  // namespace dingo::test
