// The supervisor: wires its parts together and keeps what belongs to no part.
//
//   Acceptor ──accepted socket──▶ HandOff ──views, send──▶ WorkerPool ◀──adopt── Adoption
//        ▲  (paused while parked)   │ ParkingQueue             │ events: hello, heartbeat,
//        └───────resume─────────────┘                          │ exit, changed, stopped
//   Prober ──probe, signal, verdict──▶ (pool, through ProbeWorkers)
//   ControlServer ──commands──▶ status, reload, upgrade (Upgrader), adopt, disconnect
//   KernelAccept ──slot sockets at hello──▶ workers; ──which slots fall back──▶ Acceptor
//   TicketKeys ──rotated──▶ every worker;  StatusDocument ◀──stats── every part;
//   signals, admin listener, pid file: here.
//
// No part calls another: each sees what it needs through a small interface (HandOff::
// Workers, Prober::Workers, WorkerPool::Processes) or callbacks, all wired below.
#include "supervisor/Supervisor.h"

#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <thread>

#include "core/Asio.h"
#include "core/Ipc.h"
#include "core/Log.h"
#include "core/Process.h"
#include "core/Systemd.h"
#include "supervisor/Acceptor.h"
#include "supervisor/AdminServer.h"
#include "supervisor/Adoption.h"
#include "supervisor/ControlServer.h"
#include "supervisor/Disconnects.h"
#include "supervisor/HandOff.h"
#include "supervisor/HubServer.h"
#include "supervisor/KernelAccept.h"
#include "supervisor/Prober.h"
#include "supervisor/RedisHubServer.h"
#include "supervisor/Spawn.h"
#include "supervisor/Status.h"
#include "supervisor/StatusDocument.h"
#include "supervisor/TicketKeys.h"
#include "supervisor/Upgrader.h"
#include "supervisor/WorkerPool.h"

namespace dingo {

namespace {

using json = nlohmann::json;
constexpr const char* kLog = "supervisor";

// Channels the status document lists under hub.top_channels.
constexpr size_t kTopChannels = 10;
constexpr auto kSampleEvery = std::chrono::seconds(1);
constexpr auto kAdminRetry = std::chrono::seconds(1);

class Supervisor {
 public:
  Supervisor(const Config& config, const SupervisorOptions& options)
      : config_(config),
        options_(options),
        time_(io_),
        signals_(io_),
        upgrader_(options.config_path),
        hand_off_workers_(*this),
        probe_workers_(*this) {
    worker_count_ = config_.supervisor.workers > 0
                        ? config_.supervisor.workers
                        : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
    gateway_path_ = config_.supervisor.gateway.empty() ? selfExeDir() + "/dingo-gateway" : config_.supervisor.gateway;
    processes_ = std::make_unique<GatewayProcesses>(gateway_path_, options_.config_path);
    stats_timer_ = time_.makeTimer();
    sd_watchdog_timer_ = time_.makeTimer();
    admin_retry_ = time_.makeTimer();
    control_ = std::make_unique<ControlServer>(io_, config_.supervisor, controlCommands());
    acceptor_ = std::make_unique<Acceptor>(
        io_, config_.listen,
        [this](UniqueFd fd, const SockAddr& peer, uint16_t listener, bool tls) {
          hand_off_->offer(std::move(fd), peer, listener, tls);
        },
        [this] { return hand_off_->parked(); });
    ticket_keys_ = std::make_unique<TicketKeys>(time_, config_.tls, [this] {
      for (int i = 0; i < pool_->size(); ++i) {
        Worker& w = pool_->current(i);
        if (w.state == WorkerState::Ready || w.state == WorkerState::Draining) sendTicketKeys(w);
      }
    });
    disconnects_ = std::make_unique<Disconnects>(time_, [this](const std::string& payload) {
      std::vector<pid_t> asked;
      auto ask = [&](Worker& w) {
        if (w.alive() && pool_->send(w, ipc::MsgType::Disconnect, payload) == 0) asked.push_back(w.pid);
      };
      for (int i = 0; i < pool_->size(); ++i) ask(pool_->current(i));
      for (const auto& w : pool_->retired()) ask(*w);  // draining, with connections still open
      return asked;
    });
  }

