#include "supervisor/WorkerPool.h"

#include <fcntl.h>
#include <sys/socket.h>

#include <csignal>

#include "core/Asio.h"
#include "core/Json.h"
#include "core/Log.h"

namespace dingo {

namespace {
constexpr const char* kLog = "supervisor";
using asio::posix::stream_descriptor;
// Messages read from one worker per wake-up before the others get a turn.
constexpr int kMessagesPerWake = 64;
}  // namespace

struct WorkerChannels {
  std::unique_ptr<stream_descriptor> ipc;    // our end of its IPC socketpair
  std::unique_ptr<stream_descriptor> pidfd;  // adopted workers: their exit, and signals
};

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

Worker::Worker(uint64_t id_, int slot_, std::unique_ptr<Timer> timer_)
    : id(id_), slot(slot_), channels(std::make_unique<WorkerChannels>()), timer(std::move(timer_)) {}
Worker::~Worker() = default;
bool Worker::connected() const { return channels->ipc != nullptr; }
int Worker::ipcFd() const { return channels->ipc ? channels->ipc->native_handle() : -1; }

WorkerPool::WorkerPool(asio::io_context& io, TimeSource& time, const SupervisorConfig& config, int worker_count,
                       Processes& processes, HubService& hub, Events events)
    : io_(io),
      time_(time),
      config_(config),
      processes_(processes),
      hub_(hub),
      events_(std::move(events)),
      stop_timer_(time.makeTimer()) {
  // An event nobody listens to is a no-op.
  auto fill = [](auto& f) {
    if (!f) f = [](auto&&...) {};
  };
  fill(events_.hello), fill(events_.ready), fill(events_.started), fill(events_.exited), fill(events_.removed);
  fill(events_.heartbeat), fill(events_.disconnected), fill(events_.changed), fill(events_.reloaded);
  fill(events_.stopped);
  for (int i = 0; i < worker_count; ++i) slots_.push_back(makeWorker(i));
}

WorkerPool::~WorkerPool() = default;

std::unique_ptr<Worker> WorkerPool::makeWorker(int slot) {
  return std::make_unique<Worker>(next_id_++, slot, time_.makeTimer());
}

Worker* WorkerPool::find(uint64_t id) {
  Worker* found = nullptr;
  forEach([&](Worker& w) {
    if (w.id == id) found = &w;
  });
  return found;
}

bool WorkerPool::anyStarting() const {
  for (const auto& w : slots_)
    if (w->alive() && w->state == WorkerState::Starting) return true;
  return false;
}

bool WorkerPool::allReady() const {
  for (const auto& w : slots_)
    if (w->state != WorkerState::Ready) return false;
  return true;
}

bool WorkerPool::slotTaken(int slot) const {
  const Worker& w = current(slot);
  return w.alive() || w.successor != nullptr;
}

void WorkerPool::start(const std::set<int>& skip) {
  for (auto& w : slots_)
    if (!skip.count(w->slot)) spawn(*w);
}

void WorkerPool::spawnSlot(int slot) { spawn(current(slot)); }

// ---- processes ------------------------------------------------------------------------

void WorkerPool::spawn(Worker& w) {
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
  std::string error;
  pid_t pid = processes_.start(w.slot, generation_, theirs.get(), hub_theirs.get(), error);
  if (pid < 0) {
    logError(kLog, "starting worker {} {}", w.slot, error);  // error: "(PATH): WHY"
    scheduleRespawn(w);
    return;
  }
  attach(w, pid, std::move(ours), std::move(hub_ours), generation_);
  logInfo(kLog, "worker {} started (pid {})", w.slot, pid);
}

// Gives `w` a running process (spawned, or adopted): the state of a fresh worker and
// our ends of its IPC socket and hub link.
void WorkerPool::attach(Worker& w, pid_t pid, UniqueFd ipc, UniqueFd hub, int generation) {
  int flags = ::fcntl(ipc.get(), F_GETFL);
  if (flags < 0 || ::fcntl(ipc.get(), F_SETFL, flags | O_NONBLOCK) != 0)
    logError(kLog, "O_NONBLOCK on worker {}'s channel: {}", w.slot, errnoText(errno));
  w.pid = pid;
  w.generation = generation;
  w.state = WorkerState::Starting;
  w.started_at = time_.now();
  w.figures.reset();
  w.adopted = false;
  w.channels->pidfd.reset();
  w.channels->ipc = std::make_unique<stream_descriptor>(io_, ipc.release());
  w.hub_link = hub_.attach(hub.release(), w.slot);
  events_.started(w);
  watchIpc(w);
  events_.changed();
}

void WorkerPool::signal(const Worker& w, int sig) {
  if (!w.alive()) return;
  processes_.signal(w.pid, w.channels->pidfd ? w.channels->pidfd->native_handle() : -1, sig);
}

int WorkerPool::send(const Worker& w, ipc::MsgType type, std::string_view payload, int fd) {
  if (!w.connected()) return EPIPE;
  return ipc::send(w.ipcFd(), type, payload, fd);
}

void WorkerPool::views(std::vector<SlotView>& out) const {
  out.resize(slots_.size());
  for (size_t i = 0; i < slots_.size(); ++i) {
    const Worker& w = *slots_[i];
    out[i].eligible =
        (w.state == WorkerState::Ready || (stopping_ && w.state == WorkerState::Draining)) && w.connected();
    out[i].load = w.figures.loadEstimate();
  }
}

int WorkerPool::handOff(int slot, const ipc::HandoffInfo& info, int fd) {
  Worker& w = current(slot);
  int err = send(w, ipc::MsgType::Handoff, ipc::asBytes(info), fd);
  if (err == 0) ++w.figures.handed;
  return err;
}

void WorkerPool::sample() {
  SteadyTime now = time_.now();
  for (auto& w : slots_)
    if (w->alive()) w->figures.sample(w->pid, now);
}

void WorkerPool::setSuspect(uint64_t id, bool suspect) {
  Worker* w = find(id);
  if (!w) return;
  if (suspect && w->state == WorkerState::Ready) w->state = WorkerState::Suspect;
  if (!suspect && w->state == WorkerState::Suspect) w->state = WorkerState::Ready;
}

void WorkerPool::watchIpc(Worker& w) {
  if (!w.connected()) return;
  w.channels->ipc->async_wait(stream_descriptor::wait_read, [this, id = w.id, pid = w.pid](
                                                                boost::system::error_code ec) {
    Worker* found = ec ? nullptr : find(id);
    if (!found || found->pid != pid || !found->connected()) return;
    readIpc(*found);
  });
}

void WorkerPool::readIpc(Worker& w) {
  for (int i = 0; i < kMessagesPerWake; ++i) {
    ipc::Message msg;
    int rc = ipc::receive(w.ipcFd(), msg);
    if (rc == EAGAIN) break;
    if (rc == EBADMSG) {
      logWarn(kLog, "worker {} sent a malformed message; ignored", w.slot);
      continue;
    }
    if (rc != 0) {
      // End of stream: the worker is exiting (SIGCHLD follows) or broken.
      if (w.state != WorkerState::Draining) logWarn(kLog, "worker {} (pid {}) closed its control channel", w.slot, w.pid);
      w.channels->ipc.reset();
      // A draining worker closes it on its way out; any other is broken.
      if (w.state != WorkerState::Exited && w.state != WorkerState::Draining && w.pid > 0 && !stopping_)
        signal(w, SIGKILL);
      return;
    }
    onMessage(w, msg);
    if (!w.connected()) return;
  }
  watchIpc(w);
}

void WorkerPool::onMessage(Worker& w, const ipc::Message& msg) {
  switch (msg.type) {
    case ipc::MsgType::Hello: {
      if (w.state != WorkerState::Starting) break;
      events_.hello(w);  // the ticket keys go before any TLS socket
      w.state = stopping_ ? WorkerState::Draining : WorkerState::Ready;
      logInfo(kLog, "worker {} ready (pid {}, generation {}) after {}ms", w.slot, w.pid, w.generation,
              std::chrono::duration_cast<std::chrono::milliseconds>(time_.now() - w.started_at).count());
      if (w.is_successor && !stopping_) asio::post(io_, [this, slot = w.slot] { promote(slot); });
      events_.ready();
      break;
    }
    case ipc::MsgType::Stats: {
      auto stats = parseWorkerStats(msg.payload);
      if (!stats) {
        logWarn(kLog, "worker {} sent stats that are not a flat JSON object of numbers; ignored", w.slot);
        break;
      }
      w.figures.report(std::move(*stats));
      events_.heartbeat(w);
      break;
    }
    case ipc::MsgType::Disconnected: {
      ParsedJson j = parseJson(msg.payload, 1);
      auto id = field<uint64_t>(j.value, "id");
      auto closed = field<uint64_t>(j.value, "closed");
      if (j.ok() && id && closed) events_.disconnected(w.pid, *id, *closed);
      break;
    }
    default:
      logWarn(kLog, "worker {} sent unexpected message type {}", w.slot, static_cast<int>(msg.type));
  }
}

void WorkerPool::watchPidfd(Worker& w) {
  w.channels->pidfd->async_wait(stream_descriptor::wait_read, [this, id = w.id, pid = w.pid](
                                                                  boost::system::error_code ec) {
    Worker* found = ec ? nullptr : find(id);
    if (!found || found->pid != pid || !found->adopted) return;
    onExit(*found, "exited (adopted: exit status unknown)", found->state == WorkerState::Draining);
  });
}

void WorkerPool::onChildExit(pid_t pid, const std::string& how, bool exit_zero) {
  Worker* exited = nullptr;
  forEach([&](Worker& w) {
    if (w.pid == pid && !w.adopted) exited = &w;
  });
  if (exited) onExit(*exited, how, exit_zero);
}

void WorkerPool::onExit(Worker& w, const std::string& how, bool exit_zero) {
  w.channels->pidfd.reset();
  w.adopted = false;
  if (w.retired || w.is_successor) {
    w.pid = -1;
    events_.changed();
    w.channels->ipc.reset();
    if (w.hub_link) hub_.detach(w.hub_link);
    w.hub_link = 0;
    w.state = WorkerState::Exited;
    events_.exited(w);
    if (w.retired) {
      logInfo(kLog, "worker {} of generation {} {} (replaced)", w.slot, w.generation, how);
      asio::post(io_, [this, id = w.id] {
        retired_.remove_if([id](const auto& r) { return r->id == id; });
        events_.removed(id);
      });
    } else {
      // The new worker died before it was ready: the old one keeps the slot.
      logError(kLog, "new worker {} of generation {} {} before it was ready; keeping the old one", w.slot,
               w.generation, how);
      reload_failed_ = true;
      asio::post(io_, [this, slot = w.slot, id = w.id] {
        Worker& c = current(slot);
        if (c.successor && c.successor->id == id) {
          c.successor.reset();
          events_.removed(id);
        }
        replaceNext(slot + 1);
      });
    }
    if (stopping_) asio::post(io_, [this] { maybeFinishStop(); });
    return;
  }
  auto uptime = time_.now() - w.started_at;
  w.pid = -1;
  events_.changed();
  w.channels->ipc.reset();
  if (w.hub_link) hub_.detach(w.hub_link);
  w.hub_link = 0;
  WorkerState was = w.state;
  w.state = WorkerState::Exited;
  events_.exited(w);
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
  if (uptime >= config_.stable_after) {
    w.backoff = config_.restart_backoff;
  } else {
    w.backoff = w.backoff.count() == 0 ? config_.restart_backoff
                                       : std::min(w.backoff * 2, config_.restart_backoff_max);
  }
  ++w.restarts;
  if (w.backoff > config_.restart_backoff) {
    logError(kLog, "worker {} {} after {}ms: CRASH LOOP (restart {} of this slot); respawning in {}", w.slot, how,
             std::chrono::duration_cast<std::chrono::milliseconds>(uptime).count(), w.restarts,
             formatDuration(w.backoff));
  } else {
    logAt(clean ? LogLevel::Info : LogLevel::Error, kLog, "worker {} {}; respawning in {}", w.slot, how,
          formatDuration(w.backoff));
  }
  scheduleRespawn(w);
}

void WorkerPool::scheduleRespawn(Worker& w) {
  if (stopping_) return;
  if (w.backoff.count() == 0) w.backoff = config_.restart_backoff;
  w.timer->start(w.backoff, [this, &w] {
    if (!w.alive()) spawn(w);
  });
}

// ---- generations: reload and drain-worker -------------------------------------------

void WorkerPool::beginReload(std::string_view what) {
  ++generation_;
  reloading_ = true;
  reload_failed_ = false;
  logInfo(kLog, "reloading {}: generation {}, replacing {} workers one by one", what, generation_, size());
  replaceNext(0);
}

// Starts the successor of slot `slot` (or finishes the reload past the last slot).
void WorkerPool::replaceNext(int slot) {
  if (!reloading_) return;
  if (stopping_ || slot >= size()) {
    reloading_ = false;
    logAt(reload_failed_ ? LogLevel::Error : LogLevel::Info, kLog, "reload to generation {} {}", generation_,
          reload_failed_ ? "finished with errors: some slots kept their old worker" : "done");
    events_.reloaded(generation_, reload_failed_);
    return;
  }
  startSuccessor(slot);
}

void WorkerPool::startSuccessor(int slot) {
  Worker& cur = current(slot);
  cur.successor = makeWorker(slot);
  cur.successor->is_successor = true;
  spawn(*cur.successor);
  // A successor that never says hello is given up, and the old worker kept.
  Worker* succ = cur.successor.get();
  succ->timer->start(kSuccessorReadyWithin, [this, slot, succ] {
    if (current(slot).successor.get() != succ || succ->state != WorkerState::Starting) return;
    logError(kLog, "new worker {} was not ready within {}s; keeping the old one", slot,
             kSuccessorReadyWithin.count());
    signal(*succ, SIGKILL);
  });
}

// The slot's successor is ready: it takes the slot, the old worker drains.
void WorkerPool::promote(int slot) {
  auto& place = slots_[static_cast<size_t>(slot)];
  if (!place->successor || place->successor->state != WorkerState::Ready) return;
  std::unique_ptr<Worker> old = std::move(place);
  place = std::move(old->successor);
  place->is_successor = false;
  place->timer->cancel();
  place->restarts = old->restarts;
  retire(std::move(old));
  if (draining_slot_ == slot) draining_slot_ = -1;
  else replaceNext(slot + 1);
}

void WorkerPool::retire(std::unique_ptr<Worker> w) {
  w->retired = true;
  w->timer->cancel();
  if (w->alive()) {
    w->state = WorkerState::Draining;
    ipc::DrainInfo info{config_.drain_timeout.count()};
    if (send(*w, ipc::MsgType::Drain, ipc::asBytes(info)) != 0) signal(*w, SIGTERM);
    // The backstop, should it miss its own deadline.
    Worker* ptr = w.get();
    w->timer->start(config_.drain_timeout + kDrainGrace, [this, ptr] {
      if (!ptr->alive()) return;
      logWarn(kLog, "replaced worker {} (pid {}) missed its drain deadline; killing it", ptr->slot, ptr->pid);
      signal(*ptr, SIGKILL);
    });
    logInfo(kLog, "worker {} (pid {}, generation {}) replaced; draining", w->slot, w->pid, w->generation);
  }
  // At most kLingeringGenerations older generations: the oldest go now.
  for (auto& r : retired_)
    if (r->alive() && r->generation + kLingeringGenerations < generation_) {
      logWarn(kLog, "worker {} (pid {}) of generation {} is too old to linger; killing it", r->slot, r->pid,
              r->generation);
      signal(*r, SIGKILL);
    }
  retired_.push_back(std::move(w));
}

bool WorkerPool::drainWorker(int slot, std::string& error) {
  if (slot < 0 || slot >= size()) {
    error = fmt::format("no worker {} (0 to {})", slot, size() - 1);
    return false;
  }
  if (stopping_ || reloading_ || draining_slot_ >= 0 || current(slot).successor) {
    error = "a reload or another drain is under way";
    return false;
  }
  logInfo(kLog, "draining worker {} on request; a new worker takes its place", slot);
  draining_slot_ = slot;
  startSuccessor(slot);
  return true;
}

// ---- adoption -------------------------------------------------------------------------

Worker& WorkerPool::adopt(int slot, std::string_view keep_reason, pid_t pid, UniqueFd ipc, UniqueFd hub,
                          UniqueFd pidfd, int generation, uint64_t connections) {
  std::unique_ptr<Worker> spare;
  Worker* w;
  if (keep_reason.empty()) {
    w = &current(slot);
    w->timer->cancel();
  } else {
    spare = makeWorker(slot);
    w = spare.get();
  }
  attach(*w, pid, std::move(ipc), std::move(hub), generation);
  w->adopted = true;
  w->channels->pidfd = std::make_unique<stream_descriptor>(io_, pidfd.release());
  watchPidfd(*w);
  if (spare) {
    logInfo(kLog, "adopted worker {} (pid {}, {} connections) to drain it: {}", slot, pid, connections, keep_reason);
    retire(std::move(spare));
    events_.changed();
  } else {
    logInfo(kLog, "adopted worker {} (pid {}, generation {}, {} connections) of the previous supervisor", slot, pid,
            w->generation, connections);
  }
  return *w;
}

// ---- stopping -------------------------------------------------------------------------

void WorkerPool::beginStop(Duration drain) {
  stopping_ = true;
  ipc::DrainInfo info{drain.count()};
  forEach([&](Worker& w) {
    w.timer->cancel();
    if (!w.alive()) return;
    w.state = WorkerState::Draining;
    if (send(w, ipc::MsgType::Drain, ipc::asBytes(info)) != 0) signal(w, SIGTERM);  // it drains on SIGTERM too
  });
  // Workers stop by the deadline themselves; this is the backstop.
  stop_timer_->start(drain + kStopGrace, [this] {
    forEach([&](Worker& w) {
      if (w.alive()) {
        logWarn(kLog, "worker {} (pid {}) missed the drain deadline; killing it", w.slot, w.pid);
        signal(w, SIGKILL);
      }
    });
  });
  maybeFinishStop();
}

void WorkerPool::stopNow() {
  stopping_ = true;
  forEach([&](Worker& w) {
    w.timer->cancel();
    signal(w, SIGQUIT);
  });
  stop_timer_->start(kStopGrace, [this] { forEach([&](Worker& w) { signal(w, SIGKILL); }); });
  maybeFinishStop();
}

void WorkerPool::maybeFinishStop() {
  bool any = false;
  forEach([&](Worker& w) { any = any || w.alive(); });
  if (any) return;
  logInfo(kLog, "all workers stopped; exiting");
  events_.stopped();
}

}  // namespace dingo
