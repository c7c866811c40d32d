#include "supervisor/Supervisor.h"

#include <fcntl.h>
#include <grp.h>
#include <linux/close_range.h>
#include <pwd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstring>
#include <deque>
#include <filesystem>
#include <list>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "core/Asio.h"
#include "core/Ipc.h"
#include "core/Json.h"
#include "core/Log.h"
#include "core/Net.h"
#include "core/Process.h"
#include "core/Systemd.h"
#include "core/Tls.h"
#include "supervisor/AdminServer.h"
#include "supervisor/Dispatcher.h"
#include "supervisor/HubServer.h"
#include "supervisor/KernelDispatch.h"
#include "supervisor/ReusePort.h"
#include "supervisor/RedisHubServer.h"
#include "supervisor/Spawn.h"
#include "supervisor/ControlRequest.h"
#include "supervisor/Status.h"

namespace dingo {

namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;
using asio::posix::stream_descriptor;
constexpr const char* kLog = "supervisor";

enum class WorkerState { Starting, Ready, Suspect, Draining, Exited };

const char* stateName(WorkerState s) {
  switch (s) {
    case WorkerState::Starting: return "starting";
    case WorkerState::Ready: return "ready";
    case WorkerState::Suspect: return "suspect";
    case WorkerState::Draining: return "draining";
    case WorkerState::Exited: return "exited";
  }
  return "?";
}

struct Worker {
  explicit Worker(asio::io_context& io, int slot_)
      : slot(slot_), probe_timer(io), kill_timer(io), respawn_timer(io) {}

  int slot;
  int generation = 0;
  pid_t pid = -1;
  WorkerState state = WorkerState::Exited;
  std::unique_ptr<stream_descriptor> ipc;  // our end of the socketpair
  uint32_t hub_link = 0;                   // its link to the hub (0: none)
  // A reload or drain-worker starts the slot's next worker here; it takes the slot when
  // it is ready, and this one drains.
  std::unique_ptr<Worker> successor;
  bool is_successor = false;
  bool retired = false;  // replaced: draining out, never respawned
  // Adopted: it re-attached after the supervisor that started it died. Not our child,
  // so its exit comes from a pidfd instead of SIGCHLD, and signals go through it.
  bool adopted = false;
  std::unique_ptr<stream_descriptor> pidfd;

  // The internal watchdog (see Supervisor::startProbe).
  std::shared_ptr<char> life = std::make_shared<char>(0);  // probe callbacks hold a weak_ptr
  std::unique_ptr<asio::local::stream_protocol::socket> probe;  // our end, while a probe runs
  asio::steady_timer probe_timer;
  asio::steady_timer kill_timer;
  Clock::time_point probe_started{};
  std::string probe_reply;
  int probe_failures = 0;      // consecutive real failures
  double last_probe_ms = -1;   // latency of the last successful probe (-1: none yet)
  uint64_t probes_ok = 0, probes_failed = 0, probes_inconclusive = 0;
  bool killing = false;        // the watchdog sent SIGABRT
  // Heartbeats: the worker's Stats, every second.
  Clock::time_point last_stats_at{};
  uint64_t progress = 0;       // sum of its progress counters at its last report
  uint64_t progress_at_probe = 0;
  Clock::time_point started_at{};
  int restarts = 0;
  Duration backoff{0};
  asio::steady_timer respawn_timer;

  // Counters since this process started: ours and the worker's own report.
  uint64_t handed = 0;
  json stats = json::object();
  uint64_t reported_accepted = 0;
  uint64_t reported_connections = 0;
  // Rates, from the previous sample.
  double requests_per_s = 0;
  double cpu_percent = 0;
  uint64_t rss_bytes = 0;
  double cpu_seconds = 0;
  uint64_t prev_requests = 0;
  uint64_t prev_cpu_ticks = 0;
  Clock::time_point prev_sample{};

  bool alive() const { return pid > 0; }
  uint64_t loadEstimate() const {
    uint64_t in_flight = handed > reported_accepted ? handed - reported_accepted : 0;
    return reported_connections + in_flight;
  }
};

// One listening socket the supervisor may accept from: a [[listen]] address's socket
// (handoff mode), or one worker slot's SO_REUSEPORT socket (kernel mode), which the
// supervisor accepts from only while KernelDispatch says the slot falls back.
struct ListenSocket {
  static constexpr size_t kNoSlot = SIZE_MAX;
  UniqueFd fd;
  // In the event loop only while we accept from it: a slot's socket registered with epoll
  // would wake the supervisor for every connection the worker accepts.
  std::unique_ptr<stream_descriptor> socket;
  std::unique_ptr<asio::steady_timer> pause_timer;
  bool armed = false;  // an accept wait is pending
  size_t slot = kNoSlot;
};

struct Listener {
  ListenConfig config;
  SockAddr address;
  std::vector<ListenSocket> sockets;  // kernel mode: slot order
  bool kernel = false;
  uint64_t accepted = 0;
};

// An accepted socket that no worker could take yet (their queues were full).
struct Parked {
  UniqueFd fd;
  SockAddr peer;
  uint16_t listener = 0;
  bool tls = false;
  std::chrono::steady_clock::time_point since;
};

class Supervisor {
 public:
  Supervisor(const Config& config, const SupervisorOptions& options)
      : config_(config),
        options_(options),
        signals_(io_),
        stats_timer_(io_),
        ticket_timer_(io_),
        stop_timer_(io_) {
    worker_count_ = config_.supervisor.workers > 0
                        ? config_.supervisor.workers
                        : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
    gateway_path_ = config_.supervisor.gateway.empty() ? selfExeDir() + "/dingo-gateway"
                                                       : config_.supervisor.gateway;
    dispatcher_ = makeDispatcher(config_.supervisor.dispatch, static_cast<size_t>(worker_count_));
    for (int i = 0; i < worker_count_; ++i) workers_.push_back(std::make_unique<Worker>(io_, i));
    views_.resize(static_cast<size_t>(worker_count_));
  }

  int run() {
    started_ = Clock::now();
    started_wall_ = std::chrono::system_clock::now();
    if (::access(gateway_path_.c_str(), X_OK) != 0)
      throw std::runtime_error(fmt::format("gateway binary {}: {}", gateway_path_, errnoText(errno)));

    bindControlSocket();  // first: it tells whether another supervisor is running
    bindListeners();
    startAdmin();
    writePidFile(config_.supervisor.pid_file, ::getpid());
    pid_file_written_ = true;
    dropPrivileges();

    ticket_keys_.rotate(generateTicketKey());
    scheduleTicketRotation();
    if (config_.bus.engine == "redis") hub_ = std::make_unique<RedisHubServer>(io_, config_.bus, config_.history);
    else hub_ = std::make_unique<HubServer>(io_, config_.history);
    setupSignals();
    awaitOrphans();
    armAccepts();
    updateKernel();
    scheduleStats();
    scheduleWatchdog();
    scheduleSystemdWatchdog();
    logInfo(kLog, "started: {} workers, dispatch {}, accept {}, {} listener(s), control socket {}{}",
            worker_count_, dispatchName(config_.supervisor.dispatch), kernel_ ? "kernel" : "handoff", listeners_.size(),
            config_.supervisor.control_socket,
            config_.admin.address.empty() ? "" : ", admin http://" + config_.admin.address);
    if (config_.bus.engine == "local" && !config_.bus.redis.empty())
      logInfo(kLog, "[bus] redis lists {} address(es), which the local engine does not use", config_.bus.redis.size());
    io_.run();
    cleanup();
    return 0;
  }

  void cleanup() {
    // After an upgrade the pid file and the control socket's path are the successor's.
    if (pid_file_written_ && !handed_over_) ::unlink(config_.supervisor.pid_file.c_str());
    if (pid_file_written_ && !handed_over_) ::unlink(workersFile().c_str());
    if (control_ && !handed_over_) ::unlink(config_.supervisor.control_socket.c_str());
    pid_file_written_ = false;
    control_.reset();
  }

 private:
  // ---- listeners and hand-off -------------------------------------------------------

  // Binds every [[listen]] address, or adopts the socket systemd (or dingo-watchdog
  // --hold-listeners) passed for it with LISTEN_FDS, so that connections queue in
  // that socket's backlog while the supervisor restarts.
  void bindListeners() {
    std::vector<UniqueFd> inherited = systemd::takeListenFds();
    if (config_.supervisor.accept == AcceptMode::Kernel && config_.supervisor.dispatch != DispatchPolicy::LeastConn)
      kernel_ = std::make_unique<KernelDispatch>(config_.supervisor.dispatch, static_cast<size_t>(worker_count_),
                                                 config_.supervisor.slot_grace, Clock::now());
    bool any_kernel = false;
    for (const auto& lc : config_.listen) {
      Listener l;
      l.config = lc;
      l.address = *parseSockAddr(lc.address);
      // The sockets passed for this address, in the order given (an upgrade passes a
      // kernel-mode listener's slot sockets in slot order).
      std::vector<UniqueFd> passed;
      for (auto& in : inherited)
        if (in && localAddress(in.get()).toString() == l.address.toString()) passed.push_back(std::move(in));
      bool adopted = !passed.empty();
      std::vector<UniqueFd> fds;
      if (kernel_ && (passed.empty() || hasReusePort(passed.front().get()))) {
        l.kernel = true;
        fds = openReusePortSockets(l.address, lc.backlog, static_cast<size_t>(worker_count_), std::move(passed));
      } else if (adopted) {
        if (kernel_)
          logWarn(kLog, "{}: the socket passed with LISTEN_FDS has no SO_REUSEPORT; handoff accept for it",
                  lc.address);
        fds = std::move(passed);
        for (auto& fd : fds) ::fcntl(fd.get(), F_SETFL, ::fcntl(fd.get(), F_GETFL) | O_NONBLOCK);
      } else {
        fds.push_back(listenTcp(l.address, ListenOptions{lc.backlog, false}));
      }
      std::vector<int> raw;
      for (size_t i = 0; i < fds.size(); ++i) {
        ListenSocket ls;
        raw.push_back(fds[i].get());
        ls.fd = std::move(fds[i]);
        ls.pause_timer = std::make_unique<asio::steady_timer>(io_);
        if (l.kernel) ls.slot = i;
        l.sockets.push_back(std::move(ls));
      }
      if (l.kernel) kernel_->addGroup(l.address.family(), raw);
      any_kernel = any_kernel || l.kernel;
      logInfo(kLog, "listening on {} ({}{}{})", lc.address, lc.tls ? "tls" : "plain",
              l.kernel ? fmt::format(", kernel accept: {} SO_REUSEPORT sockets", l.sockets.size()) : "",
              adopted ? ", socket passed with LISTEN_FDS" : "");
      listeners_.push_back(std::move(l));
    }
    if (!any_kernel) kernel_.reset();
    for (auto& in : inherited)
      if (in) logWarn(kLog, "LISTEN_FDS passed a socket on {} that no [[listen]] names; closed it",
                      localAddress(in.get()).toString());
  }

