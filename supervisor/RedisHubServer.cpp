#include "supervisor/RedisHubServer.h"

#include <algorithm>
#include <deque>
#include <random>
#include <nlohmann/json.hpp>
#include <unordered_map>
#include <unordered_set>

#include "core/Asio.h"
#include "core/Hub.h"
#include "core/HubLink.h"
#include "core/Hash.h"
#include "core/HubWire.h"
#include "core/Jwt.h"
#include "core/Log.h"
#include "core/Net.h"
#include "core/Process.h"
#include "core/RedisChannelStore.h"
#include "core/RedisClient.h"
#include "core/RedisRouter.h"
#include "supervisor/RedisSubscriberCounts.h"

namespace dingo {

namespace {

constexpr const char* kLog = "hub";
constexpr size_t kMaxLinkQueue = 256u << 20;  // as the local hub's (HubServer.cpp)
// Live messages held for subscribers whose history is being read, per channel; past
// this the oldest are dropped and such a subscriber may get recovered:false instead.
constexpr size_t kMaxHeld = 10000;
// Channels per SUBSCRIBE when a whole shard is subscribed again after a reconnect. (A
// cluster's SSUBSCRIBE takes channels of one slot only: one each.)
constexpr size_t kResubscribeBatch = 100;
// Channels whose subscription was lost and could not be made again at once (their shard
// still down, a cluster slot map still moving) are tried again this often.
constexpr auto kReconcileEvery = std::chrono::seconds(1);
constexpr auto kRepairRetry = std::chrono::milliseconds(200);
// A cluster publish waits this long at most for a replica to have the message.
constexpr auto kReplicaWait = std::chrono::milliseconds(100);

void ignore(const RedisReply*, std::string_view) {}

}  // namespace

struct RedisHubServer::Impl : std::enable_shared_from_this<Impl> {
  Impl(asio::io_context& io_, const BusConfig& bus, const HistoryConfig& history_)
      : io(io_),
        history(history_),
        prefix(bus.prefix),
        host_id(newHostId()),
        router(RedisRouter::create(io_, bus)),
        store(*router, RedisChannelOptions{bus.prefix, history_.size, history_.ttl, router->shardedPubsub(),
                                           router->shardedPubsub() ? kReplicaWait : Duration{0}}),
        counts(io_, *router, bus.prefix, host_id,
               [this](const std::string& c) { return localSubscribers(c); },
               [this](const std::function<void(const std::string&)>& fn) {
                 for (const auto& entry : channels)
                   if (!entry.second.links.empty()) fn(entry.first);
               }),
        probe_interval(bus.probe_interval),
        probe_timer(io_),
        reconcile_timer(io_) {}

  static std::string newHostId() {
    std::random_device rd;
    return fmt::format("{:08x}{:08x}", rd(), rd());
  }

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

  void start() {
    auto weak = weak_from_this();
    RedisRouter::Events events;
    events.added = [weak](RedisShard& shard) {
      uint32_t id = shard.id;
      shard.pubsub.setPushHandler([weak, id](const RedisReply& m) {
        if (auto self = weak.lock()) self->onPush(id, m);
      });
      shard.pubsub.setStateHandler([weak, id](bool up, std::string_view why) {
        if (auto self = weak.lock()) self->onPubsubState(id, up, why);
      });
    };
    events.moved = [weak] {
      if (auto self = weak.lock()) self->reconcile();
    };
    router->start(std::move(events));
    counts.start();
    every(probe_timer, probe_interval, &Impl::probe);
    every(reconcile_timer, kReconcileEvery, &Impl::reconcileIfNeeded);
  }

  const char* subscribeVerb() const { return router->shardedPubsub() ? "SSUBSCRIBE" : "SUBSCRIBE"; }
  const char* unsubscribeVerb() const { return router->shardedPubsub() ? "SUNSUBSCRIBE" : "UNSUBSCRIBE"; }
  const char* publishVerb() const { return router->shardedPubsub() ? "SPUBLISH" : "PUBLISH"; }