  int run() {
    started_ = time_.now();
    started_wall_ = std::chrono::system_clock::now();
    if (::access(gateway_path_.c_str(), X_OK) != 0)
      throw std::runtime_error(fmt::format("gateway binary {}: {}", gateway_path_, errnoText(errno)));

    control_->bind(options_.upgrade_from > 0);  // first: it tells whether another supervisor is running
    // The kernel accept mode: SO_REUSEPORT sockets per slot (least-conn needs the hand-off).
    bool kernel = config_.supervisor.accept == AcceptMode::Kernel &&
                  config_.supervisor.dispatch != DispatchPolicy::LeastConn;
    acceptor_->bind(kernel ? static_cast<size_t>(worker_count_) : 0);
    startAdmin();
    writePidFile(config_.supervisor.pid_file, ::getpid());
    pid_file_written_ = true;
    dropPrivileges(kLog, config_.supervisor.user, {config_.supervisor.control_socket, config_.supervisor.pid_file});

    ticket_keys_->start();
    hub_ = makeHub();
    pool_ = std::make_unique<WorkerPool>(io_, time_, config_.supervisor, worker_count_, *processes_, *hub_,
                                         poolEvents());
    adoption_ = std::make_unique<Adoption>(time_, *pool_, config_);
    prober_ = std::make_unique<Prober>(io_, time_, config_.watchdog, worker_count_, probe_workers_);
    hand_off_ = std::make_unique<HandOff>(time_, hand_off_workers_,
                                          makeDispatcher(config_.supervisor.dispatch, static_cast<size_t>(worker_count_)),
                                          config_.gateway, [this] { acceptor_->resume(); });
    startKernelAccept();
    setupSignals();
    adoption_->start(options_.upgrade_from > 0);
    acceptor_->resume();
    if (kernel_) kernel_->update();
    scheduleStats();
    prober_->start();
    scheduleSystemdWatchdog();
    logInfo(kLog, "started: {} workers, dispatch {}, accept {}, {} listener(s), control socket {}{}", worker_count_,
            dispatchName(config_.supervisor.dispatch), kernel_ ? "kernel" : "handoff", acceptor_->size(), config_.supervisor.control_socket,
            config_.admin.address.empty() ? "" : ", admin http://" + config_.admin.address);
    if (config_.bus.engine == "local" && !config_.bus.redis.empty())
      logInfo(kLog, "[bus] redis lists {} address(es), which the local engine does not use", config_.bus.redis.size());
    io_.run();
    cleanup();
    return 0;
  }

  void cleanup() {
    // After an upgrade the pid file and the control socket's path are the successor's.
    bool ours = !upgrader_.handedOver();
    if (pid_file_written_ && ours) ::unlink(config_.supervisor.pid_file.c_str());
    if (pid_file_written_ && ours) ::unlink(Adoption::workersFile(config_.supervisor.pid_file).c_str());
    pid_file_written_ = false;
    control_->close(ours);
  }

 private:
  // The bus engine's hub, in this process: the local sequencer, or the Redis engine.
  std::unique_ptr<HubService> makeHub() {
    if (config_.bus.engine == "redis") return std::make_unique<RedisHubServer>(io_, config_.bus, config_.history, nodeRegistryOptions(config_));
    return std::make_unique<HubServer>(io_, config_.history);
  }

  // ---- what the parts see of the workers ------------------------------------------

  struct HandOffWorkers final : HandOff::Workers {
    explicit HandOffWorkers(Supervisor& s) : s(s) {}
    void views(std::vector<SlotView>& out) override { s.pool_->views(out); }
    int send(int slot, const ipc::HandoffInfo& info, int fd) override { return s.pool_->handOff(slot, info, fd); }
    bool coming() const override { return s.adoption_->awaiting() || s.pool_->anyStarting(); }
    Supervisor& s;
  };

