#pragma once
// JSON Web Tokens (RFC 7519) as docs/auth.md uses them: the keys a gateway trusts, the
// verification of a token's signature and claims, and minting for `dingoctl token`.
// The cryptography is OpenSSL's, never ours: tokens are minted by libjwt, and checked
// with OpenSSL's EVP interface against keys parsed once (libjwt 1.10 parses the PEM key
// again on every verify: 0.8 ms of the 0.9 ms a check cost). What is ours is the order
// of the checks: the header's `alg` must name a kind of key that is configured before
// any key is tried (no HS256 against a public key, no `none`).
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/ChannelPattern.h"
#include "core/Duration.h"

struct evp_pkey_st;  // OpenSSL's EVP_PKEY

namespace dingo {

struct AuthConfig;

enum class JwtAlg { ES256, RS256, HS256 };
const char* jwtAlgName(JwtAlg alg);

// The longest token read; a longer one is malformed without being parsed.
constexpr size_t kMaxTokenBytes = 8 * 1024;
// Patterns one token may list for subscribe, and again for publish.
constexpr size_t kMaxTokenPatterns = 256;
// The shortest HS256 secret (RFC 7518 3.2: a key at least as long as the hash).
constexpr size_t kMinHmacSecretBytes = 32;

struct JwtKey {
  std::string path;  // for messages
  JwtAlg alg = JwtAlg::ES256;
  std::string material;                // the PEM text (ES256, RS256) or the secret (HS256)
  std::shared_ptr<evp_pkey_st> pkey;   // the public key, parsed (ES256, RS256)
};

// Every key a gateway checks tokens against, read from [auth]'s files.
struct JwtKeys {
  std::vector<JwtKey> keys;
  bool empty() const { return keys.empty(); }
};

// Reads the public keys and the HMAC secret that `auth` names. Throws std::runtime_error
// naming the file: unreadable, not a PEM public key, not EC P-256 or RSA >= 2048 bits, or
// a secret shorter than kMinHmacSecretBytes.
JwtKeys loadJwtKeys(const AuthConfig& auth);

// Why a token was refused. The names are the `reason` label of the refusal metric.
enum class TokenError { Malformed, Algorithm, BadSignature, Expired, NotYetValid, Issuer, Audience, Claims };
const char* tokenErrorName(TokenError e);

// What a verified token says. Times are Unix milliseconds.
struct TokenClaims {
  std::string sub;
  int64_t exp_ms = 0;
  std::optional<int64_t> nbf_ms;
  std::vector<ChannelPattern> subscribe;
  std::vector<ChannelPattern> publish;
};

struct TokenCheck {
  std::shared_ptr<const TokenClaims> claims;  // null when refused
  TokenError error = TokenError::Malformed;
  std::string message;  // why, for the client (no secrets, no token text)
};

// Checks the signature, `iss`, `aud` and the form of every claim; not the time (see
// checkTokenTime), so that a verified token can be cached and its time checked on each
// use. `issuer` and `audience` are checked when not empty.
TokenCheck verifyToken(std::string_view token, const JwtKeys& keys, std::string_view issuer,
                       std::string_view audience);

// nullopt when `now_ms` is within [nbf - leeway, exp + leeway]; else why not, with the
// message in `message`.
std::optional<TokenError> checkTokenTime(const TokenClaims& c, int64_t now_ms, Duration leeway, std::string& message);

// Milliseconds since 1970 on the system clock.
int64_t unixNowMs();

// Mints a token for `dingoctl token`. `key_file` holds a PEM private key (EC P-256:
// ES256, RSA: RS256) or, when it is not PEM, an HS256 secret. `claims_json` is the
// payload object. Throws std::runtime_error on a bad key.
std::string signToken(const std::string& claims_json, const std::string& key_file);

}  // namespace dingo
