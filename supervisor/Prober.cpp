#include "supervisor/Prober.h"

#include <sys/socket.h>

#include <array>
#include <csignal>
#include <string_view>

#include "core/Asio.h"
#include "core/Ipc.h"
#include "core/Log.h"
#include "core/UniqueFd.h"

namespace dingo {

namespace {
constexpr const char* kLog = "supervisor";
constexpr std::string_view kRequest = "GET /healthz HTTP/1.1\r\nHost: dingo-watchdog-probe\r\nConnection: close\r\n\r\n";
}  // namespace

// One probe under way: our end of the socketpair and what came back so far.
struct Prober::Probe {
  explicit Probe(asio::io_context& io) : socket(io) {}
  asio::local::stream_protocol::socket socket;
  std::string reply;
  uint64_t seq = 0;  // tells this probe's callbacks from an older one's
};

// What the prober knows of one worker (one Worker object: across its respawns).
struct Prober::Record {
  Record(TimeSource& time) : timeout_timer(time.makeTimer()), kill_timer(time.makeTimer()) {}
  std::unique_ptr<Probe> probe;
  std::unique_ptr<Timer> timeout_timer;
  std::unique_ptr<Timer> kill_timer;
  int slot = 0;
  pid_t pid = -1;  // at the probe's start, for the logs
  SteadyTime probe_started{};
  uint64_t progress_at_probe = 0;
  // Heartbeats: its Stats, every second.
  SteadyTime last_stats_at{};
  uint64_t progress = 0;
  int failures = 0;       // consecutive real failures
  bool suspect = false;   // the verdict given
  bool killing = false;   // SIGABRT sent
  ProbeFigures figures;
};

Prober::Prober(asio::io_context& io, TimeSource& time, const WatchdogConfig& config, int worker_count,
               Workers& workers)
    : io_(io),
      time_(time),
      config_(config),
      worker_count_(worker_count),
      workers_(workers),
      interval_timer_(time.makeTimer()) {}

Prober::~Prober() = default;

Prober::Record* Prober::record(uint64_t id) {
  auto it = records_.find(id);
  return it == records_.end() ? nullptr : it->second.get();
}

void Prober::start() {
  interval_timer_->start(config_.interval, [this] {
    round();
    start();
  });
}

void Prober::stop() { interval_timer_->cancel(); }

void Prober::round() {
  for (const Target& t : workers_.current()) {
    if (!t.serving) continue;
    auto& r = records_[t.id];
    if (!r) r = std::make_unique<Record>(time_);
    if (!r->probe && !r->killing) startProbe(t);
  }
}

void Prober::workerStarted(uint64_t id) {
  Record* r = record(id);
  if (!r) return;
  r->failures = 0;
  r->killing = false;
  r->suspect = false;
  r->last_stats_at = {};
}

void Prober::workerExited(uint64_t id) {
  Record* r = record(id);
  if (!r) return;
  endProbe(*r);
  r->kill_timer->cancel();
}

void Prober::workerRemoved(uint64_t id) { records_.erase(id); }

void Prober::heartbeat(uint64_t id, uint64_t progress) {
  auto& r = records_[id];
  if (!r) r = std::make_unique<Record>(time_);
  r->last_stats_at = time_.now();
  r->progress = progress;
}

ProbeFigures Prober::figures(uint64_t id) const {
  auto it = records_.find(id);
  return it == records_.end() ? ProbeFigures{} : it->second->figures;
}

bool Prober::suspect(uint64_t id) const {
  auto it = records_.find(id);
  return it != records_.end() && it->second->suspect;
}

void Prober::startProbe(const Target& t) {
  Record& r = *records_.at(t.id);
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0) {
    logWarn(kLog, "watchdog: socketpair: {}", errnoText(errno));
    return;
  }
  UniqueFd ours(sv[0]), theirs(sv[1]);
  if (::send(ours.get(), kRequest.data(), kRequest.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(kRequest.size()))
    return;
  r.slot = t.slot;
  r.pid = t.pid;
  r.probe_started = time_.now();
  r.progress_at_probe = r.progress;
  int err = workers_.sendProbe(t.id, theirs.get());
  if (err) {
    // A full queue is a busy worker; a broken channel shows up as its exit.
    finish(t.id, err == EAGAIN ? Outcome::Busy : Outcome::Failed);
    return;
  }
  auto probe = std::make_unique<Probe>(io_);
  boost::system::error_code ec;
  probe->socket.assign(asio::local::stream_protocol(), ours.get(), ec);
  if (ec) {
    // `ours` still owns the fd and closes it; the worker sees its end close.
    logWarn(kLog, "probe of worker {}: {}", t.slot, ec.message());
    finish(t.id, Outcome::Failed);
    return;
  }
  ours.release();  // the socket owns it now
  uint64_t seq = probe->seq = next_seq_++;
  r.probe = std::move(probe);
  r.timeout_timer->start(config_.timeout, [this, id = t.id, seq] {
    Record* late = record(id);
    if (late && late->probe && late->probe->seq == seq) finish(id, Outcome::Failed);
  });
  readReply(t.id, seq);
}

void Prober::readReply(uint64_t id, uint64_t seq) {
  auto buf = std::make_shared<std::array<char, 1024>>();
  record(id)->probe->socket.async_read_some(
      asio::buffer(*buf), [this, id, seq, buf](boost::system::error_code ec, size_t n) {
        Record* r = record(id);
        if (!r || !r->probe || r->probe->seq != seq) return;
        std::string& reply = r->probe->reply;
        if (!ec && reply.size() < kMaxReply) {
          reply.append(buf->data(), n);
          readReply(id, seq);
          return;
        }
        // The worker closes after its answer (Connection: close).
        bool ok = reply.starts_with("HTTP/1.1 200") && reply.find("\r\n\r\n") != std::string::npos;
        finish(id, ok ? Outcome::Ok : Outcome::Failed);
      });
}

void Prober::endProbe(Record& r) {
  r.timeout_timer->cancel();
  if (r.probe) {
    boost::system::error_code ec;
    r.probe->socket.close(ec);
    r.probe.reset();
  }
}

void Prober::finish(uint64_t id, Outcome outcome) {
  Record& r = *records_.at(id);
  endProbe(r);
  Target t;
  for (const Target& c : workers_.current())
    if (c.id == id) t = c;
  if (outcome == Outcome::Ok) {
    r.figures.last_probe_ms = std::chrono::duration<double, std::milli>(time_.now() - r.probe_started).count();
    ++r.figures.ok;
    r.failures = 0;
    if (r.suspect) {
      r.suspect = false;
      workers_.suspect(id, false);
      if (t.serving) logInfo(kLog, "watchdog: worker {} (pid {}) answers again; no longer suspect", r.slot, r.pid);
    }
    return;
  }
  bool heartbeat = r.last_stats_at > r.probe_started && r.progress != r.progress_at_probe;
  if (outcome == Outcome::Busy || heartbeat) {
    ++r.figures.inconclusive;  // busy, not dead: its own reports still come and still move
    return;
  }
  ++r.figures.failed;
  ++r.failures;
  uint32_t limit = config_.failures;
  logWarn(kLog, "watchdog: worker {} (pid {}) failed its probe ({} of {}) and shows no progress", r.slot, r.pid,
          r.failures, limit);
  if (!t.serving) return;
  if (!r.suspect && static_cast<uint32_t>(r.failures) >= limit) {
    r.suspect = true;
    workers_.suspect(id, true);
    logError(kLog, "watchdog: worker {} (pid {}) is suspect: no new connections for it", r.slot, r.pid);
  } else if (r.suspect && static_cast<uint32_t>(r.failures) > limit) {
    kill(r, t);
  }
}

void Prober::kill(Record& r, const Target& t) {
  int killing = 0;
  for (const Target& c : workers_.current()) {
    Record* o = record(c.id);
    killing += o && o->killing && c.pid > 0;
  }
  int allowed = std::max(1, static_cast<int>(config_.max_kill_fraction * worker_count_));
  if (killing >= allowed) {
    logWarn(kLog, "watchdog: not killing worker {} yet: {} of {} workers are being killed already", t.slot,
            killing, worker_count_);
    return;
  }
  r.killing = true;
  logError(kLog, "watchdog: killing worker {} (pid {}): SIGABRT for a core, SIGKILL in {}s", t.slot, t.pid,
           kKillGrace.count());
  workers_.signal(t.id, t.pid, SIGCONT);  // a stopped process handles nothing else
  workers_.signal(t.id, t.pid, SIGABRT);
  r.kill_timer->start(kKillGrace, [this, id = t.id, pid = t.pid] { workers_.signal(id, pid, SIGKILL); });
}

}  // namespace dingo
