#include "gateway/WsCommand.h"

#include <gtest/gtest.h>

namespace dingo {
namespace {

using Has = WsCommand::Has;

TEST(WsCommandTest, ReadsTheFields) {
  std::string_view err;
  auto c = parseWsCommand(R"({"id":7,"op":"publish","channel":"/a","data":{ "x" : [1, 2] }})", err);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->id, "7");
  EXPECT_EQ(c->op, "publish");
  EXPECT_EQ(c->channel, "/a");
  EXPECT_EQ(c->data_has, Has::Yes);
  EXPECT_EQ(c->data, R"({"x":[1,2]})");
  EXPECT_EQ(c->since_has, Has::No);
  auto s = parseWsCommand(R"({"id":"a\"b","op":"subscribe","channel":"/a","since":null})", err);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->id, R"("a\"b")");  // echoed as JSON
  EXPECT_EQ(s->since_has, Has::No);
}

TEST(WsCommandTest, WrongTypesAreMarked) {
  std::string_view err;
  auto c = parseWsCommand(R"({"id":[1],"op":5,"channel":{},"since":3})", err);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->id_has, Has::WrongType);
  EXPECT_EQ(c->id, "null");
  EXPECT_EQ(c->op_has, Has::WrongType);
  EXPECT_EQ(c->channel_has, Has::WrongType);
  EXPECT_EQ(c->since_has, Has::WrongType);
}

TEST(WsCommandTest, RefusesWhatIsNotAnObject) {
  std::string_view err;
  for (std::string_view text : {"[1]", "\"op\"", "{not json", "", "{\"op\":\"\xc3\x28\"}"})
    EXPECT_FALSE(parseWsCommand(text, err)) << text;
  std::string deep = "{\"data\":" + std::string(100000, '[') + std::string(100000, ']') + "}";
  EXPECT_FALSE(parseWsCommand(deep, err));
  EXPECT_EQ(err, "JSON nested too deep");
}

}  // namespace
}  // namespace dingo