  // ---- liveness probes -----------------------------------------------------------------

  // Runs `tick` every `interval` on `timer`, until the hub is gone.
  void every(asio::steady_timer& timer, Duration interval, void (Impl::*tick)()) {
    timer.expires_after(interval);
    timer.async_wait([weak = weak_from_this(), &timer, interval, tick](boost::system::error_code ec) {
      auto self = weak.lock();
      if (ec || !self) return;
      ((*self).*tick)();
      self->every(timer, interval, tick);
    });
  }

  // The probe channel for `shard`: of this host, and (in a cluster) in a slot it holds.
  std::string probeChannel(RedisShard& shard) {
    std::string tag = router->tagOn(shard);
    return tag.empty() ? std::string() : fmt::format("{}:probe:{}:{{{}}}", prefix, host_id, tag);
  }

  void subscribeProbe(RedisShard& shard) {
    ShardState& st = shard_states[shard.id];
    std::string channel = probeChannel(shard);
    if (!st.probe_channel.empty() && st.probe_channel != channel)
      shard.pubsub.command({unsubscribeVerb(), st.probe_channel}, ignore);
    st.probe_channel = channel;
    st.probe_pending = 0;
    if (!channel.empty()) shard.pubsub.command({subscribeVerb(), channel}, ignore);
  }

  void probe() {
    for (RedisShard* shard : router->shards()) {
      ShardState& st = shard_states[shard->id];
      if (!shard->pubsub.connected() || !shard->commands.connected()) continue;
      if (st.probe_pending) {
        ++probe_failures;
        st.probe_pending = 0;
        shard->pubsub.reconnect(
            fmt::format("a liveness probe did not come back within {}", formatDuration(probe_interval)));
        continue;
      }
      if (st.probe_channel.empty() || st.probe_channel != probeChannel(*shard)) {  // slots moved: next tick
        subscribeProbe(*shard);
        continue;
      }
      st.probe_pending = ++st.probe_sent;
      uint32_t id = shard->id;
      shard->commands.command({publishVerb(), st.probe_channel, std::to_string(st.probe_pending)},
                              [weak = weak_from_this(), id](const RedisReply* r, std::string_view) {
                                auto self = weak.lock();
                                // Refused (MOVED: the slot left this shard): not a verdict.
                                if (self && r && r->isError()) self->shard_states[id].probe_pending = 0;
                              });
    }
  }

  // ---- worker frames ------------------------------------------------------------------

  void send(uint32_t link, std::string bytes) {
    auto it = links.find(link);
    if (it != links.end()) it->second.link->send(std::move(bytes));
  }

  void replyError(uint32_t link, uint64_t request, std::string_view why) {
    std::string out;
    hubwire::encodeError(out, request, fmt::format("pub/sub is unavailable: {}", why));
    send(link, std::move(out));
  }

  void onFrame(uint32_t id, std::string_view bytes) {
    auto it = links.find(id);
    if (it == links.end()) return;
    if (!hubwire::decode(bytes, frame)) {
      logWarn(kLog, "worker {} sent a malformed hub frame; closing its link", it->second.slot);
      it->second.link->close("malformed frame");
      return;
    }
    const hubwire::Frame& f = frame;
    if (f.type != hubwire::Type::Unsubscribe && !validChannel(f.channel)) {
      std::string out;
      hubwire::encodeError(out, f.id, "invalid channel name");
      send(id, std::move(out));
      return;
    }
    std::string channel(f.channel);
    auto self = shared_from_this();
    switch (f.type) {
      case hubwire::Type::Subscribe:
        subscribe(id, f.id, channel, f.since);
        return;
      case hubwire::Type::Unsubscribe:
        unsubscribe(id, channel);
        return;
      case hubwire::Type::Publish:
        ++published;
        store.publish(channel, f.data, deliveredOf(channel),
                      [self, id, request = f.id](const Position* p, std::string_view error) {
          if (!p) return self->replyError(id, request, error);
          std::string out;
          hubwire::encodePublishReply(out, request, *p);
          self->send(id, std::move(out));
        });
        return;
      case hubwire::Type::History:
        store.history(channel, f.since, f.limit, [self, id, request = f.id](const Catchup* c, std::string_view error) {
          if (!c) return self->replyError(id, request, error);
          std::string out;
          hubwire::encodeCatchup(out, request, *c);
          self->send(id, std::move(out));
        });
        return;
      case hubwire::Type::Info:
        store.history(channel, std::nullopt, 0, [self, id, channel, request = f.id](const Catchup* c, std::string_view error) {
          if (!c) return self->replyError(id, request, error);
          self->counts.count(channel, [self, id, request, position = c->position](uint64_t subscribers) {
            std::string out;
            hubwire::encodeInfoReply(out, request, Hub::Info{position, subscribers});
            self->send(id, std::move(out));
          });
        });
        return;
      default:
        logWarn(kLog, "worker {} sent hub frame type {}; closing its link", it->second.slot, static_cast<int>(f.type));
        it->second.link->close("unexpected frame");
    }
  }

