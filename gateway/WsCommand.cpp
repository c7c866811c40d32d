#include "gateway/WsCommand.h"

#include <simdjson.h>

#include "core/Json.h"

namespace dingo {

std::optional<WsCommand> parseWsCommand(std::string_view text, std::string_view& error) {
  // One parser per thread, grown to the largest command seen (its buffers are reused).
  thread_local simdjson::dom::parser parser;
  if (parser.capacity() < text.size() || parser.max_depth() != kMaxJsonDepth) {
    if (parser.allocate(std::max<size_t>(text.size(), 4096), kMaxJsonDepth) != simdjson::SUCCESS) {
      error = "out of memory for the JSON parser";
      return std::nullopt;
    }
  }
  simdjson::dom::element doc;
  auto code = parser.parse(text.data(), text.size(), /*realloc_if_needed=*/true).get(doc);
  if (code == simdjson::DEPTH_ERROR) {
    error = "JSON nested too deep";
    return std::nullopt;
  }
  simdjson::dom::object obj;
  if (code != simdjson::SUCCESS || doc.get(obj) != simdjson::SUCCESS) {
    error = "not a JSON object";
    return std::nullopt;
  }
  using Has = WsCommand::Has;
  WsCommand c;
  auto string_member = [](simdjson::dom::element v, std::string& out, Has& has) {
    std::string_view s;
    if (v.get(s) == simdjson::SUCCESS) {
      out.assign(s);
      has = Has::Yes;
    } else {
      has = Has::WrongType;
    }
  };
  for (auto [key, value] : obj) {  // a repeated key: the last one counts
    if (key == "id") {
      auto t = value.type();
      bool ok = t == simdjson::dom::element_type::STRING || t == simdjson::dom::element_type::INT64 ||
                t == simdjson::dom::element_type::UINT64 || t == simdjson::dom::element_type::DOUBLE ||
                t == simdjson::dom::element_type::NULL_VALUE;
      c.id_has = ok ? Has::Yes : Has::WrongType;
      c.id = ok ? simdjson::minify(value) : "null";
    } else if (key == "op") {
      string_member(value, c.op, c.op_has);
    } else if (key == "channel") {
      string_member(value, c.channel, c.channel_has);
    } else if (key == "since") {
      if (value.is_null()) c.since_has = Has::No;
      else string_member(value, c.since, c.since_has);
    } else if (key == "token") {
      string_member(value, c.token, c.token_has);
    } else if (key == "data") {
      c.data = simdjson::minify(value);
      c.data_has = Has::Yes;
    }
  }
  return c;
}

}  // namespace dingo
