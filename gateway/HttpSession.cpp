// One HTTP/1.1 connection, from its first byte to its close or its upgrade. The map:
//   startSession      admits the connection (PeerSlot: per-address limits), runs the TLS
//                     handshake, then the HttpSession, then the WebSocket or event
//                     stream the last request asked for (WsSession.h, SseSession.h).
//   HttpSession       the request loop: keep-alive and drain, the deadlines of each phase,
//                     reading a request (the framing rules of HttpFraming.h decide before
//                     its body is read), dispatch by route, writing the answer.
//   sweepDeadlines    cancels the I/O of sessions past their deadline.
// What each endpoint answers is elsewhere: HttpRouter.h names the routes and the file of
// each handler.
#include "gateway/HttpSession.h"

#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>

#include "core/Log.h"
#include "core/Net.h"
#include "gateway/HttpFraming.h"
#include "gateway/HttpQuery.h"
#include "gateway/HttpReply.h"
#include "gateway/HttpRequest.h"
#include "gateway/HttpRouter.h"
#include "gateway/NodesHandler.h"
#include "gateway/PeerLimits.h"
#include "gateway/PollHandler.h"
#include "gateway/RestHandlers.h"
#include "gateway/SseSession.h"
#include "gateway/StaticFiles.h"
#include "gateway/Transport.h"
#include "gateway/UpgradeHandshakes.h"
#include "gateway/WsSession.h"

namespace dingo {

namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

int64_t steadyNowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

namespace {

using Request = http::request<http::string_body>;

// Maps a request-read failure to the answer the client gets before we close.
bool parseErrorReply(const boost::system::error_code& ec, Reply& r) {
  static const auto& http_category = boost::system::error_code(http::error::bad_target).category();
  if (ec == http::error::end_of_stream || ec == http::error::partial_message) return false;
  if (ec == http::error::header_limit) {
    setError(r, 431, "too_large", "request header too large");
    return true;
  }
  if (ec == http::error::body_limit) {
    setError(r, 413, "too_large", "request body too large");
    return true;
  }
  if (ec.category() == http_category || ec == http::error::buffer_overflow) {
    setError(r, 400, "bad_request", fmt::format("malformed HTTP request: {}", ec.message()));
    return true;
  }
  return false;
}

// What a connection becomes after its last HTTP request.
enum class Upgrade { None, WebSocket, Sse };

template <typename Stream>
class HttpSession final : public SessionEntry, public PollConnection {
 public:
  HttpSession(GatewayContext& ctx, Stream& stream)
      : ctx_(ctx), stream_(stream), buffer_(ctx.config.gateway.max_header_bytes + ctx.config.gateway.max_body_bytes) {
    ctx_.link(this);
  }
  ~HttpSession() override { detach(); }
  // Leaves the process's session list (the WebSocket session that follows joins it).
  void detach() {
    if (linked_) ctx_.unlink(this);
    linked_ = false;
  }

  // An idle keep-alive connection is not closed at once: a client may be sending its
  // next request right now, and closing under it fails that request (wrk counted a few
  // dozen per reload). It gets a short grace: a request that comes is answered with
  // Connection: close, which moves the client cleanly; one that does not come means
  // the connection really is idle, and it closes.
  static constexpr int64_t kDrainGraceMs = 1000;

  void onDrain() override {
    if (idle_) {
      drain_closing_ = true;
      deadline_ms = std::min(deadline_ms, steadyNowMs() + kDrainGraceMs);
    }
    poll_.wake();  // a held poll answers at once
  }

  void onDeadline() override {
    timed_out_ = true;
    // Mid-request (a slowloris, a client that stopped reading): reset. Between requests
    // the client did nothing wrong: an idle keep-alive ends with a FIN.
    cut_ = !idle_;
    deadline_ms = kNoDeadline;
    cancel();
  }

  // PollConnection
  void clearDeadline() override { deadline_ms = kNoDeadline; }
  void releaseReadBuffer() override {
    if (buffer_.size() == 0) buffer_.shrink_to_fit();
  }

