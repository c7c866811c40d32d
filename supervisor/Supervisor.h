#pragma once
// The supervisor process (dingo-supervisor): runSupervisor() binds the listeners and
// the control socket, starts the workers and the pub/sub hub, and serves until a signal
// or `dingoctl stop`. The work is done by parts a reader can find by name, each in its
// own file (docs/architecture.md, "The supervisor's parts"): Acceptor and HandOff
// (with ParkingQueue), WorkerPool, Adoption, Prober, ControlServer (with Disconnects),
// Upgrader, TicketKeys. Supervisor.cpp wires them together.
#include <string>

#include "core/Config.h"

namespace dingo {

struct SupervisorOptions {
  std::string config_path;  // absolute; handed to the workers
  // Set by a running supervisor that starts this one to upgrade itself: take over its
  // control socket and pid file (its listeners come with LISTEN_FDS), and once every
  // worker is ready send it SIGTERM, so that it drains and exits.
  int upgrade_from = 0;
};

// Binds, spawns workers and serves until stopped by a signal or `dingoctl stop`.
// Returns the process exit code. Throws std::exception for start-up failures.
int runSupervisor(const Config& config, const SupervisorOptions& options);

}  // namespace dingo
