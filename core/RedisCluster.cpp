#include "core/RedisCluster.h"

#include <charconv>
#include <optional>
#include <unordered_set>

#include "core/Asio.h"
#include "core/Log.h"
#include "core/Net.h"

namespace dingo {

namespace {

constexpr const char* kLog = "redis";
constexpr auto kReloadEvery = std::chrono::seconds(1);
constexpr auto kReloadGap = std::chrono::milliseconds(100);  // the least time between two reloads
constexpr auto kRetryAfter = std::chrono::milliseconds(100);
constexpr int kMaxRetries = 10;    // a command waits at most about a second for a master
constexpr int kMaxRedirects = 5;   // MOVED and ASK hops for one command

using Clock = std::chrono::steady_clock;
using Args = std::shared_ptr<const std::vector<std::string>>;

struct Redirect {
  bool ask = false;
  uint16_t slot = 0;
  std::string address;
};

// "MOVED 3999 127.0.0.1:6381" or "ASK 3999 127.0.0.1:6381".
std::optional<Redirect> parseRedirect(std::string_view e) {
  Redirect r;
  if (e.starts_with("ASK ")) r.ask = true;
  else if (!e.starts_with("MOVED ")) return std::nullopt;
  e.remove_prefix(r.ask ? 4 : 6);
  size_t space = e.find(' ');
  if (space == std::string_view::npos) return std::nullopt;
  unsigned slot = 0;
  auto [end, ec] = std::from_chars(e.data(), e.data() + space, slot);
  if (ec != std::errc() || end != e.data() + space || slot >= RedisCluster::kSlots) return std::nullopt;
  r.slot = static_cast<uint16_t>(slot);
  r.address = std::string(e.substr(space + 1));
  if (!parseSockAddr(r.address)) return std::nullopt;
  return r;
}

std::string joinAddress(std::string_view host, int64_t port) {
  return host.find(':') != std::string_view::npos ? fmt::format("[{}]:{}", host, port) : fmt::format("{}:{}", host, port);
}

}  // namespace

struct RedisCluster::Impl : std::enable_shared_from_this<Impl> {
  Impl(asio::io_context& io_, const std::vector<std::string>& seed_list, const RedisOptions& o)
      : io(io_), options(o), seed_addresses(seed_list), tick(io_), soon(io_) {
    for (const auto& a : seed_addresses) seeds.push_back(std::make_unique<RedisClient>(io, redisOptionsFor(o, a)));
  }

  asio::io_context& io;
  RedisOptions options;
  std::vector<std::string> seed_addresses;
  std::vector<std::unique_ptr<RedisClient>> seeds;  // kept connected: for when no master answers
  std::unordered_map<uint32_t, std::unique_ptr<RedisShard>> shards;
  std::unordered_map<std::string, uint32_t> by_address;
  std::array<uint32_t, kSlots> slots{};  // the master's shard id per slot; 0: unknown
  uint32_t next_id = 1;
  Events events;
  bool running = false;
  asio::steady_timer tick;
  asio::steady_timer soon;
  bool soon_armed = false;
  bool loading = false;
  bool load_again = false;
  Clock::time_point last_load{};

  RedisShard* find(uint32_t id) {
    auto it = shards.find(id);
    return it == shards.end() ? nullptr : it->second.get();
  }

  RedisShard& shardAt(const std::string& address) {
    auto it = by_address.find(address);
    if (it != by_address.end()) return *shards.at(it->second);
    uint32_t id = next_id++;
    auto made = std::make_unique<RedisShard>(io, id, address, options);
    RedisShard& s = *made;
    shards[id] = std::move(made);
    by_address[address] = id;
    s.commands.setStateHandler([weak = weak_from_this()](bool up, std::string_view) {
      auto self = weak.lock();
      if (self && !up) self->requestLoad();  // a master lost: maybe a failover
    });
    if (events.added) events.added(s);
    s.commands.start();
    s.pubsub.start();
    logInfo(kLog, "Redis Cluster master {}", address);
    return s;
  }

  // ---- the slot map ---------------------------------------------------------------------

  void scheduleTick() {
    tick.expires_after(kReloadEvery);
    tick.async_wait([weak = weak_from_this()](boost::system::error_code ec) {
      auto self = weak.lock();
      if (ec || !self || !self->running) return;
      self->load();
      self->scheduleTick();
    });
  }

