#include "supervisor/ParkingQueue.h"

namespace dingo {

bool ParkingQueue::push(ParkedSocket& p) {
  if (queue_.size() >= capacity_) return false;
  queue_.push_back(std::move(p));
  ++total_;
  return true;
}

}  // namespace dingo
