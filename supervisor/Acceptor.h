#pragma once
// The [[listen]] sockets and the supervisor's accept loop. bind() binds every address,
// or adopts the sockets passed for it with LISTEN_FDS (systemd, dingo-watchdog
// --hold-listeners, an upgrade), so that connections queue in a backlog while a
// supervisor restarts. In the kernel accept mode (bind with kernel_slots > 0) a listener
// is a group of SO_REUSEPORT sockets, one per worker slot in slot order (ReusePort.h),
// which the workers accept from themselves; the supervisor watches a slot's socket only
// while `fallback(slot)` says the slot's queue is its to take (KernelAccept decides). A
// listener whose passed socket has no SO_REUSEPORT stays one plain socket (handoff).
//
// On a watched, readable socket it accepts in bursts of at most kAcceptBurst until
// EAGAIN and gives each client to `sink` (HandOff::offer, wired by Supervisor). While
// `hold` says so (sockets are parked) it stops accepting and leaves connections in the
// kernel's backlog; resume() starts again (and re-reads `fallback`). An accept error
// other than a vanished client pauses that socket for kErrorPause instead of spinning.
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

  // A kernel-mode listener's group: fds[s] is slot s's socket (more than the worker
  // count when an upgrade passed more).
  struct Group {
    uint16_t listener;
    bool tls;
    int family;
    std::vector<int> fds;
  };

  Acceptor(boost::asio::io_context& io, std::vector<ListenConfig> listen, Sink sink, std::function<bool()> hold);
  ~Acceptor();

  // Binds or adopts every listener (throws std::exception on failure, naming the address).
  // kernel_slots > 0: the kernel accept mode, one SO_REUSEPORT socket per slot.
  void bind(size_t kernel_slots = 0);
  // Whether the supervisor accepts from slot `slot`'s sockets (default: always).
  void setFallback(std::function<bool(size_t slot)> fallback) { fallback_ = std::move(fallback); }
  // Starts (or, after a pause for parked sockets or a change of `fallback`, resumes)
  // accepting on every socket that is the supervisor's to accept from.
  void resume();
  // Closes our copies of the listening sockets (stop; the upgrade's successor keeps its own).
  void close();

  // The listening fds, in [[listen]] order, a kernel listener's in slot order (handed
  // to an upgrade).
  std::vector<int> fds() const;
  std::vector<Group> groups() const;
  size_t size() const { return listeners_.size(); }
  // [{"address","tls","accepted","accept"}...]
  nlohmann::json stats() const;

 private:
  struct Socket;
  struct Listener;
  bool mine(const Socket& s) const;
  void arm(Listener& l, Socket& s);
  void acceptBurst(Listener& l, Socket& s);
  static void unwatch(Socket& s);

  boost::asio::io_context& io_;
  std::vector<ListenConfig> listen_;
  Sink sink_;
  std::function<bool()> hold_;
  std::function<bool(size_t)> fallback_;
  std::vector<std::unique_ptr<Listener>> listeners_;
  bool closed_ = false;
};

}  // namespace dingo
