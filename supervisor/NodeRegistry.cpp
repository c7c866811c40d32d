#include "supervisor/NodeRegistry.h"

#include <arpa/inet.h>
#include <unistd.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "core/Asio.h"
#include "core/Hash.h"
#include "core/Log.h"
#include "core/Net.h"

namespace dingo {

namespace {

constexpr const char* kLog = "nodes";
// A heartbeat that failed is tried again this soon (or at the heartbeat, if sooner).
constexpr Duration kRetry = std::chrono::milliseconds(200);

// KEYS[1]: the hash. ARGV[1]: this host's id, ARGV[2]: its entry without the leading
// {"expires_ms":T, ("" to only read), ARGV[3]: the entry's lifetime in ms.
// Writes the entry with an expiry in Redis's clock, makes the hash itself outlive every
// entry it holds (so an abandoned deployment leaves nothing behind), returns the live
// entries as field, value, ... and deletes the expired and the malformed ones.
constexpr const char* kScript = R"lua(
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local life = tonumber(ARGV[3])
if ARGV[2] ~= '' then
  redis.call('HSET', KEYS[1], ARGV[1], string.format('{"expires_ms":%d,', now + life) .. ARGV[2])
  if redis.call('PTTL', KEYS[1]) < life then redis.call('PEXPIRE', KEYS[1], life) end
end
local all = redis.call('HGETALL', KEYS[1])
local live = {}
for i = 1, #all, 2 do
  local expiry = tonumber(string.match(all[i + 1], '^{"expires_ms":(%d+),'))
  if expiry and expiry > now then
    live[#live + 1] = all[i]
    live[#live + 1] = all[i + 1]
  else
    redis.call('HDEL', KEYS[1], all[i])
  end
end
return live
)lua";

bool numericHost(const std::string& host) {
  unsigned char buf[sizeof(in6_addr)];
  return ::inet_pton(AF_INET, host.c_str(), buf) == 1 || ::inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

std::string describe(const std::vector<NodeEndpoint>& endpoints) {
  std::string out;
  for (const auto& e : endpoints) {
    if (!out.empty()) out += ", ";
    bool v6 = e.host.find(':') != std::string::npos;
    out += fmt::format("{}{}{}:{} ({})", v6 ? "[" : "", e.host, v6 ? "]" : "", e.port, e.tls ? "tls" : "plain");
  }
  return out.empty() ? "no endpoints" : out;
}

std::string localHostname() {
  char name[256] = {};
  if (::gethostname(name, sizeof name - 1) != 0) return {};
  return name;
}

}  // namespace

NodeRegistryOptions nodeRegistryOptions(const Config& config) {
  NodeRegistryOptions o;
  o.heartbeat = config.nodes.heartbeat;
  o.ttl = config.nodes.ttl;
  auto add = [&](const std::string& address, bool tls) {
    auto a = parseSockAddr(address);
    if (!a) return;
    std::string host = a->host();
    if (host == "0.0.0.0" || host == "::") return;  // refused by config validation; never advertised
    o.endpoints.push_back({host, a->port(), tls});
  };
  if (config.nodes.version != 0)
    logWarn(kLog, "[nodes] version = {} is not used by the redis engine: the version of the list of every host "
                  "is derived from its content, so that every host serves the same one",
            config.nodes.version);
  if (!config.nodes.endpoints.empty())
    for (const auto& e : config.nodes.endpoints) add(e.address, e.tls);
  else
    for (const auto& l : config.listen) add(l.address, l.tls);
  return o;
}

// ---- the parts that need no Redis ------------------------------------------------------

std::string NodeRegistry::encodeEntryTail(const std::vector<NodeEndpoint>& endpoints, std::string_view hostname,
                                          int pid) {
  nlohmann::json list = nlohmann::json::array();
  for (const auto& e : endpoints) list.push_back({{"host", e.host}, {"port", e.port}, {"tls", e.tls}});
  nlohmann::json entry = {{"endpoints", list}, {"hostname", hostname}, {"pid", pid}};
  std::string text = entry.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return text.substr(1);  // without the '{': the script puts {"expires_ms":T, before it
}

std::optional<std::vector<NodeEndpoint>> NodeRegistry::parseEntry(std::string_view value) {
  if (value.size() > kMaxEntryBytes) return std::nullopt;
  auto j = nlohmann::json::parse(value, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return std::nullopt;
  auto expiry = j.find("expires_ms");
  auto list = j.find("endpoints");
  if (expiry == j.end() || !expiry->is_number_integer() || list == j.end() || !list->is_array() ||
      list->size() > kMaxEndpointsPerHost)
    return std::nullopt;
  std::vector<NodeEndpoint> out;
  for (const auto& e : *list) {
    if (!e.is_object()) return std::nullopt;
    auto host = e.find("host");
    auto port = e.find("port");
    auto tls = e.find("tls");
    if (host == e.end() || !host->is_string() || port == e.end() || !port->is_number_unsigned() ||
        tls == e.end() || !tls->is_boolean())
      return std::nullopt;
    auto p = port->get<uint64_t>();
    std::string h = host->get<std::string>();
    if (p == 0 || p > 65535 || !numericHost(h)) return std::nullopt;
    out.push_back({std::move(h), static_cast<uint16_t>(p), tls->get<bool>()});
  }
  return out;
}

std::string NodeRegistry::buildDocument(std::vector<NodeEndpoint> endpoints, Duration ttl) {
  std::sort(endpoints.begin(), endpoints.end());
  endpoints.erase(std::unique(endpoints.begin(), endpoints.end()), endpoints.end());
  nlohmann::json list = nlohmann::json::array();
  for (const auto& e : endpoints) list.push_back({{"host", e.host}, {"port", e.port}, {"tls", e.tls}});
  std::string text = list.dump();
  // As gateway/HttpSession.cpp's nodes(): fits a JSON number exactly (52 bits), never 0.
  uint64_t version = (fnv1a64(text) >> 12) | 1;
  return fmt::format(R"({{"version":{},"ttl_s":{},"nodes":{}}})", version,
                     std::chrono::duration_cast<std::chrono::seconds>(ttl).count(), text);
}

std::vector<std::pair<std::string, std::vector<NodeEndpoint>>> NodeRegistry::parseReply(const RedisReply& reply,
                                                                                        size_t& malformed) {
  std::vector<std::pair<std::string, std::vector<NodeEndpoint>>> out;
  malformed = 0;
  if (reply.type != RedisReply::Type::Array) {
    ++malformed;
    return out;
  }
  const auto& e = reply.elements;
  for (size_t i = 0; i + 1 < e.size(); i += 2) {
    auto endpoints = parseEntry(e[i + 1].str);
    if (!endpoints || e[i].str.empty()) {
      ++malformed;
      continue;
    }
    out.emplace_back(e[i].str, std::move(*endpoints));
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  return out;
}

const char* NodeRegistry::script() { return kScript; }

// ---- the heartbeat -----------------------------------------------------------------------

struct NodeRegistry::Impl : std::enable_shared_from_this<Impl> {
  Impl(asio::io_context& io_, CommandFn command_, std::string key_, std::string host_id_, NodeRegistryOptions options_,
       ChangeFn on_change_)
      : command(std::move(command_)),
        key(std::move(key_)),
        host_id(std::move(host_id_)),
        options(std::move(options_)),
        on_change(std::move(on_change_)),
        timer(io_),
        tail(encodeEntryTail(options.endpoints, localHostname(), ::getpid())),
        lifetime_ms(std::chrono::duration_cast<std::chrono::milliseconds>(options.heartbeat).count() *
                    kLifetimeBeats) {
    rebuild();
  }

  CommandFn command;
  std::string key;
  std::string host_id;
  NodeRegistryOptions options;
  ChangeFn on_change;
  asio::steady_timer timer;
  std::string tail;  // this host's entry, as the script wants it
  int64_t lifetime_ms;
  bool withdrawn = false;
  bool in_flight = false;  // a heartbeat awaits its reply: the next one waits
  bool failing = false;    // the last heartbeat failed (logged once per outage)
  bool answered = false;   // Redis has answered once (before that, failures are the start-up's)
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
  size_t malformed_logged = 0;
  bool truncated_logged = false;
  std::vector<std::pair<std::string, std::vector<NodeEndpoint>>> others;  // live hosts but this one, by id
  std::string document;
  size_t hosts = 0;

  // The next heartbeat in `delay` (replacing the one planned).
  void schedule(Duration delay) {
    timer.expires_after(delay);
    timer.async_wait([weak = weak_from_this()](boost::system::error_code ec) {
      auto self = weak.lock();
      if (ec || !self) return;
      self->beat();
      self->schedule(self->options.heartbeat);
    });
  }

  void beat() {
    if (in_flight) return;  // Redis is slow; its reply deadline ends the wait
    in_flight = true;
    std::vector<std::string> args = {"EVAL", kScript, "1", key, host_id, withdrawn ? std::string() : tail,
                                     std::to_string(lifetime_ms)};
    command(std::move(args), [weak = weak_from_this()](const RedisReply* r, std::string_view error) {
      if (auto self = weak.lock()) self->onReply(r, error);
    });
  }

  void onReply(const RedisReply* r, std::string_view error) {
    in_flight = false;
    if (!r || r->isError()) {
      // The command connection is usually still connecting when the first heartbeat
      // goes: that is not worth a warning unless it lasts. Failed heartbeats are tried
      // again soon rather than a whole heartbeat later.
      bool starting = !answered && std::chrono::steady_clock::now() - started < options.heartbeat;
      if (!failing && !starting) {
        logWarn(kLog, "node registry: {}; /v1/nodes keeps the last list ({} hosts)", r ? r->str : error, hosts);
        failing = true;
      }
      schedule(std::min<Duration>(options.heartbeat, kRetry));
      return;
    }
    if (failing) logInfo(kLog, "node registry: Redis answers again");
    failing = false;
    answered = true;
    size_t malformed = 0;
    auto entries = parseReply(*r, malformed);
    if (malformed != malformed_logged) {
      if (malformed) logWarn(kLog, "node registry: {} entries in {} are malformed; left out", malformed, key);
      malformed_logged = malformed;
    }
    std::erase_if(entries, [&](const auto& e) { return e.first == host_id; });
    logChanges(entries);
    others = std::move(entries);
    rebuild();
  }

  // One line per host that came or went (rare: hosts start and stop).
  void logChanges(const std::vector<std::pair<std::string, std::vector<NodeEndpoint>>>& now) const {
    auto find = [](const auto& list, const std::string& id) {
      return std::find_if(list.begin(), list.end(), [&](const auto& e) { return e.first == id; });
    };
    for (const auto& [id, endpoints] : now) {
      auto was = find(others, id);
      if (was == others.end()) logInfo(kLog, "node registry: host {} joined: {}", id, describe(endpoints));
      else if (was->second != endpoints) logInfo(kLog, "node registry: host {} now: {}", id, describe(endpoints));
    }
    for (const auto& [id, endpoints] : others)
      if (find(now, id) == now.end())
        logInfo(kLog, "node registry: host {} left or expired: {}", id, describe(endpoints));
  }

  void rebuild() {
    std::vector<NodeEndpoint> all;
    size_t n = 0;
    if (!withdrawn) {
      all = options.endpoints;
      ++n;
    }
    for (const auto& [id, endpoints] : others) {
      if (all.size() + endpoints.size() > kMaxEndpoints) {
        if (!truncated_logged)
          logWarn(kLog, "node registry: over {} endpoints; /v1/nodes leaves the rest out", kMaxEndpoints);
        truncated_logged = true;
        break;
      }
      all.insert(all.end(), endpoints.begin(), endpoints.end());
      ++n;
    }
    hosts = n;
    std::string doc = buildDocument(std::move(all), options.ttl);
    if (doc == document) return;
    document = std::move(doc);
    if (on_change) on_change(document);
  }
};

NodeRegistry::NodeRegistry(asio::io_context& io, CommandFn command, std::string key, std::string host_id,
                           NodeRegistryOptions options, ChangeFn on_change)
    : impl_(std::make_shared<Impl>(io, std::move(command), std::move(key), std::move(host_id), std::move(options),
                                   std::move(on_change))) {}

NodeRegistry::~NodeRegistry() { impl_->timer.cancel(); }

void NodeRegistry::start() {
  logInfo(kLog, "node registry: host {} advertises {} in {} (heartbeat {}, expiry {})", impl_->host_id,
          describe(impl_->options.endpoints), impl_->key, formatDuration(impl_->options.heartbeat),
          formatDuration(std::chrono::milliseconds(impl_->lifetime_ms)));
  impl_->beat();
  impl_->schedule(impl_->options.heartbeat);
}

void NodeRegistry::withdraw() {
  Impl& i = *impl_;
  if (i.withdrawn) return;
  i.withdrawn = true;
  i.command({"HDEL", i.key, i.host_id}, [](const RedisReply* r, std::string_view error) {
    if (!r || r->isError())
      logWarn(kLog, "node registry: deleting this host's entry: {}; it expires by itself", r ? r->str : error);
  });
  logInfo(kLog, "node registry: host {} withdrawn (its listeners are closed)", i.host_id);
  i.rebuild();
}

const std::string& NodeRegistry::document() const { return impl_->document; }

size_t NodeRegistry::hosts() const { return impl_->hosts; }

}  // namespace dingo
