#pragma once
// A fixed list of Redis servers sharing the channels ([bus] redis = ["A", "B", ...]):
// each channel lives on the server that scores highest for it under rendezvous hashing,
// so a server added or removed moves only the channels it gains or held. Every server
// is a shard of its own (core/RedisRouter.h); nothing is replicated between them.
#include <memory>
#include <vector>

#include "core/RedisRouter.h"

namespace dingo {

class RedisRing final : public RedisRouter {
 public:
  RedisRing(boost::asio::io_context& io, const std::vector<std::string>& addresses, const RedisOptions& options);

  void start(Events events) override;
  void stop() override;
  RedisShard* shardOf(std::string_view tag) override;
  RedisShard* shard(uint32_t id) override;
  std::vector<RedisShard*> shards() override;
  void command(std::string_view tag, std::vector<std::string> args, RedisClient::Done done) override;
  bool shardedPubsub() const override { return false; }
  std::string tagOn(const RedisShard& shard) override;

 private:
  std::vector<std::unique_ptr<RedisShard>> shards_;
  std::vector<uint64_t> seeds_;  // each server's hash seed, from its address
};

}  // namespace dingo