  // The last position delivered here of `channel`, if it has subscribers here.
  std::optional<Position> deliveredOf(const std::string& channel) const {
    auto it = channels.find(channel);
    return it == channels.end() ? std::nullopt : it->second.delivered;
  }

  uint64_t localSubscribers(const std::string& channel) const {
    auto it = channels.find(channel);
    uint64_t n = 0;
    if (it != channels.end())
      for (const auto& entry : it->second.links) n += entry.second;
    return n;
  }

  // ---- subscribing --------------------------------------------------------------------

  void subscribe(uint32_t link, uint64_t request, const std::string& name, const std::optional<Position>& since) {
    Channel& ch = channels[name];
    Waiting w{link, request, since};
    if (ch.subscribed) {
      readFor(name, ch, w);
      return;
    }
    ch.waiting.push_back(w);
    if (!ch.subscribing) subscribeInRedis({name});
  }

  // (S)SUBSCRIBE for `names`, each on the shard that holds it. When a shard confirms,
  // waiting subscribers' history is read, and channels that had delivered before (a
  // subscription lost and made again) are repaired from history first.
  void subscribeInRedis(const std::vector<std::string>& names) {
    std::unordered_map<uint32_t, std::vector<std::pair<std::string, uint64_t>>> by_shard;
    for (const auto& n : names) {
      Channel& ch = channels[n];
      RedisShard* shard = router->shardOf(n);
      if (!shard || !shard->pubsub.connected()) {
        failWaiting(n, shard ? fmt::format("Redis {} is down", shard->address) : "no Redis holds it yet");
        if (!ch.links.empty()) reconcile_needed = true;
        continue;
      }
      ch.shard = shard->id;
      ch.subscribing = true;
      ch.subscribed = false;
      ch.token = next_token++;
      if (ch.delivered) ch.repairing = true;
      ch.repair = 0;  // a repair still out was for the lost subscription: its result is ignored
      by_shard[shard->id].emplace_back(n, ch.token);
    }
    size_t batch = router->shardedPubsub() ? 1 : kResubscribeBatch;
    for (auto& entry : by_shard)
      for (size_t i = 0; i < entry.second.size(); i += batch) {
        size_t end = std::min(entry.second.size(), i + batch);
        sendSubscribe(entry.first, {entry.second.begin() + static_cast<ptrdiff_t>(i),
                                    entry.second.begin() + static_cast<ptrdiff_t>(end)});
      }
  }

