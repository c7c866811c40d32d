#include "core/Jwt.h"

#include <jwt.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

#include <fmt/format.h>

#include "core/Config.h"
#include "core/Json.h"
#include "core/Log.h"
#include "core/Process.h"
#include "core/Secret.h"

namespace dingo {

namespace {

struct JwtFree {
  void operator()(jwt_t* j) const { jwt_free(j); }
};
using JwtPtr = std::unique_ptr<jwt_t, JwtFree>;

struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;

struct CFree {
  void operator()(char* p) const { std::free(p); }
};

// The key's kind, or a description of why it is not one we take.
std::optional<JwtAlg> keyAlg(EVP_PKEY* key, std::string& why) {
  int id = EVP_PKEY_get_base_id(key);
  if (id == EVP_PKEY_EC) {
    char group[64] = {};
    size_t len = 0;
    if (EVP_PKEY_get_group_name(key, group, sizeof group, &len) != 1 ||
        (std::strcmp(group, "prime256v1") != 0 && std::strcmp(group, "P-256") != 0)) {
      why = fmt::format("an EC key on {}, not P-256 (ES256)", group[0] ? group : "an unknown curve");
      return std::nullopt;
    }
    return JwtAlg::ES256;
  }
  if (id == EVP_PKEY_RSA) {
    if (EVP_PKEY_get_bits(key) < 2048) {
      why = fmt::format("an RSA key of {} bits; RS256 needs 2048 or more", EVP_PKEY_get_bits(key));
      return std::nullopt;
    }
    return JwtAlg::RS256;
  }
  why = "neither an EC P-256 key (ES256) nor an RSA key (RS256)";
  return std::nullopt;
}

PkeyPtr readPem(const std::string& text, bool private_key) {
  BIO* bio = BIO_new_mem_buf(text.data(), static_cast<int>(text.size()));
  if (!bio) return nullptr;
  EVP_PKEY* k = private_key ? PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr)
                            : PEM_read_bio_PUBKEY(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  return PkeyPtr(k);
}

JwtKey readPublicKey(const std::string& path) {
  auto text = readFile(path);
  if (!text) throw std::runtime_error(fmt::format("{}: cannot read: {}", path, errnoText(errno)));
  PkeyPtr key = readPem(*text, false);
  if (!key) throw std::runtime_error(fmt::format("{}: not a PEM public key (-----BEGIN PUBLIC KEY-----)", path));
  std::string why;
  auto alg = keyAlg(key.get(), why);
  if (!alg) throw std::runtime_error(fmt::format("{}: {}", path, why));
  return JwtKey{path, *alg, std::move(*text), std::shared_ptr<EVP_PKEY>(key.release(), EVP_PKEY_free)};
}

// A secret file's bytes without the line end an editor adds.
std::string readSecret(const std::string& path) {
  auto text = readFile(path);
  if (!text) throw std::runtime_error(fmt::format("{}: cannot read: {}", path, errnoText(errno)));
  while (!text->empty() && (text->back() == '\n' || text->back() == '\r')) text->pop_back();
  if (text->size() < kMinHmacSecretBytes)
    throw std::runtime_error(fmt::format("{}: an HS256 secret needs at least {} bytes, this one has {}", path,
                                         kMinHmacSecretBytes, text->size()));
  return std::move(*text);
}

bool base64UrlChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

// Three non-empty base64url parts (the signature may not be empty: `alg: none` tokens
// end with a dot).
bool jwtShape(std::string_view token) {
  size_t dots = 0;
  size_t part = 0;
  for (char c : token) {
    if (c == '.') {
      if (part == 0) return false;
      ++dots;
      part = 0;
    } else if (!base64UrlChar(c)) {
      return false;
    } else {
      ++part;
    }
  }
  return dots == 2 && part > 0;
}

std::optional<std::string> base64UrlDecode(std::string_view in) {
  std::string padded(in);
  for (char& c : padded) c = c == '-' ? '+' : c == '_' ? '/' : c;
  while (padded.size() % 4) padded += '=';
  std::string out(padded.size() / 4 * 3, '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(padded.data()), static_cast<int>(padded.size()));
  if (n < 0) return std::nullopt;
  // EVP_DecodeBlock counts the padding's zero bytes too.
  size_t pad = padded.size() - in.size();
  out.resize(static_cast<size_t>(n) - std::min<size_t>(pad, static_cast<size_t>(n)));
  return out;
}

// The `alg` of a token's header part; nullopt when the header is malformed or has `crit`
// (extensions we would have to understand, RFC 7515 4.1.11: we understand none).
std::optional<std::string> headerAlg(std::string_view part) {
  auto json = base64UrlDecode(part);
  if (!json) return std::nullopt;
  ParsedJson parsed = parseJson(*json, 4);
  if (!parsed.ok() || !parsed.value.is_object() || parsed.value.contains("crit")) return std::nullopt;
  return field<std::string>(parsed.value, "alg");
}

struct MdCtxFree {
  void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};

// RFC 7518 3.4: an ES256 signature is R and S, 32 bytes each; OpenSSL wants DER.
std::optional<std::string> ecdsaDer(std::string_view raw) {
  if (raw.size() != 64) return std::nullopt;
  ECDSA_SIG* sig = ECDSA_SIG_new();
  if (!sig) return std::nullopt;
  BIGNUM* r = BN_bin2bn(reinterpret_cast<const unsigned char*>(raw.data()), 32, nullptr);
  BIGNUM* s = BN_bin2bn(reinterpret_cast<const unsigned char*>(raw.data()) + 32, 32, nullptr);
  if (!r || !s || ECDSA_SIG_set0(sig, r, s) != 1) {
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(sig);
    return std::nullopt;
  }
  unsigned char* der = nullptr;
  int n = i2d_ECDSA_SIG(sig, &der);
  ECDSA_SIG_free(sig);
  if (n <= 0) return std::nullopt;
  std::string out(reinterpret_cast<char*>(der), static_cast<size_t>(n));
  OPENSSL_free(der);
  return out;
}

// Whether `signature` is `key`'s over `input` (RFC 7518 3.2-3.4), by OpenSSL.
bool signatureVerifies(const JwtKey& key, std::string_view input, std::string_view signature) {
  if (key.alg == JwtAlg::HS256) {
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (!HMAC(EVP_sha256(), key.material.data(), static_cast<int>(key.material.size()),
              reinterpret_cast<const unsigned char*>(input.data()), input.size(), mac, &len))
      return false;
    return constantTimeEquals(std::string_view(reinterpret_cast<char*>(mac), len), signature);
  }
  std::string der;
  if (key.alg == JwtAlg::ES256) {
    auto d = ecdsaDer(signature);
    if (!d) return false;
    der = std::move(*d);
    signature = der;
  }
  std::unique_ptr<EVP_MD_CTX, MdCtxFree> ctx(EVP_MD_CTX_new());
  if (!ctx || !key.pkey ||
      EVP_DigestVerifyInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key.pkey.get()) != 1)
    return false;
  return EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(signature.data()), signature.size(),
                          reinterpret_cast<const unsigned char*>(input.data()), input.size()) == 1;
}

jwt_alg_t toLibjwt(JwtAlg a) {
  switch (a) {
    case JwtAlg::ES256: return JWT_ALG_ES256;
    case JwtAlg::RS256: return JWT_ALG_RS256;
    case JwtAlg::HS256: return JWT_ALG_HS256;
  }
  return JWT_ALG_NONE;
}

// Reads channels.subscribe or channels.publish; false with `why` when malformed.
bool readPatterns(const nlohmann::json& channels, const char* key, std::vector<ChannelPattern>& out,
                  std::string& why) {
  auto it = channels.find(key);
  if (it == channels.end()) return true;
  if (!it->is_array() || it->size() > kMaxTokenPatterns) {
    why = fmt::format("channels.{} must be an array of at most {} patterns", key, kMaxTokenPatterns);
    return false;
  }
  for (size_t i = 0; i < it->size(); ++i) {
    const auto& v = (*it)[i];
    std::optional<ChannelPattern> p;
    if (v.is_string()) p = ChannelPattern::parse(v.get_ref<const std::string&>());
    if (!p) {
      why = fmt::format("channels.{}[{}] is not a channel pattern (a channel name, optionally with {{sub}} "
                        "and a final /*)",
                        key, i);
      return false;
    }
    out.push_back(std::move(*p));
  }
  return true;
}

std::optional<int64_t> timeClaimMs(const nlohmann::json& claims, const char* key) {
  auto seconds = field<double>(claims, key);
  if (!seconds || *seconds < 0 || *seconds > 1e12) return std::nullopt;
  return static_cast<int64_t>(std::floor(*seconds * 1000.0));
}

}  // namespace

