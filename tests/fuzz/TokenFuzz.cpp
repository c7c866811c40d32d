// fuzz_token: a JWT as a client presents it (WebSocket auth, Bearer, ?token=), checked by
// core/Jwt.h against an HS256 secret and an ES256 key. Input starting with 'c' is a
// claims object instead: it is signed here with the secret, so that the claim checks
// behind the signature are reached too (the fuzzer cannot forge a MAC). Invariants: a
// refusal has a printable message; accepted claims hold only valid patterns, and
// matching them against channels made of the input never misbehaves.
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <unistd.h>

#include <cstdio>
#include <string>

#include "core/Config.h"
#include "core/Jwt.h"
#include "tests/fuzz/FuzzCheck.h"

namespace {

struct Keys {
  dingo::JwtKeys keys;
  std::string secret_file;
  std::string ec_file;
  Keys() {
    secret_file = write("/tmp/dingo-fuzz-secret-XXXXXX", std::string(40, 's'));
    EVP_PKEY* ec = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
    BIO* bio = BIO_new(BIO_s_mem());
    PEM_write_bio_PUBKEY(bio, ec);
    char* pem = nullptr;
    long n = BIO_get_mem_data(bio, &pem);
    ec_file = write("/tmp/dingo-fuzz-ec-XXXXXX", std::string(pem, static_cast<size_t>(n)));
    BIO_free(bio);
    EVP_PKEY_free(ec);
    dingo::AuthConfig auth;
    auth.jwt_public_keys = {ec_file};
    auth.jwt_hmac_secret_file = secret_file;
    keys = dingo::loadJwtKeys(auth);
  }
  ~Keys() {
    ::unlink(secret_file.c_str());
    ::unlink(ec_file.c_str());
  }
  static std::string write(std::string path, const std::string& text) {
    int fd = ::mkstemp(path.data());
    FUZZ_CHECK(fd >= 0 && ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()));
    ::close(fd);
    return path;
  }
};

const Keys& keys() {
  static const Keys k;
  return k;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in = dingo::fuzz::text(data, size);
  std::string token(in);
  if (!in.empty() && in[0] == 'c') {
    try {
      token = dingo::signToken(std::string(in.substr(1)), keys().secret_file);
    } catch (const std::exception&) {
      return 0;  // not a JSON object: libjwt will not sign it
    }
  }
  auto check = dingo::verifyToken(token, keys().keys, "iss", "aud");
  if (!check.claims) {
    FUZZ_CHECK(!check.message.empty() && check.message.size() < 1024);
    for (char c : check.message) FUZZ_CHECK(static_cast<unsigned char>(c) >= 0x20);
    return 0;
  }
  const auto& c = *check.claims;
  FUZZ_CHECK(c.sub.size() <= 255);
  FUZZ_CHECK(c.subscribe.size() <= dingo::kMaxTokenPatterns && c.publish.size() <= dingo::kMaxTokenPatterns);
  std::string why;
  (void)dingo::checkTokenTime(c, 0, dingo::Duration(0), why);
  for (const auto* list : {&c.subscribe, &c.publish})
    for (const auto& p : *list) {
      FUZZ_CHECK(dingo::ChannelPattern::parse(p.text()).has_value());
      (void)p.matches("/" + c.sub, c.sub);
      (void)p.matches(p.text(), c.sub);
    }
  return 0;
}
