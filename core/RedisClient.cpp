#include "core/RedisClient.h"

#include <strings.h>

#include <hiredis/hiredis.h>

#include <deque>
#include <random>

#include "core/Asio.h"
#include "core/Log.h"

namespace dingo {

namespace {

constexpr const char* kLog = "redis";
constexpr size_t kReadChunk = 64 * 1024;

using Clock = std::chrono::steady_clock;

RedisReply copyReply(const redisReply* r) {
  RedisReply out;
  switch (r->type) {
    case REDIS_REPLY_INTEGER:
      out.type = RedisReply::Type::Integer;
      out.integer = r->integer;
      break;
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
    case REDIS_REPLY_ERROR:
      out.type = r->type == REDIS_REPLY_STRING   ? RedisReply::Type::String
                 : r->type == REDIS_REPLY_STATUS ? RedisReply::Type::Status
                                                 : RedisReply::Type::Error;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_ARRAY:
      out.type = RedisReply::Type::Array;
      out.elements.reserve(r->elements);
      for (size_t i = 0; i < r->elements; ++i) out.elements.push_back(copyReply(r->element[i]));
      break;
    default:
      out.type = RedisReply::Type::Nil;
  }
  return out;
}

// The kind of a pub/sub array reply ("message", "subscribe", ...); empty for any other reply.
std::string_view pubsubKind(const RedisReply& r) {
  if (r.type != RedisReply::Type::Array || r.elements.empty() || r.elements[0].type != RedisReply::Type::String)
    return {};
  return r.elements[0].str;
}

// A pub/sub message, as opposed to a reply to one of our commands. A Redis Cluster node
// also sends `sunsubscribe` unasked when a channel's slot leaves it: that is news too,
// unless it answers our own SUNSUBSCRIBE.
bool isPush(const RedisReply& r, bool awaiting_sunsubscribe) {
  std::string_view kind = pubsubKind(r);
  return kind == "message" || kind == "smessage" || kind == "pmessage" ||
         (kind == "sunsubscribe" && !awaiting_sunsubscribe);
}

struct ReaderFree {
  void operator()(redisReader* r) const { redisReaderFree(r); }
};

}  // namespace

struct RedisClient::Impl : std::enable_shared_from_this<Impl> {
  Impl(asio::io_context& io, RedisOptions o)
      : io(io), options(std::move(o)), socket(io), connect_timer(io), reply_timer(io), backoff_timer(io),
        rng(std::random_device{}()) {}

  struct Waiting {
    Done done;
    int replies_left;
    Clock::time_point deadline;
    bool sunsubscribe = false;  // our SUNSUBSCRIBE: its replies are not pushes
  };

  asio::io_context& io;
  RedisOptions options;
  asio::ip::tcp::socket socket;
  asio::steady_timer connect_timer;
  asio::steady_timer reply_timer;
  asio::steady_timer backoff_timer;
  std::minstd_rand rng;
  std::unique_ptr<redisReader, ReaderFree> reader;
  std::deque<Waiting> waiting;
  std::string out;       // formatted commands not yet handed to the socket
  std::string writing;   // the bytes of the write in progress
  std::vector<char> in = std::vector<char>(kReadChunk);
  bool running = false;
  bool is_connected = false;  // connected and authenticated
  bool is_open = false;       // the socket is connected (AUTH may still be on its way)
  uint64_t generation = 0;    // bumps at each connection: late handlers of an old one do nothing
  int attempt = 0;
  PushFn on_push;
  StateFn on_state;

  // ---- connecting ---------------------------------------------------------------------

  void connect() {
    if (!running) return;
    ++generation;
    boost::system::error_code ec;
    auto address = asio::ip::make_address(options.host, ec);
    if (ec) {
      fail(fmt::format("'{}' is not a numeric address", options.host));
      return;
    }
    socket = asio::ip::tcp::socket(io);
    connect_timer.expires_after(options.connect_timeout);
    uint64_t gen = generation;
    auto self = shared_from_this();
    connect_timer.async_wait([self, gen](boost::system::error_code e) {
      if (!e && gen == self->generation && !self->is_open) {
        boost::system::error_code ignored;
        self->socket.close(ignored);  // the connect completes with operation_aborted
      }
    });
    socket.async_connect({address, options.port}, [self, gen](boost::system::error_code e) {
      if (gen != self->generation || !self->running) return;
      self->connect_timer.cancel();
      if (e) {
        self->fail(e == asio::error::operation_aborted ? "connect timed out" : "connect: " + e.message());
        return;
      }
      self->opened();
    });
  }

