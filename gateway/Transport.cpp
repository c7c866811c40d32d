#include "gateway/Transport.h"

#include <openssl/err.h>
#include <sys/socket.h>

#include <cerrno>

// Every co_await here is a statement of its own, never inside a condition or a && operand:
// g++ 12 miscompiles some of those (a crash after `if (a && !co_await f())` was seen).

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

asio::awaitable<size_t> PlainSocket::writeAll(asio::const_buffer buf, boost::system::error_code& ec,
                                              bool /*flush: plain writes go out at once*/) {
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

// Nothing to send before the FIN that close() sends: no shutdown(2), a system call saved.
asio::awaitable<void> PlainSocket::shutdown(boost::system::error_code&) { co_return; }

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

namespace {

// A write-only BIO that appends OpenSSL's records to the TlsSocket's queue. Flush
// requests are acknowledged and ignored: TlsSocket sends the queue itself before every
// wait for input, at the end of writeAll, and at shutdown, so nothing waits forever.
int queueWrite(BIO* bio, const char* data, int len) {
  static_cast<std::string*>(BIO_get_data(bio))->append(data, static_cast<size_t>(len));
  return len;
}

long queueCtrl(BIO* bio, int cmd, long, void*) {
  switch (cmd) {
    case BIO_CTRL_FLUSH: return 1;
    case BIO_CTRL_WPENDING:
    case BIO_CTRL_PENDING:
      return static_cast<long>(static_cast<std::string*>(BIO_get_data(bio))->size());
    default: return 0;
  }
}

BIO_METHOD* queueMethod() {
  static BIO_METHOD* method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "dingo-queue");
    BIO_meth_set_write(m, queueWrite);
    BIO_meth_set_ctrl(m, queueCtrl);
    BIO_meth_set_create(m, [](BIO* b) {
      BIO_set_init(b, 1);
      return 1;
    });
    return m;
  }();
  return method;
}

}  // namespace

// The socket must already be non-blocking (accept4 with SOCK_NONBLOCK in the
// supervisor, or Gateway's standalone accept loop): OpenSSL reads it directly.
TlsSocket::TlsSocket(tcp::socket s, SSL_CTX* ctx) : socket_(std::move(s)), ssl_(SSL_new(ctx)) {
  if (!ssl_) return;
  BIO* rbio = BIO_new_socket(socket_.native_handle(), BIO_NOCLOSE);
  BIO* wbio = BIO_new(queueMethod());
  if (!rbio || !wbio) {
    BIO_free(rbio);
    BIO_free(wbio);
    SSL_free(ssl_);
    ssl_ = nullptr;
    return;
  }
  BIO_set_data(wbio, &out_);
  SSL_set_bio(ssl_, rbio, wbio);
  SSL_set_accept_state(ssl_);
}

asio::awaitable<bool> TlsSocket::flush(boost::system::error_code& ec) {
  size_t done = 0;
  while (done < out_.size()) {
    ssize_t n = ::send(socket_.native_handle(), out_.data() + done, out_.size() - done,
                       MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n > 0) {
      done += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
      ec = boost::system::error_code(errno, boost::system::system_category());
      fatal_ = true;
      co_return false;
    }
    co_await socket_.async_wait(tcp::socket::wait_write, redirect_error(use_awaitable, ec));
    if (ec) co_return false;
  }
  out_.clear();
  if (out_.capacity() > 64 * 1024) std::string().swap(out_);  // a big response's buffer goes
  co_return true;
}

TlsSocket::~TlsSocket() {
  if (ssl_) SSL_free(ssl_);
}

asio::awaitable<bool> TlsSocket::waitFor(int rc, boost::system::error_code& ec) {
  int err = SSL_get_error(ssl_, rc);
  if (err == SSL_ERROR_WANT_READ) {
    // Whatever OpenSSL queued (a handshake flight) must be out before we wait for the reply.
    bool flushed = co_await flush(ec);
    if (!flushed) co_return false;
    co_await socket_.async_wait(tcp::socket::wait_read, redirect_error(use_awaitable, ec));
    co_return !ec;
  }
  if (err == SSL_ERROR_WANT_WRITE) {  // the queue never blocks; only a flush can
    bool flushed = co_await flush(ec);
    co_return flushed;
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
    bool go_on = co_await waitFor(rc, ec);
    if (!go_on) co_return;
  }
}

asio::awaitable<size_t> TlsSocket::readSome(asio::mutable_buffer buf, boost::system::error_code& ec) {
  for (;;) {
    ERR_clear_error();
    size_t n = 0;
    int rc = SSL_read_ex(ssl_, buf.data(), buf.size(), &n);
    if (rc == 1) co_return n;
    bool go_on = co_await waitFor(rc, ec);
    if (!go_on) co_return 0;
  }
}

asio::awaitable<size_t> TlsSocket::writeAll(asio::const_buffer buf, boost::system::error_code& ec,
                                            bool flush_now) {
  size_t done = 0;
  while (done < buf.size()) {
    ERR_clear_error();
    size_t n = 0;
    int rc = SSL_write_ex(ssl_, static_cast<const char*>(buf.data()) + done, buf.size() - done, &n);
    if (rc == 1) {
      done += n;
      continue;
    }
    bool go_on = co_await waitFor(rc, ec);
    if (!go_on) co_return done;
  }
  if (flush_now) {
    bool flushed = co_await flush(ec);
    if (!flushed) co_return 0;
  }
  co_return done;
}

asio::awaitable<void> TlsSocket::shutdown(boost::system::error_code& ec) {
  // One close_notify, queued behind the last response; we do not wait for the peer's
  // (most clients never send one).
  if (!fatal_) {
    ERR_clear_error();
    if (SSL_shutdown(ssl_) < 0) ERR_clear_error();
  }
  co_await flush(ec);  // the FIN follows with close()
}

}  // namespace dingo