  void sendSubscribe(uint32_t shard_id, std::vector<std::pair<std::string, uint64_t>> names) {
    RedisShard* shard = router->shard(shard_id);
    std::vector<std::string> cmd = {subscribeVerb()};
    for (const auto& entry : names) cmd.push_back(store.pubsubChannel(entry.first));
    int replies = static_cast<int>(names.size());
    shard->pubsub.command(std::move(cmd), [weak = weak_from_this(), names](const RedisReply* r, std::string_view error) {
      auto self = weak.lock();
      if (!self) return;
      bool ok = r && !r->isError();
      if (!ok) {
        logWarn(kLog, "subscribing {} channels: {}", names.size(), r ? std::string_view(r->str) : error);
        if (r) self->router->refresh();  // MOVED: the slot map is out of date
      }
      for (const auto& entry : names) {
        auto it = self->channels.find(entry.first);
        if (it == self->channels.end() || it->second.token != entry.second) continue;  // superseded
        Channel& ch = it->second;
        ch.subscribing = false;
        if (!ok) {
          self->failWaiting(entry.first, r ? std::string_view(r->str) : error);
          if (!ch.links.empty()) self->reconcile_needed = true;
          self->forgetIfUnused(entry.first);
          continue;
        }
        ch.subscribed = true;
        std::vector<Waiting> waiting;
        waiting.swap(ch.waiting);
        for (const auto& w : waiting) self->readFor(entry.first, ch, w);
        if (ch.repairing) self->repair(entry.first);
      }
    }, replies);
  }

  void failWaiting(const std::string& name, std::string_view why) {
    auto it = channels.find(name);
    if (it == channels.end()) return;
    std::vector<Waiting> waiting;
    waiting.swap(it->second.waiting);
    for (const auto& w : waiting) replyError(w.link, w.request, why);
  }

  // Reads a new subscriber's history; live messages meanwhile are held for it.
  void readFor(const std::string& name, Channel& channel, const Waiting& w) {
    ++channel.reads;
    auto self = shared_from_this();
    size_t limit = w.since ? history.size : 0;
    store.history(name, w.since, limit, [self, name, w](const Catchup* c, std::string_view error) {
      auto it = self->channels.find(name);
      if (it == self->channels.end()) return;
      Channel& ch = it->second;
      --ch.reads;
      if (!c) {
        self->replyError(w.link, w.request, error);
      } else if (self->links.count(w.link)) {
        Catchup answer = *c;
        if (!w.since) {  // a subscribe without since starts at the current position
          answer.recovered = true;
          answer.messages.clear();
        }
        // What came live while the history was read, past the answer, is part of the
        // answer: the worker may have had those messages already for other subscribers,
        // and the new one's first live message must follow its answer (gateway/PubSub.h).
        // An absent answer (the channel was born after the read) is followed by SEQ 1
        // of whatever epoch it was born with, as in ChannelTable::continuity.
        for (const auto& h : ch.held) {
          bool absent = answer.position.seq == 0 && !answer.position.epoch.empty() && answer.position.epoch[0] == 'z';
          bool next = h.position.epoch == answer.position.epoch ? h.position.seq == answer.position.seq + 1
                                                                : absent && h.position.seq == 1;
          if (!next) continue;
          answer.messages.push_back({h.position.seq, std::make_shared<const std::string>(h.data), 0});
          answer.position = h.position;
        }
        // A resume that could not be exact says only where the channel is now: the
        // client refetches its state as of that position, and a message at or before it
        // would come twice (as does the store's own answer: RedisChannelStore::history).
        if (w.since && !answer.recovered) answer.messages.clear();
        // The answer may be ahead of the live stream (messages published before the
        // read whose pub/sub copies have not arrived yet). Those must still reach the
        // subscribers this host has, and those whose reads are in flight, so the live
        // mark moves to the answer only when there are none (the new one skips what
        // its answer had: gateway/PubSub.h).
        bool alone = ch.links.empty() && ch.reads == 0;
        ++ch.links[w.link];
        self->counts.changed(name);
        std::string out;
        hubwire::encodeCatchup(out, w.request, answer);
        self->send(w.link, std::move(out));
        if (alone && (!ch.delivered || ch.delivered->epoch != answer.position.epoch || ch.delivered->seq < answer.position.seq))
          if (!ch.repairing && ch.held.empty()) {
            ch.delivered = answer.position;
            ch.delivered_digest = answer.messages.empty() ? 0 : fnv1a64(*answer.messages.back().data) | 1;
          }
      }
      if (ch.reads == 0 && !ch.repairing) ch.held.clear();
      self->forgetIfUnused(name);
    });
  }

