#include "core/Config.h"

#include <algorithm>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <set>
#include <toml++/toml.h>

#include "core/ChannelPattern.h"
#include "core/Hash.h"
#include "core/Jwt.h"
#include "core/Net.h"
#include "core/Process.h"

namespace dingo {

namespace fs = std::filesystem;

const char* acceptModeName(AcceptMode m) { return m == AcceptMode::Kernel ? "kernel" : "handoff"; }

const char* dispatchName(DispatchPolicy p) {
  switch (p) {
    case DispatchPolicy::IpHash: return "ip-hash";
    case DispatchPolicy::RoundRobin: return "round-robin";
    case DispatchPolicy::LeastConn: return "least-conn";
  }
  return "round-robin";
}

bool Config::anyTls() const {
  for (const auto& l : listen)
    if (l.tls) return true;
  return false;
}

ConfigError::ConfigError(std::string file, int line, std::string key, const std::string& what)
    : std::runtime_error(fmt::format("{}{}: {}{}", file.empty() ? "<config>" : file,
                                     line > 0 ? ":" + std::to_string(line) : std::string(),
                                     key.empty() ? "" : "key '" + key + "': ", what)),
      file_(std::move(file)),
      line_(line),
      key_(std::move(key)) {}

namespace {

// Walks one TOML table, reading known keys into typed fields and remembering which
// keys it read, so that anything left over is reported as unknown.
class TableReader {
 public:
  TableReader(const toml::table& table, std::string prefix, const std::string& file)
      : table_(table), prefix_(std::move(prefix)), file_(file) {}

  int line() const { return static_cast<int>(table_.source().begin.line); }

  [[noreturn]] void fail(const std::string& key, const toml::node* node,
                         const std::string& what) const {
    int line = node ? static_cast<int>(node->source().begin.line) : this->line();
    throw ConfigError(file_, line, fullKey(key), what);
  }

  std::string fullKey(const std::string& key) const {
    return prefix_.empty() ? key : prefix_ + "." + key;
  }

  const toml::node* find(const std::string& key) {
    seen_.insert(key);
    return table_.get(key);
  }

  void str(const std::string& key, std::string& out) {
    if (const auto* n = find(key)) {
      if (!n->is_string()) fail(key, n, "expected a string");
      out = n->value<std::string>().value();
    }
  }

  void boolean(const std::string& key, bool& out) {
    if (const auto* n = find(key)) {
      if (!n->is_boolean()) fail(key, n, "expected true or false");
      out = n->value<bool>().value();
    }
  }

  template <typename Int>
  void integer(const std::string& key, Int& out, int64_t min, int64_t max) {
    if (const auto* n = find(key)) {
      if (!n->is_integer()) fail(key, n, "expected an integer");
      int64_t v = n->value<int64_t>().value();
      if (v < min || v > max)
        fail(key, n, fmt::format("must be between {} and {}, got {}", min, max, v));
      out = static_cast<Int>(v);
    }
  }

  void duration(const std::string& key, Duration& out, Duration min = Duration(1)) {
    if (const auto* n = find(key)) {
      if (!n->is_string())
        fail(key, n, "expected a duration string such as \"250ms\", \"30s\" or \"5m\"");
      auto text = n->value<std::string>().value();
      auto d = parseDuration(text);
      if (!d)
        fail(key, n,
             fmt::format("'{}' is not a duration (use a number and a unit: ms, s, m, h, d)",
                         text));
      if (*d < min) fail(key, n, fmt::format("must be at least {}", formatDuration(min)));
      out = *d;
    }
  }

  // Sizes are capped at 1 TiB: a bigger one is a typo, and sums of them stay in 64 bits.
  static constexpr uint64_t kMaxSize = uint64_t{1} << 40;

