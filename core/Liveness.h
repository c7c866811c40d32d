#pragma once
// Whether an object is still there, for a callback that may run after it is gone (a
// broker's answer, a write's completion) and must not own it. The object holds a
// Liveness; the callback captures watch() and returns at once when it has expired().
// Single-threaded, like everything a gateway process shares (gateway/Context.h).
#include <memory>

namespace dingo {

class Liveness {
 public:
  using Watch = std::weak_ptr<const char>;

  Liveness() = default;
  // A copy is another object: it gets a token of its own.
  Liveness(const Liveness&) : Liveness() {}
  Liveness& operator=(const Liveness&) { return *this; }

  Watch watch() const { return token_; }

 private:
  std::shared_ptr<const char> token_ = std::make_shared<const char>(0);
};

}  // namespace dingo
