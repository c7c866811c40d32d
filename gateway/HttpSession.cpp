#include "gateway/HttpSession.h"

#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>

#include "core/Log.h"
#include "gateway/Transport.h"

namespace dingo {

namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using asio::redirect_error;
using asio::use_awaitable;

int64_t steadyNowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

namespace {

using Request = http::request<http::string_body>;

// What a handler answers. Serialised by hand into one buffer: the responses are small
// and few-shaped, and Beast's generic serializer costs more than the rest of a request.
struct Reply {
  int status = 200;
  std::string_view content_type = "application/json";
  std::string body;
  std::string extra_headers;  // complete "Name: value\r\n" lines
};

std::string_view reason(int status) {
  switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 413: return "Payload Too Large";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
  }
  return "Unknown";
}

void serialize(const Reply& r, bool keep_alive, bool head_only, std::string& out) {
  out.clear();
  fmt::format_to(std::back_inserter(out), "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n",
                 r.status, reason(r.status), r.content_type, r.body.size());
  if (!keep_alive) out += "Connection: close\r\n";
  out += r.extra_headers;
  out += "\r\n";
  if (!head_only) out += r.body;
}

void error(Reply& r, int status, std::string_view code, std::string_view message) {
  r.status = status;
  r.content_type = "application/json";
  r.body = fmt::format(R"({{"error":{{"code":"{}","message":"{}"}}}})", code, jsonEscape(message));
}

// Answers one request. Later capabilities (publish, history, WebSocket) route here too.
void route(const Request& req, Reply& r, GatewayContext& ctx) {
  std::string_view target(req.target().data(), req.target().size());
  std::string_view path = target.substr(0, target.find('?'));
  bool get = req.method() == http::verb::get || req.method() == http::verb::head;
  if (path == "/healthz") {
    if (!get) {
      r.extra_headers = "Allow: GET, HEAD\r\n";
      error(r, 405, "bad_request", "/healthz answers GET and HEAD");
      return;
    }
    r.body = fmt::format(R"({{"status":"ok","pid":{},"worker":{}}})", ctx.pid, ctx.worker_id);
    return;
  }
  error(r, 404, "not_found", fmt::format("no resource at {}", path.substr(0, 200)));
}

// Maps a request-read failure to the answer the client gets before we close.
bool parseErrorReply(const boost::system::error_code& ec, Reply& r) {
  static const auto& http_category = boost::system::error_code(http::error::bad_target).category();
  if (ec == http::error::end_of_stream || ec == http::error::partial_message) return false;
  if (ec == http::error::header_limit) {
    error(r, 431, "too_large", "request header too large");
    return true;
  }
  if (ec == http::error::body_limit) {
    error(r, 413, "too_large", "request body too large");
    return true;
  }
  if (ec.category() == http_category || ec == http::error::buffer_overflow) {
    error(r, 400, "bad_request", fmt::format("malformed HTTP request: {}", ec.message()));
    return true;
  }
  return false;
}

template <typename Stream>
class HttpSession final : public SessionEntry {
 public:
  HttpSession(GatewayContext& ctx, Stream& stream) : ctx_(ctx), stream_(stream) { ctx_.link(this); }
  ~HttpSession() override { ctx_.unlink(this); }

  void onDrain() override {
    if (idle_) cancel();
  }

  void onDeadline() override {
    timed_out_ = true;
    deadline_ms = kNoDeadline;
    cancel();
  }

  void expiresAfter(Duration d) { deadline_ms = steadyNowMs() + d.count(); }
  bool timedOut() const { return timed_out_; }

