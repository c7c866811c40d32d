#pragma once
// Time for the supervisor's parts: the monotonic clock and one-shot timers. Each part
// takes a TimeSource& instead of reading steady_clock or owning an Asio timer, so that
// unit tests move a fake clock (tests/unit/supervisor/FakeTime.h) instead of sleeping.
// AsioTimeSource is the real one, on the supervisor's io_context.
#include <chrono>
#include <functional>
#include <memory>

namespace boost::asio {
class io_context;
}

namespace dingo {

using SteadyTime = std::chrono::steady_clock::time_point;
using SteadyDuration = std::chrono::steady_clock::duration;

// A one-shot timer. Starting it again replaces the pending call; cancel() and the
// destructor guarantee that `fire` is not called afterwards (even when the deadline had
// already passed and the call was queued).
class Timer {
 public:
  virtual ~Timer() = default;
  virtual void start(SteadyDuration after, std::function<void()> fire) = 0;
  virtual void cancel() = 0;
  virtual bool pending() const = 0;
};

class TimeSource {
 public:
  virtual ~TimeSource() = default;
  virtual SteadyTime now() const = 0;
  virtual std::unique_ptr<Timer> makeTimer() = 0;
};

class AsioTimeSource final : public TimeSource {
 public:
  explicit AsioTimeSource(boost::asio::io_context& io) : io_(io) {}
  SteadyTime now() const override { return std::chrono::steady_clock::now(); }
  std::unique_ptr<Timer> makeTimer() override;

 private:
  boost::asio::io_context& io_;
};

}  // namespace dingo