  void unsubscribe(uint32_t link, const std::string& name) {
    auto it = channels.find(name);
    if (it == channels.end()) return;
    auto l = it->second.links.find(link);
    if (l == it->second.links.end()) return;
    if (--l->second == 0) it->second.links.erase(l);
    counts.changed(name);
    forgetIfUnused(name);
  }

  // A channel nobody here wants any more: leave it in Redis too.
  void forgetIfUnused(const std::string& name) {
    auto it = channels.find(name);
    if (it == channels.end()) return;
    Channel& ch = it->second;
    if (!ch.links.empty() || ch.reads > 0 || !ch.waiting.empty() || ch.subscribing) return;
    RedisShard* shard = router->shard(ch.shard);
    if (ch.subscribed && shard) shard->pubsub.command({unsubscribeVerb(), store.pubsubChannel(name)}, ignore);
    channels.erase(it);
  }

  // ---- subscriptions lost and moved -----------------------------------------------------

  void reconcileIfNeeded() {
    if (std::exchange(reconcile_needed, false)) reconcile();
  }

  // Every channel with subscribers here is subscribed on the shard that holds it now:
  // one whose subscription was lost (a reconnect, a cluster's `sunsubscribe`) or whose
  // slot moved (a failover, a resharding) is subscribed again there and repaired.
  void reconcile() {
    std::vector<std::string> again;
    for (auto& entry : channels) {
      Channel& ch = entry.second;
      if (ch.links.empty()) continue;
      RedisShard* target = router->shardOf(entry.first);
      if (!target) {
        reconcile_needed = true;
        continue;
      }
      bool here = ch.shard == target->id;
      if (here && (ch.subscribed || ch.subscribing)) continue;
      if (!target->pubsub.connected()) {
        reconcile_needed = true;
        continue;
      }
      if (!here && (ch.subscribed || ch.subscribing)) {
        ++moved;
        if (RedisShard* old = router->shard(ch.shard); old && ch.subscribed)
          old->pubsub.command({unsubscribeVerb(), store.pubsubChannel(entry.first)}, ignore);
      }
      again.push_back(entry.first);
    }
    if (!again.empty()) {
      logInfo(kLog, "subscribing {} channels again, each on the Redis that holds it, and repairing them", again.size());
      subscribeInRedis(again);
    }
  }

  // Delivers in order what this host missed while its subscription was down, from
  // history; then what came live meanwhile. A gap history no longer holds is counted
  // and logged (each worker's subscriptions then see it and resume their clients).
  // History read from one message back, when this host knows what that message was, so
  // that a history that went back (a failover that lost messages delivered here, then
  // numbered new ones the same) cannot pass for the one delivered.
  void repair(const std::string& name) {
    Channel& channel = channels[name];
    ++channel.reads;
    uint64_t id = channel.repair = next_token++;
    std::optional<Position> since = channel.delivered;
    bool check = since && since->seq > 0 && channel.delivered_digest != 0;
    if (check) since->seq -= 1;
    auto self = shared_from_this();
    store.history(name, since, history.size, [self, name, check, id](const Catchup* c, std::string_view error) {
      auto it = self->channels.find(name);
      if (it == self->channels.end()) return;
      Channel& ch = it->second;
      --ch.reads;
      if (ch.repair != id) {  // superseded: a newer subscription has a repair of its own
        self->forgetIfUnused(name);
        return;
      }
      if (!c) {
        // Redis did not answer (the command connection may be coming back too): try
        // again shortly; live messages keep waiting meanwhile.
        logWarn(kLog, "repairing {} after a reconnect: {}; retrying", name, error);
        auto timer = std::make_shared<asio::steady_timer>(self->io, kRepairRetry);
        timer->async_wait([weak = std::weak_ptr<Impl>(self), timer, name, id](boost::system::error_code ec) {
          auto again = weak.lock();
          if (ec || !again) return;
          auto found = again->channels.find(name);
          if (found != again->channels.end() && found->second.repairing && found->second.repair == id)
            again->repair(name);
        });
        return;
      }
      ch.repairing = false;
      ch.repair = 0;
      if (ch.delivered && self->wentBack(ch, *c, check)) {
        self->breakContinuity(name, ch);
        return;
      }
      if (!c->recovered) {
        ++self->gaps;
        logWarn(kLog, "{}: messages missed while its subscription was down are no longer in history", name);
      } else {
        for (const auto& m : c->messages) {
          self->deliverToAll(name, ch, {c->position.epoch, m.seq}, *m.data);
          ++self->repaired;
        }
      }
      std::deque<Held> held;
      held.swap(ch.held);
      for (const auto& h : held) self->deliverToAll(name, ch, h.position, h.data);
      self->forgetIfUnused(name);
    });
  }

