// WebSocket load for bench/run.py: many connections from one process, one epoll loop.
//
//   wsload idle   --port P --count N [--sources 127.0.0.2,127.0.0.3] [--tls]
//                 [--concurrency 512] [--hold SECONDS]
//       Opens N WebSocket connections (/v1/ws) and holds them idle. Prints one JSON
//       line when all are up ({"connected":N,"failed":F,"seconds":S}), then holds them
//       until SIGTERM/SIGINT or --hold seconds, answering pings.
//   wsload fanout --port P --subscribers N --rate R --seconds S [--channel /bench]
//                 [--sources ...] [--size 100] [--sync] [--publish-port P2]
//       N subscribers on one channel, then one publisher publishing R messages a second
//       over WebSocket ({"op":"publish"}), each carrying its send time; --publish-port
//       puts the publisher on another server (another host of the Redis engine). Prints
//       {"sent":..,"deliveries":..,"polls":..,"expected":..,"seconds":..,"p50_ms":..,
//        "p99_ms":..,"max_ms":..,"window_s":..} measured from publish to delivery at each
//       subscriber; window_s runs from the first publish to the last delivery.
//       --transport poll|sse makes the subscribers long-pollers (each answer's cursor
//       goes into the next poll at once) or SSE streams instead of WebSockets.
//       --sync brackets the measured window for a caller that samples the server's CPU
//       time: once every subscriber is confirmed it prints {"phase":"ready"} and waits
//       for a line on stdin before the first publish; right after the last delivery
//       (or the 5 s drain deadline, if some never arrive) it prints
//       {"phase":"delivered"}, then the result, then waits for stdin to close before
//       closing any connection, so teardown falls outside the window.
//   wsload sendfloor [--count 4000] [--rounds 50] [--size 130]
//       The kernel's floor for a fan-out: --count loopback TCP pairs, one send(2) of
//       --size bytes on each, --rounds times; prints the sender's CPU time per send
//       ({"cpu_us_per_send":..}; the receiving side is read in between, not counted).
//
// Speaks the subset of dingo's protocol that bench/node/fanout.js also speaks, so the
// same tool drives both. Loopback only; stops by itself.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace {

volatile sig_atomic_t g_stop = 0;

int64_t nowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1'000'000'000LL + ts.tv_nsec;
}

struct Options {
  std::string mode;
  int port = 0;
  int publish_port = 0;  // fanout: the publisher's server (0: --port)
  int count = 1000;
  std::vector<std::string> sources{"127.0.0.1"};
  bool tls = false;
  int concurrency = 512;
  double hold = 0;  // 0: until a signal
  double rate = 10;
  double seconds = 10;
  std::string channel = "/bench";
  std::string transport = "ws";  // fanout subscribers: ws | poll | sse
  size_t size = 100;
  int rounds = 50;
  bool sync = false;  // fanout: the caller brackets the measured window over stdin/stdout
};

enum class State { Connecting, Handshaking, Upgrading, Open, Dead };

enum class Kind { WebSocket, Poll, Sse };

struct Conn {
  Kind kind = Kind::WebSocket;
  int fd = -1;
  SSL* ssl = nullptr;
  State state = State::Connecting;
  std::string in;
  std::string out;
  bool subscriber = false;
  bool subscribed = false;
  bool want_write = false;
};

class Load {
 public:
  explicit Load(const Options& o) : o_(o) {
    ep_ = epoll_create1(EPOLL_CLOEXEC);
    if (o_.tls) {
      ctx_ = SSL_CTX_new(TLS_client_method());
      SSL_CTX_set_verify(ctx_, SSL_VERIFY_NONE, nullptr);
      SSL_CTX_set_mode(ctx_, SSL_MODE_RELEASE_BUFFERS);
    }
  }

