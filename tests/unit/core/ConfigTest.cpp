#include "core/Config.h"

#include <gtest/gtest.h>

using namespace dingo;

namespace {

// Expects `text` to be rejected with a message naming file, line and key.
void expectError(const std::string& text, int line, const std::string& key,
                 const std::string& fragment) {
  try {
    parseConfig(text, "/etc/dingo/test.toml");
    FAIL() << "accepted:\n" << text;
  } catch (const ConfigError& e) {
    std::string what = e.what();
    EXPECT_EQ(e.line(), line) << what;
    EXPECT_EQ(e.key(), key) << what;
    EXPECT_NE(what.find("/etc/dingo/test.toml:" + std::to_string(line)), std::string::npos) << what;
    if (!key.empty()) {
      EXPECT_NE(what.find("'" + key + "'"), std::string::npos) << what;
    }
    EXPECT_NE(what.find(fragment), std::string::npos) << what;
  }
}

}  // namespace

TEST(Config, EmptyFileRunsOnDefaults) {
  Config c = parseConfig("", "/etc/dingo/dingo.toml");
  EXPECT_EQ(c.supervisor.workers, 2);
  EXPECT_EQ(c.supervisor.dispatch, DispatchPolicy::RoundRobin);
  EXPECT_EQ(c.supervisor.accept, AcceptMode::Kernel);
  ASSERT_EQ(c.listen.size(), 1u);
  EXPECT_EQ(c.listen[0].address, "127.0.0.1:8080");
  EXPECT_EQ(c.admin.address, "127.0.0.1:9180");
  EXPECT_EQ(c.gateway.idle_timeout, std::chrono::seconds(60));
}

TEST(Config, ReadsTheSpecKeys) {
  Config c = parseConfig(R"(
[supervisor]
workers = 4
dispatch = "ip-hash"
accept = "handoff"
control_socket = "run/control.sock"
pid_file = "/run/dingo/supervisor.pid"
drain_timeout = "5s"

[[listen]]
address = "127.0.0.1:8080"

[[listen]]
address = "[::1]:8443"

[gateway]
header_timeout = "250ms"
max_body_bytes = "64KiB"

[admin]
address = ""

[log]
level = "debug"
format = "json"
)",
                         "/srv/dingo/dingo.toml");
  EXPECT_EQ(c.supervisor.workers, 4);
  EXPECT_EQ(c.supervisor.dispatch, DispatchPolicy::IpHash);
  EXPECT_EQ(c.supervisor.accept, AcceptMode::Handoff);
  EXPECT_EQ(c.supervisor.control_socket, "/srv/dingo/run/control.sock");  // relative to the file
  EXPECT_EQ(c.supervisor.pid_file, "/run/dingo/supervisor.pid");
  EXPECT_EQ(c.supervisor.drain_timeout, std::chrono::seconds(5));
  ASSERT_EQ(c.listen.size(), 2u);
  EXPECT_EQ(c.listen[1].address, "[::1]:8443");
  EXPECT_EQ(c.gateway.header_timeout, std::chrono::milliseconds(250));
  EXPECT_EQ(c.gateway.max_body_bytes, 65536u);
  EXPECT_TRUE(c.admin.address.empty());
  EXPECT_EQ(c.log.format, LogFormat::Json);
}

TEST(Config, ErrorsNameFileLineAndKey) {
  expectError("[supervisor]\nworkers = \"two\"\n", 2, "supervisor.workers", "expected an integer");
  expectError("[supervisor]\n\ndispatch = \"random\"\n", 3, "supervisor.dispatch",
              "expected ip-hash, round-robin or least-conn");
  expectError("[supervisor]\naccept = \"epoll\"\n", 2, "supervisor.accept", "expected kernel or handoff");
  expectError("[supervisor]\nwrokers = 2\n", 2, "supervisor.wrokers", "unknown key");
  expectError("[gateway]\nidle_timeout = \"10\"\n", 2, "gateway.idle_timeout", "not a duration");
  expectError("[gateway]\nidle_timeout = 10\n", 2, "gateway.idle_timeout", "duration string");
  expectError("[[listen]]\naddress = \"localhost:80\"\n", 1, "listen[0].address", "numeric HOST:PORT");
  expectError("[[listen]]\naddress = \"127.0.0.1:80\"\n[[listen]]\naddress = \"127.0.0.1:99999\"\n", 3,
              "listen[1].address", "numeric HOST:PORT");
  expectError("[supervisor]\nworkers = 100000\n", 2, "supervisor.workers", "between 0 and 256");
  expectError("[bus]\nengine = \"kafka\"\n", 2, "bus.engine", "expected local or redis");
  expectError("surprise = 1\n", 1, "surprise", "unknown key");
  expectError("[log]\nlevel = \"loud\"\n", 2, "log.level", "expected debug, info, warn or error");
}

