#pragma once
// A WebSocket subscription that survives whatever happens to the gateway it is on: it
// finds a gateway with the Resolver's race, subscribes every channel from the last
// position it delivered (so a reconnect loses nothing while the hub's history covers the
// gap, and says so with recovered:false when it does not), and on a drop waits as the
// reconnect policy says (Backoff: full jitter, reset only after a stable connection, the
// server's reconnect hint honoured). A silent peer (a black hole) is noticed by a
// keepalive: a ping command every `keepalive`, and no answer within it means dead.
#include <chrono>
#include <functional>
#include <future>
#include <map>
#include <string>
#include <vector>

#include "dingo/nsclient/Backoff.h"
#include "dingo/nsclient/Resolver.h"

namespace dingo::ns {

struct SubscribeOptions {
  std::vector<std::string> channels;
  std::map<std::string, std::string> since;  // channel -> position to resume from
  BackoffPolicy policy;
  std::chrono::milliseconds keepalive{15000};
  size_t max_message_bytes = 16 << 20;
};

// What the subscriber tells its caller.
struct SubscriberEvent {
  enum class Kind {
    Connected,     // endpoint, rtt_ms
    Subscribed,    // channel, position, recovered
    Message,       // channel, position, data (compact JSON)
    Disconnected,  // reason
    Waiting,       // delay_ms before the next attempt, reason
    Refreshed,     // the node list was refreshed in the background: recovered = ok, reason = what
  };
  Kind kind;
  std::string endpoint;
  double rtt_ms = 0;
  std::string channel;
  std::string position;
  bool recovered = true;
  std::string data;
  std::string reason;
  int64_t delay_ms = 0;
};

class Subscriber {
 public:
  // `on_event` returns false to stop.
  using Handler = std::function<bool(const SubscriberEvent&)>;

  Subscriber(Resolver& resolver, SubscribeOptions options);

  // Runs until the handler returns false or `stop()`; returns 0 then. Never gives up on
  // its own: a run without a gateway waits and retries forever, as a client should.
  int run(const Handler& on_event);
  void stop() { stopping_ = true; }

  const std::map<std::string, std::string>& positions() const { return positions_; }

 private:
  enum class End { Stopped, Dropped, Hinted, Failed };
  End session(Connection& c, const Handler& on_event, std::string& reason, int64_t& hint_ms);
  // Refreshes the node list in the background (its own Resolver, so its own SQLite
  // connection) when nextRefreshAt() has passed and none is running.
  void refreshWhenDue(const Handler& on_event);

  Resolver& resolver_;
  SubscribeOptions options_;
  Backoff backoff_;
  std::map<std::string, std::string> positions_;
  std::future<RefreshResult> refreshing_;
  int64_t next_refresh_check_ = 0;  // unix seconds
  volatile bool stopping_ = false;
};

}  // namespace dingo::ns
