#include "core/Cursor.h"

#include <gtest/gtest.h>

namespace dingo {
namespace {

Cursor sample() {
  Cursor c;
  c.session = 0x1122334455667788ULL;
  c.positions.emplace_back("/rooms/42", Position{"k2f9qzx1ab", 41});
  c.positions.emplace_back("/b", Position{"zzzzzzzzzz", 0});  // epochs are 10 characters
  return c;
}

TEST(CursorTest, RoundTrips) {
  CursorCodec codec("secret");
  std::string text = codec.encode(sample());
  for (char ch : text) EXPECT_TRUE(isalnum(static_cast<unsigned char>(ch)) || ch == '-' || ch == '_') << text;
  auto back = codec.decode(text);
  ASSERT_TRUE(back);
  EXPECT_EQ(back->session, 0x1122334455667788ULL);
  ASSERT_EQ(back->positions.size(), 2u);
  EXPECT_EQ(back->positions[0].first, "/rooms/42");
  EXPECT_EQ(back->positions[0].second, (Position{"k2f9qzx1ab", 41}));
  ASSERT_NE(back->find("/b"), nullptr);
  EXPECT_EQ(back->find("/b")->seq, 0u);
  EXPECT_EQ(back->find("/c"), nullptr);
}

TEST(CursorTest, EveryEditedCharacterIsRejected) {
  CursorCodec codec("secret");
  std::string text = codec.encode(sample());
  for (size_t i = 0; i < text.size(); ++i) {
    std::string bad = text;
    bad[i] = bad[i] == 'A' ? 'B' : 'A';
    EXPECT_FALSE(codec.decode(bad)) << i;
  }
  EXPECT_FALSE(codec.decode(text.substr(0, text.size() - 1)));
  EXPECT_FALSE(codec.decode(text + "A"));
  EXPECT_FALSE(codec.decode(""));
  EXPECT_FALSE(codec.decode("not a cursor!"));
  EXPECT_FALSE(codec.decode(std::string(100, '=')));
}

TEST(CursorTest, AnotherSecretIsAForgery) {
  std::string text = CursorCodec("one").encode(sample());
  EXPECT_FALSE(CursorCodec("two").decode(text));
  EXPECT_TRUE(CursorCodec("one").decode(text));
  // The built-in key (no secret configured) still catches corruption.
  std::string builtin = CursorCodec("").encode(sample());
  EXPECT_TRUE(CursorCodec("").decode(builtin));
  EXPECT_FALSE(CursorCodec("one").decode(builtin));
}

TEST(CursorTest, NoChannels) {
  CursorCodec codec("");
  Cursor c;
  c.session = 7;
  auto back = codec.decode(codec.encode(c));
  ASSERT_TRUE(back);
  EXPECT_EQ(back->session, 7u);
  EXPECT_TRUE(back->positions.empty());
}

}  // namespace
}  // namespace dingo
