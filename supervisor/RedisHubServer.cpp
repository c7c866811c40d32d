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
#include "core/HubWire.h"
#include "core/Jwt.h"
#include "core/Log.h"
#include "core/Net.h"
#include "core/Process.h"
#include "core/RedisChannelStore.h"
#include "core/RedisClient.h"

namespace dingo {

namespace {

constexpr const char* kLog = "hub";
constexpr size_t kMaxLinkQueue = 256u << 20;  // as the local hub's (HubServer.cpp)
// Live messages held for subscribers whose history is being read, per channel; past
// this the oldest are dropped and such a subscriber may get recovered:false instead.
constexpr size_t kMaxHeld = 10000;
// Channels per SUBSCRIBE when a whole host subscribes again after a reconnect.
constexpr size_t kResubscribeBatch = 100;
// Subscriber counts: each host writes its own into PREFIX:{C}:n (field: the host, value:
// "COUNT EXPIRY_MS"), a change within a second, every count again every kCountRefresh;
// readers sum the fields not expired, so a host that died stops counting by itself.
constexpr auto kCountFlush = std::chrono::seconds(1);
constexpr int kCountRefreshTicks = 5;
constexpr int64_t kCountLifetimeMs = 15000;

RedisOptions redisOptions(const BusConfig& bus) {
  RedisOptions o;
  auto address = parseSockAddr(bus.redis.at(0));
  if (address) {
    o.host = address->host();
    o.port = address->port();
  }
  o.user = bus.user;
  if (!bus.password_file.empty()) {
    std::string text = readFile(bus.password_file).value_or("");
    o.password = text.substr(0, text.find_first_of("\r\n"));
  }
  o.connect_timeout = bus.connect_timeout;
  o.reply_timeout = bus.reply_timeout;
  return o;
}

}  // namespace

struct RedisHubServer::Impl : std::enable_shared_from_this<Impl> {
  Impl(asio::io_context& io_, const BusConfig& bus, const HistoryConfig& history_)
      : io(io_),
        history(history_),
        prefix(bus.prefix),
        commands(io_, redisOptions(bus)),
        pubsub(io_, redisOptions(bus)),
        store(commands, RedisChannelOptions{bus.prefix, history_.size, history_.ttl, false}),
        probe_interval(bus.probe_interval),
        probe_timer(io_),
        count_timer(io_) {
    std::random_device rd;
    host_id = fmt::format("{:08x}{:08x}", rd(), rd());
    probe_channel = fmt::format("{}:probe:{}", bus.prefix, host_id);
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
    bool subscribed = false;                       // Redis confirmed our SUBSCRIBE
    bool subscribing = false;
    std::vector<Waiting> waiting;  // subscribes before the confirmation
    int reads = 0;                 // history reads in flight (new subscribers, repairs)
    bool repairing = false;        // after a reconnect: live messages wait for the repair
    std::deque<Held> held;         // live messages that came while reads were in flight
    std::optional<Position> delivered;  // the last message sent to the links
  };

  asio::io_context& io;
  HistoryConfig history;
  std::string prefix;
  RedisClient commands;
  RedisClient pubsub;
  RedisChannelStore store;
  std::unordered_map<uint32_t, Link> links;
  std::unordered_map<std::string, Channel> channels;
  uint32_t next_id = 1;
  hubwire::Frame frame;
  bool pubsub_was_up = false;
  // Liveness: a pub/sub connection can stay up and deliver nothing (centrifugo#1189,
  // nchan#442). Every probe_interval the hub publishes to a channel of its own; a probe
  // that has not come back by the next tick means the connection is dead: reconnect
  // (which subscribes again and repairs).
  Duration probe_interval;
  asio::steady_timer probe_timer;
  std::string probe_channel;
  uint64_t probe_sent = 0;      // the last probe's number
  uint64_t probe_pending = 0;   // sent, not back (0: none)
  uint64_t probe_failures = 0;
  std::string host_id;
  asio::steady_timer count_timer;
  std::unordered_set<std::string> counts_changed;
  int count_ticks = 0;
  // Figures for status.
  uint64_t published = 0, delivered_count = 0, repaired = 0, gaps = 0, overflows = 0, dropped_held = 0;

