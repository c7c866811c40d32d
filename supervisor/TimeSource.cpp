#include "supervisor/TimeSource.h"

#include "core/Asio.h"

namespace dingo {

namespace {

class AsioTimer final : public Timer {
 public:
  explicit AsioTimer(asio::io_context& io) : timer_(io) {}

  void start(SteadyDuration after, std::function<void()> fire) override {
    uint64_t mine = ++*armed_;
    pending_ = true;
    fire_ = std::move(fire);
    timer_.expires_after(after);
    // The sequence number tells a current call from one cancelled, restarted or outlived
    // (Asio passes success to a handler already queued when cancel() comes).
    timer_.async_wait([this, mine, armed = std::weak_ptr<uint64_t>(armed_)](boost::system::error_code) {
      auto still = armed.lock();
      if (!still || *still != mine) return;
      pending_ = false;
      auto call = std::move(fire_);
      fire_ = nullptr;
      call();  // may restart or destroy this timer: nothing of it is touched afterwards
    });
  }

  void cancel() override {
    ++*armed_;
    pending_ = false;
    fire_ = nullptr;
    timer_.cancel();
  }

  bool pending() const override { return pending_; }

 private:
  asio::steady_timer timer_;
  std::shared_ptr<uint64_t> armed_ = std::make_shared<uint64_t>(0);
  std::function<void()> fire_;
  bool pending_ = false;
};

}  // namespace

std::unique_ptr<Timer> AsioTimeSource::makeTimer() { return std::make_unique<AsioTimer>(io_); }

}  // namespace dingo
