#include "supervisor/AdminServer.h"

#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "core/Asio.h"
#include "core/Log.h"

namespace dingo {

namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

struct AdminServer::Impl : std::enable_shared_from_this<Impl> {
  // Small limits: the admin port is for Prometheus and operators, not for bulk traffic.
  static constexpr auto kReadTimeout = std::chrono::seconds(30);
  static constexpr auto kWriteTimeout = std::chrono::seconds(10);
  static constexpr uint32_t kMaxHeaderBytes = 8 * 1024;
  static constexpr size_t kMaxBufferBytes = 16 * 1024;

  Impl(asio::io_context& io_, MetricsFn m, HealthFn h)
      : io(io_), acceptor(io_), metrics(std::move(m)), health(std::move(h)) {}

  asio::io_context& io;
  tcp::acceptor acceptor;
  MetricsFn metrics;
  HealthFn health;

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
      co_await http::async_read(stream, buffer, parser, asio::redirect_error(asio::use_awaitable, ec));
      if (ec) {
        if (isMalformed(ec)) co_await rejectMalformed(stream, ec);
        break;
      }
      const auto& req = parser.get();
      http::response<http::string_body> res;
      res.version(11);
      res.keep_alive(req.keep_alive());
      std::string target(req.target());
      if (req.method() != http::verb::get && req.method() != http::verb::head) {
        res.result(http::status::method_not_allowed);
        res.set(http::field::allow, "GET, HEAD");
        res.set(http::field::content_type, "application/json");
        res.body() = R"({"error":{"code":"bad_request","message":"only GET and HEAD"}})";
      } else if (target == "/metrics") {
        res.result(http::status::ok);
        res.set(http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
        res.body() = metrics();
      } else if (target == "/healthz") {
        auto [code, body] = health();
        res.result(static_cast<http::status>(code));
        res.set(http::field::content_type, "application/json");
        if (code == 503) res.set(http::field::retry_after, "1");
        res.body() = std::move(body);
      } else {
        res.result(http::status::not_found);
        res.set(http::field::content_type, "application/json");
        res.body() = R"({"error":{"code":"not_found","message":"try /metrics or /healthz"}})";
      }
      res.prepare_payload();
      if (req.method() == http::verb::head) res.body().clear();
      stream.expires_after(kWriteTimeout);
      co_await http::async_write(stream, res, asio::redirect_error(asio::use_awaitable, ec));
      if (ec || !res.keep_alive()) break;
    }
    stream.socket().shutdown(tcp::socket::shutdown_both, ec);
  }
};

AdminServer::AdminServer(asio::io_context& io, const SockAddr& address, MetricsFn metrics,
                         HealthFn health)
    : impl_(std::make_shared<Impl>(io, std::move(metrics), std::move(health))) {
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
  logInfo("admin", "serving /metrics and /healthz on http://{}", address.toString());
  impl_->accept();
}

AdminServer::~AdminServer() {
  boost::system::error_code ec;
  impl_->acceptor.close(ec);
}

}  // namespace dingo
