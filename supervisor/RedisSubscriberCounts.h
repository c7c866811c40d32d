#pragma once
// Subscribers of a channel on every host, for GET /v1/channels with the Redis engine.
// Each host writes its own count into PREFIX:{C}:n (field: the host id, value: "COUNT
// EXPIRY_MS"): a change within a second, every count again every 5 s. A reader sums
// the fields not expired, so a host that died stops counting by itself within 15 s.
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace boost::asio {
class io_context;
}

namespace dingo {

class RedisRouter;

class RedisSubscriberCounts {
 public:
  // This host's subscribers of a channel.
  using LocalFn = std::function<uint64_t(const std::string& channel)>;
  // Calls `fn` for every channel this host has subscribers on.
  using EachFn = std::function<void(const std::function<void(const std::string&)>& fn)>;

  RedisSubscriberCounts(boost::asio::io_context& io, RedisRouter& router, std::string prefix, std::string host_id,
                        LocalFn local, EachFn each);
  ~RedisSubscriberCounts();

  void start();
  // `channel`'s count here changed: written within a second.
  void changed(const std::string& channel);
  // Subscribers on every host: this host's own count, and the others' unexpired ones.
  void count(const std::string& channel, std::function<void(uint64_t)> done);

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace dingo
