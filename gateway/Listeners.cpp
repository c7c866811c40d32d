#include "gateway/Listeners.h"

#include "core/Log.h"
#include "core/Net.h"
#include "gateway/Context.h"
#include "gateway/HttpSession.h"

namespace dingo {

namespace {
using tcp = asio::ip::tcp;
constexpr const char* kLog = "gateway";

// Asio marks every socket it did not open itself (accepted or assigned) as a possible
// dup: the fd may share its file with another, so its close must first take it out of
// epoll (EPOLL_CTL_DEL), or epoll would go on reporting a file nobody watches. A socket
// this worker accepted shares its file with nobody (the worker never forks), and the
// kernel drops a closed file from epoll by itself: clearing the mark saves a system
// call per connection. Not for handed-off sockets: the supervisor may still hold its
// copy for a moment. The mark is in the socket's implementation, which basic_socket
// keeps protected; a member pointer formed in a derived class reaches it.
static_assert(BOOST_ASIO_VERSION == 101800, "Asio internals used below: check them against this Asio");
struct SocketInternals : tcp::socket {
  static void markNotShared(tcp::socket& s) {
    auto& impl = (s.*(&SocketInternals::impl_)).get_implementation();
    impl.state_ &= static_cast<asio::detail::socket_ops::state_type>(~asio::detail::socket_ops::possible_dup);
  }
};
}  // namespace

void Listeners::adoptSlotSocket(UniqueFd fd, bool tls) {
  if (tls && !ctx_.tls) {
    logError(kLog, "a TLS listening socket from the supervisor, but no TLS context; not accepting from it");
    return;
  }
  SockAddr local = localAddress(fd.get());
  logInfo(kLog, "worker {} accepting on {} ({}) itself", ctx_.worker_id, local.toString(), tls ? "tls" : "plain");
  add(std::move(fd), local.family(), tls, /*slot=*/true);
}

size_t Listeners::releaseSlotSockets() {
  size_t taken = 0;
  bool any = false;
  for (auto& l : listeners_) {
    if (!l->slot || !l->acceptor->is_open()) continue;
    any = true;
    boost::system::error_code ec;
    l->acceptor->non_blocking(true, ec);
    for (int n = 0; n < 65536 && !ec; ++n) {
      tcp::socket s(io_);
      l->acceptor->accept(s, ec);
      if (ec) break;
      ++taken;
      admit(std::move(s), l->tls);
    }
    l->acceptor->close(ec);
    l->pause->cancel();
  }
  if (any) logInfo(kLog, "closed the slot's listening sockets ({} queued connections taken)", taken);
  return taken;
}

void Listeners::openStandalone(const std::vector<ListenConfig>& addresses) {
  for (const auto& [text, tls, backlog] : addresses) {
    auto addr = parseSockAddr(text);
    if (!addr) throw std::runtime_error("--listen: '" + text + "' is not a numeric HOST:PORT");
    UniqueFd fd = listenTcp(*addr, ListenOptions{backlog, true});
    std::string local = localAddress(fd.get()).toString();
    if (!add(std::move(fd), addr->family(), tls, /*slot=*/false))
      throw std::runtime_error("cannot accept on " + local);
    logInfo(kLog, "listening on {} ({})", local, tls ? "tls" : "plain");
  }
}

void Listeners::closeAll() {
  for (auto& l : listeners_) {
    boost::system::error_code ec;
    l->acceptor->close(ec);
    l->pause->cancel();
  }
}

bool Listeners::add(UniqueFd fd, int family, bool tls, bool slot) {
  auto l = std::make_unique<Listener>();
  l->acceptor = std::make_unique<tcp::acceptor>(io_);
  l->pause = std::make_unique<asio::steady_timer>(io_);
  l->tls = tls;
  l->slot = slot;
  boost::system::error_code ec;
  l->acceptor->assign(family == AF_INET6 ? tcp::v6() : tcp::v4(), fd.get(), ec);
  if (ec) {
    logWarn(kLog, "a listening socket: {}", ec.message());
    return false;  // fd closes here
  }
  fd.release();
  listeners_.push_back(std::move(l));
  if (!ctx_.draining) acceptLoop(*listeners_.back());
  return true;
}

void Listeners::acceptLoop(Listener& l) {
  l.acceptor->async_accept([this, &l](boost::system::error_code ec, tcp::socket s) {
    if (ec == asio::error::operation_aborted || (ec && ctx_.draining)) return;
    // Accepted just before a drain closed the listener: served (one request, answered
    // with Connection: close), not dropped with the client's request unread (a reset).
    if (!ec) {
      admit(std::move(s), l.tls);
    } else if (ec == asio::error::connection_aborted) {
      // The client left before we took it: nothing to do.
    } else {
      logWarn(kLog, "accept: {}; pausing this listener for {}ms", ec.message(), kAcceptPause.count());
      l.pause->expires_after(kAcceptPause);
      l.pause->async_wait([this, &l](boost::system::error_code wait_ec) {
        if (!wait_ec && !ctx_.draining && l.acceptor->is_open()) acceptLoop(l);
      });
      return;
    }
    if (!ctx_.draining) acceptLoop(l);
  });
}

void Listeners::admit(tcp::socket socket, bool tls) {
  ++ctx_.counters.accepted;
  if (ctx_.counters.connections >= ctx_.config.gateway.max_connections) {
    ++ctx_.counters.rejected;
    return;
  }
  SocketInternals::markNotShared(socket);
  startSession(ctx_, std::move(socket), tls);
}

}  // namespace dingo
