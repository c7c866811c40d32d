// dingo-gateway: a worker spawned by dingo-supervisor, or --standalone for development.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <iostream>

#include "core/Config.h"
#include "core/Log.h"
#include "core/Process.h"
#include "gateway/Gateway.h"

int main(int argc, char** argv) {
  CLI::App app{"dingo-gateway: serves client connections (TLS, HTTP/1.1) for dingo-supervisor"};
  std::string config_opt;
  bool version = false;
  dingo::GatewayOptions options;
  app.add_option("-c,--config", config_opt,
                 "Config file (default: $DINGO_CONFIG, else /etc/dingo/dingo.toml; "
                 "--standalone runs on defaults when none exists)");
  app.add_flag("--standalone", options.standalone,
               "Run without a supervisor, with listeners of its own (SO_REUSEPORT)");
  app.add_option("--listen", options.listen,
                 "Standalone: plain HTTP listener HOST:PORT (repeatable; default: [[listen]])");
  app.add_option("--listen-tls", options.listen_tls,
                 "Standalone: TLS listener HOST:PORT (repeatable; needs [tls] in the config)");
  bool worker = false;
  app.add_flag("--worker", worker, "Run as a supervisor's worker (set by dingo-supervisor)")->group("Internal");
  app.add_option("--ipc-fd", options.ipc_fd, "Worker: the supervisor's socket")->group("Internal");
  app.add_option("--hub-fd", options.hub_fd, "Worker: the stream socket to the supervisor's hub")->group("Internal");
  app.add_option("--worker-id", options.worker_id, "Worker slot number")->group("Internal");
  app.add_option("--generation", options.generation, "Worker generation")->group("Internal");
  app.add_flag("-V,--version", version, "Print the version and exit");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }
  if (version) {
    std::cout << "dingo-gateway " << DINGO_VERSION << "\n";
    return 0;
  }
  if (options.standalone == worker) {
    std::cerr << "dingo-gateway: give exactly one of --standalone or --worker "
                 "(workers are started by dingo-supervisor)\n";
    return 2;
  }
  if (worker && options.ipc_fd < 0) {
    std::cerr << "dingo-gateway: --worker needs --ipc-fd\n";
    return 2;
  }

  dingo::Config cfg;
  std::string path = dingo::defaultConfigPath(config_opt);
  try {
    if (options.standalone && config_opt.empty() && ::access(path.c_str(), R_OK) != 0)
      cfg = dingo::parseConfig("", "");  // standalone on built-in defaults
    else
      cfg = dingo::loadConfig(path);
  } catch (const dingo::ConfigError& e) {
    std::cerr << "dingo-gateway: " << e.what() << "\n";
    return 2;
  }
  dingo::logSetup(cfg.log.format, cfg.log.level);
  dingo::raiseFdLimit(options.standalone ? "gateway" : "worker");
  try {
    return dingo::runGateway(cfg, options);
  } catch (const std::exception& e) {
    dingo::logError("gateway", "cannot start: {}", e.what());
    return 1;
  }
}