TEST(Config, SyntaxErrorsNameTheLine) {
  expectError("[supervisor]\nworkers = 2\ndispatch = \"ip-hash\n", 3, "", "");
  expectError("[supervisor\n", 1, "", "");
}

TEST(Config, TlsListenerNeedsReadableCertificates) {
  try {
    parseConfig("[[listen]]\naddress = \"127.0.0.1:8443\"\ntls = true\n[tls]\ncert = \"nope.pem\"\nkey = \"nope.key\"\n",
                "/tmp/dingo-test.toml");
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.key(), "tls.cert");
    EXPECT_NE(std::string(e.what()).find("/tmp/nope.pem"), std::string::npos) << e.what();
  }
  try {
    parseConfig("[[listen]]\naddress = \"127.0.0.1:8443\"\ntls = true\n", "/tmp/dingo-test.toml");
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.key(), "tls.cert");
  }
}

TEST(Config, CertAndKeyCountsMustMatch) {
  expectError("[tls]\ncert = [\"a.pem\", \"b.pem\"]\nkey = \"a.key\"\n", 3, "tls.key", "one key per certificate");
}

TEST(Config, TlsCipherAndGroupLists) {
  Config defaults = parseConfig("", "/tmp/dingo-test.toml");
  EXPECT_EQ(defaults.tls.groups, "X25519:P-256:P-384");
  Config c = parseConfig("[tls]\nciphers = \"ECDHE-RSA-AES128-GCM-SHA256\"\ngroups = \"X25519\"\n",
                         "/tmp/dingo-test.toml");
  EXPECT_EQ(c.tls.ciphers, "ECDHE-RSA-AES128-GCM-SHA256");
  EXPECT_EQ(c.tls.groups, "X25519");
  expectError("[tls]\nciphers = 1\n", 2, "tls.ciphers", "expected a string");
}

TEST(Config, TlsOneThreeSuites) {
  Config defaults = parseConfig("", "/tmp/dingo-test.toml");
  EXPECT_EQ(defaults.tls.ciphersuites.rfind("TLS_AES_128_GCM_SHA256:", 0), 0u) << defaults.tls.ciphersuites;
  Config c = parseConfig("[tls]\nciphersuites = \"TLS_CHACHA20_POLY1305_SHA256\"\n", "/tmp/dingo-test.toml");
  EXPECT_EQ(c.tls.ciphersuites, "TLS_CHACHA20_POLY1305_SHA256");
  expectError("[tls]\nmin_version = \"TLSv1.2\"\nciphersuites = \"\"\n", 3, "tls.ciphersuites",
              "at least one TLS 1.3 suite");
}