  // Opens `n` connections, at most `concurrency` in progress at once. Returns the
  // number that reached the Open state.
  int openAll(int n, bool subscribe, int port = 0) {
    int started = 0;
    int opened0 = opened_, failed0 = failed_;
    auto done = [&] { return (opened_ - opened0) + (failed_ - failed0); };
    while (done() < n && !g_stop) {
      while (started < n && started - done() < o_.concurrency) {
        start(static_cast<int>(conns_.size()), subscribe, port ? port : o_.port);
        ++started;
      }
      poll(100);
    }
    return opened_ - opened0;
  }

  void poll(int timeout_ms) {
    epoll_event events[512];
    int n = epoll_wait(ep_, events, 512, timeout_ms);
    for (int i = 0; i < n; ++i) {
      Conn& c = *conns_[events[i].data.u32];
      if (c.state == State::Dead) continue;
      if (events[i].events & (EPOLLERR | EPOLLHUP)) {
        fail(c);
        continue;
      }
      drive(c);
    }
  }

  // ---- fan-out ----
  void publish(Conn& pub, uint64_t id) {
    std::string pad(o_.size > 40 ? o_.size - 40 : 1, 'x');
    char body[512];
    int len = snprintf(body, sizeof body, R"({"id":%llu,"op":"publish","channel":"%s","data":{"t":%lld,"p":"%s"}})",
                       static_cast<unsigned long long>(id), o_.channel.c_str(), static_cast<long long>(nowNs()),
                       pad.c_str());
    sendText(pub, std::string_view(body, static_cast<size_t>(len)));
  }

  Conn& conn(size_t i) { return *conns_[i]; }
  size_t size() const { return conns_.size(); }
  int subscribedCount() const { return subscribed_; }
  uint64_t deliveries() const { return deliveries_; }
  uint64_t polls() const { return polls_; }
  std::vector<int64_t>& latencies() { return latencies_; }
  int failed() const { return failed_; }

