// reconnect_sim: a deterministic discrete-event simulation of a reconnect storm.
//
//   reconnect_sim [--clients N] [--down S] [--capacity C] [--seed X]
//                 [--overload refuse|timeout] [--connect-timeout S] [--drop-spread MS]
//                 [--series FILE]
//
// N clients (10,000) hold connections to one gateway that restarts at t = 0. Every client
// sees its connection drop at t = 0 (a restart resets every socket at once, and no hint
// is sent: this is the crash case). The gateway is down for S seconds (without --down:
// 0.5, 2 and 10, one table each): an attempt then is refused at once. After that it
// accepts at most C new connections per second, C/10 in each 100 ms slice, first come
// first served; an attempt over that fails. With --overload refuse (the default) it
// fails at once, as when the gateway sheds excess handshakes with a reset or a 503;
// with --overload timeout it fails after the client's connect timeout, as when SYNs or
// handshakes are dropped. Every attempt counts, failed or not. A connected client stays
// connected. Nothing else is modelled: no network latency, no handshake time, no SYN
// retransmits, no listeners held by dingo-watchdog while the gateway is down.
//
// Each client follows one policy:
//   ours       dingo::ns::Backoff (nsclient/Backoff.cpp, the real code): afterDrop() for
//              the first retry, nextDelay() after each failure, counted from the failure.
//   socket.io  socket.io-client's Manager with its defaults: on close it waits
//              backoff.duration() (Backo2: min 1 s, factor 2, jitter 0.5, max 5 s) and
//              retries; after each failed attempt again, counted from the failure.
//              Backo2 draws one random r: deviation = floor(r * 0.5 * ms), subtracted when
//              floor(r * 10) is even, else added; the result is capped at 5 s after the
//              jitter, so from the fourth retry on every client waits exactly 5 s.
//              Connect timeout 20 s (its `timeout` option).
//   gRPC       doc/connection-backoff.md: the first attempt at once, then attempt k+1
//              starts at max(deadline_k, end of attempt k), where deadline_1 = start_1 +
//              1 s and deadline_k+1 = start_k+1 + b * (1 + U(-0.2, 0.2)), b = 1 s * 1.6^k
//              capped at 120 s. An attempt may take max(deadline, now + 20 s)
//              (MIN_CONNECT_TIMEOUT).
//
// Reported per policy: total attempts; peak attempts/s in 1 s buckets and in 100 ms
// buckets (times 10), over the whole run; mean attempts/s over [0, t99] (the attempts
// made up to t99 divided by t99); peak-to-mean (1 s peak over that mean); t99 and t100,
// the times by which 99% and all clients are connected again; peak-to-mean while up (the
// same ratio over the whole seconds from the end of the outage to t99: the attempts that
// reach a listening gateway); and the mean first retry after a drop, what the policy
// costs one client whose connection drops alone. With --series, FILE receives the time
// series behind those figures as JSON (bench/charts.py draws it): per outage and policy,
// attempts and connections in each 100 ms bucket.
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <queue>
#include <string>
#include <vector>

#include "dingo/nsclient/Backoff.h"

namespace {

using Ms = int64_t;  // simulated time in milliseconds

enum class Overload { Refuse, Timeout };

struct Options {
  int clients = 10'000;
  std::vector<double> down_s = {0.5, 2.0, 10.0};
  int capacity = 2'000;  // new connections per second the gateway completes
  uint64_t seed = 1;
  Overload overload = Overload::Refuse;
  Ms connect_timeout = 20'000;  // ours, in timeout mode (socket.io and gRPC use their own 20 s)
  Ms drop_spread = dingo::ns::BackoffPolicy{}.dropSpread.count();
  std::string series_file;  // --series: where the per-100 ms time series go, as JSON
};

// splitmix64: one small independent stream per client, derived from the run's seed.
struct SplitMix {
  uint64_t state;
  uint64_t next() {
    uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }  // [0, 1)
};


// One client's reconnect behaviour. Times are absolute simulated milliseconds.
class Client {
 public:
  virtual ~Client() = default;
  // The connection dropped at `now`: when is the first attempt?
  virtual Ms firstAttempt(Ms now) = 0;
  // An attempt starting at `start` that is not answered: when does the client give up?
  virtual Ms giveUpAt(Ms start) = 0;
  // The attempt that started at `start` failed at `failed_at`: when is the next one?
  virtual Ms nextAttempt(Ms start, Ms failed_at) = 0;
};

class OursClient final : public Client {
 public:
  OursClient(const dingo::ns::BackoffPolicy& policy, uint64_t seed, Ms connect_timeout)
      : backoff_(policy, seed), connect_timeout_(connect_timeout) {}
  Ms firstAttempt(Ms now) override {
    // The connection had been up for an hour: a stable one, so the backoff resets.
    return now + backoff_.afterDrop(std::chrono::hours{1}).count();
  }
  Ms giveUpAt(Ms start) override { return start + connect_timeout_; }
  Ms nextAttempt(Ms, Ms failed_at) override { return failed_at + backoff_.nextDelay().count(); }

