#pragma once
// The Redis engine's node registry (issue 13, point 6): every host writes its public
// endpoints into one Redis hash with a heartbeat, and reads everyone's, so that
// GET /v1/nodes on any host lists the live gateways of every host (the list nsclient
// stores). The hash is PREFIX:{nodes} (a fixed hash tag: one Redis Cluster shard; a
// channel's keys are PREFIX:{/...}, so no channel can collide with it), field: the
// host's id, value: {"expires_ms":T,"endpoints":[{"host":H,"port":P,"tls":B}...],...}.
//
// Redis 7.0 hash fields do not expire by themselves, so one Lua script per heartbeat
// writes this host's entry with an expiry in Redis's own clock (TIME: hosts' clocks may
// disagree, Redis's is one), returns the entries not expired, and deletes the others.
// An entry lives kLifetimeBeats heartbeats; a host that stops cleanly deletes its entry
// at once (withdraw); one that dies is dropped by the first read past its expiry.
//
// The registry talks to Redis only through `CommandFn`, commands on its one key, so that
// whoever owns the connections (one Redis, shards, a Cluster) routes them.
#include <compare>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/Config.h"
#include "core/RedisClient.h"

namespace boost::asio {
class io_context;
}

namespace dingo {

// One public endpoint, as GET /v1/nodes lists it.
struct NodeEndpoint {
  std::string host;  // a numeric address
  uint16_t port = 0;
  bool tls = true;

  auto operator<=>(const NodeEndpoint&) const = default;
};

struct NodeRegistryOptions {
  std::vector<NodeEndpoint> endpoints;       // this host's
  Duration heartbeat = std::chrono::seconds(2);  // [nodes] heartbeat
  Duration ttl = std::chrono::minutes(10);   // the document's ttl_s ([nodes] ttl)
};

// What a host advertises: [nodes] endpoints, else its [[listen]] addresses. (Config
// validation refuses a wildcard listener without [nodes] endpoints under the redis
// engine: other hosts' clients could not dial 0.0.0.0.)
NodeRegistryOptions nodeRegistryOptions(const Config& config);

class NodeRegistry {
 public:
  using CommandFn = std::function<void(std::vector<std::string> args, RedisClient::Done done)>;
  // The /v1/nodes document changed (also called once the first read is in).
  using ChangeFn = std::function<void(const std::string& document)>;

  // An entry expires this many heartbeats after it was written.
  static constexpr int kLifetimeBeats = 5;
  // Bounds on what other hosts wrote: past them an entry, or the rest of the list, is
  // left out (and logged), so the document stays small.
  static constexpr size_t kMaxEntryBytes = 64 * 1024;
  static constexpr size_t kMaxEndpointsPerHost = 256;
  static constexpr size_t kMaxEndpoints = 10000;

  // `key`: PREFIX:{nodes}; `host_id`: this host's field in it.
  NodeRegistry(boost::asio::io_context& io, CommandFn command, std::string key, std::string host_id,
               NodeRegistryOptions options, ChangeFn on_change);
  ~NodeRegistry();
  NodeRegistry(const NodeRegistry&) = delete;
  NodeRegistry& operator=(const NodeRegistry&) = delete;

  // Registers now, then every heartbeat.
  void start();
  // This host stops taking connections (drain, stop, upgrade): its entry is deleted now
  // and not written again; reads go on (draining workers still answer /v1/nodes).
  void withdraw();

  // The GET /v1/nodes body: this host's endpoints (unless withdrawn) and every live
  // host's. Before the first read, and while Redis cannot be read, the last one.
  const std::string& document() const;
  // Hosts in it, this one included.
  size_t hosts() const;

  // ---- the parts that need no Redis (tested alone) ----

  // The value written for a host, without its leading {"expires_ms":T, (the script adds
  // it): "endpoints":[...],"hostname":N,"pid":P}.
  static std::string encodeEntryTail(const std::vector<NodeEndpoint>& endpoints, std::string_view hostname, int pid);
  // A value read back: its endpoints, or nullopt when malformed or over the bounds.
  static std::optional<std::vector<NodeEndpoint>> parseEntry(std::string_view value);
  // {"version":V,"ttl_s":S,"nodes":[...]}: endpoints sorted and without duplicates, so
  // that every host serves the same bytes for the same list; V is a hash of the list
  // (as GET /v1/nodes computes it on one host), so it changes when the list does.
  static std::string buildDocument(std::vector<NodeEndpoint> endpoints, Duration ttl);
  // The script's reply (field, value, field, value...): each host's endpoints, by id.
  // Malformed entries are left out and counted in `malformed`.
  static std::vector<std::pair<std::string, std::vector<NodeEndpoint>>> parseReply(const RedisReply& reply,
                                                                                   size_t& malformed);

  // The script, for tests: KEYS[1] the hash; ARGV: host id, entry tail ("" to only
  // read), lifetime in ms.
  static const char* script();

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace dingo
