#pragma once
// Who a client is and what it may do (docs/auth.md), for every transport of a worker:
// tokens verified once and kept in a bounded cache, identities checked against channel
// patterns, and every refusal counted by its reason. With no key configured, auth is
// off and everyone may do everything.
#include <cstdint>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <variant>
#include <vector>

#include "core/Config.h"
#include "core/Jwt.h"

namespace dingo {

enum class Right { Subscribe, Publish };

// A client's identity: the claims of its verified token, or none (anonymous).
struct Identity {
  std::shared_ptr<const TokenClaims> claims;
  bool anonymous() const { return !claims; }
  std::string_view user() const { return claims ? std::string_view(claims->sub) : std::string_view(); }
};

// Why a request or command is refused, in the terms of the JSON error it gets.
struct Refusal {
  int status = 401;               // 401 unauthorized, 403 forbidden (HTTP)
  std::string_view code;          // "unauthorized" | "forbidden"
  std::string message;
};

class Authenticator {
 public:
  Authenticator(const AuthConfig& config, JwtKeys keys);

  bool enabled() const { return !keys_.empty(); }
  bool required() const { return config_.required; }

  // The identity a token proves at `now_ms` (Unix), or the refusal. An empty token is
  // anonymous: admitted unless auth is required.
  std::variant<Identity, Refusal> authenticate(std::string_view token, int64_t now_ms);

  // Whether `who` may subscribe or publish to `channel`; counts a refusal when not.
  // With auth off, everyone may.
  std::optional<Refusal> check(const Identity& who, Right right, std::string_view channel);

  // A refresh must prove the same user; counts a refusal when it does not.
  std::optional<Refusal> checkSameUser(const Identity& before, const Identity& after);

  // When an identity stops being valid: its exp plus the leeway, in Unix milliseconds
  // (INT64_MAX when anonymous).
  int64_t validUntilMs(const Identity& who) const;

  const AuthConfig& config() const { return config_; }

  // Counters for the worker's stats: refusals by code and reason, cache use.
  struct Counters {
    std::vector<std::pair<std::string, uint64_t>> refusals;  // "unauthorized_expired" -> n
    uint64_t cache_hits = 0;
    uint64_t cache_misses = 0;
    uint64_t cached = 0;
  };
  Counters counters() const;

 private:
  Refusal refuse(int status, std::string_view code, std::string_view reason, std::string message);
  std::shared_ptr<const TokenClaims> cachedClaims(std::string_view token, TokenCheck& miss);

  AuthConfig config_;
  JwtKeys keys_;
  std::vector<ChannelPattern> anonymous_subscribe_;
  std::vector<ChannelPattern> anonymous_publish_;

  // Verified tokens, most recently used first; the map's keys view the list's strings.
  struct Cached {
    std::string token;
    std::shared_ptr<const TokenClaims> claims;
  };
  std::list<Cached> lru_;
  std::unordered_map<std::string_view, std::list<Cached>::iterator> cache_;
  uint64_t hits_ = 0;
  uint64_t misses_ = 0;
  std::unordered_map<std::string, uint64_t> refusals_;
};

}  // namespace dingo
