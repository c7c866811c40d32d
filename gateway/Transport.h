#pragma once
// The byte streams a session runs on: plain TCP, or TLS. Both offer the same coroutines,
// so HttpSession is one template for both.
//
// TlsSocket runs OpenSSL over two small BIOs of ours instead of asio::ssl::stream (which
// keeps two 17 KB buffers per connection and copies every byte through a BIO pair):
// - reads: Asio's async_read_some fills an input buffer (one recv(2) takes whatever has
//   arrived, several TLS records at once; no epoll_ctl per wait, as async_wait would
//   cost), and OpenSSL reads from it. The buffer is freed once consumed, and a
//   keep-alive connection waits for its next request without one (readSomeIdle), so an
//   idle connection holds none.
// - writes: OpenSSL's records queue in a string that we send at once before waiting for
//   input, at the end of a response, or at shutdown; after a handshake the session
//   ticket, the response and close_notify leave in one send(2).
// With SSL_MODE_RELEASE_BUFFERS an idle TLS connection holds little beyond its SSL object.
#include <openssl/ssl.h>

#include <functional>
#include <memory>
#include <span>
#include <string>

#include "core/Asio.h"

namespace dingo {

// Makes the coming close() send a reset instead of a FIN (SO_LINGER 0). For clients we
// cut (timed out, too slow to read, abusive): a FIN would wait behind whatever they
// did not read, holding the socket and its kernel buffers in FIN-WAIT-1 for minutes;
// a reset frees both at once (nginx's reset_timedout_connection). Never for a clean
// end: a reset may destroy the last answer before the client reads it.
void resetOnClose(asio::ip::tcp::socket& socket);

class PlainSocket {
 public:
  explicit PlainSocket(asio::ip::tcp::socket s) : socket_(std::move(s)) {}
  // The same signature as TlsSocket's, so that one template builds either.
  PlainSocket(asio::ip::tcp::socket s, SSL_CTX*) : socket_(std::move(s)) {}

  asio::awaitable<size_t> readSome(asio::mutable_buffer buf, boost::system::error_code& ec);
  // The same as readSome here (the caller's buffer is all there is); see TlsSocket's.
  asio::awaitable<size_t> readSomeIdle(asio::mutable_buffer buf, boost::system::error_code& ec) {
    return readSome(buf, ec);
  }
  // `flush` is for TlsSocket's sake; plain writes always go out at once.
  asio::awaitable<size_t> writeAll(asio::const_buffer buf, boost::system::error_code& ec,
                                   bool flush = true);
  asio::awaitable<void> shutdown(boost::system::error_code& ec);
  asio::ip::tcp::socket& socket() { return socket_; }

  // For WebSocket sessions, which wait for readability themselves and hold no buffer
  // while idle: reads what has arrived, without waiting (would_block when nothing).
  size_t readNow(asio::mutable_buffer buf, boost::system::error_code& ec);
  // Sends what the socket takes now, without waiting; returns the bytes sent.
  size_t trySend(std::span<const asio::const_buffer> bufs, boost::system::error_code& ec);
  asio::awaitable<void> waitWritable(boost::system::error_code& ec);

 private:
  asio::ip::tcp::socket socket_;
};

// TLS errors are reported in this category (the value is an SSL_R_* reason or -1).
const boost::system::error_category& tlsCategory();

class TlsSocket {
 public:
  TlsSocket(asio::ip::tcp::socket s, SSL_CTX* ctx);
  ~TlsSocket();
  TlsSocket(const TlsSocket&) = delete;
  TlsSocket& operator=(const TlsSocket&) = delete;

  asio::awaitable<void> handshake(boost::system::error_code& ec);
  // End of stream (close_notify, or the peer closing the TCP connection) is asio::error::eof.
  asio::awaitable<size_t> readSome(asio::mutable_buffer buf, boost::system::error_code& ec);
  // readSome for a wait that may last (a keep-alive connection between requests): no
  // input buffer is held until bytes arrive. Such a wait costs an epoll_ctl (Asio
  // re-arms the socket for every async_wait), so the short waits (the handshake, the
  // rest of a request) read into a new buffer straight away instead.
  asio::awaitable<size_t> readSomeIdle(asio::mutable_buffer buf, boost::system::error_code& ec);
  // With `flush` false the bytes stay queued until the next flush, read wait or shutdown:
  // a last response then leaves in one TCP send together with close_notify.
  asio::awaitable<size_t> writeAll(asio::const_buffer buf, boost::system::error_code& ec,
                                   bool flush = true);
  // Sends everything still queued and close_notify (without waiting for the peer's);
  // closing the socket then sends the FIN.
  asio::awaitable<void> shutdown(boost::system::error_code& ec);
  asio::ip::tcp::socket& socket() { return socket_; }
  SSL* ssl() { return ssl_; }

  // WebSocket mode: decrypts what has arrived, without waiting (would_block when no
  // whole record is there yet). The input buffer exists only while a record is
  // incomplete, so an idle connection holds none.
  size_t readNow(asio::mutable_buffer buf, boost::system::error_code& ec);
  // Encrypts `data` into the output queue (never blocks).
  bool encrypt(std::string_view data);
  // Sends what the socket takes now of the output queue; true when it is empty.
  bool sendNow(boost::system::error_code& ec);
  size_t pendingOutput() const { return buffers_.out.size(); }
  asio::awaitable<void> waitWritable(boost::system::error_code& ec);
  // With a hook set, reads no longer wait for the output queue to drain before waiting
  // for input: they send what the socket takes and call the hook, whose owner sends
  // the rest (a WebSocket must read its peer's frames while its output is stalled).
  void setOutputHook(std::function<void()> hook) { output_hook_ = std::move(hook); }

  // What the BIOs work on.
  struct Buffers {
    std::unique_ptr<char[]> in;  // received, not yet read by OpenSSL: in[pos, len)
    size_t pos = 0;
    size_t len = 0;
    bool eof = false;  // the peer closed its side
    std::string out;   // written by OpenSSL, not yet sent
  };

 private:
  // Does what OpenSSL asked for after a call that returned `rc`: refill (WANT_READ), or
  // report the error in ec and return false.
  asio::awaitable<bool> waitFor(int rc, boost::system::error_code& ec);
  // Sends what OpenSSL queued (or hands it to the output hook) and receives more input.
  asio::awaitable<bool> refill(boost::system::error_code& ec);
  // True when a read or handshake call could only answer WANT_READ: no input queued for
  // OpenSSL, none left in its own buffers, no end of input or close_notify to report.
  // Such a call is skipped: with SSL_MODE_RELEASE_BUFFERS each one takes and frees
  // OpenSSL's 16 KB read buffer for nothing (two of them on every new connection).
  bool starved() const;
  asio::awaitable<bool> flush(boost::system::error_code& ec);
  asio::awaitable<bool> receive(boost::system::error_code& ec);
  // receive() without waiting: false with would_block when nothing has arrived.
  bool receiveNow(boost::system::error_code& ec);
  // Maps a failed OpenSSL call (anything but WANT_READ) to an error code.
  void failure(int ssl_error, boost::system::error_code& ec);

  asio::ip::tcp::socket socket_;
  Buffers buffers_;
  SSL* ssl_;
  bool fatal_ = false;  // after a fatal error OpenSSL forbids SSL_shutdown
  bool fresh_ = true;   // nothing read yet: the ClientHello is most likely there already
  bool idle_ = false;   // in readSomeIdle: wait for bytes before taking a buffer for them
  std::function<void()> output_hook_;
};

}  // namespace dingo
