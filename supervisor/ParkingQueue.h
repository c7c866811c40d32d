#pragma once
// Accepted sockets that no worker could take yet: every candidate's hand-off queue was
// full, or no worker is ready but one is coming (start-up, respawn, adoption). They wait
// here in order, bounded in count (capacity, kMaxParked by default: one more is refused,
// and the caller closes it) and in age (mayWait: past the handshake deadline the client
// has given up anyway). HandOff retries them; accepting pauses while any is here.
#include <cstddef>
#include <cstdint>
#include <deque>

#include "core/Duration.h"
#include "core/Net.h"
#include "core/UniqueFd.h"
#include "supervisor/TimeSource.h"

namespace dingo {

struct ParkedSocket {
  UniqueFd fd;
  SockAddr peer;
  uint16_t listener = 0;
  bool tls = false;
  SteadyTime since{};
};

class ParkingQueue {
 public:
  static constexpr size_t kMaxParked = 1024;

  explicit ParkingQueue(size_t capacity = kMaxParked) : capacity_(capacity) {}

  // Takes `p` (moves it) unless the queue is full; false leaves `p` with the caller.
  bool push(ParkedSocket& p);
  ParkedSocket& front() { return queue_.front(); }
  void pop() { queue_.pop_front(); }

  bool empty() const { return queue_.empty(); }
  size_t size() const { return queue_.size(); }
  size_t capacity() const { return capacity_; }
  uint64_t total() const { return total_; }  // ever parked

  // Whether `p` may wait longer at `now`, given at most `max_wait` in the queue.
  static bool mayWait(const ParkedSocket& p, SteadyTime now, Duration max_wait) { return now - p.since < max_wait; }

 private:
  size_t capacity_;
  std::deque<ParkedSocket> queue_;
  uint64_t total_ = 0;
};

}  // namespace dingo
