#pragma once

// Reconnect backoff of libdingo-nsclient: exponential, full jitter, reset only after a
// stable connection, the server's reconnect hint obeyed. docs/nsclient-reconnect.md has
// the reasoning and the storm simulation (bench/reconnect_sim.cpp) that chose the numbers.
//
// The class holds no clock: the caller measures how long a connection stayed up and
// passes it in, and randomness comes from a seed, so tests never sleep.

#include <chrono>
#include <cstdint>
#include <random>

namespace dingo::ns {

struct BackoffPolicy {
  // The ceiling of the first retry after a failed attempt; gRPC's INITIAL_BACKOFF.
  std::chrono::milliseconds initial{1000};
  // Each failed attempt multiplies the ceiling by this; gRPC's MULTIPLIER.
  double multiplier = 1.6;
  // The ceiling never grows past this; gRPC's MAX_BACKOFF.
  std::chrono::milliseconds max{120000};
  // A connection up this long resets the backoff.
  std::chrono::milliseconds stable{30000};
  // After an established connection drops, the first retry is drawn over
  // [0, max(ceiling, dropSpread)], not over [0, initial]. A gateway restart drops every
  // client at the same instant, so this one draw decides the shape of the storm: with
  // 1 s, 10,000 clients would come back within one second, against a gateway that
  // completes a few thousand TLS handshakes a second (bench/RESULTS.md: 1,100 to 3,400
  // on 2 vCPUs). The window must be at least clients / capacity (10,000 / 2,000/s = 5 s)
  // with headroom for random bunching and for the clients that hit the outage: 8 s keeps
  // the arrival rate near 60% of that capacity (bench/reconnect_sim). The cost is a lone
  // client's: 4 s on average after a drop. Only this draw is widened: the ceiling then
  // grows as after any attempt. A deployment with fewer clients per gateway can lower it;
  // 0 gives [0, ceiling] like any failed attempt.
  std::chrono::milliseconds dropSpread{8000};
};

// Throws std::invalid_argument unless initial > 0, multiplier is finite and >= 1,
// max >= initial, stable >= 0 and 0 <= dropSpread <= max.
void validate(const BackoffPolicy& policy);

// 64 bits from std::random_device, the default seed of a Backoff.
uint64_t randomSeed();

class Backoff {
 public:
  explicit Backoff(BackoffPolicy policy = {}, uint64_t seed = randomSeed());

  // After a failed attempt: a delay drawn uniformly over [0, ceiling()] (full jitter, no
  // floor), then the ceiling grows by the multiplier, capped at max.
  std::chrono::milliseconds nextDelay();

  // An established connection dropped after `uptime` with no hint. Resets first if
  // uptime >= stable; then the delay is drawn uniformly over [0, max(ceiling(),
  // dropSpread)] (jittered too, no floor), and the ceiling grows as after nextDelay().
  std::chrono::milliseconds afterDrop(std::chrono::milliseconds uptime);

  // The server's {"event":"reconnect","after_ms":N} before a planned close. Returns N
  // clamped to [0, max], unjittered: the server already jittered N per client, and it
  // sees every client, so its spread is the one to keep. The ceiling is left as it is
  // (a failed attempt after the hinted one backs off from there), except that a
  // connection that was up for `uptime` >= stable resets first, as in afterDrop. Without
  // an uptime the hint never resets: only a stable connection does.
  std::chrono::milliseconds afterHint(std::chrono::milliseconds after_ms,
                                      std::chrono::milliseconds uptime = std::chrono::milliseconds{0});

  // Back to the first ceiling (initial) and no attempts.
  void reset();

  // Delays handed out by nextDelay() and afterDrop() since the last reset.
  int attempts() const { return attempts_; }
  // The ceiling the next nextDelay() draws under, rounded to a millisecond.
  std::chrono::milliseconds ceiling() const;
  const BackoffPolicy& policy() const { return policy_; }

 private:
  void resetIfStable(std::chrono::milliseconds uptime);
  // Uniform over [0, window], counts an attempt, grows the ceiling.
  std::chrono::milliseconds drawUnder(std::chrono::milliseconds window);

  BackoffPolicy policy_;
  std::mt19937_64 rng_;
  double ceiling_ms_;  // kept unrounded so that 1.6^n does not drift
  int attempts_ = 0;
};

}  // namespace dingo::ns
