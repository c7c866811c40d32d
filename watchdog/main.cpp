// dingo-watchdog: the external watchdog of one dingo-supervisor.
#include <CLI/CLI.hpp>
#include <iostream>

#include "core/Config.h"
#include "core/Duration.h"
#include "core/Log.h"
#include "core/Process.h"
#include "watchdog/Watchdog.h"

namespace {

bool parseDurationOption(const std::string& name, const std::string& text, dingo::Duration& out) {
  if (text.empty()) return true;
  auto d = dingo::parseDuration(text);
  if (!d) {
    std::cerr << "dingo-watchdog: " << name << ": '" << text << "' is not a duration (e.g. 500ms, 5s, 1m)\n";
    return false;
  }
  out = *d;
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"dingo-watchdog: checks that dingo-supervisor and its ports are alive; restarts it and alerts"};
  dingo::WatchdogOptions o;
  std::string interval, timeout, backoff_max;
  bool version = false;
  app.add_option("-c,--config", o.config,
                 "The supervisor's config: its pid file, control socket and [[listen]] addresses");
  app.add_option("--pidfile", o.pidfile, "The supervisor's pid file (default: [supervisor] pid_file)");
  app.add_option("--check", o.checks, "tcp://HOST:PORT or http://HOST:PORT/PATH (repeatable; default: tcp to each [[listen]])");
  app.add_option("--interval", interval, "Time between rounds of checks (default 5s)");
  app.add_option("--timeout", timeout, "Time each check may take (default 2s)");
  app.add_option("--failures", o.failures, "Consecutive failures of one check before acting (default 3)")
      ->check(CLI::Range(1, 1000));
  auto* restart = app.add_option("--restart-cmd", o.restart_cmd, "Command that restarts the supervisor (/bin/sh -c)");
  auto* exec = app.add_option("--exec", o.exec_cmd, "Start and own the supervisor with this command (/bin/sh -c)");
  restart->excludes(exec);
  app.add_flag("--hold-listeners", o.hold_listeners,
               "With --exec: bind the [[listen]] addresses here and pass them down (LISTEN_FDS), so that "
               "connections wait instead of being refused while the supervisor restarts");
  app.add_option("--on-alert", o.on_alert,
                 "Command run on every restart (/bin/sh -c; DINGO_WATCHDOG_EVENT, _CHECK, _DETAIL, _RESTARTS, "
                 "_PIDFILE in its environment)");
  app.add_option("--backoff-max", backoff_max, "Longest wait between restarts (default 5m; it starts at 1s)");
  app.add_flag("-V,--version", version, "Print the version and exit");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }
  if (version) {
    std::cout << "dingo-watchdog " << DINGO_VERSION << "\n";
    return 0;
  }
  if (!parseDurationOption("--interval", interval, o.interval) || !parseDurationOption("--timeout", timeout, o.timeout) ||
      !parseDurationOption("--backoff-max", backoff_max, o.backoff_max))
    return 2;
  dingo::raiseFdLimit("watchdog");
  try {
    return dingo::runWatchdog(o);
  } catch (const dingo::ConfigError& e) {
    std::cerr << "dingo-watchdog: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "dingo-watchdog: cannot start: " << e.what() << "\n";
    return 1;
  }
}
