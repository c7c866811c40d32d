#pragma once
// An orphaned worker's way back: after its supervisor died (kill -9, a crash) the worker
// goes on serving and knocks on the control socket every kEvery with
// {"cmd":"adopt","pid":...,"worker":...,"config_digest":...}. A new supervisor that
// takes it answers {"ok":true,...} with two fds, a new IPC socket and a new hub link,
// which go to the `adopted` callback; the worker then says hello on the IPC socket as
// at start-up. {"ok":false} (another config file, slot taken, stopping) ends the
// knocking: the worker drains out by its deadline. The supervisor side is
// supervisor/Adoption.h.
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/Asio.h"
#include "core/UniqueFd.h"

namespace dingo {

struct GatewayContext;

class Reattacher {
 public:
  using Adopted = std::function<void(UniqueFd ipc, UniqueFd hub)>;

  static constexpr std::chrono::milliseconds kEvery{100};
  static constexpr std::chrono::seconds kReplyTimeout{2};

  Reattacher(asio::io_context& io, GatewayContext& ctx, Adopted adopted);

  // Knocks until adopted or refused, while ctx.orphaned and not draining.
  void start() { schedule(); }
  uint64_t reattachments() const { return reattachments_; }

 private:
  void schedule();
  void knock();
  void readReply();

  asio::io_context& io_;
  GatewayContext& ctx_;
  Adopted adopted_;
  asio::steady_timer timer_;
  asio::steady_timer reply_deadline_;
  std::unique_ptr<asio::posix::stream_descriptor> sock_;  // a knock waiting for its answer
  std::string reply_;
  std::vector<UniqueFd> fds_;
  uint64_t reattachments_ = 0;
};

}  // namespace dingo
