#pragma once
// The [[listen]] sockets and the accept loop. bind() binds every address, or adopts the
// socket passed for it with LISTEN_FDS (systemd, dingo-watchdog --hold-listeners, an
// upgrade), so that connections queue in its backlog while a supervisor restarts. On a
// readable listener it accepts in bursts of at most kAcceptBurst until EAGAIN and gives
// each socket to `sink` (HandOff::offer, wired by Supervisor). While `hold` says so
// (sockets are parked) it stops accepting and leaves connections in the kernel's
// backlog; resume() starts again. An accept error other than a vanished client pauses
// that listener for kErrorPause instead of spinning on it.
#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <vector>

#include "core/Config.h"
#include "core/Net.h"
#include "core/UniqueFd.h"

namespace boost::asio {
class io_context;
}

namespace dingo {

class Acceptor {
 public:
  using Sink = std::function<void(UniqueFd client, const SockAddr& peer, uint16_t listener, bool tls)>;

  static constexpr int kAcceptBurst = 512;
  static constexpr auto kErrorPause = std::chrono::milliseconds(100);

  Acceptor(boost::asio::io_context& io, std::vector<ListenConfig> listen, Sink sink, std::function<bool()> hold);
  ~Acceptor();

  // Binds or adopts every listener (throws std::exception on failure, naming the address).
  void bind();
  // Starts (or, after a pause for parked sockets, resumes) accepting on every listener.
  void resume();
  // Closes our copies of the listening sockets (stop; the upgrade's successor keeps its own).
  void close();

  // The listening fds, in [[listen]] order (handed to an upgrade).
  std::vector<int> fds() const;
  size_t size() const { return listeners_.size(); }
  // [{"address","tls","accepted"}...]
  nlohmann::json stats() const;

 private:
  struct Listener;
  void arm(Listener& l);
  void acceptBurst(Listener& l);

  boost::asio::io_context& io_;
  std::vector<ListenConfig> listen_;
  Sink sink_;
  std::function<bool()> hold_;
  std::vector<std::unique_ptr<Listener>> listeners_;
  bool closed_ = false;
};

}  // namespace dingo
