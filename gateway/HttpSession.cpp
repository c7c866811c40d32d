#include "gateway/HttpSession.h"

#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>

#include <charconv>
#include <nlohmann/json.hpp>

#include "core/Hash.h"
#include "core/Hub.h"
#include "core/Json.h"
#include "core/Jwt.h"
#include "core/Log.h"
#include "core/Net.h"
#include "core/Secret.h"
#include "core/WebSocket.h"
#include "core/Cursor.h"
#include "gateway/Auth.h"
#include "gateway/Broker.h"
#include "gateway/HttpFraming.h"
#include "gateway/PeerLimits.h"
#include "gateway/Polling.h"
#include "gateway/PubSub.h"
#include "gateway/SseSession.h"
#include "gateway/StaticFiles.h"
#include "gateway/Transport.h"
#include "gateway/UserRegistry.h"
#include "gateway/WsSession.h"

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
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 413: return "Payload Too Large";
    case 417: return "Expectation Failed";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
  }
  return "Unknown";
}

void serialize(const Reply& r, bool keep_alive, bool head_only, std::string& out) {
  out.clear();
  // nosniff: a browser takes a JSON answer (which may echo the request's path) for
  // nothing else, such as HTML.
  fmt::format_to(std::back_inserter(out), "HTTP/1.1 {} {}\r\nContent-Type: {}\r\n", r.status, reason(r.status),
                 r.content_type);
  // A 304's Content-Length would have to be the full body's (RFC 9110 8.6): leave it out.
  if (r.status != 304) fmt::format_to(std::back_inserter(out), "Content-Length: {}\r\n", r.body.size());
  out += "X-Content-Type-Options: nosniff\r\n";
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

// Answers a request for anything outside /v1/. `target` is in origin-form.
void route(const Request& req, std::string_view target, Reply& r, GatewayContext& ctx) {
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

// GET /v1/nodes: {"version":V,"ttl_s":S,"nodes":[{"host":H,"port":P,"tls":B}...]}, the list
// nsclient keeps as its fallback. Under the Redis engine, the document the hub sent
// (`from_hub`: every live host's endpoints, supervisor/NodeRegistry.h). Otherwise
// [nodes] endpoints, else this gateway's listeners (a wildcard listener is reported with
// the address the client reached). The version is [nodes] version, else a hash of the
// list: clients compare it to see a change.
void nodes(const Request& req, Reply& r, const Config& cfg, const std::string& from_hub, const SockAddr& local) {
  if (req.method() != http::verb::get && req.method() != http::verb::head) {
    r.extra_headers = "Allow: GET, HEAD\r\n";
    error(r, 405, "bad_request", "/v1/nodes answers GET and HEAD");
    return;
  }
  if (!from_hub.empty()) {
    r.body = from_hub;
    return;
  }
  nlohmann::json list = nlohmann::json::array();
  auto add = [&](const SockAddr& a, bool tls) {
    list.push_back({{"host", a.host()}, {"port", a.port()}, {"tls", tls}});
  };
  if (!cfg.nodes.endpoints.empty()) {
    for (const auto& e : cfg.nodes.endpoints) add(*parseSockAddr(e.address), e.tls);
  } else {
    for (const auto& l : cfg.listen) {
      SockAddr a = *parseSockAddr(l.address);
      std::string host = a.host();
      if (host == "0.0.0.0" || host == "::") {
        SockAddr reached = local;
        if (reached.family() == AF_INET6) reinterpret_cast<sockaddr_in6*>(&reached.storage)->sin6_port = htons(a.port());
        else reinterpret_cast<sockaddr_in*>(&reached.storage)->sin_port = htons(a.port());
        a = reached;
      }
      add(a, l.tls);
    }
  }
  std::string text = list.dump();
  uint64_t version = cfg.nodes.version;
  if (version == 0) version = (fnv1a64(text) >> 12) | 1;  // fits a JSON number exactly (52 bits), never 0
  r.body = fmt::format(R"({{"version":{},"ttl_s":{},"nodes":{}}})", version,
                       std::chrono::duration_cast<std::chrono::seconds>(cfg.nodes.ttl).count(), text);
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

// ---- pub/sub over HTTP ------------------------------------------------------------------

bool iequals(std::string_view a, std::string_view b) {
  return beast::iequals(beast::string_view(a.data(), a.size()), beast::string_view(b.data(), b.size()));
}

int hexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Percent-decoding; nullopt on a malformed escape. `plus` turns '+' into ' ' (queries).
std::optional<std::string> percentDecode(std::string_view in, bool plus) {
  std::string out;
  out.reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    char c = in[i];
    if (c == '%') {
      if (i + 2 >= in.size()) return std::nullopt;
      int hi = hexValue(in[i + 1]), lo = hexValue(in[i + 2]);
      if (hi < 0 || lo < 0) return std::nullopt;
      out += static_cast<char>(hi * 16 + lo);
      i += 2;
    } else {
      out += plus && c == '+' ? ' ' : c;
    }
  }
  return out;
}

// Every value of `key` in a query string.
std::vector<std::string_view> queryValues(std::string_view query, std::string_view key) {
  std::vector<std::string_view> out;
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    size_t eq = pair.find('=');
    if (pair.substr(0, eq) == key) out.push_back(eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1));
  }
  return out;
}

