#pragma once
// The byte streams a session runs on: plain TCP, or TLS done by OpenSSL directly on the
// socket. Both offer the same four coroutines, so HttpSession is one template for both.
//
// TlsSocket does not use asio::ssl::stream: that one puts a memory BIO pair between
// OpenSSL and the socket, copies every byte through it, and allocates two 17 KB buffers
// per connection. Here OpenSSL reads and writes the non-blocking socket itself (as nginx
// does) and Asio only waits for readiness, so an idle TLS connection holds just its SSL
// object, whose buffers SSL_MODE_RELEASE_BUFFERS gives back. Writes are queued and sent
// together: after a handshake the session ticket, the response and close_notify leave in
// one send(2) instead of three.
#include <openssl/ssl.h>

#include <string>

#include "core/Asio.h"

namespace dingo {

class PlainSocket {
 public:
  explicit PlainSocket(asio::ip::tcp::socket s) : socket_(std::move(s)) {}

  asio::awaitable<size_t> readSome(asio::mutable_buffer buf, boost::system::error_code& ec);
  asio::awaitable<size_t> writeAll(asio::const_buffer buf, boost::system::error_code& ec,
                                   bool flush = true);
  asio::awaitable<void> shutdown(boost::system::error_code& ec);
  asio::ip::tcp::socket& socket() { return socket_; }

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
  // With `flush` false the bytes stay queued until the next flush, read wait or shutdown:
  // a last response then leaves in one TCP send together with close_notify.
  asio::awaitable<size_t> writeAll(asio::const_buffer buf, boost::system::error_code& ec,
                                   bool flush = true);
  // Sends everything still queued and close_notify (without waiting for the peer's);
  // closing the socket then sends the FIN.
  asio::awaitable<void> shutdown(boost::system::error_code& ec);
  asio::ip::tcp::socket& socket() { return socket_; }
  SSL* ssl() { return ssl_; }

  // OpenSSL writes its records into this queue (see the BIO in Transport.cpp); it is
  // empty, and holds no memory to speak of, while the connection is idle.
  std::string& outQueue() { return out_; }

 private:
  // Waits for what OpenSSL asked for after a call that returned `rc`; sets ec on a real error.
  asio::awaitable<bool> waitFor(int rc, boost::system::error_code& ec);
  asio::awaitable<bool> flush(boost::system::error_code& ec);

  asio::ip::tcp::socket socket_;
  SSL* ssl_;
  std::string out_;
  bool fatal_ = false;  // after a fatal error OpenSSL forbids SSL_shutdown
};

}  // namespace dingo