 private:
  void start(int index, bool subscribe, int port) {
    auto c = std::make_unique<Conn>();
    c->subscriber = subscribe;
    if (subscribe && o_.transport == "poll") c->kind = Kind::Poll;
    if (subscribe && o_.transport == "sse") c->kind = Kind::Sse;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      perror("socket");
      exit(1);
    }
    c->fd = fd;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    // The port is picked at connect(), per destination: runs back to back do not run
    // out of ports on a source address because of the last run's TIME_WAITs.
    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    sockaddr_in src{};
    src.sin_family = AF_INET;
    inet_pton(AF_INET, o_.sources[static_cast<size_t>(index) % o_.sources.size()].c_str(), &src.sin_addr);
    if (bind(fd, reinterpret_cast<sockaddr*>(&src), sizeof src) != 0) {
      perror("bind");
      exit(1);
    }
    sockaddr_in dst{};
    dst.sin_family = AF_INET;
    dst.sin_port = htons(static_cast<uint16_t>(port));
    inet_pton(AF_INET, "127.0.0.1", &dst.sin_addr);
    int rc = connect(fd, reinterpret_cast<sockaddr*>(&dst), sizeof dst);
    if (rc != 0 && errno != EINPROGRESS) {
      perror("connect");
      exit(1);
    }
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLOUT | EPOLLET;
    ev.data.u32 = static_cast<uint32_t>(conns_.size());
    epoll_ctl(ep_, EPOLL_CTL_ADD, fd, &ev);
    conns_.push_back(std::move(c));
  }

  void fail(Conn& c, const char* why = "closed") {
    if (c.state != State::Open && failed_ < 3) {
      fprintf(stderr, "connection failed (%s): %.80s\n", why, c.in.c_str());
    }
    if (c.state != State::Open) ++failed_;
    else ++dropped_;
    c.state = State::Dead;
    if (c.ssl) SSL_free(c.ssl);
    c.ssl = nullptr;
    close(c.fd);
  }

  void drive(Conn& c) {
    if (c.state == State::Connecting) {
      int err = 0;
      socklen_t len = sizeof err;
      getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len);
      if (err) return fail(c);
      if (o_.tls) {
        c.ssl = SSL_new(ctx_);
        SSL_set_fd(c.ssl, c.fd);
        SSL_set_tlsext_host_name(c.ssl, "localhost");
        SSL_set_connect_state(c.ssl);
        c.state = State::Handshaking;
      } else {
        beginUpgrade(c);
      }
    }
    if (c.state == State::Handshaking) {
      int rc = SSL_do_handshake(c.ssl);
      if (rc != 1) {
        int e = SSL_get_error(c.ssl, rc);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return;
        ERR_clear_error();
        return fail(c);
      }
      beginUpgrade(c);
    }
    flush(c);
    readAll(c);
  }

  void beginUpgrade(Conn& c) {
    c.state = State::Upgrading;
    if (c.kind == Kind::Poll) {
      c.out += "GET /v1/poll?channel=" + o_.channel + " HTTP/1.1\r\nHost: localhost\r\n\r\n";
      return;
    }
    if (c.kind == Kind::Sse) {
      c.out += "GET /v1/sse?channel=" + o_.channel + " HTTP/1.1\r\nHost: localhost\r\n\r\n";
      return;
    }
    c.out += "GET /v1/ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
  }

  void flush(Conn& c) {
    while (!c.out.empty() && c.state != State::Dead) {
      ssize_t n;
      if (c.ssl) {
        n = SSL_write(c.ssl, c.out.data(), static_cast<int>(c.out.size()));
        if (n <= 0) {
          int e = SSL_get_error(c.ssl, static_cast<int>(n));
          if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) return;
          return fail(c);
        }
      } else {
        n = send(c.fd, c.out.data(), c.out.size(), MSG_NOSIGNAL);
        if (n < 0) {
          if (errno == EAGAIN) return;
          return fail(c);
        }
      }
      c.out.erase(0, static_cast<size_t>(n));
    }
    if (c.out.capacity() > 1024) std::string().swap(c.out);
  }

  void readAll(Conn& c) {
    char buf[65536];
    while (c.state != State::Dead) {
      ssize_t n;
      if (c.ssl) {
        n = SSL_read(c.ssl, buf, sizeof buf);
        if (n <= 0) {
          int e = SSL_get_error(c.ssl, static_cast<int>(n));
          if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) break;
          return fail(c);
        }
      } else {
        n = recv(c.fd, buf, sizeof buf, 0);
        if (n == 0) return fail(c);
        if (n < 0) {
          if (errno == EAGAIN) break;
          return fail(c);
        }
      }
      c.in.append(buf, static_cast<size_t>(n));
      process(c);
    }
    if (c.in.empty() && c.in.capacity() > 1024) std::string().swap(c.in);
    flush(c);
  }

  void sendFrame(Conn& c, uint8_t opcode, std::string_view payload) {
    // Masked with a zero key: RFC 6455 wants the mask bit, any key will do.
    c.out.push_back(static_cast<char>(0x80 | opcode));
    if (payload.size() < 126) {
      c.out.push_back(static_cast<char>(0x80 | payload.size()));
    } else {
      c.out.push_back(static_cast<char>(0x80 | 126));
      c.out.push_back(static_cast<char>(payload.size() >> 8));
      c.out.push_back(static_cast<char>(payload.size()));
    }
    c.out.append(4, '\0');
    c.out.append(payload);
  }

  void sendText(Conn& c, std::string_view text) {
    sendFrame(c, 1, text);
    flush(c);
  }

  // Records the latency of every message in `text` (each carries "t":SEND_NS).
  void deliveries(std::string_view text) {
    for (size_t t = text.find(R"("t":)"); t != std::string_view::npos; t = text.find(R"("t":)", t + 4)) {
      ++deliveries_;
      latencies_.push_back(nowNs() - strtoll(text.data() + t + 4, nullptr, 10));
    }
  }

  // Long-poll: one response at a time on a keep-alive connection; each answer's cursor
  // goes into the next request at once.
  void processPoll(Conn& c) {
    for (;;) {
      size_t end = c.in.find("\r\n\r\n");
      if (end == std::string::npos) return;
      size_t cl = c.in.find("Content-Length: ");
      if (cl == std::string::npos || cl > end) return fail(c, "no Content-Length");
      size_t len = static_cast<size_t>(atoll(c.in.c_str() + cl + 16));
      if (c.in.size() < end + 4 + len) return;
      if (c.in.compare(0, 12, "HTTP/1.1 200") != 0) return fail(c, "status");
      std::string_view body(c.in.data() + end + 4, len);
      if (c.state == State::Upgrading) {
        c.state = State::Open;
        ++opened_;
        c.subscribed = true;
        ++subscribed_;
      }
      deliveries(body);
      size_t k = body.find(R"("cursor":")");
      if (k == std::string_view::npos) return fail(c);
      std::string_view cursor = body.substr(k + 10, body.find('"', k + 10) - (k + 10));
      c.out += "GET /v1/poll?channel=" + o_.channel + "&cursor=" + std::string(cursor) +
               " HTTP/1.1\r\nHost: localhost\r\n\r\n";
      ++polls_;
      c.in.erase(0, end + 4 + len);
    }
  }

  // SSE: events are whole chunks; everything up to the last blank line is complete.
  void processSse(Conn& c) {
    if (c.state == State::Upgrading) {
      size_t end = c.in.find("\r\n\r\n");
      if (end == std::string::npos) return;
      if (c.in.compare(0, 12, "HTTP/1.1 200") != 0) return fail(c);
      c.in.erase(0, end + 4);
      c.state = State::Open;
      ++opened_;
    }
    size_t last = c.in.rfind("\n\n");
    if (last == std::string::npos) return;
    std::string_view done(c.in.data(), last + 2);
    if (!c.subscribed && done.find("event: state") != std::string_view::npos) {
      c.subscribed = true;
      ++subscribed_;
    }
    deliveries(done);
    c.in.erase(0, last + 2);
  }

  void process(Conn& c) {
    if (c.kind == Kind::Poll) return processPoll(c);
    if (c.kind == Kind::Sse) return processSse(c);
    if (c.state == State::Upgrading) {
      size_t end = c.in.find("\r\n\r\n");
      if (end == std::string::npos) return;
      if (c.in.compare(0, 12, "HTTP/1.1 101") != 0) return fail(c);
      c.in.erase(0, end + 4);
      c.state = State::Open;
      ++opened_;
      if (c.subscriber) {
        char cmd[320];
        int len = snprintf(cmd, sizeof cmd, R"({"id":1,"op":"subscribe","channel":"%s"})", o_.channel.c_str());
        sendFrame(c, 1, std::string_view(cmd, static_cast<size_t>(len)));
      }
    }
    size_t pos = 0;
    while (c.state == State::Open) {
      if (c.in.size() - pos < 2) break;
      auto b0 = static_cast<uint8_t>(c.in[pos]), b1 = static_cast<uint8_t>(c.in[pos + 1]);
      uint64_t len = b1 & 0x7F;
      size_t off = 2;
      if (len == 126) {
        if (c.in.size() - pos < 4) break;
        len = (static_cast<uint8_t>(c.in[pos + 2]) << 8) | static_cast<uint8_t>(c.in[pos + 3]);
        off = 4;
      } else if (len == 127) {
        if (c.in.size() - pos < 10) break;
        len = 0;
        for (int i = 0; i < 8; ++i) len = (len << 8) | static_cast<uint8_t>(c.in[pos + 2 + i]);
        off = 10;
      }
      if (c.in.size() - pos < off + len) break;
      std::string_view payload(c.in.data() + pos + off, len);
      onFrame(c, b0 & 0x0F, payload);
      pos += off + len;
    }
    c.in.erase(0, pos);
  }

  void onFrame(Conn& c, uint8_t opcode, std::string_view payload) {
    if (opcode == 9) {  // ping
      sendFrame(c, 10, payload);
      return;
    }
    if (opcode == 8) {
      fail(c);
      return;
    }
    if (opcode != 1) return;
    if (payload.starts_with(R"({"id":1,"ok":true)") && c.subscriber && !c.subscribed) {
      c.subscribed = true;
      ++subscribed_;
      return;
    }
    if (payload.starts_with(R"({"event":"message")")) deliveries(payload);
  }

  Options o_;
  int ep_;
  SSL_CTX* ctx_ = nullptr;
  std::vector<std::unique_ptr<Conn>> conns_;
  int opened_ = 0;
  int failed_ = 0;
  int dropped_ = 0;
  int subscribed_ = 0;
  uint64_t deliveries_ = 0;
  uint64_t polls_ = 0;
  std::vector<int64_t> latencies_;
};

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    size_t comma = s.find(',', start);
    if (comma == std::string::npos) comma = s.size();
    if (comma > start) out.push_back(s.substr(start, comma - start));
    start = comma + 1;
  }
  return out;
}

