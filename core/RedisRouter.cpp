#include "core/RedisRouter.h"

#include <array>

#include <fmt/format.h>

#include "core/Config.h"
#include "core/Net.h"
#include "core/Process.h"
#include "core/RedisCluster.h"
#include "core/RedisRing.h"

namespace dingo {

namespace {

// CRC16/XMODEM (polynomial 0x1021, no reflection, initial 0): the Redis Cluster key hash.
constexpr std::array<uint16_t, 256> makeCrc16Table() {
  std::array<uint16_t, 256> t{};
  for (unsigned i = 0; i < 256; ++i) {
    uint16_t crc = static_cast<uint16_t>(i << 8);
    for (int bit = 0; bit < 8; ++bit) crc = static_cast<uint16_t>((crc & 0x8000) ? (crc << 1) ^ 0x1021 : crc << 1);
    t[i] = crc;
  }
  return t;
}
constexpr auto kCrc16 = makeCrc16Table();

RedisOptions baseOptions(const BusConfig& bus) {
  RedisOptions o;
  o.user = bus.user;
  if (!bus.password_file.empty()) {
    std::string text = readFile(bus.password_file).value_or("");
    o.password = text.substr(0, text.find_first_of("\r\n"));
  }
  o.connect_timeout = bus.connect_timeout;
  o.reply_timeout = bus.reply_timeout;
  return o;
}

}  // namespace

uint16_t redisSlot(std::string_view key) {
  size_t open = key.find('{');
  if (open != std::string_view::npos) {
    size_t close = key.find('}', open + 1);
    if (close != std::string_view::npos && close > open + 1) key = key.substr(open + 1, close - open - 1);
  }
  uint16_t crc = 0;
  for (unsigned char c : key) crc = static_cast<uint16_t>((crc << 8) ^ kCrc16[((crc >> 8) ^ c) & 0xff]);
  return crc & 16383;
}

RedisOptions redisOptionsFor(const RedisOptions& base, std::string_view address) {
  RedisOptions o = base;
  if (auto a = parseSockAddr(std::string(address))) {
    o.host = a->host();
    o.port = a->port();
  }
  return o;
}

RedisShard::RedisShard(boost::asio::io_context& io, uint32_t id_, std::string address_, const RedisOptions& options)
    : id(id_), address(std::move(address_)), commands(io, redisOptionsFor(options, address)),
      pubsub(io, redisOptionsFor(options, address)) {}

std::unique_ptr<RedisRouter> RedisRouter::create(boost::asio::io_context& io, const BusConfig& bus) {
  if (!bus.redis_cluster.empty()) return std::make_unique<RedisCluster>(io, bus.redis_cluster, baseOptions(bus));
  return std::make_unique<RedisRing>(io, bus.redis, baseOptions(bus));
}

bool RedisRouter::connected() {
  auto all = shards();
  if (all.empty()) return false;
  for (RedisShard* s : all)
    if (!s->commands.connected() || !s->pubsub.connected()) return false;
  return true;
}

std::string RedisRouter::describe() {
  std::string out;
  for (RedisShard* s : shards())
    out += fmt::format("{}{} {}", out.empty() ? "" : ", ", s->address,
                       s->commands.connected() && s->pubsub.connected() ? "up" : "down");
  return out;
}

}  // namespace dingo
