#pragma once
// The last position seen per channel, for the most recently seen channels: a bounded
// memory (two generations of at most `capacity / 2` channels each; when the young one
// fills, the old one is dropped and the young one ages). A channel not seen for a while
// is forgotten, which only means "nothing known": callers must not rely on it.
#include <string>
#include <string_view>
#include <unordered_map>

#include "core/Hub.h"

namespace dingo {

class RecentPositions {
 public:
  explicit RecentPositions(size_t capacity = 65536) : half_(capacity / 2 > 0 ? capacity / 2 : 1) {}

  // Keeps `p` for `channel`: a new epoch replaces the old one, a lower SEQ of the same
  // epoch does not.
  void note(std::string_view channel, const Position& p) {
    Position* known = lookup(channel);
    if (known && known->epoch == p.epoch && known->seq >= p.seq) return;
    if (young_.size() >= half_) {
      old_ = std::move(young_);
      young_.clear();
    }
    young_[std::string(channel)] = p;
  }

  const Position* find(std::string_view channel) { return lookup(channel); }

  size_t size() const { return young_.size() + old_.size(); }

 private:
  Position* lookup(std::string_view channel) {
    std::string key(channel);
    if (auto it = young_.find(key); it != young_.end()) return &it->second;
    if (auto it = old_.find(key); it != old_.end()) return &it->second;
    return nullptr;
  }

  size_t half_;
  std::unordered_map<std::string, Position> young_;
  std::unordered_map<std::string, Position> old_;
};

}  // namespace dingo
