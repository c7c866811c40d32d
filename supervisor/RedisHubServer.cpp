// RedisHubServer (RedisHubServer.h): its wiring. The worker links and their hubwire
// frames, the node registry and status are here; the channel state machine is in
// RedisHubChannels.cpp and what Redis pub/sub pushes in RedisHubPubsub.cpp, all on the
// one Impl of RedisHubImpl.h.
#include "supervisor/RedisHubServer.h"

#include <algorithm>
#include <random>
#include <nlohmann/json.hpp>

#include "core/Log.h"
#include "core/Net.h"
#include "supervisor/RedisHubImpl.h"

namespace dingo {

RedisHubServer::Impl::Impl(asio::io_context& io_, const BusConfig& bus, const HistoryConfig& history_)
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

std::string RedisHubServer::Impl::newHostId() {
  std::random_device rd;
  return fmt::format("{:08x}{:08x}", rd(), rd());
}

void RedisHubServer::Impl::start() {
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

void RedisHubServer::Impl::every(asio::steady_timer& timer, Duration interval, void (Impl::*tick)()) {
  timer.expires_after(interval);
  timer.async_wait([weak = weak_from_this(), &timer, interval, tick](boost::system::error_code ec) {
    auto self = weak.lock();
    if (ec || !self) return;
    ((*self).*tick)();
    self->every(timer, interval, tick);
  });
}

void RedisHubServer::Impl::send(uint32_t link, std::string bytes) {
  auto it = links.find(link);
  if (it != links.end()) it->second.link->send(std::move(bytes));
}

void RedisHubServer::Impl::replyError(uint32_t link, uint64_t request, std::string_view why) {
  std::string out;
  hubwire::encodeError(out, request, fmt::format("pub/sub is unavailable: {}", why));
  send(link, std::move(out));
}

void RedisHubServer::Impl::onFrame(uint32_t id, std::string_view bytes) {
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

void RedisHubServer::Impl::onClose(uint32_t id, const std::string& why) {
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

std::optional<Position> RedisHubServer::Impl::deliveredOf(const std::string& channel) const {
  auto it = channels.find(channel);
  return it == channels.end() ? std::nullopt : it->second.delivered;
}

uint64_t RedisHubServer::Impl::localSubscribers(const std::string& channel) const {
  auto it = channels.find(channel);
  uint64_t n = 0;
  if (it != channels.end())
    for (const auto& entry : it->second.links) n += entry.second;
  return n;
}

RedisHubServer::RedisHubServer(asio::io_context& io, const BusConfig& bus, const HistoryConfig& history,
                               NodeRegistryOptions nodes)
    : impl_(std::make_shared<Impl>(io, bus, history)) {
  impl_->start();
  if (bus.redis_cluster.empty())
    logInfo(Impl::kLog, "Redis engine: {} server(s), channels sharded over them (prefix {})", bus.redis.size(), bus.prefix);
  else
    logInfo(Impl::kLog, "Redis engine: a Redis Cluster, from {} seed(s) (prefix {})", bus.redis_cluster.size(), bus.prefix);
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
  auto link = HubLink::create(impl_->io, fd, Impl::kMaxLinkQueue);
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
