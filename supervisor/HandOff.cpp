#include "supervisor/HandOff.h"

#include <nlohmann/json.hpp>

#include "core/Log.h"

namespace dingo {

namespace {
constexpr const char* kLog = "supervisor";
}

HandOff::HandOff(TimeSource& time, Workers& workers, std::unique_ptr<Dispatcher> dispatcher,
                 const GatewayConfig& gateway, std::function<void()> resume, size_t max_parked)
    : time_(time),
      workers_(workers),
      dispatcher_(std::move(dispatcher)),
      gateway_(gateway),
      resume_(std::move(resume)),
      parking_(max_parked),
      retry_timer_(time.makeTimer()) {}

ipc::HandoffInfo HandOff::info(const SockAddr& peer, uint16_t listener, bool tls) {
  ipc::HandoffInfo info;
  info.listener = listener;
  info.tls = tls ? 1 : 0;
  info.peer_len = peer.len;
  info.peer = peer.storage;
  info.accepted_unix_ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count();
  return info;
}

void HandOff::offer(UniqueFd client, const SockAddr& peer, uint16_t listener, bool tls) {
  Result r = tryWorkers(peer, info(peer, listener, tls), client.get());
  if (r == Result::Sent) return;
  if (r == Result::Busy) {
    bool first = parking_.empty();
    ParkedSocket p{std::move(client), peer, listener, tls, time_.now()};
    if (parking_.push(p)) {
      if (first) retry_timer_->start(kParkedRetry, [this] { retryParked(); });
      return;
    }
  }
  drop(peer);
}

// Offers the socket to the dispatcher's candidates in order.
HandOff::Result HandOff::tryWorkers(const SockAddr& peer, const ipc::HandoffInfo& info, int fd) {
  workers_.views(views_);
  candidates_.clear();
  dispatcher_->order(peer.ipBytes(), views_, kCandidates, candidates_);
  // No worker ready yet, but one coming (start-up, respawn, adoption): wait for it.
  bool busy = candidates_.empty() && workers_.coming();
  for (int slot : candidates_) {
    int err = workers_.send(slot, info, fd);
    if (err == 0) {
      ++handed_;
      return Result::Sent;
    }
    ++retries_;
    if (err == EAGAIN) busy = true;
    else logWarn(kLog, "hand-off to worker {}: {}", slot, errnoText(err));
  }
  return busy ? Result::Busy : Result::NoWorker;
}

// Parked sockets go out in order as soon as a worker's queue has room; accepting
// resumes when none is left.
void HandOff::retryParked() {
  while (!parking_.empty()) {
    ParkedSocket& p = parking_.front();
    Result r = tryWorkers(p.peer, info(p.peer, p.listener, p.tls), p.fd.get());
    // Waiting is bounded: past the handshake deadline the client has given up anyway.
    if (r == Result::Busy && !stopping_ && ParkingQueue::mayWait(p, time_.now(), gateway_.handshake_timeout)) {
      retry_timer_->start(kParkedRetry, [this] { retryParked(); });
      return;
    }
    if (r != Result::Sent) drop(p.peer);
    parking_.pop();
  }
  resume_();
}

void HandOff::drop(const SockAddr& peer) {
  ++dropped_;
  if (dropped_ == 1 || dropped_ % 1000 == 0)
    logError(kLog, "no worker could take a connection from {}; closed it ({} so far)", peer.toString(), dropped_);
}

nlohmann::json HandOff::stats() const {
  return {{"handed", handed_},
          {"retries", retries_},
          {"dropped", dropped_},
          {"waited", parking_.total()},
          {"waiting", parking_.size()}};
}

}  // namespace dingo
