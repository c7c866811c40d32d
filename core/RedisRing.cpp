#include "core/RedisRing.h"

#include "core/Hash.h"

namespace dingo {

namespace {

// splitmix64's finaliser: spreads a channel's hash and a server's seed over 64 bits.
uint64_t mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

}  // namespace

RedisRing::RedisRing(boost::asio::io_context& io, const std::vector<std::string>& addresses,
                     const RedisOptions& options) {
  uint32_t id = 1;
  for (const auto& a : addresses) {
    shards_.push_back(std::make_unique<RedisShard>(io, id++, a, options));
    seeds_.push_back(fnv1a64(a));
  }
}

void RedisRing::start(Events events) {
  for (auto& s : shards_) {
    if (events.added) events.added(*s);
    s->commands.start();
    s->pubsub.start();
  }
}

void RedisRing::stop() {
  for (auto& s : shards_) {
    s->pubsub.stop();
    s->commands.stop();
  }
}

RedisShard* RedisRing::shardOf(std::string_view tag) {
  if (shards_.size() == 1) return shards_[0].get();
  uint64_t h = fnv1a64(tag);
  size_t best = 0;
  uint64_t best_score = 0;
  for (size_t i = 0; i < shards_.size(); ++i) {
    uint64_t score = mix(h ^ seeds_[i]);
    if (i == 0 || score > best_score) {
      best = i;
      best_score = score;
    }
  }
  return shards_[best].get();
}

RedisShard* RedisRing::shard(uint32_t id) {
  return id >= 1 && id <= shards_.size() ? shards_[id - 1].get() : nullptr;
}

std::vector<RedisShard*> RedisRing::shards() {
  std::vector<RedisShard*> out;
  for (auto& s : shards_) out.push_back(s.get());
  return out;
}

void RedisRing::command(std::string_view tag, std::vector<std::string> args, RedisClient::Done done) {
  shardOf(tag)->commands.command(std::move(args), std::move(done));
}

std::string RedisRing::tagOn(const RedisShard& shard) { return shard.address; }

}  // namespace dingo
