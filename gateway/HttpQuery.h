#pragma once
// Query strings and percent-encoding (RFC 3986 2.1, and '+' as a space in queries, as
// HTML forms send them): what ?channel=, ?cursor=, ?since=, ?limit= and ?token= go
// through. Pure; malformed input is a value (nullopt or `bad`), never an exception.
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace dingo {

// Percent-decoding; nullopt on a malformed escape. `plus` turns '+' into ' ' (queries).
std::optional<std::string> percentDecode(std::string_view in, bool plus);

// Every raw (still encoded) value of `key` in a query string ("a=1&b=2&a=3"), in order;
// a key without '=' has an empty value.
std::vector<std::string_view> queryValues(std::string_view query, std::string_view key);

// The value of the first `key` in a query string, percent-decoded; nullopt when absent,
// or when malformed (then `bad` is set).
std::optional<std::string> queryParam(std::string_view query, std::string_view key, bool& bad);

}  // namespace dingo
