#pragma once
// This worker's side of pub/sub: which local sessions watch which channel, and the
// fan-out of each message the broker delivers. A message becomes one WebSocket frame,
// built once and shared by every subscriber of this worker (no copy per subscriber).
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "gateway/Broker.h"

namespace dingo {

struct GatewayContext;

// A complete, unmasked server frame, ready to send (plain) or to encrypt (TLS).
using SharedFrame = std::shared_ptr<const std::string>;

// One message on its way to local subscribers. Views are valid during push() only.
struct Delivery {
  std::string_view channel;
  const Position& position;
  std::string_view data;        // compact JSON
  std::string_view message;     // {"channel":C,"position":P,"data":D}
  const SharedFrame& ws_frame;  // {"event":"message",...} as a WebSocket frame
};

class Subscriber {
 public:
  virtual ~Subscriber() = default;
  virtual void push(const Delivery& d) = 0;
  // A message of `channel` did not follow the last one this subscriber got (a message
  // lost between hosts, a bus that lost its history and numbers anew). Nothing more of
  // the channel reaches it; it must make its client resume from the position it has
  // (exactly, or with recovered:false): the existing reconnect path.
  virtual void onGap(std::string_view channel) = 0;
};

struct LocalChannel;

struct Subscription {
  LocalChannel* channel = nullptr;
  Subscriber* owner = nullptr;
  uint32_t index = 0;  // in channel->subs, for O(1) removal
  Position last;       // the last message it got (from its catch-up, then live)
  bool broken = false; // a gap: it takes no more messages
};

struct LocalChannel {
  std::string name;
  std::vector<Subscription*> subs;
  bool detached = false;  // subscribed through a broker that was lost
};

// {"channel":C,"position":P,"data":D} (D is compact JSON already).
void appendMessageJson(std::string& out, std::string_view channel, const Position& position, std::string_view data);

class ChannelTable final : public BrokerSink {
 public:
  explicit ChannelTable(GatewayContext& ctx) : ctx_(ctx) {}
  ~ChannelTable() override;

  // Starts delivering `channel` to `s` after `from` (the subscribe result's position):
  // call it from the broker's subscribe result, which is what keeps the seam between
  // recovered and live messages exact. Each subscription then gets each message once,
  // in order: one it had already is skipped, one that does not follow is a gap.
  Subscription* add(std::string_view channel, Subscriber* s, const Position& from);
  // Stops, and tells the broker (if it is still there).
  void remove(Subscription* sub);
  size_t channels() const { return channels_.size(); }

  void onMessage(std::string_view channel, const Position& position, std::string_view data) override;
  // Every channel is detached: its subscribers (told to reconnect) leave it later
  // without telling a broker, and take no messages from the next broker (a re-attached
  // worker's new hub), whose subscriptions start afresh.
  void onBrokerLost(std::string_view why) override;

  enum class Continuity { Next, Seen, Gap };
  static Continuity continuity(const Position& last, const Position& next);

 private:
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  GatewayContext& ctx_;
  std::unordered_map<std::string, std::unique_ptr<LocalChannel>, Hash, std::equal_to<>> channels_;
  std::unordered_map<LocalChannel*, std::unique_ptr<LocalChannel>> detached_;
  std::string message_;
  std::vector<Subscriber*> gapped_;  // onMessage's subscribers to tell of a gap; reused
};

}  // namespace dingo
