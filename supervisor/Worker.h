#pragma once
// One worker process as the supervisor's WorkerPool keeps it: its slot, process, state,
// channels (the IPC socketpair and the hub link) and what it reported. The pool owns
// every Worker and is the only one to change it; the other parts see workers through
// the small interfaces Supervisor wires (HandOff::Workers, Prober::Workers).
#include <sys/types.h>

#include <cstdint>
#include <memory>

#include "core/Duration.h"
#include "supervisor/TimeSource.h"
#include "supervisor/WorkerStats.h"

namespace dingo {

// starting: spawned or adopted, not yet said hello; ready: takes connections; suspect:
// failed its probes (the prober's verdict), takes none; draining: replaced or stopping,
// finishes its connections; exited: no process.
enum class WorkerState { Starting, Ready, Suspect, Draining, Exited };
const char* stateName(WorkerState s);

struct WorkerChannels;  // our ends of its IPC socket and pidfd (WorkerPool.cpp)

struct Worker {
  Worker(uint64_t id, int slot, std::unique_ptr<Timer> timer);
  ~Worker();

  const uint64_t id;  // this object's identity: other parts key their state by it
  const int slot;
  int generation = 0;
  pid_t pid = -1;
  WorkerState state = WorkerState::Exited;
  std::unique_ptr<WorkerChannels> channels;
  uint32_t hub_link = 0;  // its link to the hub (0: none)
  // A reload or drain-worker starts the slot's next worker here; it takes the slot when
  // it is ready, and this one drains.
  std::unique_ptr<Worker> successor;
  bool is_successor = false;
  bool retired = false;  // replaced: draining out, never respawned
  // Adopted: it re-attached after the supervisor that started it died. Not our child,
  // so its exit comes from a pidfd instead of SIGCHLD, and signals go through it.
  bool adopted = false;

  SteadyTime started_at{};
  int restarts = 0;
  Duration backoff{0};             // the delay before its next respawn
  std::unique_ptr<Timer> timer;    // respawn, readiness deadline, or drain backstop

  WorkerFigures figures;           // its reports and what we measure of it

  bool alive() const { return pid > 0; }
  bool connected() const;          // our end of its IPC socket is open
  int ipcFd() const;               // -1 when not connected
};

}  // namespace dingo
