#pragma once
// The pub/sub hub: one sequencer for every channel, bounded history, and interest
// tracking per link (a link is one gateway worker, or the gateway itself when
// standalone). Pure logic, single-threaded, no I/O: the supervisor wraps it in the hub
// server, a standalone gateway calls it directly, and unit tests move its clock.
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/Config.h"

namespace dingo {

// A channel position, written EPOCH.SEQ. EPOCH changes whenever the channel's history
// is lost; SEQ counts publishes from 1 (0: nothing published yet).
struct Position {
  std::string epoch;
  uint64_t seq = 0;

  // An epoch is this many characters of [0-9a-z] (Hub::newEpoch makes them).
  static constexpr size_t kEpochLength = 10;

  std::string toString() const;
  // Exactly what toString() writes for a hub's position: EPOCH is kEpochLength characters
  // of [0-9a-z], SEQ is decimal without sign or leading zero that fits 64 bits. nullopt
  // for anything else (an uppercase or shorter epoch names no epoch of ours).
  static std::optional<Position> parse(std::string_view text);
  bool operator==(const Position&) const = default;
};

// Channel names: 1 to 255 bytes of [A-Za-z0-9_.:/-], starting with '/'.
bool validChannel(std::string_view name);

struct StoredMessage {
  uint64_t seq = 0;
  std::shared_ptr<const std::string> data;  // compact JSON text
  int64_t at_ms = 0;                        // when it was published (hub clock)
};

// What a subscribe or a history read answers.
struct Catchup {
  Position position;  // the channel's current position
  bool recovered = false;
  std::vector<StoredMessage> messages;  // in order
};

class Hub {
 public:
  using LinkId = uint32_t;
  // Called once per publish with every link that has subscribers on the channel, so
  // that the caller can encode the message once for all of them.
  using DeliverFn = std::function<void(const std::vector<LinkId>& links, std::string_view channel,
                                       const Position& position, const std::shared_ptr<const std::string>& data)>;
  using ClockFn = std::function<int64_t()>;  // milliseconds, monotonic
  using RandomFn = std::function<uint64_t()>;

  Hub(const HistoryConfig& history, DeliverFn deliver, ClockFn clock = {}, RandomFn random = {});

  // Adds one subscriber of `link` to `channel` and answers, in the same step, what it
  // missed since `since`: every publish after this call is delivered to the link, and
  // every publish before it is in the answer or was already seen, so nothing falls in
  // between. recovered is false (and messages empty) when `since` is from another epoch,
  // ahead of the channel, or older than the history kept. Without `since`, recovered is
  // true and messages is empty.
  Catchup subscribe(LinkId link, std::string_view channel, const std::optional<Position>& since);
  // Removes one subscriber of `link` (no-op when it has none).
  void unsubscribe(LinkId link, std::string_view channel);
  // Assigns the next position, stores the message, delivers it. `data` is compact JSON.
  Position publish(std::string_view channel, std::string data);
  // Up to `limit` messages after `since` (oldest first); without `since`, the newest
  // `limit` messages with recovered false.
  Catchup history(std::string_view channel, const std::optional<Position>& since, size_t limit);
  // The position and the subscribers over all links.
  struct Info {
    Position position;
    uint64_t subscribers = 0;
  };
  Info info(std::string_view channel);
  // The `n` channels with the most subscribers over all links, most first (ties by
  // name); channels with none are left out. One pass over the channels keeping a heap
  // of n: for a status page once a second, never on the message path.
  struct ChannelCount {
    std::string channel;
    uint64_t subscribers = 0;
    bool operator==(const ChannelCount&) const = default;
  };
  std::vector<ChannelCount> topChannels(size_t n) const;
  // A link is gone: forget all its subscribers.
  void dropLink(LinkId link);
  // Trims history past its TTL and forgets channels with neither subscribers nor
  // history (one that had messages only a TTL after its last publish). Call it now and
  // then (the hub server does every second). Returns how many channels it forgot.
  size_t sweep();


  // False when `channel` does not exist and the hub holds max_channels already: a
  // subscribe or publish to it must be refused (info and history still answer, with a
  // position that is not kept).
  bool admits(std::string_view channel) const;

  size_t channels() const { return channels_.size(); }
  static constexpr size_t kAbsentTagSize = 4;
  uint64_t published() const { return published_; }
  uint64_t historyBytes() const { return history_bytes_; }
  uint64_t historyMessages() const { return history_messages_; }

 private:
  // A channel's history. Allocates nothing while empty: most channels of a busy hub
  // have none, and an empty std::deque costs about 600 bytes.
  class History {
   public:
    bool empty() const { return !q_; }
    size_t size() const { return q_ ? q_->size() : 0; }
    const StoredMessage& front() const { return q_->front(); }
    const StoredMessage& operator[](size_t i) const { return (*q_)[i]; }
    void push_back(StoredMessage m) {
      if (!q_) q_ = std::make_unique<std::deque<StoredMessage>>();
      q_->push_back(std::move(m));
    }
    void pop_front() {
      q_->pop_front();
      if (q_->empty()) q_.reset();
    }

   private:
    std::unique_ptr<std::deque<StoredMessage>> q_;
  };

  struct Channel {
    std::string epoch;
    uint64_t seq = 0;
    History history;
    uint64_t bytes = 0;
    std::vector<std::pair<LinkId, uint32_t>> links;  // subscribers per link
    uint64_t subscribers = 0;                         // the sum over `links`
    int64_t born_ms = 0;          // when this life of the channel began
    int64_t last_publish_ms = 0;  // 0: never published
  };
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  using Map = std::unordered_map<std::string, Channel, Hash, std::equal_to<>>;

  Channel& channel(std::string_view name);  // creates it with a fresh epoch
  Channel* find(std::string_view name);
  // Reading a channel that does not exist creates nothing (so reads cannot fill the
  // hub): it answers an "absent" position instead, whose epoch says which hub made it
  // and when. A resume from it is exact when no life of the channel that had messages
  // can have ended since then: the channel was born less than a TTL after it.
  Position absentPosition() const;
  // When an absent position of this hub was made; nullopt for any other position.
  std::optional<int64_t> absentIssuedMs(const Position& p) const;
  // Where a resume from `since` starts in `ch`: `since` itself, or {ch's epoch, 0} for
  // an absent position of this hub that the rule above lets through.
  Position resumePoint(const Channel& ch, const Position& since) const;
  void trim(Channel& ch, int64_t now);
  void popFront(Channel& ch);
  Catchup catchup(Channel& ch, const std::optional<Position>& since, size_t limit);
  std::string newEpoch();
  static std::string base36(uint64_t v, size_t width);
  static uint64_t messageCost(const std::string& data) { return data.size() + 64; }

  HistoryConfig config_;
  DeliverFn deliver_;
  ClockFn clock_;
  RandomFn random_;
  int64_t started_ms_ = 0;
  std::string absent_tag_;  // this hub's mark in absent epochs
  Map channels_;
  std::vector<LinkId> scratch_links_;
  uint64_t published_ = 0;
  uint64_t history_bytes_ = 0;
  uint64_t history_messages_ = 0;
};

}  // namespace dingo
