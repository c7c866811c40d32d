#include "gateway/WsCommandHandler.h"

#include <fmt/format.h>

#include <algorithm>
#include <optional>
#include <random>

#include "core/Hub.h"
#include "core/Json.h"
#include "core/Jwt.h"
#include "core/Log.h"
#include "core/WebSocket.h"
#include "gateway/Broker.h"
#include "gateway/WsCommand.h"

namespace dingo {

namespace {

const char* channelRule() {
  return "a channel is 1 to 255 characters of [A-Za-z0-9_.:/-] starting with /";
}

}  // namespace

WsCommandHandler::WsCommandHandler(GatewayContext& ctx, WsConnection& connection, int64_t now_ms)
    : ctx_(ctx),
      connection_(connection) {
  tokens_ = kCommandBurstFactor * ctx_.config.gateway.commands_per_second;
  last_refill_ms_ = now_ms;
  // Who has not proved who they are within the handshake deadline is put out.
  if (authRequired()) auth_deadline_ms_ = now_ms + ctx_.config.gateway.handshake_timeout.count();
}

void WsCommandHandler::authenticateWith(std::string_view url_token) {
  if (!url_token.empty() && authOn()) applyToken("null", url_token, /*refresh=*/false);
}

void WsCommandHandler::disconnectUser(std::string_view reason) {
  // A close reason is at most 123 bytes (RFC 6455 5.5); the operator's text is ASCII.
  connection_.startClose(ws::kDisconnected, reason.empty() ? "disconnected by an operator" : reason.substr(0, 123));
}

// ---- commands -------------------------------------------------------------------------

void WsCommandHandler::onCommand(std::string_view text) {
  ++ctx_.counters.ws_commands;
  std::string_view why;
  std::optional<WsCommand> cmd = parseWsCommand(text, why);
  // The id first, so that every reply (the rate limit's too) can echo it.
  std::string id = cmd && cmd->id_has == WsCommand::Has::Yes ? cmd->id : "null";
  // Every command counts against the rate, malformed ones too: a flood of garbage
  // costs its sender the same as a flood of pings.
  if (!takeToken()) {
    ++ctx_.counters.rate_limited;
    if (++refused_in_row_ > kMaxRefusedInRow) {
      connection_.closeUnread(ws::kPolicyViolation, "command rate exceeded");
      return;
    }
    replyError(id, "limit", fmt::format("more than {} commands per second", ctx_.config.gateway.commands_per_second));
    return;
  }
  refused_in_row_ = 0;
  if (!cmd) {
    replyError("null", "bad_request",
               fmt::format("a command is a JSON object nested at most {} deep ({})", kMaxJsonDepth, why));
    return;
  }
  if (cmd->id_has == WsCommand::Has::WrongType) {
    replyError("null", "bad_request", "id must be a number or a string");
    return;
  }
  if (cmd->op_has != WsCommand::Has::Yes) {
    replyError(id, "bad_request", "op is missing (subscribe, unsubscribe, publish or ping)");
    return;
  }
  const std::string& name = cmd->op;
  if (authRequired() && name != "auth" && name != "refresh" && name != "ping") {
    replyError(id, "unauthorized", R"(authenticate first: {"op":"auth","token":JWT})");
    connection_.startClose(ws::kUnauthorized, "unauthorized");
    return;
  }
  if (name == "auth" || name == "refresh") authCommand(id, *cmd, name == "refresh");
  else if (name == "subscribe") subscribe(id, *cmd);
  else if (name == "unsubscribe") unsubscribe(id, *cmd);
  else if (name == "publish") publish(id, *cmd);
  else if (name == "ping") replyOk(id);
  else replyError(id, "bad_request", fmt::format("unknown op '{}'", jsonEscape(name.substr(0, 64))));
}

bool WsCommandHandler::takeToken() {
  int64_t now = steadyNowMs();
  double rate = ctx_.config.gateway.commands_per_second;
  tokens_ =
      std::min(kCommandBurstFactor * rate, tokens_ + static_cast<double>(now - last_refill_ms_) * rate / 1000.0);
  last_refill_ms_ = now;
  if (tokens_ < 1.0) return false;
  tokens_ -= 1.0;
  return true;
}

// The channel field, validated; empty (and an error sent) when bad.
std::string WsCommandHandler::channelOf(const std::string& id, const WsCommand& cmd) {
  if (cmd.channel_has != WsCommand::Has::Yes || !validChannel(cmd.channel)) {
    replyError(id, "bad_request", channelRule());
    return {};
  }
  return cmd.channel;
}

Subscription* WsCommandHandler::findSubscription(std::string_view channel) {
  for (Subscription* s : subs_)
    if (s->channel->name == channel) return s;
  return nullptr;
}

void WsCommandHandler::subscribe(const std::string& id, const WsCommand& cmd) {
  std::string channel = channelOf(id, cmd);
  if (channel.empty()) return;
  if (!permitted(id, Right::Subscribe, channel)) return;
  std::optional<Position> since;
  if (cmd.since_has != WsCommand::Has::No) {
    if (cmd.since_has == WsCommand::Has::Yes) since = Position::parse(cmd.since);
    if (!since) {
      replyError(id, "bad_request", "since must be a position, EPOCH.SEQ");
      return;
    }
  }
  bool pending = std::any_of(pending_.begin(), pending_.end(), [&](const auto& p) { return p.second == channel; });
  if (pending || findSubscription(channel)) {
    replyError(id, "bad_request", fmt::format("already subscribed to {}", channel));
    return;
  }
  if (subs_.size() + pending_.size() >= ctx_.config.gateway.max_channels) {
    replyError(id, "limit", fmt::format("at most {} channels per connection", ctx_.config.gateway.max_channels));
    return;
  }
  if (!ctx_.broker || !ctx_.broker->available()) {
    replyError(id, "unavailable", "pub/sub is unavailable");
    return;
  }
  uint64_t token = next_token_++;
  pending_.emplace_back(token, channel);
  bool with_since = since.has_value();
  GatewayContext* ctx = &ctx_;
  ctx_.broker->subscribe(channel, since,
                         [this, ctx, life = life_.watch(), token, id, channel, with_since](
                             const Catchup* c, std::string_view error) {
                           if (life.expired()) {
                             // The session left first; the hub counted the subscriber.
                             if (c && ctx->broker) ctx->broker->unsubscribe(channel);
                             return;
                           }
                           onSubscribed(token, id, channel, with_since, c, error);
                         });
}

void WsCommandHandler::onSubscribed(uint64_t token, const std::string& id, const std::string& channel,
                                    bool with_since, const Catchup* c, std::string_view error) {
  auto it = std::find_if(pending_.begin(), pending_.end(), [&](const auto& p) { return p.first == token; });
  bool wanted = it != pending_.end();
  if (wanted) pending_.erase(it);
  if (!c) {
    replyError(id, "unavailable", error);
    return;
  }
  if (wanted && !connection_.closing()) {
    subs_.push_back(ctx_.channels->add(channel, &connection_, c->position));
  } else if (ctx_.broker) {
    ctx_.broker->unsubscribe(channel);  // unsubscribed (or closing) meanwhile
  }
  if (with_since) ++(c->recovered ? ctx_.counters.recovered : ctx_.counters.not_recovered);
  std::string out;
  fmt::format_to(std::back_inserter(out), R"({{"id":{},"ok":true,"position":"{}","recovered":{},"messages":[)", id,
                 c->position.toString(), c->recovered);
  for (size_t i = 0; i < c->messages.size(); ++i) {
    if (i) out += ',';
    appendMessageJson(out, channel, {c->position.epoch, c->messages[i].seq}, *c->messages[i].data);
  }
  out += "]}";
  connection_.sendText(out);
}

void WsCommandHandler::unsubscribe(const std::string& id, const WsCommand& cmd) {
  std::string channel = channelOf(id, cmd);
  if (channel.empty()) return;
  if (Subscription* s = findSubscription(channel)) {
    subs_.erase(std::find(subs_.begin(), subs_.end(), s));
    ctx_.channels->remove(s);
  } else {
    // Still on its way: its result will find it gone and tell the hub.
    std::erase_if(pending_, [&](const auto& p) { return p.second == channel; });
  }
  replyOk(id);
}

void WsCommandHandler::publish(const std::string& id, const WsCommand& cmd) {
  if (!ctx_.config.gateway.client_publish) {
    replyError(id, "forbidden", "publishing over WebSocket is disabled ([gateway] client_publish)");
    return;
  }
  std::string channel = channelOf(id, cmd);
  if (channel.empty()) return;
  if (!permitted(id, Right::Publish, channel)) return;
  if (cmd.data_has != WsCommand::Has::Yes) {
    replyError(id, "bad_request", "publish needs data (any JSON value)");
    return;
  }
  if (!ctx_.broker || !ctx_.broker->available()) {
    replyError(id, "unavailable", "pub/sub is unavailable");
    return;
  }
  ++ctx_.counters.published;
  ctx_.broker->publish(channel, cmd.data,
                       [this, life = life_.watch(), id](const Position* p, std::string_view error) {
                         if (life.expired()) return;
                         if (!p) replyError(id, "unavailable", error);
                         else
                           connection_.sendText(
                               fmt::format(R"({{"id":{},"ok":true,"position":"{}"}})", id, p->toString()));
                       });
}

// ---- who the client is (docs/auth.md) ------------------------------------------------------

// False (and the refusal sent) when the client may not act on the channel.
bool WsCommandHandler::permitted(const std::string& id, Right right, const std::string& channel) {
  if (!authOn()) return true;
  auto refusal = ctx_.auth->check(who_, right, channel);
  if (refusal) replyError(id, refusal->code, refusal->message);
  return !refusal;
}

void WsCommandHandler::authCommand(const std::string& id, const WsCommand& cmd, bool refresh) {
  if (cmd.token_has != WsCommand::Has::Yes || cmd.token.empty()) {
    replyError(id, "bad_request", fmt::format("{} needs a token (a JWT string)", refresh ? "refresh" : "auth"));
    return;
  }
  if (!refresh && !who_.anonymous()) {
    replyError(id, "bad_request", "already authenticated; send refresh with the new token");
    return;
  }
  applyToken(id, cmd.token, refresh && !who_.anonymous());  // a first refresh is an auth
}

void WsCommandHandler::applyToken(const std::string& id, std::string_view token, bool refresh) {
  if (!authOn()) {
    replyError(id, "bad_request", "this service checks no tokens ([auth] configures no key)");
    return;
  }
  auto result = ctx_.auth->authenticate(token, unixNowMs());
  if (auto* refusal = std::get_if<Refusal>(&result)) {
    replyError(id, refusal->code, refusal->message);
    // A failed refresh leaves the old token to run out; a failed auth, when a token
    // is required, ends the connection.
    if (!refresh && ctx_.auth->required()) connection_.startClose(ws::kUnauthorized, "unauthorized");
    return;
  }
  Identity next = std::get<Identity>(std::move(result));
  if (refresh) {
    if (auto refusal = ctx_.auth->checkSameUser(who_, next)) {
      replyError(id, refusal->code, refusal->message);
      return;
    }
    dropWhatIsNoLongerAllowed(next);
  }
  setIdentity(std::move(next));
  int64_t left_ms = std::max<int64_t>(0, ctx_.auth->validUntilMs(who_) - unixNowMs());
  connection_.sendText(fmt::format(R"({{"id":{},"ok":true,"user":"{}","expires_in_ms":{}}})", id,
                                   jsonEscape(who_.user()), left_ms));
}

// A refresh with narrower patterns: each subscription they no longer cover ends, and
// the client hears which.
void WsCommandHandler::dropWhatIsNoLongerAllowed(const Identity& next) {
  std::vector<std::string> dropped;
  for (size_t i = 0; i < subs_.size();) {
    if (ctx_.auth->check(next, Right::Subscribe, subs_[i]->channel->name)) {
      dropped.push_back(subs_[i]->channel->name);
      ctx_.channels->remove(subs_[i]);
      subs_.erase(subs_.begin() + static_cast<ptrdiff_t>(i));
    } else {
      ++i;
    }
  }
  std::erase_if(pending_, [&](const auto& p) {  // their results find them gone and tell the hub
    bool drop = ctx_.auth->check(next, Right::Subscribe, p.second).has_value();
    if (drop) dropped.push_back(p.second);
    return drop;
  });
  for (const auto& channel : dropped)
    connection_.sendText(fmt::format(R"({{"event":"unsubscribed","channel":"{}","reason":"forbidden"}})", channel));
}

void WsCommandHandler::setIdentity(Identity next) {
  forgetIdentity();
  who_ = std::move(next);
  ++ctx_.counters.authenticated;
  if (!who_.user().empty()) ctx_.users->add(who_.user(), this);
  auth_deadline_ms_ = 0;
  // The token's end, on the steady clock; token_expiring goes out `expiring_notice`
  // before it (at most half the token's remaining life), less up to a tenth at
  // random so that clients given tokens at one moment do not all refresh at another.
  int64_t now = steadyNowMs();
  int64_t left = ctx_.auth->validUntilMs(who_) - unixNowMs();
  token_end_ms_ = now + std::max<int64_t>(left, 0);
  int64_t notice = std::min<int64_t>(ctx_.auth->config().expiring_notice.count(), left / 2);
  if (notice > 0) {
    static std::minstd_rand rng{std::random_device{}()};
    notice += static_cast<int64_t>(rng() % static_cast<uint64_t>(notice / 10 + 1));
    token_notice_ms_ = token_end_ms_ - notice;
  } else {
    token_notice_ms_ = 0;
  }
  connection_.deadlinesChanged();
}

void WsCommandHandler::forgetIdentity() {
  if (who_.anonymous()) return;
  if (!who_.user().empty()) ctx_.users->remove(who_.user(), this);
  --ctx_.counters.authenticated;
  who_ = Identity{};
}

int64_t WsCommandHandler::tokenDeadlineMs() const {
  int64_t d = 0;
  for (int64_t t : {auth_deadline_ms_, token_notice_ms_, token_end_ms_})
    if (t && (!d || t < d)) d = t;
  return d;
}

void WsCommandHandler::checkTokenDeadlines(int64_t now) {
  if (auth_deadline_ms_ && now >= auth_deadline_ms_) {
    auth_deadline_ms_ = 0;
    connection_.startClose(ws::kUnauthorized, "no token within the handshake timeout");
    return;
  }
  if (token_end_ms_ && now >= token_end_ms_) {
    token_end_ms_ = token_notice_ms_ = 0;
    connection_.sendText(R"({"event":"token_expired"})");
    connection_.startClose(ws::kUnauthorized, "token expired");
    return;
  }
  if (token_notice_ms_ && now >= token_notice_ms_) {
    token_notice_ms_ = 0;
    connection_.sendText(
        fmt::format(R"({{"event":"token_expiring","in_ms":{}}})", std::max<int64_t>(0, token_end_ms_ - now)));
  }
}

void WsCommandHandler::replyOk(const std::string& id) {
  connection_.sendText(fmt::format(R"({{"id":{},"ok":true}})", id));
}

void WsCommandHandler::replyError(const std::string& id, std::string_view code, std::string_view message) {
  connection_.sendText(fmt::format(R"({{"id":{},"ok":false,"error":{{"code":"{}","message":"{}"}}}})", id, code,
                                   jsonEscape(message)));
}

// ---- the end --------------------------------------------------------------------------

void WsCommandHandler::dropSubscriptions() {
  for (Subscription* s : subs_) ctx_.channels->remove(s);
  subs_.clear();
  pending_.clear();  // their results find the session gone and tell the hub
}

}  // namespace dingo
