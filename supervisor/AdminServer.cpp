#include "supervisor/AdminServer.h"

#include <sys/socket.h>

#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

#include "core/Asio.h"
#include "core/Log.h"
#include "supervisor/EmbeddedFile.h"

namespace dingo {

namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

// The dashboard loads only its own files and talks only to its own origin; nothing
// inline, nothing framed.
constexpr const char* kPagePolicy =
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

// The request target without its query.
std::string_view pathOf(std::string_view target) { return target.substr(0, target.find('?')); }

}  // namespace

struct AdminServer::Impl : std::enable_shared_from_this<Impl> {
  // Small limits: the admin port is for Prometheus and operators, not for bulk traffic.
  static constexpr auto kReadTimeout = std::chrono::seconds(30);
  static constexpr auto kWriteTimeout = std::chrono::seconds(10);
  static constexpr uint32_t kMaxHeaderBytes = 8 * 1024;
  static constexpr size_t kMaxBufferBytes = 16 * 1024;
  // A status stream sends one event a second (a first one at once); an event it cannot
  // write within kStreamWriteTimeout cuts it. Its send buffer is kept small so that a
  // reader that stops reading fills it, and meets the deadline, within seconds rather
  // than after megabytes.
  static constexpr auto kStreamInterval = std::chrono::seconds(1);
  static constexpr auto kStreamWriteTimeout = std::chrono::seconds(5);
  static constexpr int kStreamSendBuffer = 16 * 1024;
  // Streams share one status event made at most this often, however many they are.
  static constexpr auto kEventReuse = std::chrono::milliseconds(500);
  // Tells EventSource how long to wait before it reconnects after a cut.
  static constexpr std::string_view kStreamPreamble = "retry: 2000\n\n";

  Impl(asio::io_context& io_, Handlers h) : io(io_), acceptor(io_), handlers(std::move(h)) {}

  asio::io_context& io;
  tcp::acceptor acceptor;
  Handlers handlers;
  bool closed = false;  // the server is gone: streams end at their next tick
  int streams = 0;
  uint64_t streams_total = 0;
  uint64_t streams_refused = 0;
  uint64_t streams_cut = 0;
  std::shared_ptr<const std::string> event;  // the last status event, shared by all streams
  std::chrono::steady_clock::time_point event_at;

  void accept() {
    acceptor.async_accept([self = shared_from_this()](boost::system::error_code ec, tcp::socket s) {
      if (ec == asio::error::operation_aborted) return;
      if (!ec) asio::co_spawn(self->io, self->serve(std::move(s)), asio::detached);
      self->accept();
    });
  }

  // True when a read failed because the request is not HTTP we accept (as opposed to the
  // peer closing, resetting or timing out, which get no answer).
  static bool isMalformed(const boost::system::error_code& ec) {
    static const auto& http_category = make_error_code(http::error::bad_target).category();
    if (ec == http::error::end_of_stream || ec == http::error::partial_message) return false;
    return ec.category() == http_category || ec == http::error::buffer_overflow;
  }

  // Answers a malformed request with a JSON 400 (431 for a head over the limit), then the
  // caller closes: after a framing error nothing that follows can be trusted.
  static asio::awaitable<void> rejectMalformed(beast::tcp_stream& stream, const boost::system::error_code& why) {
    bool too_large = why == http::error::header_limit || why == http::error::buffer_overflow;
    http::response<http::string_body> res;
    res.version(11);
    res.result(too_large ? http::status::request_header_fields_too_large : http::status::bad_request);
    res.keep_alive(false);
    res.set(http::field::content_type, "application/json");
    res.body() = too_large ? R"({"error":{"code":"too_large","message":"request header too large"}})"
                           : fmt::format(R"({{"error":{{"code":"bad_request","message":"malformed HTTP request: {}"}}}})",
                                         jsonEscape(why.message()));
    res.prepare_payload();
    boost::system::error_code ec;
    stream.expires_after(kWriteTimeout);
    co_await http::async_write(stream, res, asio::redirect_error(asio::use_awaitable, ec));
  }

