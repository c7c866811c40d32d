#pragma once
// A Redis Cluster as the Redis engine's store and bus ([bus] redis_cluster = seeds).
// Each master is a shard (core/RedisRouter.h); a channel lives on the master of its
// slot (the CRC16 of its name, the `{channel}` hash tag of all its keys). The slot map
// comes from CLUSTER SLOTS, asked of any node we reach (the seeds are kept connected
// for when no known master answers), and is reloaded every second, on a MOVED, and when
// a master's connection is lost, which is how a failover is found: the promoted replica
// appears as the slots' master, the dead master's shard is retired, and the hub moves
// those channels' subscriptions (Events::moved). A command follows MOVED (the map is
// updated at once) and ASK (ASKING, then the command, on the importing node), and one
// that finds no master up (a failover under way) is retried for up to a second.
#include <array>
#include <memory>
#include <unordered_map>
#include <vector>

#include "core/RedisRouter.h"

namespace dingo {

class RedisCluster final : public RedisRouter {
 public:
  RedisCluster(boost::asio::io_context& io, const std::vector<std::string>& seeds, const RedisOptions& options);
  ~RedisCluster() override;

  void start(Events events) override;
  void stop() override;
  RedisShard* shardOf(std::string_view tag) override;
  RedisShard* shard(uint32_t id) override;
  std::vector<RedisShard*> shards() override;
  void command(std::string_view tag, std::vector<std::string> args, RedisClient::Done done) override;
  bool shardedPubsub() const override { return true; }
  std::string tagOn(const RedisShard& shard) override;
  void refresh() override;

  static constexpr size_t kSlots = 16384;

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace dingo
