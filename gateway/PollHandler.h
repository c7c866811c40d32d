#pragma once
// GET /v1/poll, the long-poll endpoint (docs/protocol.md): answers at once with what a
// cursor has missed, or holds the request until a message comes, the poll times out, the
// token expires, the worker drains or an operator disconnects the user. The cache of
// poll sessions it serves from is Polling.h; parsing the request is StreamRequest.h.
//
// One PollHandler per HTTP connection (a member of HttpSession); it is the connection's
// UserSession while a poll is held. Included by HttpSession.cpp only (Asio).
#include <cstdint>
#include <string>
#include <string_view>

#include "core/Asio.h"
#include "core/Duration.h"
#include "gateway/Context.h"
#include "gateway/HttpReply.h"
#include "gateway/HttpRequest.h"
#include "gateway/UserRegistry.h"

namespace dingo {

class PollEntry;
struct StreamRequest;

// What a poll needs of the connection it runs on (HttpSession implements it).
class PollConnection {
 public:
  // From here the poll's own waits bound the request (hub_timeout, the hold).
  virtual void clearDeadline() = 0;
  // The poll is about to be held: give back the read buffer unless a pipelined request
  // is in it.
  virtual void releaseReadBuffer() = 0;

 protected:
  ~PollConnection() = default;
};

class PollHandler final : public UserSession {
 public:
  PollHandler() = default;
  PollHandler(const PollHandler&) = delete;
  PollHandler& operator=(const PollHandler&) = delete;

  // Answers one GET /v1/poll (405 for other methods) into `r`.
  asio::awaitable<void> serve(GatewayContext& ctx, PollConnection& connection, const HttpRequest& req, Reply& r);

  // The worker drains: a held poll answers at once.
  void wake();
  // An operator disconnected the user: a held poll answers 403 at once.
  void disconnectUser(std::string_view reason) override;

 private:
  asio::awaitable<void> waitFor(PollEntry& e, Duration timeout);
  asio::awaitable<void> firstPoll(GatewayContext& ctx, const StreamRequest& sr, Reply& r);
  void answerUnchanged(GatewayContext& ctx, uint64_t session, const StreamRequest& sr, Reply& r);

  asio::steady_timer* hold_timer_ = nullptr;  // while waiting
  std::string disconnected_;                  // an operator disconnected the held poll's user: why
};

}  // namespace dingo
