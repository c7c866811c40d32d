#include "core/Secret.h"

#include <gtest/gtest.h>

#include <string>

using namespace dingo;

TEST(ConstantTimeEquals, EqualSecretsMatch) {
  EXPECT_TRUE(constantTimeEquals("s3cret", "s3cret"));
  EXPECT_TRUE(constantTimeEquals("", ""));
  std::string long_token(4096, 'x');
  EXPECT_TRUE(constantTimeEquals(long_token, std::string(4096, 'x')));
}

TEST(ConstantTimeEquals, AnyDifferenceFails) {
  EXPECT_FALSE(constantTimeEquals("s3cref", "s3cret"));  // last byte
  EXPECT_FALSE(constantTimeEquals("t3cret", "s3cret"));  // first byte
  EXPECT_FALSE(constantTimeEquals("S3CRET", "s3cret"));  // case matters
}

TEST(ConstantTimeEquals, PrefixesAndExtensionsFail) {
  // A length mismatch is a mismatch, in either direction, even when one string is the
  // start of the other: no comparison stops at the shorter length.
  EXPECT_FALSE(constantTimeEquals("s3cre", "s3cret"));
  EXPECT_FALSE(constantTimeEquals("s3cret!", "s3cret"));
  EXPECT_FALSE(constantTimeEquals("", "s3cret"));
  EXPECT_FALSE(constantTimeEquals("s3cret", ""));
  // Embedded NULs are bytes like any other.
  EXPECT_FALSE(constantTimeEquals(std::string_view("s3cret\0x", 8), "s3cret"));
  EXPECT_TRUE(constantTimeEquals(std::string_view("a\0b", 3), std::string_view("a\0b", 3)));
}
