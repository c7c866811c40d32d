#include "gateway/Transport.h"

#include <openssl/err.h>
#include <sys/socket.h>

#include <cerrno>

namespace dingo {

using asio::redirect_error;
using asio::use_awaitable;
using tcp = asio::ip::tcp;

// ---- plain ----------------------------------------------------------------------------

// The socket is already non-blocking (see TlsSocket): try the system call first and wait
// for readiness only when it would block. This also spares the ioctl(FIONBIO) that Asio
// issues before its first operation on an adopted socket.
asio::awaitable<size_t> PlainSocket::readSome(asio::mutable_buffer buf, boost::system::error_code& ec) {
  for (;;) {
    ssize_t n = ::recv(socket_.native_handle(), buf.data(), buf.size(), MSG_DONTWAIT);
    if (n > 0) co_return static_cast<size_t>(n);
    if (n == 0) {
      ec = asio::error::eof;
      co_return 0;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      ec = boost::system::error_code(errno, boost::system::system_category());
      co_return 0;
    }
    co_await socket_.async_wait(tcp::socket::wait_read, redirect_error(use_awaitable, ec));
    if (ec) co_return 0;
  }
}

asio::awaitable<size_t> PlainSocket::writeAll(asio::const_buffer buf, boost::system::error_code& ec) {
  size_t done = 0;
  while (done < buf.size()) {
    ssize_t n = ::send(socket_.native_handle(), static_cast<const char*>(buf.data()) + done,
                       buf.size() - done, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n > 0) {
      done += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
      ec = boost::system::error_code(errno, boost::system::system_category());
      co_return done;
    }
    co_await socket_.async_wait(tcp::socket::wait_write, redirect_error(use_awaitable, ec));
    if (ec) co_return done;
  }
  co_return done;
}

asio::awaitable<void> PlainSocket::shutdown(boost::system::error_code& ec) {
  socket_.shutdown(tcp::socket::shutdown_send, ec);
  co_return;
}

// ---- TLS ------------------------------------------------------------------------------

namespace {

class TlsCategory final : public boost::system::error_category {
 public:
  const char* name() const noexcept override { return "dingo.tls"; }
  std::string message(int value) const override {
    if (value == -1) return "TLS protocol error";
    const char* reason = ERR_reason_error_string(ERR_PACK(ERR_LIB_SSL, 0, value));
    return reason ? reason : "TLS error " + std::to_string(value);
  }
};

}  // namespace

const boost::system::error_category& tlsCategory() {
  static const TlsCategory category;
  return category;
}

// The socket must already be non-blocking (accept4 with SOCK_NONBLOCK in the
// supervisor, or Gateway's standalone accept loop): OpenSSL reads and writes it directly.
TlsSocket::TlsSocket(tcp::socket s, SSL_CTX* ctx) : socket_(std::move(s)), ssl_(SSL_new(ctx)) {
  if (ssl_) {
    SSL_set_fd(ssl_, socket_.native_handle());
    SSL_set_accept_state(ssl_);
  }
}

TlsSocket::~TlsSocket() {
  if (ssl_) SSL_free(ssl_);
}

asio::awaitable<bool> TlsSocket::waitFor(int rc, boost::system::error_code& ec) {
  int err = SSL_get_error(ssl_, rc);
  if (err == SSL_ERROR_WANT_READ) {
    co_await socket_.async_wait(tcp::socket::wait_read, redirect_error(use_awaitable, ec));
    co_return !ec;
  }
  if (err == SSL_ERROR_WANT_WRITE) {
    co_await socket_.async_wait(tcp::socket::wait_write, redirect_error(use_awaitable, ec));
    co_return !ec;
  }
  if (err == SSL_ERROR_ZERO_RETURN) {
    ec = asio::error::eof;
    co_return false;
  }
  fatal_ = true;
  if (err == SSL_ERROR_SYSCALL) {
    // errno 0: the peer closed the TCP connection without close_notify.
    ec = errno ? boost::system::error_code(errno, boost::system::system_category())
               : boost::system::error_code(asio::error::eof);
  } else {
    unsigned long e = ERR_peek_last_error();
    ec = boost::system::error_code(e ? ERR_GET_REASON(e) : -1, tlsCategory());
  }
  ERR_clear_error();
  co_return false;
}

asio::awaitable<void> TlsSocket::handshake(boost::system::error_code& ec) {
  if (!ssl_) {
    ec = boost::system::error_code(-1, tlsCategory());
    co_return;
  }
  for (;;) {
    ERR_clear_error();
    int rc = SSL_do_handshake(ssl_);
    if (rc == 1) co_return;
    if (!co_await waitFor(rc, ec)) co_return;
  }
}

asio::awaitable<size_t> TlsSocket::readSome(asio::mutable_buffer buf, boost::system::error_code& ec) {
  for (;;) {
    ERR_clear_error();
    size_t n = 0;
    int rc = SSL_read_ex(ssl_, buf.data(), buf.size(), &n);
    if (rc == 1) co_return n;
    if (!co_await waitFor(rc, ec)) co_return 0;
  }
}

asio::awaitable<size_t> TlsSocket::writeAll(asio::const_buffer buf, boost::system::error_code& ec) {
  size_t done = 0;
  while (done < buf.size()) {
    ERR_clear_error();
    size_t n = 0;
    int rc = SSL_write_ex(ssl_, static_cast<const char*>(buf.data()) + done, buf.size() - done, &n);
    if (rc == 1) {
      done += n;
      continue;
    }
    if (!co_await waitFor(rc, ec)) co_return done;
  }
  co_return done;
}

asio::awaitable<void> TlsSocket::shutdown(boost::system::error_code& ec) {
  // One close_notify; we do not wait for the peer's (most clients never send one).
  for (int tries = 0; tries < 4 && !fatal_; ++tries) {
    ERR_clear_error();
    int rc = SSL_shutdown(ssl_);
    if (rc >= 0) break;  // 0: sent, peer's not received; 1: complete
    if (SSL_get_error(ssl_, rc) != SSL_ERROR_WANT_WRITE) {
      ERR_clear_error();
      break;
    }
    co_await socket_.async_wait(tcp::socket::wait_write, redirect_error(use_awaitable, ec));
    if (ec) co_return;
  }
  socket_.shutdown(tcp::socket::shutdown_send, ec);
}

}  // namespace dingo
