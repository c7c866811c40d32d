#pragma once
// The control socket: a Unix stream socket at [supervisor] control_socket (mode 0660)
// for dingoctl, and for orphaned workers asking to be adopted. A caller must be root,
// our own user or in the socket's group (SO_PEERCRED, checked whatever the file's
// mode). It reads one request line (at most kMaxControlLine, within kRequestDeadline),
// checks it (parseControlRequest) and answers one JSON line; the commands act through
// ControlServer::Commands, which Supervisor wires to the other parts. An adopt answer
// carries the worker's new sockets (SCM_RIGHTS); a disconnect is answered later.
#include <sys/types.h>

#include <chrono>
#include <functional>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <vector>

#include "core/Config.h"
#include "core/UniqueFd.h"
#include "supervisor/ControlRequest.h"

namespace boost::asio {
class io_context;
}

namespace dingo {

class ControlServer {
 public:
  using Reply = std::function<void(const nlohmann::json&)>;
  struct Commands {
    std::function<nlohmann::json()> status;
    std::function<std::string()> metrics;  // Prometheus text
    // The answer, and in `pass` the fds to send with it.
    std::function<nlohmann::json(const AdoptRequest&, int sock, std::vector<UniqueFd>& pass)> adopt;
    std::function<void(Duration drain)> stop;                         // runs after the answer is queued
    std::function<std::optional<int>(std::string& error)> reload;     // the new generation
    std::function<std::optional<pid_t>(std::string& error)> upgrade;  // the new supervisor's pid
    std::function<bool(int slot, std::string& error)> drainWorker;
    std::function<void(const ControlRequest&, Reply)> disconnect;     // answers through Reply
  };

  static constexpr auto kRequestDeadline = std::chrono::seconds(5);

  // `config` is the running configuration (its path and drain_timeout are read).
  ControlServer(boost::asio::io_context& io, const SupervisorConfig& config, Commands commands);
  ~ControlServer();

  // Binds the socket. Throws when another supervisor answers on it, unless `upgrading`
  // (then the path is ours from now on, the old supervisor keeps its open socket).
  void bind(bool upgrading);
  // Binds again after a failed upgrade took the path away (errors are logged).
  void rebind();
  // Stops listening; removes the path when `unlink_path`.
  void close(bool unlink_path);
  bool bound() const;

 private:
  struct Conn;
  void listen();
  void accept();
  bool peerAllowed(int fd, std::string& why) const;
  void serve(std::shared_ptr<Conn> c);
  void send(std::shared_ptr<Conn> c, std::string text);
  std::string reply(std::string_view line, const std::shared_ptr<Conn>& conn);
  nlohmann::json handle(std::string_view line, const std::shared_ptr<Conn>& conn);

  struct Impl;
  boost::asio::io_context& io_;
  const SupervisorConfig& config_;
  Commands commands_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace dingo
