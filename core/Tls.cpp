#include "core/Tls.h"

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <cstring>
#include <stdexcept>

#include "core/Log.h"
#include "core/Process.h"

namespace dingo {

TicketKey generateTicketKey() {
  TicketKey k;
  if (RAND_bytes(k.name.data(), k.name.size()) != 1 ||
      RAND_bytes(k.hmac.data(), k.hmac.size()) != 1 ||
      RAND_bytes(k.aes.data(), k.aes.size()) != 1)
    throw std::runtime_error("RAND_bytes failed: " + opensslError());
  return k;
}

void TicketKeyRing::set(std::vector<TicketKey> keys) {
  if (keys.size() > kKeep) keys.resize(kKeep);
  keys_ = std::move(keys);
}

void TicketKeyRing::rotate(const TicketKey& fresh) {
  keys_.insert(keys_.begin(), fresh);
  if (keys_.size() > kKeep) keys_.resize(kKeep);
}

const TicketKey* TicketKeyRing::find(const uint8_t* name, bool* is_current) const {
  for (size_t i = 0; i < keys_.size(); ++i) {
    if (std::memcmp(keys_[i].name.data(), name, 16) == 0) {
      *is_current = (i == 0);
      return &keys_[i];
    }
  }
  return nullptr;
}

std::string TicketKeyRing::serialize() const {
  std::string out;
  for (const auto& k : keys_) {
    out.append(reinterpret_cast<const char*>(k.name.data()), k.name.size());
    out.append(reinterpret_cast<const char*>(k.hmac.data()), k.hmac.size());
    out.append(reinterpret_cast<const char*>(k.aes.data()), k.aes.size());
  }
  return out;
}

std::optional<std::vector<TicketKey>> TicketKeyRing::parse(std::string_view bytes) {
  constexpr size_t kSize = 16 + 32 + 32;
  if (bytes.empty() || bytes.size() % kSize != 0 || bytes.size() / kSize > kKeep)
    return std::nullopt;
  std::vector<TicketKey> keys(bytes.size() / kSize);
  for (size_t i = 0; i < keys.size(); ++i) {
    const char* p = bytes.data() + i * kSize;
    std::memcpy(keys[i].name.data(), p, 16);
    std::memcpy(keys[i].hmac.data(), p + 16, 32);
    std::memcpy(keys[i].aes.data(), p + 48, 32);
  }
  return keys;
}

std::string opensslError() {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out.empty() ? "unknown OpenSSL error" : out;
}

namespace {

// What the OpenSSL callbacks need, hung on the SSL_CTX through ex_data (not app_data,
// which Asio's ssl::context uses for itself).
struct ContextExtras {
  const TicketKeyRing* ring = nullptr;
  EVP_CIPHER* aes = nullptr;
  std::string ocsp;
  ~ContextExtras() { EVP_CIPHER_free(aes); }
};

int extrasIndex() {
  static int index = SSL_CTX_get_ex_new_index(
      0, nullptr, nullptr, nullptr,
      [](void*, void* ptr, CRYPTO_EX_DATA*, int, long, void*) {
        delete static_cast<ContextExtras*>(ptr);
      });
  return index;
}

ContextExtras* extrasOf(SSL* ssl) {
  return static_cast<ContextExtras*>(SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), extrasIndex()));
}

int ticketKeyCallback(SSL* ssl, unsigned char* key_name, unsigned char* iv,
                      EVP_CIPHER_CTX* cipher, EVP_MAC_CTX* mac, int enc) {
  ContextExtras* x = extrasOf(ssl);
  if (!x || !x->ring) return 0;
  const TicketKey* key = nullptr;
  int result = 1;
  if (enc) {
    key = x->ring->current();
    if (!key) return 0;  // no key yet: issue no ticket
    std::memcpy(key_name, key->name.data(), 16);
    if (RAND_bytes(iv, 16) != 1) return -1;
    if (EVP_EncryptInit_ex(cipher, x->aes, nullptr, key->aes.data(), iv) != 1) return -1;
  } else {
    bool is_current = false;
    key = x->ring->find(key_name, &is_current);
    if (!key) return 0;  // unknown or expired key: full handshake
    if (EVP_DecryptInit_ex(cipher, x->aes, nullptr, key->aes.data(), iv) != 1) return -1;
    // 2: valid, and issue a fresh ticket. Always so in TLS 1.3, where a client uses a
    // ticket once (without a new one its next connection is a full handshake); in
    // TLS 1.2 only when the ticket was sealed under an older key.
    result = (is_current && SSL_version(ssl) != TLS1_3_VERSION) ? 1 : 2;
  }
  OSSL_PARAM params[3];
  params[0] = OSSL_PARAM_construct_octet_string(
      OSSL_MAC_PARAM_KEY, const_cast<uint8_t*>(key->hmac.data()), key->hmac.size());
  params[1] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
                                               const_cast<char*>("SHA256"), 0);
  params[2] = OSSL_PARAM_construct_end();
  if (EVP_MAC_CTX_set_params(mac, params) != 1) return -1;
  return result;
}

