// fuzz_http_request: the gateway's HTTP/1.1 request reader. Beast's
// http::request_parser<string_body> with the gateway's default limits ([gateway]
// max_header_bytes and max_body_bytes), fed with put() as gateway/HttpSession.cpp's
// readRequest feeds it: in the pieces the socket delivers (their size is the input's
// first byte), a head that ended without parsing is an error at once, and the end of
// the input is the end of the stream. Keep-alive requests follow each other on one
// connection, each read with a fresh parser, until one fails or does not keep alive.
//
// Each complete request goes through checkRequest(): what the gateway relies on in a
// request that Beast accepted, and the framing rules of gateway/HttpFraming.h on its
// head. Where both accept a request they must agree on its body: a server that
// delimits a body otherwise than the parser that read it is a smuggling gap.
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "core/Config.h"
#include "gateway/HttpFraming.h"
#include "tests/fuzz/FuzzCheck.h"

namespace {

namespace beast = boost::beast;
namespace http = beast::http;
using Request = http::request<http::string_body>;

// The connection's bytes, handed out `piece` at a time like a socket's reads.
struct Socket {
  std::string_view rest;
  size_t piece;
  // Appends up to one piece to `buffer`; false at the end of the stream.
  bool read(beast::flat_buffer& buffer) {
    if (rest.empty()) return false;
    size_t n = std::min({rest.size(), piece, buffer.max_size() - buffer.size()});
    auto room = buffer.prepare(n);
    std::memcpy(room.data(), rest.data(), n);
    buffer.commit(n);
    rest.remove_prefix(n);
    return true;
  }
};

bool headEnded(const beast::flat_buffer& buffer) {
  std::string_view data(static_cast<const char*>(buffer.data().data()), buffer.size());
  return data.find("\r\n\r\n") != std::string_view::npos;
}

// HttpSession::readRequest without the coroutine: one request into `parser`.
boost::system::error_code readRequest(Socket& socket, beast::flat_buffer& buffer,
                                      http::request_parser<http::string_body>& parser) {
  boost::system::error_code ec;
  for (;;) {
    if (buffer.size() > 0) {
      size_t used = parser.put(buffer.data(), ec);
      FUZZ_CHECK(used <= buffer.size());
      buffer.consume(used);
      if (ec == http::error::need_more) {
        ec = {};
        if (!parser.is_header_done() && headEnded(buffer)) return http::error::bad_version;
      } else if (ec || parser.is_done()) {
        return ec;
      }
      if (used > 0 && buffer.size() > 0) continue;
    }
    if (buffer.size() == buffer.max_size()) return http::error::buffer_overflow;
    if (!socket.read(buffer)) {
      if (!parser.got_some()) return http::error::end_of_stream;
      parser.put_eof(ec);
      if (!ec && !parser.is_done()) ec = http::error::partial_message;
      return ec;
    }
  }
}

// What the gateway takes for granted in a request Beast accepted.
void checkRequest(const Request& req, const dingo::GatewayConfig& g) {
  FUZZ_CHECK(req.body().size() <= g.max_body_bytes);
  FUZZ_CHECK(req.version() == 10 || req.version() == 11);
  // The fields the sessions read: routing, upgrades, keep-alive, pub/sub parameters.
  std::string_view target(req.target().data(), req.target().size());
  std::string_view path = target.substr(0, target.find('?'));
  FUZZ_CHECK(path.size() <= target.size());
  for (const auto& field : req) (void)field.value().size();
  (void)req[http::field::host];
  (void)req[http::field::upgrade];
  (void)req[http::field::connection];
  (void)req.method_string();
  (void)req.keep_alive();
  (void)req.chunked();
  (void)req.has_content_length();

  auto view = [](boost::beast::string_view v) { return std::string_view(v.data(), v.size()); };
  std::vector<dingo::HeaderField> fields;
  for (const auto& field : req) fields.push_back({view(field.name_string()), view(field.value())});
  dingo::RequestHead head{view(req.method_string()), target, req.version(), fields};
  auto verdict = dingo::checkRequestHead(head);
  if (!verdict.ok()) {
    FUZZ_CHECK(verdict.status >= 400 && verdict.status <= 599 && !verdict.message.empty());
    return;
  }
  switch (verdict.body) {
    case dingo::BodyFraming::None: FUZZ_CHECK(req.body().empty() && !req.chunked()); break;
    case dingo::BodyFraming::ContentLength:
      FUZZ_CHECK(!req.chunked() && req.body().size() == verdict.content_length);
      break;
    case dingo::BodyFraming::Chunked: FUZZ_CHECK(req.chunked()); break;
  }
  FUZZ_CHECK(!verdict.target.empty());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  static const dingo::GatewayConfig g;  // the limits every deployment starts from
  Socket socket{dingo::fuzz::text(data + 1, size - 1), size_t{1} + data[0] % 64 * 37};
  beast::flat_buffer buffer;
  for (int requests = 0; requests < 16; ++requests) {
    http::request_parser<http::string_body> parser;
    parser.header_limit(static_cast<uint32_t>(g.max_header_bytes));
    parser.body_limit(g.max_body_bytes);
    auto ec = readRequest(socket, buffer, parser);
    if (ec) return 0;  // answered with an error (or nothing) and closed
    FUZZ_CHECK(parser.is_done());
    const Request& req = parser.get();
    checkRequest(req, g);
    if (!req.keep_alive()) return 0;
  }
  return 0;
}
