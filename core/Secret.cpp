#include "core/Secret.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

namespace dingo {

namespace {

bool sha256(std::string_view bytes, unsigned char (&out)[EVP_MAX_MD_SIZE]) {
  unsigned int len = 0;
  return EVP_Digest(bytes.data(), bytes.size(), out, &len, EVP_sha256(), nullptr) == 1 && len == 32;
}

}  // namespace

bool constantTimeEquals(std::string_view given, std::string_view secret) {
  unsigned char a[EVP_MAX_MD_SIZE];
  unsigned char b[EVP_MAX_MD_SIZE];
  bool hashed = sha256(given, a);
  hashed = sha256(secret, b) && hashed;  // both hashed, whatever the first gave
  return CRYPTO_memcmp(a, b, 32) == 0 && hashed;
}

}  // namespace dingo