 private:
  dingo::ns::Backoff backoff_;
  Ms connect_timeout_;
};

// socket.io-client Manager + Backo2, defaults: reconnectionDelay 1000, reconnectionDelayMax
// 5000, randomizationFactor 0.5, factor 2, timeout 20000.
class SocketIoClient final : public Client {
 public:
  explicit SocketIoClient(uint64_t seed) : rng_{seed} {}
  Ms firstAttempt(Ms now) override { return now + duration(); }  // onclose: reset, reconnect()
  Ms giveUpAt(Ms start) override { return start + 20'000; }
  Ms nextAttempt(Ms, Ms failed_at) override { return failed_at + duration(); }

 private:
  Ms duration() {
    double ms = 1000.0 * std::pow(2.0, attempts_++);
    double r = rng_.uniform();
    double deviation = std::floor(r * 0.5 * ms);
    ms = (static_cast<int64_t>(std::floor(r * 10)) & 1) == 0 ? ms - deviation : ms + deviation;
    return static_cast<Ms>(std::min(ms, 5000.0));  // `| 0` truncates
  }
  SplitMix rng_;
  int attempts_ = 0;
};

// gRPC connection-backoff.md defaults: INITIAL_BACKOFF 1 s, MULTIPLIER 1.6, JITTER 0.2,
// MAX_BACKOFF 120 s, MIN_CONNECT_TIMEOUT 20 s.
class GrpcClient final : public Client {
 public:
  explicit GrpcClient(uint64_t seed) : rng_{seed} {}
  Ms firstAttempt(Ms now) override {
    backoff_ = 1000.0;
    deadline_ = now + 1000;  // the first deadline is not jittered
    return now;
  }
  Ms giveUpAt(Ms start) override { return std::max(deadline_, start + 20'000); }
  Ms nextAttempt(Ms, Ms failed_at) override {
    Ms start = std::max(deadline_, failed_at);  // SleepUntil(current_deadline)
    backoff_ = std::min(backoff_ * 1.6, 120'000.0);
    double jitter = (rng_.uniform() * 2.0 - 1.0) * 0.2 * backoff_;
    deadline_ = start + static_cast<Ms>(std::llround(backoff_ + jitter));
    return start;
  }

 private:
  SplitMix rng_;
  double backoff_ = 1000.0;
  Ms deadline_ = 0;
};

enum Policy { kOurs, kSocketIo, kGrpc, kPolicies };
const char* policyName(int policy) {
  static const char* names[] = {"ours (dingo::ns::Backoff)", "socket.io-client defaults", "gRPC defaults"};
  return names[policy];
}

std::vector<std::unique_ptr<Client>> makeClients(int policy, const Options& options) {
  dingo::ns::BackoffPolicy ours;
  ours.dropSpread = std::chrono::milliseconds{options.drop_spread};
  std::vector<std::unique_ptr<Client>> clients;
  clients.reserve(options.clients);
  // Client i's seed is output i of a splitmix stream keyed by (run seed, policy).
  SplitMix seeds{SplitMix{options.seed}.next() ^ static_cast<uint64_t>(policy)};
  for (int i = 0; i < options.clients; ++i) {
    uint64_t seed = seeds.next();
    if (policy == kOurs)
      clients.push_back(std::make_unique<OursClient>(ours, seed, options.connect_timeout));
    else if (policy == kSocketIo)
      clients.push_back(std::make_unique<SocketIoClient>(seed));
    else
      clients.push_back(std::make_unique<GrpcClient>(seed));
  }
  return clients;
}

struct Result {
  int64_t attempts = 0;
  int64_t peak_1s = 0;    // attempts in the busiest 1 s bucket
  int64_t peak_100ms = 0; // attempts in the busiest 100 ms bucket
  double mean_per_s = 0;  // over [0, t99]
  double up_ratio = 0;    // peak-to-mean over [down, t99], the attempts that reach a listener
  Ms t99 = 0;
  Ms t100 = 0;
  double lone_mean_ms = 0;  // mean first-retry delay: what a lone drop costs
  std::vector<int64_t> attempts_100ms;   // attempts in each 100 ms bucket from t = 0
  std::vector<int64_t> connected_100ms;  // connections completed in each 100 ms bucket
};

void countIn(std::vector<int64_t>& buckets, size_t index) {
  if (index >= buckets.size()) buckets.resize(index + 1, 0);
  ++buckets[index];
}

Result simulate(int policy, const Options& options, double down_s) {
  auto clients = makeClients(policy, options);
  const Ms down_ms = std::llround(down_s * 1000);
  const int64_t per_slice = options.capacity / 10;

  using Event = std::pair<Ms, int>;  // (time, client): ties go to the lower client id
  std::priority_queue<Event, std::vector<Event>, std::greater<>> events;
  Result result;
  for (int i = 0; i < options.clients; ++i) {
    Ms first = clients[i]->firstAttempt(0);
    result.lone_mean_ms += static_cast<double>(first) / options.clients;
    events.emplace(first, i);
  }

  std::vector<Ms> attempt_times;
  std::vector<Ms> connected_at;
  std::vector<int64_t> accepted_in_slice, buckets_1s, buckets_100ms;
  while (!events.empty()) {
    auto [t, i] = events.top();
    events.pop();
    attempt_times.push_back(t);
    countIn(buckets_1s, static_cast<size_t>(t / 1000));
    countIn(buckets_100ms, static_cast<size_t>(t / 100));
    Ms failed_at = t;  // refused: nothing listens yet
    if (t >= down_ms) {
      size_t slice = static_cast<size_t>(t / 100);
      if (slice >= accepted_in_slice.size()) accepted_in_slice.resize(slice + 1, 0);
      if (accepted_in_slice[slice] < per_slice) {
        ++accepted_in_slice[slice];
        connected_at.push_back(t);
        continue;
      }
      if (options.overload == Overload::Timeout) failed_at = clients[i]->giveUpAt(t);
    }
    events.emplace(clients[i]->nextAttempt(t, failed_at), i);
  }

  // connected_at is in time order: events pop in time order.
  result.attempts = static_cast<int64_t>(attempt_times.size());
  size_t n99 = static_cast<size_t>(std::ceil(0.99 * options.clients));
  result.t99 = connected_at[n99 - 1];
  result.t100 = connected_at.back();
  result.peak_1s = *std::max_element(buckets_1s.begin(), buckets_1s.end());
  result.peak_100ms = *std::max_element(buckets_100ms.begin(), buckets_100ms.end());
  for (Ms t : connected_at) countIn(result.connected_100ms, static_cast<size_t>(t / 100));
  result.connected_100ms.resize(buckets_100ms.size(), 0);
  result.attempts_100ms = std::move(buckets_100ms);
  int64_t until_t99 = std::upper_bound(attempt_times.begin(), attempt_times.end(), result.t99) - attempt_times.begin();
  result.mean_per_s = static_cast<double>(until_t99) / (static_cast<double>(std::max<Ms>(result.t99, 1)) / 1000.0);

  // The same over the whole 1 s buckets from the end of the outage to t99.
  size_t first = static_cast<size_t>((down_ms + 999) / 1000), last = static_cast<size_t>(result.t99 / 1000);
  if (last > first) {
    int64_t sum = 0, peak = 0;
    for (size_t b = first; b < last; ++b) sum += buckets_1s[b], peak = std::max(peak, buckets_1s[b]);
    result.up_ratio = static_cast<double>(peak) / (static_cast<double>(sum) / static_cast<double>(last - first));
  }
  return result;
}

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr,
               "reconnect_sim: %s\nusage: reconnect_sim [--clients N] [--down S] [--capacity C] [--seed X]\n"
               "                     [--overload refuse|timeout] [--connect-timeout S] [--drop-spread MS]\n"
               "                     [--series FILE]\n",
               why);
  std::exit(2);
}

double number(const char* flag, const char* text, double min, double max) {
  char* end = nullptr;
  double value = std::strtod(text, &end);
  if (end == text || *end != '\0' || !std::isfinite(value) || value < min || value > max)
    usage((std::string("bad value for ") + flag + ": " + text).c_str());
  return value;
}

Options parse(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i];
    if (flag == "--help" || flag == "-h") usage("a reconnect storm after a gateway restart");
    if (i + 1 >= argc) usage(("missing value for " + flag).c_str());
    const char* value = argv[++i];
    if (flag == "--clients") options.clients = static_cast<int>(number("--clients", value, 100, 10'000'000));
    else if (flag == "--down") options.down_s = {number("--down", value, 0, 3600)};
    else if (flag == "--capacity") options.capacity = static_cast<int>(number("--capacity", value, 10, 1e9));
    else if (flag == "--seed") options.seed = static_cast<uint64_t>(number("--seed", value, 0, 9e15));
    else if (flag == "--connect-timeout") options.connect_timeout = std::llround(number("--connect-timeout", value, 0, 3600) * 1000);
    else if (flag == "--drop-spread") options.drop_spread = std::llround(number("--drop-spread", value, 0, 3.6e6));
    else if (flag == "--series") options.series_file = value;
    else if (flag == "--overload") {
      if (std::strcmp(value, "refuse") == 0) options.overload = Overload::Refuse;
      else if (std::strcmp(value, "timeout") == 0) options.overload = Overload::Timeout;
      else usage("--overload is refuse or timeout");
    } else usage(("unknown option " + flag).c_str());
  }
  return options;
}

}  // namespace