  struct ProbeWorkers final : Prober::Workers {
    explicit ProbeWorkers(Supervisor& s) : s(s) {}
    std::vector<Prober::Target> current() override {
      std::vector<Prober::Target> out;
      for (int i = 0; i < s.pool_->size(); ++i) {
        const Worker& w = s.pool_->current(i);
        out.push_back({w.id, w.slot, w.pid, w.state == WorkerState::Ready || w.state == WorkerState::Suspect});
      }
      return out;
    }
    int sendProbe(uint64_t id, int fd) override {
      Worker* w = s.pool_->find(id);
      if (!w) return EPIPE;
      ipc::HandoffInfo info;
      info.listener = ipc::kProbeListener;
      info.peer.ss_family = AF_UNIX;
      return s.pool_->send(*w, ipc::MsgType::Handoff, ipc::asBytes(info), fd);
    }
    void signal(uint64_t id, pid_t pid, int sig) override {
      Worker* w = s.pool_->find(id);
      if (w && w->pid == pid) s.pool_->signal(*w, sig);
    }
    void suspect(uint64_t id, bool on) override {
      s.pool_->setSuspect(id, on);
      if (s.kernel_) s.kernel_->update();  // a suspect slot leaves the program at once
    }
    Supervisor& s;
  };

  WorkerPool::Events poolEvents() {
    return {
        .hello =
            [this](Worker& w) {
              sendTicketKeys(w);
              if (kernel_ && !stopping_) kernel_->give(w);  // after the keys, before it is ready
            },
        .ready =
            [this] {
              if (kernel_) kernel_->update();
              notifyReadyOnce();
            },
        .started = [this](const Worker& w) { prober_->workerStarted(w.id); },
        .exited =
            [this](const Worker& w) {
              prober_->workerExited(w.id);
              if (kernel_) kernel_->update();
            },
        .removed = [this](uint64_t id) { prober_->workerRemoved(id); },
        .heartbeat = [this](const Worker& w) { prober_->heartbeat(w.id, w.figures.progress); },
        .disconnected = [this](pid_t pid, uint64_t id, uint64_t closed) { disconnects_->answer(id, pid, closed); },
        .changed =
            [this] {
              if (pid_file_written_ && !upgrader_.handedOver()) adoption_->saveWorkers();
            },
        .reloaded =
            [](int generation, bool) { systemd::notify(fmt::format("READY=1\nSTATUS=serving generation {}", generation)); },
        .stopped = [this] { io_.stop(); },
    };
  }

  // The kernel accept mode's part, when some listener is a SO_REUSEPORT group.
  void startKernelAccept() {
    auto groups = acceptor_->groups();
    if (groups.empty()) return;
    kernel_ = std::make_unique<KernelAccept>(
        time_, config_.supervisor.dispatch, static_cast<size_t>(worker_count_), config_.supervisor.slot_grace,
        std::move(groups),
        KernelAccept::Hooks{
            .slots =
                [this] {
                  std::vector<KernelDispatch::Slot> out;
                  for (int i = 0; i < pool_->size(); ++i) out.push_back(KernelAccept::slotOf(pool_->current(i)));
                  return out;
                },
            .send = [this](const Worker& w, std::string_view payload,
                           int fd) { return pool_->send(w, ipc::MsgType::Listen, payload, fd); },
            .fallbackChanged = [this] { acceptor_->resume(); },
        });
    acceptor_->setFallback([this](size_t slot) { return kernel_->fallback(slot); });
  }

  void sendTicketKeys(Worker& w) {
    if (!w.connected()) return;
    int err = pool_->send(w, ipc::MsgType::TicketKeys, ticket_keys_->serialized());
    if (err) logWarn(kLog, "sending ticket keys to worker {}: {}", w.slot, errnoText(err));
  }

  // ---- commands: the control socket's and the signals' ----------------------------

