#pragma once
// What a WebSocket client's commands do (SPEC section 3, docs/protocol.md): subscribe,
// unsubscribe, publish, auth, refresh and ping, with the command rate limit, and who the
// client is: its identity, the deadline to prove it by, its token's expiry. Replies and
// events go out as text through the connection; this class knows nothing of frames,
// sockets or the close handshake (WsSession.cpp does those). Parsing one command is
// WsCommand.h.
//
// No Asio or Beast here: unit tests drive it with a fake connection and a fake broker.
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/Liveness.h"
#include "gateway/Auth.h"
#include "gateway/Context.h"
#include "gateway/PubSub.h"
#include "gateway/UserRegistry.h"

namespace dingo {

struct WsCommand;

// What the command handler needs of its connection (WsSession implements it). The
// connection is also what its subscriptions deliver to (one base, one pointer per
// connection: there may be a million of them).
class WsConnection : public Subscriber {
 public:
  // Queues one text frame.
  virtual void sendText(std::string_view text) = 0;
  // Queues our close frame (once; later calls do nothing).
  virtual void startClose(uint16_t code, std::string_view reason) = 0;
  // startClose, and nothing more the client sends is read: it broke the protocol.
  virtual void closeUnread(uint16_t code, std::string_view reason) = 0;
  // Our close frame is queued, or the connection stopped: nothing new may start.
  virtual bool closing() const = 0;
  // A deadline of the handler's (tokenDeadlineMs) moved.
  virtual void deadlinesChanged() = 0;
};

class WsCommandHandler final : public UserSession {
 public:
  // A client may send this many times commands_per_second at once (the bucket's size).
  static constexpr double kCommandBurstFactor = 2.0;
  // A client that goes on sending after this many refusals in a row is not a client
  // that backs off: it is closed with 1008.
  static constexpr uint32_t kMaxRefusedInRow = 1000;

  // With auth required, the client must prove who it is within the handshake timeout
  // from `now_ms`.
  WsCommandHandler(GatewayContext& ctx, WsConnection& connection, int64_t now_ms);
  WsCommandHandler(const WsCommandHandler&) = delete;
  WsCommandHandler& operator=(const WsCommandHandler&) = delete;

  // The upgrade request's ?token=: an auth command made in advance (ignored when empty
  // or when auth is off).
  void authenticateWith(std::string_view url_token);
  // One text message from the client.
  void onCommand(std::string_view text);

  // Has subscriptions, or subscribes on their way.
  bool subscribed() const { return !subs_.empty() || !pending_.empty(); }
  // The earliest of the auth deadline, the token_expiring notice and the token's end, in
  // steady milliseconds; 0 when none.
  int64_t tokenDeadlineMs() const;
  // Acts on the token deadlines that have passed by `now_ms` (steady).
  void checkTokenDeadlines(int64_t now_ms);

  // The end: every subscription goes (pending ones tell the hub when their results come),
  // and the identity leaves the user registry.
  void dropSubscriptions();
  void forgetIdentity();

  // UserSession: an operator disconnected the user.
  void disconnectUser(std::string_view reason) override;

 private:
  bool takeToken();
  std::string channelOf(const std::string& id, const WsCommand& cmd);
  Subscription* findSubscription(std::string_view channel);
  void subscribe(const std::string& id, const WsCommand& cmd);
  void onSubscribed(uint64_t token, const std::string& id, const std::string& channel, bool with_since,
                    const Catchup* c, std::string_view error);
  void unsubscribe(const std::string& id, const WsCommand& cmd);
  void publish(const std::string& id, const WsCommand& cmd);

  bool authOn() const { return ctx_.auth && ctx_.auth->enabled(); }
  // Auth is required and this connection has not proved who it is yet.
  bool authRequired() const { return authOn() && ctx_.auth->required() && who_.anonymous(); }
  bool permitted(const std::string& id, Right right, const std::string& channel);
  void authCommand(const std::string& id, const WsCommand& cmd, bool refresh);
  void applyToken(const std::string& id, std::string_view token, bool refresh);
  void dropWhatIsNoLongerAllowed(const Identity& next);
  void setIdentity(Identity next);

  void replyOk(const std::string& id);
  void replyError(const std::string& id, std::string_view code, std::string_view message);

  GatewayContext& ctx_;
  WsConnection& connection_;
  Liveness life_;  // broker callbacks watch it: "is the handler still here?"

  std::vector<Subscription*> subs_;
  std::vector<std::pair<uint64_t, std::string>> pending_;  // subscribes awaiting the broker
  uint64_t next_token_ = 1;

  Identity who_;                  // anonymous until a token proves otherwise
  int64_t auth_deadline_ms_ = 0;  // auth required: the handshake deadline to prove it by
  int64_t token_notice_ms_ = 0;   // when token_expiring goes out
  int64_t token_end_ms_ = 0;      // the token's exp plus the leeway: close with 4001

  double tokens_ = 0;            // the command rate limit's bucket
  uint32_t refused_in_row_ = 0;  // rate-limit refusals since the last accepted command
  int64_t last_refill_ms_ = 0;
};

}  // namespace dingo
