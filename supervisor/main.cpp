// dingo-supervisor: parses options, then hands over to runSupervisor().
#include <CLI/CLI.hpp>
#include <filesystem>
#include <iostream>

#include "core/Config.h"
#include "core/Log.h"
#include "core/Process.h"
#include "core/Tls.h"
#include "supervisor/Supervisor.h"

namespace {

// Loads the config and everything it points at (certificates), as start-up would.
dingo::Config loadAndCheck(const std::string& path) {
  dingo::Config cfg = dingo::loadConfig(path);
  if (cfg.anyTls()) {
    dingo::TicketKeyRing ring;
    try {
      dingo::createServerContext(cfg.tls, &ring);
    } catch (const std::exception& e) {
      throw dingo::ConfigError(path, 0, "tls", e.what());
    }
  }
  return cfg;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"dingo-supervisor: accepts TCP connections and hands them to dingo-gateway workers"};
  std::string config_opt, check_path;
  bool version = false;
  dingo::SupervisorOptions options;
  app.add_option("-c,--config", config_opt,
                 "Config file (default: $DINGO_CONFIG, else /etc/dingo/dingo.toml)");
  app.add_option("--check-config", check_path, "Validate FILE and exit (0 valid, 2 invalid)");
  app.add_option("--upgrade-from", options.upgrade_from,
                 "Internal: take over from the supervisor with this pid (set by `dingoctl upgrade` and USR2)")
      ->group("Internal");
  app.add_flag("-V,--version", version, "Print the version and exit");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }
  if (version) {
    std::cout << "dingo-supervisor " << DINGO_VERSION << "\n";
    return 0;
  }
  if (!check_path.empty()) {
    try {
      loadAndCheck(check_path);
      std::cout << check_path << ": ok\n";
      return 0;
    } catch (const dingo::ConfigError& e) {
      std::cerr << "dingo-supervisor: " << e.what() << "\n";
      return 2;
    }
  }

  std::string path = dingo::defaultConfigPath(config_opt);
  dingo::Config cfg;
  try {
    cfg = loadAndCheck(path);
  } catch (const dingo::ConfigError& e) {
    std::cerr << "dingo-supervisor: " << e.what() << "\n";
    return 2;
  }
  dingo::logSetup(cfg.log.format, cfg.log.level);
  dingo::raiseFdLimit("supervisor");
  try {
    options.config_path = std::filesystem::absolute(path).string();
    return dingo::runSupervisor(cfg, options);
  } catch (const std::exception& e) {
    dingo::logError("supervisor", "cannot start: {}", e.what());
    return 1;
  }
}
