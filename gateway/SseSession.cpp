#include "gateway/SseSession.h"

#include "core/Cursor.h"
#include "core/Jwt.h"
#include "core/Liveness.h"
#include "core/Log.h"
#include "gateway/Broker.h"
#include "gateway/Output.h"
#include "gateway/PubSub.h"
#include "gateway/Transport.h"
#include "gateway/UserRegistry.h"

namespace dingo {

namespace {

constexpr int kRetryMs = 3000;  // the reconnect delay suggested to EventSource

// One part of the response body: a chunk of a chunked body, or the bare bytes when the
// body is delimited by the close (HTTP/1.0 clients).
SharedFrame bodyPart(std::string_view text, bool chunked) {
  if (!chunked) return std::make_shared<std::string>(text);
  auto f = std::make_shared<std::string>(fmt::format("{:x}\r\n", text.size()));
  f->append(text);
  f->append("\r\n");
  return f;
}



template <typename Stream>
class SseSession final : public SessionEntry, public Subscriber, public OutputOwner, public UserSession {
 public:
  SseSession(GatewayContext& ctx, Stream& stream, SseRequest req)
      : ctx_(ctx), stream_(stream), out_(ctx, stream, *this), chunked_(req.chunked) {
    ctx_.link(this);
    ++ctx_.counters.sse_streams;
    ++ctx_.counters.sse_total;
    cursor_.session = newCursorSession();
    for (size_t i = 0; i < req.channels.size(); ++i)
      cursor_.positions.emplace_back(req.channels[i], req.from[i].value_or(Position{}));
    from_ = std::move(req.from);
    who_ = std::move(req.who);
    if (!who_.anonymous()) {
      ++ctx_.counters.authenticated;
      if (!who_.user().empty()) ctx_.users->add(who_.user(), this);
      // The stream ends with its token; the client comes back with a new one and its
      // Last-Event-ID, and loses nothing.
      token_end_ms_ = steadyNowMs() + std::max<int64_t>(0, ctx_.auth->validUntilMs(who_) - unixNowMs());
    }
  }

  ~SseSession() override {
    if (!who_.anonymous()) {
      --ctx_.counters.authenticated;
      if (!who_.user().empty()) ctx_.users->remove(who_.user(), this);
    }
    for (Subscription* s : subs_)
      if (s) ctx_.channels->remove(s);
    --ctx_.counters.sse_streams;
    ctx_.unlink(this);
  }

  void start() {
    out_.enqueue(std::make_shared<const std::string>(
        chunked_ ? "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\n"
                   "X-Accel-Buffering: no\r\nTransfer-Encoding: chunked\r\n\r\n"
                 : "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\n"
                   "X-Accel-Buffering: no\r\nConnection: close\r\n\r\n"));
    out_.enqueue(bodyPart(fmt::format("retry: {}\n\n", kRetryMs), chunked_));
    subs_.assign(cursor_.positions.size(), nullptr);
    pending_ = static_cast<int>(subs_.size());
    GatewayContext* ctx = &ctx_;
    for (size_t i = 0; i < subs_.size(); ++i) {
      std::string name = cursor_.positions[i].first;
      ctx_.broker->subscribe(name, from_[i], [this, ctx, i, name, life = life_.watch()](
                                                 const Catchup* c, std::string_view) {
        if (life.expired()) {
          if (c && ctx->broker) ctx->broker->unsubscribe(name);
          return;
        }
        onSubscribed(i, c);
      });
    }
    armHeartbeat();
  }

  bool running() const { return !stopped_ && !ending_; }

  // Clients of an event stream have nothing to say: bytes are read and dropped, and the
  // end of the stream ends the session.
  void onInput(std::string_view bytes) { ctx_.counters.bytes_in += bytes.size(); }

  asio::awaitable<void> close() {
    boost::system::error_code ec;
    if (!stopped_) {
      out_.startWriteDeadline();
      co_await out_.drain(ec);
      if constexpr (std::is_same_v<Stream, TlsSocket>) {
        if (!ec && !stopped_) co_await stream_.shutdown(ec);
      }
    }
    deadline_ms = kNoDeadline;
    if (stopped_) {
      resetOnClose(stream_.socket());  // cut: timed out or too slow (see Transport.h)
      ++ctx_.counters.resets;
    }
    stream_.socket().close(ec);
  }

  // ---- SessionEntry -------------------------------------------------------------------

  void onDrain() override { endWithReconnect(); }
  void onBrokerLost() override { endWithReconnect(); }
  void disconnectUser(std::string_view reason) override {
    end("disconnect", fmt::format(R"({{"reason":"{}"}})", jsonEscape(reason)));
  }

  void onDeadline() override {
    int64_t now = steadyNowMs();
    int64_t write_deadline = out_.writeDeadline();
    if (write_deadline && now >= write_deadline) {
      ++ctx_.counters.timeouts;
      stop();
      return;
    }
    if (token_end_ms_ && now >= token_end_ms_) {
      token_end_ms_ = 0;
      end("token_expired", "{}");
      return;
    }
    if (now >= next_heartbeat_ms_) {
      out_.enqueue(heartbeat());
      armHeartbeat();
    }
    updateDeadline();
  }

  // ---- Subscriber / OutputOwner -------------------------------------------------------

  void push(const Delivery& d) override {
    for (size_t i = 0; i < subs_.size(); ++i) {
      if (cursor_.positions[i].first != d.channel) continue;
      if (pending_ > 0) held_.push_back({i, d.position, std::string(d.message)});
      else emit(i, d.position, d.message);
      return;
    }
  }

  // The client comes back with its Last-Event-ID: exact, or told recovered:false.
  void onGap(std::string_view) override { endWithReconnect(); }