  asio::awaitable<void> serve() {
    const GatewayConfig& g = ctx_.config.gateway;
    beast::flat_buffer buffer(g.max_header_bytes + g.max_body_bytes);
    std::string out;
    boost::system::error_code ec;
    for (bool first = true;; first = false) {
      if (!first && buffer.size() == 0) {
        // Between requests: wait for the first byte under the keep-alive idle deadline.
        if (ctx_.draining) break;
        idle_ = true;
        expiresAfter(g.idle_timeout);
        size_t n = co_await stream_.readSome(buffer.prepare(1024), ec);
        idle_ = false;
        if (ec) break;
        buffer.commit(n);
      }

      http::request_parser<http::string_body> parser;
      parser.header_limit(static_cast<uint32_t>(g.max_header_bytes));
      parser.body_limit(g.max_body_bytes);
      expiresAfter(g.header_timeout);
      size_t got = co_await readRequest(buffer, parser, ec);
      ctx_.counters.bytes_in += got;
      Reply reply;
      bool keep_alive = false;
      bool head_only = false;
      if (ec) {
        if (timed_out_) break;  // the header deadline: close without a word
        if (!parseErrorReply(ec, reply)) break;  // end of stream, reset, ...
        ++ctx_.counters.bad_requests;
      } else {
        const Request& req = parser.get();
        ++ctx_.counters.requests;
        route(req, reply, ctx_);
        keep_alive = req.keep_alive() && !ctx_.draining;
        head_only = req.method() == http::verb::head;
      }
      serialize(reply, keep_alive, head_only, out);
      expiresAfter(g.write_timeout);
      // The last response may wait in the TLS queue for close_notify (one send for both).
      ctx_.counters.bytes_out += co_await stream_.writeAll(asio::buffer(out), ec, keep_alive);
      if (ec || !keep_alive) break;
    }
    if (timed_out_) ++ctx_.counters.timeouts;
    co_await close();
  }

 private:
  void cancel() {
    boost::system::error_code ec;
    stream_.socket().cancel(ec);
  }

  // Reads one request into `parser`; returns the bytes it consumed. Like
  // http::async_read, except that a complete but unparseable request head is an error
  // at once (Beast keeps asking for more bytes when a request line is cut short, e.g.
  // "HELLO WORLD X\r\n\r\n", which would hold a garbage request until the deadline).
  asio::awaitable<size_t> readRequest(beast::flat_buffer& buffer,
                                      http::request_parser<http::string_body>& parser,
                                      boost::system::error_code& ec) {
    size_t total = 0;
    for (;;) {
      if (buffer.size() > 0) {
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
    stream_.socket().close(ec);
  }

  GatewayContext& ctx_;
  Stream& stream_;
  bool idle_ = false;
  bool timed_out_ = false;
};

asio::awaitable<void> servePlain(GatewayContext& ctx, tcp::socket socket) {
  PlainSocket stream(std::move(socket));
  HttpSession<PlainSocket> session(ctx, stream);
  co_await session.serve();
}

asio::awaitable<void> serveTls(GatewayContext& ctx, tcp::socket socket) {
  TlsSocket stream(std::move(socket), ctx.tls);
  HttpSession<TlsSocket> session(ctx, stream);
  boost::system::error_code ec;
  session.expiresAfter(ctx.config.gateway.handshake_timeout);
  co_await stream.handshake(ec);
  if (ec) {
    ++ctx.counters.tls_failures;
    if (session.timedOut()) ++ctx.counters.timeouts;
    co_return;
  }
  ++ctx.counters.tls_handshakes;
  if (SSL_session_reused(stream.ssl())) ++ctx.counters.tls_resumed;
  co_await session.serve();
}

}  // namespace

void startSession(GatewayContext& ctx, tcp::socket socket, bool tls) {
  // TCP_NODELAY comes from the listening socket (see listenTcp).
  auto on_done = [](std::exception_ptr e) {
    if (!e) return;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      logError("gateway", "session ended by exception: {}", ex.what());
    }
  };
  if (tls) asio::co_spawn(socket.get_executor(), serveTls(ctx, std::move(socket)), on_done);
  else asio::co_spawn(socket.get_executor(), servePlain(ctx, std::move(socket)), on_done);
}

void sweepDeadlines(GatewayContext& ctx) {
  int64_t now = steadyNowMs();
  for (SessionEntry* e = ctx.sessions; e; e = e->next)
    if (e->deadline_ms <= now) e->onDeadline();
}

}  // namespace dingo
