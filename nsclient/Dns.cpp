// DNS for the resolver: c-ares, both names on one channel, poll(2) for its sockets.
#include <arpa/inet.h>
#include <ares.h>
#include <netinet/in.h>
#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <mutex>
#include <set>

#include "nsclient/Race.h"

namespace dingo::ns {

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

}  // namespace dingo::ns
