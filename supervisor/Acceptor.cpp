#include "supervisor/Acceptor.h"

#include <fcntl.h>
#include <sys/socket.h>

#include <nlohmann/json.hpp>

#include "core/Asio.h"
#include "core/Log.h"
#include "core/Systemd.h"

namespace dingo {

namespace {
constexpr const char* kLog = "supervisor";
using asio::posix::stream_descriptor;
}  // namespace

struct Acceptor::Listener {
  Listener(asio::io_context& io, ListenConfig c, uint16_t i) : config(std::move(c)), index(i), pause_timer(io) {}
  ListenConfig config;
  uint16_t index;
  std::unique_ptr<stream_descriptor> socket;
  asio::steady_timer pause_timer;
  uint64_t accepted = 0;
  bool armed = false;  // an accept wait is pending
};

Acceptor::Acceptor(asio::io_context& io, std::vector<ListenConfig> listen, Sink sink, std::function<bool()> hold)
    : io_(io), listen_(std::move(listen)), sink_(std::move(sink)), hold_(std::move(hold)) {}

Acceptor::~Acceptor() = default;

void Acceptor::bind() {
  std::vector<UniqueFd> inherited = systemd::takeListenFds();
  for (const auto& lc : listen_) {
    auto address = parseSockAddr(lc.address);
    // Config validation accepted it; a failure here is a defect, said as such.
    if (!address) throw std::runtime_error("[[listen]] address " + lc.address + " does not parse");
    auto l = std::make_unique<Listener>(io_, lc, static_cast<uint16_t>(listeners_.size()));
    UniqueFd fd;
    for (auto& in : inherited) {
      if (in && localAddress(in.get()).toString() == address->toString()) {
        fd = std::move(in);
        int flags = ::fcntl(fd.get(), F_GETFL);
        if (flags < 0 || ::fcntl(fd.get(), F_SETFL, flags | O_NONBLOCK) != 0)
          throw std::runtime_error(fmt::format("O_NONBLOCK on the socket passed for {}: {}", lc.address,
                                               errnoText(errno)));
        break;
      }
    }
    bool adopted = static_cast<bool>(fd);
    if (!adopted) fd = listenTcp(*address, ListenOptions{lc.backlog, false});
    l->socket = std::make_unique<stream_descriptor>(io_, fd.release());
    logInfo(kLog, "listening on {} ({}{})", lc.address, lc.tls ? "tls" : "plain",
            adopted ? ", socket passed with LISTEN_FDS" : "");
    listeners_.push_back(std::move(l));
  }
  for (auto& in : inherited)
    if (in)
      logWarn(kLog, "LISTEN_FDS passed a socket on {} that no [[listen]] names; closed it",
              localAddress(in.get()).toString());
}

void Acceptor::resume() {
  for (auto& l : listeners_) arm(*l);
}

void Acceptor::arm(Listener& l) {
  if (closed_ || !l.socket || l.armed) return;
  l.armed = true;
  l.socket->async_wait(stream_descriptor::wait_read, [this, &l](boost::system::error_code ec) {
    l.armed = false;
    if (ec || closed_) return;
    acceptBurst(l);
  });
}

void Acceptor::acceptBurst(Listener& l) {
  // A bounded burst, then back to the event loop so other work is not starved.
  for (int i = 0; i < kAcceptBurst; ++i) {
    // Workers are full: leave connections in the kernel's backlog (they wait there
    // instead of being refused); resume() re-arms the listeners.
    if (hold_()) return;
    SockAddr peer;
    peer.len = sizeof peer.storage;
    int fd = ::accept4(l.socket->native_handle(), peer.addr(), &peer.len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      int err = errno;
      if (err == EAGAIN || err == EWOULDBLOCK) break;
      if (err == EINTR || err == ECONNABORTED || err == EPROTO) continue;
      // Out of fds or memory: pause this listener rather than spin on it.
      logError(kLog, "accept on {}: {}; pausing accepts for {}ms", l.config.address, errnoText(err),
               kErrorPause.count());
      l.pause_timer.expires_after(kErrorPause);
      l.pause_timer.async_wait([this, &l](boost::system::error_code ec) {
        if (!ec) arm(l);
      });
      return;
    }
    ++l.accepted;
    sink_(UniqueFd(fd), peer, l.index, l.config.tls);
  }
  arm(l);
}

void Acceptor::close() {
  closed_ = true;
  for (auto& l : listeners_) {
    if (l->socket) {
      l->pause_timer.cancel();
      l->socket.reset();  // closes the listening socket
    }
  }
}

std::vector<int> Acceptor::fds() const {
  std::vector<int> out;
  for (const auto& l : listeners_)
    if (l->socket) out.push_back(l->socket->native_handle());
  return out;
}

nlohmann::json Acceptor::stats() const {
  nlohmann::json ls = nlohmann::json::array();
  for (const auto& l : listeners_)
    ls.push_back({{"address", l->config.address}, {"tls", l->config.tls}, {"accepted", l->accepted}});
  return ls;
}

}  // namespace dingo
