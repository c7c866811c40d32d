#pragma once
// Channel patterns of a token's `channels` claim (docs/auth.md): a channel name that may
// end in `/*` (every channel below it) and may contain `{sub}` (the token's user).
// Matching walks the pattern and the channel once, with no regular expression and no
// allocation: linear in the channel's length whatever a token's issuer wrote.
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace dingo {

class ChannelPattern {
 public:
  // The pattern in `text`, or nullopt when it is not one (bad characters, a `*` anywhere
  // but a final `/*`, a `{` that is not `{sub}`, longer than a channel may be).
  static std::optional<ChannelPattern> parse(std::string_view text);

  // Whether `channel` (a valid channel name) matches for the user `sub`. A pattern with
  // `{sub}` matches nothing when `sub` is empty or holds a character other than the
  // channel characters without `/` (so that no user can reach into another's channels).
  bool matches(std::string_view channel, std::string_view sub) const;

  const std::string& text() const { return text_; }

 private:
  std::string text_;
  // The pattern without its `/*`, cut at each `{sub}`: literal, sub, literal, ...
  std::vector<std::string> literals_;
  bool below_ = false;  // ended in `/*`: the channel continues with '/' and one character or more
};

// True when `sub` may stand in for `{sub}`: 1 to 255 of [A-Za-z0-9_.:-].
bool substitutableUser(std::string_view sub);

// A list of patterns: does any match?
bool anyMatches(const std::vector<ChannelPattern>& patterns, std::string_view channel, std::string_view sub);

}  // namespace dingo
