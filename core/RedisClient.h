#pragma once
// One connection to one Redis server, on an Asio event loop (the Redis engine's client,
// DESIGN.md "Many hosts"). Commands are pipelined: each is written as it comes and its
// reply matched in order; hiredis's reader parses the replies (RESP2), our code does the
// socket I/O. Every reply is awaited under a deadline, and a reply late past it means a
// stuck connection: it is closed, every waiting command fails, and the client reconnects
// with full-jitter backoff. Pub/sub messages (`message`, `smessage`, `pmessage`) are
// not replies: they go to the push handler. Memory is bounded: commands in flight, bytes
// waiting to be written, and the size of one reply.
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/Duration.h"

namespace boost::asio {
class io_context;
}

namespace dingo {

// A Redis reply, copied out of hiredis's objects.
struct RedisReply {
  enum class Type { Nil, Integer, String, Status, Error, Array };
  Type type = Type::Nil;
  int64_t integer = 0;
  std::string str;  // String, Status, Error
  std::vector<RedisReply> elements;

  bool isError() const { return type == Type::Error; }
};

struct RedisOptions {
  std::string host = "127.0.0.1";  // a numeric address
  uint16_t port = 6379;
  std::string user;      // ACL user (AUTH user password); empty: AUTH password
  std::string password;  // empty: no AUTH
  Duration connect_timeout = std::chrono::seconds(2);
  Duration reply_timeout = std::chrono::seconds(2);
  Duration backoff_min = std::chrono::milliseconds(50);   // the floor of a reconnect delay
  Duration backoff_max = std::chrono::seconds(5);
  size_t max_in_flight = 100000;                  // commands awaiting replies
  size_t max_write_bytes = 64 * 1024 * 1024;      // formatted commands not yet written
  size_t max_reply_bytes = 64 * 1024 * 1024;      // one reply, while it is being read
};

class RedisClient {
 public:
  // The reply, or null with why the command failed (not connected, timed out, the
  // connection broke, over a bound). A Redis error (-ERR ...) is a reply of type Error.
  using Done = std::function<void(const RedisReply* reply, std::string_view error)>;
  using PushFn = std::function<void(const RedisReply& message)>;
  using StateFn = std::function<void(bool connected, std::string_view why)>;

  RedisClient(boost::asio::io_context& io, RedisOptions options);
  ~RedisClient();
  RedisClient(const RedisClient&) = delete;
  RedisClient& operator=(const RedisClient&) = delete;

  void setPushHandler(PushFn fn);
  void setStateHandler(StateFn fn);

  // Connects, and reconnects after every failure until stop().
  void start();
  void stop();
  // Drops the connection (its commands fail with `why`) and connects again: for a
  // connection that looks up but delivers nothing (see RedisHubServer's probe).
  void reconnect(const std::string& why);
  bool connected() const;

  // Sends one command. `replies` is how many replies it gets (SUBSCRIBE a b c: 3); `done`
  // runs once, with the last. It always runs later, never inside this call.
  void command(std::vector<std::string> args, Done done, int replies = 1);

  size_t inFlight() const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace dingo
