// tlsload: HTTPS load with one request per connection, full or resumed handshakes.
// wrk cannot resume TLS sessions, so this tool measures both kinds the same way.
//
//   tlsload --port 8443 [--host 127.0.0.1] [--threads 32] [--seconds 10] [--resume]
//           [--tls 1.2|1.3] [--path /healthz] [--rate N]
//
// Each thread runs one connection at a time: connect, handshake (offering the
// thread's last session when --resume), GET, read to close. Prints one JSON line.
// With --rate the threads together start N connections a second, evenly spaced (a
// thread that falls behind goes on at once and does not catch up), so that two servers
// can be compared at the same load: without it, the faster server gets more
// connections and its event loop more work per wake-up.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

struct Options {
  std::string host = "127.0.0.1";
  int port = 8443;
  int threads = 32;
  double seconds = 10;
  bool resume = false;
  int tls = 0;  // 0: any
  std::string path = "/healthz";
  double rate = 0;  // connections a second, all threads together; 0: as fast as they go
};

std::atomic<bool> g_stop{false};
std::atomic<uint64_t> g_ok{0}, g_resumed{0}, g_errors{0};

bool oneRequest(SSL_CTX* ctx, const Options& o, const sockaddr_in& addr, SSL_SESSION** session) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  bool ok = false;
  SSL* ssl = nullptr;
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0) {
    ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    SSL_set_tlsext_host_name(ssl, "localhost");
    if (o.resume && *session) SSL_set_session(ssl, *session);
    if (SSL_connect(ssl) == 1) {
      std::string req = "GET " + o.path + " HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
      if (SSL_write(ssl, req.data(), static_cast<int>(req.size())) > 0) {
        char buf[4096];
        std::string head;
        int n;
        while ((n = SSL_read(ssl, buf, sizeof buf)) > 0)
          if (head.size() < 12) head.append(buf, static_cast<size_t>(n));
        ok = head.compare(0, 12, "HTTP/1.1 200") == 0;
      }
      if (SSL_session_reused(ssl)) g_resumed.fetch_add(1, std::memory_order_relaxed);
      if (o.resume) {
        // TLS 1.3 tickets arrive after the handshake; take the newest session now.
        SSL_SESSION* s = SSL_get1_session(ssl);
        if (s) {
          if (*session) SSL_SESSION_free(*session);
          *session = s;
        }
      }
    }
  }
  // A session freed without a shutdown is marked not resumable; the server has already
  // closed, so record a quiet, complete shutdown instead of writing to a dead socket.
  if (ssl) {
    SSL_set_shutdown(ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
    SSL_free(ssl);
  }
  ::close(fd);
  return ok;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "tlsload: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--host") o.host = next();
    else if (a == "--port") o.port = std::stoi(next());
    else if (a == "--threads") o.threads = std::stoi(next());
    else if (a == "--seconds") o.seconds = std::stod(next());
    else if (a == "--resume") o.resume = true;
    else if (a == "--tls") o.tls = next() == "1.2" ? TLS1_2_VERSION : TLS1_3_VERSION;
    else if (a == "--path") o.path = next();
    else if (a == "--rate") o.rate = std::stod(next());
    else {
      std::fprintf(stderr, "usage: tlsload --port N [--host H] [--threads N] [--seconds S] [--resume] [--tls 1.2|1.3] [--path P] [--rate N]\n");
      return 2;
    }
  }
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
  if (o.tls) {
    SSL_CTX_set_min_proto_version(ctx, o.tls);
    SSL_CTX_set_max_proto_version(ctx, o.tls);
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(o.port));
  inet_pton(AF_INET, o.host.c_str(), &addr.sin_addr);

  std::vector<std::thread> threads;
  auto t0 = std::chrono::steady_clock::now();
  for (int t = 0; t < o.threads; ++t) {
    threads.emplace_back([&, t] {
      SSL_SESSION* session = nullptr;
      using Clock = std::chrono::steady_clock;
      auto interval = std::chrono::duration_cast<Clock::duration>(
          std::chrono::duration<double>(o.rate > 0 ? o.threads / o.rate : 0));
      auto next = t0 + interval * t / o.threads;  // the threads' starts spread over one interval
      while (!g_stop.load(std::memory_order_relaxed)) {
        if (o.rate > 0) {
          std::this_thread::sleep_until(next);
          next = std::max(next + interval, Clock::now());
        }
        if (oneRequest(ctx, o, addr, &session)) g_ok.fetch_add(1, std::memory_order_relaxed);
        else g_errors.fetch_add(1, std::memory_order_relaxed);
      }
      if (session) SSL_SESSION_free(session);
    });
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(o.seconds));
  g_stop = true;
  for (auto& t : threads) t.join();
  double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("{\"requests\":%llu,\"resumed\":%llu,\"errors\":%llu,\"seconds\":%.3f,\"rps\":%.1f}\n",
              static_cast<unsigned long long>(g_ok.load()), static_cast<unsigned long long>(g_resumed.load()),
              static_cast<unsigned long long>(g_errors.load()), elapsed, static_cast<double>(g_ok.load()) / elapsed);
  SSL_CTX_free(ctx);
  return 0;
}