  void opened() {
    is_open = true;
    boost::system::error_code ec;
    socket.set_option(asio::ip::tcp::no_delay(true), ec);
    reader.reset(redisReaderCreate());
    readMore(generation);
    if (options.password.empty()) {
      ready();
      return;
    }
    std::vector<std::string> auth = {"AUTH"};
    if (!options.user.empty()) auth.push_back(options.user);
    auth.push_back(options.password);
    auto self = shared_from_this();
    send(std::move(auth), [self](const RedisReply* r, std::string_view err) {
      if (!r || r->isError()) {
        self->fail(fmt::format("AUTH refused: {}", r ? std::string_view(r->str) : err));
        return;
      }
      self->ready();
    });
  }

  void ready() {
    is_connected = true;
    attempt = 0;
    if (on_state) on_state(true, {});
  }

  // Closes the connection: every waiting command fails with `why`; then reconnects.
  void fail(const std::string& why) {
    bool was_connected = is_connected;
    is_connected = is_open = false;
    ++generation;
    boost::system::error_code ignored;
    socket.close(ignored);
    connect_timer.cancel();
    reply_timer.cancel();
    // The write in progress, if any, was the old connection's: its handler sees the new
    // generation and returns, so it is dropped here, or the next connection's writes
    // would wait behind it forever.
    out.clear();
    writing.clear();
    reader.reset();
    std::deque<Waiting> failed;
    failed.swap(waiting);
    for (auto& w : failed) w.done(nullptr, why);
    if (was_connected) logWarn(kLog, "{}:{}: {}; reconnecting", options.host, options.port, why);
    else if (attempt == 0) logWarn(kLog, "{}:{}: {}; retrying", options.host, options.port, why);
    if (on_state && was_connected) on_state(false, why);
    scheduleReconnect();
  }

  // Full jitter over an exponential ceiling, with a floor: never a tight loop.
  void scheduleReconnect() {
    if (!running) return;
    int64_t ceiling = std::min<int64_t>(options.backoff_max.count(),
                                        options.backoff_min.count() << std::min(attempt, 20));
    ++attempt;
    int64_t delay = options.backoff_min.count() +
                    static_cast<int64_t>(rng() % static_cast<uint64_t>(std::max<int64_t>(1, ceiling)));
    backoff_timer.expires_after(std::chrono::milliseconds(delay));
    auto self = shared_from_this();
    backoff_timer.async_wait([self](boost::system::error_code e) {
      if (!e) self->connect();
    });
  }

  // ---- commands -----------------------------------------------------------------------

  void send(std::vector<std::string> args, Done done, int replies = 1) {
    std::vector<const char*> argv;
    std::vector<size_t> lens;
    for (const auto& a : args) {
      argv.push_back(a.data());
      lens.push_back(a.size());
    }
    char* formatted = nullptr;
    int n = redisFormatCommandArgv(&formatted, static_cast<int>(argv.size()), argv.data(), lens.data());
    if (n < 0) {
      later(std::move(done), "out of memory formatting a command");
      return;
    }
    out.append(formatted, static_cast<size_t>(n));
    redisFreeCommand(formatted);
    bool sunsubscribe = !args.empty() && strcasecmp(args[0].c_str(), "SUNSUBSCRIBE") == 0;
    waiting.push_back({std::move(done), std::max(1, replies), Clock::now() + options.reply_timeout, sunsubscribe});
    if (waiting.size() == 1) armReplyTimer();
    writeMore();
  }

  void later(Done done, std::string why) {
    asio::post(io, [done = std::move(done), why = std::move(why)] { done(nullptr, why); });
  }

  void writeMore() {
    if (!writing.empty() || out.empty() || !is_open) return;
    writing.swap(out);
    auto self = shared_from_this();
    uint64_t gen = generation;
    asio::async_write(socket, asio::buffer(writing), [self, gen](boost::system::error_code e, size_t) {
      if (gen != self->generation) return;
      self->writing.clear();
      if (e) {
        self->fail("write: " + e.message());
        return;
      }
      self->writeMore();
    });
  }

