#include "supervisor/Acceptor.h"

#include <fcntl.h>
#include <sys/socket.h>

#include <nlohmann/json.hpp>

#include "core/Asio.h"
#include "core/Log.h"
#include "core/Systemd.h"
#include "supervisor/ReusePort.h"

namespace dingo {

namespace {
constexpr const char* kLog = "supervisor";
using asio::posix::stream_descriptor;
constexpr size_t kNoSlot = SIZE_MAX;
}  // namespace

// One listening socket: a [[listen]] address's (handoff) or one slot's (kernel mode).
struct Acceptor::Socket {
  Socket(asio::io_context& io, UniqueFd f, size_t s) : fd(std::move(f)), pause_timer(io), slot(s) {}
  UniqueFd fd;
  // In the event loop only while we accept from it: a slot's socket registered with
  // epoll would wake the supervisor for every connection its worker accepts.
  std::unique_ptr<stream_descriptor> watch;
  asio::steady_timer pause_timer;
  size_t slot;
  bool armed = false;  // an accept wait is pending
};

struct Acceptor::Listener {
  Listener(ListenConfig c, uint16_t i) : config(std::move(c)), index(i) {}
  ListenConfig config;
  uint16_t index;
  int family = AF_INET;
  bool kernel = false;
  std::vector<std::unique_ptr<Socket>> sockets;  // kernel: slot order
  uint64_t accepted = 0;
};

Acceptor::Acceptor(asio::io_context& io, std::vector<ListenConfig> listen, Sink sink, std::function<bool()> hold)
    : io_(io), listen_(std::move(listen)), sink_(std::move(sink)), hold_(std::move(hold)) {}

Acceptor::~Acceptor() { close(); }

void Acceptor::bind(size_t kernel_slots) {
  std::vector<UniqueFd> inherited = systemd::takeListenFds();
  for (const auto& lc : listen_) {
    auto address = parseSockAddr(lc.address);
    // Config validation accepted it; a failure here is a defect, said as such.
    if (!address) throw std::runtime_error("[[listen]] address " + lc.address + " does not parse");
    auto l = std::make_unique<Listener>(lc, static_cast<uint16_t>(listeners_.size()));
    l->family = address->family();
    // The sockets passed for this address, in the order given (an upgrade passes a
    // kernel-mode listener's slot sockets in slot order).
    std::vector<UniqueFd> passed;
    for (auto& in : inherited)
      if (in && localAddress(in.get()).toString() == address->toString()) passed.push_back(std::move(in));
    bool adopted = !passed.empty();
    std::vector<UniqueFd> fds;
    if (kernel_slots > 0 && (passed.empty() || hasReusePort(passed.front().get()))) {
      l->kernel = true;
      fds = openReusePortSockets(*address, lc.backlog, kernel_slots, std::move(passed));
    } else if (adopted) {
      if (kernel_slots > 0)
        logWarn(kLog, "{}: the socket passed with LISTEN_FDS has no SO_REUSEPORT; handoff accept for it", lc.address);
      fds = std::move(passed);
    } else {
      fds.push_back(listenTcp(*address, ListenOptions{lc.backlog, false}));
    }
    for (size_t i = 0; i < fds.size(); ++i) {
      int flags = ::fcntl(fds[i].get(), F_GETFL);
      if (flags < 0 || ::fcntl(fds[i].get(), F_SETFL, flags | O_NONBLOCK) != 0)
        throw std::runtime_error(fmt::format("O_NONBLOCK on a listening socket for {}: {}", lc.address,
                                             errnoText(errno)));
      l->sockets.push_back(std::make_unique<Socket>(io_, std::move(fds[i]), l->kernel ? i : kNoSlot));
    }
    logInfo(kLog, "listening on {} ({}{}{})", lc.address, lc.tls ? "tls" : "plain",
            l->kernel ? fmt::format(", kernel accept: {} SO_REUSEPORT sockets", l->sockets.size()) : "",
            adopted ? ", socket passed with LISTEN_FDS" : "");
    listeners_.push_back(std::move(l));
  }
  for (auto& in : inherited)
    if (in)
      logWarn(kLog, "LISTEN_FDS passed a socket on {} that no [[listen]] names; closed it",
              localAddress(in.get()).toString());
}

void Acceptor::resume() {
  for (auto& l : listeners_)
    for (auto& s : l->sockets) arm(*l, *s);
}

bool Acceptor::mine(const Socket& s) const { return s.slot == kNoSlot || !fallback_ || fallback_(s.slot); }

// Stops watching a socket we no longer accept from (its fd stays open).
void Acceptor::unwatch(Socket& s) {
  if (!s.watch) return;
  s.watch->release();  // out of epoll (a pending wait is cancelled), not closed
  s.watch.reset();
  s.armed = false;
}

void Acceptor::arm(Listener& l, Socket& s) {
  if (closed_ || !s.fd || s.armed) return;
  if (!mine(s)) {
    unwatch(s);
    return;
  }
  if (!s.watch) s.watch = std::make_unique<stream_descriptor>(io_, s.fd.get());
  s.armed = true;
  s.watch->async_wait(stream_descriptor::wait_read, [this, &l, &s](boost::system::error_code ec) {
    if (ec == asio::error::operation_aborted) return;  // unwatched or closed (armed already false)
    s.armed = false;
    if (ec || closed_) return;
    acceptBurst(l, s);
  });
}

void Acceptor::acceptBurst(Listener& l, Socket& s) {
  // A bounded burst, then back to the event loop so other work is not starved.
  for (int i = 0; i < kAcceptBurst; ++i) {
    // Workers are full: leave connections in the kernel's backlog (they wait there
    // instead of being refused); resume() re-arms the listeners.
    if (hold_()) return;
    // A slot whose worker is back accepts by itself.
    if (!mine(s)) {
      unwatch(s);
      return;
    }
    SockAddr peer;
    peer.len = sizeof peer.storage;
    int fd = ::accept4(s.fd.get(), peer.addr(), &peer.len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      int err = errno;
      if (err == EAGAIN || err == EWOULDBLOCK) break;
      if (err == EINTR || err == ECONNABORTED || err == EPROTO) continue;
      // Out of fds or memory: pause this socket rather than spin on it.
      logError(kLog, "accept on {}: {}; pausing accepts for {}ms", l.config.address, errnoText(err),
               kErrorPause.count());
      s.pause_timer.expires_after(kErrorPause);
      s.pause_timer.async_wait([this, &l, &s](boost::system::error_code ec) {
        if (!ec) arm(l, s);
      });
      return;
    }
    ++l.accepted;
    sink_(UniqueFd(fd), peer, l.index, l.config.tls);
  }
  arm(l, s);
}

void Acceptor::close() {
  closed_ = true;
  for (auto& l : listeners_) {
    for (auto& s : l->sockets) {
      if (!s->fd) continue;
      s->pause_timer.cancel();
      unwatch(*s);
      s->fd.reset();  // closes our copy of the listening socket
    }
  }
}

std::vector<int> Acceptor::fds() const {
  std::vector<int> out;
  for (const auto& l : listeners_)
    for (const auto& s : l->sockets)
      if (s->fd) out.push_back(s->fd.get());
  return out;
}

std::vector<Acceptor::Group> Acceptor::groups() const {
  std::vector<Group> out;
  for (const auto& l : listeners_) {
    if (!l->kernel) continue;
    Group g{l->index, l->config.tls, l->family, {}};
    for (const auto& s : l->sockets) g.fds.push_back(s->fd.get());
    out.push_back(std::move(g));
  }
  return out;
}

nlohmann::json Acceptor::stats() const {
  nlohmann::json ls = nlohmann::json::array();
  for (const auto& l : listeners_)
    ls.push_back({{"address", l->config.address},
                  {"tls", l->config.tls},
                  {"accepted", l->accepted},
                  {"accept", l->kernel ? "kernel" : "handoff"}});
  return ls;
}

}  // namespace dingo
