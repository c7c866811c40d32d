#include "gateway/WsSession.h"

#include <random>

#include "core/Hub.h"
#include "core/Json.h"
#include "core/Jwt.h"
#include "core/Log.h"
#include "core/WebSocket.h"
#include "gateway/Auth.h"
#include "gateway/Broker.h"
#include "gateway/Output.h"
#include "gateway/PubSub.h"
#include "gateway/Transport.h"
#include "gateway/UserRegistry.h"
#include "gateway/WsCommand.h"

// Every co_await is a statement of its own (see Transport.cpp: g++ 12 miscompiles some
// co_await expressions inside conditions).

namespace dingo {

namespace {

using asio::redirect_error;
using asio::use_awaitable;

// After our close frame, how long the peer has to answer with its own.
constexpr int64_t kCloseWaitMs = 2000;

const SharedFrame& pingFrame() {
  static const SharedFrame frame = std::make_shared<const std::string>(ws::frame(ws::Opcode::Ping, {}));
  return frame;
}

SharedFrame textFrame(std::string_view text) {
  auto f = std::make_shared<std::string>();
  f->reserve(text.size() + 10);
  ws::appendFrameHeader(*f, ws::Opcode::Text, text.size());
  f->append(text);
  return f;
}


const char* channelRule() {
  return "a channel is 1 to 255 characters of [A-Za-z0-9_.:/-] starting with /";
}


template <typename Stream>
class WsSession final : public SessionEntry, public Subscriber, public OutputOwner, public UserSession {
  static constexpr bool kTls = std::is_same_v<Stream, TlsSocket>;

 public:
  WsSession(GatewayContext& ctx, Stream& stream)
      : ctx_(ctx),
        g_(ctx.config.gateway),
        stream_(stream),
        parser_(ctx.config.gateway.max_message_size),
        out_(ctx, stream, *this),
        life_(std::make_shared<char>(0)) {
    ctx_.link(this);
    ++ctx_.counters.ws_connections;
    ++ctx_.counters.ws_upgrades;
    int64_t now = steadyNowMs();
    next_ping_ms_ = now + g_.ping_interval.count();
    tokens_ = 2.0 * g_.commands_per_second;
    last_refill_ms_ = now;
    // Who has not proved who they are within the handshake deadline is put out.
    if (authRequired()) auth_deadline_ms_ = now + g_.handshake_timeout.count();
    updateDeadline();
  }

  ~WsSession() override {
    forgetIdentity();
    dropSubscriptions();
    --ctx_.counters.ws_connections;
    ctx_.unlink(this);
  }

  // `url_token`: the ?token= of the upgrade request, an auth command made in advance.
  void start(std::string_view leftover, std::string_view url_token) {
    if (ctx_.draining) sendReconnect();
    if (!url_token.empty() && authOn()) applyToken("null", url_token, /*refresh=*/false);
    if (!leftover.empty()) handleBytes(leftover);
  }

  // False once the close handshake is done, or once the peer broke the protocol: then
  // nothing it sends is read any more (reading and discarding a flood for the close
  // wait cost a core), our close frame goes out and the connection closes.
  bool running() const { return !stopped_ && !protocol_broken_ && !(close_sent_ && close_received_); }

  // Bytes that arrived (see readUntilDone).
  void onInput(std::string_view bytes) {
    ctx_.counters.bytes_in += bytes.size();
    handleBytes(bytes);
    if constexpr (kTls) {
      if (stream_.pendingOutput() > 0) ctx_.requestFlush(&out_);  // TLS 1.3 post-handshake replies
    }
  }

  // ---- SessionEntry -------------------------------------------------------------------

  void onDrain() override { sendReconnect(); }
  // Subscribed connections lost their streams' continuity with the hub: they reconnect
  // and resume (recovered:false tells them to refetch). Others keep their connection; a
  // re-attached worker serves their commands again through the new supervisor's hub.
  void onBrokerLost() override {
    if (!subs_.empty() || !pending_.empty()) sendReconnect();
  }

  void onDeadline() override {
    int64_t now = steadyNowMs();
    if (close_deadline_ms_ && now >= close_deadline_ms_) {
      stop();  // the peer never answered our close frame
      return;
    }
    if (!close_sent_) checkTokenDeadlines(now);
    int64_t write_deadline = out_.writeDeadline();
    if ((write_deadline && now >= write_deadline) || (pong_due_ms_ && now >= pong_due_ms_)) {
      ++ctx_.counters.timeouts;
      stop();
      return;
    }
    if (!close_sent_ && now >= next_ping_ms_) {
      enqueue(pingFrame());
      if (!pong_due_ms_) pong_due_ms_ = now + g_.pong_timeout.count();
      next_ping_ms_ = now + g_.ping_interval.count();
    }
    updateDeadline();
  }

