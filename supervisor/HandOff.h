#pragma once
// Hands accepted sockets to workers. For each socket it asks the Dispatcher for up to
// kCandidates eligible worker slots and sends the socket to the first that takes it (one
// sendmsg with SCM_RIGHTS and a HandoffInfo header); our copy is closed either way. A
// full queue (EAGAIN) moves on to the next candidate at once: the supervisor never
// blocks. When every candidate is full, or none is ready but one is coming, the socket
// is parked (ParkingQueue) and retried every kParkedRetry; whoever accepts should wait
// while parked() says so, and is told by `resume` when the queue is empty again. A
// socket nobody can take is closed and counted (dropped).
//
// It knows the workers only through HandOff::Workers, which Supervisor wires to the
// pool, so any source of accepted sockets (the listeners' accept loop, a per-slot
// listening socket whose worker is away) can feed offer().
#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <vector>

#include "core/Config.h"
#include "core/Ipc.h"
#include "supervisor/Dispatcher.h"
#include "supervisor/ParkingQueue.h"
#include "supervisor/TimeSource.h"

namespace dingo {

class HandOff {
 public:
  // What the hand-off needs of the worker slots.
  class Workers {
   public:
    virtual ~Workers() = default;
    // One view per slot (eligible to take a socket now, its load), index = slot.
    virtual void views(std::vector<SlotView>& out) = 0;
    // Sends the socket to the slot's worker: 0, or an errno value (EAGAIN: queue full).
    virtual int send(int slot, const ipc::HandoffInfo& info, int fd) = 0;
    // No worker can take a socket, but one is coming (starting, or expected to
    // re-attach): park rather than drop.
    virtual bool coming() const = 0;
  };

  static constexpr size_t kCandidates = 3;
  static constexpr auto kParkedRetry = std::chrono::milliseconds(2);

  // `gateway` is the running configuration (handshake_timeout bounds the parking).
  HandOff(TimeSource& time, Workers& workers, std::unique_ptr<Dispatcher> dispatcher, const GatewayConfig& gateway,
          std::function<void()> resume, size_t max_parked = ParkingQueue::kMaxParked);

  // Gives the accepted socket to a worker, parks it, or closes it.
  void offer(UniqueFd client, const SockAddr& peer, uint16_t listener, bool tls);
  // Sockets are parked: accept no more until `resume`.
  bool parked() const { return !parking_.empty(); }
  // A reload may change the dispatch policy.
  void setDispatcher(std::unique_ptr<Dispatcher> dispatcher) { dispatcher_ = std::move(dispatcher); }
  // Stopping: parked sockets wait no longer (the draining workers take what they can).
  void stop() { stopping_ = true; }

  // {"handed","retries","dropped","waited" (ever parked),"waiting" (parked now)}
  nlohmann::json stats() const;
  uint64_t dropped() const { return dropped_; }

  // The header sent with a client socket.
  static ipc::HandoffInfo info(const SockAddr& peer, uint16_t listener, bool tls);

 private:
  enum class Result { Sent, Busy, NoWorker };
  Result tryWorkers(const SockAddr& peer, const ipc::HandoffInfo& info, int fd);
  void retryParked();
  void drop(const SockAddr& peer);

  TimeSource& time_;
  Workers& workers_;
  std::unique_ptr<Dispatcher> dispatcher_;
  const GatewayConfig& gateway_;
  std::function<void()> resume_;
  ParkingQueue parking_;
  std::unique_ptr<Timer> retry_timer_;
  std::vector<SlotView> views_;
  std::vector<int> candidates_;
  bool stopping_ = false;
  uint64_t handed_ = 0, retries_ = 0, dropped_ = 0;
};

}  // namespace dingo
