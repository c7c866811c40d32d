#include "core/RedisChannelStore.h"

#include <openssl/sha.h>

#include <algorithm>
#include <cstring>
#include <random>

#include <fmt/format.h>

#include "core/Hash.h"
#include "core/Jwt.h"
#include "core/RedisRouter.h"

namespace dingo {

namespace {

constexpr const char* kDigits = "0123456789abcdefghijklmnopqrstuvwxyz";
constexpr char kAbsentMark = 'z';
constexpr uint64_t kAbsentSecondsRange = 36ull * 36 * 36 * 36 * 36;  // 5 base-36 digits: about 695 days

// KEYS: meta, stream. ARGV: pub/sub channel, data, maxlen, stream ttl ms, meta ttl ms,
// an epoch for a new life of the channel, "1" for SPUBLISH.
constexpr const char* kPublishLua = R"lua(
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[6]
  local t = redis.call('TIME')
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'seq', 0, 'born', t[1] * 1000 + math.floor(t[2] / 1000))
end
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[3], seq .. '-0', 'd', ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call(ARGV[7] == '1' and 'SPUBLISH' or 'PUBLISH', ARGV[1], epoch .. '.' .. seq .. ' ' .. ARGV[2])
return {epoch, seq}
)lua";

// KEYS: meta, stream. ARGV: since's epoch ('' for none), since's seq, limit, and for an
// absent since, the time before which a birth means "nothing was missed" ('' else).
// Returns {} for a channel Redis does not have, else {epoch, seq, from (-1: cannot
// resume), first id in the stream or '', entries}.
constexpr const char* kHistoryLua = R"lua(
local m = redis.call('HMGET', KEYS[1], 'epoch', 'seq', 'born')
if not m[1] then return {} end
local epoch, seq, born = m[1], tonumber(m[2]), tonumber(m[3])
local from = -1
if ARGV[1] ~= '' then
  if ARGV[4] ~= '' then
    if born < tonumber(ARGV[4]) then from = 0 end
  elseif ARGV[1] == epoch then
    from = tonumber(ARGV[2])
  end
end
local first = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)
local entries = {}
if ARGV[1] == '' then
  entries = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', ARGV[3])
elseif from >= 0 and from < seq then
  entries = redis.call('XRANGE', KEYS[2], '(' .. from .. '-0', '+', 'COUNT', ARGV[3])
end
return {epoch, seq, from, first[1] and first[1][1] or '', entries}
)lua";

// KEYS: meta, stream. ARGV: the epoch to forget.
constexpr const char* kForgetLua = R"lua(
if redis.call('HGET', KEYS[1], 'epoch') == ARGV[1] then
  redis.call('DEL', KEYS[1], KEYS[2])
  return 1
end
return 0
)lua";

std::string sha1Hex(std::string_view text) {
  unsigned char digest[SHA_DIGEST_LENGTH];
  SHA1(reinterpret_cast<const unsigned char*>(text.data()), text.size(), digest);
  std::string out;
  for (unsigned char b : digest) out += fmt::format("{:02x}", b);
  return out;
}

const std::string& publishSha() {
  static const std::string sha = sha1Hex(kPublishLua);
  return sha;
}
const std::string& historySha() {
  static const std::string sha = sha1Hex(kHistoryLua);
  return sha;
}

const std::string& forgetSha() {
  static const std::string sha = sha1Hex(kForgetLua);
  return sha;
}

std::string base36(uint64_t v, size_t width) {
  std::string out(width, '0');
  for (size_t i = width; i-- > 0; v /= 36) out[i] = kDigits[v % 36];
  return out;
}

// The SEQ of a stream id "SEQ-0".
std::optional<uint64_t> idSeq(std::string_view id) {
  size_t dash = id.find('-');
  uint64_t v = 0;
  if (dash == 0 || dash == std::string_view::npos) return std::nullopt;
  for (char c : id.substr(0, dash)) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  return v;
}

}  // namespace

