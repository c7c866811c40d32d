#include "core/Json.h"

#include <gtest/gtest.h>

namespace dingo {
namespace {

std::string nested(size_t depth) { return std::string(depth, '[') + std::string(depth, ']'); }

TEST(JsonTest, DepthIsBounded) {
  EXPECT_TRUE(parseJson(nested(kMaxJsonDepth)).ok());
  ParsedJson deep = parseJson(nested(kMaxJsonDepth + 1));
  EXPECT_FALSE(deep.ok());
  EXPECT_EQ(deep.error, "JSON nested too deep");
  // The body that crashed a worker in dump(): refused before nlohmann sees it.
  EXPECT_FALSE(parseJson(nested(100000)).ok());
  EXPECT_FALSE(parseJson("{\"a\":" + nested(100000) + "}").ok());
}

TEST(JsonTest, BracketsInStringsDoNotCount) {
  std::string s = "[\"" + std::string(1000, '[') + "\\\"" + std::string(1000, '{') + "\"]";
  ParsedJson p = parseJson(s);
  ASSERT_TRUE(p.ok()) << p.error;
  EXPECT_TRUE(p.value.is_array());
}

TEST(JsonTest, BadTextIsAnErrorNotAnException) {
  for (std::string_view text : {"", "{", "not json", "\xff\xfe", "{\"a\":\"\xc3\x28\"}", "[1,]"})
    EXPECT_FALSE(parseJson(text).ok()) << text;
}

TEST(JsonTest, FieldsOfTheWrongTypeAreAbsent) {
  auto j = parseJson(R"({"s":"x","b":true,"i":-3,"u":7,"big":18446744073709551615,"f":1.5,"n":null})").value;
  EXPECT_EQ(field<std::string>(j, "s"), "x");
  EXPECT_EQ(field<std::string>(j, "i"), std::nullopt);
  EXPECT_EQ(field<bool>(j, "b"), true);
  EXPECT_EQ(field<bool>(j, "s"), std::nullopt);
  EXPECT_EQ(field<int>(j, "i"), -3);
  EXPECT_EQ(field<uint64_t>(j, "i"), std::nullopt);  // negative
  EXPECT_EQ(field<uint64_t>(j, "u"), 7u);
  EXPECT_EQ(field<int>(j, "big"), std::nullopt);      // out of range
  EXPECT_EQ(field<int64_t>(j, "big"), std::nullopt);
  EXPECT_EQ(field<uint64_t>(j, "big"), 18446744073709551615u);
  EXPECT_EQ(field<int>(j, "f"), std::nullopt);        // not an integer
  EXPECT_EQ(field<double>(j, "f"), 1.5);
  EXPECT_EQ(field<int>(j, "missing"), std::nullopt);
  EXPECT_EQ(field<int>(nlohmann::json::array(), "i"), std::nullopt);  // not an object
}

}  // namespace
}  // namespace dingo

namespace dingo {
namespace {

TEST(CompactJsonTest, KeepsTokensDropsWhitespace) {
  std::string_view err;
  EXPECT_EQ(compactJson(" { \"a\" : [ 1 , 2.50 , \"x y\\u00e9\" ] } \n", 64, err), R"({"a":[1,2.50,"x y\u00e9"]})");
  EXPECT_EQ(compactJson("42", 64, err), "42");
}

TEST(CompactJsonTest, RefusesWhatParseJsonRefuses) {
  std::string_view err;
  EXPECT_FALSE(compactJson(std::string(65, '[') + std::string(65, ']'), 64, err));
  EXPECT_EQ(err, "JSON nested too deep");
  EXPECT_TRUE(compactJson(std::string(64, '[') + std::string(64, ']'), 64, err));
  EXPECT_FALSE(compactJson("{\"a\":\"\xc3\x28\"}", 64, err));
  EXPECT_FALSE(compactJson("[1,]", 64, err));
  EXPECT_FALSE(compactJson("", 64, err));
  EXPECT_FALSE(compactJson(std::string(100000, '['), 64, err));
}

}  // namespace
}  // namespace dingo