  void expiresAfter(Duration d) { deadline_ms = steadyNowMs() + d.count(); }
  bool timedOut() const { return timed_out_; }

  // Serves requests until the connection closes, or until one turns it into a
  // WebSocket (the bytes that came after the request are in `leftover`) or an event
  // stream (sseRequest() says what it asked for).
  asio::awaitable<Upgrade> serve(std::string& leftover) {
    const GatewayConfig& g = ctx_.config.gateway;
    beast::flat_buffer& buffer = buffer_;
    std::string out;
    boost::system::error_code ec;
    for (bool first = true;; first = false) {
      // Empty lines after a request's body (RFC 9112 2.2: old clients send a CRLF after
      // a POST body) belong to no request: they must not count as a request that started.
      buffer.consume(leadingEmptyLines(bufferView(buffer)));
      if (!first && buffer.size() == 0) {
        // Between requests: wait for the first byte under the keep-alive idle deadline.
        // Draining, our last answer still said keep-alive, so the client may be sending
        // its next request already: wait the drain grace for it (onDrain's comment).
        idle_ = true;
        if (ctx_.draining) {
          drain_closing_ = true;
          deadline_ms = steadyNowMs() + kDrainGraceMs;
        } else {
          expiresAfter(g.idle_timeout);
        }
        size_t n = co_await stream_.readSomeIdle(buffer.prepare(1024), ec);
        idle_ = false;
        if (ec) break;
        buffer.commit(n);
      }

      http::request_parser<http::string_body> parser;
      parser.header_limit(static_cast<uint32_t>(g.max_header_bytes));
      parser.body_limit(g.max_body_bytes);
      expiresAfter(g.header_timeout);
      // The head first: the framing rules decide before a byte of the body is read.
      size_t got = co_await readRequest(buffer, parser, ec, /*until_header=*/true);
      FramingVerdict verdict;
      if (!ec) {
        verdict = checkHead(parser.get());
        if (verdict.ok() && !parser.is_done()) {
          if (verdict.expect_continue) {
            // RFC 9110 10.1.1: the client waits for this before it sends the body.
            static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
            expiresAfter(g.write_timeout);
            ctx_.counters.bytes_out += co_await stream_.writeAll(asio::buffer(kContinue), ec);
            if (ec) break;
            expiresAfter(g.header_timeout);
          }
          got += co_await readRequest(buffer, parser, ec, /*until_header=*/false);
        }
      }
      ctx_.counters.bytes_in += got;
      Reply reply;
      bool keep_alive = false;
      bool head_only = false;
      if (ec) {
        if (timed_out_) break;  // the header deadline: close without a word
        if (too_many_empty_lines_) setError(reply, 400, "bad_request", "too many empty lines before the request line");
        else if (!parseErrorReply(ec, reply)) break;  // end of stream, reset, ...
        ++ctx_.counters.bad_requests;
      } else if (!verdict.ok()) {
        const Request& req = parser.get();
        ++ctx_.counters.requests;
        ++ctx_.counters.bad_requests;
        setError(reply, verdict.status, "bad_request", verdict.message);
        keep_alive = !verdict.close && req.keep_alive() && !ctx_.draining;
        head_only = req.method() == http::verb::head;
      } else {
        const Request& req = parser.get();
        ++ctx_.counters.requests;
        HttpRequest request = requestView(req, verdict.target);
        RouteMatch match = matchRoute(request.path);
        switch (match.route) {
          case Route::WebSocket: {
            std::string accept;
            if (!checkWebSocketUpgrade(ctx_, request, accept, reply)) break;
            out = fmt::format(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Accept: {}\r\n\r\n",
                accept);
            expiresAfter(g.write_timeout);
            ctx_.counters.bytes_out += co_await stream_.writeAll(asio::buffer(out), ec);
            if (ec) break;  // the 101 did not go out: the connection closes below
            leftover.assign(static_cast<const char*>(buffer.data().data()), buffer.size());
            bool bad = false;
            ws_token_ = queryParam(request.query, "token", bad).value_or("");
            deadline_ms = kNoDeadline;
            co_return Upgrade::WebSocket;
          }
          case Route::Sse:
            if (!checkSseRequest(ctx_, request, sse_, reply)) break;
            deadline_ms = kNoDeadline;
            co_return Upgrade::Sse;
          case Route::Poll:
            co_await poll_.serve(ctx_, *this, request, reply);
            break;
          case Route::Nodes:
            serveNodes(ctx_, request, localAddress(request.socket), reply);
            break;
          case Route::Static: {
            StaticAnswer a = answerStatic(*match.file, request.getOrHead(), request.header("If-None-Match"));
            reply = Reply{a.status, a.content_type, std::string(a.body), std::move(a.headers)};
            break;
          }
          case Route::Publish:
          case Route::History:
          case Route::ChannelInfo:
            co_await servePubSubRest(ctx_, request, match, reply);
            break;
          case Route::Healthz:
            serveHealthz(ctx_, request, reply);
            break;
          case Route::NotFound:
            setNotFound(reply, request.path);
            break;
        }
        if (ec) break;  // only the 101's write sets it
        keep_alive = req.keep_alive() && !ctx_.draining;
        head_only = req.method() == http::verb::head;
      }
      serializeReply(reply, keep_alive, head_only, out);
      expiresAfter(g.write_timeout);
      // The last response may wait in the TLS queue for close_notify (one send for both).
      ctx_.counters.bytes_out += co_await stream_.writeAll(asio::buffer(out), ec, keep_alive);
      if (ec || !keep_alive) break;
    }
    if (timed_out_ && !drain_closing_) ++ctx_.counters.timeouts;
    co_await close();
    co_return Upgrade::None;
  }

