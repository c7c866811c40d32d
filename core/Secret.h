#pragma once
// Comparing secrets (the publish token) without telling an attacker, through timing,
// how much of a guess was right or how long the secret is.
#include <string_view>

namespace dingo {

// True when `given` equals `secret`. Both are hashed with SHA-256 and the digests compared
// with CRYPTO_memcmp, so the time taken depends only on the two lengths (the hashing),
// never on where or whether the strings differ: a guess of the wrong length costs the
// same as one of the right length, and no length check leaks the secret's length.
// False if the digest cannot be computed.
bool constantTimeEquals(std::string_view given, std::string_view secret);

}  // namespace dingo
