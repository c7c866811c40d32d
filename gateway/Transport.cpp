#include "gateway/Transport.h"

#include "core/Log.h"

#include <openssl/err.h>

#include <cstring>
#include <utility>

// Every co_await here is a statement of its own, never inside a condition or a && operand:
// g++ 12 miscompiles some of those (a crash after `if (a && !co_await f())` was seen).

namespace dingo {

using asio::redirect_error;
using asio::use_awaitable;
using tcp = asio::ip::tcp;

// ---- plain ----------------------------------------------------------------------------

asio::awaitable<size_t> PlainSocket::readSome(asio::mutable_buffer buf, boost::system::error_code& ec) {
  size_t n = co_await socket_.async_read_some(buf, redirect_error(use_awaitable, ec));
  co_return n;
}

asio::awaitable<size_t> PlainSocket::writeAll(asio::const_buffer buf, boost::system::error_code& ec, bool) {
  size_t n = co_await asio::async_write(socket_, buf, redirect_error(use_awaitable, ec));
  co_return n;
}

size_t PlainSocket::readNow(asio::mutable_buffer buf, boost::system::error_code& ec) {
  if (!socket_.non_blocking()) socket_.non_blocking(true, ec);
  size_t n = socket_.read_some(buf, ec);
  if (ec == asio::error::try_again) ec = asio::error::would_block;
  return n;
}

size_t PlainSocket::trySend(std::span<const asio::const_buffer> bufs, boost::system::error_code& ec) {
  if (!socket_.non_blocking()) socket_.non_blocking(true, ec);
  size_t n = socket_.write_some(bufs, ec);
  if (ec == asio::error::would_block || ec == asio::error::try_again) ec = {};
  return n;
}

asio::awaitable<void> PlainSocket::waitWritable(boost::system::error_code& ec) {
  co_await socket_.async_wait(tcp::socket::wait_write, redirect_error(use_awaitable, ec));
}

// Nothing to send before the FIN that close() sends: no shutdown(2), a system call saved.
asio::awaitable<void> PlainSocket::shutdown(boost::system::error_code&) { co_return; }

// ---- TLS ------------------------------------------------------------------------------

namespace {

constexpr size_t kReadChunk = 16 * 1024 + 512;  // one full TLS record and then some

class TlsCategory final : public boost::system::error_category {
 public:
  const char* name() const noexcept override { return "dingo.tls"; }
  std::string message(int value) const override {
    if (value == -1) return "TLS protocol error";
    const char* reason = ERR_reason_error_string(ERR_PACK(ERR_LIB_SSL, 0, value));
    return reason ? reason : "TLS error " + std::to_string(value);
  }
};

TlsSocket::Buffers* buffersOf(BIO* bio) { return static_cast<TlsSocket::Buffers*>(BIO_get_data(bio)); }

int bioRead(BIO* bio, char* data, int len) {
  auto* b = buffersOf(bio);
  BIO_clear_retry_flags(bio);
  size_t avail = b->len - b->pos;
  if (avail == 0) {
    if (b->eof) return 0;
    BIO_set_retry_read(bio);
    return -1;
  }
  size_t n = std::min(avail, static_cast<size_t>(len));
  std::memcpy(data, b->in.get() + b->pos, n);
  b->pos += n;
  if (b->pos == b->len) {
    // All consumed: the buffer goes now, not at the next read, so that a connection
    // that goes idle keeps none.
    b->in.reset();
    b->pos = b->len = 0;
  }
  return static_cast<int>(n);
}

// Writes never block: they queue, and TlsSocket sends the queue itself.
int bioWrite(BIO* bio, const char* data, int len) {
  buffersOf(bio)->out.append(data, static_cast<size_t>(len));
  return len;
}

long bioCtrl(BIO* bio, int cmd, long, void*) {
  auto* b = buffersOf(bio);
  switch (cmd) {
    case BIO_CTRL_FLUSH: return 1;  // sent when TlsSocket chooses; see the header
    case BIO_CTRL_PENDING: return static_cast<long>(b->len - b->pos);
    case BIO_CTRL_WPENDING: return static_cast<long>(b->out.size());
    case BIO_CTRL_EOF: return b->eof && b->pos == b->len;
    default: return 0;
  }
}

BIO_METHOD* bufferMethod() {
  static BIO_METHOD* method = [] {
    int index = BIO_get_new_index();
    BIO_METHOD* m = index == -1 ? nullptr : BIO_meth_new(index | BIO_TYPE_SOURCE_SINK, "dingo-buffers");
    bool ok = m && BIO_meth_set_read(m, bioRead) == 1 && BIO_meth_set_write(m, bioWrite) == 1 &&
              BIO_meth_set_ctrl(m, bioCtrl) == 1 && BIO_meth_set_create(m, [](BIO* b) {
                BIO_set_init(b, 1);
                return 1;
              }) == 1;
    if (!ok) {
      // Only out of memory at start-up; every TLS connection then fails its BIO_new
      // (TlsSocket handles a null method) and is closed.
      logError("gateway", "cannot set up the TLS buffer BIO");
      BIO_meth_free(m);
      return static_cast<BIO_METHOD*>(nullptr);
    }
    return m;
  }();
  return method;
}

}  // namespace

const boost::system::error_category& tlsCategory() {
  static const TlsCategory category;
  return category;
}

TlsSocket::TlsSocket(tcp::socket s, SSL_CTX* ctx) : socket_(std::move(s)), ssl_(SSL_new(ctx)) {
  if (!ssl_) return;
  BIO_METHOD* method = bufferMethod();
  BIO* bio = method ? BIO_new(method) : nullptr;
  if (!bio) {
    SSL_free(ssl_);
    ssl_ = nullptr;
    return;
  }
  BIO_set_data(bio, &buffers_);
  // One BIO both ways: SSL_set_bio takes the one reference (an extra BIO_up_ref here
  // leaked a BIO per TLS connection, which LeakSanitizer found in build-asan).
  SSL_set_bio(ssl_, bio, bio);
  SSL_set_accept_state(ssl_);
}

TlsSocket::~TlsSocket() {
  if (ssl_) SSL_free(ssl_);
}

asio::awaitable<bool> TlsSocket::flush(boost::system::error_code& ec) {
  // Send what the socket takes, wait, repeat: the queue may grow meanwhile (a WebSocket
  // pushes while its close flushes), so no operation may hold a pointer into it.
  for (;;) {
    bool empty = sendNow(ec);
    if (ec) co_return false;
    if (empty) co_return true;
    co_await waitWritable(ec);
    if (ec) {
      fatal_ = true;
      co_return false;
    }
  }
}

asio::awaitable<bool> TlsSocket::receive(boost::system::error_code& ec) {
  Buffers& b = buffers_;
  if (b.pos == b.len) {
    // Everything was consumed: the buffer goes while we wait (idle connections keep none).
    b.in.reset();
    b.pos = b.len = 0;
  }
  if (std::exchange(fresh_, false)) {
    // A new connection's ClientHello came with it, as a rule: read it at once, which
    // saves re-arming the socket in epoll (async_wait) and a trip through the loop.
    if (receiveNow(ec)) co_return true;
    if (ec != asio::error::would_block) co_return false;
    ec = {};
  }
  if (!b.in) {
    if (idle_) {
      // Wait for bytes before taking a buffer for them: an idle connection holds none.
      co_await socket_.async_wait(tcp::socket::wait_read, redirect_error(use_awaitable, ec));
      if (ec) co_return false;
    }
    b.in.reset(new char[kReadChunk]);  // uninitialised on purpose
  }
  if (b.pos > 0) {  // keep the unread tail at the front
    std::memmove(b.in.get(), b.in.get() + b.pos, b.len - b.pos);
    b.len -= b.pos;
    b.pos = 0;
  }
  if (b.len == kReadChunk) co_return true;  // full: OpenSSL has enough to go on
  size_t n = co_await socket_.async_read_some(asio::buffer(b.in.get() + b.len, kReadChunk - b.len),
                                              redirect_error(use_awaitable, ec));
  b.len += n;
  if (ec == asio::error::eof) {
    b.eof = true;  // OpenSSL sees end of input and says how it takes it
    ec = {};
    co_return true;
  }
  co_return !ec;
}

bool TlsSocket::starved() const {
  return buffers_.pos == buffers_.len && !buffers_.eof && !SSL_has_pending(ssl_) &&
         !(SSL_get_shutdown(ssl_) & SSL_RECEIVED_SHUTDOWN);
}

asio::awaitable<bool> TlsSocket::waitFor(int rc, boost::system::error_code& ec) {
  int err = SSL_get_error(ssl_, rc);
  if (err == SSL_ERROR_WANT_READ && !buffers_.eof) co_return co_await refill(ec);
  failure(err, ec);
  co_return false;
}

asio::awaitable<bool> TlsSocket::refill(boost::system::error_code& ec) {
  if (output_hook_) {
    // WebSocket: never hold reads back for a slow reader; the session sends the rest.
    if (!buffers_.out.empty() && !sendNow(ec)) output_hook_();
    if (ec) co_return false;
  } else {
    // Whatever OpenSSL queued (a handshake flight) must be out before we wait for the reply.
    bool flushed = co_await flush(ec);
    if (!flushed) co_return false;
  }
  bool received = co_await receive(ec);
  co_return received;
}

void TlsSocket::failure(int err, boost::system::error_code& ec) {
  if (err == SSL_ERROR_ZERO_RETURN) {
    ec = asio::error::eof;  // close_notify
    return;
  }
  fatal_ = true;
  if (buffers_.eof) {
    ec = asio::error::eof;  // the peer closed the TCP connection without close_notify
  } else if (err == SSL_ERROR_SYSCALL) {
    ec = boost::system::error_code(-1, tlsCategory());
  } else {
    unsigned long e = ERR_peek_last_error();
    ec = boost::system::error_code(e ? ERR_GET_REASON(e) : -1, tlsCategory());
  }
  ERR_clear_error();
}

bool TlsSocket::receiveNow(boost::system::error_code& ec) {
  Buffers& b = buffers_;
  if (b.pos == b.len) {
    b.in.reset();
    b.pos = b.len = 0;
  }
  if (b.pos > 0) {
    std::memmove(b.in.get(), b.in.get() + b.pos, b.len - b.pos);
    b.len -= b.pos;
    b.pos = 0;
  }
  if (b.len == kReadChunk) return true;
  if (!socket_.non_blocking()) socket_.non_blocking(true, ec);
  if (!b.in) b.in.reset(new char[kReadChunk]);  // uninitialised on purpose
  char* at = b.in.get() + b.len;
  size_t room = kReadChunk - b.len;
  size_t n = socket_.read_some(asio::buffer(at, room), ec);
  if (ec == asio::error::eof) {
    b.eof = true;
    ec = {};
    return true;
  }
  if (ec == asio::error::try_again) ec = asio::error::would_block;
  if (ec) {
    if (b.len == 0) b.in.reset();  // nothing came: an idle connection keeps no buffer
    return false;
  }
  b.len += n;
  return true;
}

size_t TlsSocket::readNow(asio::mutable_buffer buf, boost::system::error_code& ec) {
  for (;;) {
    if (starved()) {
      if (!receiveNow(ec)) return 0;  // would_block: wait for the socket
      continue;
    }
    ERR_clear_error();
    size_t n = 0;
    int rc = SSL_read_ex(ssl_, buf.data(), buf.size(), &n);
    if (rc == 1) return n;
    int err = SSL_get_error(ssl_, rc);
    if (err == SSL_ERROR_WANT_READ && !buffers_.eof) {
      if (!receiveNow(ec)) return 0;  // would_block: wait for the socket
      continue;
    }
    failure(err, ec);
    return 0;
  }
}

asio::awaitable<void> TlsSocket::handshake(boost::system::error_code& ec) {
  if (!ssl_) {
    ec = boost::system::error_code(-1, tlsCategory());
    co_return;
  }
  for (;;) {
    // A call that can only answer WANT_READ is not made (see starved()).
    bool go_on = true;
    if (starved()) {
      go_on = co_await refill(ec);
    } else {
      ERR_clear_error();
      int rc = SSL_do_handshake(ssl_);
      if (rc == 1) co_return;
      go_on = co_await waitFor(rc, ec);
    }
    if (!go_on) {
      // A failed handshake leaves OpenSSL's fatal alert (protocol_version, decode_error,
      // handshake_failure, ...) in the output queue: send it, so that the peer learns
      // why instead of seeing a bare close. Without waiting: it is a few bytes on a
      // socket that has sent nothing since our last flight, and the caller closes next.
      boost::system::error_code ignored;
      sendNow(ignored);
      co_return;
    }
  }
}

asio::awaitable<size_t> TlsSocket::readSome(asio::mutable_buffer buf, boost::system::error_code& ec) {
  for (;;) {
    if (starved()) {
      bool go_on = co_await refill(ec);
      if (!go_on) co_return 0;
      continue;
    }
    ERR_clear_error();
    size_t n = 0;
    int rc = SSL_read_ex(ssl_, buf.data(), buf.size(), &n);
    if (rc == 1) co_return n;
    bool go_on = co_await waitFor(rc, ec);
    if (!go_on) co_return 0;
  }
}

asio::awaitable<size_t> TlsSocket::readSomeIdle(asio::mutable_buffer buf, boost::system::error_code& ec) {
  idle_ = true;
  size_t n = co_await readSome(buf, ec);
  idle_ = false;
  co_return n;
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

bool TlsSocket::encrypt(std::string_view data) {
  size_t done = 0;
  while (done < data.size()) {
    ERR_clear_error();
    size_t n = 0;
    // Our BIO takes every byte, so this only fails on a broken connection.
    if (SSL_write_ex(ssl_, data.data() + done, data.size() - done, &n) != 1) {
      ERR_clear_error();
      fatal_ = true;
      return false;
    }
    done += n;
  }
  return true;
}

bool TlsSocket::sendNow(boost::system::error_code& ec) {
  std::string& out = buffers_.out;
  if (out.empty()) return true;
  if (!socket_.non_blocking()) socket_.non_blocking(true, ec);
  size_t n = socket_.write_some(asio::buffer(out), ec);
  if (ec == asio::error::would_block || ec == asio::error::try_again) ec = {};
  if (ec) {
    fatal_ = true;
    return false;
  }
  out.erase(0, n);
  if (out.empty()) std::string().swap(out);  // an idle connection keeps no buffer
  return out.empty();
}

asio::awaitable<void> TlsSocket::waitWritable(boost::system::error_code& ec) {
  co_await socket_.async_wait(tcp::socket::wait_write, redirect_error(use_awaitable, ec));
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

void resetOnClose(asio::ip::tcp::socket& socket) {
  ::linger lg{1, 0};
  // Fails only on a socket that is closed already: then there is nothing to reset.
  if (::setsockopt(socket.native_handle(), SOL_SOCKET, SO_LINGER, &lg, sizeof lg) != 0 && socket.is_open())
    logWarn("gateway", "SO_LINGER 0: {}", errnoText(errno));
}

}  // namespace dingo
