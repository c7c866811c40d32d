#include "gateway/Polling.h"

#include <algorithm>

#include "gateway/Broker.h"
#include "gateway/Context.h"

namespace dingo {

// ---- PollEntry --------------------------------------------------------------------------

PollEntry::~PollEntry() { unsubscribeAll(); }

void PollEntry::unsubscribeAll() {
  // Idempotent, and touches the cache only when there is something to give back (an
  // entry retired by a cache that is gone by now must not reach it).
  for (Channel& c : channels_) {
    if (c.sub) cache_.ctx_.channels->remove(c.sub);
    c.sub = nullptr;
  }
  if (bytes_) cache_.subBytes(bytes_);
  bytes_ = 0;
  log_.clear();
}

void PollEntry::append(size_t channel, uint64_t seq, std::string json) {
  size_t n = json.size() + 64;
  if (bytes_ + n > cache_.ctx_.config.gateway.send_queue_bytes) {
    // More than a client may have pending: stop buffering; the next poll recovers
    // what it missed from the hub's history (or learns it cannot).
    broken_ = true;
    cache_.subBytes(bytes_);
    bytes_ = 0;
    log_.clear();
    return;
  }
  bytes_ += n;
  cache_.addBytes(n);
  log_.push_back({channel, seq, std::move(json)});
}

uint64_t PollEntry::addWaiter(std::function<void()> wake) {
  waiters_.emplace_back(next_waiter_, std::move(wake));
  return next_waiter_++;
}

void PollEntry::removeWaiter(uint64_t token) {
  std::erase_if(waiters_, [&](const auto& w) { return w.first == token; });
}

void PollEntry::wake() {
  auto waiters = std::move(waiters_);
  waiters_.clear();
  for (auto& [token, fn] : waiters) fn();
}

// Like an overflowing log: the next poll rebuilds the entry from the cursor's positions.
void PollEntry::onGap(std::string_view) {
  broken_ = true;
  cache_.subBytes(bytes_);
  bytes_ = 0;
  log_.clear();
  wake();
}

void PollEntry::push(const Delivery& d) {
  if (broken_ || retired_) return;
  for (size_t i = 0; i < channels_.size(); ++i) {
    if (channels_[i].name != d.channel) continue;
    // A channel that did not exist (an absent position) and was born since: its first
    // message follows (ChannelTable::continuity) and the cursor takes the channel's own
    // epoch, or the next poll would resume from an absent epoch's SEQ (recovered:false).
    if (channels_[i].acked.epoch != d.position.epoch) channels_[i].acked = {d.position.epoch, 0};
    append(i, d.position.seq, std::string(d.message));
    wake();
    return;
  }
}

bool PollEntry::canServe(const std::vector<std::string>& names,
                         const std::vector<std::optional<Position>>& from) const {
  if (broken_ || retired_ || pending_ > 0 || names.size() != channels_.size()) return false;
  for (size_t i = 0; i < names.size(); ++i) {
    const Channel& c = channels_[i];
    if (c.name != names[i] || !from[i]) return false;
    if (*from[i] == c.requested) continue;  // where it started: everything in the log is new
    if (from[i]->epoch != c.acked.epoch || from[i]->seq < c.acked.seq) return false;
    // Not ahead of what this entry has seen.
    uint64_t last = c.acked.seq;
    for (const Message& m : log_)
      if (m.channel == i) last = m.seq;
    if (from[i]->seq > last) return false;
  }
  return true;
}

void PollEntry::acknowledge(const std::vector<std::optional<Position>>& from) {
  for (size_t i = 0; i < channels_.size(); ++i) {
    Channel& c = channels_[i];
    if (!from[i]) continue;
    // The position it started from again is a retry (it has heard nothing from us),
    // unless the hub put the channel at that very position: then a retry and a client
    // that heard cannot be told apart, and a loss never cleared would answer every
    // poll at once.
    if (*from[i] == c.requested && c.acked != c.requested) continue;
    c.lost = false;  // it sent a position we gave it: it heard recovered:false
    if (from[i]->epoch == c.acked.epoch && from[i]->seq > c.acked.seq) c.acked.seq = from[i]->seq;
  }
  size_t freed = 0;
  std::erase_if(log_, [&](const Message& m) {
    bool done = m.seq <= channels_[m.channel].acked.seq;
    if (done) freed += m.json.size() + 64;
    return done;
  });
  bytes_ -= freed;
  cache_.subBytes(freed);
}

bool PollEntry::recovered() const {
  return std::none_of(channels_.begin(), channels_.end(), [](const Channel& c) { return c.lost; });
}

Cursor PollEntry::cursorAfterLog() const {
  Cursor c;
  c.session = session_;
  for (const Channel& ch : channels_) c.positions.emplace_back(ch.name, ch.acked);
  for (const Message& m : log_) c.positions[m.channel].second.seq = m.seq;
  return c;
}

void PollEntry::startSubscribe(size_t index, const std::optional<Position>& since) {
  ++pending_;
  std::weak_ptr<PollEntry> self = weak_from_this();
  std::string name = channels_[index].name;
  GatewayContext* ctx = &cache_.ctx_;
  ctx->broker->subscribe(name, since, [self, index, name, ctx, with_since = since.has_value()](
                                          const Catchup* c, std::string_view) {
    auto e = self.lock();
    if (!e || e->retired_) {
      // The entry went first; the hub counted the subscriber.
      if (c && ctx->broker) ctx->broker->unsubscribe(name);
      // A poll may still wait on a retired entry: it answers once nothing is pending.
      if (e && --e->pending_ == 0) e->wake();
      return;
    }
    --e->pending_;
    if (!c) {
      e->broken_ = true;  // the hub is gone; the poll answers unavailable
    } else {
      // Added now, in the result's callback: the messages in the result and the live
      // ones that follow meet without a gap (see Broker.h).
      Channel& ch = e->channels_[index];
      ch.sub = ctx->channels->add(name, e.get(), c->position);
      if (with_since && !c->recovered) {
        ch.lost = true;
        ++ctx->counters.not_recovered;
      } else if (with_since) {
        ++ctx->counters.recovered;
      }
      ch.acked = c->recovered && with_since ? Position{c->position.epoch, ch.acked.seq} : c->position;
      for (const StoredMessage& m : c->messages) {
        std::string json;
        appendMessageJson(json, name, {c->position.epoch, m.seq}, *m.data);
        e->append(index, m.seq, std::move(json));
      }
    }
    if (e->pending_ == 0) e->wake();
  });
}

// ---- PollCache --------------------------------------------------------------------------

PollCache::~PollCache() {
  // The process is going: the polls that waited on entries are coroutine frames that
  // the io_context destroyed already, so their wake-ups point at freed timers. Drop the
  // waiters unheard, then give the subscriptions back.
  for (auto& [id, e] : map_) e->waiters_.clear();
  clear();
}

std::shared_ptr<PollEntry> PollCache::find(uint64_t session) {
  auto it = map_.find(session);
  return it == map_.end() ? nullptr : it->second;
}

std::shared_ptr<PollEntry> PollCache::create(uint64_t session, size_t channels) {
  if (auto old = find(session)) retire(old);
  auto e = std::make_shared<PollEntry>(*this, session);
  e->last_used_ms = steadyNowMs();
  if (ctx_.config.gateway.session_cache_entries > 0) {
    if (!evictOverLimits(channels)) return nullptr;
    map_[session] = e;
    subscriptions_ += channels;
    e->counted_channels_ = channels;
  }
  return e;
}

void PollCache::erase(const std::shared_ptr<PollEntry>& e) {
  auto it = map_.find(e->session_);
  if (it == map_.end() || it->second != e) return;
  subscriptions_ -= e->counted_channels_;
  e->counted_channels_ = 0;
  map_.erase(it);
}

void PollCache::retire(const std::shared_ptr<PollEntry>& e) {
  if (e->retired_) return;
  e->retired_ = true;
  e->unsubscribeAll();
  e->wake();
  erase(e);
}

void PollCache::addBytes(size_t n) {
  bytes_ += n;
  if (bytes_ > ctx_.config.gateway.session_cache_bytes) evictOverLimits();
}

bool PollCache::evictOverLimits(size_t extra_channels) {
  const auto& g = ctx_.config.gateway;
  auto within = [&] {
    return map_.size() + (extra_channels ? 1 : 0) <= g.session_cache_entries &&
           subscriptions_ + extra_channels <= g.session_cache_subscriptions && bytes_ <= g.session_cache_bytes;
  };
  if (within()) return true;
  if (extra_channels > g.session_cache_subscriptions) return false;
  // Least recently used first, among the entries no poll is holding; an eighth at a
  // time (at least one), so that a full cache is not sorted on every poll.
  std::vector<std::shared_ptr<PollEntry>> idle;
  for (auto& [id, e] : map_)
    if (!e->held()) idle.push_back(e);
  std::sort(idle.begin(), idle.end(), [](const auto& a, const auto& b) { return a->last_used_ms < b->last_used_ms; });
  size_t batch = std::max<size_t>(1, map_.size() / 8);
  for (size_t i = 0; i < idle.size(); ++i) {
    if (i >= batch && within()) break;
    retire(idle[i]);
    ++evictions;
  }
  return within();
}

size_t PollCache::sweep() {
  int64_t oldest = steadyNowMs() - ctx_.config.gateway.session_ttl.count();
  std::vector<std::shared_ptr<PollEntry>> expired;
  for (auto& [id, e] : map_)
    if (!e->held() && e->last_used_ms < oldest) expired.push_back(e);
  for (auto& e : expired) {
    retire(e);
    ++evictions;
  }
  return expired.size();
}

void PollCache::clear() {
  std::vector<std::shared_ptr<PollEntry>> all;
  for (auto& [id, e] : map_) all.push_back(e);
  for (auto& e : all) retire(e);
}

}  // namespace dingo
