#include "gateway/PollHandler.h"

#include <fmt/format.h>

#include <algorithm>
#include <deque>
#include <memory>
#include <vector>

#include "core/Cursor.h"
#include "core/Hub.h"
#include "core/Jwt.h"
#include "gateway/Auth.h"
#include "gateway/Broker.h"
#include "gateway/HttpAccess.h"
#include "gateway/Polling.h"
#include "gateway/StreamRequest.h"

namespace dingo {

namespace {

using asio::redirect_error;
using asio::use_awaitable;

// A held poll's place among its user's connections, for dingoctl disconnect.
class HeldAs {
 public:
  HeldAs(GatewayContext& ctx, const Identity& who, UserSession* s) : ctx_(ctx), who_(who), session_(s) {
    if (who_.anonymous()) return;
    ++ctx_.counters.authenticated;
    if (!who_.user().empty()) ctx_.users->add(who_.user(), session_);
  }
  ~HeldAs() {
    if (who_.anonymous()) return;
    --ctx_.counters.authenticated;
    if (!who_.user().empty()) ctx_.users->remove(who_.user(), session_);
  }
  HeldAs(const HeldAs&) = delete;
  HeldAs& operator=(const HeldAs&) = delete;

 private:
  GatewayContext& ctx_;
  const Identity& who_;
  UserSession* session_;
};

// {"cursor":K,"recovered":B,"messages":[M...],"positions":{C:POS...}}; the messages are
// those `e` answers (none without an entry: a first poll, or one whose entry was replaced).
void pollAnswer(const GatewayContext& ctx, const Cursor& next, bool recovered, const PollEntry* e, Reply& r) {
  std::string& out = r.body;
  fmt::format_to(std::back_inserter(out), R"({{"cursor":"{}","recovered":{},"messages":[)",
                 ctx.cursors->encode(next), recovered);
  bool first = true;
  if (e) {
    for (const PollEntry::Message& m : e->log()) {
      if (!e->answers(m)) continue;
      if (!first) out += ',';
      first = false;
      out += m.json;
    }
  }
  out += R"(],"positions":{)";
  for (size_t i = 0; i < next.positions.size(); ++i)
    fmt::format_to(std::back_inserter(out), R"({}"{}":"{}")", i ? "," : "", next.positions[i].first,
                   next.positions[i].second.toString());
  out += "}}";
  r.extra_headers = "Cache-Control: no-store\r\n";
}

}  // namespace

void PollHandler::wake() {
  if (hold_timer_) hold_timer_->cancel();
}

void PollHandler::disconnectUser(std::string_view reason) {
  disconnected_ = reason.empty() ? "disconnected by an operator" : std::string(reason);
  if (hold_timer_) hold_timer_->cancel();
}

// Waits until `e` wakes us (a message, the hub's results) or `timeout` passes, or the
// worker drains.
asio::awaitable<void> PollHandler::waitFor(PollEntry& e, Duration timeout) {
  auto executor = co_await asio::this_coro::executor;
  asio::steady_timer timer(executor, timeout);
  hold_timer_ = &timer;
  uint64_t token = e.addWaiter([&timer] { timer.cancel(); });
  boost::system::error_code ec;
  co_await timer.async_wait(redirect_error(use_awaitable, ec));
  e.removeWaiter(token);
  hold_timer_ = nullptr;
}

// A cursor's session names the cache entry that served it last; when this worker has it
// and it can serve the cursor, the answer needs nothing from the hub. Otherwise a fresh
// entry subscribes from the cursor's positions, and the hub's history fills it.
asio::awaitable<void> PollHandler::serve(GatewayContext& ctx, PollConnection& connection, const HttpRequest& req,
                                         Reply& r) {
  if (req.method != HttpMethod::Get) {
    r.extra_headers = "Allow: GET\r\n";
    setError(r, 405, "bad_request", "/v1/poll answers GET");
    co_return;
  }
  StreamRequest sr;
  if (!parseStreamRequest(req.query, {}, ctx, sr, r)) co_return;
  // Checked on every poll: a cursor carries positions, never rights.
  Identity who;
  if (!identify(ctx, req, who, r) || !allowedAll(ctx, who, Right::Subscribe, sr.channels, r)) co_return;
  if (!ctx.broker || !ctx.broker->available()) {
    setUnavailable(r, "pub/sub is unavailable");
    co_return;
  }
  connection.clearDeadline();  // the hub answers within hub_timeout, or the poll fails
  if (!sr.resuming) {
    co_await firstPoll(ctx, sr, r);
    co_return;
  }
  PollCache& cache = *ctx.polls;
  uint64_t session = sr.cursor ? sr.cursor->session : newCursorSession();
  std::shared_ptr<PollEntry> e = sr.cursor ? cache.find(session) : nullptr;
  // Another poll on this cursor is building its entry (the client retried, or shares
  // the cursor): wait for it instead of replacing it under that poll.
  while (e && !e->ready() && !e->retired()) co_await waitFor(*e, ctx.config.gateway.write_timeout);
  if (e && e->canServe(sr.channels, sr.from)) {
    ++ctx.counters.poll_cache_hits;
    e->acknowledge(sr.from);
  } else {
    ++ctx.counters.poll_cache_misses;
    e = cache.create(session, sr.channels.size());
    if (!e) {
      setUnavailable(r, "every long-poll session of this worker is in use");
      co_return;
    }
    for (size_t i = 0; i < sr.channels.size(); ++i) {
      Position from = sr.from[i].value_or(Position{});
      e->channels().push_back({sr.channels[i], from, nullptr, from});
    }
    for (size_t i = 0; i < sr.channels.size(); ++i) e->startSubscribe(i, sr.from[i]);
    while (!e->ready() && !e->retired()) co_await waitFor(*e, ctx.config.gateway.write_timeout);
    if (!e->ready()) {
      // A newer poll on the same cursor replaced this entry before the hub answered
      // (the client retried): this one answers with nothing new, so the client is
      // exactly where it was.
      answerUnchanged(ctx, session, sr, r);
      co_return;
    }
    if (e->broken()) {
      cache.retire(e);
      setUnavailable(r, "pub/sub is unavailable");
      co_return;
    }
  }
  // Nothing to say yet: hold, unless this is a resume that failed (the client must
  // hear it now), or the worker is draining.
  if (e->log().empty() && e->recovered() && !ctx.draining) {
    if (streamsFull(ctx)) {
      setUnavailable(r, fmt::format("this worker holds max_streams ({}) polls and event streams",
                                    ctx.config.gateway.max_streams));
      co_return;
    }
    connection.releaseReadBuffer();
    ++ctx.counters.held_polls;
    connection.clearDeadline();
    e->last_used_ms = steadyNowMs();
    // A poll is held no longer than its token is valid: the next one brings a new token.
    Duration hold = ctx.config.gateway.poll_timeout;
    if (!who.anonymous())
      hold = std::min(hold, Duration(std::max<int64_t>(0, ctx.auth->validUntilMs(who) - unixNowMs())));
    disconnected_.clear();
    HeldAs held(ctx, who, this);
    co_await waitFor(*e, hold);
    --ctx.counters.held_polls;
    if (!disconnected_.empty()) {
      setError(r, 403, "forbidden", disconnected_);
      co_return;
    }
  }
  ++ctx.counters.polls;
  e->last_used_ms = steadyNowMs();
  pollAnswer(ctx, e->cursorAfterLog(), e->recovered(), e.get(), r);
  if (ctx.config.gateway.session_cache_entries == 0) cache.retire(e);
}

// A poll without a cursor: the channels' current positions, at once, and no cache entry
// (a client that never comes back costs nothing; one that does resumes from these
// positions through the hub's history).
asio::awaitable<void> PollHandler::firstPoll(GatewayContext& ctx, const StreamRequest& sr, Reply& r) {
  const std::vector<std::string>& channels = sr.channels;
  auto executor = co_await asio::this_coro::executor;
  asio::steady_timer timer(executor, asio::steady_timer::time_point::max());
  struct Wait {
    std::vector<Position> positions;
    size_t left = 0;
    std::string error;
    asio::steady_timer* timer = nullptr;
  };
  auto w = std::make_shared<Wait>();
  w->positions.resize(channels.size());
  w->left = channels.size();
  w->timer = &timer;
  for (size_t i = 0; i < channels.size(); ++i) {
    ctx.broker->info(channels[i], [w, i](const Hub::Info* info, std::string_view err) {
      if (info) w->positions[i] = info->position;
      else if (w->error.empty()) w->error.assign(err);
      if (--w->left == 0 && w->timer) w->timer->cancel();
    });
  }
  if (w->left > 0) {
    boost::system::error_code ec;
    co_await timer.async_wait(redirect_error(use_awaitable, ec));
  }
  w->timer = nullptr;
  if (!w->error.empty()) {
    setUnavailable(r, w->error);
    co_return;
  }
  Cursor c;
  c.session = newCursorSession();
  for (size_t i = 0; i < channels.size(); ++i) c.positions.emplace_back(channels[i], std::move(w->positions[i]));
  ++ctx.counters.polls;
  pollAnswer(ctx, c, true, nullptr, r);
}

// The answer to a poll whose cache entry was replaced before it could be served:
// nothing new, the client's own positions back.
void PollHandler::answerUnchanged(GatewayContext& ctx, uint64_t session, const StreamRequest& sr, Reply& r) {
  Cursor c;
  c.session = session;
  for (size_t i = 0; i < sr.channels.size(); ++i) {
    if (!sr.from[i]) {
      setUnavailable(r, "a newer poll on the same cursor took over");
      return;
    }
    c.positions.emplace_back(sr.channels[i], *sr.from[i]);
  }
  ++ctx.counters.polls;
  pollAnswer(ctx, c, true, nullptr, r);
}

}  // namespace dingo