  // sd_notify: READY once every worker of the first generation is ready; WATCHDOG=1 at
  // half of WatchdogSec from the event loop (so a stuck loop stops it); STOPPING=1.
  void notifyReadyOnce() {
    if (notified_ready_) return;
    for (const auto& w : workers_)
      if (w->state != WorkerState::Ready) return;
    notified_ready_ = true;
    systemd::notify(fmt::format("READY=1\nSTATUS=serving with {} workers\nMAINPID={}", worker_count_, ::getpid()));
    if (options_.upgrade_from > 0) {
      logInfo(kLog, "upgrade: every worker is ready; asking the old supervisor (pid {}) to drain",
              options_.upgrade_from);
      ::kill(options_.upgrade_from, SIGTERM);
    }
  }

  void scheduleSystemdWatchdog() {
    auto interval = systemd::watchdogInterval();
    if (!interval) return;
    sd_watchdog_timer_.expires_after(*interval);
    sd_watchdog_timer_.async_wait([this](boost::system::error_code ec) {
      if (ec || stopping_) return;
      systemd::notify("WATCHDOG=1");
      scheduleSystemdWatchdog();
    });
  }

  void armAccepts() {
    for (auto& l : listeners_)
      for (auto& ls : l.sockets) armAccept(l, ls);
  }

  // A slot's socket is the supervisor's to accept from only while its slot falls back.
  bool mine(const ListenSocket& ls) const {
    return ls.slot == ListenSocket::kNoSlot || !kernel_ || kernel_->fallback(ls.slot);
  }

  // Stops watching a socket we no longer accept from (its fd stays open).
  static void unwatch(ListenSocket& ls) {
    if (!ls.socket) return;
    ls.socket->release();  // out of epoll, not closed
    ls.socket.reset();
    ls.armed = false;
  }

  void armAccept(Listener& l, ListenSocket& ls) {
    if (stopping_ || !ls.fd || ls.armed) return;
    if (!mine(ls)) {
      unwatch(ls);
      return;
    }
    if (!ls.socket) ls.socket = std::make_unique<stream_descriptor>(io_, ls.fd.get());
    ls.armed = true;
    ls.socket->async_wait(stream_descriptor::wait_read, [this, &l, &ls](boost::system::error_code ec) {
      if (ec == asio::error::operation_aborted) return;  // unwatched (armed already false)
      ls.armed = false;
      if (ec || stopping_) return;
      acceptBurst(l, ls);
    });
  }

  void acceptBurst(Listener& l, ListenSocket& ls) {
    uint16_t index = static_cast<uint16_t>(&l - listeners_.data());
    // A bounded burst, then back to the event loop so other work is not starved.
    for (int i = 0; i < 512; ++i) {
      // Workers are full: leave connections in the kernel's backlog (they wait there
      // instead of being refused); retryParked() re-arms the listeners. A slot whose
      // worker is back accepts by itself.
      if (!parked_.empty()) return;
      if (!mine(ls)) {
        unwatch(ls);
        return;
      }
      SockAddr peer;
      peer.len = sizeof peer.storage;
      int fd = ::accept4(ls.fd.get(), peer.addr(), &peer.len,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        int err = errno;
        if (err == EAGAIN || err == EWOULDBLOCK) break;
        if (err == EINTR || err == ECONNABORTED || err == EPROTO) continue;
        // Out of fds or memory: pause this listener rather than spin on it.
        logError(kLog, "accept on {}: {}; pausing accepts for 100ms", l.config.address,
                 errnoText(err));
        ls.pause_timer->expires_after(std::chrono::milliseconds(100));
        ls.pause_timer->async_wait([this, &l, &ls](boost::system::error_code ec) {
          if (!ec) armAccept(l, ls);
        });
        return;
      }
      UniqueFd client(fd);
      ++l.accepted;
      handOff(std::move(client), peer, index, l.config.tls);
    }
    armAccept(l, ls);
  }

  // ---- the kernel accept mode ---------------------------------------------------------
  //
  // Each worker is given its slot's socket of every kernel-mode listener when it says
  // hello; KernelDispatch decides, from the workers' states, which slots the kernel
  // sends new connections to and which slots' queues the supervisor takes over.

  void giveSlotSockets(Worker& w) {
    if (!kernel_ || !w.ipc) return;
    for (size_t i = 0; i < listeners_.size(); ++i) {
      Listener& l = listeners_[i];
      if (!l.kernel || static_cast<size_t>(w.slot) >= l.sockets.size()) continue;
      ipc::ListenInfo info;
      info.listener = static_cast<uint16_t>(i);
      info.tls = l.config.tls ? 1 : 0;
      int err = ipc::send(w.ipc->native_handle(), ipc::MsgType::Listen, ipc::asBytes(info),
                          l.sockets[static_cast<size_t>(w.slot)].fd.get());
      if (err != 0)
        logWarn(kLog, "giving worker {} its socket on {}: {}", w.slot, l.config.address, errnoText(err));
    }
  }

  void updateKernel() {
    if (!kernel_ || stopping_) return;
    std::vector<KernelDispatch::Slot> slots;
    for (const auto& w : workers_) {
      switch (w->state) {
        case WorkerState::Ready: slots.push_back(KernelDispatch::Slot::Serving); break;
        case WorkerState::Suspect: slots.push_back(KernelDispatch::Slot::Suspect); break;
        case WorkerState::Starting: slots.push_back(KernelDispatch::Slot::Starting); break;
        default: slots.push_back(KernelDispatch::Slot::Down);
      }
    }
    if (kernel_->update(slots, Clock::now())) armAccepts();
    auto next = std::min(kernel_->nextDeadline(), Clock::now() + kKernelTick);
    kernel_timer_.expires_at(next);
    kernel_timer_.async_wait([this](boost::system::error_code ec) {
      if (!ec) updateKernel();
    });
  }

  // Sends the socket to the best worker that takes it, and closes our copy either way.
  void prepareCandidates(const SockAddr& peer) {
    for (size_t i = 0; i < workers_.size(); ++i) {
      const Worker& w = *workers_[i];
      // Stopping: sockets already accepted still go to the (draining) workers, which
      // answer them once and close, rather than being closed unanswered here.
      views_[i].eligible = (w.state == WorkerState::Ready || (stopping_ && w.state == WorkerState::Draining)) && w.ipc;
      views_[i].load = w.loadEstimate();
    }
    candidates_.clear();
    dispatcher_->order(peer.ipBytes(), views_, 3, candidates_);
  }

  static ipc::HandoffInfo handoffInfo(const SockAddr& peer, uint16_t listener, bool tls) {
    ipc::HandoffInfo info;
    info.listener = listener;
    info.tls = tls ? 1 : 0;
    info.peer_len = peer.len;
    info.peer = peer.storage;
    info.accepted_unix_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                                std::chrono::system_clock::now().time_since_epoch())
                                .count();
    return info;
  }

  void handOff(UniqueFd client, const SockAddr& peer, uint16_t listener, bool tls) {
    prepareCandidates(peer);
    ipc::HandoffInfo info = handoffInfo(peer, listener, tls);
    HandoffResult r = tryHandOff(client.get(), info);
    if (r == HandoffResult::Sent) return;
    if (r == HandoffResult::Busy && parked_.size() < kMaxParked) {
      if (parked_.empty()) scheduleRetryParked();
      parked_.push_back({std::move(client), peer, listener, tls, Clock::now()});
      ++parked_total_;
      return;
    }
    drop(peer);
  }

  enum class HandoffResult { Sent, Busy, NoWorker };

  // Offers the socket to the dispatcher's candidates in order.
  HandoffResult tryHandOff(int fd, const ipc::HandoffInfo& info) {
    // No worker ready yet, but some starting (start-up, respawn, adoption) or expected to
    // re-attach: wait for them.
    bool busy = candidates_.empty() && (!awaiting_orphans_.empty() ||
                                        std::any_of(workers_.begin(), workers_.end(), [](const auto& w) {
                                          return w->alive() && w->state == WorkerState::Starting;
                                        }));
    for (int slot : candidates_) {
      Worker& w = *workers_[static_cast<size_t>(slot)];
      int err = ipc::send(w.ipc->native_handle(), ipc::MsgType::Handoff, ipc::asBytes(info), fd);
      if (err == 0) {
        ++w.handed;
        ++handed_;
        return HandoffResult::Sent;
      }
      ++retries_;
      if (err == EAGAIN) busy = true;
      else logWarn(kLog, "hand-off to worker {}: {}", w.slot, errnoText(err));
    }
    return busy ? HandoffResult::Busy : HandoffResult::NoWorker;
  }

  void drop(const SockAddr& peer) {
    ++dropped_;
    if (dropped_ == 1 || dropped_ % 1000 == 0)
      logError(kLog, "no worker could take a connection from {}; closed it ({} so far)",
               peer.toString(), dropped_);
  }

  // Parked sockets go out in order as soon as a worker's queue has room; accepting
  // resumes when none is left.
  void scheduleRetryParked() {
    park_timer_.expires_after(std::chrono::milliseconds(2));
    park_timer_.async_wait([this](boost::system::error_code ec) {
      if (ec) return;
      retryParked();
    });
  }

  void retryParked() {
    while (!parked_.empty()) {
      Parked& p = parked_.front();
      prepareCandidates(p.peer);
      ipc::HandoffInfo info = handoffInfo(p.peer, p.listener, p.tls);
      HandoffResult r = tryHandOff(p.fd.get(), info);
      // Waiting is bounded: past the handshake deadline the client has given up anyway.
      if (r == HandoffResult::Busy && !stopping_ &&
          Clock::now() - p.since < config_.gateway.handshake_timeout) {
        scheduleRetryParked();
        return;
      }
      if (r != HandoffResult::Sent) drop(p.peer);
      parked_.pop_front();
    }
    armAccepts();
  }

