// RedisHubServer's channel state machine (RedisHubImpl.h): subscribing in Redis, a new
// subscriber's history with live messages held meanwhile, reconciling lost and moved
// subscriptions, repair, and delivery to the worker links.
#include "core/Hash.h"
#include "core/Log.h"
#include "supervisor/RedisHubImpl.h"

namespace dingo {

void RedisHubServer::Impl::subscribe(uint32_t link, uint64_t request, const std::string& name, const std::optional<Position>& since) {
  Channel& ch = channels[name];
  Waiting w{link, request, since};
  if (ch.subscribed) {
    readFor(name, ch, w);
    return;
  }
  ch.waiting.push_back(w);
  if (!ch.subscribing) subscribeInRedis({name});
}

void RedisHubServer::Impl::subscribeInRedis(const std::vector<std::string>& names) {
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

void RedisHubServer::Impl::sendSubscribe(uint32_t shard_id, std::vector<std::pair<std::string, uint64_t>> names) {
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

void RedisHubServer::Impl::failWaiting(const std::string& name, std::string_view why) {
  auto it = channels.find(name);
  if (it == channels.end()) return;
  std::vector<Waiting> waiting;
  waiting.swap(it->second.waiting);
  for (const auto& w : waiting) replyError(w.link, w.request, why);
}

void RedisHubServer::Impl::readFor(const std::string& name, Channel& channel, const Waiting& w) {
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

void RedisHubServer::Impl::unsubscribe(uint32_t link, const std::string& name) {
  auto it = channels.find(name);
  if (it == channels.end()) return;
  auto l = it->second.links.find(link);
  if (l == it->second.links.end()) return;
  if (--l->second == 0) it->second.links.erase(l);
  counts.changed(name);
  forgetIfUnused(name);
}

void RedisHubServer::Impl::forgetIfUnused(const std::string& name) {
  auto it = channels.find(name);
  if (it == channels.end()) return;
  Channel& ch = it->second;
  if (!ch.links.empty() || ch.reads > 0 || !ch.waiting.empty() || ch.subscribing) return;
  RedisShard* shard = router->shard(ch.shard);
  if (ch.subscribed && shard) shard->pubsub.command({unsubscribeVerb(), store.pubsubChannel(name)}, ignore);
  channels.erase(it);
}

void RedisHubServer::Impl::reconcileIfNeeded() {
  if (std::exchange(reconcile_needed, false)) reconcile();
}

void RedisHubServer::Impl::reconcile() {
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

void RedisHubServer::Impl::repair(const std::string& name) {
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

bool RedisHubServer::Impl::wentBack(const Channel& ch, const Catchup& c, bool checked) const {
  if (c.position.epoch != ch.delivered->epoch) return false;  // a new epoch: the workers see it
  if (c.position.seq < ch.delivered->seq) return true;
  if (!checked || !c.recovered) return false;
  return c.messages.empty() || c.messages.front().seq != ch.delivered->seq ||
         (fnv1a64(*c.messages.front().data) | 1) != ch.delivered_digest;
}

void RedisHubServer::Impl::breakContinuity(const std::string& name, Channel& ch) {
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

void RedisHubServer::Impl::deliverTo(const std::vector<uint32_t>& ids, const std::string& channel, const Position& p, std::string_view data) {
  auto bytes = std::make_shared<std::string>();
  hubwire::encodeMessage(*bytes, channel, p, data);
  std::shared_ptr<const std::string> shared = std::move(bytes);
  for (uint32_t id : ids) {
    auto it = links.find(id);
    if (it != links.end()) it->second.link->send(shared);
  }
  ++delivered_count;
}

void RedisHubServer::Impl::deliverToAll(const std::string& name, Channel& ch, const Position& p, std::string_view data) {
  if (ch.delivered && ch.delivered->epoch == p.epoch && p.seq <= ch.delivered->seq) return;  // seen
  if (ch.delivered && ch.delivered->epoch == p.epoch && p.seq > ch.delivered->seq + 1) ++gaps;
  ch.delivered = p;
  ch.delivered_digest = fnv1a64(data) | 1;  // never 0, which means unknown
  std::vector<uint32_t> ids;
  for (const auto& entry : ch.links) ids.push_back(entry.first);
  if (!ids.empty()) deliverTo(ids, name, p, data);
}

}  // namespace dingo
