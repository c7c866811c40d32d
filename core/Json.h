#pragma once
// JSON from outside the process, read without surprises: a nesting limit checked
// before nlohmann parses (its dump() and destructor recurse, so a body nested 100,000
// deep would overflow the stack), and typed field reads that answer "absent or the
// wrong type" instead of throwing the way json::value() and get<T>() do.
//
// Every parse of bytes that came from a client, a worker, a control-socket peer or a
// file goes through parseJson(); every field read of such a document goes through
// field<T>().
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace dingo {

// Deep enough for any document we or a client reasonably write; shallow enough that
// the recursive parts of nlohmann (dump, destruction, comparison) stay far from the
// stack's end.
constexpr size_t kMaxJsonDepth = 64;

struct ParsedJson {
  nlohmann::json value;      // discarded unless ok()
  std::string_view error;    // empty on success; a fixed message otherwise
  bool ok() const { return error.empty(); }
};

// True when no array or object in `text` nests deeper than `max_depth` (strings and
// their escapes are skipped). Linear, no allocation; does not validate the syntax.
bool jsonDepthWithin(std::string_view text, size_t max_depth);

// Parses `text`, refusing documents nested deeper than `max_depth`. Never throws.
ParsedJson parseJson(std::string_view text, size_t max_depth = kMaxJsonDepth);

// `text` checked (JSON, UTF-8, nested at most `max_depth`) and rewritten compact, for
// payloads that are stored and sent on as they are (a REST publish's body). Uses
// simdjson: about a millisecond per megabyte, where parsing into nlohmann and dumping
// again costs a hundred, all of it on the event loop. nullopt with `error` set when
// the text is refused.
std::optional<std::string> compactJson(std::string_view text, size_t max_depth, std::string_view& error);

// Typed reads of an object's member: nullopt when `obj` is not an object, the key is
// absent, or the value is of another type or out of the target's range. Never throws.
template <typename T>
std::optional<T> field(const nlohmann::json& obj, std::string_view key);

template <>
std::optional<std::string> field<std::string>(const nlohmann::json& obj, std::string_view key);
template <>
std::optional<bool> field<bool>(const nlohmann::json& obj, std::string_view key);
template <>
std::optional<int64_t> field<int64_t>(const nlohmann::json& obj, std::string_view key);
template <>
std::optional<uint64_t> field<uint64_t>(const nlohmann::json& obj, std::string_view key);
template <>
std::optional<int> field<int>(const nlohmann::json& obj, std::string_view key);
template <>
std::optional<double> field<double>(const nlohmann::json& obj, std::string_view key);

}  // namespace dingo
