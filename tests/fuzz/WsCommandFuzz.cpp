// fuzz_ws_command: a WebSocket command as gateway/WsSession.cpp's onCommand reads it:
// nlohmann::json::parse without exceptions, the id, op, channel, since and data fields,
// and dump() of the id and of the data a publish forwards to the hub.
// The parse-then-dump steps are those of onCommand and publish(); the session itself
// needs a socket and a broker, so this target repeats them rather than linking it.
#include <nlohmann/json.hpp>
#include <string>

#include "core/Hub.h"
#include "tests/fuzz/FuzzCheck.h"

namespace {

using nlohmann::json;

std::string dumpCompact(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  json cmd = json::parse(dingo::fuzz::text(data, size), nullptr, false);
  if (cmd.is_discarded() || !cmd.is_object()) return 0;
  if (auto it = cmd.find("id"); it != cmd.end()) {
    if (!it->is_number() && !it->is_string() && !it->is_null()) return 0;
    std::string id = dumpCompact(*it);
    FUZZ_CHECK(!id.empty());
  }
  auto op = cmd.find("op");
  if (op == cmd.end() || !op->is_string()) return 0;
  if (auto it = cmd.find("channel"); it != cmd.end() && it->is_string())
    (void)dingo::validChannel(it->get_ref<const std::string&>());
  if (auto it = cmd.find("since"); it != cmd.end() && it->is_string()) {
    auto since = dingo::Position::parse(it->get_ref<const std::string&>());
    if (since) FUZZ_CHECK(dingo::Position::parse(since->toString()) == since);
  }
  if (auto it = cmd.find("data"); it != cmd.end()) {
    // What the hub stores and every subscriber receives: it must parse back the same.
    std::string stored = dumpCompact(*it);
    json again = json::parse(stored, nullptr, false);
    FUZZ_CHECK(!again.is_discarded());
    FUZZ_CHECK(dumpCompact(again) == stored);
  }
  return 0;
}