RedisChannelStore::RedisChannelStore(RedisRouter& redis, RedisChannelOptions options)
    : redis_(redis), options_(std::move(options)), rng_state_(std::random_device{}()) {
  absent_tag_ = base36(fnv1a64(options_.prefix) % (36 * 36 * 36 * 36), 4);
}

std::string RedisChannelStore::key(std::string_view channel, std::string_view suffix) const {
  return fmt::format("{}:{{{}}}{}", options_.prefix, channel, suffix);
}

std::string RedisChannelStore::pubsubChannel(std::string_view channel) const { return key(channel, ""); }

std::string RedisChannelStore::newEpoch() {
  // splitmix64: enough to make a fresh epoch unlikely to meet an old one of the channel.
  rng_state_ += 0x9e3779b97f4a7c15ull;
  uint64_t z = rng_state_;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  z ^= z >> 31;
  std::string e = base36(z, Position::kEpochLength);
  if (e[0] == kAbsentMark) e[0] = 'y';  // 'z' starts absent positions
  return e;
}

Position RedisChannelStore::absentPosition(int64_t now_ms) const {
  uint64_t seconds = static_cast<uint64_t>(now_ms / 1000) % kAbsentSecondsRange;
  return {std::string(1, kAbsentMark) + absent_tag_ + base36(seconds, 5), 0};
}

std::optional<int64_t> RedisChannelStore::absentIssuedMs(const Position& p, int64_t now_ms) const {
  const std::string& e = p.epoch;
  if (p.seq != 0 || e.size() != Position::kEpochLength || e[0] != kAbsentMark || e.compare(1, 4, absent_tag_) != 0)
    return std::nullopt;
  uint64_t residue = 0;
  for (char c : std::string_view(e).substr(5)) {
    const char* d = std::strchr(kDigits, c);
    if (!d || !*d) return std::nullopt;
    residue = residue * 36 + static_cast<uint64_t>(d - kDigits);
  }
  // The latest second at or before now with that residue (positions older than a TTL
  // recover nothing, so the wrap every 695 days does not matter).
  uint64_t now_s = static_cast<uint64_t>(now_ms / 1000);
  uint64_t back = (now_s % kAbsentSecondsRange + kAbsentSecondsRange - residue) % kAbsentSecondsRange;
  return static_cast<int64_t>(now_s - back) * 1000;
}

void RedisChannelStore::runScript(std::string_view channel, const std::string& sha, const std::string& body,
                                  std::vector<std::string> keys_and_args,
                                  std::function<void(const RedisReply*, std::string_view)> done) {
  std::vector<std::string> cmd = {"EVALSHA", sha, "2"};
  cmd.insert(cmd.end(), keys_and_args.begin(), keys_and_args.end());
  redis_.command(channel, std::move(cmd), [this, tag = std::string(channel), body, keys_and_args = std::move(keys_and_args),
                                           done = std::move(done)](
                                     const RedisReply* r, std::string_view error) mutable {
    // A Redis that restarted or flushed its scripts: send the script itself, once.
    if (r && r->isError() && r->str.starts_with("NOSCRIPT")) {
      std::vector<std::string> eval = {"EVAL", body, "2"};
      eval.insert(eval.end(), keys_and_args.begin(), keys_and_args.end());
      redis_.command(tag, std::move(eval), std::move(done));
      return;
    }
    done(r, error);
  });
}