const char* jwtAlgName(JwtAlg alg) {
  switch (alg) {
    case JwtAlg::ES256: return "ES256";
    case JwtAlg::RS256: return "RS256";
    case JwtAlg::HS256: return "HS256";
  }
  return "?";
}

const char* tokenErrorName(TokenError e) {
  switch (e) {
    case TokenError::Malformed: return "malformed";
    case TokenError::Algorithm: return "algorithm";
    case TokenError::BadSignature: return "bad_signature";
    case TokenError::Expired: return "expired";
    case TokenError::NotYetValid: return "not_yet_valid";
    case TokenError::Issuer: return "issuer";
    case TokenError::Audience: return "audience";
    case TokenError::Claims: return "claims";
  }
  return "?";
}

JwtKeys loadJwtKeys(const AuthConfig& auth) {
  JwtKeys out;
  for (const auto& path : auth.jwt_public_keys) out.keys.push_back(readPublicKey(path));
  if (!auth.jwt_hmac_secret_file.empty())
    out.keys.push_back(JwtKey{auth.jwt_hmac_secret_file, JwtAlg::HS256, readSecret(auth.jwt_hmac_secret_file)});
  return out;
}

TokenCheck verifyToken(std::string_view token, const JwtKeys& keys, std::string_view issuer,
                       std::string_view audience) {
  TokenCheck out;
  auto refuse = [&out](TokenError e, std::string message) {
    out.error = e;
    out.message = std::move(message);
    return out;
  };
  if (token.size() > kMaxTokenBytes || !jwtShape(token))
    return refuse(TokenError::Malformed,
                  fmt::format("a token is a signed JWT (three base64url parts) of at most {} bytes", kMaxTokenBytes));
  // The header's alg decides which keys may be tried, before any is. (libjwt reads it
  // too, but only while it verifies, with whatever key it is given.)
  auto header = headerAlg(token.substr(0, token.find('.')));
  if (!header) return refuse(TokenError::Malformed, "the token's header is not base64url JSON with an alg");
  std::optional<JwtAlg> alg = header == "ES256"   ? std::optional(JwtAlg::ES256)
                              : header == "RS256" ? std::optional(JwtAlg::RS256)
                              : header == "HS256" ? std::optional(JwtAlg::HS256)
                                                  : std::nullopt;
  if (!alg)
    return refuse(TokenError::Algorithm,
                  fmt::format("alg {} is not accepted (ES256, RS256 or HS256)", jsonEscape(header->substr(0, 16))));
  size_t dot2 = token.rfind('.');
  std::string_view signing_input = token.substr(0, dot2);
  auto signature = base64UrlDecode(token.substr(dot2 + 1));
  bool have_key = false;
  bool verified = false;
  for (const auto& k : keys.keys) {
    if (k.alg != *alg) continue;
    have_key = true;
    if (signature && signatureVerifies(k, signing_input, *signature)) {
      verified = true;
      break;
    }
  }
  if (!have_key) return refuse(TokenError::Algorithm, fmt::format("this service has no {} key", jwtAlgName(*alg)));
  if (!verified) return refuse(TokenError::BadSignature, "the token's signature does not verify");

  std::string_view payload_part = signing_input.substr(signing_input.find('.') + 1);
  auto payload = base64UrlDecode(payload_part);
  ParsedJson parsed = payload ? parseJson(*payload) : ParsedJson{{}, "not base64url"};
  if (!parsed.ok() || !parsed.value.is_object()) return refuse(TokenError::Claims, "the token's claims are not a JSON object");
  const nlohmann::json& claims = parsed.value;

  auto c = std::make_shared<TokenClaims>();
  auto exp = timeClaimMs(claims, "exp");
  if (!exp) return refuse(TokenError::Claims, "the token needs exp, a time in seconds since 1970");
  c->exp_ms = *exp;
  if (claims.contains("nbf")) {
    c->nbf_ms = timeClaimMs(claims, "nbf");
    if (!c->nbf_ms) return refuse(TokenError::Claims, "nbf must be a time in seconds since 1970");
  }
  if (claims.contains("sub")) {
    auto sub = field<std::string>(claims, "sub");
    if (!sub || sub->size() > 255) return refuse(TokenError::Claims, "sub must be a string of at most 255 bytes");
    c->sub = std::move(*sub);
  }
  if (!issuer.empty() && field<std::string>(claims, "iss") != std::string(issuer))
    return refuse(TokenError::Issuer, fmt::format("the token's iss is not {}", issuer));
  if (!audience.empty()) {
    bool found = false;
    auto it = claims.find("aud");
    if (it != claims.end() && it->is_string()) found = it->get_ref<const std::string&>() == audience;
    if (it != claims.end() && it->is_array())
      for (const auto& a : *it) found = found || (a.is_string() && a.get_ref<const std::string&>() == audience);
    if (!found) return refuse(TokenError::Audience, fmt::format("the token's aud does not name {}", audience));
  }
  if (auto it = claims.find("channels"); it != claims.end()) {
    std::string why;
    if (!it->is_object()) return refuse(TokenError::Claims, "channels must be an object {subscribe, publish}");
    if (!readPatterns(*it, "subscribe", c->subscribe, why) || !readPatterns(*it, "publish", c->publish, why))
      return refuse(TokenError::Claims, why);
  }
  out.claims = std::move(c);
  return out;
}