// The value of the first `key` in a query string ("a=1&b=2"), percent-decoded; nullopt
// when absent, or when malformed (then `bad` is set).
std::optional<std::string> queryParam(std::string_view query, std::string_view key, bool& bad) {
  auto values = queryValues(query, key);
  if (values.empty()) return std::nullopt;
  auto v = percentDecode(values.front(), true);
  if (!v) bad = true;
  return v;
}

bool hasToken(std::string_view header, std::string_view token) {
  while (!header.empty()) {
    size_t comma = header.find(',');
    std::string_view t = header.substr(0, comma);
    header = comma == std::string_view::npos ? std::string_view() : header.substr(comma + 1);
    while (!t.empty() && (t.front() == ' ' || t.front() == '\t')) t.remove_prefix(1);
    while (!t.empty() && (t.back() == ' ' || t.back() == '\t')) t.remove_suffix(1);
    if (iequals(t, token)) return true;
  }
  return false;
}

std::string_view headerOf(const Request& req, http::field f) {
  auto v = req[f];
  return {v.data(), v.size()};
}

std::string_view headerOf(const Request& req, std::string_view name) {
  auto v = req[beast::string_view(name.data(), name.size())];
  return {v.data(), v.size()};
}

void unavailable(Reply& r, std::string_view why) {
  error(r, 503, "unavailable", why);
  r.extra_headers = "Retry-After: 1\r\n";
}

// Waits for a broker callback. The broker always calls back (with an error when it
// goes away), and the result resumes this coroutine from the event loop, not from
// inside the broker.
template <typename T, typename Start>
asio::awaitable<std::pair<std::optional<T>, std::string>> awaitBroker(Start start) {
  auto executor = co_await asio::this_coro::executor;
  asio::steady_timer timer(executor, asio::steady_timer::time_point::max());
  std::optional<T> value;
  std::string error_text;
  bool done = false;
  start([&](const T* v, std::string_view err) {
    if (v) value = *v;
    else error_text.assign(err);
    done = true;
    timer.cancel();
  });
  if (!done) {
    boost::system::error_code ec;
    co_await timer.async_wait(redirect_error(use_awaitable, ec));
  }
  co_return std::make_pair(std::move(value), std::move(error_text));
}

// What /v1/poll and /v1/sse are asked for: channels, and where each one starts.
struct StreamRequest {
  std::vector<std::string> channels;
  std::vector<std::optional<Position>> from;  // per channel: the client's position, if any
  std::optional<Cursor> cursor;
  bool resuming = false;  // a cursor or a since was given
};

// Room in a request head for what is not the query and the cursor: request line,
// Host, User-Agent and the like.
constexpr size_t kRequestHeadSlack = 512;