  void requestLoad() {
    if (!running || soon_armed) return;
    soon_armed = true;
    auto wait = last_load + kReloadGap - Clock::now();
    soon.expires_after(std::max<Clock::duration>(wait, Clock::duration::zero()));
    soon.async_wait([weak = weak_from_this()](boost::system::error_code ec) {
      auto self = weak.lock();
      if (ec || !self) return;
      self->soon_armed = false;
      self->load();
    });
  }

  // CLUSTER SLOTS, asked of a master we reach, else of a seed.
  void load() {
    if (!running) return;
    if (loading) {
      load_again = true;
      return;
    }
    RedisClient* via = nullptr;
    std::string via_address;
    for (auto& [id, s] : shards)
      if (s->commands.connected()) {
        via = &s->commands;
        via_address = s->address;
        break;
      }
    for (size_t i = 0; !via && i < seeds.size(); ++i)
      if (seeds[i]->connected()) {
        via = seeds[i].get();
        via_address = seed_addresses[i];
      }
    if (!via) return;  // nothing reachable now: the next tick tries again
    loading = true;
    last_load = Clock::now();
    via->command({"CLUSTER", "SLOTS"}, [weak = weak_from_this(), via_address](const RedisReply* r, std::string_view error) {
      auto self = weak.lock();
      if (!self) return;
      self->loading = false;
      if (r && r->type == RedisReply::Type::Array) self->apply(*r, via_address);
      else logWarn(kLog, "CLUSTER SLOTS from {}: {}", via_address, r ? std::string_view(r->str) : error);
      if (std::exchange(self->load_again, false)) self->requestLoad();
    });
  }

  // [[start, end, [host, port, id], replicas...]...]
  void apply(const RedisReply& map, const std::string& via_address) {
    std::array<uint32_t, kSlots> next{};
    size_t covered = 0;
    for (const auto& range : map.elements) {
      const auto& e = range.elements;
      if (e.size() < 3 || e[0].type != RedisReply::Type::Integer || e[1].type != RedisReply::Type::Integer ||
          e[2].elements.size() < 2 || e[2].elements[1].type != RedisReply::Type::Integer)
        continue;
      int64_t from = e[0].integer, to = e[1].integer;
      if (from < 0 || to >= static_cast<int64_t>(kSlots) || from > to) continue;
      std::string host = e[2].elements[0].str;
      if (host.empty()) host = parseSockAddr(via_address) ? parseSockAddr(via_address)->host() : "";
      std::string address = joinAddress(host, e[2].elements[1].integer);
      if (!parseSockAddr(address)) {
        logWarn(kLog, "Redis Cluster master '{}' is not a numeric address; its slots are skipped", address);
        continue;
      }
      RedisShard& shard = shardAt(address);
      shard.replicas = static_cast<int>(e.size() - 3);
      uint32_t id = shard.id;
      for (int64_t slot = from; slot <= to; ++slot) next[static_cast<size_t>(slot)] = id;
      covered += static_cast<size_t>(to - from + 1);
    }
    if (covered == 0) return;  // a cluster still forming: keep what we had
    bool changed = next != slots;
    slots = next;
    std::unordered_set<uint32_t> owners(slots.begin(), slots.end());
    std::vector<std::unique_ptr<RedisShard>> gone;
    for (auto it = shards.begin(); it != shards.end();) {
      if (owners.count(it->first)) {
        ++it;
        continue;
      }
      logInfo(kLog, "Redis Cluster: {} is no longer a master of any slot", it->second->address);
      by_address.erase(it->second->address);
      gone.push_back(std::move(it->second));
      it = shards.erase(it);
    }
    if (!gone.empty()) {
      for (auto& s : gone) {
        s->pubsub.stop();
        s->commands.stop();
      }
      // Destroyed later: we may be inside one of their clients' handlers.
      asio::post(io, [doomed = std::make_shared<decltype(gone)>(std::move(gone))] {});
    }
    if ((changed || !gone.empty()) && events.moved) events.moved();
  }

  // ---- commands -------------------------------------------------------------------------

