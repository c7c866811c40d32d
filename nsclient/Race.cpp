#include "nsclient/Race.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace dingo::ns {

double msSince(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }

std::string sslError() {
  unsigned long e = ERR_get_error();
  if (!e) return "TLS failure";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  ERR_clear_error();
  return buf;
}

bool makeSockaddr(const Endpoint& ep, sockaddr_storage& ss, socklen_t& len) {
  std::memset(&ss, 0, sizeof ss);
  auto* v4 = reinterpret_cast<sockaddr_in*>(&ss);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&ss);
  if (::inet_pton(AF_INET, ep.host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(ep.port);
    len = sizeof *v4;
    return true;
  }
  if (::inet_pton(AF_INET6, ep.host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(ep.port);
    len = sizeof *v6;
    return true;
  }
  return false;
}

namespace {

// The status code of an HTTP/1.1 answer's head, or 0.
int parseStatus(const std::string& head) {
  if (head.size() < 12 || head.compare(0, 5, "HTTP/") != 0) return 0;
  size_t sp = head.find(' ');
  if (sp == std::string::npos || sp + 4 > head.size()) return 0;
  int code = 0;
  for (size_t i = sp + 1; i < sp + 4; ++i) {
    if (head[i] < '0' || head[i] > '9') return 0;
    code = code * 10 + (head[i] - '0');
  }
  return code;
}

}  // namespace

// ---- Connection ----------------------------------------------------------------------

Connection::Connection(int fd, SSL* ssl, Candidate c) : fd_(fd), ssl_(ssl), candidate_(std::move(c)) {}

Connection::~Connection() {
  if (ssl_) {
    SSL_shutdown(ssl_);  // non-blocking: sends close_notify if it can
    SSL_free(ssl_);
  }
  if (fd_ >= 0) ::close(fd_);
}

namespace {

// Waits until `fd` is ready for `events`: 1, or 0 at the deadline, or -1 on error.
int waitFor(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return 0;
    pollfd p{fd, events, 0};
    int n = ::poll(&p, 1, static_cast<int>(std::min<int64_t>(left, 1000)));
    if (n > 0) return 1;
    if (n < 0 && errno != EINTR) return -1;
  }
}

}  // namespace

bool Connection::writeAll(std::string_view data, std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  while (!data.empty()) {
    long n;
    short want = POLLOUT;
    if (ssl_) {
      ERR_clear_error();
      int r = SSL_write(ssl_, data.data(), static_cast<int>(std::min<size_t>(data.size(), 1 << 20)));
      if (r > 0) {
        n = r;
      } else {
        int e = SSL_get_error(ssl_, r);
        if (e == SSL_ERROR_WANT_READ) want = POLLIN;
        else if (e != SSL_ERROR_WANT_WRITE) return false;
        if (waitFor(fd_, want, deadline) <= 0) return false;
        continue;
      }
    } else {
      n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n < 0) {
        if (errno != EAGAIN && errno != EINTR) return false;
        if (waitFor(fd_, POLLOUT, deadline) <= 0) return false;
        continue;
      }
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

long Connection::readSome(char* buf, size_t len, std::chrono::milliseconds timeout) {
  if (!leftover_.empty()) {
    size_t n = std::min(len, leftover_.size());
    std::memcpy(buf, leftover_.data(), n);
    leftover_.erase(0, n);
    return static_cast<long>(n);
  }
  auto deadline = Clock::now() + timeout;
  for (;;) {
    short want = POLLIN;
    if (ssl_) {
      ERR_clear_error();
      int r = SSL_read(ssl_, buf, static_cast<int>(std::min<size_t>(len, 1 << 20)));
      if (r > 0) return r;
      int e = SSL_get_error(ssl_, r);
      if (e == SSL_ERROR_ZERO_RETURN) return 0;
      if (e == SSL_ERROR_WANT_WRITE) want = POLLOUT;
      else if (e != SSL_ERROR_WANT_READ) return e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0 ? 0 : kReadFailed;
    } else {
      ssize_t r = ::recv(fd_, buf, len, 0);
      if (r >= 0) return r;
      if (errno != EAGAIN && errno != EINTR) return kReadFailed;
    }
    if (int w = waitFor(fd_, want, deadline); w <= 0) return w == 0 ? kReadTimedOut : kReadFailed;
  }
}

std::optional<std::string> Connection::readBody(size_t max, std::chrono::milliseconds timeout) {
  size_t length = 0;
  {
    std::string lower = head_;
    std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
    size_t at = lower.find("\r\ncontent-length:");
    if (at == std::string::npos) return std::nullopt;
    length = std::strtoull(lower.c_str() + at + 17, nullptr, 10);
  }
  if (length > max) return std::nullopt;
  std::string body;
  auto deadline = Clock::now() + timeout;
  char buf[16384];
  while (body.size() < length) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) return std::nullopt;
    long n = readSome(buf, std::min(sizeof buf, length - body.size()), left);
    if (n <= 0) return std::nullopt;
    body.append(buf, static_cast<size_t>(n));
  }
  return body;
}

