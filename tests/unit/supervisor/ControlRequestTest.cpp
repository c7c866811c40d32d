#include "supervisor/ControlRequest.h"

#include <gtest/gtest.h>

namespace dingo {
namespace {

std::string errorOf(std::string_view line) {
  auto r = parseControlRequest(line);
  auto* e = std::get_if<std::string>(&r);
  return e ? *e : std::string();
}

// Every one of these reached nlohmann's throwing accessors in the supervisor's read
// handler and ended io_.run(): one line killed the supervisor.
TEST(ControlRequestTest, HostileLinesAreErrorsNotExceptions) {
  for (std::string_view line : {
           R"({"cmd":"adopt","pid":"x"})",
           R"({"cmd":"adopt","pid":1,"worker":"0"})",
           R"({"cmd":"adopt","pid":-4,"worker":0})",
           R"({"cmd":"adopt","pid":99999999999,"worker":0})",
           R"({"cmd":"stop","drain_ms":"soon"})",
           R"({"cmd":"stop","drain_ms":-1})",
           R"({"cmd":"drain-worker","id":"1"})",
           R"({"cmd":"drain-worker"})",
           R"({"cmd":7})",
           R"(["status"])",
           "not json",
           "\xff\xfe\n",
           "",
       }) {
    EXPECT_FALSE(errorOf(line).empty()) << line;
  }
  EXPECT_FALSE(errorOf(std::string(100000, '[') + std::string(100000, ']')).empty());
  EXPECT_NE(errorOf(std::string(kMaxControlLine + 1, ' ')).find("at most"), std::string::npos);
}

TEST(ControlRequestTest, UnknownCommandsAreEchoedPrintably) {
  std::string e = errorOf(R"({"cmd":"fr\u001bob\u00e9"})");
  EXPECT_NE(e.find("unknown command"), std::string::npos);
  for (char c : e) EXPECT_TRUE(c >= 0x20 && c < 0x7f) << e;
}

TEST(ControlRequestTest, GoodRequestsAreTyped) {
  auto stop = std::get<ControlRequest>(parseControlRequest(R"({"cmd":"stop","drain_ms":1500})"));
  EXPECT_EQ(stop.cmd, ControlRequest::Cmd::Stop);
  EXPECT_EQ(stop.drain, Duration(1500));
  auto drain = std::get<ControlRequest>(parseControlRequest(R"({"cmd":"drain-worker","id":1})"));
  EXPECT_EQ(drain.worker, 1);
  auto adopt = std::get<ControlRequest>(parseControlRequest(
      R"({"cmd":"adopt","pid":42,"worker":0,"generation":3,"config_digest":"ab","connections":9})"));
  EXPECT_EQ(adopt.adopt.pid, 42);
  EXPECT_EQ(adopt.adopt.slot, 0);
  EXPECT_EQ(adopt.adopt.generation, 3);
  EXPECT_EQ(adopt.adopt.config_digest, "ab");
  EXPECT_EQ(adopt.adopt.connections, 9u);
  // Optional fields of the wrong type are ignored, not fatal.
  auto loose = std::get<ControlRequest>(parseControlRequest(R"({"cmd":"adopt","pid":42,"worker":0,"generation":"x"})"));
  EXPECT_FALSE(loose.adopt.generation);
}

}  // namespace
}  // namespace dingo