int alpnSelect(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
               unsigned int inlen, void*) {
  static const unsigned char kProtos[] = "\x08http/1.1";
  unsigned char* selected = nullptr;
  if (SSL_select_next_proto(&selected, outlen, kProtos, sizeof kProtos - 1, in, inlen) ==
      OPENSSL_NPN_NEGOTIATED) {
    *out = selected;
    return SSL_TLSEXT_ERR_OK;
  }
  return SSL_TLSEXT_ERR_NOACK;  // no common protocol: go on without ALPN
}

int ocspStatus(SSL* ssl, void*) {
  ContextExtras* x = extrasOf(ssl);
  if (!x || x->ocsp.empty()) return SSL_TLSEXT_ERR_NOACK;
  auto* copy = static_cast<unsigned char*>(OPENSSL_malloc(x->ocsp.size()));
  if (!copy) return SSL_TLSEXT_ERR_NOACK;
  std::memcpy(copy, x->ocsp.data(), x->ocsp.size());
  if (SSL_set_tlsext_status_ocsp_resp(ssl, copy, static_cast<long>(x->ocsp.size())) != 1) {
    OPENSSL_free(copy);  // not taken: ours to free; the handshake goes on without a staple
    return SSL_TLSEXT_ERR_NOACK;
  }
  return SSL_TLSEXT_ERR_OK;
}

int protoVersion(const std::string& name) {
  return name == "TLSv1.3" ? TLS1_3_VERSION : TLS1_2_VERSION;
}

}  // namespace

SslCtxPtr createServerContext(const TlsConfig& tls, const TicketKeyRing* ring) {
  SslCtxPtr ctx(SSL_CTX_new(TLS_server_method()));
  if (!ctx) throw std::runtime_error("SSL_CTX_new: " + opensslError());
  SSL_CTX* c = ctx.get();
  SSL_CTX_set_min_proto_version(c, protoVersion(tls.min_version));
  SSL_CTX_set_max_proto_version(c, protoVersion(tls.max_version));
  // No renegotiation at all: a client-initiated one is refused with a no_renegotiation
  // alert (TLS 1.2; TLS 1.3 has none), so a client cannot make the server repeat its
  // handshake work on one connection.
  SSL_CTX_set_options(c, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                             SSL_OP_NO_COMPRESSION);
  if (SSL_CTX_set_cipher_list(c, tls.ciphers.c_str()) != 1)
    throw std::runtime_error("[tls] ciphers '" + tls.ciphers + "': " + opensslError());
  if (SSL_CTX_set_ciphersuites(c, tls.ciphersuites.c_str()) != 1)
    throw std::runtime_error("[tls] ciphersuites '" + tls.ciphersuites + "': " + opensslError());
  if (SSL_CTX_set1_groups_list(c, tls.groups.c_str()) != 1)
    throw std::runtime_error("[tls] groups '" + tls.groups + "': " + opensslError());
  // Idle connections give their read and write buffers back.
  SSL_CTX_set_mode(c, SSL_MODE_RELEASE_BUFFERS);

  for (size_t i = 0; i < tls.cert.size(); ++i) {
    if (SSL_CTX_use_certificate_chain_file(c, tls.cert[i].c_str()) != 1)
      throw std::runtime_error("loading certificate " + tls.cert[i] + ": " + opensslError());
    if (SSL_CTX_use_PrivateKey_file(c, tls.key[i].c_str(), SSL_FILETYPE_PEM) != 1)
      throw std::runtime_error("loading key " + tls.key[i] + ": " + opensslError());
    if (SSL_CTX_check_private_key(c) != 1)
      throw std::runtime_error("key " + tls.key[i] + " does not match certificate " +
                               tls.cert[i] + ": " + opensslError());
  }

  auto* extras = new ContextExtras;
  if (SSL_CTX_set_ex_data(c, extrasIndex(), extras) != 1) {
    delete extras;  // not attached: the context's free callback will never see it
    throw std::runtime_error("SSL_CTX_set_ex_data: " + opensslError());
  }
  extras->ring = ring;
  extras->aes = EVP_CIPHER_fetch(nullptr, "AES-256-CBC", nullptr);
  if (!extras->aes) throw std::runtime_error("EVP_CIPHER_fetch(AES-256-CBC): " + opensslError());
  if (!tls.ocsp.empty()) {
    auto ocsp = readFile(tls.ocsp);
    if (!ocsp) throw std::runtime_error("cannot read OCSP response " + tls.ocsp);
    extras->ocsp = std::move(*ocsp);
    SSL_CTX_set_tlsext_status_cb(c, ocspStatus);
  }

  // Sessions resume through stateless tickets only: no per-process session cache,
  // which a client reaching another worker would miss.
  SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_tlsext_ticket_key_evp_cb(c, ticketKeyCallback);
  SSL_CTX_set_num_tickets(c, 1);
  long lifetime = std::chrono::duration_cast<std::chrono::seconds>(tls.ticket_rotation).count() *
                  static_cast<long>(TicketKeyRing::kKeep - 1);
  SSL_CTX_set_timeout(c, lifetime > 0 ? lifetime : 1);
  SSL_CTX_set_alpn_select_cb(c, alpnSelect, nullptr);
  return ctx;
}

}  // namespace dingo