  // Redis's history of the channel, in the epoch delivered here, no longer has the last
  // message delivered here: fewer messages, or another message at its place.
  bool wentBack(const Channel& ch, const Catchup& c, bool checked) const {
    if (c.position.epoch != ch.delivered->epoch) return false;  // a new epoch: the workers see it
    if (c.position.seq < ch.delivered->seq) return true;
    if (!checked || !c.recovered) return false;
    return c.messages.empty() || c.messages.front().seq != ch.delivered->seq ||
           (fnv1a64(*c.messages.front().data) | 1) != ch.delivered_digest;
  }

  // The channel's history went back after messages were delivered from it: its epoch
  // is dropped in Redis (the next publish starts a new one) and every worker is sent a
  // message that does not follow, which makes each subscription resume its clients from
  // their positions: they get recovered:false, never another message at a position
  // they had (gateway/PubSub.h drops the message that breaks the sequence).
  void breakContinuity(const std::string& name, Channel& ch) {
    ++rolled_back;  // and a gap, counted as the marker goes out
    logWarn(kLog, "{}: Redis's history went back past {}.{} (a failover lost messages already delivered); "
            "its epoch is dropped and its subscribers resume with recovered:false", name, ch.delivered->epoch,
            ch.delivered->seq);
    store.forgetEpoch(name, ch.delivered->epoch, [](bool) {});
    ch.held.clear();
    Position marker{ch.delivered->epoch, ch.delivered->seq + 2};
    deliverToAll(name, ch, marker, "null");
    ch.delivered_digest = 0;
    forgetIfUnused(name);
  }

  void onPubsubState(uint32_t shard_id, bool up, std::string_view why) {
    shard_states[shard_id].probe_pending = 0;
    RedisShard* shard = router->shard(shard_id);
    if (!up) {
      size_t lost = 0;
      for (auto& entry : channels) {
        Channel& ch = entry.second;
        if (ch.shard != shard_id || (!ch.subscribed && !ch.subscribing)) continue;
        ch.subscribed = ch.subscribing = false;
        ch.token = next_token++;
        failWaiting(entry.first, why);
        ++lost;
      }
      logWarn(kLog, "Redis pub/sub on {} lost ({}): {} channels will be subscribed again and repaired",
              shard ? shard->address : "?", why, lost);
      reconcile_needed = true;
      router->refresh();
      return;
    }
    if (shard) subscribeProbe(*shard);
    reconcile();
  }

  // ---- messages -----------------------------------------------------------------------

  void deliverTo(const std::vector<uint32_t>& ids, const std::string& channel, const Position& p, std::string_view data) {
    auto bytes = std::make_shared<std::string>();
    hubwire::encodeMessage(*bytes, channel, p, data);
    std::shared_ptr<const std::string> shared = std::move(bytes);
    for (uint32_t id : ids) {
      auto it = links.find(id);
      if (it != links.end()) it->second.link->send(shared);
    }
    ++delivered_count;
  }