  void start() {
    auto weak = weak_from_this();
    pubsub.setPushHandler([weak](const RedisReply& m) {
      if (auto self = weak.lock()) self->onPush(m);
    });
    pubsub.setStateHandler([weak](bool up, std::string_view why) {
      if (auto self = weak.lock()) self->onPubsubState(up, why);
    });
    commands.start();
    pubsub.start();
    scheduleProbe();
    scheduleCounts();
  }

  // ---- subscriber counts over hosts ----------------------------------------------------

  std::string countsKey(std::string_view channel) const { return fmt::format("{}:{{{}}}:n", prefix, channel); }

  void scheduleCounts() {
    count_timer.expires_after(kCountFlush);
    count_timer.async_wait([weak = weak_from_this()](boost::system::error_code ec) {
      auto self = weak.lock();
      if (ec || !self) return;
      self->flushCounts();
      self->scheduleCounts();
    });
  }

  void flushCounts() {
    if (!commands.connected()) return;
    if (++count_ticks % kCountRefreshTicks == 0)
      for (const auto& [name, ch] : channels)
        if (!ch.links.empty()) counts_changed.insert(name);
    int64_t expiry = unixNowMs() + kCountLifetimeMs;
    for (const auto& name : counts_changed) {
      uint64_t n = localSubscribers(name);
      std::vector<std::string> cmd = n ? std::vector<std::string>{"HSET", countsKey(name), host_id, fmt::format("{} {}", n, expiry)}
                                       : std::vector<std::string>{"HDEL", countsKey(name), host_id};
      commands.command(std::move(cmd), [](const RedisReply*, std::string_view) {});
      if (n) commands.command({"PEXPIRE", countsKey(name), std::to_string(kCountLifetimeMs * 4)}, [](const RedisReply*, std::string_view) {});
    }
    counts_changed.clear();
  }

  // Subscribers on every host: this host's own count, and the others' unexpired ones.
  void countEverywhere(const std::string& name, std::function<void(uint64_t)> done) {
    auto self = shared_from_this();
    commands.command({"HGETALL", countsKey(name)}, [self, name, done = std::move(done)](const RedisReply* r, std::string_view) {
      uint64_t total = self->localSubscribers(name);
      int64_t now = unixNowMs();
      if (r && r->type == RedisReply::Type::Array)
        for (size_t i = 0; i + 1 < r->elements.size(); i += 2) {
          if (r->elements[i].str == self->host_id) continue;
          uint64_t n = 0;
          int64_t until = 0;
          if (std::sscanf(r->elements[i + 1].str.c_str(), "%lu %ld", &n, &until) == 2 && until > now) total += n;
        }
      done(total);
    });
  }

  void scheduleProbe() {
    probe_timer.expires_after(probe_interval);
    probe_timer.async_wait([weak = weak_from_this()](boost::system::error_code ec) {
      auto self = weak.lock();
      if (ec || !self) return;
      self->probe();
      self->scheduleProbe();
    });
  }

