#pragma once
// Socket addresses and listening sockets: SockAddr (IPv4 and IPv6 alike), parsing the
// config's "HOST:PORT", and the one way dingo makes a listening TCP socket.
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/UniqueFd.h"

namespace dingo {

// A socket address that fits both IPv4 and IPv6.
struct SockAddr {
  sockaddr_storage storage{};
  socklen_t len = 0;

  const sockaddr* addr() const { return reinterpret_cast<const sockaddr*>(&storage); }
  sockaddr* addr() { return reinterpret_cast<sockaddr*>(&storage); }
  int family() const { return storage.ss_family; }
  uint16_t port() const;
  std::string host() const;      // "127.0.0.1" or "::1"
  std::string toString() const;  // "127.0.0.1:8080" or "[::1]:8080"
  // The address bytes a client is identified by (4 bytes for IPv4 and IPv4-mapped IPv6).
  std::string_view ipBytes() const;
};

// Parses a numeric "HOST:PORT" ("127.0.0.1:8080", "[::1]:8080", "*:8080" = all IPv4).
std::optional<SockAddr> parseSockAddr(std::string_view text);

// An address the configuration check already accepted (core/Config.cpp validates every
// address at startup). One that does not parse here is an impossible state: logged, then
// abort() (DESIGN.md, errors in three tiers), never an address of zeros.
SockAddr validatedSockAddr(std::string_view text);

struct ListenOptions {
  int backlog = 4096;
  bool reuse_port = false;
};

// Creates a non-blocking, close-on-exec listening TCP socket with TCP_NODELAY (which the
// sockets it accepts inherit). Throws std::system_error
// with the address and errno in the message.
UniqueFd listenTcp(const SockAddr& addr, const ListenOptions& options);

// The local address a socket is bound to.
SockAddr localAddress(int fd);

}  // namespace dingo