  // ---- internal watchdog ------------------------------------------------------------
  //
  // Each ready worker gets a synthetic GET /healthz every [watchdog] interval, over a
  // socketpair handed to it like a client connection: no TCP connect that a connection
  // storm could time out. A probe that fails or times out counts only if the worker's
  // heartbeat (its Stats, every second) has not shown progress since the probe began:
  // a busy worker that still reports and still moves is "inconclusive", never
  // punished. `failures` real failures in a row make it suspect (no new connections);
  // one more and it gets SIGABRT (for a core), then SIGKILL, and the usual respawn.
  // Never more than max_kill_fraction of the workers are being killed at once.

  void scheduleWatchdog() {
    watchdog_timer_.expires_after(config_.watchdog.interval);
    watchdog_timer_.async_wait([this](boost::system::error_code ec) {
      if (ec || stopping_) return;
      for (auto& w : workers_)
        if ((w->state == WorkerState::Ready || w->state == WorkerState::Suspect) && !w->probe && !w->killing)
          startProbe(*w);
      scheduleWatchdog();
    });
  }

  enum class ProbeOutcome { Ok, Failed, Busy };

  void startProbe(Worker& w) {
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0) {
      logWarn(kLog, "watchdog: socketpair: {}", errnoText(errno));
      return;
    }
    UniqueFd ours(sv[0]), theirs(sv[1]);
    static constexpr std::string_view kRequest =
        "GET /healthz HTTP/1.1\r\nHost: dingo-watchdog-probe\r\nConnection: close\r\n\r\n";
    if (::send(ours.get(), kRequest.data(), kRequest.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(kRequest.size()))
      return;
    w.probe_started = Clock::now();
    w.progress_at_probe = w.progress;
    ipc::HandoffInfo info;
    info.listener = ipc::kProbeListener;
    info.peer.ss_family = AF_UNIX;
    int err = ipc::send(w.ipc->native_handle(), ipc::MsgType::Handoff, ipc::asBytes(info), theirs.get());
    if (err) {
      // A full queue is a busy worker; a broken channel shows up as its exit.
      finishProbe(w, err == EAGAIN ? ProbeOutcome::Busy : ProbeOutcome::Failed);
      return;
    }
    w.probe = std::make_unique<asio::local::stream_protocol::socket>(io_);
    boost::system::error_code ec;
    w.probe->assign(asio::local::stream_protocol(), ours.get(), ec);
    if (ec) {
      // `ours` still owns the fd and closes it; the worker sees its end close.
      logWarn(kLog, "probe of worker {}: {}", w.slot, ec.message());
      w.probe.reset();
      finishProbe(w, ProbeOutcome::Failed);
      return;
    }
    ours.release();  // the socket owns it now
    w.probe_reply.clear();
    std::weak_ptr<char> life = w.life;
    w.probe_timer.expires_after(config_.watchdog.timeout);
    w.probe_timer.async_wait([this, &w, life](boost::system::error_code e) {
      if (e || life.expired() || !w.probe) return;
      finishProbe(w, ProbeOutcome::Failed);
    });
    readProbe(w);
  }

  void readProbe(Worker& w) {
    std::weak_ptr<char> life = w.life;
    auto buf = std::make_shared<std::array<char, 1024>>();
    w.probe->async_read_some(asio::buffer(*buf), [this, &w, life, buf](boost::system::error_code ec, size_t n) {
      if (life.expired() || !w.probe) return;
      if (!ec && w.probe_reply.size() < 8192) {
        w.probe_reply.append(buf->data(), n);
        readProbe(w);
        return;
      }
      // The worker closes after its answer (Connection: close).
      bool ok = w.probe_reply.starts_with("HTTP/1.1 200") && w.probe_reply.find("\r\n\r\n") != std::string::npos;
      finishProbe(w, ok ? ProbeOutcome::Ok : ProbeOutcome::Failed);
    });
  }

  void endProbe(Worker& w) {
    w.probe_timer.cancel();
    if (w.probe) {
      boost::system::error_code ec;
      w.probe->close(ec);
      w.probe.reset();
    }
  }

  void finishProbe(Worker& w, ProbeOutcome outcome) {
    endProbe(w);
    if (outcome == ProbeOutcome::Ok) {
      w.last_probe_ms = std::chrono::duration<double, std::milli>(Clock::now() - w.probe_started).count();
      ++w.probes_ok;
      w.probe_failures = 0;
      if (w.state == WorkerState::Suspect) {
        w.state = WorkerState::Ready;
        logInfo(kLog, "watchdog: worker {} (pid {}) answers again; no longer suspect", w.slot, w.pid);
      }
      return;
    }
    bool heartbeat = w.last_stats_at > w.probe_started && w.progress != w.progress_at_probe;
    if (outcome == ProbeOutcome::Busy || heartbeat) {
      ++w.probes_inconclusive;  // busy, not dead: its own reports still come and still move
      return;
    }
    ++w.probes_failed;
    ++w.probe_failures;
    uint32_t limit = config_.watchdog.failures;
    logWarn(kLog, "watchdog: worker {} (pid {}) failed its probe ({} of {}) and shows no progress", w.slot, w.pid,
            w.probe_failures, limit);
    if (w.state == WorkerState::Ready && static_cast<uint32_t>(w.probe_failures) >= limit) {
      w.state = WorkerState::Suspect;
      logError(kLog, "watchdog: worker {} (pid {}) is suspect: no new connections for it", w.slot, w.pid);
    } else if (w.state == WorkerState::Suspect && static_cast<uint32_t>(w.probe_failures) > limit) {
      killStuck(w);
    }
  }

  void killStuck(Worker& w) {
    int killing = 0;
    for (auto& o : workers_) killing += o->killing && o->alive();
    int allowed = std::max(1, static_cast<int>(config_.watchdog.max_kill_fraction * worker_count_));
    if (killing >= allowed) {
      logWarn(kLog, "watchdog: not killing worker {} yet: {} of {} workers are being killed already", w.slot,
              killing, worker_count_);
      return;
    }
    w.killing = true;
    logError(kLog, "watchdog: killing worker {} (pid {}): SIGABRT for a core, SIGKILL in 2s", w.slot, w.pid);
    signalWorker(w, SIGCONT);  // a stopped process handles nothing else
    signalWorker(w, SIGABRT);
    std::weak_ptr<char> life = w.life;
    pid_t pid = w.pid;
    w.kill_timer.expires_after(std::chrono::seconds(2));
    w.kill_timer.async_wait([&w, life, pid](boost::system::error_code ec) {
      if (ec || life.expired() || w.pid != pid) return;
      signalWorker(w, SIGKILL);
    });
  }

  // ---- upgrade ------------------------------------------------------------------------
  //
  // USR2 or `dingoctl upgrade`: start the dingo-supervisor binary now on disk with our
  // listening sockets (inherited, LISTEN_FDS) and --upgrade-from. It takes over the
  // control socket and the pid file, starts its workers and, when they are all ready,
  // sends us SIGTERM: we close our copies of the listeners and drain. Both accept from
  // the same sockets in between, so no connection is refused. If the new binary fails,
  // we never get the SIGTERM and go on as before.

  bool upgrade(std::string& error) {
    if (stopping_ || reloading_) {
      error = "the supervisor is stopping or reloading";
      return false;
    }
    if (upgrade_child_ > 0) {
      error = "an upgrade is already under way";
      return false;
    }
    std::string exe = selfExeDir() + "/dingo-supervisor";
    if (::access(exe.c_str(), X_OK) != 0) {
      error = exe + ": " + errnoText(errno);
      return false;
    }
    std::vector<int> fds;
    for (auto& l : listeners_)
      for (auto& ls : l.sockets)
        if (ls.fd) fds.push_back(ls.fd.get());  // a kernel listener's in slot order
    // The admin port is the new supervisor's to bind (a moment without /metrics).
    admin_.reset();
    pid_t me = ::getpid();
    pid_t pid = ::fork();
    if (pid < 0) {
      error = "fork: " + errnoText(errno);
      return false;
    }
    if (pid == 0) {
      systemd::passListenFds(fds);
      // systemd's watchdog (NotifyAccess=all, MAINPID) is the new supervisor's to feed.
      if (std::getenv("WATCHDOG_PID")) ::setenv("WATCHDOG_PID", std::to_string(::getpid()).c_str(), 1);
      // Asio opens some sockets without SOCK_CLOEXEC (control, admin): nothing else goes.
      ::close_range(3 + static_cast<unsigned>(fds.size()), ~0U, CLOSE_RANGE_CLOEXEC);
      std::string from = std::to_string(me);
      if (options_.config_path.empty())
        ::execl(exe.c_str(), exe.c_str(), "--upgrade-from", from.c_str(), static_cast<char*>(nullptr));
      else
        ::execl(exe.c_str(), exe.c_str(), "--config", options_.config_path.c_str(), "--upgrade-from", from.c_str(),
                static_cast<char*>(nullptr));
      ::_exit(127);
    }
    upgrade_child_ = pid;
    handed_over_ = true;  // from its start on, the pid file and the control socket path are its
    logInfo(kLog, "upgrade: started {} (pid {}); it takes over when its workers are ready", exe, pid);
    return true;
  }

  // ---- adopting the workers of a supervisor that died ------------------------------
  //
  // After a kill -9 (or a crash) of the supervisor its workers go on serving their
  // connections and knock on the control socket every 100 ms (see the gateway's
  // tryReattach). The workers file, kept beside the pid file, says which workers the
  // dead supervisor had; a new supervisor waits up to kAdoptWait for them before it
  // starts new ones in their slots. A worker that asks is checked (same uid, the pid
  // really is the peer, a dingo-gateway binary), gets a new IPC socket and hub link over
  // SCM_RIGHTS, and its exit is watched through a pidfd. It keeps its slot when it has
  // the same config file and the slot is free; otherwise it is adopted to drain out.

  static constexpr std::chrono::seconds kAdoptWait{2};

  std::string workersFile() const {
    std::string p = config_.supervisor.pid_file;
    if (p.ends_with(".pid")) p.resize(p.size() - 4);
    return p + ".workers";
  }

  // {"supervisor":PID,"generation":G,"workers":[{"slot":S,"pid":P,"start_ticks":T}...]}
  void saveWorkers() {
    if (!pid_file_written_ || handed_over_) return;
    json ws = json::array();
    forEachWorker([&](Worker& w) {
      if (!w.alive()) return;
      auto ps = readProcStats(w.pid);
      if (ps) ws.push_back({{"slot", w.slot}, {"pid", w.pid}, {"start_ticks", ps->start_ticks}});
    });
    json j = {{"supervisor", ::getpid()}, {"generation", generation_}, {"workers", std::move(ws)}};
    try {
      writeFileAtomically(workersFile(), j.dump() + "\n");
    } catch (const std::exception& e) {
      logWarn(kLog, "{}", e.what());
    }
  }

