#pragma once
// One WebSocket command ({"id":1,"op":"subscribe","channel":"/a","since":"..."}), read
// with simdjson into plain fields. The session acts on the fields; it never touches
// the client's JSON itself. simdjson checks syntax, UTF-8 and nesting (kMaxJsonDepth)
// at about a gigabyte a second, where nlohmann took ~100 ms per megabyte on the event
// loop, and a command can be as large as [gateway] max_message_size.
#include <optional>
#include <string>
#include <string_view>

namespace dingo {

struct WsCommand {
  // How a member was found: absent, of the wanted type, or present with another type.
  enum class Has { No, Yes, WrongType };

  std::string id = "null";  // the id as compact JSON, echoed in every reply
  Has id_has = Has::No;     // WrongType: an id that is not a number, string or null
  std::string op;
  Has op_has = Has::No;
  std::string channel;
  Has channel_has = Has::No;
  std::string since;        // a null since counts as absent
  Has since_has = Has::No;
  std::string data;         // the data member as compact JSON (publish)
  Has data_has = Has::No;
  std::string token;        // auth, refresh
  Has token_has = Has::No;
};

// The command in `text`, or nullopt with `error` set (not JSON, not UTF-8, nested too
// deep, not an object). Never throws.
std::optional<WsCommand> parseWsCommand(std::string_view text, std::string_view& error);

}  // namespace dingo