  void size(const std::string& key, uint64_t& out, uint64_t min = 1, uint64_t max = kMaxSize) {
    if (const auto* n = find(key)) {
      std::optional<uint64_t> v;
      if (n->is_integer()) {
        int64_t i = n->value<int64_t>().value();
        if (i >= 0) v = static_cast<uint64_t>(i);
      } else if (n->is_string()) {
        v = parseSize(n->value<std::string>().value());
      }
      if (!v) fail(key, n, "expected a size in bytes (65536) or with a unit (\"64KiB\", \"1MiB\")");
      if (*v < min) fail(key, n, fmt::format("must be at least {}", min));
      if (*v > max) fail(key, n, fmt::format("must be at most {}", max));
      out = *v;
    }
  }

  // One string or an array of strings.
  void strings(const std::string& key, std::vector<std::string>& out) {
    if (const auto* n = find(key)) {
      out.clear();
      if (n->is_string()) {
        out.push_back(n->value<std::string>().value());
      } else if (const auto* arr = n->as_array()) {
        for (const auto& item : *arr) {
          if (!item.is_string()) fail(key, &item, "expected a string or an array of strings");
          out.push_back(item.value<std::string>().value());
        }
      } else {
        fail(key, n, "expected a string or an array of strings");
      }
    }
  }

  void rejectUnknown() const {
    for (const auto& [k, v] : table_) {
      std::string key(k.str());
      if (!seen_.count(key)) fail(key, &v, "unknown key");
    }
  }