void RedisChannelStore::publish(std::string_view channel, std::string_view data, PublishDone done) {
  std::string meta_ttl = std::to_string((options_.history_ttl + kMetaSlack).count());
  runScript(channel, publishSha(), kPublishLua,
            {key(channel, ":m"), key(channel, ":s"), pubsubChannel(channel), std::string(data),
             std::to_string(std::max<uint32_t>(1, options_.history_size)), std::to_string(options_.history_ttl.count()),
             meta_ttl, newEpoch(), options_.sharded_pubsub ? "1" : "0"},
            [this, tag = std::string(channel), done = std::move(done)](const RedisReply* r, std::string_view error) {
              if (!r) return done(nullptr, error);
              if (r->isError()) return done(nullptr, r->str);
              if (r->elements.size() != 2 || r->elements[1].type != RedisReply::Type::Integer)
                return done(nullptr, "unexpected reply to the publish script");
              Position p{r->elements[0].str, static_cast<uint64_t>(r->elements[1].integer)};
              RedisShard* shard = redis_.shardOf(tag);
              if (options_.replica_wait.count() <= 0 || !shard || shard->replicas == 0) return done(&p, {});
              // Acknowledged once a replica has it (or the wait ran out: the message is
              // published either way, and answering an error would only make a client
              // publish it twice).
              redis_.command(tag, {"WAIT", "1", std::to_string(options_.replica_wait.count())},
                             [p, done](const RedisReply*, std::string_view) { done(&p, {}); });
            });
}

void RedisChannelStore::forgetEpoch(std::string_view channel, const std::string& epoch,
                                    std::function<void(bool)> done) {
  runScript(channel, forgetSha(), kForgetLua, {key(channel, ":m"), key(channel, ":s"), epoch},
            [done = std::move(done)](const RedisReply* r, std::string_view) {
              done(r && r->type == RedisReply::Type::Integer && r->integer == 1);
            });
}

void RedisChannelStore::history(std::string_view channel, const std::optional<Position>& since, size_t limit,
                                CatchupDone done) {
  int64_t now_ms = unixNowMs();
  auto issued = since ? absentIssuedMs(*since, now_ms) : std::nullopt;
  std::string threshold = issued ? std::to_string(*issued + options_.history_ttl.count()) : "";
  runScript(channel, historySha(), kHistoryLua,
            {key(channel, ":m"), key(channel, ":s"), since ? since->epoch : "", since ? std::to_string(since->seq) : "0",
             std::to_string(limit), threshold},
            [this, since, issued, now_ms, done = std::move(done)](const RedisReply* r, std::string_view error) {
              if (!r) return done(nullptr, error);
              if (r->isError()) return done(nullptr, r->str);
              Catchup c;
              if (r->elements.empty()) {  // Redis has no such channel: nothing to read, nothing made
                c.position = absentPosition(now_ms);
                c.recovered = issued && now_ms < *issued + options_.history_ttl.count();
                return done(&c, {});
              }
              const auto& e = r->elements;
              if (e.size() != 5 || e[1].type != RedisReply::Type::Integer || e[2].type != RedisReply::Type::Integer)
                return done(nullptr, "unexpected reply to the history script");
              uint64_t seq = static_cast<uint64_t>(e[1].integer);
              c.position = {e[0].str, seq};
              uint64_t first = idSeq(e[3].str).value_or(seq + 1);
              int64_t from = e[2].integer;
              c.recovered = since && from >= 0 && static_cast<uint64_t>(from) <= seq &&
                            static_cast<uint64_t>(from) + 1 >= first;
              bool newest = !since;
              for (const auto& entry : e[4].elements) {
                // [id, [field, value]]
                if (entry.elements.size() != 2 || entry.elements[1].elements.size() != 2) continue;
                auto s = idSeq(entry.elements[0].str);
                if (!s) continue;
                c.messages.push_back({*s, std::make_shared<const std::string>(entry.elements[1].elements[1].str), 0});
              }
              if (newest) std::reverse(c.messages.begin(), c.messages.end());
              if (since && !c.recovered) c.messages.clear();
              done(&c, {});
            });
}

std::optional<std::pair<Position, std::string_view>> RedisChannelStore::parseMessage(std::string_view payload) {
  size_t space = payload.find(' ');
  if (space == std::string_view::npos) return std::nullopt;
  auto p = Position::parse(payload.substr(0, space));
  if (!p) return std::nullopt;
  return std::pair{std::move(*p), payload.substr(space + 1)};
}

}  // namespace dingo