// ---- the race --------------------------------------------------------------------------

// Runs the attempts of one race on non-blocking sockets with poll(2).
class Racer {
 public:
  Racer(SSL_CTX* ctx, std::string server_name, std::string request, int expect, std::chrono::milliseconds stagger,
        std::chrono::milliseconds attempt_timeout)
      : ctx_(ctx),
        server_name_(std::move(server_name)),
        request_(std::move(request)),
        expect_(expect),
        stagger_(std::clamp(stagger, std::chrono::milliseconds(100), std::chrono::milliseconds(2000))),
        timeout_(attempt_timeout) {}

  std::unique_ptr<Connection> run(const std::vector<Candidate>& cands, std::vector<Attempt>& log) {
    tries_.resize(cands.size());
    for (size_t i = 0; i < cands.size(); ++i) tries_[i].c = cands[i];
    size_t next = 0;
    auto next_start = Clock::now();
    std::unique_ptr<Connection> winner;
    while (!winner) {
      auto now = Clock::now();
      bool any_active = std::any_of(tries_.begin(), tries_.end(), [](const Try& t) { return t.phase == Active; });
      // RFC 8305: the next attempt after the stagger, or at once when none is running.
      if (next < tries_.size() && (now >= next_start || !any_active)) {
        start(tries_[next++]);
        next_start = Clock::now() + stagger_;
        continue;
      }
      if (!any_active && next >= tries_.size()) break;
      for (auto& t : tries_)
        if (t.phase == Active && now - t.started >= timeout_) fail(t, "timed out");
      std::vector<pollfd> pfds;
      std::vector<Try*> owners;
      auto wake = next < tries_.size() ? next_start : now + std::chrono::seconds(1);
      for (auto& t : tries_) {
        if (t.phase != Active) continue;
        pfds.push_back({t.fd, t.events, 0});
        owners.push_back(&t);
        wake = std::min(wake, t.started + timeout_);
      }
      int wait_ms = static_cast<int>(
          std::max<int64_t>(0, std::chrono::duration_cast<std::chrono::milliseconds>(wake - Clock::now()).count()) + 1);
      int n = ::poll(pfds.data(), pfds.size(), wait_ms);
      if (n < 0 && errno != EINTR) break;
      for (size_t i = 0; i < pfds.size() && n > 0; ++i) {
        if (!pfds[i].revents) continue;
        Try& t = *owners[i];
        step(t);
        if (t.phase == Won) {
          winner = std::make_unique<Connection>(t.fd, t.ssl, t.c);
          winner->rtt_ms_ = t.ms;
          winner->status_ = parseStatus(t.in);
          size_t end = t.in.find("\r\n\r\n") + 4;
          winner->head_ = t.in.substr(0, end);
          winner->leftover_ = t.in.substr(end);
          t.fd = -1;
          t.ssl = nullptr;
          break;
        }
      }
    }
    for (auto& t : tries_) {
      Attempt a{t.c, t.phase == Won, t.ms, t.error};
      if (t.phase == Active || t.phase == Idle) {
        a.error = t.phase == Active ? "abandoned" : "not tried";
        a.ms = t.phase == Active ? msSince(t.started) : 0;
      }
      log.push_back(std::move(a));
      close(t);
    }
    return winner;
  }

 private:
  enum Phase { Idle, Active, Won, Failed };
  enum Stage { Connecting, Handshaking, Writing, Reading };
  struct Try {
    Candidate c;
    Phase phase = Idle;
    Stage stage = Connecting;
    int fd = -1;
    SSL* ssl = nullptr;
    short events = POLLOUT;
    Clock::time_point started;
    size_t sent = 0;
    std::string in;
    double ms = 0;
    std::string error;
  };

