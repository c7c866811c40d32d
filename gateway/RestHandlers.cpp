#include "gateway/RestHandlers.h"

#include <fmt/format.h>

#include <charconv>
#include <optional>
#include <string>

#include "core/Hub.h"
#include "core/Json.h"
#include "gateway/Broker.h"
#include "gateway/HttpAccess.h"
#include "gateway/HttpQuery.h"
#include "gateway/PubSub.h"

namespace dingo {

namespace {

using asio::redirect_error;
using asio::use_awaitable;

// Waits for a broker callback. The broker always calls back (with an error when it
// goes away), and the result resumes this coroutine from the event loop, not from
// inside the broker.
template <typename T, typename Start>
asio::awaitable<std::pair<std::optional<T>, std::string>> awaitBroker(Start start) {
  auto executor = co_await asio::this_coro::executor;
  asio::steady_timer timer(executor, asio::steady_timer::time_point::max());
  std::optional<T> value;
  std::string error_text;
  bool done = false;
  start([&](const T* v, std::string_view err) {
    if (v) value = *v;
    else error_text.assign(err);
    done = true;
    timer.cancel();
  });
  if (!done) {
    boost::system::error_code ec;
    co_await timer.async_wait(redirect_error(use_awaitable, ec));
  }
  co_return std::make_pair(std::move(value), std::move(error_text));
}

// {"channel":C,"position":P,"recovered":B,"messages":[M...]}
void catchupJson(std::string& out, std::string_view channel, const Catchup& c) {
  fmt::format_to(std::back_inserter(out), R"({{"channel":"{}","position":"{}","recovered":{},"messages":[)", channel,
                 c.position.toString(), c.recovered);
  for (size_t i = 0; i < c.messages.size(); ++i) {
    if (i) out += ',';
    appendMessageJson(out, channel, {c.position.epoch, c.messages[i].seq}, *c.messages[i].data);
  }
  out += "]}";
}

// POST /v1/publish/{channel}: the body is the message, any JSON value.
asio::awaitable<void> publish(GatewayContext& ctx, const HttpRequest& req, const std::string& channel, Reply& r) {
  std::string_view why;
  auto compact = compactJson(req.body, kMaxJsonDepth, why);
  if (!compact) {
    setError(r, 400, "bad_request",
             fmt::format("the body must be a JSON value nested at most {} deep: {}", kMaxJsonDepth, why));
    co_return;
  }
  std::string data = std::move(*compact);
  if (data.size() > ctx.config.gateway.max_message_size) {
    setError(r, 413, "too_large", fmt::format("a message is at most {} bytes", ctx.config.gateway.max_message_size));
    co_return;
  }
  ++ctx.counters.published;
  Broker* broker = ctx.broker;
  auto [pos, err] = co_await awaitBroker<Position>(
      [&](auto done) { broker->publish(channel, std::move(data), std::move(done)); });
  if (!pos) setUnavailable(r, err);
  else r.body = fmt::format(R"({{"channel":"{}","position":"{}"}})", channel, pos->toString());
}

// GET /v1/history/{channel}?since=POS&limit=N
asio::awaitable<void> history(GatewayContext& ctx, const HttpRequest& req, const std::string& channel, Reply& r) {
  bool bad = false;
  auto since_text = queryParam(req.query, "since", bad);
  auto limit_text = queryParam(req.query, "limit", bad);
  std::optional<Position> since;
  if (since_text && !since_text->empty()) {
    since = Position::parse(*since_text);
    bad = bad || !since;
  }
  uint32_t limit = ctx.config.history.size;
  if (limit_text) {
    auto [p, e] = std::from_chars(limit_text->data(), limit_text->data() + limit_text->size(), limit);
    bad = bad || e != std::errc() || p != limit_text->data() + limit_text->size() || limit == 0;
  }
  if (bad) {
    setError(r, 400, "bad_request", "since must be a position (EPOCH.SEQ) and limit a positive integer");
    co_return;
  }
  Broker* broker = ctx.broker;
  auto [c, err] =
      co_await awaitBroker<Catchup>([&](auto done) { broker->history(channel, since, limit, std::move(done)); });
  if (!c) setUnavailable(r, err);
  else catchupJson(r.body, channel, *c);
}

// GET /v1/channels/{channel}: {"channel":C,"position":P,"subscribers":N}
asio::awaitable<void> channelInfo(GatewayContext& ctx, const std::string& channel, Reply& r) {
  Broker* broker = ctx.broker;
  auto [info, err] = co_await awaitBroker<Hub::Info>([&](auto done) { broker->info(channel, std::move(done)); });
  if (!info) setUnavailable(r, err);
  else
    r.body = fmt::format(R"({{"channel":"{}","position":"{}","subscribers":{}}})", channel, info->position.toString(),
                         info->subscribers);
}

}  // namespace

void serveHealthz(GatewayContext& ctx, const HttpRequest& req, Reply& r) {
  if (!req.getOrHead()) {
    r.extra_headers = "Allow: GET, HEAD\r\n";
    setError(r, 405, "bad_request", "/healthz answers GET and HEAD");
    return;
  }
  r.body = fmt::format(R"({{"status":"ok","pid":{},"worker":{}}})", ctx.pid, ctx.worker_id);
}

void setNotFound(Reply& r, std::string_view path) {
  setError(r, 404, "not_found", fmt::format("no resource at {}", path.substr(0, 200)));
}

asio::awaitable<void> servePubSubRest(GatewayContext& ctx, const HttpRequest& req, const RouteMatch& match,
                                      Reply& r) {
  bool publishing = match.route == Route::Publish;
  if (publishing ? req.method != HttpMethod::Post : !req.getOrHead()) {
    r.extra_headers = publishing ? "Allow: POST\r\n" : "Allow: GET, HEAD\r\n";
    setError(r, 405, "bad_request", fmt::format("{} answers {}", routePrefix(match.route), publishing ? "POST" : "GET"));
    co_return;
  }
  auto decoded = percentDecode(match.channel, false);
  std::string channel = "/" + decoded.value_or("");
  if (!decoded || !validChannel(channel)) {
    setError(r, 400, "bad_request", "a channel is 1 to 255 characters of [A-Za-z0-9_.:/-] starting with /");
    co_return;
  }
  if (!restAllowed(ctx, req, publishing ? Right::Publish : Right::Subscribe, channel, r)) co_return;
  if (!ctx.broker || !ctx.broker->available()) {
    setUnavailable(r, "pub/sub is unavailable");
    co_return;
  }
  if (publishing) co_await publish(ctx, req, channel, r);
  else if (match.route == Route::History) co_await history(ctx, req, channel, r);
  else co_await channelInfo(ctx, channel, r);
}

}  // namespace dingo