  void deliverToAll(const std::string& name, Channel& ch, const Position& p, std::string_view data) {
    if (ch.delivered && ch.delivered->epoch == p.epoch && p.seq <= ch.delivered->seq) return;  // seen
    if (ch.delivered && ch.delivered->epoch == p.epoch && p.seq > ch.delivered->seq + 1) ++gaps;
    ch.delivered = p;
    ch.delivered_digest = fnv1a64(data) | 1;  // never 0, which means unknown
    std::vector<uint32_t> ids;
    for (const auto& entry : ch.links) ids.push_back(entry.first);
    if (!ids.empty()) deliverTo(ids, name, p, data);
  }

  // The channel a pub/sub name "PREFIX:{CHANNEL}" carries; empty when it is not one.
  std::string_view channelOf(std::string_view pubsub_name) const {
    if (pubsub_name.size() < prefix.size() + 3 || !pubsub_name.starts_with(prefix) ||
        pubsub_name.substr(prefix.size(), 2) != ":{" || pubsub_name.back() != '}')
      return {};
    return pubsub_name.substr(prefix.size() + 2, pubsub_name.size() - prefix.size() - 3);
  }

  void onPush(uint32_t shard_id, const RedisReply& m) {
    if (m.elements.size() < 2) return;
    std::string_view kind = m.elements[0].str;
    std::string_view pubsub_name = m.elements[1].str;
    ShardState& st = shard_states[shard_id];
    if (kind == "sunsubscribe") {  // a cluster moved the channel's slot away from that node
      if (pubsub_name == st.probe_channel) st.probe_channel.clear();
      auto it = channels.find(std::string(channelOf(pubsub_name)));
      if (it != channels.end() && it->second.shard == shard_id) {
        it->second.subscribed = it->second.subscribing = false;
        it->second.token = next_token++;
      }
      reconcile_needed = true;
      router->refresh();
      return;
    }
    if (m.elements.size() != 3) return;
    if (pubsub_name == st.probe_channel) {
      if (m.elements[2].str == std::to_string(st.probe_pending)) st.probe_pending = 0;
      return;
    }
    auto it = channels.find(std::string(channelOf(pubsub_name)));
    if (it == channels.end() || it->second.shard != shard_id) return;
    auto parsed = RedisChannelStore::parseMessage(m.elements[2].str);
    if (!parsed) return;
    Channel& ch = it->second;
    if (ch.reads > 0 || ch.repairing) {
      if (ch.held.size() >= kMaxHeld) {
        ch.held.pop_front();
        ++dropped_held;
      }
      ch.held.push_back({parsed->first, std::string(parsed->second)});
    }
    if (!ch.repairing) deliverToAll(it->first, ch, parsed->first, parsed->second);
  }

