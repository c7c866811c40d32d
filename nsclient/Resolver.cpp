#include "dingo/nsclient/Resolver.h"

#include <arpa/inet.h>
#include <ares.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <thread>

namespace dingo::ns {

namespace {

using Clock = std::chrono::steady_clock;

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

const char* sourceName(Source s) {
  switch (s) {
    case Source::Primary: return "primary";
    case Source::Backup: return "backup";
    case Source::Store: return "store";
    case Source::Seed: return "seed";
  }
  return "?";
}

std::string Endpoint::toString() const {
  return host.find(':') != std::string::npos ? "[" + host + "]:" + std::to_string(port)
                                             : host + ":" + std::to_string(port);
}

std::optional<Endpoint> parseEndpoint(std::string_view text, bool tls) {
  std::string host;
  std::string_view port_text;
  if (text.starts_with("[")) {
    size_t close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') return std::nullopt;
    host = text.substr(1, close - 1);
    port_text = text.substr(close + 2);
  } else {
    size_t colon = text.rfind(':');
    if (colon == std::string_view::npos || text.find(':') != colon) return std::nullopt;
    host = text.substr(0, colon);
    port_text = text.substr(colon + 1);
  }
  unsigned long port = 0;
  if (port_text.empty() || port_text.size() > 5) return std::nullopt;
  for (char c : port_text) {
    if (c < '0' || c > '9') return std::nullopt;
    port = port * 10 + static_cast<unsigned long>(c - '0');
  }
  if (port == 0 || port > 65535) return std::nullopt;
  Endpoint ep{host, static_cast<uint16_t>(port), tls};
  sockaddr_storage ss;
  socklen_t len;
  if (!makeSockaddr(ep, ss, len)) return std::nullopt;
  return ep;
}

int64_t unixNow() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// ---- DNS ---------------------------------------------------------------------------

namespace {

struct Query {
  DnsResult* out;
  bool done = false;
  bool abandoned = false;  // past the deadline: the answer is "no answer"
};

void onAddrinfo(void* arg, int status, int /*timeouts*/, ares_addrinfo* res) {
  auto* q = static_cast<Query*>(arg);
  if (q->abandoned) {
    if (res) ares_freeaddrinfo(res);
    return;
  }
  q->done = true;
  if (status != ARES_SUCCESS) {
    q->out->error = ares_strerror(status);
    if (res) ares_freeaddrinfo(res);
    return;
  }
  int64_t ttl = -1;
  std::set<std::string> seen;
  for (ares_addrinfo_node* n = res ? res->nodes : nullptr; n; n = n->ai_next) {
    char buf[INET6_ADDRSTRLEN] = {};
    if (n->ai_family == AF_INET)
      ::inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(n->ai_addr)->sin_addr, buf, sizeof buf);
    else if (n->ai_family == AF_INET6)
      ::inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(n->ai_addr)->sin6_addr, buf, sizeof buf);
    else
      continue;
    if (seen.insert(buf).second) q->out->addresses.push_back(buf);
    ttl = ttl < 0 ? n->ai_ttl : std::min<int64_t>(ttl, n->ai_ttl);
  }
  q->out->ttl_s = std::max<int64_t>(ttl, 0);
  if (q->out->addresses.empty()) q->out->error = "no addresses";
  if (res) ares_freeaddrinfo(res);
}

std::once_flag ares_once;

}  // namespace