// channel=C (repeatable), cursor=K (or `last_event_id`), since=C@POS (repeatable, to
// come from WebSocket positions). False with an error reply when anything is bad.
bool parseStreamRequest(std::string_view query, std::string_view last_event_id, const GatewayContext& ctx,
                        StreamRequest& req, Reply& r) {
  for (std::string_view raw : queryValues(query, "channel")) {
    auto name = percentDecode(raw, true);
    if (!name || !validChannel(*name)) {
      error(r, 400, "bad_request", "a channel is 1 to 255 characters of [A-Za-z0-9_.:/-] starting with /");
      return false;
    }
    if (std::find(req.channels.begin(), req.channels.end(), *name) == req.channels.end())
      req.channels.push_back(std::move(*name));
  }
  if (req.channels.empty() || req.channels.size() > ctx.config.gateway.max_channels) {
    error(r, 400, "bad_request", fmt::format("name 1 to {} channels with channel=", ctx.config.gateway.max_channels));
    return false;
  }
  // The cursor carries every channel's position and comes back in the next request head
  // beside the channel list: refuse now what could not be resumed exactly later.
  size_t cursor_size = CursorCodec::encodedSize(req.channels, Position::kEpochLength);
  size_t channel_list = 0;
  for (std::string_view raw : queryValues(query, "channel")) channel_list += raw.size() + 9;  // "channel=" "&"
  if (cursor_size + channel_list + kRequestHeadSlack > ctx.config.gateway.max_header_bytes) {
    error(r, 413, "too_large",
          fmt::format("{} channels need a cursor of {} bytes, which with the channel list would not fit in "
                      "max_header_bytes ({}); name fewer channels",
                      req.channels.size(), cursor_size, ctx.config.gateway.max_header_bytes));
    return false;
  }
  req.from.assign(req.channels.size(), std::nullopt);
  auto cursors = queryValues(query, "cursor");
  std::string cursor_text;
  if (!cursors.empty()) cursor_text = percentDecode(cursors.front(), true).value_or("!");
  else cursor_text.assign(last_event_id);
  if (!cursor_text.empty()) {
    req.cursor = ctx.cursors->decode(cursor_text);
    if (!req.cursor) {
      error(r, 400, "bad_request", "the cursor is malformed or was not made by this service");
      return false;
    }
    for (size_t i = 0; i < req.channels.size(); ++i)
      if (const Position* p = req.cursor->find(req.channels[i])) req.from[i] = *p;
    req.resuming = true;
  }
  for (std::string_view raw : queryValues(query, "since")) {
    auto text = percentDecode(raw, true);
    size_t at = text ? text->rfind('@') : std::string::npos;
    std::optional<Position> pos;
    if (at != std::string::npos) pos = Position::parse(std::string_view(*text).substr(at + 1));
    auto it = pos ? std::find(req.channels.begin(), req.channels.end(), text->substr(0, at)) : req.channels.end();
    if (it == req.channels.end()) {
      error(r, 400, "bad_request", "since is CHANNEL@EPOCH.SEQ, for a channel named with channel=");
      return false;
    }
    req.from[static_cast<size_t>(it - req.channels.begin())] = pos;
    req.resuming = true;
  }
  return true;
}


void catchupJson(std::string& out, std::string_view channel, const Catchup& c) {
  fmt::format_to(std::back_inserter(out), R"({{"channel":"{}","position":"{}","recovered":{},"messages":[)", channel,
                 c.position.toString(), c.recovered);
  for (size_t i = 0; i < c.messages.size(); ++i) {
    if (i) out += ',';
    appendMessageJson(out, channel, {c.position.epoch, c.messages[i].seq}, *c.messages[i].data);
  }
  out += "]}";
}

// What a connection becomes after its last HTTP request.
enum class Upgrade { None, WebSocket, Sse };

