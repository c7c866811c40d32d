#include "dingo/nsclient/Backoff.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace dingo::ns {

using std::chrono::milliseconds;

void validate(const BackoffPolicy& policy) {
  auto fail = [](const std::string& what) { throw std::invalid_argument("backoff policy: " + what); };
  if (policy.initial <= milliseconds{0}) fail("initial must be > 0");
  if (!std::isfinite(policy.multiplier) || policy.multiplier < 1.0) fail("multiplier must be finite and >= 1");
  if (policy.max < policy.initial) fail("max must be >= initial");
  if (policy.stable < milliseconds{0}) fail("stable must be >= 0");
  if (policy.dropSpread < milliseconds{0} || policy.dropSpread > policy.max)
    fail("dropSpread must be in [0, max]");
}

uint64_t randomSeed() {
  std::random_device device;
  return (static_cast<uint64_t>(device()) << 32) ^ device();
}

Backoff::Backoff(BackoffPolicy policy, uint64_t seed) : policy_(policy), rng_(seed) {
  validate(policy_);
  ceiling_ms_ = static_cast<double>(policy_.initial.count());
}

milliseconds Backoff::ceiling() const { return milliseconds{std::llround(ceiling_ms_)}; }

milliseconds Backoff::nextDelay() { return drawUnder(ceiling()); }

milliseconds Backoff::afterDrop(milliseconds uptime) {
  resetIfStable(uptime);
  // Only this one draw is widened; the ceiling then grows as after any attempt, so the
  // clients whose first retry fails come back on the ordinary sequence (1.6 s, 2.56 s ...
  // after a reset) and those retries are already spread by the first draw.
  return drawUnder(std::max(ceiling(), policy_.dropSpread));
}

milliseconds Backoff::drawUnder(milliseconds window) {
  std::uniform_int_distribution<int64_t> draw(0, window.count());
  milliseconds delay{draw(rng_)};
  ++attempts_;
  ceiling_ms_ = std::min(ceiling_ms_ * policy_.multiplier, static_cast<double>(policy_.max.count()));
  return delay;
}

milliseconds Backoff::afterHint(milliseconds after_ms, milliseconds uptime) {
  resetIfStable(uptime);
  return std::clamp(after_ms, milliseconds{0}, policy_.max);
}

void Backoff::reset() {
  ceiling_ms_ = static_cast<double>(policy_.initial.count());
  attempts_ = 0;
}

void Backoff::resetIfStable(milliseconds uptime) {
  if (uptime >= policy_.stable) reset();
}

}  // namespace dingo::ns