  // Starts a worker in every slot, except those whose worker outlived the previous
  // supervisor: they get kAdoptWait to re-attach.
  void awaitOrphans() {
    std::map<int, pid_t> orphans;
    if (options_.upgrade_from == 0) orphans = readOrphans();
    for (auto& w : workers_)
      if (!orphans.count(w->slot)) spawn(*w);
    if (orphans.empty()) return;
    for (const auto& [slot, pid] : orphans) awaiting_orphans_.insert(slot);
    logInfo(kLog, "{} worker(s) of the previous supervisor are still running; waiting up to {}s for them to re-attach",
            orphans.size(), kAdoptWait.count());
    adopt_timer_.expires_after(kAdoptWait);
    adopt_timer_.async_wait([this, orphans](boost::system::error_code ec) {
      if (ec || stopping_) return;
      awaiting_orphans_.clear();
      for (auto& w : workers_) {
        if (w->alive() || !orphans.count(w->slot)) continue;
        logWarn(kLog, "worker {} (pid {}) did not re-attach; starting a new one", w->slot, orphans.at(w->slot));
        spawn(*w);
      }
    });
  }

  std::map<int, pid_t> readOrphans() {
    std::map<int, pid_t> out;
    auto text = readFile(workersFile());
    if (!text) return out;
    // Written by our predecessor, but a file on disk: a damaged one is ignored, entry by
    // entry, and never stops the start.
    ParsedJson parsed = parseJson(*text);
    const json& j = parsed.value;
    if (!parsed.ok() || !j.is_object() || !j.contains("workers") || !j["workers"].is_array()) {
      logWarn(kLog, "{} is not a workers file; ignored", workersFile());
      return out;
    }
    generation_ = std::max(generation_, field<int>(j, "generation").value_or(1));
    for (const auto& w : j["workers"]) {
      int slot = field<int>(w, "slot").value_or(-1);
      pid_t pid = field<int>(w, "pid").value_or(0);
      auto start_ticks = field<uint64_t>(w, "start_ticks");
      auto ps = pid > 0 && start_ticks ? readProcStats(pid) : std::nullopt;
      // The start time tells the worker from a process that reused its pid; a zombie has
      // exited already (an idle orphan leaves at once).
      if (ps && ps->state != 'Z' && ps->state != 'X' && ps->start_ticks == *start_ticks && slot >= 0 &&
          slot < worker_count_)
        out[slot] = pid;
    }
    return out;
  }

