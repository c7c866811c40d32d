#pragma once
// The inside of RedisHubServer (RedisHubServer.h says what it does), shared by its three
// files and by nothing else:
//   RedisHubServer.cpp    the wiring: worker links and their hubwire frames, the node
//                         registry, status
//   RedisHubChannels.cpp  the channel state machine: subscribing in Redis, a new
//                         subscriber's history with live messages held meanwhile,
//                         reconciling lost and moved subscriptions, repair, delivery
//   RedisHubPubsub.cpp    what Redis pub/sub pushes (messages, sunsubscribe), its
//                         connection state, and the per-shard liveness probes
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/Asio.h"
#include "core/Hub.h"
#include "core/HubLink.h"
#include "core/HubWire.h"
#include "core/RedisChannelStore.h"
#include "core/RedisClient.h"
#include "core/RedisRouter.h"
#include "supervisor/RedisHubServer.h"
#include "supervisor/RedisSubscriberCounts.h"

namespace dingo {

struct RedisHubServer::Impl : std::enable_shared_from_this<Impl> {
  static constexpr const char* kLog = "hub";
  static constexpr size_t kMaxLinkQueue = 256u << 20;  // as the local hub's (HubServer.cpp)
  // Live messages held for subscribers whose history is being read, per channel; past
  // this the oldest are dropped and such a subscriber may get recovered:false instead.
  static constexpr size_t kMaxHeld = 10000;
  // Channels per SUBSCRIBE when a whole shard is subscribed again after a reconnect. (A
  // cluster's SSUBSCRIBE takes channels of one slot only: one each.)
  static constexpr size_t kResubscribeBatch = 100;
  // Channels whose subscription was lost and could not be made again at once (their
  // shard still down, a cluster slot map still moving) are tried again this often.
  static constexpr auto kReconcileEvery = std::chrono::seconds(1);
  static constexpr auto kRepairRetry = std::chrono::milliseconds(200);
  // A cluster publish waits this long at most for a replica to have the message.
  static constexpr auto kReplicaWait = std::chrono::milliseconds(100);

  struct Link {
    std::shared_ptr<HubLink> link;
    int slot = -1;
  };
  struct Waiting {  // a subscribe waiting for its history
    uint32_t link;
    uint64_t request;
    std::optional<Position> since;
  };
  struct Held {
    Position position;
    std::string data;
  };
  struct Channel {
    std::unordered_map<uint32_t, uint32_t> links;  // subscribers per worker link
    uint32_t shard = 0;        // the Redis shard our subscription is on, or is being made on
    bool subscribed = false;   // that shard confirmed our (S)SUBSCRIBE
    bool subscribing = false;
    uint64_t token = 0;        // which (S)SUBSCRIBE the two flags are about
    std::vector<Waiting> waiting;  // subscribes before the confirmation
    int reads = 0;                 // history reads in flight (new subscribers, repairs)
    bool repairing = false;        // resubscribed: live messages wait for the repair
    uint64_t repair = 0;           // the repair whose result counts (one at a time)
    std::deque<Held> held;         // live messages that came while reads were in flight
    std::optional<Position> delivered;  // the last message sent to the links
    uint64_t delivered_digest = 0;      // a hash of its data; 0: not known
  };
  // Liveness, per shard: a pub/sub connection can stay up and deliver nothing
  // (centrifugo#1189, nchan#442). Every probe_interval the hub publishes to a channel of
  // its own on each shard; a probe that has not come back by the next tick means the
  // connection is dead: reconnect (which subscribes again and repairs).
  struct ShardState {
    std::string probe_channel;  // subscribed on the shard's pub/sub connection
    uint64_t probe_sent = 0;    // the last probe's number
    uint64_t probe_pending = 0; // sent, not back (0: none)
  };

  Impl(asio::io_context& io, const BusConfig& bus, const HistoryConfig& history);
  void start();

  asio::io_context& io;
  HistoryConfig history;
  std::string prefix;
  std::string host_id;
  std::unique_ptr<RedisRouter> router;
  RedisChannelStore store;
  RedisSubscriberCounts counts;
  std::unordered_map<uint32_t, Link> links;
  std::unordered_map<std::string, Channel> channels;
  std::unordered_map<uint32_t, ShardState> shard_states;
  uint32_t next_id = 1;
  uint64_t next_token = 1;
  hubwire::Frame frame;
  Duration probe_interval;
  asio::steady_timer probe_timer;
  asio::steady_timer reconcile_timer;
  bool reconcile_needed = false;
  // Figures for status.
  uint64_t published = 0, delivered_count = 0, repaired = 0, gaps = 0, overflows = 0, dropped_held = 0,
           probe_failures = 0, moved = 0, rolled_back = 0;