std::vector<DnsResult> lookup(const std::vector<std::string>& names, const std::string& server,
                              std::chrono::milliseconds timeout) {
  std::call_once(ares_once, [] { ares_library_init(ARES_LIB_INIT_ALL); });
  std::vector<DnsResult> results(names.size());
  ares_options opts{};
  int mask = ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_FLAGS;
  // Two tries inside the budget: one lost UDP packet does not fail the lookup.
  opts.timeout = static_cast<int>(std::max<int64_t>(timeout.count() / 2, 50));
  opts.tries = 2;
  opts.flags = ARES_FLAG_NOSEARCH;
  char lookups[] = "b";  // DNS only: a chosen server is the only authority
  if (!server.empty()) {
    opts.lookups = lookups;
    mask |= ARES_OPT_LOOKUPS;
  }
  ares_channel channel;
  if (int rc = ares_init_options(&channel, &opts, mask); rc != ARES_SUCCESS) {
    for (auto& r : results) r.error = std::string("c-ares: ") + ares_strerror(rc);
    return results;
  }
  if (!server.empty()) {
    if (int rc = ares_set_servers_ports_csv(channel, server.c_str()); rc != ARES_SUCCESS) {
      for (auto& r : results) r.error = "DNS server '" + server + "': " + ares_strerror(rc);
      ares_destroy(channel);
      return results;
    }
  }
  std::vector<Query> queries(names.size());
  ares_addrinfo_hints hints{};
  hints.ai_family = AF_UNSPEC;
  for (size_t i = 0; i < names.size(); ++i) {
    queries[i].out = &results[i];
    ares_getaddrinfo(channel, names[i].c_str(), nullptr, &hints, onAddrinfo, &queries[i]);
  }
  auto deadline = Clock::now() + timeout;
  auto pending = [&] { return std::any_of(queries.begin(), queries.end(), [](const Query& q) { return !q.done; }); };
  while (pending()) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) break;
    ares_socket_t socks[ARES_GETSOCK_MAXNUM];
    int bits = ares_getsock(channel, socks, ARES_GETSOCK_MAXNUM);
    std::vector<pollfd> pfds;
    for (int i = 0; i < ARES_GETSOCK_MAXNUM; ++i) {
      short ev = 0;
      if (ARES_GETSOCK_READABLE(bits, i)) ev |= POLLIN;
      if (ARES_GETSOCK_WRITABLE(bits, i)) ev |= POLLOUT;
      if (ev) pfds.push_back({socks[i], ev, 0});
    }
    timeval max{static_cast<time_t>(left.count() / 1000), static_cast<suseconds_t>((left.count() % 1000) * 1000)};
    timeval tv;
    timeval* t = ares_timeout(channel, &max, &tv);
    int wait_ms = static_cast<int>(t->tv_sec * 1000 + t->tv_usec / 1000) + 1;
    int n = ::poll(pfds.data(), pfds.size(), wait_ms);
    if (n < 0 && errno != EINTR) break;
    if (n <= 0) {
      ares_process_fd(channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);  // timeouts
      continue;
    }
    for (const auto& p : pfds) {
      ares_socket_t r = (p.revents & (POLLIN | POLLERR | POLLHUP)) ? p.fd : ARES_SOCKET_BAD;
      ares_socket_t w = (p.revents & POLLOUT) ? p.fd : ARES_SOCKET_BAD;
      if (r != ARES_SOCKET_BAD || w != ARES_SOCKET_BAD) ares_process_fd(channel, r, w);
    }
  }
  for (auto& q : queries) {
    if (q.done) continue;
    q.abandoned = true;
    q.out->error = "no answer within " + std::to_string(timeout.count()) + " ms";
  }
  ares_destroy(channel);  // calls back what is left with ARES_EDESTRUCTION
  return results;
}

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
      else if (e != SSL_ERROR_WANT_READ) return e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0 ? 0 : -1;
    } else {
      ssize_t r = ::recv(fd_, buf, len, 0);
      if (r >= 0) return r;
      if (errno != EAGAIN && errno != EINTR) return -1;
    }
    if (int w = waitFor(fd_, want, deadline); w <= 0) return w == 0 ? -2 : -1;
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

// ---- Resolver ------------------------------------------------------------------------

Resolver::Resolver(Options options) : options_(std::move(options)) {
  store_ = std::make_unique<Store>(options_.db_path);
  std::random_device rd;
  refresh_jitter_ = std::uniform_real_distribution<double>(-0.1, 0.1)(rd);
}

Resolver::~Resolver() {
  if (ssl_ctx_) SSL_CTX_free(ssl_ctx_);
}

