#pragma once
// Long-polling sessions, cached per worker.
//
// A cursor carries every channel's position, so any worker can serve any poll from
// the hub's history. The cache makes the next poll on the same worker cheap: the
// entry stays subscribed to its channels and keeps what arrived since, so a poll that
// hits it needs no hub round trip and no history read. Entries that no poll touched
// for `session_ttl` are swept; the cache is bounded in entries, in subscriptions (what
// an entry costs the worker and the hub is one subscription per channel) and in
// buffered bytes (least recently used goes first). A first poll, without a cursor,
// creates no entry: it costs nothing until the client comes back.
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/Cursor.h"
#include "gateway/PubSub.h"

namespace dingo {

struct GatewayContext;
class PollCache;

class PollEntry final : public Subscriber, public std::enable_shared_from_this<PollEntry> {
 public:
  struct Channel {
    std::string name;
    Position acked;  // what the client has: it sent this position (or was given it)
    Subscription* sub = nullptr;
    // The position the entry was built from, as the client wrote it (an absent
    // position's epoch is replaced in `acked` by the channel's own): a poll that sends
    // it again is served here too.
    Position requested;
    // The resume from `requested` could not be exact, and the client has not yet come
    // back with a position this entry gave it: every answer says recovered:false, with
    // the channel's current position and none of its messages (see answers(), and
    // acknowledge() for when it ends).
    bool lost = false;
  };
  struct Message {
    size_t channel;  // index into channels
    uint64_t seq;
    std::string json;  // {"channel":C,"position":P,"data":D}
  };

  PollEntry(PollCache& cache, uint64_t session) : cache_(cache), session_(session) {}
  ~PollEntry() override;

  void push(const Delivery& d) override;
  void onGap(std::string_view channel) override;

  uint64_t session() const { return session_; }
  std::vector<Channel>& channels() { return channels_; }
  const std::deque<Message>& log() const { return log_; }
  bool broken() const { return broken_; }
  // Replaced by a newer poll on the same cursor, evicted or swept: a poll still on it
  // answers at once.
  bool retired() const { return retired_; }
  bool ready() const { return pending_ == 0; }

  // True when this entry can serve a poll for `names` from `from` (one position per
  // channel, same order): same channels, same epochs, nothing older than what it has.
  bool canServe(const std::vector<std::string>& names, const std::vector<std::optional<Position>>& from) const;
  // The client has everything up to `from`: drop it from the log.
  void acknowledge(const std::vector<std::optional<Position>>& from);
  // The cursor after everything in the log.
  Cursor cursorAfterLog() const;
  // Whether a poll answer carries `m`. Not when its channel is lost: the answer gives
  // that channel's position after `m`, for the client to refetch its state as of it,
  // and `m` would then come twice (the rule the hub's own answers follow).
  bool answers(const Message& m) const { return !channels_[m.channel].lost; }

  // Building a fresh entry: one hub subscribe per channel (see Polling.cpp).
  void startSubscribe(size_t index, const std::optional<Position>& since);
  // False while any channel is lost.
  bool recovered() const;

  // Held polls wait here (several at once when a client retries, or shares its
  // cursor); push() and the last subscribe result wake them all. Returns a token for
  // removeWaiter.
  uint64_t addWaiter(std::function<void()> wake);
  void removeWaiter(uint64_t token);
  bool held() const { return !waiters_.empty(); }
  int64_t last_used_ms = 0;

 private:
  friend class PollCache;
  void append(size_t channel, uint64_t seq, std::string json);
  void wake();
  void unsubscribeAll();

  PollCache& cache_;
  std::vector<std::pair<uint64_t, std::function<void()>>> waiters_;
  uint64_t next_waiter_ = 1;
  uint64_t session_;
  std::vector<Channel> channels_;
  std::deque<Message> log_;
  size_t bytes_ = 0;
  int pending_ = 0;  // subscribes still waiting for the hub
  bool broken_ = false;  // the log overflowed: the next poll recovers from the hub
  bool retired_ = false;
  size_t counted_channels_ = 0;  // its share of the cache's subscription count
};

class PollCache {
 public:
  explicit PollCache(GatewayContext& ctx) : ctx_(ctx) {}
  ~PollCache();

  std::shared_ptr<PollEntry> find(uint64_t session);
  // A new entry for `session` that will hold `channels` subscriptions (an old one with
  // that id is retired first). Null when the cache is full of entries that polls are
  // holding, so that no room can be made: the poll is refused.
  std::shared_ptr<PollEntry> create(uint64_t session, size_t channels);
  void retire(const std::shared_ptr<PollEntry>& e);
  // Drops entries idle for session_ttl; call it about once a second. Returns how many.
  size_t sweep();
  // The broker is gone: every entry goes (held polls are answered).
  void clear();

  size_t entries() const { return map_.size(); }
  size_t bytes() const { return bytes_; }
  size_t subscriptions() const { return subscriptions_; }  // channels over all cached entries
  uint64_t hits = 0;
  uint64_t misses = 0;
  uint64_t evictions = 0;

 private:
  friend class PollEntry;
  void addBytes(size_t n);
  void subBytes(size_t n) { bytes_ -= n; }
  // Evicts least recently used idle entries until the cache is within its limits with
  // room for `extra_channels` more subscriptions. False when it cannot get there.
  bool evictOverLimits(size_t extra_channels = 0);
  void erase(const std::shared_ptr<PollEntry>& e);

  GatewayContext& ctx_;
  std::unordered_map<uint64_t, std::shared_ptr<PollEntry>> map_;
  size_t bytes_ = 0;
  size_t subscriptions_ = 0;
};

}  // namespace dingo
