#pragma once
// The TLS server side every process shares: the server SSL_CTX built from [tls], and
// the session ticket keys (TicketKeyRing) that let any worker resume another's sessions.
// The per-connection TLS state machine is gateway/Transport.h's TlsSocket.
#include <openssl/ssl.h>

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/Config.h"

namespace dingo {

// One TLS session ticket key: a name clients echo back, an HMAC key and an AES key.
struct TicketKey {
  std::array<uint8_t, 16> name{};
  std::array<uint8_t, 32> hmac{};
  std::array<uint8_t, 32> aes{};
};

TicketKey generateTicketKey();

// The ticket keys one process encrypts and decrypts with, newest first. Every worker
// holds the same ring (the supervisor generates and rotates it), so a session ticket
// issued by one worker resumes on any other.
class TicketKeyRing {
 public:
  static constexpr size_t kKeep = 3;  // the current key and the two before it

  void set(std::vector<TicketKey> keys);
  // Adds a new current key and forgets keys beyond kKeep.
  void rotate(const TicketKey& fresh);
  const TicketKey* current() const { return keys_.empty() ? nullptr : &keys_.front(); }
  // Looks a key up by name; *is_current tells whether it is the newest.
  const TicketKey* find(const uint8_t* name, bool* is_current) const;
  size_t size() const { return keys_.size(); }

  std::string serialize() const;
  static std::optional<std::vector<TicketKey>> parse(std::string_view bytes);

 private:
  std::vector<TicketKey> keys_;
};

struct SslCtxFree {
  void operator()(SSL_CTX* ctx) const { SSL_CTX_free(ctx); }
};
using SslCtxPtr = std::unique_ptr<SSL_CTX, SslCtxFree>;

// Builds the server context from [tls]: certificates (ECDSA and/or RSA), the versions,
// ciphers, ciphersuites and groups, the server's order first, no renegotiation, no
// compression, ALPN http/1.1, stateless session tickets keyed by `ring` (which must
// outlive the context), and OCSP stapling when [tls] ocsp is set. Throws
// std::runtime_error naming the file (or the key) and the OpenSSL error.
SslCtxPtr createServerContext(const TlsConfig& tls, const TicketKeyRing* ring);

// The last OpenSSL error as text (and clears the queue).
std::string opensslError();

}  // namespace dingo
