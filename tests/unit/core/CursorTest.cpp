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

namespace dingo {
namespace {

// Hardening, defect 3: the count was one byte, so channels past the 255th were dropped.
TEST(CursorTest, CarriesEveryChannelUpToTheLimit) {
  CursorCodec codec("k");
  for (size_t n : {255u, 256u, 300u, 65535u}) {
    Cursor c;
    for (size_t i = 0; i < n; ++i) c.positions.emplace_back("/c" + std::to_string(i), Position{"abcdefghij", i});
    auto back = codec.decode(codec.encode(c));
    ASSERT_TRUE(back) << n;
    ASSERT_EQ(back->positions.size(), n);
    EXPECT_EQ(back->positions.back().first, "/c" + std::to_string(n - 1));
    EXPECT_EQ(back->positions.back().second.seq, n - 1);
  }
}

TEST(CursorTest, RefusesToDropChannels) {
  CursorCodec codec("k");
  Cursor c;
  for (size_t i = 0; i < CursorCodec::kMaxChannels + 1; ++i) c.positions.emplace_back("/c", Position{"abcdefghij", 0});
  EXPECT_THROW(codec.encode(c), std::length_error);
}

TEST(CursorTest, EncodedSizeIsExact) {
  CursorCodec codec("k");
  Cursor c;
  std::vector<std::string> names;
  for (int i = 0; i < 40; ++i) {
    names.push_back("/room/" + std::to_string(i * 7919));
    c.positions.emplace_back(names.back(), Position{"abcdefghij", 123456789});
  }
  EXPECT_EQ(codec.encode(c).size(), CursorCodec::encodedSize(names, Position::kEpochLength));
}

}  // namespace
}  // namespace dingo
