#include "core/Json.h"

#include <cmath>
#include <limits>

#include <simdjson.h>

namespace dingo {

bool jsonDepthWithin(std::string_view text, size_t max_depth) {
  size_t depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (in_string) {
      if (c == '\\') ++i;  // the escaped character cannot end the string
      else if (c == '"') in_string = false;
      continue;
    }
    switch (c) {
      case '"': in_string = true; break;
      case '[':
      case '{':
        if (++depth > max_depth) return false;
        break;
      case ']':
      case '}':
        if (depth > 0) --depth;  // unbalanced: the parser will say so
        break;
      default: break;
    }
  }
  return true;
}

ParsedJson parseJson(std::string_view text, size_t max_depth) {
  ParsedJson out;
  if (!jsonDepthWithin(text, max_depth)) {
    out.error = "JSON nested too deep";
    out.value = nlohmann::json(nlohmann::json::value_t::discarded);
    return out;
  }
  out.value = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (out.value.is_discarded()) out.error = "not valid JSON";
  return out;
}

std::optional<std::string> compactJson(std::string_view text, size_t max_depth, std::string_view& error) {
  // One parser per thread, grown to the largest document seen (its buffers are reused).
  thread_local simdjson::dom::parser parser;
  thread_local size_t depth_allocated = 0;
  if (parser.capacity() < text.size() || depth_allocated != max_depth) {
    if (parser.allocate(std::max<size_t>(text.size(), 4096), max_depth) != simdjson::SUCCESS) {
      error = "out of memory for the JSON parser";
      return std::nullopt;
    }
    depth_allocated = max_depth;
  }
  simdjson::dom::element doc;
  auto code = parser.parse(text.data(), text.size(), /*realloc_if_needed=*/true).get(doc);
  if (code == simdjson::DEPTH_ERROR) {
    error = "JSON nested too deep";
    return std::nullopt;
  }
  if (code != simdjson::SUCCESS) {
    error = code == simdjson::UTF8_ERROR ? "not valid UTF-8" : "not valid JSON";
    return std::nullopt;
  }
  // Valid: the whitespace goes with the raw minifier, which keeps every token as it was
  // written (no number or escape is rewritten) and runs at memory speed.
  std::string out(text.size() + simdjson::SIMDJSON_PADDING, '\0');
  size_t out_size = 0;
  if (simdjson::minify(text.data(), text.size(), out.data(), out_size) != simdjson::SUCCESS) {
    error = "not valid JSON";
    return std::nullopt;
  }
  out.resize(out_size);
  return out;
}

namespace {

const nlohmann::json* member(const nlohmann::json& obj, std::string_view key) {
  if (!obj.is_object()) return nullptr;
  auto it = obj.find(key);
  return it == obj.end() ? nullptr : &*it;
}

}  // namespace

template <>
std::optional<std::string> field<std::string>(const nlohmann::json& obj, std::string_view key) {
  const auto* v = member(obj, key);
  if (!v || !v->is_string()) return std::nullopt;
  return v->get_ref<const std::string&>();
}

template <>
std::optional<bool> field<bool>(const nlohmann::json& obj, std::string_view key) {
  const auto* v = member(obj, key);
  if (!v || !v->is_boolean()) return std::nullopt;
  return v->get<bool>();
}

template <>
std::optional<int64_t> field<int64_t>(const nlohmann::json& obj, std::string_view key) {
  const auto* v = member(obj, key);
  if (!v) return std::nullopt;
  if (v->is_number_unsigned()) {
    uint64_t u = v->get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return std::nullopt;
    return static_cast<int64_t>(u);
  }
  if (v->is_number_integer()) return v->get<int64_t>();
  return std::nullopt;
}

template <>
std::optional<uint64_t> field<uint64_t>(const nlohmann::json& obj, std::string_view key) {
  const auto* v = member(obj, key);
  if (!v || !v->is_number_integer()) return std::nullopt;
  if (v->is_number_unsigned()) return v->get<uint64_t>();
  int64_t i = v->get<int64_t>();
  if (i < 0) return std::nullopt;
  return static_cast<uint64_t>(i);
}

template <>
std::optional<int> field<int>(const nlohmann::json& obj, std::string_view key) {
  auto v = field<int64_t>(obj, key);
  if (!v || *v < std::numeric_limits<int>::min() || *v > std::numeric_limits<int>::max()) return std::nullopt;
  return static_cast<int>(*v);
}

template <>
std::optional<double> field<double>(const nlohmann::json& obj, std::string_view key) {
  const auto* v = member(obj, key);
  if (!v || !v->is_number()) return std::nullopt;
  double d = v->get<double>();
  if (!std::isfinite(d)) return std::nullopt;
  return d;
}

}  // namespace dingo
