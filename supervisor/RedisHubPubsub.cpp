// What Redis pub/sub pushes to RedisHubServer (RedisHubImpl.h): messages and cluster
// sunsubscribes, the pub/sub connections' state, and the per-shard liveness probes.
#include "core/Log.h"
#include "core/Process.h"
#include "supervisor/RedisHubImpl.h"

namespace dingo {

void RedisHubServer::Impl::onPush(uint32_t shard_id, const RedisReply& m) {
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

void RedisHubServer::Impl::onPubsubState(uint32_t shard_id, bool up, std::string_view why) {
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

std::string_view RedisHubServer::Impl::channelOf(std::string_view pubsub_name) const {
  if (pubsub_name.size() < prefix.size() + 3 || !pubsub_name.starts_with(prefix) ||
      pubsub_name.substr(prefix.size(), 2) != ":{" || pubsub_name.back() != '}')
    return {};
  return pubsub_name.substr(prefix.size() + 2, pubsub_name.size() - prefix.size() - 3);
}

std::string RedisHubServer::Impl::probeChannel(RedisShard& shard) {
  std::string tag = router->tagOn(shard);
  return tag.empty() ? std::string() : fmt::format("{}:probe:{}:{{{}}}", prefix, host_id, tag);
}

void RedisHubServer::Impl::subscribeProbe(RedisShard& shard) {
  ShardState& st = shard_states[shard.id];
  std::string channel = probeChannel(shard);
  if (!st.probe_channel.empty() && st.probe_channel != channel)
    shard.pubsub.command({unsubscribeVerb(), st.probe_channel}, ignore);
  st.probe_channel = channel;
  st.probe_pending = 0;
  if (!channel.empty()) shard.pubsub.command({subscribeVerb(), channel}, ignore);
}

void RedisHubServer::Impl::probe() {
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

}  // namespace dingo
