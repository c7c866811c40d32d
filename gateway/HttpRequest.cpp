#include "gateway/HttpRequest.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

namespace dingo {

HttpMethod httpMethodOf(std::string_view method) {
  if (method == "GET") return HttpMethod::Get;
  if (method == "HEAD") return HttpMethod::Head;
  if (method == "POST") return HttpMethod::Post;
  return HttpMethod::Other;
}

bool equalsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

std::string_view HttpRequest::header(std::string_view name) const {
  for (const HeaderField& f : fields)
    if (equalsIgnoreCase(f.name, name)) return f.value;
  return {};
}

size_t HttpRequest::headerCount(std::string_view name) const {
  size_t n = 0;
  for (const HeaderField& f : fields) n += equalsIgnoreCase(f.name, name);
  return n;
}

void HttpRequest::setTarget(std::string_view origin_form) {
  target = origin_form;
  size_t q = target.find('?');
  path = target.substr(0, q);
  query = q == std::string_view::npos ? std::string_view() : target.substr(q + 1);
}

bool hasToken(std::string_view header, std::string_view token) {
  while (!header.empty()) {
    size_t comma = header.find(',');
    std::string_view t = header.substr(0, comma);
    header = comma == std::string_view::npos ? std::string_view() : header.substr(comma + 1);
    while (!t.empty() && (t.front() == ' ' || t.front() == '\t')) t.remove_prefix(1);
    while (!t.empty() && (t.back() == ' ' || t.back() == '\t')) t.remove_suffix(1);
    if (equalsIgnoreCase(t, token)) return true;
  }
  return false;
}

std::string_view bearerToken(const HttpRequest& req) {
  std::string_view auth = req.header("Authorization");
  if (auth.size() < 7 || !equalsIgnoreCase(auth.substr(0, 7), "bearer ")) return {};
  return auth.substr(7);
}

bool peerIsLoopback(int fd) {
  sockaddr_storage peer{};
  socklen_t len = sizeof peer;
  if (fd < 0 || ::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &len) != 0) return false;
  if (peer.ss_family == AF_INET) {
    const auto& in = reinterpret_cast<const sockaddr_in&>(peer);
    return (ntohl(in.sin_addr.s_addr) >> 24) == 127;
  }
  if (peer.ss_family == AF_INET6) {
    const in6_addr& a = reinterpret_cast<const sockaddr_in6&>(peer).sin6_addr;
    if (IN6_IS_ADDR_V4MAPPED(&a)) return a.s6_addr[12] == 127;
    return IN6_IS_ADDR_LOOPBACK(&a);
  }
  return false;
}

}  // namespace dingo
