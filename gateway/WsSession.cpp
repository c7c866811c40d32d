// One WebSocket connection after its 101 (RFC 6455): frames in and out, ping and pong,
// the close handshake, the send queue (Output.h) and the deadlines of all of them. What
// the client's commands do is WsCommandHandler.h; this file hands it each text message
// and gives it a way to answer.
#include "gateway/WsSession.h"

#include "core/Log.h"
#include "core/WebSocket.h"
#include "gateway/Output.h"
#include "gateway/PubSub.h"
#include "gateway/Transport.h"
#include "gateway/WsCommandHandler.h"

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


template <typename Stream>
class WsSession final : public SessionEntry, public OutputOwner, public WsConnection {
  static constexpr bool kTls = std::is_same_v<Stream, TlsSocket>;

 public:
  WsSession(GatewayContext& ctx, Stream& stream)
      : ctx_(ctx),
        g_(ctx.config.gateway),
        stream_(stream),
        parser_(ctx.config.gateway.max_message_size),
        out_(ctx, stream, *this),
        commands_(ctx, *this, steadyNowMs()) {
    ctx_.link(this);
    ++ctx_.counters.ws_connections;
    ++ctx_.counters.ws_upgrades;
    next_ping_ms_ = steadyNowMs() + g_.ping_interval.count();
    updateDeadline();
  }

  ~WsSession() override {
    commands_.forgetIdentity();
    commands_.dropSubscriptions();
    --ctx_.counters.ws_connections;
    ctx_.unlink(this);
  }

  // `url_token`: the ?token= of the upgrade request, an auth command made in advance.
  void start(std::string_view leftover, std::string_view url_token) {
    if (ctx_.draining) sendReconnect();
    commands_.authenticateWith(url_token);
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
    if (commands_.subscribed()) sendReconnect();
  }

  void onDeadline() override {
    int64_t now = steadyNowMs();
    if (close_deadline_ms_ && now >= close_deadline_ms_) {
      stop();  // the peer never answered our close frame
      return;
    }
    if (!close_sent_) commands_.checkTokenDeadlines(now);
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

  // ---- WsConnection (for the command handler) -------------------------------------------

  void sendText(std::string_view text) override { enqueue(textFrame(text)); }
  void startClose(uint16_t code, std::string_view reason) override {
    if (close_sent_) return;
    enqueue(std::make_shared<const std::string>(ws::closeFrame(code, reason)));
    close_sent_ = true;
    close_deadline_ms_ = steadyNowMs() + kCloseWaitMs;
    updateDeadline();
  }
  void closeUnread(uint16_t code, std::string_view reason) override {
    protocol_broken_ = true;
    startClose(code, reason);
  }
  bool closing() const override { return close_sent_ || stopped_; }
  void deadlinesChanged() override { updateDeadline(); }

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
        if (!close_sent_) commands_.onCommand(e.payload);
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

  // A planned close: tell the client when to come back, then close with 1012.
  void sendReconnect() {
    if (close_sent_ || stopped_) return;
    sendText(fmt::format(R"({{"event":"reconnect","after_ms":{}}})", reconnectJitterMs()));
    startClose(ws::kServiceRestart, "service restart");
  }

  // ---- the end ------------------------------------------------------------------------

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
    commands_.dropSubscriptions();
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
      if (int64_t t = commands_.tokenDeadlineMs(); t && t < d) d = t;
    deadline_ms = d;
  }

  GatewayContext& ctx_;
  const GatewayConfig& g_;
  Stream& stream_;
  ws::Parser parser_;
  Output<Stream> out_;
  WsCommandHandler commands_;  // what the client's text messages do; the user's session
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