  SseRequest& sseRequest() { return sse_; }
  std::string& webSocketToken() { return ws_token_; }
  void releaseBuffer() {
    buffer_.consume(buffer_.size());
    buffer_.shrink_to_fit();
  }

 private:
  void cancel() {
    boost::system::error_code ec;
    stream_.socket().cancel(ec);
  }

  // The request as the handlers see it (HttpRequest.h): views into the parser and into
  // head_fields_, which checkHead filled for this request.
  HttpRequest requestView(const Request& req, std::string_view target) {
    HttpRequest r;
    auto method = req.method_string();
    r.method = httpMethodOf({method.data(), method.size()});
    r.version = req.version();
    r.setTarget(target);
    r.body = req.body();
    r.fields = head_fields_;
    r.socket = stream_.socket().native_handle();
    return r;
  }

  // The framing verdict on a parsed request head (gateway/HttpFraming.h).
  FramingVerdict checkHead(const Request& req) {
    head_fields_.clear();
    for (const auto& f : req) {
      auto name = f.name_string();
      auto value = f.value();
      head_fields_.push_back({{name.data(), name.size()}, {value.data(), value.size()}});
    }
    auto method = req.method_string();
    auto target = req.target();
    return checkRequestHead({{method.data(), method.size()}, {target.data(), target.size()}, req.version(),
                             head_fields_});
  }

  static std::string_view bufferView(const beast::flat_buffer& buffer) {
    return {static_cast<const char*>(buffer.data().data()), buffer.size()};
  }