 private:
  const toml::table& table_;
  std::string prefix_;
  const std::string& file_;
  std::set<std::string> seen_;
};

const toml::table* subTable(TableReader& top, const std::string& name) {
  const auto* n = top.find(name);
  if (!n) return nullptr;
  if (!n->is_table()) top.fail(name, n, "expected a table [" + name + "]");
  return n->as_table();
}

std::string resolvePath(const std::string& dir, const std::string& p) {
  if (p.empty() || p.front() == '/' || dir.empty()) return p;
  return (fs::path(dir) / p).lexically_normal().string();
}

void checkAddress(TableReader& r, const std::string& key, const std::string& value,
                  bool allow_empty, const toml::node* where = nullptr) {
  if (allow_empty && value.empty()) return;
  if (!parseSockAddr(value))
    r.fail(key, where,
           fmt::format("'{}' is not a numeric HOST:PORT (e.g. \"127.0.0.1:8080\", \"[::1]:8080\")",
                       value));
}

// Under the redis engine every host registers its public endpoints for every host's
// GET /v1/nodes (supervisor/NodeRegistry.h): [nodes] endpoints, else its [[listen]]
// addresses. A wildcard listener says nothing another host's client could dial, and
// guessing the address (the first interface's? a NAT's?) would send clients astray, so
// such a host must say where it is reached.
void checkAdvertisable(const Config& cfg, const std::vector<int>& listen_lines, const std::string& path) {
  if (cfg.bus.engine != "redis" || !cfg.nodes.endpoints.empty()) return;
  for (size_t i = 0; i < cfg.listen.size(); ++i) {
    auto a = parseSockAddr(cfg.listen[i].address);
    if (!a || (a->host() != "0.0.0.0" && a->host() != "::")) continue;
    throw ConfigError(path, i < listen_lines.size() ? listen_lines[i] : 0, fmt::format("listen[{}].address", i),
                      fmt::format("'{}' is a wildcard address: with [bus] engine = \"redis\" this host registers "
                                  "its public endpoints for every host's /v1/nodes, and other hosts' clients cannot "
                                  "dial a wildcard; list the addresses clients reach this host at in [nodes] "
                                  "endpoints",
                                  cfg.listen[i].address));
  }
}

// True when listeners on `a` and `b` would take the same connections. Listeners of one
// user with SO_REUSEPORT (kernel accept mode) bind the same port without an error and
// then split its connections between them, so a port given twice must be refused here.
// IPv6 listeners are IPV6_V6ONLY: a family's wildcard overlaps only its own family.
bool samePort(const SockAddr& a, const SockAddr& b) {
  auto wildcard = [](const SockAddr& x) { return x.host() == "0.0.0.0" || x.host() == "::"; };
  return a.family() == b.family() && a.port() != 0 && a.port() == b.port() &&
         (a.host() == b.host() || wildcard(a) || wildcard(b));
}

void checkDistinctPorts(const Config& cfg, const std::vector<int>& listen_lines, const std::string& path) {
  std::vector<std::optional<SockAddr>> addresses;
  for (const auto& l : cfg.listen) addresses.push_back(parseSockAddr(l.address));
  for (size_t j = 1; j < addresses.size(); ++j)
    for (size_t i = 0; i < j; ++i) {
      const auto& a = addresses[i];
      const auto& b = addresses[j];
      if (!a || !b || !samePort(*a, *b)) continue;
      throw ConfigError(path, j < listen_lines.size() ? listen_lines[j] : 0, fmt::format("listen[{}].address", j),
                        fmt::format("'{}' takes the port of listen[{}] ('{}'{}): each [[listen]] needs a port "
                                    "of its own",
                                    cfg.listen[j].address, i, cfg.listen[i].address,
                                    i < listen_lines.size() ? fmt::format(", line {}", listen_lines[i]) : ""));
    }
}

}  // namespace

Config parseConfig(const std::string& text, const std::string& path) {
  Config cfg;
  cfg.path = path;
  cfg.dir = path.empty() ? std::string() : fs::absolute(fs::path(path)).parent_path().string();
  cfg.digest = fmt::format("{:016x}", fnv1a64(text));

  toml::table root;
  try {
    root = toml::parse(text, path);
  } catch (const toml::parse_error& e) {
    throw ConfigError(path, static_cast<int>(e.source().begin.line), "",
                      std::string(e.description()));
  }

  TableReader top(root, "", path);
  std::vector<int> listen_lines;  // of each [[listen]], for errors found once every table is read

  if (const auto* t = subTable(top, "supervisor")) {
    TableReader r(*t, "supervisor", path);
    auto& s = cfg.supervisor;
    r.integer("workers", s.workers, 0, 256);
    if (const auto* n = r.find("dispatch")) {
      auto v = n->value<std::string>();
      if (!v) r.fail("dispatch", n, "expected a string");
      if (*v == "ip-hash") s.dispatch = DispatchPolicy::IpHash;
      else if (*v == "round-robin") s.dispatch = DispatchPolicy::RoundRobin;
      else if (*v == "least-conn") s.dispatch = DispatchPolicy::LeastConn;
      else r.fail("dispatch", n, fmt::format("expected ip-hash, round-robin or least-conn, got '{}'", *v));
    }
    if (const auto* n = r.find("accept")) {
      auto v = n->value<std::string>();
      if (!v) r.fail("accept", n, "expected a string");
      if (*v == "kernel") s.accept = AcceptMode::Kernel;
      else if (*v == "handoff") s.accept = AcceptMode::Handoff;
      else r.fail("accept", n, fmt::format("expected kernel or handoff, got '{}'", *v));
    }
    r.str("control_socket", s.control_socket);
    r.str("pid_file", s.pid_file);
    r.str("user", s.user);
    r.str("gateway", s.gateway);
    r.duration("drain_timeout", s.drain_timeout);
    r.duration("restart_backoff", s.restart_backoff);
    r.duration("slot_grace", s.slot_grace);
    r.duration("restart_backoff_max", s.restart_backoff_max);
    r.duration("stable_after", s.stable_after);
    if (s.restart_backoff_max < s.restart_backoff)
      r.fail("restart_backoff_max", nullptr, "must not be below restart_backoff");
    r.rejectUnknown();
    s.control_socket = resolvePath(cfg.dir, s.control_socket);
    s.pid_file = resolvePath(cfg.dir, s.pid_file);
    s.gateway = resolvePath(cfg.dir, s.gateway);
  }

  if (const auto* n = top.find("listen")) {
    const auto* arr = n->as_array();
    if (!arr || !arr->is_array_of_tables())
      top.fail("listen", n, "expected [[listen]] tables");
    int i = 0;
    for (const auto& item : *arr) {
      const toml::node* address = item.as_table() ? item.as_table()->get("address") : nullptr;
      listen_lines.push_back(static_cast<int>((address ? address->source() : item.source()).begin.line));
      TableReader r(*item.as_table(), fmt::format("listen[{}]", i++), path);
      ListenConfig l;
      r.str("address", l.address);
      r.boolean("tls", l.tls);
      r.integer("backlog", l.backlog, 1, 65535);
      if (l.address.empty()) r.fail("address", nullptr, "is required");
      checkAddress(r, "address", l.address, false);
      r.rejectUnknown();
      cfg.listen.push_back(l);
    }
  }
  if (cfg.listen.empty()) cfg.listen.push_back(ListenConfig{"127.0.0.1:8080", false, 4096});

  if (const auto* t = subTable(top, "tls")) {
    TableReader r(*t, "tls", path);
    auto& s = cfg.tls;
    r.strings("cert", s.cert);
    r.strings("key", s.key);
    r.str("ocsp", s.ocsp);
    r.duration("ticket_rotation", s.ticket_rotation, std::chrono::seconds(1));
    r.str("ciphers", s.ciphers);
    r.str("ciphersuites", s.ciphersuites);
    if (s.ciphersuites.empty())
      r.fail("ciphersuites", t->get("ciphersuites"),
             "is empty: name at least one TLS 1.3 suite (max_version = \"TLSv1.2\" turns TLS 1.3 off)");
    r.str("groups", s.groups);
    for (const char* k : {"min_version", "max_version"}) {
      std::string& v = std::string(k) == "min_version" ? s.min_version : s.max_version;
      r.str(k, v);
      if (v != "TLSv1.2" && v != "TLSv1.3") r.fail(k, t->get(k), "expected TLSv1.2 or TLSv1.3");
    }
    if (s.min_version == "TLSv1.3" && s.max_version == "TLSv1.2")
      r.fail("max_version", t->get("max_version"), "is below min_version");
    if (s.cert.size() != s.key.size())
      r.fail("key", t->get("key"),
             fmt::format("{} certificate(s) but {} key(s): give one key per certificate",
                         s.cert.size(), s.key.size()));
    r.rejectUnknown();
    for (auto& c : s.cert) c = resolvePath(cfg.dir, c);
    for (auto& k : s.key) k = resolvePath(cfg.dir, k);
    s.ocsp = resolvePath(cfg.dir, s.ocsp);
  }
  if (cfg.anyTls()) {
    if (cfg.tls.cert.empty())
      throw ConfigError(path, 0, "tls.cert", "a [[listen]] has tls = true but [tls] names no cert");
    auto check_readable = [&](const std::string& key, const std::string& file) {
      if (::access(file.c_str(), R_OK) != 0)
        throw ConfigError(path, 0, key, fmt::format("cannot read '{}': {}", file, errnoText(errno)));
    };
    for (const auto& c : cfg.tls.cert) check_readable("tls.cert", c);
    for (const auto& k : cfg.tls.key) check_readable("tls.key", k);
    if (!cfg.tls.ocsp.empty()) check_readable("tls.ocsp", cfg.tls.ocsp);
  }

  if (const auto* t = subTable(top, "gateway")) {
    TableReader r(*t, "gateway", path);
    auto& g = cfg.gateway;
    r.duration("handshake_timeout", g.handshake_timeout);
    r.duration("header_timeout", g.header_timeout);
    r.duration("idle_timeout", g.idle_timeout);
    r.duration("write_timeout", g.write_timeout);
    r.duration("ping_interval", g.ping_interval);
    r.duration("pong_timeout", g.pong_timeout);
    r.duration("poll_timeout", g.poll_timeout);
    r.duration("session_ttl", g.session_ttl);
    r.duration("sse_heartbeat", g.sse_heartbeat);
    r.duration("hub_timeout", g.hub_timeout, std::chrono::milliseconds(100));
    r.size("max_header_bytes", g.max_header_bytes, 256, kMaxHeaderBytes);
    r.size("max_body_bytes", g.max_body_bytes, 1, kMaxBodyBytes);
    r.size("max_message_size", g.max_message_size, 16, kMaxMessageSize);
    r.size("send_queue_bytes", g.send_queue_bytes, 1024);
    r.integer("max_channels", g.max_channels, 1, kMaxChannelsPerClient);
    r.integer("max_connections", g.max_connections, 1, 10'000'000);
    r.integer("max_connections_per_ip", g.max_connections_per_ip, 0, 10'000'000);
    r.integer("new_connections_per_ip", g.new_connections_per_ip, 0, 10'000'000);
    r.integer("max_streams", g.max_streams, 1, 10'000'000);
    r.integer("commands_per_second", g.commands_per_second, 1, 1'000'000);
    r.integer("session_cache_entries", g.session_cache_entries, 0, 10'000'000);
    r.size("session_cache_bytes", g.session_cache_bytes);
    r.integer("session_cache_subscriptions", g.session_cache_subscriptions, 1, 100'000'000);
    r.str("cursor_secret", g.cursor_secret);
    r.boolean("client_publish", g.client_publish);
    r.str("publish_token", g.publish_token);
    r.rejectUnknown();
  }

  if (const auto* t = subTable(top, "history")) {
    TableReader r(*t, "history", path);
    r.integer("size", cfg.history.size, 0, 1'000'000);
    r.integer("max_channels", cfg.history.max_channels, 1, 100'000'000);
    r.size("max_bytes", cfg.history.max_bytes, 0);
    r.duration("ttl", cfg.history.ttl);
    r.rejectUnknown();
  }

  if (const auto* t = subTable(top, "watchdog")) {
    TableReader r(*t, "watchdog", path);
    r.duration("interval", cfg.watchdog.interval);
    r.duration("timeout", cfg.watchdog.timeout);
    r.integer("failures", cfg.watchdog.failures, 1, 1000);
    if (const auto* v = r.find("max_kill_fraction")) {
      auto d = v->value<double>();  // integers convert too
      if (!d || !(*d > 0 && *d <= 1)) r.fail("max_kill_fraction", v, "expected a number greater than 0 and at most 1");
      cfg.watchdog.max_kill_fraction = *d;
    }
    r.rejectUnknown();
  }

  if (const auto* t = subTable(top, "bus")) {
    TableReader r(*t, "bus", path);
    r.str("engine", cfg.bus.engine);
    r.strings("redis", cfg.bus.redis);
    for (const auto& a : cfg.bus.redis) checkAddress(r, "redis", a, false, r.find("redis"));
    if (cfg.bus.engine != "local" && cfg.bus.engine != "redis")
      r.fail("engine", t->get("engine"), fmt::format("expected local or redis, got '{}'", cfg.bus.engine));
    r.str("prefix", cfg.bus.prefix);
    r.str("user", cfg.bus.user);
    r.str("password_file", cfg.bus.password_file);
    r.duration("connect_timeout", cfg.bus.connect_timeout);
    r.duration("reply_timeout", cfg.bus.reply_timeout);
    r.duration("probe_interval", cfg.bus.probe_interval, std::chrono::milliseconds(100));
    if (cfg.bus.prefix.empty() || cfg.bus.prefix.find_first_of("{} ") != std::string::npos)
      r.fail("prefix", t->get("prefix"), "must be non-empty, without braces or spaces (keys are PREFIX:{CHANNEL}:...)");
    r.strings("redis_cluster", cfg.bus.redis_cluster);
    for (const auto& a : cfg.bus.redis_cluster) checkAddress(r, "redis_cluster", a, false, r.find("redis_cluster"));
    if (!cfg.bus.redis.empty() && !cfg.bus.redis_cluster.empty())
      r.fail("redis_cluster", t->get("redis_cluster"),
             "give either redis (servers that share the channels) or redis_cluster (a Redis Cluster's seeds), not both");
    if (cfg.bus.engine == "redis" && cfg.bus.redis.empty() && cfg.bus.redis_cluster.empty())
      r.fail("engine", t->get("engine"), "the redis engine needs redis = [\"HOST:PORT\", ...] or redis_cluster = [...]");
    std::sort(cfg.bus.redis.begin(), cfg.bus.redis.end());
    if (std::adjacent_find(cfg.bus.redis.begin(), cfg.bus.redis.end()) != cfg.bus.redis.end())
      r.fail("redis", t->get("redis"), "lists a server twice");
    cfg.bus.password_file = resolvePath(cfg.dir, cfg.bus.password_file);
    if (!cfg.bus.password_file.empty() && ::access(cfg.bus.password_file.c_str(), R_OK) != 0)
      r.fail("password_file", t->get("password_file"),
             fmt::format("cannot read '{}': {}", cfg.bus.password_file, errnoText(errno)));
    r.rejectUnknown();
  }

  if (const auto* t = subTable(top, "nodes")) {
    TableReader r(*t, "nodes", path);
    auto& nd = cfg.nodes;
    r.duration("ttl", nd.ttl, std::chrono::seconds(1));
    r.integer("version", nd.version, 0, INT64_MAX);
    r.boolean("tls", nd.tls);
    r.duration("heartbeat", nd.heartbeat, std::chrono::milliseconds(100));
    if (nd.heartbeat > std::chrono::minutes(1)) r.fail("heartbeat", t->get("heartbeat"), "must be at most 1m");
    if (const auto* n = r.find("endpoints")) {
      const auto* arr = n->as_array();
      if (!arr) r.fail("endpoints", n, "expected an array of \"IP:PORT\" strings or {address, tls} tables");
      for (const auto& item : *arr) {
        NodeEntry e{{}, nd.tls};
        if (item.is_string()) {
          e.address = item.value<std::string>().value();
        } else if (const auto* it = item.as_table()) {
          TableReader er(*it, "nodes.endpoints", path);
          er.str("address", e.address);
          er.boolean("tls", e.tls);
          er.rejectUnknown();
        } else {
          r.fail("endpoints", &item, "expected an array of \"IP:PORT\" strings or {address, tls} tables");
        }
        auto a = parseSockAddr(e.address);
        if (!a || a->port() == 0 || e.address.starts_with("*"))
          r.fail("endpoints", &item, fmt::format("'{}' is not a numeric IP:PORT", e.address));
        nd.endpoints.push_back(std::move(e));
      }
    }
    r.rejectUnknown();
  }

  if (const auto* t = subTable(top, "admin")) {
    TableReader r(*t, "admin", path);
    r.str("address", cfg.admin.address);
    checkAddress(r, "address", cfg.admin.address, true);
    if (auto admin = parseSockAddr(cfg.admin.address))
      for (size_t i = 0; i < cfg.listen.size(); ++i)
        if (auto l = parseSockAddr(cfg.listen[i].address); l && samePort(*admin, *l))
          r.fail("address", t->get("address"),
                 fmt::format("'{}' takes the port of listen[{}] ('{}'): the admin listener needs a port of its own",
                             cfg.admin.address, i, cfg.listen[i].address));
    r.rejectUnknown();
  }

  if (const auto* t = subTable(top, "auth")) {
    TableReader r(*t, "auth", path);
    auto& a = cfg.auth;
    r.boolean("required", a.required);
    r.strings("jwt_public_keys", a.jwt_public_keys);
    r.str("jwt_hmac_secret_file", a.jwt_hmac_secret_file);
    r.str("issuer", a.issuer);
    r.str("audience", a.audience);
    r.duration("leeway", a.leeway, Duration(0));
    r.strings("anonymous_subscribe", a.anonymous_subscribe);
    r.strings("anonymous_publish", a.anonymous_publish);
    r.duration("expiring_notice", a.expiring_notice, Duration(0));
    r.integer("cache_size", a.cache_size, 0, 10000000);
    for (const char* key : {"anonymous_subscribe", "anonymous_publish"}) {
      for (const auto& p : std::string(key) == "anonymous_subscribe" ? a.anonymous_subscribe : a.anonymous_publish) {
        if (!ChannelPattern::parse(p) || p.find("{sub}") != std::string::npos)
          r.fail(key, t->get(key),
                 fmt::format("'{}' is not a channel pattern without {{sub}} (a channel name, optionally ending in /*)",
                             p));
      }
    }
    for (auto& k : a.jwt_public_keys) k = resolvePath(cfg.dir, k);
    a.jwt_hmac_secret_file = resolvePath(cfg.dir, a.jwt_hmac_secret_file);
    if (a.required && !a.enabled())
      r.fail("required", t->get("required"), "needs jwt_public_keys or jwt_hmac_secret_file to check tokens with");
    if (!a.enabled() && (!a.anonymous_subscribe.empty() || !a.anonymous_publish.empty()))
      r.fail(a.anonymous_subscribe.empty() ? "anonymous_publish" : "anonymous_subscribe", nullptr,
             "has no effect without jwt_public_keys or jwt_hmac_secret_file (without keys, everyone may do everything)");
    // A key that cannot be used is found now, with its file's name, not by the first client.
    for (const char* key : {"jwt_public_keys", "jwt_hmac_secret_file"}) {
      AuthConfig one;
      if (std::string(key) == "jwt_public_keys") one.jwt_public_keys = a.jwt_public_keys;
      else one.jwt_hmac_secret_file = a.jwt_hmac_secret_file;
      try {
        loadJwtKeys(one);
      } catch (const std::exception& e) {
        r.fail(key, t->get(key), e.what());
      }
    }
    r.rejectUnknown();
  }

  if (const auto* t = subTable(top, "log")) {
    TableReader r(*t, "log", path);
    std::string level = "info", format = "text";
    r.str("level", level);
    r.str("format", format);
    auto l = parseLogLevel(level);
    if (!l) r.fail("level", t->get("level"), "expected debug, info, warn or error");
    auto f = parseLogFormat(format);
    if (!f) r.fail("format", t->get("format"), "expected text or json");
    cfg.log.level = *l;
    cfg.log.format = *f;
    r.rejectUnknown();
  }

  top.rejectUnknown();
  checkDistinctPorts(cfg, listen_lines, path);
  checkAdvertisable(cfg, listen_lines, path);
  return cfg;
}

Config loadConfig(const std::string& path) {
  auto text = readFile(path);
  if (!text) throw ConfigError(path, 0, "", "cannot open: " + errnoText(errno));
  return parseConfig(*text, path);
}

std::string restartOnlyChange(const Config& a, const Config& b) {
  if (b.listen.size() != a.listen.size()) return "[[listen]]";
  for (size_t i = 0; i < a.listen.size(); ++i)
    if (a.listen[i].address != b.listen[i].address || a.listen[i].tls != b.listen[i].tls ||
        a.listen[i].backlog != b.listen[i].backlog)
      return "[[listen]]";
  if (a.supervisor.workers != b.supervisor.workers) return "[supervisor] workers";
  if (a.supervisor.control_socket != b.supervisor.control_socket) return "[supervisor] control_socket";
  if (a.supervisor.pid_file != b.supervisor.pid_file) return "[supervisor] pid_file";
  if (a.supervisor.user != b.supervisor.user) return "[supervisor] user";
  if (a.admin.address != b.admin.address) return "[admin] address";
  if (a.bus.engine != b.bus.engine) return "[bus] engine";
  if (a.supervisor.accept != b.supervisor.accept) return "[supervisor] accept";
  if (a.supervisor.slot_grace != b.supervisor.slot_grace) return "[supervisor] slot_grace";
  return {};
}

std::string defaultConfigPath(const std::string& from_option) {
  if (!from_option.empty()) return from_option;
  if (const char* env = std::getenv("DINGO_CONFIG"); env && *env) return env;
  return "/etc/dingo/dingo.toml";
}

}  // namespace dingo