  // ---- UserSession --------------------------------------------------------------------

  void disconnectUser(std::string_view reason) override {
    // A close reason is at most 123 bytes (RFC 6455 5.5); the operator's text is ASCII.
    startClose(ws::kDisconnected, reason.empty() ? "disconnected by an operator" : reason.substr(0, 123));
  }

  // ---- Subscriber ---------------------------------------------------------------------

  // The client resumes every channel from the positions it has: exact, or told
  // recovered:false.
  void onGap(std::string_view) override { sendReconnect(); }

  void push(const Delivery& d) override {
    if (close_sent_) return;  // nothing follows our close frame
    enqueue(d.ws_frame);
  }

 // ---- the end (public: the read loop below calls it) ---------------------------------

  asio::awaitable<void> close() { co_await finish(); }

 private:
  // ---- output -------------------------------------------------------------------------

  void enqueue(SharedFrame frame) { out_.enqueue(std::move(frame)); }
  void enqueueText(std::string_view text) { enqueue(textFrame(text)); }

  void onOutputFailed(bool) override { stop(); }
  void onWriteDeadline() override { updateDeadline(); }

  // ---- input --------------------------------------------------------------------------

  void handleBytes(std::string_view bytes) {
    if (parser_.failed() || close_received_) return;  // after a protocol error: discard
    parser_.feed(bytes, [this](const ws::Event& e) { onEvent(e); });
  }

  void onEvent(const ws::Event& e) {
    if (close_received_ || stopped_) return;
    switch (e.kind) {
      case ws::Event::Kind::Text:
        if (!close_sent_) onCommand(e.payload);
        break;
      case ws::Event::Kind::Binary:
        ++ctx_.counters.ws_protocol_errors;
        protocol_broken_ = true;
        startClose(ws::kUnsupportedData, "commands are JSON text frames");
        break;
      case ws::Event::Kind::Ping:
        if (!close_sent_) enqueue(std::make_shared<const std::string>(ws::frame(ws::Opcode::Pong, e.payload)));
        break;
      case ws::Event::Kind::Pong:
        pong_due_ms_ = 0;
        updateDeadline();
        break;
      case ws::Event::Kind::Close:
        close_received_ = true;
        if (!close_sent_) {
          // Echo the code (RFC 6455 5.5.1), then we close the TCP connection.
          uint16_t code = e.code == ws::kNoStatus ? ws::kNormal : e.code;
          enqueue(std::make_shared<const std::string>(ws::closeFrame(code)));
          close_sent_ = true;
        }
        break;
      case ws::Event::Kind::Error:
        ++ctx_.counters.ws_protocol_errors;
        protocol_broken_ = true;
        startClose(e.code, !e.payload.empty()               ? e.payload
                           : e.code == ws::kTooBig         ? "message too big"
                           : e.code == ws::kInvalidPayload ? "invalid UTF-8"
                                                           : "protocol error");
        break;
    }
  }

  void startClose(uint16_t code, std::string_view reason) {
    if (close_sent_) return;
    enqueue(std::make_shared<const std::string>(ws::closeFrame(code, reason)));
    close_sent_ = true;
    close_deadline_ms_ = steadyNowMs() + kCloseWaitMs;
    updateDeadline();
  }

  // A planned close: tell the client when to come back, then close with 1012.
  void sendReconnect() {
    if (close_sent_ || stopped_) return;
    enqueueText(fmt::format(R"({{"event":"reconnect","after_ms":{}}})", reconnectJitterMs()));
    startClose(ws::kServiceRestart, "service restart");
  }

  // ---- commands -----------------------------------------------------------------------

  // A client that goes on sending after this many refusals in a row is not a client
  // that backs off: it is closed with 1008.
  static constexpr uint32_t kMaxRefusedInRow = 1000;

  void onCommand(std::string_view text) {
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
        protocol_broken_ = true;
        startClose(ws::kPolicyViolation, "command rate exceeded");
        return;
      }
      replyError(id, "limit", fmt::format("more than {} commands per second", g_.commands_per_second));
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
      startClose(ws::kUnauthorized, "unauthorized");
      return;
    }
    if (name == "auth" || name == "refresh") authCommand(id, *cmd, name == "refresh");
    else if (name == "subscribe") subscribe(id, *cmd);
    else if (name == "unsubscribe") unsubscribe(id, *cmd);
    else if (name == "publish") publish(id, *cmd);
    else if (name == "ping") replyOk(id);
    else replyError(id, "bad_request", fmt::format("unknown op '{}'", jsonEscape(name.substr(0, 64))));
  }