  // Reads one request into `parser`; returns the bytes it consumed. Like
  // http::async_read, except that:
  // - with `until_header` it returns as soon as the head is parsed, so that the framing
  //   rules can refuse the request before its body is read (call again for the body);
  // - empty lines before the request line are skipped (RFC 9112 2.2), up to
  //   kMaxLeadingEmptyLineBytes;
  // - a complete but unparseable request head is an error at once (Beast keeps asking
  //   for more bytes when a request line is cut short, e.g. "HELLO WORLD X\r\n\r\n",
  //   which would hold a garbage request until the deadline).
  asio::awaitable<size_t> readRequest(beast::flat_buffer& buffer,
                                      http::request_parser<http::string_body>& parser,
                                      boost::system::error_code& ec, bool until_header) {
    size_t total = 0;
    too_many_empty_lines_ = false;
    size_t empty_lines = 0;
    bool started = parser.got_some();
    for (;;) {
      if (!started && buffer.size() > 0) {
        size_t skip = leadingEmptyLines(bufferView(buffer));
        buffer.consume(skip);
        total += skip;
        empty_lines += skip;
        if (empty_lines > kMaxLeadingEmptyLineBytes) {
          too_many_empty_lines_ = true;
          ec = http::error::bad_method;
          co_return total;
        }
        // A lone CR may be the first half of one more empty line: wait for the next byte.
        started = buffer.size() > 0 && bufferView(buffer) != "\r";
      }
      if (started && buffer.size() > 0) {
        size_t used = parser.put(buffer.data(), ec);
        buffer.consume(used);
        total += used;
        if (ec == http::error::need_more) {
          ec = {};
          if (!parser.is_header_done() && headEnded(buffer)) {
            ec = http::error::bad_version;
            co_return total;
          }
        } else if (ec || parser.is_done()) {
          co_return total;
        }
        if (until_header && parser.is_header_done()) co_return total;
        // Beast stops after the header: the body may already be in the buffer.
        if (used > 0 && buffer.size() > 0) continue;
      }
      size_t room = std::min<size_t>(buffer.max_size() - buffer.size(), 16 * 1024);
      if (room == 0) {
        ec = http::error::buffer_overflow;
        co_return total;
      }
      size_t n = co_await stream_.readSome(buffer.prepare(room), ec);
      if (ec == asio::error::eof) {
        if (!parser.got_some()) {
          ec = http::error::end_of_stream;
        } else {
          parser.put_eof(ec);
          if (!ec && !parser.is_done()) ec = http::error::partial_message;
        }
        co_return total;
      }
      if (ec) co_return total;
      buffer.commit(n);
    }
  }

  static bool headEnded(const beast::flat_buffer& buffer) {
    std::string_view data(static_cast<const char*>(buffer.data().data()), buffer.size());
    return data.find("\r\n\r\n") != std::string_view::npos;
  }

  asio::awaitable<void> close() {
    boost::system::error_code ec;
    // TLS: the last response may still be queued behind close_notify; its send is a
    // write like any other and gets the write deadline.
    expiresAfter(ctx_.config.gateway.write_timeout);
    if (!timed_out_) co_await stream_.shutdown(ec);  // FIN: close below
    deadline_ms = kNoDeadline;
    if (cut_) {
      resetOnClose(stream_.socket());  // a slowloris or a client that stopped reading
      ++ctx_.counters.resets;
    }
    stream_.socket().close(ec);
  }

  GatewayContext& ctx_;
  Stream& stream_;
  beast::flat_buffer buffer_;  // request bytes; empty between requests
  bool linked_ = true;
  bool idle_ = false;
  bool drain_closing_ = false;  // closed idle at a drain, not timed out
  PollHandler poll_;          // GET /v1/poll, and a held poll's wake-ups
  std::string ws_token_;      // the WebSocket upgrade's ?token=
  SseRequest sse_;
  std::vector<HeaderField> head_fields_;  // the request head's fields, for checkHead; reused
  bool too_many_empty_lines_ = false;     // readRequest's last error was that
  bool timed_out_ = false;
  bool cut_ = false;  // timed out mid-request: reset at the close
};

// A connection's place under the per-address limits (PeerLimits.h), given back when
// the connection ends.
class PeerSlot {
 public:
  PeerSlot(GatewayContext& ctx, const tcp::socket& socket) : ctx_(ctx) {
    if (!ctx.peers || !ctx.peers->enabled()) return;
    socklen_t len = sizeof peer_;
    if (::getpeername(const_cast<tcp::socket&>(socket).native_handle(), reinterpret_cast<sockaddr*>(&peer_), &len) != 0)
      return;  // gone already: the session finds out on its first read
    verdict_ = ctx.peers->admit(peer_, steadyNowMs(), counted_);
  }
  ~PeerSlot() {
    if (counted_) ctx_.peers->release(peer_);
  }
  PeerSlot(const PeerSlot&) = delete;
  PeerSlot& operator=(const PeerSlot&) = delete;

  bool admitted() const { return verdict_ == PeerLimits::Verdict::Admitted; }
  std::string_view why() const {
    return verdict_ == PeerLimits::Verdict::TooManyOpen ? "too many connections from your address"
                                                         : "too many new connections from your address";
  }

