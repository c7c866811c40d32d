#include "core/Tls.h"

#include <gtest/gtest.h>

using namespace dingo;

TEST(TicketKeyRing, RotationKeepsTheNewestThree) {
  TicketKeyRing ring;
  EXPECT_EQ(ring.current(), nullptr);
  std::vector<TicketKey> made;
  for (int i = 0; i < 5; ++i) {
    made.push_back(generateTicketKey());
    ring.rotate(made.back());
  }
  ASSERT_EQ(ring.size(), TicketKeyRing::kKeep);
  EXPECT_EQ(ring.current()->name, made[4].name);
  bool current = false;
  ASSERT_NE(ring.find(made[4].name.data(), &current), nullptr);
  EXPECT_TRUE(current);
  ASSERT_NE(ring.find(made[2].name.data(), &current), nullptr);  // still decrypts
  EXPECT_FALSE(current);                                          // but is renewed
  EXPECT_EQ(ring.find(made[1].name.data(), &current), nullptr);  // expired
}

TEST(TicketKeyRing, SerializesForTheWorkers) {
  TicketKeyRing ring;
  ring.rotate(generateTicketKey());
  ring.rotate(generateTicketKey());
  auto keys = TicketKeyRing::parse(ring.serialize());
  ASSERT_TRUE(keys);
  TicketKeyRing copy;
  copy.set(*keys);
  EXPECT_EQ(copy.serialize(), ring.serialize());
  EXPECT_FALSE(TicketKeyRing::parse(""));
  EXPECT_FALSE(TicketKeyRing::parse(std::string(79, 'x')));
  EXPECT_FALSE(TicketKeyRing::parse(std::string(80 * 4, 'x')));
}

TEST(TicketKeyRing, KeysAreRandom) {
  EXPECT_NE(generateTicketKey().aes, generateTicketKey().aes);
}

TEST(ServerContext, OffersOnlyForwardSecretAeadSuites) {
  // The default [tls] ciphers and OpenSSL's TLS 1.3 suites: every one authenticated
  // encryption, every TLS 1.2 one with an ephemeral ECDH key exchange (no static RSA,
  // no CBC: testssl.sh's LUCKY13 and "obsoleted CBC" findings).
  TicketKeyRing ring;
  SslCtxPtr ctx = createServerContext(TlsConfig{}, &ring);
  STACK_OF(SSL_CIPHER)* ciphers = SSL_CTX_get_ciphers(ctx.get());
  ASSERT_NE(ciphers, nullptr);
  int tls12 = 0;
  for (int i = 0; i < sk_SSL_CIPHER_num(ciphers); ++i) {
    const SSL_CIPHER* c = sk_SSL_CIPHER_value(ciphers, i);
    EXPECT_EQ(SSL_CIPHER_is_aead(c), 1) << SSL_CIPHER_get_name(c);
    if (SSL_CIPHER_get_kx_nid(c) == NID_kx_any) continue;  // TLS 1.3: negotiated apart
    ++tls12;
    EXPECT_EQ(SSL_CIPHER_get_kx_nid(c), NID_kx_ecdhe) << SSL_CIPHER_get_name(c);
  }
  EXPECT_EQ(tls12, 6);
}

TEST(ServerContext, PrefersAes128InTlsOneThree) {
  // The server's order decides (SSL_OP_CIPHER_SERVER_PREFERENCE), and a client that lists
  // AES-256 first, as OpenSSL's do, still gets AES-128-GCM-SHA256.
  TicketKeyRing ring;
  SslCtxPtr ctx = createServerContext(TlsConfig{}, &ring);
  EXPECT_TRUE(SSL_CTX_get_options(ctx.get()) & SSL_OP_CIPHER_SERVER_PREFERENCE);
  STACK_OF(SSL_CIPHER)* ciphers = SSL_CTX_get_ciphers(ctx.get());
  ASSERT_GT(sk_SSL_CIPHER_num(ciphers), 0);
  EXPECT_STREQ(SSL_CIPHER_standard_name(sk_SSL_CIPHER_value(ciphers, 0)), "TLS_AES_128_GCM_SHA256");
}

TEST(ServerContext, RefusesRenegotiationAndCompression) {
  TicketKeyRing ring;
  SslCtxPtr ctx = createServerContext(TlsConfig{}, &ring);
  uint64_t options = SSL_CTX_get_options(ctx.get());
  EXPECT_TRUE(options & SSL_OP_NO_RENEGOTIATION);
  EXPECT_FALSE(options & SSL_OP_ALLOW_CLIENT_RENEGOTIATION);
  EXPECT_TRUE(options & SSL_OP_NO_COMPRESSION);
  EXPECT_EQ(SSL_CTX_get_min_proto_version(ctx.get()), TLS1_2_VERSION);
}

// Whether createServerContext refuses `tls` with an error that contains `named`.
testing::AssertionResult refusedNaming(const TlsConfig& tls, const std::string& named) {
  TicketKeyRing ring;
  try {
    createServerContext(tls, &ring);
  } catch (const std::runtime_error& e) {
    if (std::string(e.what()).find(named) != std::string::npos) return testing::AssertionSuccess();
    return testing::AssertionFailure() << "the error does not name " << named << ": " << e.what();
  }
  return testing::AssertionFailure() << "accepted, but should have refused naming " << named;
}

TEST(ServerContext, BadCipherOrGroupListsAreNamed) {
  TlsConfig bad_ciphers;
  bad_ciphers.ciphers = "NO-SUCH-CIPHER";
  EXPECT_TRUE(refusedNaming(bad_ciphers, "[tls] ciphers 'NO-SUCH-CIPHER'"));
  TlsConfig bad_suites;
  bad_suites.ciphersuites = "TLS_NO_SUCH_SUITE";
  EXPECT_TRUE(refusedNaming(bad_suites, "[tls] ciphersuites 'TLS_NO_SUCH_SUITE'"));
  TlsConfig bad_groups;
  bad_groups.groups = "X25519:no-such-group";
  EXPECT_TRUE(refusedNaming(bad_groups, "[tls] groups"));
}
