#pragma once
// Which Redis holds a channel, for the Redis engine (DESIGN.md "Many hosts": sharding).
// A shard is one Redis server that holds whole channels: every key of a channel is
// hash-tagged `{channel}`, and its pub/sub channel too, so one server has all of it.
// Two routers:
//   RedisRing     a fixed list of servers ([bus] redis = [...]); channels are spread by
//                 rendezvous hashing, so adding a server moves only its own share;
//   RedisCluster  a Redis Cluster ([bus] redis_cluster = seeds); channels follow the
//                 cluster's slot map, which the router reloads on MOVED, on a lost
//                 connection and every second; commands follow MOVED and ASK.
// Each shard has two connections: one for commands and scripts, one for pub/sub (so a
// slow pub/sub reader never delays a publish). Commands that are not about a channel
// (the node registry) name a tag of their own instead, e.g. "nodes".
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/RedisClient.h"

namespace boost::asio {
class io_context;
}

namespace dingo {

struct BusConfig;

// One Redis server of the service, with its two connections.
struct RedisShard {
  RedisShard(boost::asio::io_context& io, uint32_t id_, std::string address_, const RedisOptions& options);

  const uint32_t id;  // never reused while its router lives
  const std::string address;
  int replicas = 0;  // a cluster master's replicas, as its slot map says
  RedisClient commands;
  RedisClient pubsub;
};

class RedisRouter {
 public:
  struct Events {
    // A new shard, before it starts: set its pub/sub handlers here.
    std::function<void(RedisShard&)> added;
    // Channels may live elsewhere now (a cluster's slots moved, a shard went away).
    std::function<void()> moved;
  };

  virtual ~RedisRouter() = default;

  // The router for [bus]: a ring over `redis`, or a cluster from `redis_cluster` seeds.
  static std::unique_ptr<RedisRouter> create(boost::asio::io_context& io, const BusConfig& bus);

  virtual void start(Events events) = 0;
  virtual void stop() = 0;

  // The shard that holds `tag` (a channel name) now; null while none is known (a cluster
  // whose slot map has not loaded yet).
  virtual RedisShard* shardOf(std::string_view tag) = 0;
  // The shard with this id; null once it is gone (a cluster master replaced).
  virtual RedisShard* shard(uint32_t id) = 0;
  virtual std::vector<RedisShard*> shards() = 0;

  // Runs a command on `tag`'s keys on the shard that holds them; a cluster's MOVED and
  // ASK are followed. `done` runs once, later, never inside this call.
  virtual void command(std::string_view tag, std::vector<std::string> args, RedisClient::Done done) = 0;

  // SPUBLISH and SSUBSCRIBE (Redis 7's sharded pub/sub) instead of PUBLISH and SUBSCRIBE:
  // a cluster's classic PUBLISH reaches every node.
  virtual bool shardedPubsub() const = 0;
  // A hash tag whose keys and sharded channels live on `shard` (the liveness probe's).
  virtual std::string tagOn(const RedisShard& shard) = 0;
  // Something looks out of date (a lost connection): reload the map soon.
  virtual void refresh() {}

  // Every shard's two connections are up and every channel has a shard.
  bool connected();
  // What status shows: each shard's address and whether it is up.
  std::string describe();
};

// `base` aimed at one server, "HOST:PORT".
RedisOptions redisOptionsFor(const RedisOptions& base, std::string_view address);

// The Redis Cluster hash slot of a key or tag (CRC16/XMODEM, mod 16384); a key with a
// non-empty `{...}` hashes only what is inside the first braces.
uint16_t redisSlot(std::string_view key);

}  // namespace dingo
