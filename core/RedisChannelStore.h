#pragma once
// Channels' positions and history kept in Redis, for the Redis engine (DESIGN.md "Many
// hosts"). Per channel C, with `{C}` a Redis Cluster hash tag so that all of it lives on
// one shard:
//   PREFIX:{C}:m   hash: epoch, seq, born (Redis time, ms)   TTL: history ttl + kMetaSlack
//   PREFIX:{C}:s   stream: one entry per message, id SEQ-0, field d = the data   TTL: history ttl
//   PREFIX:{C}     the pub/sub channel: "EPOCH.SEQ DATA" per message
// A publish is one Lua script, run with EVALSHA in one round trip: it makes the epoch
// when the hash is missing (a new channel, or one whose history Redis lost), bumps SEQ,
// appends to the stream trimmed to [history] size, refreshes both TTLs and publishes
// the message with its position. So whatever pub/sub carries is in history already,
// and a lost history can never pass for the same one: its epoch is new.
// Reads never create anything: a channel Redis does not have answers an absent
// position, as the local hub does (core/Hub.h), and a resume from one is exact when the
// channel was born within a TTL of it.
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "core/Config.h"
#include "core/Hub.h"

namespace dingo {

class RedisRouter;
struct RedisReply;

struct RedisChannelOptions {
  std::string prefix = "dingo";
  uint32_t history_size = 100;
  Duration history_ttl = std::chrono::minutes(5);
  bool sharded_pubsub = false;  // SPUBLISH (Redis Cluster) instead of PUBLISH
  // A cluster master with replicas answers a publish only once one replica has it (WAIT
  // 1, up to this long), so that an acknowledged message survives a failover.
  Duration replica_wait{0};
};

class RedisChannelStore {
 public:
  // Longer than the history's TTL, so that the epoch outlives the messages it numbers.
  static constexpr Duration kMetaSlack = std::chrono::hours(1);

  using PublishDone = std::function<void(const Position* position, std::string_view error)>;
  using CatchupDone = std::function<void(const Catchup* catchup, std::string_view error)>;

  // Each channel's commands go to the Redis that holds it (core/RedisRouter.h).
  RedisChannelStore(RedisRouter& redis, RedisChannelOptions options);

  void publish(std::string_view channel, std::string_view data, PublishDone done);
  // As Hub::history: up to `limit` messages after `since`, recovered when nothing is
  // missing; without `since`, the newest `limit` with recovered false.
  void history(std::string_view channel, const std::optional<Position>& since, size_t limit, CatchupDone done);

  // Drops the channel's history when it is still in `epoch`: the next publish starts a
  // new epoch. For a history found to have gone back (a failover lost messages that
  // were already delivered), so that it can never pass for the same one.
  void forgetEpoch(std::string_view channel, const std::string& epoch, std::function<void(bool forgotten)> done);

  // The pub/sub channel that carries `channel`'s messages.
  std::string pubsubChannel(std::string_view channel) const;
  // A pub/sub payload: its position and data; nullopt when malformed.
  static std::optional<std::pair<Position, std::string_view>> parseMessage(std::string_view payload);

 private:
  std::string key(std::string_view channel, std::string_view suffix) const;
  void runScript(std::string_view channel, const std::string& sha, const std::string& body,
                 std::vector<std::string> keys_and_args,
                 std::function<void(const RedisReply*, std::string_view)> done);
  Position absentPosition(int64_t now_ms) const;
  std::optional<int64_t> absentIssuedMs(const Position& p, int64_t now_ms) const;
  std::string newEpoch();

  RedisRouter& redis_;
  RedisChannelOptions options_;
  std::string absent_tag_;  // 4 characters from the prefix: absent positions of this service
  uint64_t rng_state_;
};

}  // namespace dingo
