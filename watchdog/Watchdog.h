#pragma once
// dingo-watchdog: watches one supervisor from the outside (SPEC section 5).
#include <string>
#include <vector>

#include "core/Duration.h"

namespace dingo {

struct WatchdogOptions {
  std::string config;              // the supervisor's config (pid file, listeners, control socket)
  std::string pidfile;             // default: [supervisor] pid_file from --config
  std::vector<std::string> checks; // tcp://HOST:PORT, http://HOST:PORT/PATH; default: tcp per [[listen]]
  Duration interval = std::chrono::seconds(5);
  Duration timeout = std::chrono::seconds(2);
  int failures = 3;
  std::string restart_cmd;         // run through /bin/sh -c
  std::string exec_cmd;            // run and own the supervisor (through /bin/sh -c "exec ...")
  bool hold_listeners = false;     // with exec: bind [[listen]] and pass them down (LISTEN_FDS)
  std::string on_alert;            // run through /bin/sh -c with DINGO_WATCHDOG_* in the environment
  Duration backoff_max = std::chrono::minutes(5);
};

// Runs until SIGTERM/SIGINT, or (with --exec) until the supervisor exits on purpose
// (status 0). Returns the exit code. Throws on start-up errors (bad options, cannot
// bind a held listener).
int runWatchdog(const WatchdogOptions& options);

}  // namespace dingo