std::optional<TokenError> checkTokenTime(const TokenClaims& c, int64_t now_ms, Duration leeway, std::string& message) {
  int64_t slack = leeway.count();
  if (now_ms > c.exp_ms + slack) {
    message = fmt::format("the token expired {}s ago", (now_ms - c.exp_ms) / 1000);
    return TokenError::Expired;
  }
  if (c.nbf_ms && now_ms + slack < *c.nbf_ms) {
    message = fmt::format("the token is not valid for another {}s (nbf)", (*c.nbf_ms - now_ms + 999) / 1000);
    return TokenError::NotYetValid;
  }
  return std::nullopt;
}

int64_t unixNowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string signToken(const std::string& claims_json, const std::string& key_file) {
  auto text = readFile(key_file);
  if (!text) throw std::runtime_error(fmt::format("{}: cannot read: {}", key_file, errnoText(errno)));
  JwtAlg alg = JwtAlg::HS256;
  std::string material;
  if (text->find("-----BEGIN") != std::string::npos) {
    PkeyPtr key = readPem(*text, true);
    if (!key) throw std::runtime_error(fmt::format("{}: not a PEM private key", key_file));
    std::string why;
    auto a = keyAlg(key.get(), why);
    if (!a) throw std::runtime_error(fmt::format("{}: {}", key_file, why));
    alg = *a;
    material = std::move(*text);
  } else {
    material = readSecret(key_file);
  }
  jwt_t* raw = nullptr;
  if (jwt_new(&raw) != 0 || !raw) throw std::runtime_error("out of memory");
  JwtPtr jwt(raw);
  if (jwt_add_grants_json(raw, claims_json.c_str()) != 0) throw std::runtime_error("the claims are not a JSON object");
  if (jwt_set_alg(raw, toLibjwt(alg), reinterpret_cast<const unsigned char*>(material.data()),
                  static_cast<int>(material.size())) != 0)
    throw std::runtime_error(fmt::format("{}: libjwt refused the key for {}", key_file, jwtAlgName(alg)));
  std::unique_ptr<char, CFree> token(jwt_encode_str(raw));
  if (!token) throw std::runtime_error(fmt::format("{}: signing with {} failed", key_file, jwtAlgName(alg)));
  return token.get();
}

}  // namespace dingo