  void start(Try& t) {
    t.phase = Active;
    t.started = Clock::now();
    sockaddr_storage ss;
    socklen_t len;
    if (!makeSockaddr(t.c.endpoint, ss, len)) return fail(t, "not a numeric address");
    t.fd = ::socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (t.fd < 0) return fail(t, std::string("socket: ") + std::strerror(errno));
    int one = 1;
    ::setsockopt(t.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (::connect(t.fd, reinterpret_cast<sockaddr*>(&ss), len) != 0 && errno != EINPROGRESS)
      return fail(t, std::string("connect: ") + std::strerror(errno));
    t.stage = Connecting;
    t.events = POLLOUT;
  }

  void fail(Try& t, std::string why) {
    t.phase = Failed;
    t.ms = msSince(t.started);
    t.error = std::move(why);
    close(t);
  }

  static void close(Try& t) {
    if (t.ssl) SSL_free(t.ssl);
    if (t.fd >= 0) ::close(t.fd);
    t.ssl = nullptr;
    t.fd = -1;
  }

  // Advances an attempt as far as it goes without blocking.
  void step(Try& t) {
    if (t.stage == Connecting) {
      int err = 0;
      socklen_t len = sizeof err;
      ::getsockopt(t.fd, SOL_SOCKET, SO_ERROR, &err, &len);
      if (err) return fail(t, std::string("connect: ") + std::strerror(err));
      if (t.c.endpoint.tls) {
        t.ssl = SSL_new(ctx_);
        if (!t.ssl) return fail(t, sslError());
        SSL_set_fd(t.ssl, t.fd);
        // The service's name, whatever address we dialled: SNI and the certificate check.
        SSL_set_tlsext_host_name(t.ssl, server_name_.c_str());
        SSL_set1_host(t.ssl, server_name_.c_str());
        SSL_set_connect_state(t.ssl);
        t.stage = Handshaking;
      } else {
        t.stage = Writing;
      }
    }
    if (t.stage == Handshaking) {
      ERR_clear_error();
      int r = SSL_do_handshake(t.ssl);
      if (r != 1) {
        int e = SSL_get_error(t.ssl, r);
        if (e == SSL_ERROR_WANT_READ) t.events = POLLIN;
        else if (e == SSL_ERROR_WANT_WRITE) t.events = POLLOUT;
        else {
          long verify = SSL_get_verify_result(t.ssl);
          std::string why = verify != X509_V_OK ? std::string("certificate: ") + X509_verify_cert_error_string(verify)
                                                : "TLS: " + sslError();
          return fail(t, why);
        }
        return;
      }
      t.stage = Writing;
    }
    if (t.stage == Writing) {
      while (t.sent < request_.size()) {
        long n;
        if (t.ssl) {
          ERR_clear_error();
          int r = SSL_write(t.ssl, request_.data() + t.sent, static_cast<int>(request_.size() - t.sent));
          if (r <= 0) {
            int e = SSL_get_error(t.ssl, r);
            if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
              t.events = e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
              return;
            }
            return fail(t, "TLS write: " + sslError());
          }
          n = r;
        } else {
          n = ::send(t.fd, request_.data() + t.sent, request_.size() - t.sent, MSG_NOSIGNAL);
          if (n < 0) {
            if (errno == EAGAIN) {
              t.events = POLLOUT;
              return;
            }
            return fail(t, std::string("send: ") + std::strerror(errno));
          }
        }
        t.sent += static_cast<size_t>(n);
      }
      t.stage = Reading;
      t.events = POLLIN;
    }
    if (t.stage == Reading) {
      char buf[8192];
      for (;;) {
        long n;
        if (t.ssl) {
          ERR_clear_error();
          int r = SSL_read(t.ssl, buf, sizeof buf);
          if (r <= 0) {
            int e = SSL_get_error(t.ssl, r);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
              t.events = e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
              return;
            }
            return fail(t, e == SSL_ERROR_ZERO_RETURN ? "closed before answering" : "TLS read: " + sslError());
          }
          n = r;
        } else {
          n = ::recv(t.fd, buf, sizeof buf, 0);
          if (n < 0) {
            if (errno == EAGAIN) return;
            return fail(t, std::string("recv: ") + std::strerror(errno));
          }
          if (n == 0) return fail(t, "closed before answering");
        }
        t.in.append(buf, static_cast<size_t>(n));
        if (t.in.find("\r\n\r\n") != std::string::npos) {
          int status = parseStatus(t.in);
          if (status != expect_) return fail(t, "answered " + (status ? std::to_string(status) : "something not HTTP"));
          t.phase = Won;
          t.ms = msSince(t.started);
          return;
        }
        if (t.in.size() > 16384) return fail(t, "answer head too large");
      }
    }
  }

  SSL_CTX* ctx_;
  std::string server_name_;
  std::string request_;
  int expect_;
  std::chrono::milliseconds stagger_;
  std::chrono::milliseconds timeout_;
  std::vector<Try> tries_;
};

std::unique_ptr<Connection> runRace(SSL_CTX* ctx, const std::string& server_name, const std::string& request,
                                    int expect_status, std::chrono::milliseconds stagger,
                                    std::chrono::milliseconds attempt_timeout,
                                    const std::vector<Candidate>& candidates, std::vector<Attempt>& log) {
  Racer racer(ctx, server_name, request, expect_status, stagger, attempt_timeout);
  return racer.run(candidates, log);
}

}  // namespace dingo::ns