  ControlServer::Commands controlCommands() {
    return {
        .status = [this] { return status(); },
        .metrics = [this] { return renderMetrics(status(false)); },
        .adopt = [this](const AdoptRequest& req, int sock,
                        std::vector<UniqueFd>& pass) { return adoption_->adopt(req, sock, pass); },
        .stop = [this](Duration drain) { beginStop(drain); },
        .reload = [this](std::string& error) -> std::optional<int> {
          if (!reload(error)) return std::nullopt;
          return pool_->generation();
        },
        .upgrade = [this](std::string& error) -> std::optional<pid_t> {
          if (!upgrade(error)) return std::nullopt;
          return upgrader_.child();
        },
        .drainWorker = [this](int slot, std::string& error) { return pool_->drainWorker(slot, error); },
        .disconnect =
            [this](const ControlRequest& req, ControlServer::Reply reply) {
              disconnects_->start(req.user, req.reason, std::move(reply));
            },
    };
  }

  // Reads the config file again and, if it is valid and can be applied, replaces the
  // workers one slot at a time (WorkerPool::beginReload). Returns false with `error`
  // set, and changes nothing, when the file is bad or asks for what only a restart can do.
  bool reload(std::string& error) {
    if (stopping_) {
      error = "the supervisor is stopping";
      return false;
    }
    if (pool_->reloading()) {
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
    std::string why = restartOnlyChange(config_, next);
    if (why.empty() && kernel_ && next.supervisor.dispatch != config_.supervisor.dispatch)
      why = "[supervisor] dispatch (with accept = kernel)";
    if (!why.empty()) {
      error = why + " changes only with a restart (or an upgrade); nothing was reloaded";
      return false;
    }
    config_ = std::move(next);  // the parts hold references into it: they see the new values
    hand_off_->setDispatcher(makeDispatcher(config_.supervisor.dispatch, static_cast<size_t>(worker_count_)));
    systemd::notify("RELOADING=1");
    pool_->beginReload(options_.config_path);
    return true;
  }

  bool upgrade(std::string& error) {
    if (stopping_ || pool_->reloading()) {
      error = "the supervisor is stopping or reloading";
      return false;
    }
    // The admin port is the new supervisor's to bind (a moment without /metrics).
    return upgrader_.start(acceptor_->fds(), [this] { admin_.reset(); }, error);
  }

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
        case SIGUSR1: logInfo(kLog, "SIGUSR1: logs go to stderr; nothing to reopen"); break;
      }
      waitSignal();
    });
  }

  // One SIGCHLD handler reaps every child: workers (the pool's) and the upgrade's.
  void reapChildren() {
    for (;;) {
      int status = 0;
      pid_t pid = ::waitpid(-1, &status, WNOHANG);
      if (pid <= 0) break;
      if (upgrader_.onChildExit(pid, status)) {
        // Its pid file, control socket and admin port are gone with it: ours again.
        writePidFile(config_.supervisor.pid_file, ::getpid());
        control_->rebind();
        startAdmin();
        continue;
      }
      std::string how = WIFSIGNALED(status) ? fmt::format("killed by signal {}", WTERMSIG(status))
                                            : fmt::format("exited with code {}", WEXITSTATUS(status));
      pool_->onChildExit(pid, how, WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
  }

  // ---- stopping -------------------------------------------------------------------

  void beginStop(Duration drain) {
    if (stopping_) return;
    stopAccepting();
    ticket_keys_->stop();
    pool_->beginStop(drain);  // its `stopped` event ends the event loop
  }

  void stopNow() {
    stopAccepting();
    pool_->stopNow();
  }

  // The first steps of every stop: no new connection reaches a worker, and this host
  // leaves the node registry.
  void stopAccepting() {
    stopping_ = true;
    systemd::notify("STOPPING=1");
    if (kernel_) kernel_->stop();
    acceptor_->close();
    if (hub_) hub_->withdraw();  // nobody can connect here any more: out of the node registry
    hand_off_->stop();
    prober_->stop();
  }

  // ---- systemd ----------------------------------------------------------------------

  // sd_notify: READY once every worker of the first generation is ready; WATCHDOG=1 at
  // half of WatchdogSec from the event loop (so a stuck loop stops it); STOPPING=1.
  void notifyReadyOnce() {
    if (notified_ready_ || !pool_->allReady()) return;
    notified_ready_ = true;
    systemd::notify(fmt::format("READY=1\nSTATUS=serving with {} workers\nMAINPID={}", worker_count_, ::getpid()));
    if (options_.upgrade_from > 0) Upgrader::tellPredecessor(options_.upgrade_from);
  }

  void scheduleSystemdWatchdog() {
    auto interval = systemd::watchdogInterval();
    if (!interval) return;
    sd_watchdog_timer_->start(*interval, [this] {
      if (stopping_) return;
      systemd::notify("WATCHDOG=1");
      scheduleSystemdWatchdog();
    });
  }

  // ---- status -----------------------------------------------------------------------

  void scheduleStats() {
    stats_timer_->start(kSampleEvery, [this] {
      pool_->sample();
      scheduleStats();
    });
  }

  // The status document (supervisor/StatusDocument.h). Metrics leave out what they do
  // not export: the top channels, a pass over every channel.
  StatusSources statusSources() const {
    return {config_,    options_.config_path, started_,   started_wall_, worker_count_,
            stopping_,  upgrader_.running(),  *pool_,     *prober_,      *acceptor_,
            *hand_off_, *adoption_,           kernel_.get(), hub_.get(), admin_.get()};
  }
  json status(bool top_channels = true) const {
    return statusDocument(statusSources(), time_.now(), top_channels ? kTopChannels : 0);
  }
  std::pair<int, std::string> healthz() const { return healthzAnswer(statusSources()); }

  void startAdmin() {
    if (config_.admin.address.empty()) return;
    auto address = parseSockAddr(config_.admin.address);
    if (!address) throw std::runtime_error("[admin] address " + config_.admin.address + " does not parse");
    try {
      admin_ = std::make_unique<AdminServer>(io_, *address,
                                             AdminServer::Handlers{
                                                 .metrics = [this] { return renderMetrics(status(false)); },
                                                 .health = [this] { return healthz(); },
                                                 .status = [this] { return status().dump(); },
                                             });
    } catch (const std::exception& e) {
      if (options_.upgrade_from == 0) throw;
      // Upgrading: the old supervisor may still hold the port for a moment.
      logWarn(kLog, "admin listener {}: {}; retrying in {}s", config_.admin.address, e.what(), kAdminRetry.count());
      admin_retry_->start(kAdminRetry, [this] {
        if (!admin_) startAdmin();
      });
    }
  }

  Config config_;  // the running configuration: a reload replaces its value in place
  SupervisorOptions options_;
  asio::io_context io_;
  AsioTimeSource time_;
  asio::signal_set signals_;
  int worker_count_ = 0;
  std::string gateway_path_;
  Upgrader upgrader_;
  HandOffWorkers hand_off_workers_;
  ProbeWorkers probe_workers_;
  std::unique_ptr<WorkerPool::Processes> processes_;
  std::unique_ptr<ControlServer> control_;
  std::unique_ptr<Acceptor> acceptor_;
  std::unique_ptr<TicketKeys> ticket_keys_;
  std::unique_ptr<Disconnects> disconnects_;
  std::unique_ptr<AdminServer> admin_;
  std::unique_ptr<HubService> hub_;  // the bus engine's hub: HubServer (local) or RedisHubServer
  std::unique_ptr<WorkerPool> pool_;
  std::unique_ptr<Adoption> adoption_;
  std::unique_ptr<Prober> prober_;
  std::unique_ptr<HandOff> hand_off_;
  std::unique_ptr<KernelAccept> kernel_;  // null in handoff mode
  std::unique_ptr<Timer> stats_timer_;
  std::unique_ptr<Timer> sd_watchdog_timer_;
  std::unique_ptr<Timer> admin_retry_;
  SteadyTime started_{};
  std::chrono::system_clock::time_point started_wall_;
  bool stopping_ = false;
  bool pid_file_written_ = false;
  bool notified_ready_ = false;
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
