// dingoctl: the operator CLI. Talks JSON lines to the supervisor's control socket.
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstring>
#include <iostream>
#include <nlohmann/json.hpp>
#include <thread>

#include "core/Config.h"
#include "core/ChannelPattern.h"
#include "core/Duration.h"
#include "core/Jwt.h"
#include "core/UniqueFd.h"
#include "supervisor/Status.h"

namespace {

using json = nlohmann::json;
constexpr int kExitUnreachable = 3;

struct Unreachable : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// One request, one reply line, with a deadline on every step.
json callRaw(const std::string& socket_path, const json& request, int timeout_ms = 5000) {
  dingo::UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_path.size() >= sizeof addr.sun_path)
    throw Unreachable("control socket path too long: " + socket_path);
  std::strcpy(addr.sun_path, socket_path.c_str());
  if (!fd || ::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
    throw Unreachable("cannot reach the supervisor at " + socket_path + ": " +
                      std::strerror(errno));
  std::string out = request.dump() + "\n";
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  auto wait = [&](short events) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                    deadline - std::chrono::steady_clock::now()).count();
    pollfd p{fd.get(), events, 0};
    if (left <= 0 || ::poll(&p, 1, static_cast<int>(left)) <= 0)
      throw Unreachable("the supervisor did not answer within " + std::to_string(timeout_ms) + "ms");
  };
  size_t sent = 0;
  while (sent < out.size()) {
    wait(POLLOUT);
    ssize_t n = ::send(fd.get(), out.data() + sent, out.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) throw Unreachable(std::string("sending to the supervisor: ") + std::strerror(errno));
    sent += static_cast<size_t>(n);
  }
  std::string in;
  char buf[16384];
  while (in.find('\n') == std::string::npos) {
    wait(POLLIN);
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0) throw Unreachable(std::string("reading from the supervisor: ") + std::strerror(errno));
    if (n == 0) break;
    in.append(buf, static_cast<size_t>(n));
    if (in.size() > (64u << 20)) throw std::runtime_error("reply too large");
  }
  json reply = json::parse(in, nullptr, false);
  if (reply.is_discarded()) throw std::runtime_error("the supervisor sent a malformed reply");
  return reply;
}