  // The control socket's "adopt" command. On success `pass` holds the worker's ends of
  // its new IPC socket and hub link, sent with the answer.
  json adopt(const AdoptRequest& req, int sock, std::vector<UniqueFd>& pass) {
    auto refuse = [](const std::string& why) { return json{{"ok", false}, {"error", why}}; };
    ucred cred{};
    socklen_t len = sizeof cred;
    if (::getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0)
      return refuse("SO_PEERCRED: " + errnoText(errno));
    pid_t pid = req.pid;
    int slot = req.slot;
    if ( cred.pid != pid) return refuse("the pid does not match the peer's");
    if (cred.uid != ::geteuid()) return refuse("the worker runs as another user");
    std::error_code fs_ec;
    std::string exe = std::filesystem::read_symlink(fmt::format("/proc/{}/exe", pid), fs_ec).filename().string();
    if (fs_ec || !exe.starts_with("dingo-gateway")) return refuse("the peer is not a dingo-gateway");
    if (stopping_) return refuse("the supervisor is stopping");
    bool known = false;
    forEachWorker([&](Worker& w) { known = known || w.pid == pid; });
    if (known) return refuse("this worker is attached already");

    int sv[2], hv[2];
    if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) return refuse("socketpair: " + errnoText(errno));
    UniqueFd ipc_ours(sv[0]), ipc_theirs(sv[1]);
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, hv) != 0) return refuse("socketpair: " + errnoText(errno));
    UniqueFd hub_ours(hv[0]), hub_theirs(hv[1]);
    UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
    if (!pidfd) return refuse("pidfd_open: " + errnoText(errno));

    std::string why_not;
    if (slot < 0 || slot >= worker_count_) why_not = fmt::format("there is no slot {}", slot);
    else if (req.config_digest != config_.digest) why_not = "it read another configuration";
    else if (workers_[static_cast<size_t>(slot)]->alive() || workers_[static_cast<size_t>(slot)]->successor)
      why_not = "its slot has a new worker already";
    else if (reloading_) why_not = "a reload is under way";

    std::unique_ptr<Worker> spare;
    Worker* w;
    if (why_not.empty()) {
      w = workers_[static_cast<size_t>(slot)].get();
      w->respawn_timer.cancel();
      awaiting_orphans_.erase(slot);
    } else {
      spare = std::make_unique<Worker>(io_, slot);
      w = spare.get();
    }
    attach(*w, pid, std::move(ipc_ours), std::move(hub_ours), req.generation.value_or(generation_));
    w->adopted = true;
    w->pidfd = std::make_unique<stream_descriptor>(io_, pidfd.release());
    watchPidfd(*w);
    ++adopted_total_;
    pass.push_back(std::move(ipc_theirs));
    pass.push_back(std::move(hub_theirs));
    uint64_t connections = req.connections;
    if (spare) {
      logInfo(kLog, "adopted worker {} (pid {}, {} connections) to drain it: {}", slot, pid, connections, why_not);
      retire(std::move(spare));
      saveWorkers();
    } else {
      logInfo(kLog, "adopted worker {} (pid {}, generation {}, {} connections) of the previous supervisor", slot,
              pid, w->generation, connections);
    }
    return json{{"ok", true}, {"worker", slot}, {"kept", why_not.empty()}};
  }

  void watchPidfd(Worker& w) {
    w.pidfd->async_wait(stream_descriptor::wait_read,
                        [this, &w, life = std::weak_ptr<char>(w.life), pid = w.pid](boost::system::error_code ec) {
                          if (ec || life.expired() || w.pid != pid || !w.adopted) return;
                          onWorkerExit(w, "exited (adopted: exit status unknown)", w.state == WorkerState::Draining);
                        });
  }

  // ---- reload and drain-worker -------------------------------------------------------

  // Every worker object: current ones, their successors, replaced ones draining out.
  template <typename Fn>
  void forEachWorker(Fn fn) {
    for (auto& w : workers_) {
      fn(*w);
      if (w->successor) fn(*w->successor);
    }
    for (auto& w : retired_) fn(*w);
  }

  // Reads the config file again and, if it is valid and can be applied, replaces the
  // workers one slot at a time: each slot's new worker takes over when it is ready, the
  // old one drains (so capacity never drops and nothing is refused). Returns false with
  // `error` set, and changes nothing, when the file is bad or asks for what only a
  // restart can do.
  bool reload(std::string& error) {
    if (stopping_) {
      error = "the supervisor is stopping";
      return false;
    }
    if (reloading_) {
      error = "a reload is already under way";
      return false;
    }
    if (options_.config_path.empty()) {
      error = "started without a configuration file: nothing to reload";
      return false;
    }
    Config next;
    try {
      next = loadConfig(options_.config_path);
    } catch (const std::exception& e) {
      error = e.what();
      return false;
    }
    std::string why = restartOnlyChange(next);
    if (!why.empty()) {
      error = why + " changes only with a restart (or an upgrade); nothing was reloaded";
      return false;
    }
    config_ = std::move(next);
    dispatcher_ = makeDispatcher(config_.supervisor.dispatch, static_cast<size_t>(worker_count_));
    ++generation_;
    reloading_ = true;
    reload_failed_ = false;
    systemd::notify("RELOADING=1");
    logInfo(kLog, "reloading {}: generation {}, replacing {} workers one by one", options_.config_path,
            generation_, worker_count_);
    replaceNext(0);
    return true;
  }

  std::string restartOnlyChange(const Config& next) const {
    const auto& a = config_;
    const auto& b = next;
    if (b.listen.size() != a.listen.size()) return "[[listen]]";
    for (size_t i = 0; i < a.listen.size(); ++i)
      if (a.listen[i].address != b.listen[i].address || a.listen[i].tls != b.listen[i].tls ||
          a.listen[i].backlog != b.listen[i].backlog)
        return "[[listen]]";
    if (a.supervisor.workers != b.supervisor.workers) return "[supervisor] workers";
    if (a.supervisor.control_socket != b.supervisor.control_socket) return "[supervisor] control_socket";
    if (a.supervisor.pid_file != b.supervisor.pid_file) return "[supervisor] pid_file";
    if (a.supervisor.user != b.supervisor.user) return "[supervisor] user";
    if (a.admin.address != b.admin.address) return "[admin] address";
    if (a.bus.engine != b.bus.engine) return "[bus] engine";
    if (a.supervisor.accept != b.supervisor.accept) return "[supervisor] accept";
    if (a.supervisor.slot_grace != b.supervisor.slot_grace) return "[supervisor] slot_grace";
    if (kernel_ && a.supervisor.dispatch != b.supervisor.dispatch) return "[supervisor] dispatch (with accept = kernel)";
    return {};
  }

  // Starts the successor of slot `slot` (or finishes the reload past the last slot).
  void replaceNext(int slot) {
    if (!reloading_) return;
    if (stopping_ || slot >= worker_count_) {
      reloading_ = false;
      logAt(reload_failed_ ? LogLevel::Error : LogLevel::Info, kLog, "reload to generation {} {}", generation_,
            reload_failed_ ? "finished with errors: some slots kept their old worker" : "done");
      systemd::notify(fmt::format("READY=1\nSTATUS=serving generation {}", generation_));
      return;
    }
    startSuccessor(slot);
  }

  void startSuccessor(int slot) {
    Worker& cur = *workers_[static_cast<size_t>(slot)];
    cur.successor = std::make_unique<Worker>(io_, slot);
    cur.successor->is_successor = true;
    spawn(*cur.successor);
    // A successor that never says hello is given up, and the old worker kept.
    Worker* succ = cur.successor.get();
    succ->respawn_timer.expires_after(std::chrono::seconds(10));
    succ->respawn_timer.async_wait([this, slot, succ](boost::system::error_code ec) {
      Worker& c = *workers_[static_cast<size_t>(slot)];
      if (ec || c.successor.get() != succ || succ->state != WorkerState::Starting) return;
      logError(kLog, "new worker {} was not ready within 10s; keeping the old one", slot);
      signalWorker(*succ, SIGKILL);
    });
  }

  // The slot's successor is ready: it takes the slot, the old worker drains.
  void promote(int slot) {
    auto& place = workers_[static_cast<size_t>(slot)];
    if (!place->successor || place->successor->state != WorkerState::Ready) return;
    std::unique_ptr<Worker> old = std::move(place);
    place = std::move(old->successor);
    place->is_successor = false;
    place->respawn_timer.cancel();
    place->restarts = old->restarts;
    retire(std::move(old));
    if (draining_slot_ == slot) draining_slot_ = -1;
    else replaceNext(slot + 1);
  }

  void retire(std::unique_ptr<Worker> w) {
    w->retired = true;
    w->respawn_timer.cancel();
    if (w->alive()) {
      w->state = WorkerState::Draining;
      ipc::DrainInfo info{config_.supervisor.drain_timeout.count()};
      if (!w->ipc || ipc::send(w->ipc->native_handle(), ipc::MsgType::Drain, ipc::asBytes(info)) != 0)
        signalWorker(*w, SIGTERM);
      // The backstop, should it miss its own deadline.
      Worker* ptr = w.get();
      w->respawn_timer.expires_after(config_.supervisor.drain_timeout + std::chrono::seconds(2));
      w->respawn_timer.async_wait([this, ptr](boost::system::error_code ec) {
        if (ec || !ptr->alive()) return;
        logWarn(kLog, "replaced worker {} (pid {}) missed its drain deadline; killing it", ptr->slot, ptr->pid);
        signalWorker(*ptr, SIGKILL);
      });
      logInfo(kLog, "worker {} (pid {}, generation {}) replaced; draining", w->slot, w->pid, w->generation);
    }
    // At most kLingeringGenerations older generations: the oldest go now.
    for (auto& r : retired_)
      if (r->alive() && r->generation + kLingeringGenerations < generation_) {
        logWarn(kLog, "worker {} (pid {}) of generation {} is too old to linger; killing it", r->slot, r->pid,
                r->generation);
        signalWorker(*r, SIGKILL);
      }
    retired_.push_back(std::move(w));
  }

  bool drainWorker(int slot, std::string& error) {
    if (slot < 0 || slot >= worker_count_) {
      error = fmt::format("no worker {} (0 to {})", slot, worker_count_ - 1);
      return false;
    }
    if (stopping_ || reloading_ || draining_slot_ >= 0 || workers_[static_cast<size_t>(slot)]->successor) {
      error = "a reload or another drain is under way";
      return false;
    }
    logInfo(kLog, "draining worker {} on request; a new worker takes its place", slot);
    draining_slot_ = slot;
    startSuccessor(slot);
    return true;
  }

  // ---- workers ----------------------------------------------------------------------

  void spawn(Worker& w) {
    if (stopping_) return;
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
      logError(kLog, "socketpair for worker {}: {}", w.slot, errnoText(errno));
      scheduleRespawn(w);
      return;
    }
    UniqueFd ours(sv[0]), theirs(sv[1]);
    int hv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, hv) != 0) {
      logError(kLog, "socketpair (hub) for worker {}: {}", w.slot, errnoText(errno));
      scheduleRespawn(w);
      return;
    }
    UniqueFd hub_ours(hv[0]), hub_theirs(hv[1]);
    std::vector<std::string> args = {"--worker",     "--ipc-fd",   "3", "--hub-fd", "4",
                                     "--worker-id",  std::to_string(w.slot),
                                     "--generation", std::to_string(generation_)};
    if (!options_.config_path.empty()) {
      args.push_back("--config");
      args.push_back(options_.config_path);
    }
    std::string error;
    pid_t pid = spawnWorker(gateway_path_, args, theirs.get(), hub_theirs.get(), error);
    if (pid < 0) {
      logError(kLog, "starting worker {} ({}): {}", w.slot, gateway_path_, error);
      scheduleRespawn(w);
      return;
    }
    attach(w, pid, std::move(ours), std::move(hub_ours), generation_);
    logInfo(kLog, "worker {} started (pid {})", w.slot, pid);
  }

  // Gives `w` a running process (spawned, or adopted): the state of a fresh worker and
  // our ends of its IPC socket and hub link.
  void attach(Worker& w, pid_t pid, UniqueFd ipc, UniqueFd hub, int generation) {
    ::fcntl(ipc.get(), F_SETFL, ::fcntl(ipc.get(), F_GETFL) | O_NONBLOCK);
    w.pid = pid;
    w.generation = generation;
    w.state = WorkerState::Starting;
    w.started_at = Clock::now();
    w.handed = 0;
    w.stats = json::object();
    w.reported_accepted = w.reported_connections = 0;
    w.prev_requests = w.prev_cpu_ticks = 0;
    w.requests_per_s = w.cpu_percent = 0;
    w.prev_sample = {};
    w.probe_failures = 0;
    w.killing = false;
    w.last_stats_at = {};
    w.adopted = false;
    w.pidfd.reset();
    w.ipc = std::make_unique<stream_descriptor>(io_, ipc.release());
    w.hub_link = hub_->attach(hub.release(), w.slot);
    watchIpc(w);
    saveWorkers();
  }

  // Signals a worker's process; an adopted one through its pidfd, so that a pid reused
  // after it exited is never hit.
  static void signalWorker(const Worker& w, int sig) {
    if (!w.alive()) return;
    if (w.pidfd) ::syscall(SYS_pidfd_send_signal, w.pidfd->native_handle(), sig, nullptr, 0);
    else ::kill(w.pid, sig);
  }

  void watchIpc(Worker& w) {
    if (!w.ipc) return;
    w.ipc->async_wait(stream_descriptor::wait_read, [this, &w, pid = w.pid](boost::system::error_code ec) {
      if (ec || w.pid != pid || !w.ipc) return;
      for (int i = 0; i < 64; ++i) {
        ipc::Message msg;
        int rc = ipc::receive(w.ipc->native_handle(), msg);
        if (rc == EAGAIN) break;
        if (rc == EBADMSG) {
          logWarn(kLog, "worker {} sent a malformed message; ignored", w.slot);
          continue;
        }
        if (rc != 0) {
          // End of stream: the worker is exiting (SIGCHLD follows) or broken.
          if (w.state != WorkerState::Draining)
            logWarn(kLog, "worker {} (pid {}) closed its control channel", w.slot, w.pid);
          w.ipc.reset();
          // A draining worker closes it on its way out; any other is broken.
          if (w.state != WorkerState::Exited && w.state != WorkerState::Draining && w.pid > 0 && !stopping_)
            signalWorker(w, SIGKILL);
          return;
        }
        onWorkerMessage(w, msg);
      }
      watchIpc(w);
    });
  }

  void onWorkerMessage(Worker& w, const ipc::Message& msg) {
    switch (msg.type) {
      case ipc::MsgType::Hello: {
        if (w.state == WorkerState::Starting) {
          sendTicketKeys(w);
          if (!stopping_) giveSlotSockets(w);
          w.state = stopping_ ? WorkerState::Draining : WorkerState::Ready;
          logInfo(kLog, "worker {} ready (pid {}, generation {}) after {}ms", w.slot, w.pid, w.generation,
                  std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - w.started_at)
                      .count());
          if (w.is_successor && !stopping_) asio::post(io_, [this, slot = w.slot] { promote(slot); });
          updateKernel();
          notifyReadyOnce();
        }
        break;
      }
      case ipc::MsgType::Stats: {
        auto stats = workerStats(msg.payload);
        if (!stats) {
          logWarn(kLog, "worker {} sent stats that are not a flat JSON object of numbers; ignored", w.slot);
          break;
        }
        w.stats = std::move(*stats);
        w.last_stats_at = Clock::now();
        w.progress = 0;
        for (const char* k : {"accepted", "requests", "bytes_in", "bytes_out", "delivered", "polls", "probes"})
          w.progress += field<uint64_t>(w.stats, k).value_or(0);
        w.reported_accepted = field<uint64_t>(w.stats, "accepted").value_or(0);
        w.reported_connections = field<uint64_t>(w.stats, "connections").value_or(0);
        break;
      }
      case ipc::MsgType::Disconnected: {
        ParsedJson j = parseJson(msg.payload, 1);
        auto id = field<uint64_t>(j.value, "id");
        auto closed = field<uint64_t>(j.value, "closed");
        if (j.ok() && id && closed) onDisconnected(*id, w.pid, *closed);
        break;
      }
      default:
        logWarn(kLog, "worker {} sent unexpected message type {}", w.slot,
                static_cast<int>(msg.type));
    }
  }

  // ---- dingoctl disconnect ------------------------------------------------------------
  //
  // Every live worker is asked to close a user's connections; the control connection is
  // answered when each has said how many it closed, or after kDisconnectWait with what
  // came (a worker that died meanwhile closed its connections anyway).

  static constexpr auto kDisconnectWait = std::chrono::seconds(2);
  struct ControlConn;  // below, with the control socket

  void startDisconnect(const ControlRequest& req, std::shared_ptr<ControlConn> conn) {
    uint64_t id = next_disconnect_++;
    PendingDisconnect& p = disconnects_[id];
    p.conn = std::move(conn);
    std::string payload = json{{"id", id}, {"user", req.user}, {"reason", req.reason}}.dump();
    auto ask = [&](Worker& w) {
      if (w.alive() && w.ipc && ipc::send(w.ipc->native_handle(), ipc::MsgType::Disconnect, payload) == 0)
        p.waiting.push_back(w.pid);
    };
    for (auto& w : workers_) ask(*w);
    for (auto& w : retired_) ask(*w);  // draining, with connections still open
    p.asked = static_cast<int>(p.waiting.size());
    logInfo(kLog, "disconnect user {}{}: asked {} workers", req.user, req.reason.empty() ? "" : " (" + req.reason + ")",
            p.asked);
    p.timer = std::make_unique<asio::steady_timer>(io_, kDisconnectWait);
    p.timer->async_wait([this, id](boost::system::error_code ec) {
      if (!ec) finishDisconnect(id);
    });
    if (p.waiting.empty()) finishDisconnect(id);
  }

  void onDisconnected(uint64_t id, pid_t pid, uint64_t closed) {
    auto it = disconnects_.find(id);
    if (it == disconnects_.end()) return;  // answered already (timed out)
    PendingDisconnect& p = it->second;
    if (std::erase(p.waiting, pid) == 0) return;
    p.closed += closed;
    if (p.waiting.empty()) finishDisconnect(id);
  }

  void finishDisconnect(uint64_t id) {
    auto it = disconnects_.find(id);
    if (it == disconnects_.end()) return;
    PendingDisconnect p = std::move(it->second);
    disconnects_.erase(it);
    p.timer->cancel();
    int answered = p.asked - static_cast<int>(p.waiting.size());
    json reply = {{"ok", true}, {"closed", p.closed}, {"workers", answered}};
    if (!p.waiting.empty()) reply["unanswered"] = p.waiting.size();
    sendControlReply(p.conn, reply.dump() + "\n");
  }

  // A worker's stats report, kept only if it is what a worker sends: one flat object of
  // at most kMaxStatsKeys numbers and booleans with short names. A compromised worker
  // must not be able to put anything else into status, metrics or our memory.
  static constexpr size_t kMaxStatsKeys = 128;
  static std::optional<json> workerStats(std::string_view payload) {
    ParsedJson parsed = parseJson(payload, 1);
    if (!parsed.ok() || !parsed.value.is_object() || parsed.value.size() > kMaxStatsKeys) return std::nullopt;
    for (const auto& [key, value] : parsed.value.items()) {
      bool number = value.is_number_integer() || (value.is_number_float() && std::isfinite(value.get<double>()));
      if (key.empty() || key.size() > 64 || !(number || value.is_boolean())) return std::nullopt;
    }
    return std::move(parsed.value);
  }

  void sendTicketKeys(Worker& w) {
    if (!w.ipc) return;
    int err = ipc::send(w.ipc->native_handle(), ipc::MsgType::TicketKeys, ticket_keys_.serialize());
    if (err) logWarn(kLog, "sending ticket keys to worker {}: {}", w.slot, errnoText(err));
  }

  void reapChildren() {
    for (;;) {
      int status = 0;
      pid_t pid = ::waitpid(-1, &status, WNOHANG);
      if (pid <= 0) break;
      if (pid == upgrade_child_) {
        upgrade_child_ = -1;
        handed_over_ = false;
        logError(kLog, "upgrade failed: the new supervisor {}; this one goes on",
                 WIFSIGNALED(status) ? fmt::format("was killed by signal {}", WTERMSIG(status))
                                     : fmt::format("exited with code {}", WEXITSTATUS(status)));
        // Its pid file, control socket and admin port are gone with it: ours again.
        writePidFile(config_.supervisor.pid_file, ::getpid());
        rebindControlSocket();
        startAdmin();
        continue;
      }
      std::string how = WIFSIGNALED(status) ? fmt::format("killed by signal {}", WTERMSIG(status))
                                            : fmt::format("exited with code {}", WEXITSTATUS(status));
      bool exit_zero = WIFEXITED(status) && WEXITSTATUS(status) == 0;
      forEachWorker([&](Worker& w) {
        if (w.pid == pid && !w.adopted) onWorkerExit(w, how, exit_zero);
      });
    }
  }

  void onWorkerExit(Worker& w, const std::string& how, bool exit_zero) {
    w.pidfd.reset();
    w.adopted = false;
    if (w.retired || w.is_successor) {
      w.pid = -1;
      saveWorkers();
      w.ipc.reset();
      if (w.hub_link) hub_->detach(w.hub_link);
      w.hub_link = 0;
      w.state = WorkerState::Exited;
      if (w.retired) {
        logInfo(kLog, "worker {} of generation {} {} (replaced)", w.slot, w.generation, how);
        asio::post(io_, [this, ptr = &w] { retired_.remove_if([ptr](const auto& r) { return r.get() == ptr; }); });
      } else {
        // The new worker died before it was ready: the old one keeps the slot.
        logError(kLog, "new worker {} of generation {} {} before it was ready; keeping the old one", w.slot,
                 w.generation, how);
        reload_failed_ = true;
        asio::post(io_, [this, slot = w.slot] {
          workers_[static_cast<size_t>(slot)]->successor.reset();
          replaceNext(slot + 1);
        });
      }
      if (stopping_) asio::post(io_, [this] { maybeFinishStop(); });
      return;
    }
    auto uptime = Clock::now() - w.started_at;
    w.pid = -1;
    saveWorkers();
    w.ipc.reset();
    endProbe(w);
    w.kill_timer.cancel();
    if (w.hub_link) hub_->detach(w.hub_link);
    w.hub_link = 0;
    WorkerState was = w.state;
    w.state = WorkerState::Exited;
    if (stopping_) {
      logInfo(kLog, "worker {} {}", w.slot, how);
      maybeFinishStop();
      return;
    }
    bool clean = exit_zero && was == WorkerState::Draining;
    if (w.successor) {
      logWarn(kLog, "worker {} {} while its successor starts; the successor takes the slot", w.slot, how);
      return;
    }
    if (uptime >= config_.supervisor.stable_after) {
      w.backoff = config_.supervisor.restart_backoff;
    } else {
      w.backoff = w.backoff.count() == 0 ? config_.supervisor.restart_backoff
                                         : std::min(w.backoff * 2, config_.supervisor.restart_backoff_max);
    }
    ++w.restarts;
    if (w.backoff > config_.supervisor.restart_backoff) {
      logError(kLog,
               "worker {} {} after {}ms: CRASH LOOP (restart {} of this slot); respawning in {}",
               w.slot, how, std::chrono::duration_cast<std::chrono::milliseconds>(uptime).count(),
               w.restarts, formatDuration(w.backoff));
    } else {
      logAt(clean ? LogLevel::Info : LogLevel::Error, kLog, "worker {} {}; respawning in {}",
            w.slot, how, formatDuration(w.backoff));
    }
    scheduleRespawn(w);
  }

  void scheduleRespawn(Worker& w) {
    if (stopping_) return;
    if (w.backoff.count() == 0) w.backoff = config_.supervisor.restart_backoff;
    w.respawn_timer.expires_after(w.backoff);
    w.respawn_timer.async_wait([this, &w](boost::system::error_code ec) {
      if (!ec && !w.alive()) spawn(w);
    });
  }

  // ---- periodic work ----------------------------------------------------------------

  void scheduleStats() {
    stats_timer_.expires_after(std::chrono::seconds(1));
    stats_timer_.async_wait([this](boost::system::error_code ec) {
      if (ec) return;
      sampleWorkers();
      scheduleStats();
    });
  }

  void sampleWorkers() {
    auto now = Clock::now();
    for (auto& wp : workers_) {
      Worker& w = *wp;
      if (!w.alive()) continue;
      auto ps = readProcStats(w.pid);
      if (!ps) continue;
      uint64_t requests = field<uint64_t>(w.stats, "requests").value_or(0);
      if (w.prev_sample != Clock::time_point{}) {
        double dt = std::chrono::duration<double>(now - w.prev_sample).count();
        if (dt > 0) {
          w.requests_per_s = static_cast<double>(requests - std::min(requests, w.prev_requests)) / dt;
          w.cpu_percent = 100.0 *
                          static_cast<double>(ps->cpu_ticks - std::min(ps->cpu_ticks, w.prev_cpu_ticks)) /
                          static_cast<double>(clockTicksPerSecond()) / dt;
        }
      }
      w.prev_sample = now;
      w.prev_requests = requests;
      w.prev_cpu_ticks = ps->cpu_ticks;
      w.rss_bytes = ps->rss_bytes;
      w.cpu_seconds = static_cast<double>(ps->cpu_ticks) / static_cast<double>(clockTicksPerSecond());
    }
  }

  void scheduleTicketRotation() {
    ticket_timer_.expires_after(config_.tls.ticket_rotation);
    ticket_timer_.async_wait([this](boost::system::error_code ec) {
      if (ec) return;
      ticket_keys_.rotate(generateTicketKey());
      for (auto& w : workers_)
        if (w->state == WorkerState::Ready || w->state == WorkerState::Draining) sendTicketKeys(*w);
      logInfo(kLog, "rotated TLS session ticket keys ({} kept)", ticket_keys_.size());
      scheduleTicketRotation();
    });
  }

  // ---- status -----------------------------------------------------------------------

  // Channels the status document lists under hub.top_channels.
  static constexpr size_t kTopChannels = 10;

  // The status document. Metrics leave out what they do not export (the top channels:
  // a pass over every channel).
  json status(bool top_channels = true) const {
    auto now = Clock::now();
    json st;
    st["pid"] = ::getpid();
    st["version"] = DINGO_VERSION;
    st["uptime_s"] = std::chrono::duration<double>(now - started_).count();
    st["start_time_unix"] = std::chrono::duration_cast<std::chrono::seconds>(
                                started_wall_.time_since_epoch()).count();
    st["generation"] = generation_;
    st["dispatch"] = dispatchName(config_.supervisor.dispatch);
    st["state"] = stopping_ ? "stopping" : "running";
    st["reloading"] = reloading_ || upgrade_child_ > 0;
    st["config"] = options_.config_path;
    json ls = json::array();
    for (const auto& l : listeners_)
      ls.push_back({{"address", l.config.address}, {"tls", l.config.tls}, {"accepted", l.accepted}});
    st["listeners"] = ls;
    st["adopted_total"] = adopted_total_;
    st["handoff"] = {{"handed", handed_}, {"retries", retries_}, {"dropped", dropped_},
                     {"waited", parked_total_}, {"waiting", parked_.size()}};
    json accept = {{"mode", kernel_ ? "kernel" : "handoff"}};
    if (kernel_) {
      json in = json::array(), fallback = json::array();
      for (size_t s = 0; s < kernel_->inProgram().size(); ++s) {
        if (kernel_->inProgram()[s]) in.push_back(s);
        if (kernel_->fallback(s)) fallback.push_back(s);
      }
      accept["slots_in_program"] = in;
      accept["slots_fallback"] = fallback;
      accept["programs_attached"] = kernel_->programsAttached();
    }
    st["accept"] = accept;
    json ws = json::array();
    std::vector<const Worker*> all;
    for (const auto& wp : workers_) all.push_back(wp.get());
    for (const auto& wp : retired_) all.push_back(wp.get());
    uint64_t total_authenticated = 0, total_anonymous = 0;
    for (const Worker* wptr : all) {
      const Worker& w = *wptr;
      json j = {{"id", w.slot},
                {"pid", w.pid > 0 ? w.pid : 0},
                {"generation", w.generation},
                {"state", stateName(w.state)},
                {"uptime_s", w.alive() ? std::chrono::duration<double>(now - w.started_at).count() : 0.0},
                {"handed", w.handed},
                {"requests_per_s", w.requests_per_s},
                {"rss_bytes", w.alive() ? w.rss_bytes : 0},
                {"cpu_percent", w.alive() ? w.cpu_percent : 0.0},
                {"cpu_seconds", w.alive() ? w.cpu_seconds : 0.0},
                {"restarts", w.restarts},
                {"adopted", w.adopted},
                {"last_probe_ms", w.last_probe_ms >= 0 ? json(w.last_probe_ms) : json(nullptr)},
                {"probes_ok", w.probes_ok},
                {"probes_failed", w.probes_failed},
                {"probes_inconclusive", w.probes_inconclusive}};
      for (const char* key : {"connections", "accepted", "requests", "bytes_in", "bytes_out",
                              "tls_handshakes", "tls_resumed", "tls_failures", "timeouts",
                              "bad_requests", "loop_lag_ms", "ws_connections", "ws_upgrades",
                              "ws_commands", "ws_protocol_errors", "published", "delivered", "recovered",
                              "not_recovered", "slow_consumers", "rate_limited", "channels", "polls",
                              "held_polls", "poll_cache_hits", "poll_cache_misses", "poll_sessions",
                              "poll_session_bytes", "poll_evictions", "sse_streams", "sse_total",
                              "rejected", "reattached", "resets", "peer_limited", "stream_limited",
                              "peers_tracked", "authenticated", "gaps"})
        j[key] = w.alive() ? w.stats.value(key, json(0)) : json(0);
      uint64_t conns = field<uint64_t>(j, "connections").value_or(0);
      uint64_t authed = std::min(conns, field<uint64_t>(j, "authenticated").value_or(0));
      j["anonymous"] = conns - authed;
      total_authenticated += authed;
      total_anonymous += conns - authed;
      if (w.alive())  // auth counters: refusals by reason, cache use (docs/auth.md)
        for (const auto& [key, value] : w.stats.items())
          if (key.starts_with("auth_")) j[key] = value;
      j["probes_served"] = w.alive() ? w.stats.value("probes", json(0)) : json(0);  // the worker's count
      ws.push_back(std::move(j));
    }
    st["workers"] = ws;
    st["auth"] = {{"enabled", config_.auth.enabled()},
                  {"required", config_.auth.required},
                  {"authenticated", total_authenticated},
                  {"anonymous", total_anonymous}};
    if (hub_) st["hub"] = hub_->stats(top_channels ? kTopChannels : 0);
    if (admin_) st["admin"] = admin_->stats();
    // The bus carries publishes between workers. The local engine's bus is the hub in
    // this process: degraded only if it is not running. (The Redis engine reports
    // degraded while Redis cannot be reached.)
    st["bus"] = {{"engine", config_.bus.engine}, {"degraded", hub_ == nullptr || hub_->degraded()}};
    return st;
  }

  std::pair<int, std::string> healthz() const {
    int ready = 0;
    for (const auto& w : workers_)
      if (w->state == WorkerState::Ready) ++ready;
    bool up = ready > 0 && !stopping_;
    // A degraded bus (Redis away) still serves its connections and reads: 200, but said.
    bool degraded = hub_ && hub_->degraded();
    json j = {{"status", !up ? "unavailable" : degraded ? "degraded" : "ok"},
              {"pid", ::getpid()},
              {"workers_ready", ready},
              {"workers", worker_count_},
              {"bus", degraded ? "degraded" : "ok"}};
    return {up ? 200 : 503, j.dump()};
  }

  // ---- control socket ---------------------------------------------------------------

  void startAdmin() {
    if (config_.admin.address.empty()) return;
    try {
      admin_ = std::make_unique<AdminServer>(io_, *parseSockAddr(config_.admin.address),
                                             AdminServer::Handlers{
                                                 .metrics = [this] { return renderMetrics(status(false)); },
                                                 .health = [this] { return healthz(); },
                                                 .status = [this] { return status().dump(); },
                                             });
    } catch (const std::exception& e) {
      if (options_.upgrade_from == 0) throw;
      // Upgrading: the old supervisor may still hold the port for a moment.
      logWarn(kLog, "admin listener {}: {}; retrying in 1s", config_.admin.address, e.what());
      admin_retry_.expires_after(std::chrono::seconds(1));
      admin_retry_.async_wait([this](boost::system::error_code ec) {
        if (!ec && !admin_) startAdmin();
      });
    }
  }

  void rebindControlSocket() {
    boost::system::error_code ec;
    if (control_) control_->close(ec);
    control_.reset();
    try {
      ::unlink(config_.supervisor.control_socket.c_str());
      control_ = std::make_unique<asio::local::stream_protocol::acceptor>(
          io_, asio::local::stream_protocol::endpoint(config_.supervisor.control_socket));
      if (::chmod(config_.supervisor.control_socket.c_str(), 0660) != 0)
        logWarn(kLog, "chmod 0660 {}: {}", config_.supervisor.control_socket, errnoText(errno));
      acceptControl();
    } catch (const std::exception& e) {
      logError(kLog, "control socket {}: {}", config_.supervisor.control_socket, e.what());
    }
  }

  void bindControlSocket() {
    const std::string& path = config_.supervisor.control_socket;
    ensureParentDir(path);
    using asio::local::stream_protocol;
    // A live socket means another supervisor owns it; a dead one is left over.
    {
      stream_protocol::socket probe(io_);
      boost::system::error_code ec;
      probe.connect(stream_protocol::endpoint(path), ec);
      if (!ec && options_.upgrade_from == 0)
        throw std::runtime_error("another supervisor is running on control socket " + path);
      // Upgrading: the old supervisor keeps its socket open, but the path is ours now.
      ::unlink(path.c_str());
    }
    control_ = std::make_unique<stream_protocol::acceptor>(io_, stream_protocol::endpoint(path));
    if (::chmod(path.c_str(), 0660) != 0) logWarn(kLog, "chmod 0660 {}: {}", path, errnoText(errno));
    acceptControl();
  }

  // Who may use the control socket: root, our own user (the workers that ask to be
  // adopted run as it), and members of the socket's group (the `dingo` group when
  // [supervisor] user is set). The file's mode (0660) says the same; this holds even
  // when someone loosens the mode or the folder.
  bool controlPeerAllowed(int fd, std::string& why) const {
    ucred cred{};
    socklen_t len = sizeof cred;
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
      why = "SO_PEERCRED: " + errnoText(errno);
      return false;
    }
    if (cred.uid == 0 || cred.uid == ::geteuid()) return true;
    struct stat st {};
    if (::stat(config_.supervisor.control_socket.c_str(), &st) != 0) {
      why = "stat: " + errnoText(errno);
      return false;
    }
    if (cred.gid == st.st_gid || processInGroup(cred.pid, st.st_gid)) return true;
    why = fmt::format("uid {} is neither root, uid {}, nor in group {}", cred.uid, ::geteuid(), st.st_gid);
    return false;
  }

  // The supplementary groups of `pid`, from /proc/PID/status ("Groups:\t4 27 1000").
  static bool processInGroup(pid_t pid, gid_t gid) {
    auto text = readFile(fmt::format("/proc/{}/status", pid));
    if (!text) return false;
    size_t at = text->find("\nGroups:");
    if (at == std::string::npos) return false;
    std::string_view line(*text);
    line = line.substr(at + 8, line.find('\n', at + 1) - (at + 8));
    while (!line.empty()) {
      size_t skip = line.find_first_not_of(" \t");
      if (skip == std::string_view::npos) break;
      line.remove_prefix(skip);
      gid_t g = 0;
      auto [p, ec] = std::from_chars(line.data(), line.data() + line.size(), g);
      if (ec != std::errc()) break;
      if (g == gid) return true;
      line.remove_prefix(static_cast<size_t>(p - line.data()));
    }
    return false;
  }

  void acceptControl() {
    control_->async_accept([this](boost::system::error_code ec, asio::local::stream_protocol::socket s) {
      if (ec == asio::error::operation_aborted) return;
      std::string why;
      if (!ec && !controlPeerAllowed(s.native_handle(), why)) {
        logWarn(kLog, "control socket: refused a caller: {}", why);
        std::string reply = json{{"ok", false}, {"error", "permission denied: " + why}}.dump() + "\n";
        // Small, on a fresh socket: one non-blocking send, then the socket closes.
        (void)::send(s.native_handle(), reply.data(), reply.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
      } else if (!ec) {
        auto conn = std::make_shared<ControlConn>(std::move(s), io_);
        serveControl(conn);
      }
      acceptControl();
    });
  }

  struct ControlConn : std::enable_shared_from_this<ControlConn> {
    ControlConn(asio::local::stream_protocol::socket s, asio::io_context& io)
        : socket(std::move(s)), deadline(io) {}
    asio::local::stream_protocol::socket socket;
    asio::steady_timer deadline;
    std::string in;
    std::string out;
    std::vector<UniqueFd> pass;  // fds to send with the answer (adopt)
    bool deferred = false;       // answered later (disconnect)
  };

  void serveControl(std::shared_ptr<ControlConn> c) {
    c->deadline.expires_after(std::chrono::seconds(5));
    c->deadline.async_wait([c](boost::system::error_code ec) {
      if (!ec) c->socket.close();
    });
    asio::async_read_until(
        c->socket, asio::dynamic_buffer(c->in, kMaxControlLine + 1), '\n',
        [this, c](boost::system::error_code ec, size_t line_end) {
          if (ec == asio::error::not_found) {
            // No newline within the limit: longer than any request. Answered, not dropped.
            c->out = json{{"ok", false}, {"error", fmt::format("a request is one line of at most {} bytes",
                                                                  kMaxControlLine)}}.dump() + "\n";
          } else if (ec) {
            c->deadline.cancel();
            return;
          } else {
            c->out = controlReply(std::string_view(c->in).substr(0, line_end), *c);
            if (c->deferred) return;  // its answer comes later, through sendControlReply
          }
          if (!c->pass.empty()) {
            // Small, on a fresh socket: one sendmsg with the fds, no waiting.
            std::vector<int> fds;
            for (auto& fd : c->pass) fds.push_back(fd.get());
            int err = ipc::sendWithFds(c->socket.native_handle(), c->out, fds);
            if (err) logError(kLog, "answering an adopt request: {}", errnoText(err));
            c->pass.clear();
            c->deadline.cancel();
            boost::system::error_code ignored;
            c->socket.shutdown(asio::socket_base::shutdown_both, ignored);
            return;
          }
          sendControlReply(c, std::move(c->out));
        });
  }

  void sendControlReply(std::shared_ptr<ControlConn> c, std::string text) {
    c->out = std::move(text);
    asio::async_write(c->socket, asio::buffer(c->out), [c](boost::system::error_code, size_t) {
      c->deadline.cancel();
      boost::system::error_code ignored;
      c->socket.shutdown(asio::socket_base::shutdown_both, ignored);
    });
  }

  // The answer to one request line, as the text to send. Nothing a caller sends can
  // make it throw: the line is parsed without exceptions, and strings that are not
  // UTF-8 (an error naming a byte of a bad config file) are sent with U+FFFD.
  std::string controlReply(std::string_view line, ControlConn& conn) {
    json reply;
    try {
      reply = handleControl(line, conn);
    } catch (const std::exception& e) {
      // A defect of ours, not of the caller: say so, keep serving.
      logError(kLog, "control request failed: {}", e.what());
      reply = json{{"ok", false}, {"error", std::string("internal error: ") + e.what()}};
    }
    return reply.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
  }

  json handleControl(std::string_view line, ControlConn& conn) {
    auto parsed = parseControlRequest(line);
    if (auto* why = std::get_if<std::string>(&parsed)) return json{{"ok", false}, {"error", *why}};
    const ControlRequest& req = std::get<ControlRequest>(parsed);
    using Cmd = ControlRequest::Cmd;
    switch (req.cmd) {
      case Cmd::Status: return json{{"ok", true}, {"status", status()}};
      case Cmd::Metrics: return json{{"ok", true}, {"text", renderMetrics(status(false))}};
      case Cmd::Adopt: return adopt(req.adopt, conn.socket.native_handle(), conn.pass);
      case Cmd::Stop: {
        Duration drain = req.drain.value_or(config_.supervisor.drain_timeout);
        logInfo(kLog, "stop requested over the control socket (drain {})", formatDuration(drain));
        asio::post(io_, [this, drain] { beginStop(drain); });
        return json{{"ok", true}};
      }
      case Cmd::Reload: {
        std::string error;
        if (!reload(error)) {
          logError(kLog, "reload refused, the running configuration stays: {}", error);
          return json{{"ok", false}, {"error", error}, {"kind", "config"}};
        }
        return json{{"ok", true}, {"generation", generation_}};
      }
      case Cmd::Upgrade: {
        std::string error;
        if (!upgrade(error)) return json{{"ok", false}, {"error", error}};
        return json{{"ok", true}, {"pid", upgrade_child_}};
      }
      case Cmd::Disconnect:
        conn.deferred = true;
        startDisconnect(req, conn.shared_from_this());
        return json{};
      case Cmd::DrainWorker: {
        std::string error;
        if (!drainWorker(req.worker, error)) return json{{"ok", false}, {"error", error}};
        return json{{"ok", true}};
      }
    }
    return json{{"ok", false}, {"error", "unhandled command"}};
  }

  // ---- signals and stopping ---------------------------------------------------------

  void setupSignals() {
    for (int sig : {SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2, SIGCHLD}) signals_.add(sig);
    waitSignal();
  }

  void waitSignal() {
    signals_.async_wait([this](boost::system::error_code ec, int sig) {
      if (ec) return;
      switch (sig) {
        case SIGCHLD: reapChildren(); break;
        case SIGTERM:
        case SIGINT:
          logInfo(kLog, "{}: draining (deadline {})", sig == SIGTERM ? "SIGTERM" : "SIGINT",
                  formatDuration(config_.supervisor.drain_timeout));
          beginStop(config_.supervisor.drain_timeout);
          break;
        case SIGQUIT:
          logInfo(kLog, "SIGQUIT: stopping now");
          stopNow();
          break;
        case SIGHUP: {
          std::string error;
          if (!reload(error)) logError(kLog, "SIGHUP: reload refused, the running configuration stays: {}", error);
          break;
        }
        case SIGUSR2: {
          std::string error;
          if (!upgrade(error)) logError(kLog, "SIGUSR2: upgrade refused: {}", error);
          break;
        }
        case SIGUSR1:
          logInfo(kLog, "SIGUSR1: logs go to stderr; nothing to reopen");
          break;
      }
      waitSignal();
    });
  }

  void closeListeners() {
    kernel_timer_.cancel();
    for (auto& l : listeners_) {
      for (auto& ls : l.sockets) {
        if (!ls.fd) continue;
        ls.pause_timer->cancel();
        unwatch(ls);
        ls.fd.reset();  // closes our copy of the listening socket
      }
    }
  }

  void beginStop(Duration drain) {
    if (stopping_) return;
    stopping_ = true;
    systemd::notify("STOPPING=1");
    closeListeners();
    ticket_timer_.cancel();
    ipc::DrainInfo info{drain.count()};
    forEachWorker([&](Worker& w) {
      w.respawn_timer.cancel();
      if (!w.alive()) return;
      w.state = WorkerState::Draining;
      if (!w.ipc || ipc::send(w.ipc->native_handle(), ipc::MsgType::Drain, ipc::asBytes(info)) != 0)
        signalWorker(w, SIGTERM);  // the worker drains on SIGTERM too
    });
    // Workers stop by the deadline themselves; this is the backstop.
    stop_timer_.expires_after(drain + std::chrono::seconds(1));
    stop_timer_.async_wait([this](boost::system::error_code ec) {
      if (ec) return;
      forEachWorker([&](Worker& w) {
        if (w.alive()) {
          logWarn(kLog, "worker {} (pid {}) missed the drain deadline; killing it", w.slot, w.pid);
          signalWorker(w, SIGKILL);
        }
      });
    });
    maybeFinishStop();
  }

  void stopNow() {
    stopping_ = true;
    systemd::notify("STOPPING=1");
    closeListeners();
    forEachWorker([&](Worker& w) {
      w.respawn_timer.cancel();
      signalWorker(w, SIGQUIT);
    });
    stop_timer_.expires_after(std::chrono::seconds(1));
    stop_timer_.async_wait([this](boost::system::error_code ec) {
      if (ec) return;
      forEachWorker([&](Worker& w) {
        signalWorker(w, SIGKILL);
      });
    });
    maybeFinishStop();
  }

  void maybeFinishStop() {
    bool any = false;
    forEachWorker([&](Worker& w) { any = any || w.alive(); });
    if (any) return;
    logInfo(kLog, "all workers stopped; exiting");
    io_.stop();
  }


  // ---- privileges -------------------------------------------------------------------

  void dropPrivileges() {
    const std::string& user = config_.supervisor.user;
    if (user.empty()) return;
    passwd* pw = ::getpwnam(user.c_str());
    if (!pw) throw std::runtime_error("[supervisor] user '" + user + "' does not exist");
    if (::geteuid() == pw->pw_uid) return;
    if (::geteuid() != 0)
      throw std::runtime_error("[supervisor] user = '" + user + "' needs the supervisor to start as root");
    // The files we made while root must stay usable after the switch.
    if (::chown(config_.supervisor.control_socket.c_str(), pw->pw_uid, pw->pw_gid) != 0 ||
        ::chown(config_.supervisor.pid_file.c_str(), pw->pw_uid, pw->pw_gid) != 0)
      logWarn(kLog, "chown to {}: {}", user, errnoText(errno));
    if (::initgroups(user.c_str(), pw->pw_gid) != 0 || ::setgid(pw->pw_gid) != 0 ||
        ::setuid(pw->pw_uid) != 0)
      throw std::runtime_error("dropping privileges to '" + user + "': " + errnoText(errno));
    logInfo(kLog, "running as user {} (uid {})", user, pw->pw_uid);
  }

  Config config_;  // replaced by a successful reload
  SupervisorOptions options_;
  asio::io_context io_;
  asio::signal_set signals_;
  asio::steady_timer stats_timer_;
  asio::steady_timer ticket_timer_;
  asio::steady_timer stop_timer_;
  std::unique_ptr<asio::local::stream_protocol::acceptor> control_;
  std::unique_ptr<AdminServer> admin_;
  std::unique_ptr<HubService> hub_;  // the bus engine's hub: HubServer (local) or RedisHubServer
  std::list<std::unique_ptr<Worker>> retired_;  // replaced workers, draining out
  static constexpr int kLingeringGenerations = 2;
  bool reloading_ = false;
  bool reload_failed_ = false;
  int draining_slot_ = -1;  // drain-worker under way

  int worker_count_ = 0;
  std::string gateway_path_;
  int generation_ = 1;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::vector<Listener> listeners_;
  // The kernel accept mode (null in handoff mode), and its re-check: a grace ending, or
  // kKernelTick, whichever comes first.
  std::unique_ptr<KernelDispatch> kernel_;
  static constexpr auto kKernelTick = std::chrono::milliseconds(100);
  asio::steady_timer kernel_timer_{io_};
  std::unique_ptr<Dispatcher> dispatcher_;
  std::vector<SlotView> views_;
  std::vector<int> candidates_;
  TicketKeyRing ticket_keys_;

  uint64_t handed_ = 0, retries_ = 0, dropped_ = 0;
  // Sockets accepted while every worker's queue was full, in order; accepting pauses
  // until they are all handed over. Bounded: beyond it a socket is dropped.
  static constexpr size_t kMaxParked = 1024;
  std::deque<Parked> parked_;
  uint64_t parked_total_ = 0;
  asio::steady_timer park_timer_{io_};
  asio::steady_timer watchdog_timer_{io_};
  asio::steady_timer sd_watchdog_timer_{io_};
  bool notified_ready_ = false;
  pid_t upgrade_child_ = -1;  // the new supervisor of an upgrade under way
  asio::steady_timer admin_retry_{io_};
  bool handed_over_ = false;  // the pid file and control socket path belong to it
  asio::steady_timer adopt_timer_{io_};
  std::set<int> awaiting_orphans_;  // slots whose old worker may still re-attach
  uint64_t adopted_total_ = 0;
  // dingoctl disconnect requests waiting for the workers' answers, by id.
  struct PendingDisconnect {
    std::shared_ptr<ControlConn> conn;
    std::vector<pid_t> waiting;  // workers asked that have not answered
    int asked = 0;
    uint64_t closed = 0;
    std::unique_ptr<asio::steady_timer> timer;
  };
  std::map<uint64_t, PendingDisconnect> disconnects_;
  uint64_t next_disconnect_ = 1;
  Clock::time_point started_;
  std::chrono::system_clock::time_point started_wall_;
  bool stopping_ = false;
  bool pid_file_written_ = false;
};

}  // namespace

int runSupervisor(const Config& config, const SupervisorOptions& options) {
  ::signal(SIGPIPE, SIG_IGN);
  Supervisor s(config, options);
  try {
    return s.run();
  } catch (...) {
    s.cleanup();
    throw;
  }
}

}  // namespace dingo