  void onClose(uint32_t id, const std::string& why) {
    auto it = links.find(id);
    if (it == links.end()) return;
    if (why.find("over its limit") != std::string::npos) {
      ++overflows;
      logError(kLog, "worker {}: {}", it->second.slot, why);
    }
    std::vector<std::string> names;
    for (auto& entry : channels)
      if (entry.second.links.erase(id)) {
        names.push_back(entry.first);
        counts.changed(entry.first);
      }
    for (const auto& n : names) forgetIfUnused(n);
    asio::post(io, [self = shared_from_this(), id] { self->links.erase(id); });
  }
};

RedisHubServer::RedisHubServer(asio::io_context& io, const BusConfig& bus, const HistoryConfig& history,
                               NodeRegistryOptions nodes)
    : impl_(std::make_shared<Impl>(io, bus, history)) {
  impl_->start();
  if (bus.redis_cluster.empty())
    logInfo(kLog, "Redis engine: {} server(s), channels sharded over them (prefix {})", bus.redis.size(), bus.prefix);
  else
    logInfo(kLog, "Redis engine: a Redis Cluster, from {} seed(s) (prefix {})", bus.redis_cluster.size(), bus.prefix);
  startNodeRegistry(io, bus, std::move(nodes));
}

// ---- the node registry (supervisor/NodeRegistry.h) --------------------------------------
// Its Redis commands go to the shard that holds PREFIX:{nodes}; every change of the list is
// pushed to every worker link, and the list so far to a link that attaches.

void RedisHubServer::startNodeRegistry(asio::io_context& io, const BusConfig& bus, NodeRegistryOptions nodes) {
  std::weak_ptr<Impl> weak = impl_;
  auto command = [weak](std::vector<std::string> args, RedisClient::Done done) {
    if (auto self = weak.lock()) self->router->command("nodes", std::move(args), std::move(done));  // PREFIX:{nodes}
  };
  auto changed = [weak](const std::string& document) {
    auto self = weak.lock();
    if (!self) return;
    auto frame = std::make_shared<std::string>();
    hubwire::encodeNodes(*frame, document);
    std::shared_ptr<const std::string> shared = std::move(frame);
    for (auto& [id, l] : self->links) l.link->send(shared);
  };
  nodes_ = std::make_unique<NodeRegistry>(io, std::move(command), fmt::format("{}:{{nodes}}", bus.prefix),
                                          impl_->host_id, std::move(nodes), std::move(changed));
  nodes_->start();
}

void RedisHubServer::withdraw() { nodes_->withdraw(); }

RedisHubServer::~RedisHubServer() {
  for (auto& [id, l] : impl_->links) l.link->close("supervisor exiting");
  impl_->router->stop();
}

uint32_t RedisHubServer::attach(int fd, int worker_slot) {
  uint32_t id = impl_->next_id++;
  auto link = HubLink::create(impl_->io, fd, kMaxLinkQueue);
  impl_->links[id] = {link, worker_slot};
  std::weak_ptr<Impl> weak = impl_;
  link->start(
      [weak, id](std::string_view frame) {
        if (auto self = weak.lock()) self->onFrame(id, frame);
      },
      [weak, id](const std::string& why) {
        if (auto self = weak.lock()) self->onClose(id, why);
      });
  std::string nodes;  // the node list so far; changes follow (startNodeRegistry)
  hubwire::encodeNodes(nodes, nodes_->document());
  link->send(std::move(nodes));
  return id;
}

void RedisHubServer::detach(uint32_t id) {
  auto it = impl_->links.find(id);
  if (it != impl_->links.end()) it->second.link->close("worker exited");
}

bool RedisHubServer::degraded() const { return !impl_->router->connected(); }

nlohmann::json RedisHubServer::stats(size_t top_channels) const {
  const Impl& i = *impl_;
  nlohmann::json top = nlohmann::json::array();
  if (top_channels > 0) {  // this host's subscribers: the channels it holds in Redis
    std::vector<std::pair<uint64_t, const std::string*>> all;
    for (const auto& [name, ch] : i.channels) all.emplace_back(i.localSubscribers(name), &name);
    size_t n = std::min(top_channels, all.size());
    std::partial_sort(all.begin(), all.begin() + static_cast<ptrdiff_t>(n), all.end(), [](const auto& a, const auto& b) {
      return a.first != b.first ? a.first > b.first : *a.second < *b.second;
    });
    for (size_t k = 0; k < n; ++k) top.push_back({{"channel", *all[k].second}, {"subscribers", all[k].first}});
  }
  return {{"engine", "redis"},
          {"top_channels", top},
          {"redis_connected", i.router->connected()},
          {"redis", i.router->describe()},
          {"moved", i.moved},
          {"rolled_back", i.rolled_back},
          {"channels", i.channels.size()},
          {"published", i.published},
          {"delivered", i.delivered_count},
          {"repaired", i.repaired},
          {"gaps", i.gaps},
          {"probe_failures", i.probe_failures},
          {"held_dropped", i.dropped_held},
          {"links", i.links.size()},
          {"link_overflows", i.overflows},
          {"nodes", nodes_->hosts()}};
}

}  // namespace dingo