  static void jsonError(http::response<http::string_body>& res, http::status status, std::string_view code,
                        std::string_view message) {
    res.result(status);
    res.set(http::field::content_type, "application/json");
    res.body() = fmt::format(R"({{"error":{{"code":"{}","message":"{}"}}}})", code, message);
  }

  std::shared_ptr<const std::string> currentEvent() {
    auto now = std::chrono::steady_clock::now();
    if (!event || now - event_at >= kEventReuse) {
      // One line of compact JSON: no newline can end the data field early.
      event = std::make_shared<const std::string>("event: status\ndata: " + handlers.status() + "\n\n");
      event_at = now;
    }
    return event;
  }

  // GET /v1/status/stream: the status document as an SSE event every kStreamInterval,
  // until the client goes, is too slow, or the server closes. The body ends with the
  // connection (no length, no chunks): nothing is read from the client meanwhile.
  asio::awaitable<void> streamStatus(beast::tcp_stream& stream, bool head) {
    boost::system::error_code ec;
    http::response<http::empty_body> res{http::status::ok, 11};
    res.keep_alive(false);
    res.set(http::field::content_type, "text/event-stream");
    res.set(http::field::cache_control, "no-store");
    res.set("X-Content-Type-Options", "nosniff");
    http::response_serializer<http::empty_body> sr{res};
    stream.expires_after(kWriteTimeout);
    co_await http::async_write_header(stream, sr, asio::redirect_error(asio::use_awaitable, ec));
    if (ec || head) co_return;

    ++streams;
    ++streams_total;
    struct Leave {
      Impl& impl;
      ~Leave() { --impl.streams; }
    } leave{*this};
    int sndbuf = kStreamSendBuffer;
    if (::setsockopt(stream.socket().native_handle(), SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf) != 0)
      logWarn("admin", "status stream: SO_SNDBUF: {}", errnoText(errno));
    stream.expires_after(kStreamWriteTimeout);
    co_await asio::async_write(stream, asio::buffer(kStreamPreamble), asio::redirect_error(asio::use_awaitable, ec));
    asio::steady_timer tick(io);
    while (!ec && !closed) {
      auto ev = currentEvent();
      stream.expires_after(kStreamWriteTimeout);
      co_await asio::async_write(stream, asio::buffer(*ev), asio::redirect_error(asio::use_awaitable, ec));
      if (ec) break;
      tick.expires_after(kStreamInterval);
      co_await tick.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
    if (ec == beast::error::timeout) {
      ++streams_cut;
      logInfo("admin", "status stream cut: its reader took more than {}s to take an event",
              std::chrono::duration_cast<std::chrono::seconds>(kStreamWriteTimeout).count());
    }
  }

  // Keep-alive HTTP/1.1 with a deadline on every read and write and small limits:
  // the admin port is for Prometheus and operators, not for bulk traffic.
  asio::awaitable<void> serve(tcp::socket socket) {
    auto self = shared_from_this();
    beast::tcp_stream stream(std::move(socket));
    beast::flat_buffer buffer(kMaxBufferBytes);
    boost::system::error_code ec;
    for (;;) {
      http::request_parser<http::empty_body> parser;
      parser.header_limit(kMaxHeaderBytes);
      stream.expires_after(kReadTimeout);
      // The head first: a request of another method is answered 405 whatever its body
      // (unread: the connection closes after the answer).
      co_await http::async_read_header(stream, buffer, parser, asio::redirect_error(asio::use_awaitable, ec));
      bool read_only = parser.get().method() == http::verb::get || parser.get().method() == http::verb::head;
      if (!ec && read_only && !parser.is_done())
        co_await http::async_read(stream, buffer, parser, asio::redirect_error(asio::use_awaitable, ec));
      if (ec) {
        if (isMalformed(ec)) co_await rejectMalformed(stream, ec);
        break;
      }
      if (closed) break;  // the handlers may be gone
      const auto& req = parser.get();
      bool head = req.method() == http::verb::head;
      std::string_view path = pathOf(std::string_view(req.target().data(), req.target().size()));
      http::response<http::string_body> res;
      res.version(11);
      res.keep_alive(req.keep_alive());
      res.set("X-Content-Type-Options", "nosniff");
      const EmbeddedFile* file = nullptr;
      for (const auto& f : dashboardFiles())
        if (f.path == path) file = &f;
      if (req.method() != http::verb::get && !head) {
        jsonError(res, http::status::method_not_allowed, "method_not_allowed",
                  "the admin listener is read-only: only GET and HEAD");
        res.set(http::field::allow, "GET, HEAD");
        res.keep_alive(false);
      } else if (path == "/metrics") {
        res.result(http::status::ok);
        res.set(http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
        res.body() = handlers.metrics();
      } else if (path == "/healthz") {
        auto [code, body] = handlers.health();
        res.result(static_cast<http::status>(code));
        res.set(http::field::content_type, "application/json");
        if (code == 503) res.set(http::field::retry_after, "1");
        res.body() = std::move(body);
      } else if (path == "/v1/status") {
        res.result(http::status::ok);
        res.set(http::field::content_type, "application/json");
        res.set(http::field::cache_control, "no-store");
        res.body() = handlers.status();
      } else if (path == "/v1/status/stream") {
        if (streams < kMaxStreams) {
          co_await streamStatus(stream, head);
          break;
        }
        ++streams_refused;
        jsonError(res, http::status::service_unavailable, "too_many_streams",
                  fmt::format("{} status streams are open already", kMaxStreams));
        res.set(http::field::retry_after, "5");
      } else if (file) {
        res.result(http::status::ok);
        res.set(http::field::content_type, beast::string_view(file->content_type.data(), file->content_type.size()));
        res.set(http::field::cache_control, "no-cache");
        res.set("Content-Security-Policy", kPagePolicy);
        res.set("X-Frame-Options", "DENY");
        res.set("Referrer-Policy", "no-referrer");
        res.body() = std::string(file->body);
      } else {
        jsonError(res, http::status::not_found, "not_found", "try /, /v1/status, /metrics or /healthz");
      }
      res.prepare_payload();
      if (head) res.body().clear();
      stream.expires_after(kWriteTimeout);
      co_await http::async_write(stream, res, asio::redirect_error(asio::use_awaitable, ec));
      if (ec || !res.keep_alive()) break;
    }
    stream.socket().shutdown(tcp::socket::shutdown_both, ec);
  }
};

AdminServer::AdminServer(asio::io_context& io, const SockAddr& address, Handlers handlers)
    : impl_(std::make_shared<Impl>(io, std::move(handlers))) {
  tcp::endpoint ep;
  ep.resize(address.len);
  std::memcpy(ep.data(), address.addr(), address.len);
  impl_->acceptor.open(ep.protocol());
  impl_->acceptor.set_option(tcp::acceptor::reuse_address(true));
  boost::system::error_code ec;
  impl_->acceptor.bind(ep, ec);
  if (!ec) impl_->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec)
    throw std::system_error(ec.value(), std::generic_category(),
                            "admin listener " + address.toString());
  logInfo("admin", "serving the dashboard, /v1/status, /metrics and /healthz on http://{}", address.toString());
  impl_->accept();
}

AdminServer::~AdminServer() {
  boost::system::error_code ec;
  impl_->acceptor.close(ec);
  impl_->closed = true;
}

nlohmann::json AdminServer::stats() const {
  return {{"streams", impl_->streams},
          {"streams_total", impl_->streams_total},
          {"streams_refused", impl_->streams_refused},
          {"streams_cut", impl_->streams_cut}};
}

}  // namespace dingo
