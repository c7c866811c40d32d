#include "core/Jwt.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>

#include <fmt/format.h>

#include "core/Config.h"

using namespace dingo;

namespace {

std::string base64Url(std::string_view bytes) {
  std::string out((bytes.size() + 2) / 3 * 4 + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(bytes.data()), static_cast<int>(bytes.size()));
  out.resize(static_cast<size_t>(n));
  while (!out.empty() && out.back() == '=') out.pop_back();
  for (char& c : out) c = c == '+' ? '-' : c == '/' ? '_' : c;
  return out;
}

// A temporary folder with an EC P-256 and an RSA key pair and an HMAC secret.
class JwtTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/dingo-jwt-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    writeKeyPair(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"), "es");
    writeKeyPair(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", size_t{2048}), "rsa");
    write("hs.secret", std::string(40, 'k') + "\n");
    auth_.jwt_public_keys = {path("es.pub"), path("rsa.pub")};
    auth_.jwt_hmac_secret_file = path("hs.secret");
    keys_ = loadJwtKeys(auth_);
  }
  void TearDown() override { std::system(fmt::format("rm -rf '{}'", dir_).c_str()); }

  std::string path(const std::string& name) const { return dir_ + "/" + name; }
  void write(const std::string& name, const std::string& text) { std::ofstream(path(name)) << text; }

  void writeKeyPair(EVP_PKEY* key, const std::string& name) {
    ASSERT_NE(key, nullptr);
    FILE* f = std::fopen(path(name + ".key").c_str(), "w");
    PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr, nullptr);
    std::fclose(f);
    f = std::fopen(path(name + ".pub").c_str(), "w");
    PEM_write_PUBKEY(f, key);
    std::fclose(f);
    EVP_PKEY_free(key);
  }

  std::string mint(const std::string& key, const std::string& claims) { return signToken(claims, path(key)); }

  static std::string claimsExpiringIn(int64_t seconds, const std::string& more = "") {
    return fmt::format(R"({{"sub":"alice","exp":{}{}}})", unixNowMs() / 1000 + seconds, more);
  }

  TokenCheck verify(const std::string& token, std::string_view iss = {}, std::string_view aud = {}) {
    return verifyToken(token, keys_, iss, aud);
  }

  std::string dir_;
  AuthConfig auth_;
  JwtKeys keys_;
};

}  // namespace