  void onOutputFailed(bool) override { stop(); }
  void onWriteDeadline() override { updateDeadline(); }

 private:
  struct Held {
    size_t channel;
    Position position;
    std::string json;
  };

  const SharedFrame& heartbeat() const {
    static const SharedFrame chunked = bodyPart(":\n\n", true);
    static const SharedFrame bare = bodyPart(":\n\n", false);
    return chunked_ ? chunked : bare;
  }

  void onSubscribed(size_t i, const Catchup* c) {
    --pending_;
    if (!c || ending_ || stopped_) {
      if (c && ctx_.broker) ctx_.broker->unsubscribe(cursor_.positions[i].first);
      if (!c) endWithReconnect();
      return;
    }
    const std::string& name = cursor_.positions[i].first;
    subs_[i] = ctx_.channels->add(name, this, c->position);
    bool with_since = from_[i].has_value();
    if (with_since && !c->recovered) {
      recovered_ = false;
      ++ctx_.counters.not_recovered;
    } else if (with_since) {
      ++ctx_.counters.recovered;
    }
    cursor_.positions[i].second = c->recovered && with_since ? *from_[i] : c->position;
    // Per channel, what the result recovered comes before anything live: the
    // subscription starts in this callback.
    for (const StoredMessage& m : c->messages) {
      std::string json;
      appendMessageJson(json, name, {c->position.epoch, m.seq}, *m.data);
      held_.push_back({i, {c->position.epoch, m.seq}, std::move(json)});
    }
    if (pending_ > 0) return;
    // Every channel is in: say where the stream starts, then what was missed, then
    // what arrived meanwhile (already in order per channel).
    std::string state = fmt::format(R"({{"recovered":{},"positions":{{)", recovered_);
    for (size_t k = 0; k < cursor_.positions.size(); ++k)
      fmt::format_to(std::back_inserter(state), R"({}"{}":"{}")", k ? "," : "", cursor_.positions[k].first,
                     cursor_.positions[k].second.toString());
    state += "}}";
    sendEvent("state", state);  // its id is the cursor before any message below
    auto held = std::move(held_);
    held_.clear();
    for (const Held& h : held) emit(h.channel, h.position, h.json);
  }

  void emit(size_t channel, const Position& position, std::string_view json) {
    Position& p = cursor_.positions[channel].second;
    // A channel that did not exist (an absent position) and was born since: its first
    // message is the next one (ChannelTable::continuity), in the channel's own epoch,
    // which the cursor takes, or the next resume would be from an absent epoch's SEQ.
    if (position.epoch != p.epoch) p = {position.epoch, 0};
    if (position.seq <= p.seq) return;  // already covered (a catch-up and a live copy)
    p.seq = position.seq;
    sendEvent("message", json);
  }

  void sendEvent(std::string_view event, std::string_view data) {
    if (ending_ || stopped_) return;
    out_.enqueue(
        bodyPart(fmt::format("id: {}\nevent: {}\ndata: {}\n\n", ctx_.cursors->encode(cursor_), event, data), chunked_));
    armHeartbeat();
  }

  // A planned end: tell the client when to come back, end the body, close.
  void endWithReconnect() { end("reconnect", fmt::format(R"({{"after_ms":{}}})", reconnectJitterMs())); }

  // The last event, the end of the body, the close.
  void end(std::string_view event, std::string_view data) {
    if (ending_ || stopped_) return;
    out_.enqueue(bodyPart(fmt::format("event: {}\ndata: {}\n\n", event, data), chunked_));
    if (chunked_) out_.enqueue(std::make_shared<const std::string>("0\r\n\r\n"));  // the last chunk
    ending_ = true;
    boost::system::error_code ec;
    stream_.socket().cancel(ec);  // the read loop ends; close() sends the rest
  }

  void stop() {
    if (stopped_) return;
    stopped_ = true;
    out_.stop();
    boost::system::error_code ec;
    stream_.socket().cancel(ec);
    deadline_ms = kNoDeadline;
  }

  void armHeartbeat() {
    next_heartbeat_ms_ = steadyNowMs() + ctx_.config.gateway.sse_heartbeat.count();
    updateDeadline();
  }

  void updateDeadline() {
    int64_t d = next_heartbeat_ms_;
    if (int64_t w = out_.writeDeadline(); w && w < d) d = w;
    if (token_end_ms_ && token_end_ms_ < d) d = token_end_ms_;
    deadline_ms = d;
  }

  GatewayContext& ctx_;
  Stream& stream_;
  Output<Stream> out_;
  Liveness life_;
  Cursor cursor_;  // every channel's position as of the last event sent
  std::vector<std::optional<Position>> from_;
  std::vector<Subscription*> subs_;
  std::vector<Held> held_;  // what came before every subscribe result was in
  int pending_ = 0;
  bool recovered_ = true;
  int64_t next_heartbeat_ms_ = 0;
  Identity who_;               // anonymous, or the token the stream was opened with
  int64_t token_end_ms_ = 0;   // its exp plus the leeway, on the steady clock
  bool ending_ = false;
  bool stopped_ = false;
  bool chunked_;  // false: an HTTP/1.0 client, the close ends the body
};

template <typename Stream>
asio::awaitable<void> runSse(GatewayContext& ctx, Stream& stream, SseRequest req) {
  SseSession<Stream> session(ctx, stream, std::move(req));
  session.start();
  co_await readUntilDone(session, stream);
  co_await session.close();
}

}  // namespace

asio::awaitable<void> serveSse(GatewayContext& ctx, PlainSocket& stream, SseRequest req) {
  return runSse(ctx, stream, std::move(req));
}

asio::awaitable<void> serveSse(GatewayContext& ctx, TlsSocket& stream, SseRequest req) {
  return runSse(ctx, stream, std::move(req));
}

}  // namespace dingo
