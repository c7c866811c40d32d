#pragma once
// The configuration every binary reads: dingo.toml as typed structs, one per table
// ([supervisor], [[listen]], [tls], [gateway], ...), each field with its default and
// its unit, and the upper bounds no config may raise. parseConfig checks every value and
// throws ConfigError naming the file, the line and the key; restartOnlyChange says what
// a reload cannot apply. The keys are documented in man 5 dingo.toml (man/dingo.toml.5).
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/Duration.h"
#include "core/Log.h"

namespace dingo {

enum class DispatchPolicy { IpHash, RoundRobin, LeastConn };
const char* dispatchName(DispatchPolicy p);
// Who accepts new connections: the kernel puts them in the accept queue of one worker
// slot's SO_REUSEPORT socket (ip-hash and round-robin), or the supervisor accepts each
// and hands it to a worker (always for least-conn). See docs/architecture.md.
enum class AcceptMode { Kernel, Handoff };
const char* acceptModeName(AcceptMode m);

struct SupervisorConfig {
  int workers = 2;  // 0 = one per CPU
  DispatchPolicy dispatch = DispatchPolicy::RoundRobin;
  AcceptMode accept = AcceptMode::Kernel;
  // Kernel accept mode: how long the slot of a dead or starting worker keeps its share of
  // new connections queued for the replacement before the others take it over.
  Duration slot_grace = std::chrono::seconds(2);
  std::string control_socket = "/run/dingo/control.sock";
  std::string pid_file = "/run/dingo/supervisor.pid";
  std::string user;     // empty: keep the user we started as
  std::string gateway;  // empty: dingo-gateway beside the supervisor's executable
  Duration drain_timeout = std::chrono::seconds(30);
  Duration restart_backoff = std::chrono::milliseconds(100);      // first respawn delay
  Duration restart_backoff_max = std::chrono::seconds(30);        // cap
  Duration stable_after = std::chrono::seconds(10);               // uptime that resets backoff
};

struct ListenConfig {
  std::string address;
  bool tls = false;
  int backlog = 4096;
};

struct TlsConfig {
  std::vector<std::string> cert;  // one or more PEM chains (e.g. ECDSA and RSA)
  std::vector<std::string> key;   // the matching private keys, same order
  std::string ocsp;               // DER OCSP response to staple (optional)
  Duration ticket_rotation = std::chrono::hours(1);
  std::string min_version = "TLSv1.2";  // TLSv1.2 | TLSv1.3
  std::string max_version = "TLSv1.3";
  // TLS 1.2 cipher list (OpenSSL syntax): forward-secret AEAD suites only, so no static
  // RSA key exchange and no CBC (LUCKY13).
  std::string ciphers =
      "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
      "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
      "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";
  // TLS 1.3 suites (OpenSSL syntax), in the server's order, AES-128-GCM first as in the
  // TLS 1.2 list: its key schedule hashes with SHA-256, which CPUs do in hardware (SHA-NI)
  // where SHA-384 they do not. OpenSSL's own order starts with AES-256-GCM-SHA384, which
  // costs about 6% more CPU per resumed handshake (bench/RESULTS.md, issue 15).
  std::string ciphersuites =
      "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256";
  // Key exchange groups (OpenSSL syntax): the curves every client has. OpenSSL's own
  // list adds the finite-field groups, and a client that offers only ffdhe8192 costs
  // the server about 10 ms of CPU per handshake (X25519: 40 us).
  std::string groups = "X25519:P-256:P-384";
};

// Upper bounds of the client-facing limits, whatever the config says: past them a
// single request or message would cost a worker more memory or stack than it can give.
constexpr uint64_t kMaxHeaderBytes = 1024 * 1024;
constexpr uint64_t kMaxBodyBytes = 64 * 1024 * 1024;
constexpr uint64_t kMaxMessageSize = 16 * 1024 * 1024;
// A cursor carries every channel of a poll or event stream, its count in 16 bits (see
// core/Cursor.h): no client may name more.
constexpr uint32_t kMaxChannelsPerClient = 65535;

struct GatewayConfig {
  Duration handshake_timeout = std::chrono::seconds(10);
  Duration header_timeout = std::chrono::seconds(10);
  Duration idle_timeout = std::chrono::seconds(60);
  Duration write_timeout = std::chrono::seconds(30);
  Duration ping_interval = std::chrono::seconds(25);
  Duration pong_timeout = std::chrono::seconds(10);
  Duration poll_timeout = std::chrono::seconds(25);
  Duration session_ttl = std::chrono::minutes(2);
  Duration sse_heartbeat = std::chrono::seconds(15);  // below common proxy idle timeouts
  Duration hub_timeout = std::chrono::seconds(5);     // a hub request unanswered this long fails
  uint64_t max_header_bytes = 8 * 1024;
  uint64_t max_body_bytes = 1024 * 1024;
  uint64_t max_message_size = 64 * 1024;
  uint64_t send_queue_bytes = 1024 * 1024;
  uint32_t max_channels = 128;
  uint32_t max_connections = 50000;
  uint32_t max_connections_per_ip = 0;  // open at once from one address (IPv6: its /64), per worker; 0: off
  uint32_t new_connections_per_ip = 0;  // per second from one address, per worker; 0: off
  uint32_t max_streams = 20000;         // held long-polls plus SSE streams, per worker
  uint32_t commands_per_second = 50;  // WebSocket commands per connection (burst: twice that)
  uint32_t session_cache_entries = 100000;        // long-poll sessions kept per worker (0: no cache)
  uint64_t session_cache_bytes = 64 * 1024 * 1024;  // their buffered messages, per worker
  uint64_t session_cache_subscriptions = 200000;    // their channels, summed, per worker
  std::string cursor_secret;                      // HMAC key of cursors (empty: built-in)
  bool client_publish = false;
  std::string publish_token;
};

struct HistoryConfig {
  uint32_t max_channels = 1000000;  // channels the hub holds at once (about 200 bytes each, plus the name)
  uint32_t size = 100;
  uint64_t max_bytes = 1024 * 1024;
  Duration ttl = std::chrono::minutes(5);
};

struct WatchdogConfig {
  Duration interval = std::chrono::seconds(2);
  Duration timeout = std::chrono::seconds(2);
  uint32_t failures = 3;
  double max_kill_fraction = 0.5;  // of the workers, killed at once by the watchdog (at least one)
};

struct BusConfig {
  std::string engine = "local";    // local | redis
  std::vector<std::string> redis;  // numeric HOST:PORT of each Redis; channels are sharded over them
  std::vector<std::string> redis_cluster;  // or the seeds of a Redis Cluster
  std::string prefix = "dingo";    // of every key and pub/sub channel in Redis
  std::string user;                // ACL user for AUTH
  std::string password_file;       // AUTH password (its first line); empty: no AUTH
  Duration connect_timeout = std::chrono::seconds(2);
  Duration reply_timeout = std::chrono::seconds(2);  // a Redis reply later than this: reconnect
  Duration probe_interval = std::chrono::seconds(5);  // pub/sub liveness: a probe that has not come back by the next
};

// GET /v1/nodes: the endpoints nsclient stores as its fallback list.
struct NodeEntry {
  std::string address;  // numeric "IP:PORT"
  bool tls = true;
};

struct NodesConfig {
  Duration ttl = std::chrono::minutes(10);  // clients refresh at about 75% of it
  uint64_t version = 0;                     // 0: derived from the list
  bool tls = true;                          // for entries written as plain strings
  std::vector<NodeEntry> endpoints;         // empty: this gateway's [[listen]] addresses
  // The redis engine's node registry: this host's entry is written this often and
  // expires after 5 of them (supervisor/NodeRegistry.h).
  Duration heartbeat = std::chrono::seconds(2);
};

struct AdminConfig {
  std::string address = "127.0.0.1:9180";  // empty: no admin listener
};

// [auth]: who may connect, subscribe and publish (docs/auth.md).
struct AuthConfig {
  bool required = false;                     // false: clients without a token too (anonymous_*)
  std::vector<std::string> jwt_public_keys;  // PEM files: EC P-256 (ES256), RSA (RS256)
  std::string jwt_hmac_secret_file;          // HS256
  std::string issuer;                        // iss must equal it, when set
  std::string audience;                      // aud must name it, when set
  Duration leeway = std::chrono::seconds(30);
  std::vector<std::string> anonymous_subscribe;  // channel patterns for clients without a token
  std::vector<std::string> anonymous_publish;
  Duration expiring_notice = std::chrono::seconds(60);  // token_expiring this long before exp
  uint32_t cache_size = 10000;                          // verified tokens kept per worker