  bool takeToken() {
    int64_t now = steadyNowMs();
    double rate = g_.commands_per_second;
    tokens_ = std::min(2.0 * rate, tokens_ + static_cast<double>(now - last_refill_ms_) * rate / 1000.0);
    last_refill_ms_ = now;
    if (tokens_ < 1.0) return false;
    tokens_ -= 1.0;
    return true;
  }

  // The channel field, validated; empty (and an error sent) when bad.
  std::string channelOf(const std::string& id, const WsCommand& cmd) {
    if (cmd.channel_has != WsCommand::Has::Yes || !validChannel(cmd.channel)) {
      replyError(id, "bad_request", channelRule());
      return {};
    }
    return cmd.channel;
  }

  Subscription* findSubscription(std::string_view channel) {
    for (Subscription* s : subs_)
      if (s->channel->name == channel) return s;
    return nullptr;
  }

  void subscribe(const std::string& id, const WsCommand& cmd) {
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
    if (subs_.size() + pending_.size() >= g_.max_channels) {
      replyError(id, "limit", fmt::format("at most {} channels per connection", g_.max_channels));
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
                           [this, ctx, life = std::weak_ptr<char>(life_), token, id, channel, with_since](
                               const Catchup* c, std::string_view error) {
                             if (life.expired()) {
                               // The session left first; the hub counted the subscriber.
                               if (c && ctx->broker) ctx->broker->unsubscribe(channel);
                               return;
                             }
                             onSubscribed(token, id, channel, with_since, c, error);
                           });
  }