std::string Resolver::serverName() const {
  if (!options_.server_name.empty()) return options_.server_name;
  if (!options_.primary.empty()) return options_.primary;
  return options_.backup;
}

SSL_CTX* Resolver::sslContext() {
  if (ssl_ctx_) return ssl_ctx_;
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  if (!ctx) throw std::runtime_error("SSL_CTX_new: " + sslError());
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  if (!options_.ca_file.empty()) {
    if (SSL_CTX_load_verify_locations(ctx, options_.ca_file.c_str(), nullptr) != 1) {
      std::string why = sslError();
      SSL_CTX_free(ctx);
      throw std::runtime_error("--ca " + options_.ca_file + ": " + why);
    }
  } else {
    SSL_CTX_set_default_verify_paths(ctx);
  }
  static const unsigned char alpn[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
  SSL_CTX_set_alpn_protos(ctx, alpn, sizeof alpn);
  ssl_ctx_ = ctx;
  return ctx;
}

// Higher is tried first. The source sets the base; a record of successes, failures and
// round-trip time moves it; staleness costs more than any source difference, so a fresh
// candidate of any source goes before a stale one.
double Resolver::score(const Candidate& c, const std::optional<StoredEndpoint>& rec, int64_t now) const {
  double s = 0;
  switch (c.source) {
    case Source::Primary: s = 100; break;
    case Source::Backup: s = 90; break;
    case Source::Store: s = 80; break;
    case Source::Seed: s = 60; break;
  }
  if (rec) {
    double ok = Store::decayed(rec->successes, rec->last_success, now);
    double bad = Store::decayed(rec->failures, rec->last_failure, now);
    s += 10 * std::min(ok, 3.0);
    s -= 25 * std::min(bad, 4.0);
    if (rec->rtt_ms > 0) s -= std::min(rec->rtt_ms / 20, 25.0);
    // The latest outcome counts most: an endpoint that just failed goes after one that
    // just worked.
    if (rec->last_failure > rec->last_success) s -= 15;
  }
  if (c.stale) s -= 100;
  return s;
}

std::vector<Candidate> Resolver::candidates(std::vector<std::string>* notes) {
  auto note = [&](std::string n) {
    if (notes) notes->push_back(std::move(n));
  };
  int64_t now = unixNow();
  std::vector<Candidate> out;
  std::set<std::pair<std::string, uint16_t>> seen;
  // One candidate per endpoint: the first source that gives it, unless that one is stale
  // and a later one fresh.
  auto add = [&](Candidate c) {
    if (seen.insert({c.endpoint.host, c.endpoint.port}).second) {
      out.push_back(std::move(c));
      return;
    }
    for (auto& have : out)
      if (have.endpoint.host == c.endpoint.host && have.endpoint.port == c.endpoint.port && have.stale && !c.stale)
        have = std::move(c);
  };

  // DNS: both names at once; a fresh cached answer is used without asking (TTL-aware);
  // a failed lookup falls back to the cached answer, marked stale past its TTL.
  std::vector<std::pair<std::string, Source>> names;
  if (!options_.primary.empty()) names.emplace_back(options_.primary, Source::Primary);
  if (!options_.backup.empty()) names.emplace_back(options_.backup, Source::Backup);
  std::vector<std::string> ask;
  std::map<std::string, DnsAnswer> answers;
  std::set<std::string> answered_now;  // fresh whatever their TTL
  for (const auto& [name, src] : names) {
    auto cached = store_->dns(name);
    if (cached && cached->resolved_at + cached->ttl_s > now && !cached->addresses.empty()) answers[name] = *cached;
    else ask.push_back(name);
  }
  if (!ask.empty()) {
    auto results = lookup(ask, options_.dns_server, options_.dns_timeout);
    for (size_t i = 0; i < ask.size(); ++i) {
      if (results[i].error.empty()) {
        DnsAnswer a{ask[i], results[i].addresses, now, results[i].ttl_s};
        store_->saveDns(a);
        answers[ask[i]] = a;
        answered_now.insert(ask[i]);
      } else {
        note("DNS " + ask[i] + ": " + results[i].error);
        if (auto cached = store_->dns(ask[i]); cached && !cached->addresses.empty()) answers[ask[i]] = *cached;
      }
    }
  }
  // Primary first; the backup domain's answers only when the primary has none.
  bool primary_answered = false;
  for (const auto& [name, src] : names) {
    auto it = answers.find(name);
    if (it == answers.end()) continue;
    if (src == Source::Backup && primary_answered) continue;
    const DnsAnswer& a = it->second;
    bool stale = !answered_now.count(name) && a.resolved_at + a.ttl_s <= now;
    if (src == Source::Primary && !stale) primary_answered = true;
    for (const auto& addr : a.addresses)
      add(Candidate{Endpoint{addr, options_.port, options_.tls}, src, static_cast<double>(now - a.resolved_at), stale});
  }
  // The stored node list, stale past its TTL.
  auto meta = store_->nodesMeta();
  for (const auto& e : store_->listed()) {
    // A plain endpoint could be anyone's: only with --plain (Options::tls false).
    if (!e.tls && options_.tls) continue;
    bool stale = !meta || meta->refreshed_at + meta->ttl_s <= now;
    add(Candidate{Endpoint{e.host, e.port, e.tls}, Source::Store, static_cast<double>(now - e.listed_at), stale});
  }
  for (const auto& s : options_.seeds) add(Candidate{s, Source::Seed, 0, false});

  std::map<std::pair<std::string, uint16_t>, StoredEndpoint> records;
  for (auto& e : store_->endpoints()) records.emplace(std::make_pair(e.host, e.port), e);
  for (auto& c : out) {
    auto it = records.find({c.endpoint.host, c.endpoint.port});
    c.score = score(c, it == records.end() ? std::nullopt : std::optional<StoredEndpoint>(it->second), now);
  }
  rankStaleLast(out);
  return out;
}

double Resolver::score(const Candidate& c) const {
  return score(c, store_->find(c.endpoint.host, c.endpoint.port), unixNow());
}

void Resolver::rankStaleLast(std::vector<Candidate>& out) {
  std::stable_sort(out.begin(), out.end(), [](const Candidate& a, const Candidate& b) { return a.score > b.score; });
  // Never a stale candidate first (and so alone for a stagger) while a fresh one exists.
  if (!out.empty() && out.front().stale) {
    auto fresh = std::find_if(out.begin(), out.end(), [](const Candidate& c) { return !c.stale; });
    if (fresh != out.end()) std::rotate(out.begin(), fresh, fresh + 1);
  }
}

std::string Resolver::request(const std::string& path, const std::string& headers) const {
  std::string name = serverName();
  return "GET " + path + " HTTP/1.1\r\nHost: " + (name.empty() ? "dingo" : name) +
         "\r\nUser-Agent: dingo-nsclient/" DINGO_NSCLIENT_VERSION "\r\n" + headers + "\r\n";
}

void Resolver::record(const std::vector<Attempt>& attempts) {
  int64_t now = unixNow();
  for (const auto& a : attempts) {
    const Endpoint& ep = a.candidate.endpoint;
    try {
      if (a.ok) store_->recordSuccess(ep.host, ep.port, ep.tls, a.ms, now);
      // An attempt still running when a later-started one won lost by a stagger at
      // least: it counts against it. Attempts never started count for nothing.
      else if (a.error != "not tried") store_->recordFailure(ep.host, ep.port, ep.tls, now);
    } catch (const StoreError&) {
      // The record is a hint; a busy or read-only store must not fail the connection.
    }
  }
}

std::unique_ptr<Connection> Resolver::race(const std::vector<Candidate>& cands, const std::string& path,
                                           const std::string& headers, int expect_status,
                                           std::vector<Attempt>* attempts) {
  bool any_tls = std::any_of(cands.begin(), cands.end(), [](const Candidate& c) { return c.endpoint.tls; });
  if (any_tls && serverName().empty())
    throw std::runtime_error("TLS needs the service's name to verify: give --primary (or --server-name)");
  Racer racer(any_tls ? sslContext() : nullptr, serverName(), request(path, headers), expect_status,
              options_.stagger, options_.attempt_timeout);
  std::vector<Attempt> log;
  auto winner = racer.run(cands, log);
  record(log);
  if (attempts) *attempts = std::move(log);
  return winner;
}

std::vector<Attempt> Resolver::probeAll(const std::vector<Candidate>& cands) {
  bool any_tls = std::any_of(cands.begin(), cands.end(), [](const Candidate& c) { return c.endpoint.tls; });
  if (any_tls && serverName().empty())
    throw std::runtime_error("TLS needs the service's name to verify: give --primary (or --server-name)");
  SSL_CTX* ctx = any_tls ? sslContext() : nullptr;
  std::string req = request("/healthz", "Connection: close\r\n");
  std::vector<Attempt> results(cands.size());
  std::vector<std::thread> threads;
  // A race of one each, all at once: a black hole costs its timeout, not everyone's.
  for (size_t i = 0; i < cands.size(); ++i)
    threads.emplace_back([&, i] {
      Racer racer(ctx, serverName(), req, 200, options_.stagger, options_.attempt_timeout);
      std::vector<Attempt> log;
      racer.run({cands[i]}, log);
      results[i] = log.front();
    });
  for (auto& t : threads) t.join();
  record(results);
  return results;
}

RefreshResult Resolver::refresh() {
  RefreshResult r;
  std::vector<Attempt> log;
  auto cands = candidates();
  auto conn = race(cands, "/v1/nodes", "Accept: application/json\r\nConnection: close\r\n", 200, &log);
  if (!conn) {
    r.error = cands.empty() ? "no candidates (give --primary, --backup or --seed)" : "no gateway answered";
    for (const auto& a : log)
      if (!a.error.empty() && a.error != "not tried") r.error += "; " + a.candidate.endpoint.toString() + ": " + a.error;
    return r;
  }
  r.from = conn->candidate().endpoint.toString();
  auto body = conn->readBody(1 << 20, options_.attempt_timeout);
  if (!body) {
    r.error = "reading the node list from " + r.from + " failed";
    return r;
  }
  auto j = nlohmann::json::parse(*body, nullptr, false);
  if (!j.is_object() || !j.contains("nodes") || !j["nodes"].is_array() || !j.contains("version") ||
      !j["version"].is_number_unsigned() || !j.contains("ttl_s") || !j["ttl_s"].is_number_integer()) {
    r.error = r.from + " answered something that is not a node list";
    return r;
  }
  std::vector<Node> nodes;
  for (const auto& n : j["nodes"]) {
    if (!n.is_object() || !n.contains("host") || !n["host"].is_string() || !n.contains("port") ||
        !n["port"].is_number_unsigned())
      continue;
    auto ep = parseEndpoint(Endpoint{n["host"].get<std::string>(), 1, true}.toString());
    uint64_t port = n["port"].get<uint64_t>();
    if (!ep || port == 0 || port > 65535) continue;  // a name or garbage: not a fallback address
    nodes.push_back(Node{ep->host, static_cast<uint16_t>(port), n.value("tls", true)});
  }
  r.version = j["version"].get<uint64_t>();
  r.ttl_s = std::max<int64_t>(j["ttl_s"].get<int64_t>(), 1);
  r.nodes = nodes.size();
  auto before = store_->nodesMeta();
  r.changed = !before || before->version != r.version;
  store_->replaceNodes(nodes, r.version, r.ttl_s, unixNow());
  r.ok = true;
  return r;
}

int64_t Resolver::nextRefreshAt() const {
  auto meta = store_->nodesMeta();
  if (!meta) return 0;
  double at = static_cast<double>(meta->ttl_s) * (0.75 + refresh_jitter_ * 0.75);
  return meta->refreshed_at + static_cast<int64_t>(at);
}

}  // namespace dingo::ns