double percentile(std::vector<int64_t>& v, double p) {
  if (v.empty()) return 0;
  size_t k = std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())));
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
  return static_cast<double>(v[k]) / 1e6;
}

double cpuSeconds() {
  rusage r;
  getrusage(RUSAGE_SELF, &r);
  return static_cast<double>(r.ru_utime.tv_sec + r.ru_stime.tv_sec) +
         static_cast<double>(r.ru_utime.tv_usec + r.ru_stime.tv_usec) / 1e6;
}

int sendFloor(int count, int rounds, size_t size) {
  int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t al = sizeof a;
  if (bind(l, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || listen(l, 4096) != 0 ||
      getsockname(l, reinterpret_cast<sockaddr*>(&a), &al) != 0) {
    perror("listen");
    return 1;
  }
  std::vector<int> senders, receivers;
  int one = 1;
  for (int i = 0; i < count; ++i) {
    int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c < 0 || connect(c, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      perror("connect");
      return 1;
    }
    int s = accept4(l, nullptr, nullptr, SOCK_CLOEXEC);
    setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    senders.push_back(s);
    receivers.push_back(c);
  }
  std::string msg(size, 'x');
  std::vector<char> buf(65536);
  double sending = 0;
  for (int r = 0; r < rounds; ++r) {
    double t = cpuSeconds();
    for (int s : senders) send(s, msg.data(), msg.size(), MSG_NOSIGNAL);
    sending += cpuSeconds() - t;
    for (int c : receivers) recv(c, buf.data(), buf.size(), 0);
  }
  printf("{\"cpu_us_per_send\":%.2f,\"sends\":%d}\n", sending / (count * rounds) * 1e6, count * rounds);
  return 0;
}

int usage() {
  fprintf(stderr,
          "usage: wsload idle --port P --count N [--sources A,B] [--tls] [--concurrency C] [--hold S]\n"
          "       wsload fanout --port P --subscribers N --rate R --seconds S [--channel C] [--size B]\n"
          "                     [--transport ws|poll|sse] [--sync] [--publish-port P2]\n"
          "       wsload sendfloor [--count N] [--rounds R] [--size B]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return usage();
  Options o;
  o.mode = argv[1];
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) exit(usage());
      return argv[++i];
    };
    if (a == "--port") o.port = atoi(next().c_str());
    else if (a == "--publish-port") o.publish_port = atoi(next().c_str());
    else if (a == "--count" || a == "--subscribers") o.count = atoi(next().c_str());
    else if (a == "--sources") o.sources = split(next());
    else if (a == "--tls") o.tls = true;
    else if (a == "--concurrency") o.concurrency = atoi(next().c_str());
    else if (a == "--hold") o.hold = atof(next().c_str());
    else if (a == "--rate") o.rate = atof(next().c_str());
    else if (a == "--seconds") o.seconds = atof(next().c_str());
    else if (a == "--channel") o.channel = next();
    else if (a == "--transport") o.transport = next();
    else if (a == "--size") o.size = static_cast<size_t>(atoi(next().c_str()));
    else if (a == "--rounds") o.rounds = atoi(next().c_str());
    else if (a == "--sync") o.sync = true;
    else return usage();
  }
  if (o.mode == "sendfloor") {
    rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    return sendFloor(o.count, o.rounds, o.size);
  }
  if (o.port <= 0 || (o.mode != "idle" && o.mode != "fanout")) return usage();
  signal(SIGPIPE, SIG_IGN);
  signal(SIGTERM, [](int) { g_stop = 1; });
  signal(SIGINT, [](int) { g_stop = 1; });
  rlimit rl;
  getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);

  Load load(o);
  int64_t t0 = nowNs();
  if (o.mode == "idle") {
    // With --transport poll each connection's second poll is held; with sse, a stream.
    int ok = load.openAll(o.count, o.transport != "ws");
    printf("{\"connected\":%d,\"failed\":%d,\"seconds\":%.2f}\n", ok, load.failed(),
           static_cast<double>(nowNs() - t0) / 1e9);
    fflush(stdout);
    int64_t end = o.hold > 0 ? nowNs() + static_cast<int64_t>(o.hold * 1e9) : INT64_MAX;
    while (!g_stop && nowNs() < end) load.poll(200);
    return 0;
  }

  // fanout: subscribers first, all confirmed, then the publisher.
  int ok = load.openAll(o.count, true);
  while (load.subscribedCount() < ok && !g_stop && nowNs() - t0 < 60'000'000'000LL) load.poll(100);
  if (load.subscribedCount() < o.count) {
    fprintf(stderr, "only %d of %d subscribers confirmed\n", load.subscribedCount(), o.count);
    return 1;
  }
  size_t first_pub = load.size();
  if (load.openAll(1, false, o.publish_port) != 1) {
    fprintf(stderr, "the publisher could not connect\n");
    return 1;
  }
  Conn& pub = load.conn(first_pub);
  load.latencies().reserve(static_cast<size_t>(o.rate * o.seconds * o.count * 1.1));
  uint64_t sent = 0;
  char line[64];
  if (o.sync) {
    // The caller samples the server's CPU time, then tells us to start: the window opens
    // just before the first publish.
    printf("{\"phase\":\"ready\"}\n");
    fflush(stdout);
    if (!fgets(line, sizeof line, stdin)) return 1;
  } else {
    printf("{\"phase\":\"publishing\"}\n");
    fflush(stdout);
  }
  int64_t start = nowNs();
  int64_t interval = static_cast<int64_t>(1e9 / o.rate);
  int64_t stop_at = start + static_cast<int64_t>(o.seconds * 1e9);
  while (!g_stop && nowNs() < stop_at) {
    // Publish on schedule (catching up if the loop ran late), then serve sockets.
    while (start + static_cast<int64_t>(sent) * interval <= nowNs()) load.publish(pub, ++sent);
    int64_t wait = start + static_cast<int64_t>(sent) * interval - nowNs();
    load.poll(static_cast<int>(std::max<int64_t>(0, wait / 1'000'000)));
  }
  // Let the last deliveries arrive.
  uint64_t expected = sent * static_cast<uint64_t>(o.count);
  int64_t drain_until = nowNs() + 5'000'000'000LL;
  while (load.deliveries() < expected && nowNs() < drain_until) load.poll(50);
  int64_t window_end = nowNs();
  if (o.sync) {
    // The window closes at the last delivery: the caller samples CPU on this line.
    printf("{\"phase\":\"delivered\"}\n");
    fflush(stdout);
  }
  double secs = static_cast<double>(stop_at - start) / 1e9;
  auto& lat = load.latencies();
  printf("{\"sent\":%llu,\"deliveries\":%llu,\"polls\":%llu,\"expected\":%llu,\"seconds\":%.2f,"
         "\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f,\"window_s\":%.3f}\n",
         static_cast<unsigned long long>(sent), static_cast<unsigned long long>(load.deliveries()),
         static_cast<unsigned long long>(load.polls()),
         static_cast<unsigned long long>(expected), secs, percentile(lat, 0.50), percentile(lat, 0.99),
         percentile(lat, 1.0), static_cast<double>(window_end - start) / 1e9);
  fflush(stdout);
  if (o.sync) {
    // Hold every connection until the caller has taken its sample and closes stdin.
    while (fgets(line, sizeof line, stdin)) {
    }
  }
  return 0;
}