  const char* subscribeVerb() const { return router->shardedPubsub() ? "SSUBSCRIBE" : "SUBSCRIBE"; }
  const char* unsubscribeVerb() const { return router->shardedPubsub() ? "SUNSUBSCRIBE" : "UNSUBSCRIBE"; }
  const char* publishVerb() const { return router->shardedPubsub() ? "SPUBLISH" : "PUBLISH"; }
  static void ignore(const RedisReply*, std::string_view) {}
  static std::string newHostId();
  // Runs `tick` every `interval` on `timer`, until the hub is gone.
  void every(asio::steady_timer& timer, Duration interval, void (Impl::*tick)());

  // ---- worker frames (RedisHubServer.cpp) -----------------------------------------------
  void send(uint32_t link, std::string bytes);
  void replyError(uint32_t link, uint64_t request, std::string_view why);
  void onFrame(uint32_t id, std::string_view bytes);
  void onClose(uint32_t id, const std::string& why);
  // The last position delivered here of `channel`, if it has subscribers here.
  std::optional<Position> deliveredOf(const std::string& channel) const;
  uint64_t localSubscribers(const std::string& channel) const;

  // ---- subscribing (RedisHubChannels.cpp) ------------------------------------------------
  void subscribe(uint32_t link, uint64_t request, const std::string& name, const std::optional<Position>& since);
  // (S)SUBSCRIBE for `names`, each on the shard that holds it. When a shard confirms,
  // waiting subscribers' history is read, and channels that had delivered before (a
  // subscription lost and made again) are repaired from history first.
  void subscribeInRedis(const std::vector<std::string>& names);
  void sendSubscribe(uint32_t shard_id, std::vector<std::pair<std::string, uint64_t>> names);
  void failWaiting(const std::string& name, std::string_view why);
  // Reads a new subscriber's history; live messages meanwhile are held for it.
  void readFor(const std::string& name, Channel& channel, const Waiting& w);
  void unsubscribe(uint32_t link, const std::string& name);
  // A channel nobody here wants any more: leave it in Redis too.
  void forgetIfUnused(const std::string& name);

  // ---- subscriptions lost and moved (RedisHubChannels.cpp) -------------------------------
  void reconcileIfNeeded();
  // Every channel with subscribers here is subscribed on the shard that holds it now:
  // one whose subscription was lost (a reconnect, a cluster's `sunsubscribe`) or whose
  // slot moved (a failover, a resharding) is subscribed again there and repaired.
  void reconcile();
  // Delivers in order what this host missed while its subscription was down, from
  // history; then what came live meanwhile. A gap history no longer holds is counted
  // and logged (each worker's subscriptions then see it and resume their clients).
  // History read from one message back, when this host knows what that message was, so
  // that a history that went back (a failover that lost messages delivered here, then
  // numbered new ones the same) cannot pass for the one delivered.
  void repair(const std::string& name);
  // Redis's history of the channel, in the epoch delivered here, no longer has the last
  // message delivered here: fewer messages, or another message at its place.
  bool wentBack(const Channel& ch, const Catchup& c, bool checked) const;
  // The channel's history went back after messages were delivered from it: its epoch
  // is dropped in Redis (the next publish starts a new one) and every worker is sent a
  // message that does not follow, which makes each subscription resume its clients from
  // their positions: they get recovered:false, never another message at a position
  // they had (gateway/PubSub.h drops the message that breaks the sequence).
  void breakContinuity(const std::string& name, Channel& ch);

  // ---- delivery (RedisHubChannels.cpp) ---------------------------------------------------
  void deliverTo(const std::vector<uint32_t>& ids, const std::string& channel, const Position& p, std::string_view data);
  void deliverToAll(const std::string& name, Channel& ch, const Position& p, std::string_view data);

  // ---- Redis pub/sub and liveness probes (RedisHubPubsub.cpp) ----------------------------
  void onPush(uint32_t shard_id, const RedisReply& m);
  void onPubsubState(uint32_t shard_id, bool up, std::string_view why);
  // The channel a pub/sub name "PREFIX:{CHANNEL}" carries; empty when it is not one.
  std::string_view channelOf(std::string_view pubsub_name) const;
  // The probe channel for `shard`: of this host, and (in a cluster) in a slot it holds.
  std::string probeChannel(RedisShard& shard);
  void subscribeProbe(RedisShard& shard);
  void probe();
};

}  // namespace dingo
