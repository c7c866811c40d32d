#pragma once
// The sockets a worker accepts connections from itself, and its accept loops.
// - Kernel dispatch mode: the supervisor hands each worker its slot's SO_REUSEPORT
//   listening socket, one per [[listen]] (adoptSlotSocket); the kernel queues the slot's
//   share of new connections there. The supervisor keeps its own copy of each, so a
//   worker that dies leaves the queue to its replacement. When the supervisor dies the
//   copies are not ours to keep: releaseSlotSockets() serves what is queued and closes.
// - Standalone mode: listeners of the worker's own, SO_REUSEPORT so that several
//   standalone gateways can share a port (openStandalone).
// Every accepted connection becomes a session (startSession), or is refused at
// [gateway] max_connections. Handed-off sockets (the supervisor accepted them) do not
// come through here: see Gateway::adopt.
#include <map>
#include <memory>
#include <vector>

#include "core/Asio.h"
#include "core/Config.h"
#include "core/UniqueFd.h"

namespace dingo {

struct GatewayContext;

class Listeners {
 public:
  Listeners(asio::io_context& io, GatewayContext& ctx) : io_(io), ctx_(ctx) {}

  // Kernel mode: accepts from `fd`, a slot socket from the supervisor (listening already).
  void adoptSlotSocket(UniqueFd fd, bool tls);
  // The supervisor is gone: takes and serves what the slot sockets hold queued, then
  // closes them. Returns how many connections were taken.
  size_t releaseSlotSockets();
  // Standalone mode: listens on each of `addresses` (SO_REUSEPORT). Throws on a bad
  // address or a failed bind.
  void openStandalone(const std::vector<ListenConfig>& addresses);
  // A drain: no more accepting, from any socket.
  void closeAll();

 private:
  struct Listener {
    std::unique_ptr<asio::ip::tcp::acceptor> acceptor;
    std::unique_ptr<asio::steady_timer> pause;  // kAcceptPause after a failed accept
    bool tls = false;
    bool slot = false;  // a slot socket of the kernel dispatch mode
  };

  // Out of fds or memory, accept fails at once and would again: the listener pauses
  // this long instead of spinning, and says so once per pause.
  static constexpr std::chrono::milliseconds kAcceptPause{100};

  // False (logged, fd closed) when Asio cannot take the socket.
  bool add(UniqueFd fd, int family, bool tls, bool slot);
  void acceptLoop(Listener& l);
  // A connection accepted: served, unless the worker is at max_connections.
  void admit(asio::ip::tcp::socket socket, bool tls);

  asio::io_context& io_;
  GatewayContext& ctx_;
  std::vector<std::unique_ptr<Listener>> listeners_;  // stable addresses: the loops hold them
};

}  // namespace dingo
