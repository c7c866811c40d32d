#include "supervisor/RedisSubscriberCounts.h"

#include <cstdio>
#include <unordered_set>

#include <fmt/format.h>

#include "core/Asio.h"
#include "core/Jwt.h"
#include "core/Process.h"
#include "core/RedisRouter.h"

namespace dingo {

namespace {

constexpr auto kFlushEvery = std::chrono::seconds(1);
constexpr int kRefreshTicks = 5;           // every count written again every 5 flushes
constexpr int64_t kLifetimeMs = 15000;     // a count not written again for this long is not counted
constexpr int64_t kKeyLifetimeMs = kLifetimeMs * 4;

void ignore(const RedisReply*, std::string_view) {}

}  // namespace

struct RedisSubscriberCounts::Impl : std::enable_shared_from_this<Impl> {
  Impl(asio::io_context& io_, RedisRouter& router_, std::string prefix_, std::string host_, LocalFn local_, EachFn each_)
      : io(io_), router(router_), prefix(std::move(prefix_)), host(std::move(host_)), local(std::move(local_)),
        each(std::move(each_)), timer(io_) {}

  asio::io_context& io;
  RedisRouter& router;
  std::string prefix;
  std::string host;
  LocalFn local;
  EachFn each;
  asio::steady_timer timer;
  std::unordered_set<std::string> dirty;
  int ticks = 0;

  std::string key(std::string_view channel) const { return fmt::format("{}:{{{}}}:n", prefix, channel); }

  void schedule() {
    timer.expires_after(kFlushEvery);
    timer.async_wait([weak = weak_from_this()](boost::system::error_code ec) {
      auto self = weak.lock();
      if (ec || !self) return;
      self->flush();
      self->schedule();
    });
  }

  void flush() {
    if (++ticks % kRefreshTicks == 0) each([this](const std::string& name) { dirty.insert(name); });
    int64_t expiry = unixNowMs() + kLifetimeMs;
    for (const auto& name : dirty) {
      uint64_t n = local(name);
      if (n == 0) {
        router.command(name, {"HDEL", key(name), host}, ignore);
        continue;
      }
      router.command(name, {"HSET", key(name), host, fmt::format("{} {}", n, expiry)}, ignore);
      router.command(name, {"PEXPIRE", key(name), std::to_string(kKeyLifetimeMs)}, ignore);
    }
    dirty.clear();
  }
};

RedisSubscriberCounts::RedisSubscriberCounts(asio::io_context& io, RedisRouter& router, std::string prefix,
                                             std::string host_id, LocalFn local, EachFn each)
    : impl_(std::make_shared<Impl>(io, router, std::move(prefix), std::move(host_id), std::move(local),
                                   std::move(each))) {}

RedisSubscriberCounts::~RedisSubscriberCounts() { impl_->timer.cancel(); }

void RedisSubscriberCounts::start() { impl_->schedule(); }

void RedisSubscriberCounts::changed(const std::string& channel) { impl_->dirty.insert(channel); }

void RedisSubscriberCounts::count(const std::string& channel, std::function<void(uint64_t)> done) {
  auto self = impl_;
  self->router.command(channel, {"HGETALL", self->key(channel)},
                       [self, channel, done = std::move(done)](const RedisReply* r, std::string_view) {
                         uint64_t total = self->local(channel);
                         int64_t now = unixNowMs();
                         if (r && r->type == RedisReply::Type::Array)
                           for (size_t i = 0; i + 1 < r->elements.size(); i += 2) {
                             if (r->elements[i].str == self->host) continue;
                             unsigned long n = 0;
                             long until = 0;
                             if (std::sscanf(r->elements[i + 1].str.c_str(), "%lu %ld", &n, &until) == 2 && until > now)
                               total += n;
                           }
                         done(total);
                       });
}

}  // namespace dingo