  void onSubscribed(uint64_t token, const std::string& id, const std::string& channel, bool with_since,
                    const Catchup* c, std::string_view error) {
    auto it = std::find_if(pending_.begin(), pending_.end(), [&](const auto& p) { return p.first == token; });
    bool wanted = it != pending_.end();
    if (wanted) pending_.erase(it);
    if (!c) {
      replyError(id, "unavailable", error);
      return;
    }
    if (wanted && !close_sent_ && !stopped_) {
      subs_.push_back(ctx_.channels->add(channel, this, c->position));
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
    enqueueText(out);
  }

  void unsubscribe(const std::string& id, const WsCommand& cmd) {
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

  void publish(const std::string& id, const WsCommand& cmd) {
    if (!g_.client_publish) {
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
                         [this, life = std::weak_ptr<char>(life_), id](const Position* p, std::string_view error) {
                           if (life.expired()) return;
                           if (!p) replyError(id, "unavailable", error);
                           else enqueueText(fmt::format(R"({{"id":{},"ok":true,"position":"{}"}})", id, p->toString()));
                         });
  }

  // ---- who the client is (docs/auth.md) --------------------------------------------------

  bool authOn() const { return ctx_.auth && ctx_.auth->enabled(); }
  // Auth is required and this connection has not proved who it is yet.
  bool authRequired() const { return authOn() && ctx_.auth->required() && who_.anonymous(); }

  // False (and the refusal sent) when the client may not act on the channel.
  bool permitted(const std::string& id, Right right, const std::string& channel) {
    if (!authOn()) return true;
    auto refusal = ctx_.auth->check(who_, right, channel);
    if (refusal) replyError(id, refusal->code, refusal->message);
    return !refusal;
  }

  void authCommand(const std::string& id, const WsCommand& cmd, bool refresh) {
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

  void applyToken(const std::string& id, std::string_view token, bool refresh) {
    if (!authOn()) {
      replyError(id, "bad_request", "this service checks no tokens ([auth] configures no key)");
      return;
    }
    auto result = ctx_.auth->authenticate(token, unixNowMs());
    if (auto* refusal = std::get_if<Refusal>(&result)) {
      replyError(id, refusal->code, refusal->message);
      // A failed refresh leaves the old token to run out; a failed auth, when a token
      // is required, ends the connection.
      if (!refresh && ctx_.auth->required()) startClose(ws::kUnauthorized, "unauthorized");
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
    enqueueText(fmt::format(R"({{"id":{},"ok":true,"user":"{}","expires_in_ms":{}}})", id, jsonEscape(who_.user()),
                            left_ms));
  }

  // A refresh with narrower patterns: each subscription they no longer cover ends, and
  // the client hears which.
  void dropWhatIsNoLongerAllowed(const Identity& next) {
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
      enqueueText(fmt::format(R"({{"event":"unsubscribed","channel":"{}","reason":"forbidden"}})", channel));
  }

  void setIdentity(Identity next) {
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
    updateDeadline();
  }

  void forgetIdentity() {
    if (who_.anonymous()) return;
    if (!who_.user().empty()) ctx_.users->remove(who_.user(), this);
    --ctx_.counters.authenticated;
    who_ = Identity{};
  }

  void checkTokenDeadlines(int64_t now) {
    if (auth_deadline_ms_ && now >= auth_deadline_ms_) {
      auth_deadline_ms_ = 0;
      startClose(ws::kUnauthorized, "no token within the handshake timeout");
      return;
    }
    if (token_end_ms_ && now >= token_end_ms_) {
      token_end_ms_ = token_notice_ms_ = 0;
      enqueueText(R"({"event":"token_expired"})");
      startClose(ws::kUnauthorized, "token expired");
      return;
    }
    if (token_notice_ms_ && now >= token_notice_ms_) {
      token_notice_ms_ = 0;
      enqueueText(fmt::format(R"({{"event":"token_expiring","in_ms":{}}})", std::max<int64_t>(0, token_end_ms_ - now)));
    }
  }

  void replyOk(const std::string& id) { enqueueText(fmt::format(R"({{"id":{},"ok":true}})", id)); }

  void replyError(const std::string& id, std::string_view code, std::string_view message) {
    enqueueText(fmt::format(R"({{"id":{},"ok":false,"error":{{"code":"{}","message":"{}"}}}})", id, code,
                            jsonEscape(message)));
  }

  // ---- the end ------------------------------------------------------------------------

  void dropSubscriptions() {
    for (Subscription* s : subs_) ctx_.channels->remove(s);
    subs_.clear();
    pending_.clear();  // their results find the session gone and tell the hub
  }

  // Stops at once: no more output, pending I/O cancelled, the socket closes.
  void stop() {
    if (stopped_) return;
    stopped_ = true;
    out_.stop();
    boost::system::error_code ec;
    stream_.socket().cancel(ec);
    deadline_ms = kNoDeadline;
  }

  asio::awaitable<void> finish() {
    dropSubscriptions();
    boost::system::error_code ec;
    if (!stopped_) {
      // What is queued (the last replies, our close frame) goes out under the write
      // deadline, which the sweep enforces by calling stop().
      close_deadline_ms_ = 0;
      out_.startWriteDeadline();
      co_await out_.drain(ec);
      if constexpr (kTls) {
        if (!ec && !stopped_) co_await stream_.shutdown(ec);
      }
    }
    deadline_ms = kNoDeadline;
    if (stopped_) {
      resetOnClose(stream_.socket());  // cut: timed out, too slow, or silent after our close
      ++ctx_.counters.resets;
    }
    stream_.socket().close(ec);
  }

  void updateDeadline() {
    int64_t d = kNoDeadline;
    for (int64_t t : {close_deadline_ms_, out_.writeDeadline(), pong_due_ms_, close_sent_ ? 0 : next_ping_ms_})
      if (t && t < d) d = t;
    if (!close_sent_)
      for (int64_t t : {auth_deadline_ms_, token_notice_ms_, token_end_ms_})
        if (t && t < d) d = t;
    deadline_ms = d;
  }

  GatewayContext& ctx_;
  const GatewayConfig& g_;
  Stream& stream_;
  ws::Parser parser_;
  Output<Stream> out_;
  std::shared_ptr<char> life_;  // callbacks hold a weak_ptr: "is the session still here?"

  std::vector<Subscription*> subs_;
  std::vector<std::pair<uint64_t, std::string>> pending_;  // subscribes awaiting the broker
  uint64_t next_token_ = 1;

  Identity who_;                 // anonymous until a token proves otherwise
  int64_t auth_deadline_ms_ = 0;  // auth required: the handshake deadline to prove it by
  int64_t token_notice_ms_ = 0;   // when token_expiring goes out
  int64_t token_end_ms_ = 0;      // the token's exp plus the leeway: close with 4001

  double tokens_ = 0;
  uint32_t refused_in_row_ = 0;  // rate-limit refusals since the last accepted command
  int64_t last_refill_ms_ = 0;
  int64_t next_ping_ms_ = 0;
  int64_t pong_due_ms_ = 0;
  int64_t close_deadline_ms_ = 0;
  bool close_sent_ = false;
  bool close_received_ = false;
  bool protocol_broken_ = false;  // closed for a protocol error: input is no longer read
  bool stopped_ = false;
};

template <typename Stream>
asio::awaitable<void> runWebSocket(GatewayContext& ctx, Stream& stream, std::string leftover, std::string token) {
  WsSession<Stream> session(ctx, stream);
  session.start(leftover, token);
  std::string().swap(token);
  std::string().swap(leftover);
  co_await readUntilDone(session, stream);
  co_await session.close();
}

}  // namespace

asio::awaitable<void> serveWebSocket(GatewayContext& ctx, PlainSocket& stream, std::string leftover,
                                     std::string token) {
  return runWebSocket(ctx, stream, std::move(leftover), std::move(token));
}

asio::awaitable<void> serveWebSocket(GatewayContext& ctx, TlsSocket& stream, std::string leftover,
                                     std::string token) {
  return runWebSocket(ctx, stream, std::move(leftover), std::move(token));
}

}  // namespace dingo