  void probe() {
    if (!pubsub.connected() || !commands.connected()) return;
    if (probe_pending) {
      ++probe_failures;
      probe_pending = 0;
      pubsub.reconnect(fmt::format("a liveness probe did not come back within {}", formatDuration(probe_interval)));
      return;
    }
    probe_pending = ++probe_sent;
    commands.command({"PUBLISH", probe_channel, std::to_string(probe_pending)}, [](const RedisReply*, std::string_view) {});
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
        store.publish(channel, f.data, [self, id, request = f.id](const Position* p, std::string_view error) {
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
          self->countEverywhere(channel, [self, id, request, position = c->position](uint64_t subscribers) {
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

  uint64_t localSubscribers(const std::string& channel) const {
    auto it = channels.find(channel);
    uint64_t n = 0;
    if (it != channels.end())
      for (const auto& [link, count] : it->second.links) n += count;
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

  // SUBSCRIBE for `names`; when Redis confirms, their waiting subscribers' history is read.
  void subscribeInRedis(std::vector<std::string> names) {
    std::vector<std::string> cmd = {"SUBSCRIBE"};
    for (const auto& n : names) {
      channels[n].subscribing = true;
      cmd.push_back(store.pubsubChannel(n));
    }
    auto self = shared_from_this();
    int replies = static_cast<int>(names.size());
    pubsub.command(std::move(cmd), [self, names](const RedisReply* r, std::string_view error) {
      for (const auto& n : names) {
        auto it = self->channels.find(n);
        if (it == self->channels.end()) continue;
        Channel& ch = it->second;
        ch.subscribing = false;
        std::vector<Waiting> waiting;
        waiting.swap(ch.waiting);
        if (!r) {
          for (const auto& w : waiting) self->replyError(w.link, w.request, error);
          self->forgetIfUnused(n);
          continue;
        }
        ch.subscribed = true;
        for (const auto& w : waiting) self->readFor(n, ch, w);
      }
    }, replies);
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
        // The answer may be ahead of the live stream (messages published before the
        // read whose pub/sub copies have not arrived yet). Those must still reach the
        // subscribers this host has, and those whose reads are in flight, so the live
        // mark moves to the answer only when there are none (the new one skips what
        // its answer had: gateway/PubSub.h).
        bool alone = ch.links.empty() && ch.reads == 0;
        ++ch.links[w.link];
        self->counts_changed.insert(name);
        std::string out;
        hubwire::encodeCatchup(out, w.request, answer);
        self->send(w.link, std::move(out));
        if (alone && (!ch.delivered || ch.delivered->epoch != answer.position.epoch || ch.delivered->seq < answer.position.seq))
          if (!ch.repairing && ch.held.empty()) ch.delivered = answer.position;
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
    counts_changed.insert(name);
    forgetIfUnused(name);
  }

  // A channel nobody here wants any more: leave it in Redis too.
  void forgetIfUnused(const std::string& name) {
    auto it = channels.find(name);
    if (it == channels.end()) return;
    Channel& ch = it->second;
    if (!ch.links.empty() || ch.reads > 0 || !ch.waiting.empty() || ch.subscribing) return;
    if (ch.subscribed) pubsub.command({"UNSUBSCRIBE", store.pubsubChannel(name)}, [](const RedisReply*, std::string_view) {});
    channels.erase(it);
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
    std::vector<uint32_t> ids;
    for (const auto& [id, count] : ch.links) ids.push_back(id);
    if (!ids.empty()) deliverTo(ids, name, p, data);
  }

  void onPush(const RedisReply& m) {
    if (m.elements.size() != 3) return;
    std::string_view pubsub_name = m.elements[1].str;
    if (pubsub_name == probe_channel) {
      if (m.elements[2].str == std::to_string(probe_pending)) probe_pending = 0;
      return;
    }
    // PREFIX:{CHANNEL}
    if (pubsub_name.size() < prefix.size() + 3 || !pubsub_name.starts_with(prefix) ||
        pubsub_name.substr(prefix.size(), 2) != ":{" || pubsub_name.back() != '}')
      return;
    std::string name(pubsub_name.substr(prefix.size() + 2, pubsub_name.size() - prefix.size() - 3));
    auto it = channels.find(name);
    if (it == channels.end()) return;
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
    if (!ch.repairing) deliverToAll(name, ch, parsed->first, parsed->second);
  }

  // ---- the pub/sub connection's losses -------------------------------------------------

  void onPubsubState(bool up, std::string_view why) {
    probe_pending = 0;
    if (up) pubsub.command({"SUBSCRIBE", probe_channel}, [](const RedisReply*, std::string_view) {});
    if (!up) {
      logWarn(kLog, "Redis pub/sub lost ({}): {} channels will be subscribed again and repaired", why,
              channels.size());
      for (auto& [name, ch] : channels) {
        ch.subscribed = false;
        ch.subscribing = false;
      }
      pubsub_was_up = true;
      return;
    }
    if (!pubsub_was_up) return;  // the first connection: nothing to repair
    std::vector<std::string> batch;
    for (auto& [name, ch] : channels) {
      ch.repairing = ch.delivered.has_value();
      batch.push_back(name);
      if (batch.size() == kResubscribeBatch) subscribeAndRepair(std::exchange(batch, {}));
    }
    if (!batch.empty()) subscribeAndRepair(std::move(batch));
  }

  void subscribeAndRepair(std::vector<std::string> names) {
    std::vector<std::string> cmd = {"SUBSCRIBE"};
    for (const auto& n : names) cmd.push_back(store.pubsubChannel(n));
    auto self = shared_from_this();
    pubsub.command(std::move(cmd), [self, names](const RedisReply* r, std::string_view) {
      if (!r) return;  // lost again: the next reconnect starts over
      for (const auto& n : names) {
        auto it = self->channels.find(n);
        if (it == self->channels.end()) continue;
        it->second.subscribed = true;
        std::vector<Waiting> waiting;
        waiting.swap(it->second.waiting);
        for (const auto& w : waiting) self->readFor(n, it->second, w);
        if (it->second.repairing) self->repair(n);
      }
    }, static_cast<int>(names.size()));
  }

  // Delivers in order what this host missed while pub/sub was down, from history; then
  // what came live meanwhile. A gap history no longer holds is counted and logged.
  void repair(const std::string& name) {
    Channel& channel = channels[name];
    ++channel.reads;
    auto self = shared_from_this();
    store.history(name, channel.delivered, history.size, [self, name](const Catchup* c, std::string_view error) {
      auto it = self->channels.find(name);
      if (it == self->channels.end()) return;
      Channel& ch = it->second;
      --ch.reads;
      if (!c) {
        // Redis did not answer (the command connection may be coming back too): try
        // again shortly; live messages keep waiting meanwhile.
        logWarn(kLog, "repairing {} after a reconnect: {}; retrying", name, error);
        auto timer = std::make_shared<asio::steady_timer>(self->io, std::chrono::milliseconds(200));
        timer->async_wait([weak = std::weak_ptr<Impl>(self), timer, name](boost::system::error_code ec) {
          auto again = weak.lock();
          if (ec || !again) return;
          auto found = again->channels.find(name);
          if (found != again->channels.end() && found->second.repairing) again->repair(name);
        });
        return;
      }
      ch.repairing = false;
      if (!c->recovered) {
        ++self->gaps;
        logWarn(kLog, "{}: messages missed during the Redis outage are no longer in history", name);
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

  void onClose(uint32_t id, const std::string& why) {
    auto it = links.find(id);
    if (it == links.end()) return;
    if (why.find("over its limit") != std::string::npos) {
      ++overflows;
      logError(kLog, "worker {}: {}", it->second.slot, why);
    }
    std::vector<std::string> names;
    for (auto& [name, ch] : channels)
      if (ch.links.erase(id)) {
        names.push_back(name);
        counts_changed.insert(name);
      }
    for (const auto& n : names) forgetIfUnused(n);
    asio::post(io, [self = shared_from_this(), id] { self->links.erase(id); });
  }
};

RedisHubServer::RedisHubServer(asio::io_context& io, const BusConfig& bus, const HistoryConfig& history)
    : impl_(std::make_shared<Impl>(io, bus, history)) {
  impl_->start();
  logInfo(kLog, "Redis engine: {} (prefix {})", bus.redis.at(0), bus.prefix);
}

RedisHubServer::~RedisHubServer() {
  for (auto& [id, l] : impl_->links) l.link->close("supervisor exiting");
  impl_->pubsub.stop();
  impl_->commands.stop();
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
  return id;
}

void RedisHubServer::detach(uint32_t id) {
  auto it = impl_->links.find(id);
  if (it != impl_->links.end()) it->second.link->close("worker exited");
}

bool RedisHubServer::degraded() const { return !impl_->commands.connected() || !impl_->pubsub.connected(); }

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
          {"redis_connected", i.commands.connected() && i.pubsub.connected()},
          {"channels", i.channels.size()},
          {"published", i.published},
          {"delivered", i.delivered_count},
          {"repaired", i.repaired},
          {"gaps", i.gaps},
          {"probe_failures", i.probe_failures},
          {"held_dropped", i.dropped_held},
          {"links", i.links.size()},
          {"link_overflows", i.overflows}};
}

}  // namespace dingo