 private:
  GatewayContext& ctx_;
  sockaddr_storage peer_{};
  PeerLimits::Verdict verdict_ = PeerLimits::Verdict::Admitted;
  bool counted_ = false;
};

// Refuses a connection over the per-address limits without reading from it: plain
// HTTP gets a 503 with Retry-After in one non-blocking send; TLS (no handshake is spent
// on it) and whatever the send cannot take are reset.
void refusePeer(GatewayContext& ctx, tcp::socket& socket, std::string_view why) {
  ++ctx.counters.peer_limited;
  std::string body = fmt::format(R"({{"error":{{"code":"limit","message":"{}"}}}})", why);
  std::string reply = fmt::format(
      "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: {}\r\n"
      "Retry-After: 1\r\nConnection: close\r\n\r\n{}",
      body.size(), body);
  (void)::send(socket.native_handle(), reply.data(), reply.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
  boost::system::error_code ec;
  socket.shutdown(tcp::socket::shutdown_send, ec);
}

// One connection, from the first byte to the close: TLS handshake (TLS streams), HTTP
// requests, then a WebSocket or an event stream if a request asked for one. One
// coroutine frame for all of it: it stays for the connection's whole life.
template <typename Stream>
asio::awaitable<void> serveConnection(GatewayContext& ctx, tcp::socket socket) {
  PeerSlot slot(ctx, socket);
  if (!slot.admitted()) {
    if constexpr (std::is_same_v<Stream, TlsSocket>) {
      ++ctx.counters.peer_limited;
      resetOnClose(socket);
    } else {
      refusePeer(ctx, socket, slot.why());
    }
    co_return;  // the socket closes here
  }
  Stream stream(std::move(socket), ctx.tls);
  HttpSession<Stream> session(ctx, stream);
  if constexpr (std::is_same_v<Stream, TlsSocket>) {
    boost::system::error_code ec;
    session.expiresAfter(ctx.config.gateway.handshake_timeout);
    co_await stream.handshake(ec);
    if (ec) {
      ++ctx.counters.tls_failures;
      if (session.timedOut()) {
        ++ctx.counters.timeouts;
        ++ctx.counters.resets;
        resetOnClose(stream.socket());  // never finished its handshake: nothing to say
      }
      co_return;
    }
    ++ctx.counters.tls_handshakes;
    if (SSL_session_reused(stream.ssl())) ++ctx.counters.tls_resumed;
  }
  std::string leftover;
  Upgrade upgrade = co_await session.serve(leftover);
  session.releaseBuffer();  // what came after the upgrade request is in `leftover`
  if (upgrade == Upgrade::None) co_return;
  SseRequest sse = std::move(session.sseRequest());
  session.detach();  // the session that takes over joins the list itself
  if (upgrade == Upgrade::WebSocket)
    co_await serveWebSocket(ctx, stream, std::move(leftover), std::move(session.webSocketToken()));
  else co_await serveSse(ctx, stream, std::move(sse));
}

}  // namespace

void startSession(GatewayContext& ctx, tcp::socket socket, bool tls) {
  // TCP_NODELAY comes from the listening socket (see listenTcp). Non-blocking once, here:
  // Asio's first operation would set it, and our first direct read or write again.
  boost::system::error_code ec;
  socket.non_blocking(true, ec);
  auto on_done = [](std::exception_ptr e) {
    if (!e) return;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      logError("gateway", "session ended by exception: {}", ex.what());
    }
  };
  if (tls) asio::co_spawn(socket.get_executor(), serveConnection<TlsSocket>(ctx, std::move(socket)), on_done);
  else asio::co_spawn(socket.get_executor(), serveConnection<PlainSocket>(ctx, std::move(socket)), on_done);
}

void sweepDeadlines(GatewayContext& ctx) {
  int64_t now = steadyNowMs();
  for (SessionEntry* e = ctx.sessions; e; e = e->next)
    if (e->deadline_ms <= now) e->onDeadline();
}

}  // namespace dingo
