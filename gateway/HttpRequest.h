#pragma once
// A parsed HTTP request as the endpoint handlers see it: method, target split into path
// and query, header lookup, body, and the connection's socket (for its addresses). Views
// into the session's parser; valid while the request is being answered.
//
// No Beast or Asio here: HttpSession fills it from Beast's parser, unit tests from plain
// strings, and every handler (RestHandlers, PollHandler, NodesHandler, UpgradeHandshakes)
// takes it without knowing how the bytes were read.
#include <cstddef>
#include <span>
#include <string_view>

#include "gateway/HttpFraming.h"

namespace dingo {

// The methods the handlers tell apart; every other method checkRequestHead lets through
// (PUT, DELETE, ...) is Other.
enum class HttpMethod { Get, Head, Post, Other };

HttpMethod httpMethodOf(std::string_view method);  // case-sensitive (RFC 9110 9.1)

struct HttpRequest {
  HttpMethod method = HttpMethod::Get;
  unsigned version = 11;                // 10 * major + minor
  std::string_view target;              // origin-form: "/path?query"
  std::string_view path;                // the target up to '?'
  std::string_view query;               // after '?' (empty when none)
  std::string_view body;
  std::span<const HeaderField> fields;  // every field line, in order
  int socket = -1;                      // the connection's fd (for its addresses), or -1

  bool getOrHead() const { return method == HttpMethod::Get || method == HttpMethod::Head; }
  // The first value of the field `name` (any case), or empty when absent.
  std::string_view header(std::string_view name) const;
  // How many field lines are named `name`.
  size_t headerCount(std::string_view name) const;

  // Sets target, path and query from an origin-form target.
  void setTarget(std::string_view origin_form);
};

// ASCII case-insensitive equality (field names, tokens).
bool equalsIgnoreCase(std::string_view a, std::string_view b);

// Whether a comma-separated field value (Connection, Upgrade) lists `token`, in any case.
bool hasToken(std::string_view header, std::string_view token);

// The token of "Authorization: Bearer T", else empty.
std::string_view bearerToken(const HttpRequest& req);

// Whether the peer of connected socket `fd` is a loopback address (IPv4-mapped included);
// false when it cannot be told (the peer is gone).
bool peerIsLoopback(int fd);

}  // namespace dingo