int main(int argc, char** argv) {
  Options options = parse(argc, argv);
  try {
    dingo::ns::BackoffPolicy ours;
    ours.dropSpread = std::chrono::milliseconds{options.drop_spread};
    dingo::ns::validate(ours);
  } catch (const std::exception& e) {
    usage(e.what());
  }

  std::printf("# Reconnect storm: %d clients, gateway restart at t=0, seed %llu\n\n", options.clients,
              static_cast<unsigned long long>(options.seed));
  std::printf(
      "Model: every client's connection drops at t=0 (no reconnect hint). While the gateway is down\n"
      "an attempt is refused at once. Then it accepts %d new connections/s (%d per 100 ms slice,\n"
      "first come first served); an attempt over that %s. Every attempt counts.\n"
      "No latency, handshake time or SYN retransmits are modelled. Our connect timeout (timeout mode): %.0f s.\n"
      "Peaks are over the whole run; mean = attempts up to t99 / t99; peak-to-mean uses the 1 s peak.\n"
      "'While up' is the same ratio over the whole seconds from the end of the outage to t99.\n"
      "Our first retry after a drop is drawn over [0, %lld ms].\n\n",
      options.capacity, options.capacity / 10,
      options.overload == Overload::Refuse ? "fails at once (reset or 503)"
                                           : "fails at the client's connect timeout",
      static_cast<double>(options.connect_timeout) / 1000.0, static_cast<long long>(options.drop_spread));

  std::string series;  // JSON array of {down_s, policy, attempts_100ms, connected_100ms}
  auto jsonInts = [](const std::vector<int64_t>& v) {
    std::string out = "[";
    for (size_t i = 0; i < v.size(); ++i) out += (i ? "," : "") + std::to_string(v[i]);
    return out + "]";
  };
  for (double down_s : options.down_s) {
    std::printf("## Gateway down %.1f s, capacity %d/s, overload %s\n\n", down_s, options.capacity,
                options.overload == Overload::Refuse ? "refuse" : "timeout");
    std::printf(
        "| policy | attempts | attempts/client | peak/s (1 s) | peak/s (100 ms) | mean/s to t99 | peak-to-mean "
        "| t99 (s) | t100 (s) | peak-to-mean while up | lone drop: mean first retry (s) |\n");
    std::printf("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (int policy = 0; policy < kPolicies; ++policy) {
      Result r = simulate(policy, options, down_s);
      std::printf("| %s | %lld | %.2f | %lld | %lld | %.0f | %.2f | %.1f | %.1f | %.2f | %.2f |\n", policyName(policy),
                  static_cast<long long>(r.attempts), static_cast<double>(r.attempts) / options.clients,
                  static_cast<long long>(r.peak_1s), static_cast<long long>(r.peak_100ms * 10), r.mean_per_s,
                  static_cast<double>(r.peak_1s) / r.mean_per_s, static_cast<double>(r.t99) / 1000.0,
                  static_cast<double>(r.t100) / 1000.0, r.up_ratio, r.lone_mean_ms / 1000.0);
      char head[160];
      std::snprintf(head, sizeof head, "%s{\"down_s\":%.3f,\"policy\":\"%s\",", series.empty() ? "" : ",\n",
                    down_s, policyName(policy));
      series += std::string(head) + "\"attempts_100ms\":" + jsonInts(r.attempts_100ms) +
                ",\"connected_100ms\":" + jsonInts(r.connected_100ms) + "}";
    }
    std::printf("\n");
  }
  if (!options.series_file.empty()) {
    FILE* f = std::fopen(options.series_file.c_str(), "w");
    if (f == nullptr) {
      std::fprintf(stderr, "reconnect_sim: cannot write %s: %s\n", options.series_file.c_str(), std::strerror(errno));
      return 1;
    }
    std::fprintf(f, "{\"clients\":%d,\"capacity\":%d,\"seed\":%llu,\"overload\":\"%s\",\"bucket_ms\":100,\"runs\":[\n%s]}\n",
                 options.clients, options.capacity, static_cast<unsigned long long>(options.seed),
                 options.overload == Overload::Refuse ? "refuse" : "timeout", series.c_str());
    if (std::fclose(f) != 0) {
      std::fprintf(stderr, "reconnect_sim: cannot write %s: %s\n", options.series_file.c_str(), std::strerror(errno));
      return 1;
    }
  }
  return 0;
}