  // Tokens are checked when there is a key to check them with.
  bool enabled() const { return !jwt_public_keys.empty() || !jwt_hmac_secret_file.empty(); }
};

struct LogConfig {
  LogLevel level = LogLevel::Info;
  LogFormat format = LogFormat::Text;
};

struct Config {
  std::string path;  // the file it was read from; empty for built-in defaults
  std::string dir;   // its folder: relative paths are relative to it
  std::string digest;  // of the file's text (FNV-1a, hex): tells two processes read the same file
  SupervisorConfig supervisor;
  std::vector<ListenConfig> listen;
  TlsConfig tls;
  GatewayConfig gateway;
  HistoryConfig history;
  WatchdogConfig watchdog;
  BusConfig bus;
  AdminConfig admin;
  NodesConfig nodes;
  AuthConfig auth;
  LogConfig log;

  bool anyTls() const;
};

// A configuration error that names the file, the line and the key.
class ConfigError : public std::runtime_error {
 public:
  ConfigError(std::string file, int line, std::string key, const std::string& what);
  const std::string& file() const { return file_; }
  int line() const { return line_; }
  const std::string& key() const { return key_; }

 private:
  std::string file_;
  int line_;
  std::string key_;
};

// Reads and validates a config file. Throws ConfigError.
Config loadConfig(const std::string& path);
// Parses config text; `path` is used for messages and relative paths.
Config parseConfig(const std::string& text, const std::string& path);

// What a reload cannot apply: the first key (such as "[[listen]]" or "[supervisor]
// workers") whose value differs between the running config and `next` and that only a
// restart (or an upgrade) can change; empty when a reload can apply `next`.
std::string restartOnlyChange(const Config& running, const Config& next);

// The config path from --config, else $DINGO_CONFIG, else /etc/dingo/dingo.toml.
std::string defaultConfigPath(const std::string& from_option);

}  // namespace dingo
