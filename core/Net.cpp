#include "core/Net.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/tcp.h>

#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <system_error>

#include "core/Log.h"

namespace dingo {

uint16_t SockAddr::port() const {
  if (family() == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in*>(&storage)->sin_port);
  if (family() == AF_INET6)
    return ntohs(reinterpret_cast<const sockaddr_in6*>(&storage)->sin6_port);
  return 0;
}

std::string SockAddr::host() const {
  char buf[INET6_ADDRSTRLEN] = {};
  if (family() == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&storage)->sin_addr, buf, sizeof buf);
  } else if (family() == AF_INET6) {
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&storage)->sin6_addr, buf,
              sizeof buf);
  } else if (family() == AF_UNIX) {
    return "unix";
  }
  return buf;
}

std::string SockAddr::toString() const {
  if (family() == AF_INET6) return "[" + host() + "]:" + std::to_string(port());
  return host() + ":" + std::to_string(port());
}

std::string_view SockAddr::ipBytes() const {
  if (family() == AF_INET) {
    const auto* a = reinterpret_cast<const sockaddr_in*>(&storage);
    return {reinterpret_cast<const char*>(&a->sin_addr), 4};
  }
  if (family() == AF_INET6) {
    const auto* a = reinterpret_cast<const sockaddr_in6*>(&storage);
    if (IN6_IS_ADDR_V4MAPPED(&a->sin6_addr))
      return {reinterpret_cast<const char*>(&a->sin6_addr) + 12, 4};
    return {reinterpret_cast<const char*>(&a->sin6_addr), 16};
  }
  return {};
}

std::optional<SockAddr> parseSockAddr(std::string_view text) {
  std::string host;
  std::string_view port_text;
  if (!text.empty() && text.front() == '[') {
    auto close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':')
      return std::nullopt;
    host = std::string(text.substr(1, close - 1));
    port_text = text.substr(close + 2);
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string_view::npos) return std::nullopt;
    host = std::string(text.substr(0, colon));
    port_text = text.substr(colon + 1);
    if (host.find(':') != std::string::npos) return std::nullopt;  // IPv6 needs brackets
  }
  unsigned port = 0;
  auto [ptr, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc() || ptr != port_text.data() + port_text.size() || port > 65535 ||
      port_text.empty())
    return std::nullopt;

  SockAddr out;
  if (host == "*" || host.empty()) host = "0.0.0.0";
  auto* v4 = reinterpret_cast<sockaddr_in*>(&out.storage);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&out.storage);
  if (inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(static_cast<uint16_t>(port));
    out.len = sizeof(sockaddr_in);
    return out;
  }
  if (inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(static_cast<uint16_t>(port));
    out.len = sizeof(sockaddr_in6);
    return out;
  }
  return std::nullopt;
}

UniqueFd listenTcp(const SockAddr& addr, const ListenOptions& options) {
  auto fail = [&](const char* what) {
    int err = errno;
    throw std::system_error(err, std::generic_category(),
                            fmt::format("{} {}", what, addr.toString()));
  };
  UniqueFd fd(::socket(addr.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) fail("socket for");
  int one = 1;
  if (::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0)
    fail("SO_REUSEADDR on");
  if (options.reuse_port &&
      ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0)
    fail("SO_REUSEPORT on");
  if (addr.family() == AF_INET6 &&
      ::setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) != 0)
    fail("IPV6_V6ONLY on");
  // Accepted sockets inherit TCP_NODELAY from the listener (Linux), which saves a
  // setsockopt per connection.
  if (::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0)
    fail("TCP_NODELAY on");
  if (::bind(fd.get(), addr.addr(), addr.len) != 0) fail("bind");
  if (::listen(fd.get(), options.backlog) != 0) fail("listen on");
  return fd;
}

SockAddr validatedSockAddr(std::string_view text) {
  auto a = parseSockAddr(text);
  if (!a) {
    logError("net", "invariant broken: address \"{}\" passed the config check but does not parse", text);
    std::abort();
  }
  return *a;
}

SockAddr localAddress(int fd) {
  SockAddr out;
  out.len = sizeof out.storage;
  if (::getsockname(fd, out.addr(), &out.len) != 0) out.len = 0;
  return out;
}

}  // namespace dingo