  void send(uint16_t slot, Args args, RedisClient::Done done, int tries) {
    RedisShard* s = find(slots[slot]);
    if (!s || !s->commands.connected()) {  // not sent: safe to try again once a master is up
      requestLoad();
      retryLater(slot, std::move(args), std::move(done), tries,
                 s ? fmt::format("Redis Cluster master {} is down", s->address)
                   : fmt::format("no Redis Cluster master known for slot {}", slot));
      return;
    }
    s->commands.command(*args, [weak = weak_from_this(), slot, args, done, tries](const RedisReply* r,
                                                                                std::string_view error) mutable {
      auto self = weak.lock();
      if (self && r && r->isError()) {
        // Refused, not run: MOVED, ASK, TRYAGAIN (keys migrating) and CLUSTERDOWN are
        // safe to send again. A command lost with its connection is not: it may have run.
        if (auto to = parseRedirect(r->str); to && tries < kMaxRedirects) {
          RedisShard& target = self->shardAt(to->address);
          if (!to->ask) {
            self->slots[to->slot] = target.id;
            self->requestLoad();
            self->send(slot, std::move(args), std::move(done), tries + 1);
          } else {
            target.commands.command({"ASKING"}, [](const RedisReply*, std::string_view) {});
            target.commands.command(*args, std::move(done));
          }
          return;
        }
        if (r->str.starts_with("TRYAGAIN") || r->str.starts_with("CLUSTERDOWN")) {
          self->retryLater(slot, std::move(args), std::move(done), tries, r->str);
          return;
        }
      }
      done(r, error);
    });
  }

  void retryLater(uint16_t slot, Args args, RedisClient::Done done, int tries, std::string why) {
    if (tries >= kMaxRetries || !running) {
      asio::post(io, [done = std::move(done), why = std::move(why)] { done(nullptr, why); });
      return;
    }
    auto timer = std::make_shared<asio::steady_timer>(io, kRetryAfter);
    timer->async_wait([weak = weak_from_this(), timer, slot, args = std::move(args), done = std::move(done), tries,
                       why = std::move(why)](boost::system::error_code ec) mutable {
      auto self = weak.lock();
      if (ec || !self) return done(nullptr, why);
      self->send(slot, std::move(args), std::move(done), tries + 1);
    });
  }
};

RedisCluster::RedisCluster(boost::asio::io_context& io, const std::vector<std::string>& seeds,
                           const RedisOptions& options)
    : impl_(std::make_shared<Impl>(io, seeds, options)) {}

RedisCluster::~RedisCluster() { stop(); }

void RedisCluster::start(Events events) {
  Impl& i = *impl_;
  if (i.running) return;
  i.running = true;
  i.events = std::move(events);
  for (auto& seed : i.seeds) {
    seed->setStateHandler([weak = std::weak_ptr<Impl>(impl_)](bool up, std::string_view) {
      auto self = weak.lock();
      if (self && up) self->requestLoad();
    });
    seed->start();
  }
  i.scheduleTick();
}

void RedisCluster::stop() {
  Impl& i = *impl_;
  if (!i.running) return;
  i.running = false;
  i.tick.cancel();
  i.soon.cancel();
  for (auto& seed : i.seeds) seed->stop();
  for (auto& [id, s] : i.shards) {
    s->pubsub.stop();
    s->commands.stop();
  }
}

RedisShard* RedisCluster::shardOf(std::string_view tag) { return impl_->find(impl_->slots[redisSlot(tag)]); }

RedisShard* RedisCluster::shard(uint32_t id) { return impl_->find(id); }

std::vector<RedisShard*> RedisCluster::shards() {
  std::vector<RedisShard*> out;
  for (auto& [id, s] : impl_->shards) out.push_back(s.get());
  return out;
}

void RedisCluster::command(std::string_view tag, std::vector<std::string> args, RedisClient::Done done) {
  impl_->send(redisSlot(tag), std::make_shared<const std::vector<std::string>>(std::move(args)), std::move(done), 0);
}

std::string RedisCluster::tagOn(const RedisShard& shard) {
  for (int k = 0; k < 100000; ++k) {
    std::string tag = std::to_string(k);
    if (impl_->slots[redisSlot(tag)] == shard.id) return tag;
  }
  return {};
}

void RedisCluster::refresh() { impl_->requestLoad(); }

}  // namespace dingo
