// gateway/HttpRequest: the request view the handlers read (header lookup, tokens, the
// peer's address).
#include "gateway/HttpRequest.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <vector>

#include "core/UniqueFd.h"

namespace dingo {
namespace {

TEST(HttpRequestTest, MethodsAreCaseSensitive) {
  EXPECT_EQ(httpMethodOf("GET"), HttpMethod::Get);
  EXPECT_EQ(httpMethodOf("HEAD"), HttpMethod::Head);
  EXPECT_EQ(httpMethodOf("POST"), HttpMethod::Post);
  EXPECT_EQ(httpMethodOf("get"), HttpMethod::Other);
  EXPECT_EQ(httpMethodOf("PUT"), HttpMethod::Other);
}

TEST(HttpRequestTest, TargetSplitsAtTheFirstQuestionMark) {
  HttpRequest r;
  r.setTarget("/v1/poll?channel=/a&x=?");
  EXPECT_EQ(r.path, "/v1/poll");
  EXPECT_EQ(r.query, "channel=/a&x=?");
  r.setTarget("/healthz");
  EXPECT_EQ(r.path, "/healthz");
  EXPECT_EQ(r.query, "");
  r.setTarget("/a?");
  EXPECT_EQ(r.path, "/a");
  EXPECT_EQ(r.query, "");
}

TEST(HttpRequestTest, HeadersInAnyCaseFirstValueWins) {
  std::vector<HeaderField> fields{{"Host", "a"}, {"sec-websocket-key", "k1"}, {"SEC-WEBSOCKET-KEY", "k2"}};
  HttpRequest r;
  r.fields = fields;
  EXPECT_EQ(r.header("host"), "a");
  EXPECT_EQ(r.header("Sec-WebSocket-Key"), "k1");
  EXPECT_EQ(r.headerCount("Sec-WebSocket-Key"), 2u);
  EXPECT_EQ(r.header("Upgrade"), "");
  EXPECT_EQ(r.headerCount("Upgrade"), 0u);
}

TEST(HttpRequestTest, TokenLists) {
  EXPECT_TRUE(hasToken("keep-alive, Upgrade", "upgrade"));
  EXPECT_TRUE(hasToken(" \tWebSocket\t ", "websocket"));
  EXPECT_TRUE(hasToken("a,,upgrade", "upgrade"));
  EXPECT_FALSE(hasToken("upgrades", "upgrade"));
  EXPECT_FALSE(hasToken("up grade", "upgrade"));
  EXPECT_FALSE(hasToken("", "upgrade"));
}

TEST(HttpRequestTest, BearerToken) {
  std::vector<HeaderField> fields{{"authorization", "BEARER abc.def"}};
  HttpRequest r;
  r.fields = fields;
  EXPECT_EQ(bearerToken(r), "abc.def");
  fields[0].value = "Basic abc";
  EXPECT_EQ(bearerToken(r), "");
  fields[0].value = "Bearer";
  EXPECT_EQ(bearerToken(r), "");
  fields[0].value = "Bearer ";
  EXPECT_EQ(bearerToken(r), "");
}

// A connected pair over loopback: {client, accepted}.
std::pair<UniqueFd, UniqueFd> loopbackPair(int family) {
  UniqueFd listener(::socket(family, SOCK_STREAM, 0));
  sockaddr_storage a{};
  socklen_t len;
  if (family == AF_INET) {
    auto& in = reinterpret_cast<sockaddr_in&>(a);
    in.sin_family = AF_INET;
    in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    len = sizeof in;
  } else {
    auto& in6 = reinterpret_cast<sockaddr_in6&>(a);
    in6.sin6_family = AF_INET6;
    in6.sin6_addr = in6addr_loopback;
    len = sizeof in6;
  }
  EXPECT_EQ(::bind(listener.get(), reinterpret_cast<sockaddr*>(&a), len), 0);
  EXPECT_EQ(::listen(listener.get(), 1), 0);
  EXPECT_EQ(::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&a), &len), 0);
  UniqueFd client(::socket(family, SOCK_STREAM, 0));
  EXPECT_EQ(::connect(client.get(), reinterpret_cast<sockaddr*>(&a), len), 0);
  UniqueFd accepted(::accept(listener.get(), nullptr, nullptr));
  return {std::move(client), std::move(accepted)};
}

// The accepted side of an IPv4 client reaching a dual-stack IPv6 listener: its peer is
// ::ffff:127.0.0.1. Returns -1 when this host has no IPv6.
UniqueFd listener4MappedPeer() {
  UniqueFd listener(::socket(AF_INET6, SOCK_STREAM, 0));
  if (listener.get() < 0) return UniqueFd();
  int off = 0;
  ::setsockopt(listener.get(), IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off);
  sockaddr_in6 a{};
  a.sin6_family = AF_INET6;
  a.sin6_addr = in6addr_any;
  socklen_t len = sizeof a;
  if (::bind(listener.get(), reinterpret_cast<sockaddr*>(&a), len) != 0 || ::listen(listener.get(), 1) != 0 ||
      ::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&a), &len) != 0)
    return UniqueFd();
  sockaddr_in v4{};
  v4.sin_family = AF_INET;
  v4.sin_port = a.sin6_port;
  v4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  static UniqueFd client;  // kept open until the next call: the peer must still be there
  client = UniqueFd(::socket(AF_INET, SOCK_STREAM, 0));
  if (::connect(client.get(), reinterpret_cast<sockaddr*>(&v4), sizeof v4) != 0) return UniqueFd();
  return UniqueFd(::accept(listener.get(), nullptr, nullptr));
}

TEST(HttpRequestTest, LoopbackPeers) {
  auto [client4, server4] = loopbackPair(AF_INET);
  EXPECT_TRUE(peerIsLoopback(server4.get()));
  if (UniqueFd probe(::socket(AF_INET6, SOCK_STREAM, 0)); probe.get() >= 0) {
    auto [client6, server6] = loopbackPair(AF_INET6);
    EXPECT_TRUE(peerIsLoopback(server6.get()));
  }
  EXPECT_FALSE(peerIsLoopback(-1));
  if (UniqueFd mapped = listener4MappedPeer(); mapped.get() >= 0) {
    EXPECT_TRUE(peerIsLoopback(mapped.get()));
  }
  int unix_pair[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, unix_pair), 0);
  EXPECT_FALSE(peerIsLoopback(unix_pair[0]));
  ::close(unix_pair[0]);
  ::close(unix_pair[1]);
}

}  // namespace
}  // namespace dingo