TEST_F(JwtTest, KeysOfEachKindVerifyTheirTokens) {
  for (auto key : {"es.key", "rsa.key", "hs.secret"}) {
    auto c = verify(mint(key, claimsExpiringIn(60, R"(,"channels":{"subscribe":["/rooms/*"],"publish":["/users/{sub}"]})")));
    ASSERT_TRUE(c.claims) << key << ": " << c.message;
    EXPECT_EQ(c.claims->sub, "alice");
    ASSERT_EQ(c.claims->subscribe.size(), 1u);
    EXPECT_TRUE(c.claims->subscribe[0].matches("/rooms/1", "alice"));
    ASSERT_EQ(c.claims->publish.size(), 1u);
    EXPECT_TRUE(c.claims->publish[0].matches("/users/alice", "alice"));
  }
}

TEST_F(JwtTest, ExpiryIsCheckedWithTheLeeway) {
  auto c = verify(mint("es.key", claimsExpiringIn(-1)));  // expired one second ago
  ASSERT_TRUE(c.claims) << c.message;                    // the signature is fine ...
  std::string why;
  EXPECT_EQ(checkTokenTime(*c.claims, unixNowMs(), Duration(0), why), TokenError::Expired);  // ... the time is not
  EXPECT_NE(why.find("expired"), std::string::npos);
  EXPECT_EQ(checkTokenTime(*c.claims, unixNowMs(), std::chrono::seconds(30), why), std::nullopt);
  auto fresh = verify(mint("es.key", claimsExpiringIn(60)));
  EXPECT_EQ(checkTokenTime(*fresh.claims, unixNowMs(), Duration(0), why), std::nullopt);
}

TEST_F(JwtTest, NotBeforeInTheFutureIsRefused) {
  int64_t now_s = unixNowMs() / 1000;
  auto c = verify(mint("es.key", claimsExpiringIn(600, fmt::format(R"(,"nbf":{})", now_s + 60))));
  ASSERT_TRUE(c.claims);
  std::string why;
  EXPECT_EQ(checkTokenTime(*c.claims, unixNowMs(), Duration(0), why), TokenError::NotYetValid);
  EXPECT_EQ(checkTokenTime(*c.claims, unixNowMs(), std::chrono::seconds(120), why), std::nullopt);
}

TEST_F(JwtTest, ExpIsRequired) {
  auto c = verify(mint("es.key", R"({"sub":"alice"})"));
  EXPECT_FALSE(c.claims);
  EXPECT_EQ(c.error, TokenError::Claims);
  c = verify(mint("es.key", R"({"sub":"alice","exp":"tomorrow"})"));
  EXPECT_EQ(c.error, TokenError::Claims);
}

TEST_F(JwtTest, IssuerAndAudienceAreCheckedWhenConfigured) {
  std::string t = mint("es.key", claimsExpiringIn(60, R"(,"iss":"https://auth","aud":["x","dingo"])"));
  EXPECT_TRUE(verify(t, "https://auth", "dingo").claims);
  EXPECT_TRUE(verify(t).claims);
  EXPECT_EQ(verify(t, "https://other").error, TokenError::Issuer);
  EXPECT_EQ(verify(t, {}, "other").error, TokenError::Audience);
  std::string single = mint("es.key", claimsExpiringIn(60, R"(,"aud":"dingo")"));
  EXPECT_TRUE(verify(single, {}, "dingo").claims);
  EXPECT_EQ(verify(mint("es.key", claimsExpiringIn(60)), {}, "dingo").error, TokenError::Audience);
}

TEST_F(JwtTest, AlgNoneIsRefused) {
  std::string header = base64Url(R"({"alg":"none","typ":"JWT"})");
  std::string payload = base64Url(claimsExpiringIn(60));
  EXPECT_EQ(verify(header + "." + payload + ".").error, TokenError::Malformed);  // no signature at all
  auto c = verify(header + "." + payload + "." + base64Url("x"));
  EXPECT_FALSE(c.claims);
  EXPECT_EQ(c.error, TokenError::Algorithm);
}

TEST_F(JwtTest, AnHs256TokenMacedWithThePublicKeyIsRefused) {
  // The algorithm confusion attack: the public key is public, so anyone can compute an
  // HMAC with its PEM text as the secret. Only a configured secret may check HS256.
  std::ifstream f(path("es.pub"));
  std::string pem((std::istreambuf_iterator<char>(f)), {});
  std::string signing_input = base64Url(R"({"alg":"HS256","typ":"JWT"})") + "." + base64Url(claimsExpiringIn(60));
  unsigned char mac[32];
  unsigned int len = 0;
  HMAC(EVP_sha256(), pem.data(), static_cast<int>(pem.size()),
       reinterpret_cast<const unsigned char*>(signing_input.data()), signing_input.size(), mac, &len);
  std::string token = signing_input + "." + base64Url(std::string_view(reinterpret_cast<char*>(mac), len));
  EXPECT_EQ(verify(token).error, TokenError::BadSignature);  // tried against the secret only
  // With no secret configured, HS256 is not even tried.
  AuthConfig es_only;
  es_only.jwt_public_keys = {path("es.pub")};
  auto c = verifyToken(token, loadJwtKeys(es_only), {}, {});
  EXPECT_FALSE(c.claims);
  EXPECT_EQ(c.error, TokenError::Algorithm);
}

TEST_F(JwtTest, AnRs256TokenIsNotCheckedAgainstAnEcKey) {
  AuthConfig es_only;
  es_only.jwt_public_keys = {path("es.pub")};
  auto c = verifyToken(mint("rsa.key", claimsExpiringIn(60)), loadJwtKeys(es_only), {}, {});
  EXPECT_EQ(c.error, TokenError::Algorithm);
}

TEST_F(JwtTest, BadSignaturesAndTruncatedTokensAreRefused) {
  std::string t = mint("es.key", claimsExpiringIn(60));
  // Another key of the same kind.
  writeKeyPair(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"), "other");
  EXPECT_EQ(verify(mint("other.key", claimsExpiringIn(60))).error, TokenError::BadSignature);
  // A payload edited under the original signature.
  size_t a = t.find('.'), b = t.rfind('.');
  std::string forged = t.substr(0, a + 1) + base64Url(R"({"sub":"root","exp":99999999999})") + t.substr(b);
  EXPECT_EQ(verify(forged).error, TokenError::BadSignature);
  // Cut short anywhere.
  for (size_t n : {size_t{0}, size_t{5}, a, a + 1, b, b + 1, t.size() - 3}) {
    auto c = verify(t.substr(0, n));
    EXPECT_FALSE(c.claims) << n;
    EXPECT_TRUE(c.error == TokenError::Malformed || c.error == TokenError::BadSignature) << n << " " << c.message;
  }
  EXPECT_EQ(verify("a.b.c").error, TokenError::Malformed);
  EXPECT_EQ(verify(std::string(kMaxTokenBytes + 1, 'a')).error, TokenError::Malformed);
  EXPECT_EQ(verify(t + " ").error, TokenError::Malformed);
}

TEST_F(JwtTest, BadPatternsRefuseTheWholeToken) {
  auto c = verify(mint("es.key", claimsExpiringIn(60, R"(,"channels":{"subscribe":["/ok/*","/bad/*/x"]})")));
  EXPECT_EQ(c.error, TokenError::Claims);
  EXPECT_NE(c.message.find("subscribe[1]"), std::string::npos) << c.message;
  c = verify(mint("es.key", claimsExpiringIn(60, R"(,"channels":["/a"])")));
  EXPECT_EQ(c.error, TokenError::Claims);
  c = verify(mint("es.key", R"({"sub":7,"exp":99999999999})"));
  EXPECT_EQ(c.error, TokenError::Claims);
}

TEST_F(JwtTest, KeyFilesThatCannotServeAreNamed) {
  write("short.secret", "too short");
  write("junk.pub", "not a key");
  writeKeyPair(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-384"), "p384");
  for (auto [name, secret, needle] : {std::tuple{"short.secret", true, "at least 32 bytes"},
                                      std::tuple{"junk.pub", false, "not a PEM public key"},
                                      std::tuple{"p384.pub", false, "not P-256"},
                                      std::tuple{"missing.pub", false, "cannot read"}}) {
    AuthConfig a;
    if (secret) a.jwt_hmac_secret_file = path(name);
    else a.jwt_public_keys = {path(name)};
    try {
      loadJwtKeys(a);
      ADD_FAILURE() << name << " was accepted";
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find(name), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  }
}

TEST_F(JwtTest, AnEs256SignatureIsRawRAndSNotDer) {
  // RFC 7518 3.4: R and S, 32 bytes each. The same signature in DER (what OpenSSL
  // produces) or cut short is refused.
  std::string t = mint("es.key", claimsExpiringIn(60));
  size_t dot = t.rfind('.');
  std::string sig = t.substr(dot + 1);
  EXPECT_EQ(sig.size(), 86u);  // base64url of 64 bytes
  EXPECT_TRUE(verify(t).claims);
  EXPECT_EQ(verify(t.substr(0, dot + 1) + sig.substr(0, 80)).error, TokenError::BadSignature);
  std::string der = "\x30\x44\x02\x20" + std::string(32, '\x11') + "\x02\x20" + std::string(32, '\x22');
  EXPECT_EQ(verify(t.substr(0, dot + 1) + base64Url(der)).error, TokenError::BadSignature);
}

TEST_F(JwtTest, CriticalHeaderExtensionsAreRefused) {
  // RFC 7515 4.1.11: a recipient that does not understand a "crit" extension must refuse.
  std::string signing_input =
      base64Url(R"({"alg":"HS256","crit":["exp2"],"exp2":1})") + "." + base64Url(claimsExpiringIn(60));
  unsigned char mac[32];
  unsigned int len = 0;
  std::string secret(40, 'k');
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(signing_input.data()), signing_input.size(), mac, &len);
  std::string token = signing_input + "." + base64Url(std::string_view(reinterpret_cast<char*>(mac), len));
  EXPECT_EQ(verify(token).error, TokenError::Malformed);
}
