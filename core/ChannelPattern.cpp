#include "core/ChannelPattern.h"

namespace dingo {

namespace {

constexpr std::string_view kSub = "{sub}";
constexpr size_t kMaxChannelBytes = 255;

bool channelChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
         c == ':' || c == '/' || c == '-';
}

}  // namespace

bool substitutableUser(std::string_view sub) {
  if (sub.empty() || sub.size() > kMaxChannelBytes) return false;
  for (char c : sub)
    if (c == '/' || !channelChar(c)) return false;
  return true;
}

std::optional<ChannelPattern> ChannelPattern::parse(std::string_view text) {
  // The longest useful pattern is a 255-byte channel with each `{sub}` standing for one
  // character at least; anything longer can match nothing.
  if (text.empty() || text[0] != '/' || text.size() > kMaxChannelBytes * 2) return std::nullopt;
  ChannelPattern p;
  p.text_.assign(text);
  std::string_view body = text;
  if (body == "/*") {
    body = {};
    p.below_ = true;
  } else if (body.ends_with("/*")) {
    body.remove_suffix(2);
    p.below_ = true;
  }
  std::string literal;
  for (size_t i = 0; i < body.size();) {
    if (body.substr(i).starts_with(kSub)) {
      p.literals_.push_back(std::move(literal));
      literal.clear();
      i += kSub.size();
      continue;
    }
    if (!channelChar(body[i])) return std::nullopt;  // `*` elsewhere, `{`, spaces, ...
    literal += body[i++];
  }
  p.literals_.push_back(std::move(literal));
  return p;
}

bool ChannelPattern::matches(std::string_view channel, std::string_view sub) const {
  bool uses_sub = literals_.size() > 1;
  if (uses_sub && !substitutableUser(sub)) return false;
  std::string_view rest = channel;
  for (size_t i = 0; i < literals_.size(); ++i) {
    if (i > 0) {  // a `{sub}` stood between literal i-1 and literal i
      if (!rest.starts_with(sub)) return false;
      rest.remove_prefix(sub.size());
    }
    if (!rest.starts_with(literals_[i])) return false;
    rest.remove_prefix(literals_[i].size());
  }
  if (!below_) return rest.empty();
  return rest.size() >= 2 && rest[0] == '/';
}

bool anyMatches(const std::vector<ChannelPattern>& patterns, std::string_view channel, std::string_view sub) {
  for (const auto& p : patterns)
    if (p.matches(channel, sub)) return true;
  return false;
}

}  // namespace dingo