  // One timer, for the oldest command's deadline: replies come in order, so when it has
  // not come, none behind it has.
  void armReplyTimer() {
    if (waiting.empty()) return;
    reply_timer.expires_at(waiting.front().deadline);
    auto self = shared_from_this();
    uint64_t gen = generation;
    reply_timer.async_wait([self, gen](boost::system::error_code e) {
      if (e || gen != self->generation || self->waiting.empty()) return;
      if (Clock::now() >= self->waiting.front().deadline) {
        self->fail(fmt::format("no reply within {}", formatDuration(self->options.reply_timeout)));
        return;
      }
      self->armReplyTimer();
    });
  }

  // ---- replies ------------------------------------------------------------------------

  void readMore(uint64_t gen) {
    auto self = shared_from_this();
    socket.async_read_some(asio::buffer(in), [self, gen](boost::system::error_code e, size_t n) {
      if (gen != self->generation) return;
      if (e) {
        self->fail(e == asio::error::eof ? "the server closed the connection" : "read: " + e.message());
        return;
      }
      if (!self->consume(n)) return;
      self->readMore(gen);
    });
  }

  // Parses what arrived; false when the connection was failed meanwhile.
  bool consume(size_t n) {
    uint64_t gen = generation;
    if (redisReaderFeed(reader.get(), in.data(), n) != REDIS_OK) {
      fail("the server's reply could not be read");
      return false;
    }
    for (;;) {
      void* raw = nullptr;
      if (redisReaderGetReply(reader.get(), &raw) != REDIS_OK) {
        fail(fmt::format("protocol error: {}", reader->errstr));
        return false;
      }
      if (!raw) break;
      RedisReply reply = copyReply(static_cast<redisReply*>(raw));
      freeReplyObject(raw);
      deliver(reply);
      if (gen != generation) return false;  // a handler failed or stopped the client
    }
    // What stays buffered is one unfinished reply: it may not grow without bound.
    if (reader->len - reader->pos > options.max_reply_bytes) {
      fail(fmt::format("a reply over {} bytes", options.max_reply_bytes));
      return false;
    }
    return true;
  }

  void deliver(const RedisReply& reply) {
    if (isPush(reply, !waiting.empty() && waiting.front().sunsubscribe)) {
      if (on_push) on_push(reply);
      return;
    }
    if (waiting.empty()) {
      fail("a reply to no command");
      return;
    }
    Waiting& w = waiting.front();
    // An error ends a command however many replies it would have had (a SUBSCRIBE of
    // three channels refused with MOVED gets one error, not three).
    if (--w.replies_left > 0 && !reply.isError()) return;
    Done done = std::move(w.done);
    waiting.pop_front();
    reply_timer.cancel();
    armReplyTimer();
    done(&reply, {});
  }
};

RedisClient::RedisClient(boost::asio::io_context& io, RedisOptions options)
    : impl_(std::make_shared<Impl>(io, std::move(options))) {}

RedisClient::~RedisClient() { stop(); }

void RedisClient::setPushHandler(PushFn fn) { impl_->on_push = std::move(fn); }
void RedisClient::setStateHandler(StateFn fn) { impl_->on_state = std::move(fn); }

void RedisClient::start() {
  if (impl_->running) return;
  impl_->running = true;
  impl_->connect();
}

void RedisClient::stop() {
  if (!impl_->running) return;
  impl_->running = false;
  impl_->backoff_timer.cancel();
  impl_->on_state = nullptr;  // a stop is not news to whoever stopped us
  impl_->fail("stopped");
}

void RedisClient::reconnect(const std::string& why) {
  if (impl_->running && impl_->is_open) impl_->fail(why);
}

bool RedisClient::connected() const { return impl_->is_connected; }
size_t RedisClient::inFlight() const { return impl_->waiting.size(); }

void RedisClient::command(std::vector<std::string> args, Done done, int replies) {
  Impl& i = *impl_;
  if (!i.is_connected) {
    i.later(std::move(done), "not connected to Redis");
    return;
  }
  if (i.waiting.size() >= i.options.max_in_flight || i.out.size() >= i.options.max_write_bytes) {
    i.later(std::move(done), "too many commands waiting for Redis");
    return;
  }
  i.send(std::move(args), std::move(done), replies);
}

}  // namespace dingo
