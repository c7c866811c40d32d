#include "gateway/Auth.h"

#include <fmt/format.h>

namespace dingo {

namespace {

std::vector<ChannelPattern> patterns(const std::vector<std::string>& texts) {
  std::vector<ChannelPattern> out;
  for (const auto& t : texts)
    if (auto p = ChannelPattern::parse(t)) out.push_back(std::move(*p));  // checked by the config
  return out;
}

const char* rightName(Right r) { return r == Right::Subscribe ? "subscribe" : "publish"; }

}  // namespace

Authenticator::Authenticator(const AuthConfig& config, JwtKeys keys)
    : config_(config),
      keys_(std::move(keys)),
      anonymous_subscribe_(patterns(config.anonymous_subscribe)),
      anonymous_publish_(patterns(config.anonymous_publish)) {}

Refusal Authenticator::refuse(int status, std::string_view code, std::string_view reason, std::string message) {
  ++refusals_[fmt::format("{}_{}", code, reason)];
  return Refusal{status, code, std::move(message)};
}

std::shared_ptr<const TokenClaims> Authenticator::cachedClaims(std::string_view token, TokenCheck& miss) {
  if (auto it = cache_.find(token); it != cache_.end()) {
    ++hits_;
    lru_.splice(lru_.begin(), lru_, it->second);
    return it->second->claims;
  }
  ++misses_;
  miss = verifyToken(token, keys_, config_.issuer, config_.audience);
  if (!miss.claims || config_.cache_size == 0) return miss.claims;
  // Keyed by the whole token: a valid signature pasted onto another payload is another
  // key, and is verified (and refused) like any new token.
  lru_.push_front(Cached{std::string(token), miss.claims});
  cache_.emplace(lru_.front().token, lru_.begin());
  if (lru_.size() > config_.cache_size) {
    cache_.erase(lru_.back().token);
    lru_.pop_back();
  }
  return miss.claims;
}

std::variant<Identity, Refusal> Authenticator::authenticate(std::string_view token, int64_t now_ms) {
  if (!enabled()) return Identity{};
  if (token.empty()) {
    if (config_.required) return refuse(401, "unauthorized", "missing", "a token is required (docs/auth.md)");
    return Identity{};
  }
  TokenCheck check;
  auto claims = cachedClaims(token, check);
  if (!claims) return refuse(401, "unauthorized", tokenErrorName(check.error), std::move(check.message));
  std::string why;
  if (auto e = checkTokenTime(*claims, now_ms, config_.leeway, why))
    return refuse(401, "unauthorized", tokenErrorName(*e), std::move(why));
  return Identity{std::move(claims)};
}

std::optional<Refusal> Authenticator::check(const Identity& who, Right right, std::string_view channel) {
  if (!enabled()) return std::nullopt;
  if (who.anonymous()) {
    const auto& allowed = right == Right::Subscribe ? anonymous_subscribe_ : anonymous_publish_;
    if (anyMatches(allowed, channel, {})) return std::nullopt;
    if (config_.required)  // not reached by sessions, which refuse anonymous clients first
      return refuse(401, "unauthorized", "missing", "a token is required (docs/auth.md)");
    return refuse(403, "forbidden", rightName(right),
                  fmt::format("clients without a token may not {} {} (anonymous_{})", rightName(right), channel,
                              rightName(right)));
  }
  const auto& allowed = right == Right::Subscribe ? who.claims->subscribe : who.claims->publish;
  if (anyMatches(allowed, channel, who.claims->sub)) return std::nullopt;
  return refuse(403, "forbidden", rightName(right),
                fmt::format("no {} pattern of the token{} covers {}", rightName(right),
                            who.claims->sub.empty() ? "" : " of user " + who.claims->sub, channel));
}

std::optional<Refusal> Authenticator::checkSameUser(const Identity& before, const Identity& after) {
  if (before.user() == after.user()) return std::nullopt;
  return refuse(403, "forbidden", "other_user", "a refresh must be a token of the same user (sub)");
}

int64_t Authenticator::validUntilMs(const Identity& who) const {
  if (who.anonymous()) return INT64_MAX;
  return who.claims->exp_ms + config_.leeway.count();
}

Authenticator::Counters Authenticator::counters() const {
  Counters c;
  for (const auto& [k, v] : refusals_) c.refusals.emplace_back(k, v);
  c.cache_hits = hits_;
  c.cache_misses = misses_;
  c.cached = lru_.size();
  return c;
}

}  // namespace dingo