// A request whose refusal is an error (exit 1).
json call(const std::string& path, const json& request) {
  json reply = callRaw(path, request);
  if (!reply.value("ok", false))
    throw std::runtime_error("the supervisor refused: " + reply.value("error", std::string("?")));
  return reply;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"dingoctl: operate a running dingo-supervisor"};
  app.require_subcommand(1);
  std::string socket_path, config_opt;
  bool version = false;
  app.add_option("-s,--socket", socket_path,
                 "Control socket (default: [supervisor] control_socket of the config)");
  app.add_option("-c,--config", config_opt,
                 "Config file to read the control socket from (default: $DINGO_CONFIG, else "
                 "/etc/dingo/dingo.toml)");
  app.add_flag("-V,--version", version, "Print the version and exit");

  auto* status = app.add_subcommand("status", "Supervisor and per-worker status");
  bool status_json = false;
  status->add_flag("--json", status_json, "Print the status as JSON");
  auto* metrics = app.add_subcommand("metrics", "Print the Prometheus metrics text");
  auto* stop = app.add_subcommand("stop", "Drain the workers and stop the supervisor");
  std::string drain_text;
  stop->add_option("--drain", drain_text, "Drain deadline (e.g. 10s); default [supervisor] drain_timeout");
  auto* reload = app.add_subcommand(
      "reload", "Re-read the configuration and replace the workers one by one (nothing dropped)");
  auto* upgrade = app.add_subcommand(
      "upgrade", "Start the dingo-supervisor binary now on disk; it takes the listeners over, this one drains");
  auto* drain_worker = app.add_subcommand("drain-worker", "Drain one worker; a new one takes its slot");
  int drain_id = -1;
  drain_worker->add_option("ID", drain_id, "The worker's id (slot)")->required();
  auto* disconnect = app.add_subcommand("disconnect", "Close a user's connections on every worker");
  std::string disconnect_user, disconnect_reason;
  bool disconnect_json = false;
  disconnect->add_option("--user", disconnect_user, "The user: a token's sub")->required();
  disconnect->add_option("--reason", disconnect_reason, "Told to the clients (printable ASCII, at most 120 bytes)");
  disconnect->add_flag("--json", disconnect_json, "Print the supervisor's answer as JSON");
  auto* token = app.add_subcommand("token", "Mint a JWT for tests and scripts (docs/auth.md)");
  std::string token_sub, token_ttl = "1h", token_key, token_issuer, token_audience;
  std::vector<std::string> token_subscribe, token_publish;
  token->add_option("--sub", token_sub, "The user (sub claim)");
  token->add_option("--subscribe", token_subscribe, "A channel pattern the token may subscribe to (repeatable)");
  token->add_option("--publish", token_publish, "A channel pattern the token may publish to (repeatable)");
  token->add_option("--ttl", token_ttl, "Lifetime, e.g. 15m (exp = now + ttl)");
  token->add_option("--key", token_key,
                    "PEM private key (EC P-256: ES256, RSA: RS256) or a secret file (HS256)")->required();
  token->add_option("--issuer", token_issuer, "iss claim");
  token->add_option("--audience", token_audience, "aud claim");
  auto* top = app.add_subcommand("top", "Live view of the status, refreshed every second");
  double top_interval = 1.0;
  int top_count = 0;
  top->add_option("--interval", top_interval, "Seconds between refreshes")->check(CLI::PositiveNumber);
  top->add_option("-n,--count", top_count, "Stop after N refreshes (0: until interrupted)");

  if (argc >= 2 && (std::string(argv[1]) == "--version" || std::string(argv[1]) == "-V")) {
    std::cout << "dingoctl " << DINGO_VERSION << "\n";
    return 0;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }

  if (*token) {  // needs no supervisor
    auto ttl = dingo::parseDuration(token_ttl);
    if (!ttl) {
      std::cerr << "dingoctl: --ttl: '" << token_ttl << "' is not a duration (e.g. 15m)\n";
      return 2;
    }
    for (const auto* list : {&token_subscribe, &token_publish})
      for (const auto& p : *list)
        if (!dingo::ChannelPattern::parse(p)) {
          std::cerr << "dingoctl: '" << p << "' is not a channel pattern (a channel name, optionally with {sub} "
                    << "and a final /*)\n";
          return 2;
        }
    int64_t now_s = dingo::unixNowMs() / 1000;
    json claims = {{"iat", now_s}, {"exp", now_s + std::max<int64_t>(1, ttl->count() / 1000)},
                   {"channels", {{"subscribe", token_subscribe}, {"publish", token_publish}}}};
    if (!token_sub.empty()) claims["sub"] = token_sub;
    if (!token_issuer.empty()) claims["iss"] = token_issuer;
    if (!token_audience.empty()) claims["aud"] = token_audience;
    try {
      std::cout << dingo::signToken(claims.dump(), token_key) << "\n";
    } catch (const std::exception& e) {
      std::cerr << "dingoctl: " << e.what() << "\n";
      return 2;
    }
    return 0;
  }

  if (socket_path.empty()) {
    std::string path = dingo::defaultConfigPath(config_opt);
    if (!config_opt.empty() || ::access(path.c_str(), R_OK) == 0) {
      try {
        socket_path = dingo::loadConfig(path).supervisor.control_socket;
      } catch (const dingo::ConfigError& e) {
        std::cerr << "dingoctl: " << e.what() << "\n";
        return 2;
      }
    } else {
      socket_path = dingo::SupervisorConfig{}.control_socket;
    }
  }

  try {
    if (*status) {
      json reply = call(socket_path, {{"cmd", "status"}});
      if (status_json) std::cout << reply["status"].dump(2) << "\n";
      else std::cout << dingo::renderStatusTable(reply["status"]);
    } else if (*metrics) {
      json reply = call(socket_path, {{"cmd", "metrics"}});
      std::cout << reply["text"].get<std::string>();
    } else if (*stop) {
      json req = {{"cmd", "stop"}};
      if (!drain_text.empty()) {
        auto d = dingo::parseDuration(drain_text);
        if (!d) {
          std::cerr << "dingoctl: --drain: '" << drain_text << "' is not a duration (e.g. 10s)\n";
          return 2;
        }
        req["drain_ms"] = d->count();
      }
      call(socket_path, req);
      std::cout << "stopping\n";
    } else if (*reload) {
      json reply = callRaw(socket_path, {{"cmd", "reload"}});
      if (!reply.value("ok", false)) {
        // The supervisor keeps its running configuration; the message names file, line, key.
        std::cerr << "dingoctl: reload refused: " << reply.value("error", std::string("?")) << "\n";
        return reply.value("kind", std::string()) == "config" ? 2 : 1;
      }
      std::cout << "reloading: generation " << reply.value("generation", 0) << "\n";
    } else if (*upgrade) {
      json reply = call(socket_path, {{"cmd", "upgrade"}});
      std::cout << "upgrading: new supervisor pid " << reply.value("pid", 0) << "\n";
    } else if (*drain_worker) {
      call(socket_path, {{"cmd", "drain-worker"}, {"id", drain_id}});
      std::cout << "draining worker " << drain_id << "\n";
    } else if (*disconnect) {
      json reply = call(socket_path, {{"cmd", "disconnect"}, {"user", disconnect_user}, {"reason", disconnect_reason}});
      if (disconnect_json) {
        std::cout << reply.dump() << "\n";
      } else {
        std::cout << "closed " << reply.value("closed", 0) << " connections of user " << disconnect_user << " on "
                  << reply.value("workers", 0) << " workers";
        if (reply.contains("unanswered")) std::cout << " (" << reply.value("unanswered", 0) << " did not answer)";
        std::cout << "\n";
      }
    } else if (*top) {
      for (int i = 0; top_count == 0 || i < top_count; ++i) {
        if (i > 0) std::this_thread::sleep_for(std::chrono::duration<double>(top_interval));
        json reply = call(socket_path, {{"cmd", "status"}});
        std::cout << "\x1b[H\x1b[2J" << dingo::renderStatusTable(reply["status"]) << std::flush;
      }
    }
  } catch (const Unreachable& e) {
    std::cerr << "dingoctl: " << e.what() << "\n";
    return kExitUnreachable;
  } catch (const std::exception& e) {
    std::cerr << "dingoctl: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