namespace dingo {
namespace {

// Hardening: limits the config cannot raise past what a worker can afford.
TEST(Config, LimitsHaveUpperBounds) {
  expectError("[gateway]\nmax_message_size = \"64MiB\"\n", 2, "gateway.max_message_size", "at most");
  expectError("[gateway]\nmax_body_bytes = \"1GiB\"\n", 2, "gateway.max_body_bytes", "at most");
  // 8 GiB would have been truncated to 32 bits (0) by the parser's header limit.
  expectError("[gateway]\nmax_header_bytes = \"8GiB\"\n", 2, "gateway.max_header_bytes", "at most");
  // A cursor carries at most 65535 channels: no client may name more.
  expectError("[gateway]\nmax_channels = 70000\n", 2, "gateway.max_channels", "between 1 and 65535");
  Config c = parseConfig("[gateway]\nmax_channels = 65535\nmax_message_size = \"16MiB\"\n", "/x.toml");
  EXPECT_EQ(c.gateway.max_channels, 65535u);
}

TEST(Config, NanIsNotAFraction) {
  expectError("[watchdog]\nmax_kill_fraction = nan\n", 2, "watchdog.max_kill_fraction", "greater than 0");
  expectError("[watchdog]\nmax_kill_fraction = inf\n", 2, "watchdog.max_kill_fraction", "greater than 0");
}

TEST(Config, RedisAddressesAreChecked) {
  Config one = parseConfig("[bus]\nredis = \"127.0.0.1:6379\"\n", "/x.toml");
  EXPECT_EQ(one.bus.redis, std::vector<std::string>{"127.0.0.1:6379"});
  Config two = parseConfig("[bus]\nredis = [\"127.0.0.1:7000\", \"[::1]:7001\"]\n", "/x.toml");
  EXPECT_EQ(two.bus.redis.size(), 2u);
  expectError("[bus]\nredis = \"localhost\"\n", 2, "bus.redis", "numeric HOST:PORT");
}

// Under the redis engine a host registers its endpoints for every host's /v1/nodes: a
// wildcard listener cannot be advertised, so such a host must list its endpoints.
TEST(Config, ARedisHostWithAWildcardListenerMustNameItsEndpoints) {
  const std::string redis = "[bus]\nengine = \"redis\"\nredis = \"127.0.0.1:6379\"\n";
  expectError("[[listen]]\naddress = \"127.0.0.1:80\"\n[[listen]]\ntls = false\naddress = \"0.0.0.0:8080\"\n" + redis, 5,
              "listen[1].address", "[nodes] endpoints");
  expectError("[[listen]]\naddress = \"[::]:8080\"\n" + redis, 2, "listen[0].address", "wildcard");
  expectError("[[listen]]\naddress = \"*:8080\"\n" + redis, 2, "listen[0].address", "wildcard");
  Config named = parseConfig("[[listen]]\naddress = \"0.0.0.0:8080\"\n" + redis +
                             "[nodes]\nendpoints = [\"203.0.113.7:8080\"]\n", "/x.toml");
  EXPECT_EQ(named.nodes.endpoints.size(), 1u);
  Config local = parseConfig("[[listen]]\naddress = \"0.0.0.0:8080\"\n", "/x.toml");  // the local engine: as before
  EXPECT_EQ(local.listen.size(), 1u);
  Config beat = parseConfig("[nodes]\nheartbeat = \"500ms\"\n", "/x.toml");
  EXPECT_EQ(beat.nodes.heartbeat, std::chrono::milliseconds(500));
  EXPECT_EQ(Config{}.nodes.heartbeat, std::chrono::seconds(2));
  expectError("[nodes]\nheartbeat = \"10ms\"\n", 2, "nodes.heartbeat", "at least");
  expectError("[nodes]\nheartbeat = \"2m\"\n", 2, "nodes.heartbeat", "at most");
}

// Kernel-mode listeners are SO_REUSEPORT sockets, which share a port without an error
// and split its connections: a port given twice is refused, naming both tables.
TEST(Config, EachListenerNeedsAPortOfItsOwn) {
  expectError("[[listen]]\naddress = \"127.0.0.1:8080\"\n[[listen]]\naddress = \"127.0.0.1:8080\"\n", 4,
              "listen[1].address", "takes the port of listen[0] ('127.0.0.1:8080', line 2)");
  expectError("[[listen]]\naddress = \"127.0.0.2:8080\"\n[[listen]]\naddress = \"*:8080\"\n", 4,
              "listen[1].address", "port of its own");
  expectError("[[listen]]\naddress = \"[::]:8443\"\n[[listen]]\naddress = \"[::1]:8443\"\n", 4,
              "listen[1].address", "port of its own");
  expectError("[[listen]]\naddress = \"0.0.0.0:9000\"\n[admin]\naddress = \"127.0.0.1:9000\"\n", 4,
              "admin.address", "the admin listener needs a port of its own");
  // Other addresses, other families (IPv6 listeners are V6ONLY) and port 0 do not clash.
  for (const char* ok : {"[[listen]]\naddress = \"127.0.0.1:8080\"\n[[listen]]\naddress = \"127.0.0.2:8080\"\n",
                         "[[listen]]\naddress = \"0.0.0.0:8080\"\n[[listen]]\naddress = \"[::]:8080\"\n",
                         "[[listen]]\naddress = \"127.0.0.1:0\"\n[[listen]]\naddress = \"127.0.0.1:0\"\n"})
    EXPECT_EQ(parseConfig(ok, "/x.toml").listen.size(), 2u) << ok;
}

TEST(Config, AbuseLimits) {
  Config c = parseConfig("[gateway]\nmax_connections_per_ip = 100\nnew_connections_per_ip = 20\nmax_streams = 5\n"
                         "hub_timeout = \"2s\"\nsession_cache_subscriptions = 1000\n[history]\nmax_channels = 10\n",
                         "/x.toml");
  EXPECT_EQ(c.gateway.max_connections_per_ip, 100u);
  EXPECT_EQ(c.gateway.new_connections_per_ip, 20u);
  EXPECT_EQ(c.gateway.max_streams, 5u);
  EXPECT_EQ(c.gateway.hub_timeout, std::chrono::seconds(2));
  EXPECT_EQ(c.gateway.session_cache_subscriptions, 1000u);
  EXPECT_EQ(c.history.max_channels, 10u);
}

}  // namespace
}  // namespace dingo
