#pragma once
// The seam between sessions and whatever sequences messages. Sessions code against
// Broker; the local engine is the supervisor's hub over a socket (HubClient) or, in a
// standalone gateway, a hub in the same process (LocalBroker). A Redis engine would be
// a third implementation, with no change to sessions.
//
// Ordering contract, which recovery depends on: results and messages reach the caller
// in the order the broker sequenced them. A subscribe's result arrives after every
// message it covers (those are in `Catchup::messages` or older than `since`) and before
// every later message of that channel is passed to the sink. Callbacks run on the
// gateway's thread, possibly before the call that started them returns (LocalBroker).
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "core/Hub.h"

namespace dingo {

// Where a broker delivers messages for the channels this process subscribed to.
class BrokerSink {
 public:
  virtual ~BrokerSink() = default;
  virtual void onMessage(std::string_view channel, const Position& position, std::string_view data) = 0;
  // The broker cannot serve any more (the supervisor, and its hub, are gone).
  virtual void onBrokerLost(std::string_view why) = 0;
};

class Broker {
 public:
  // On failure `result` is null and `error` says why (the broker is unavailable).
  using CatchupFn = std::function<void(const Catchup* result, std::string_view error)>;
  using PublishFn = std::function<void(const Position* position, std::string_view error)>;
  using InfoFn = std::function<void(const Hub::Info* info, std::string_view error)>;

  virtual ~Broker() = default;
  virtual void setSink(BrokerSink* sink) = 0;
  // One more subscriber here; answers what it missed since `since` (see Hub::subscribe).
  virtual void subscribe(std::string_view channel, const std::optional<Position>& since, CatchupFn done) = 0;
  // One subscriber fewer (for each subscribe that succeeded, or whose result came after
  // its session left).
  virtual void unsubscribe(std::string_view channel) = 0;
  // `data` is compact JSON.
  virtual void publish(std::string_view channel, std::string data, PublishFn done) = 0;
  virtual void history(std::string_view channel, const std::optional<Position>& since, uint32_t limit,
                       CatchupFn done) = 0;
  virtual void info(std::string_view channel, InfoFn done) = 0;
  virtual bool available() const = 0;
  // Housekeeping, called about once a second (history TTL for an in-process hub).
  virtual void sweep() {}
};

}  // namespace dingo
