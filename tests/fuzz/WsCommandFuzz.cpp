// fuzz_ws_command: a WebSocket command as the session reads it (gateway/WsCommand.h,
// parseWsCommand), then what the session does with the fields: the id echoed in a
// reply, the channel checked, the since parsed, and the data a publish forwards to the
// hub, which every subscriber receives and must be valid compact JSON.
#include <string>

#include "core/Hub.h"
#include "core/Json.h"
#include "gateway/WsCommand.h"
#include "tests/fuzz/FuzzCheck.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view error;
  auto cmd = dingo::parseWsCommand(dingo::fuzz::text(data, size), error);
  if (!cmd) {
    FUZZ_CHECK(!error.empty());
    return 0;
  }
  using Has = dingo::WsCommand::Has;
  if (cmd->id_has == Has::Yes) FUZZ_CHECK(dingo::parseJson(cmd->id).ok());  // a reply embeds it as is
  if (cmd->channel_has == Has::Yes) (void)dingo::validChannel(cmd->channel);
  if (cmd->since_has == Has::Yes) {
    auto since = dingo::Position::parse(cmd->since);
    if (since) FUZZ_CHECK(dingo::Position::parse(since->toString()) == since);
  }
  if (cmd->data_has == Has::Yes) {
    // What the hub stores and every subscriber receives: valid, and compact already.
    std::string_view why;
    auto again = dingo::compactJson(cmd->data, dingo::kMaxJsonDepth, why);
    FUZZ_CHECK(again);
    FUZZ_CHECK(*again == cmd->data);
  }
  return 0;
}
