#include "gateway/HttpQuery.h"

namespace dingo {

namespace {

int hexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

std::optional<std::string> percentDecode(std::string_view in, bool plus) {
  std::string out;
  out.reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    char c = in[i];
    if (c == '%') {
      if (i + 2 >= in.size()) return std::nullopt;
      int hi = hexValue(in[i + 1]), lo = hexValue(in[i + 2]);
      if (hi < 0 || lo < 0) return std::nullopt;
      out += static_cast<char>(hi * 16 + lo);
      i += 2;
    } else {
      out += plus && c == '+' ? ' ' : c;
    }
  }
  return out;
}

std::vector<std::string_view> queryValues(std::string_view query, std::string_view key) {
  std::vector<std::string_view> out;
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    size_t eq = pair.find('=');
    if (pair.substr(0, eq) == key) out.push_back(eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1));
  }
  return out;
}

std::optional<std::string> queryParam(std::string_view query, std::string_view key, bool& bad) {
  auto values = queryValues(query, key);
  if (values.empty()) return std::nullopt;
  auto v = percentDecode(values.front(), true);
  if (!v) bad = true;
  return v;
}

}  // namespace dingo