template <typename Stream>
class HttpSession final : public SessionEntry, public UserSession {
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
    if (hold_timer_) hold_timer_->cancel();  // a held poll answers at once
  }

  // A held poll of a user an operator disconnects answers at once, with 403.
  void disconnectUser(std::string_view reason) override {
    disconnected_ = reason.empty() ? "disconnected by an operator" : std::string(reason);
    if (hold_timer_) hold_timer_->cancel();
  }

  void onDeadline() override {
    timed_out_ = true;
    // Mid-request (a slowloris, a client that stopped reading): reset. Between requests
    // the client did nothing wrong: an idle keep-alive ends with a FIN.
    cut_ = !idle_;
    deadline_ms = kNoDeadline;
    cancel();
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
        size_t n = co_await stream_.readSome(buffer.prepare(1024), ec);
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
        if (too_many_empty_lines_) error(reply, 400, "bad_request", "too many empty lines before the request line");
        else if (!parseErrorReply(ec, reply)) break;  // end of stream, reset, ...
        ++ctx_.counters.bad_requests;
      } else if (!verdict.ok()) {
        const Request& req = parser.get();
        ++ctx_.counters.requests;
        ++ctx_.counters.bad_requests;
        error(reply, verdict.status, "bad_request", verdict.message);
        keep_alive = !verdict.close && req.keep_alive() && !ctx_.draining;
        head_only = req.method() == http::verb::head;
      } else {
        const Request& req = parser.get();
        ++ctx_.counters.requests;
        std::string_view target = verdict.target;
        std::string_view path = target.substr(0, target.find('?'));
        if (path == "/v1/ws") {
          std::string accept;
          if (webSocketHandshake(req, reply, accept)) {
            out = fmt::format(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Accept: {}\r\n\r\n",
                accept);
            expiresAfter(g.write_timeout);
            ctx_.counters.bytes_out += co_await stream_.writeAll(asio::buffer(out), ec);
            if (ec) break;
            leftover.assign(static_cast<const char*>(buffer.data().data()), buffer.size());
            bool bad = false;
            ws_token_ = queryParam(queryOf(target), "token", bad).value_or("");
            deadline_ms = kNoDeadline;
            co_return Upgrade::WebSocket;
          }
        } else if (path == "/v1/sse") {
          if (sseHandshake(req, target, reply)) {
            deadline_ms = kNoDeadline;
            co_return Upgrade::Sse;
          }
        } else if (path == "/v1/poll") {
          co_await poll(req, target, reply);
        } else if (path == "/v1/nodes") {
          nodes(req, reply, ctx_.config, ctx_.nodes_document, localAddress(stream_.socket().native_handle()));
        } else if (const EmbeddedFile* file = findEmbeddedFile(path)) {
          StaticAnswer a = answerStatic(*file, req.method() == http::verb::get || req.method() == http::verb::head,
                                        headerOf(req, http::field::if_none_match));
          reply = Reply{a.status, a.content_type, std::string(a.body), std::move(a.headers)};
        } else if (path.starts_with("/v1/")) {
          co_await routePubSub(req, target, reply);
        } else {
          route(req, target, reply, ctx_);
        }
        keep_alive = req.keep_alive() && !ctx_.draining;
        head_only = req.method() == http::verb::head;
      }
      serialize(reply, keep_alive, head_only, out);
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

  // Checks an upgrade request (RFC 6455 4.2.1). True with the accept key, or false with
  // the error reply.
  bool webSocketHandshake(const Request& req, Reply& r, std::string& accept) {
    if (req.method() != http::verb::get) {
      r.extra_headers = "Allow: GET\r\n";
      error(r, 405, "bad_request", "/v1/ws answers GET");
      return false;
    }
    if (req.version() < 11) {  // RFC 6455 4.1: HTTP/1.1 or higher
      error(r, 400, "bad_request", "a WebSocket upgrade needs HTTP/1.1");
      return false;
    }
    std::string_view key = headerOf(req, http::field::sec_websocket_key);
    if (!hasToken(headerOf(req, http::field::upgrade), "websocket") ||
        !hasToken(headerOf(req, http::field::connection), "upgrade") || key.empty()) {
      error(r, 400, "bad_request", "a WebSocket upgrade needs Upgrade: websocket, Connection: Upgrade and Sec-WebSocket-Key");
      return false;
    }
    if (req.count(http::field::sec_websocket_key) != 1 || !ws::validClientKey(key)) {
      error(r, 400, "bad_request", "Sec-WebSocket-Key must be one base64 value of 16 bytes");
      return false;
    }
    if (headerOf(req, http::field::sec_websocket_version) != "13") {
      r.extra_headers = "Sec-WebSocket-Version: 13\r\n";
      error(r, 400, "bad_request", "only WebSocket version 13 is supported");
      return false;
    }
    if (ctx_.draining) {
      unavailable(r, "this worker is draining");
      return false;
    }
    accept = ws::acceptKey(key);
    return true;
  }

  // Checks GET /v1/sse; true when the stream can start.
  bool sseHandshake(const Request& req, std::string_view target, Reply& r) {
    if (req.method() != http::verb::get) {
      r.extra_headers = "Allow: GET\r\n";
      error(r, 405, "bad_request", "/v1/sse answers GET");
      return false;
    }
    size_t q = target.find('?');
    StreamRequest sr;
    if (!parseStreamRequest(q == std::string_view::npos ? std::string_view() : target.substr(q + 1),
                            headerOf(req, "Last-Event-ID"), ctx_, sr, r))
      return false;
    Identity who;
    if (!identify(req, queryOf(target), who, r) || !allowed(who, Right::Subscribe, sr.channels, r)) return false;
    if (!ctx_.broker || !ctx_.broker->available()) {
      unavailable(r, "pub/sub is unavailable");
      return false;
    }
    if (ctx_.draining) {
      unavailable(r, "this worker is draining");
      return false;
    }
    if (streamsFull()) {
      unavailable(r, fmt::format("this worker holds max_streams ({}) polls and event streams", ctx_.config.gateway.max_streams));
      return false;
    }
    sse_.channels = std::move(sr.channels);
    sse_.from = std::move(sr.from);
    sse_.who = std::move(who);
    sse_.chunked = req.version() >= 11;
    return true;
  }

  // Held polls and event streams are the connections that cost a worker the most to
  // keep (subscriptions, buffers): [gateway] max_streams bounds them together.
  bool streamsFull() {
    if (ctx_.counters.held_polls + ctx_.counters.sse_streams < ctx_.config.gateway.max_streams) return false;
    ++ctx_.counters.stream_limited;
    return true;
  }

  bool peerIsLoopback() {
    boost::system::error_code ec;
    auto ep = stream_.socket().remote_endpoint(ec);
    if (ec) return false;
    auto a = ep.address();
    if (a.is_v6() && a.to_v6().is_v4_mapped()) return asio::ip::make_address_v4(asio::ip::v4_mapped, a.to_v6()).is_loopback();
    return a.is_loopback();
  }

  // POST /v1/publish/{channel}, GET /v1/history/{channel}, GET /v1/channels/{channel}.
  asio::awaitable<void> routePubSub(const Request& req, std::string_view target, Reply& r) {
    size_t q = target.find('?');
    std::string_view path = target.substr(0, q);
    std::string_view query = q == std::string_view::npos ? std::string_view() : target.substr(q + 1);
    std::string_view kind, rest;
    for (std::string_view k : {"publish", "history", "channels"}) {
      std::string prefix = fmt::format("/v1/{}/", k);
      if (path.starts_with(prefix)) {
        kind = k;
        rest = path.substr(prefix.size());
      }
    }
    if (kind.empty()) {
      error(r, 404, "not_found", fmt::format("no resource at {}", path.substr(0, 200)));
      co_return;
    }
    bool post = req.method() == http::verb::post;
    bool get = req.method() == http::verb::get || req.method() == http::verb::head;
    if ((kind == "publish" && !post) || (kind != "publish" && !get)) {
      r.extra_headers = kind == "publish" ? "Allow: POST\r\n" : "Allow: GET, HEAD\r\n";
      error(r, 405, "bad_request", fmt::format("/v1/{}/ answers {}", kind, kind == "publish" ? "POST" : "GET"));
      co_return;
    }
    auto decoded = percentDecode(rest, false);
    std::string channel = "/" + decoded.value_or("");
    if (!decoded || !validChannel(channel)) {
      error(r, 400, "bad_request", "a channel is 1 to 255 characters of [A-Za-z0-9_.:/-] starting with /");
      co_return;
    }
    if (!restAllowed(req, kind == "publish" ? Right::Publish : Right::Subscribe, channel, r)) co_return;
    Broker* broker = ctx_.broker;
    if (!broker || !broker->available()) {
      unavailable(r, "pub/sub is unavailable");
      co_return;
    }
    if (kind == "publish") {
      co_await publish(req, channel, r);
    } else if (kind == "history") {
      bool bad = false;
      auto since_text = queryParam(query, "since", bad);
      auto limit_text = queryParam(query, "limit", bad);
      std::optional<Position> since;
      if (since_text && !since_text->empty()) {
        since = Position::parse(*since_text);
        bad = bad || !since;
      }
      uint32_t limit = ctx_.config.history.size;
      if (limit_text) {
        auto [p, e] = std::from_chars(limit_text->data(), limit_text->data() + limit_text->size(), limit);
        bad = bad || e != std::errc() || p != limit_text->data() + limit_text->size() || limit == 0;
      }
      if (bad) {
        error(r, 400, "bad_request", "since must be a position (EPOCH.SEQ) and limit a positive integer");
        co_return;
      }
      auto [c, err] = co_await awaitBroker<Catchup>(
          [&](auto done) { broker->history(channel, since, limit, std::move(done)); });
      if (!c) unavailable(r, err);
      else catchupJson(r.body, channel, *c);
    } else {
      auto [info, err] = co_await awaitBroker<Hub::Info>([&](auto done) { broker->info(channel, std::move(done)); });
      if (!info) unavailable(r, err);
      else
        r.body = fmt::format(R"({{"channel":"{}","position":"{}","subscribers":{}}})", channel,
                             info->position.toString(), info->subscribers);
    }
  }

  // Waits until `e` wakes us (a message, the hub's results) or `timeout` passes, or the
  // worker drains.
  asio::awaitable<void> waitFor(PollEntry& e, Duration timeout) {
    auto executor = co_await asio::this_coro::executor;
    asio::steady_timer timer(executor, timeout);
    hold_timer_ = &timer;
    uint64_t token = e.addWaiter([&timer] { timer.cancel(); });
    boost::system::error_code ec;
    co_await timer.async_wait(redirect_error(use_awaitable, ec));
    e.removeWaiter(token);
    hold_timer_ = nullptr;
  }

  // GET /v1/poll: see docs/protocol.md. A cursor's session names the cache entry that
  // served it last; when this worker has it and it can serve the cursor, the answer
  // needs nothing from the hub. Otherwise a fresh entry subscribes from the cursor's
  // positions, and the hub's history fills it.
  asio::awaitable<void> poll(const Request& req, std::string_view target, Reply& r) {
    if (req.method() != http::verb::get) {
      r.extra_headers = "Allow: GET\r\n";
      error(r, 405, "bad_request", "/v1/poll answers GET");
      co_return;
    }
    size_t q = target.find('?');
    StreamRequest sr;
    if (!parseStreamRequest(q == std::string_view::npos ? std::string_view() : target.substr(q + 1), {}, ctx_, sr, r))
      co_return;
    // Checked on every poll: a cursor carries positions, never rights.
    Identity who;
    if (!identify(req, queryOf(target), who, r) || !allowed(who, Right::Subscribe, sr.channels, r)) co_return;
    if (!ctx_.broker || !ctx_.broker->available()) {
      unavailable(r, "pub/sub is unavailable");
      co_return;
    }
    deadline_ms = kNoDeadline;  // the hub answers within hub_timeout, or the poll fails
    if (!sr.resuming) {
      co_await firstPoll(sr.channels, r);
      co_return;
    }
    PollCache& cache = *ctx_.polls;
    uint64_t session = sr.cursor ? sr.cursor->session : newCursorSession();
    std::shared_ptr<PollEntry> e = sr.cursor ? cache.find(session) : nullptr;
    // Another poll on this cursor is building its entry (the client retried, or shares
    // the cursor): wait for it instead of replacing it under that poll.
    while (e && !e->ready() && !e->retired()) co_await waitFor(*e, ctx_.config.gateway.write_timeout);
    if (e && e->canServe(sr.channels, sr.from)) {
      ++ctx_.counters.poll_cache_hits;
      e->acknowledge(sr.from);
    } else {
      ++ctx_.counters.poll_cache_misses;
      e = cache.create(session, sr.channels.size());
      if (!e) {
        unavailable(r, "every long-poll session of this worker is in use");
        co_return;
      }
      for (size_t i = 0; i < sr.channels.size(); ++i) {
        Position from = sr.from[i].value_or(Position{});
        e->channels().push_back({sr.channels[i], from, nullptr, from});
      }
      for (size_t i = 0; i < sr.channels.size(); ++i) e->startSubscribe(i, sr.from[i]);
      while (!e->ready() && !e->retired()) co_await waitFor(*e, ctx_.config.gateway.write_timeout);
      if (!e->ready()) {
        // A newer poll on the same cursor replaced this entry before the hub answered
        // (the client retried): this one answers with nothing new, so the client is
        // exactly where it was.
        answerUnchanged(session, sr, r);
        co_return;
      }
      if (e->broken()) {
        cache.retire(e);
        unavailable(r, "pub/sub is unavailable");
        co_return;
      }
    }
    // Nothing to say yet: hold, unless this is a resume that failed (the client must
    // hear it now), or the worker is draining.
    if (e->log().empty() && e->recovered() && !ctx_.draining) {
      if (streamsFull()) {
        unavailable(r, fmt::format("this worker holds max_streams ({}) polls and event streams", ctx_.config.gateway.max_streams));
        co_return;
      }
      // A held poll keeps no read buffer (a pipelined request behind it keeps it).
      if (buffer_.size() == 0) buffer_.shrink_to_fit();
      ++ctx_.counters.held_polls;
      deadline_ms = kNoDeadline;
      e->last_used_ms = steadyNowMs();
      // A poll is held no longer than its token is valid: the next one brings a new token.
      Duration hold = ctx_.config.gateway.poll_timeout;
      if (!who.anonymous())
        hold = std::min(hold, Duration(std::max<int64_t>(0, ctx_.auth->validUntilMs(who) - unixNowMs())));
      disconnected_.clear();
      HeldAs held(ctx_, who, this);
      co_await waitFor(*e, hold);
      --ctx_.counters.held_polls;
      if (!disconnected_.empty()) {
        error(r, 403, "forbidden", disconnected_);
        co_return;
      }
    }
    ++ctx_.counters.polls;
    e->last_used_ms = steadyNowMs();
    pollAnswer(e->cursorAfterLog(), e->recovered(), e->log(), r);
    if (ctx_.config.gateway.session_cache_entries == 0) cache.retire(e);
  }

  // {"cursor":K,"recovered":B,"messages":[M...],"positions":{C:POS...}}
  void pollAnswer(const Cursor& next, bool recovered, const std::deque<PollEntry::Message>& log, Reply& r) {
    std::string& out = r.body;
    fmt::format_to(std::back_inserter(out), R"({{"cursor":"{}","recovered":{},"messages":[)",
                   ctx_.cursors->encode(next), recovered);
    bool first = true;
    for (const auto& m : log) {
      if (!first) out += ',';
      first = false;
      out += m.json;
    }
    out += R"(],"positions":{)";
    for (size_t i = 0; i < next.positions.size(); ++i)
      fmt::format_to(std::back_inserter(out), R"({}"{}":"{}")", i ? "," : "", next.positions[i].first,
                     next.positions[i].second.toString());
    out += "}}";
    r.extra_headers = "Cache-Control: no-store\r\n";
  }

  // A poll without a cursor: the channels' current positions, at once, and no cache
  // entry (a client that never comes back costs nothing; one that does resumes from
  // these positions through the hub's history).
  asio::awaitable<void> firstPoll(const std::vector<std::string>& channels, Reply& r) {
    auto executor = co_await asio::this_coro::executor;
    asio::steady_timer timer(executor, asio::steady_timer::time_point::max());
    struct Wait {
      std::vector<Position> positions;
      size_t left = 0;
      std::string error;
      asio::steady_timer* timer = nullptr;
    };
    auto w = std::make_shared<Wait>();
    w->positions.resize(channels.size());
    w->left = channels.size();
    w->timer = &timer;
    for (size_t i = 0; i < channels.size(); ++i) {
      ctx_.broker->info(channels[i], [w, i](const Hub::Info* info, std::string_view err) {
        if (info) w->positions[i] = info->position;
        else if (w->error.empty()) w->error.assign(err);
        if (--w->left == 0 && w->timer) w->timer->cancel();
      });
    }
    if (w->left > 0) {
      boost::system::error_code ec;
      co_await timer.async_wait(redirect_error(use_awaitable, ec));
    }
    w->timer = nullptr;
    if (!w->error.empty()) {
      unavailable(r, w->error);
      co_return;
    }
    Cursor c;
    c.session = newCursorSession();
    for (size_t i = 0; i < channels.size(); ++i) c.positions.emplace_back(channels[i], std::move(w->positions[i]));
    ++ctx_.counters.polls;
    pollAnswer(c, true, {}, r);
  }

  // The answer to a poll whose cache entry was replaced before it could be served:
  // nothing new, the client's own positions back.
  void answerUnchanged(uint64_t session, const StreamRequest& sr, Reply& r) {
    Cursor c;
    c.session = session;
    for (size_t i = 0; i < sr.channels.size(); ++i) {
      if (!sr.from[i]) {
        unavailable(r, "a newer poll on the same cursor took over");
        return;
      }
      c.positions.emplace_back(sr.channels[i], *sr.from[i]);
    }
    ++ctx_.counters.polls;
    pollAnswer(c, true, {}, r);
  }

  // ---- who may (docs/auth.md) ----------------------------------------------------------

  static std::string_view queryOf(std::string_view target) {
    size_t q = target.find('?');
    return q == std::string_view::npos ? std::string_view() : target.substr(q + 1);
  }

  // The token of Authorization: Bearer, else of ?token= (empty when neither).
  static std::string_view bearerOf(const Request& req) {
    std::string_view auth = headerOf(req, http::field::authorization);
    if (auth.size() < 7 || !iequals(auth.substr(0, 7), "bearer ")) return {};
    return auth.substr(7);
  }

  void refuse(const Refusal& refusal, Reply& r) {
    if (refusal.status == 401) r.extra_headers = "WWW-Authenticate: Bearer\r\n";
    error(r, refusal.status, refusal.code, refusal.message);
  }

  // Who a poll or event stream is; false with the error reply when refused. With auth
  // off everyone is the anonymous client, who may do everything.
  bool identify(const Request& req, std::string_view query, Identity& who, Reply& r) {
    if (!ctx_.auth || !ctx_.auth->enabled()) return true;
    std::string token(bearerOf(req));
    bool bad = false;
    if (token.empty()) token = queryParam(query, "token", bad).value_or("");
    auto result = ctx_.auth->authenticate(token, unixNowMs());
    if (auto* refusal = std::get_if<Refusal>(&result)) {
      refuse(*refusal, r);
      return false;
    }
    who = std::get<Identity>(std::move(result));
    return true;
  }

  // Whether `who` may act on every one of `channels`; false with 403 when not.
  bool allowed(const Identity& who, Right right, const std::vector<std::string>& channels, Reply& r) {
    if (!ctx_.auth || !ctx_.auth->enabled()) return true;
    for (const auto& c : channels) {
      if (auto refusal = ctx_.auth->check(who, right, c)) {
        refuse(*refusal, r);
        return false;
      }
    }
    return true;
  }

  // REST (publish, history, channels): the static publish token may do everything; so
  // may loopback peers without a token when no publish token is set (the backend on
  // this host). With auth on, a JWT may do what its patterns say, and a request without
  // a token what the anonymous patterns say. With auth off, reads are open to all.
  bool restAllowed(const Request& req, Right right, const std::string& channel, Reply& r) {
    const std::string& static_token = ctx_.config.gateway.publish_token;
    std::string_view bearer = bearerOf(req);
    // Compared in constant time, lengths included (core/Secret.h).
    if (!static_token.empty() && !bearer.empty() && constantTimeEquals(bearer, static_token)) return true;
    bool auth_on = ctx_.auth && ctx_.auth->enabled();
    if (!auth_on) {
      if (right == Right::Subscribe) return true;
      if (!static_token.empty()) {
        refuse({401, "unauthorized", "publishing needs Authorization: Bearer <publish_token>"}, r);
        return false;
      }
      if (peerIsLoopback()) return true;
      error(r, 403, "forbidden", "without a publish_token only loopback clients may publish");
      return false;
    }
    if (bearer.empty() && static_token.empty() && peerIsLoopback()) return true;
    auto result = ctx_.auth->authenticate(bearer, unixNowMs());
    if (auto* refusal = std::get_if<Refusal>(&result)) {
      refuse(*refusal, r);
      return false;
    }
    return allowed(std::get<Identity>(result), right, {channel}, r);
  }

  // A held poll's place among its user's connections, for dingoctl disconnect.
  class HeldAs {
   public:
    HeldAs(GatewayContext& ctx, const Identity& who, UserSession* s) : ctx_(ctx), who_(who), session_(s) {
      if (who_.anonymous()) return;
      ++ctx_.counters.authenticated;
      if (!who_.user().empty()) ctx_.users->add(who_.user(), session_);
    }
    ~HeldAs() {
      if (who_.anonymous()) return;
      --ctx_.counters.authenticated;
      if (!who_.user().empty()) ctx_.users->remove(who_.user(), session_);
    }
    HeldAs(const HeldAs&) = delete;
    HeldAs& operator=(const HeldAs&) = delete;

   private:
    GatewayContext& ctx_;
    const Identity& who_;
    UserSession* session_;
  };

  asio::awaitable<void> publish(const Request& req, const std::string& channel, Reply& r) {
    std::string_view why;
    auto compact = compactJson(req.body(), kMaxJsonDepth, why);
    if (!compact) {
      error(r, 400, "bad_request",
            fmt::format("the body must be a JSON value nested at most {} deep: {}", kMaxJsonDepth, why));
      co_return;
    }
    std::string data = std::move(*compact);
    if (data.size() > ctx_.config.gateway.max_message_size) {
      error(r, 413, "too_large", fmt::format("a message is at most {} bytes", ctx_.config.gateway.max_message_size));
      co_return;
    }
    ++ctx_.counters.published;
    Broker* broker = ctx_.broker;
    auto [pos, err] = co_await awaitBroker<Position>(
        [&](auto done) { broker->publish(channel, std::move(data), std::move(done)); });
    if (!pos) unavailable(r, err);
    else r.body = fmt::format(R"({{"channel":"{}","position":"{}"}})", channel, pos->toString());
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
  asio::steady_timer* hold_timer_ = nullptr;  // a held poll's timer
  std::string disconnected_;  // an operator disconnected the held poll's user: why
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
  // TCP_NODELAY comes from the listening socket (see listenTcp).
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
