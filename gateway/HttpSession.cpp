#include "gateway/HttpSession.h"

#include <unistd.h>

#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include "core/Log.h"

namespace dingo {

namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using asio::redirect_error;
using asio::use_awaitable;

namespace {

using Request = http::request<http::string_body>;
using Response = http::response<http::string_body>;

void jsonResponse(Response& res, http::status status, std::string body) {
  res.result(status);
  res.set(http::field::content_type, "application/json");
  res.body() = std::move(body);
}

void errorResponse(Response& res, http::status status, std::string_view code,
                   std::string_view message) {
  jsonResponse(res, status,
               fmt::format(R"({{"error":{{"code":"{}","message":"{}"}}}})", code,
                           jsonEscape(message)));
}

// Answers one request. Later capabilities (publish, history, WebSocket) route here too.
void route(const Request& req, Response& res, GatewayContext& ctx) {
  std::string_view target(req.target().data(), req.target().size());
  std::string_view path = target.substr(0, target.find('?'));
  bool get = req.method() == http::verb::get || req.method() == http::verb::head;
  if (path == "/healthz") {
    if (!get) {
      res.set(http::field::allow, "GET, HEAD");
      errorResponse(res, http::status::method_not_allowed, "bad_request",
                    "/healthz answers GET and HEAD");
      return;
    }
    jsonResponse(res, http::status::ok,
                 fmt::format(R"({{"status":"ok","pid":{},"worker":{}}})", ::getpid(), ctx.worker_id));
    return;
  }
  errorResponse(res, http::status::not_found, "not_found",
                fmt::format("no resource at {}", path.substr(0, 200)));
}

// Maps a request-read failure to the answer the client gets before we close.
bool parseErrorResponse(const boost::system::error_code& ec, Response& res) {
  if (ec == http::error::header_limit) {
    errorResponse(res, http::status::request_header_fields_too_large, "too_large",
                  "request header too large");
    return true;
  }
  if (ec == http::error::body_limit) {
    errorResponse(res, http::status::payload_too_large, "too_large", "request body too large");
    return true;
  }
  static const auto& http_category = boost::system::error_code(http::error::bad_target).category();
  if (ec == http::error::end_of_stream || ec == http::error::partial_message) return false;
  if (ec.category() == http_category || ec == http::error::buffer_overflow) {
    errorResponse(res, http::status::bad_request, "bad_request",
                  fmt::format("malformed HTTP request: {}", ec.message()));
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
    if (idle_) beast::get_lowest_layer(stream_).cancel();
  }

  asio::awaitable<void> serve() {
    const GatewayConfig& g = ctx_.config.gateway;
    auto& lowest = beast::get_lowest_layer(stream_);
    beast::flat_buffer buffer(g.max_header_bytes + g.max_body_bytes);
    boost::system::error_code ec;
    for (bool first = true;; first = false) {
      if (!first && buffer.size() == 0) {
        // Between requests: wait for the first byte under the keep-alive idle deadline.
        if (ctx_.draining) break;
        idle_ = true;
        lowest.expires_after(g.idle_timeout);
        size_t n = co_await stream_.async_read_some(buffer.prepare(1024),
                                                    redirect_error(use_awaitable, ec));
        idle_ = false;
        if (ec) {
          if (ec == beast::error::timeout) ++ctx_.counters.timeouts;
          break;
        }
        buffer.commit(n);
      }

      http::request_parser<http::string_body> parser;
      parser.header_limit(static_cast<uint32_t>(g.max_header_bytes));
      parser.body_limit(g.max_body_bytes);
      lowest.expires_after(g.header_timeout);
      size_t got = co_await readRequest(buffer, parser, ec);
      ctx_.counters.bytes_in += got;
      Response res;
      res.version(11);
      if (ec) {
        if (ec == beast::error::timeout) {
          ++ctx_.counters.timeouts;
          break;  // the header deadline: close without a word
        }
        if (!parseErrorResponse(ec, res)) break;  // end of stream, reset, ...
        ++ctx_.counters.bad_requests;
        res.keep_alive(false);
        res.prepare_payload();
        lowest.expires_after(g.write_timeout);
        ctx_.counters.bytes_out +=
            co_await http::async_write(stream_, res, redirect_error(use_awaitable, ec));
        break;
      }

      const Request& req = parser.get();
      ++ctx_.counters.requests;
      route(req, res, ctx_);
      res.keep_alive(req.keep_alive() && !ctx_.draining);
      res.prepare_payload();
      if (req.method() == http::verb::head) res.body().clear();
      lowest.expires_after(g.write_timeout);
      ctx_.counters.bytes_out +=
          co_await http::async_write(stream_, res, redirect_error(use_awaitable, ec));
      if (ec || !res.keep_alive()) break;
    }
    co_await close();
  }

 private:
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
      size_t n = co_await stream_.async_read_some(buffer.prepare(room), redirect_error(use_awaitable, ec));
      if (ec == asio::error::eof || ec == ssl::error::stream_truncated) {
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
    auto& lowest = beast::get_lowest_layer(stream_);
    if constexpr (!std::is_same_v<Stream, beast::tcp_stream>) {
      // Send close_notify; wait briefly for the peer's, which most clients never send.
      lowest.expires_after(std::chrono::seconds(1));
      co_await stream_.async_shutdown(redirect_error(use_awaitable, ec));
    }
    lowest.socket().shutdown(tcp::socket::shutdown_send, ec);
    lowest.close();
  }

  GatewayContext& ctx_;
  Stream& stream_;
  bool idle_ = false;
};

asio::awaitable<void> servePlain(GatewayContext& ctx, tcp::socket socket) {
  beast::tcp_stream stream(std::move(socket));
  HttpSession<beast::tcp_stream> session(ctx, stream);
  co_await session.serve();
}

asio::awaitable<void> serveTls(GatewayContext& ctx, tcp::socket socket) {
  beast::ssl_stream<beast::tcp_stream> stream(beast::tcp_stream(std::move(socket)), *ctx.tls);
  HttpSession<beast::ssl_stream<beast::tcp_stream>> session(ctx, stream);
  boost::system::error_code ec;
  beast::get_lowest_layer(stream).expires_after(ctx.config.gateway.handshake_timeout);
  co_await stream.async_handshake(ssl::stream_base::server, redirect_error(use_awaitable, ec));
  if (ec) {
    ++ctx.counters.tls_failures;
    if (ec == beast::error::timeout) ++ctx.counters.timeouts;
    co_return;
  }
  ++ctx.counters.tls_handshakes;
  if (SSL_session_reused(stream.native_handle())) ++ctx.counters.tls_resumed;
  co_await session.serve();
}

}  // namespace

void startSession(GatewayContext& ctx, tcp::socket socket, bool tls) {
  boost::system::error_code ec;
  socket.set_option(tcp::no_delay(true), ec);
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

}  // namespace dingo
