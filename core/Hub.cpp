#include "core/Hub.h"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <limits>
#include <random>

namespace dingo {

std::string Position::toString() const { return epoch + "." + std::to_string(seq); }

std::optional<Position> Position::parse(std::string_view text) {
  // Longest SEQ: 18446744073709551615, 20 digits.
  static constexpr size_t kMaxSeqDigits = 20;
  if (text.size() <= kEpochLength + 1 || text[kEpochLength] != '.') return std::nullopt;
  std::string_view e = text.substr(0, kEpochLength), s = text.substr(kEpochLength + 1);
  for (char c : e)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z'))) return std::nullopt;
  if (s.size() > kMaxSeqDigits || (s.size() > 1 && s[0] == '0')) return std::nullopt;
  for (char c : s)
    if (c < '0' || c > '9') return std::nullopt;
  Position p;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), p.seq);
  if (ec != std::errc() || ptr != s.data() + s.size()) return std::nullopt;  // overflow
  p.epoch.assign(e);
  return p;
}

bool validChannel(std::string_view name) {
  if (name.empty() || name.size() > 255 || name[0] != '/') return false;
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
              c == '.' || c == ':' || c == '/' || c == '-';
    if (!ok) return false;
  }
  return true;
}

Hub::Hub(const HistoryConfig& history, DeliverFn deliver, ClockFn clock, RandomFn random)
    : config_(history), deliver_(std::move(deliver)), clock_(std::move(clock)), random_(std::move(random)) {
  if (!clock_) {
    clock_ = [] {
      return std::chrono::duration_cast<std::chrono::milliseconds>(
                 std::chrono::steady_clock::now().time_since_epoch())
          .count();
    };
  }
  if (!random_) {
    auto engine = std::make_shared<std::mt19937_64>(std::random_device{}());
    random_ = [engine] { return (*engine)(); };
  }
}

std::string Hub::newEpoch() {
  // kEpochLength (10) base-36 characters, about 51 bits: a fresh hub never reuses an old
  // epoch. Position::parse accepts exactly this form.
  static constexpr char kDigits[] = "0123456789abcdefghijklmnopqrstuvwxyz";
  uint64_t r = random_();
  std::string e(Position::kEpochLength, '0');
  for (char& c : e) {
    c = kDigits[r % 36];
    r /= 36;
  }
  return e;
}

Hub::Channel* Hub::find(std::string_view name) {
  auto it = channels_.find(name);
  return it == channels_.end() ? nullptr : &it->second;
}

Hub::Channel& Hub::channel(std::string_view name) {
  auto it = channels_.find(name);
  if (it != channels_.end()) return it->second;
  Channel& ch = channels_[std::string(name)];
  ch.epoch = newEpoch();
  return ch;
}

void Hub::popFront(Channel& ch) {
  uint64_t cost = messageCost(*ch.history.front().data);
  ch.bytes -= cost;
  history_bytes_ -= cost;
  --history_messages_;
  ch.history.pop_front();
}

void Hub::trim(Channel& ch, int64_t now) {
  int64_t oldest = now - config_.ttl.count();
  while (!ch.history.empty() && (ch.history.size() > config_.size || ch.bytes > config_.max_bytes ||
                                 ch.history.front().at_ms < oldest))
    popFront(ch);
}

Catchup Hub::catchup(Channel& ch, const std::optional<Position>& since, size_t limit) {
  trim(ch, clock_());
  Catchup c;
  c.position = {ch.epoch, ch.seq};
  if (!since) return c;
  uint64_t first = ch.history.empty() ? ch.seq + 1 : ch.history.front().seq;
  // Recoverable: same epoch, not ahead, and everything after it still in history.
  if (since->epoch != ch.epoch || since->seq > ch.seq || since->seq + 1 < first) return c;
  c.recovered = true;
  // History is contiguous: the message after `since` sits at a known offset.
  size_t start = static_cast<size_t>(since->seq + 1 - first);
  for (size_t i = start; i < ch.history.size() && c.messages.size() < limit; ++i)
    c.messages.push_back(ch.history[i]);
  return c;
}

Catchup Hub::subscribe(LinkId link, std::string_view name, const std::optional<Position>& since) {
  Channel& ch = channel(name);
  auto it = std::find_if(ch.links.begin(), ch.links.end(), [&](const auto& l) { return l.first == link; });
  if (it == ch.links.end()) ch.links.emplace_back(link, 1);
  else ++it->second;
  Catchup c = catchup(ch, since, std::numeric_limits<size_t>::max());
  if (!since) c.recovered = true;
  return c;
}

void Hub::unsubscribe(LinkId link, std::string_view name) {
  Channel* ch = find(name);
  if (!ch) return;
  auto it = std::find_if(ch->links.begin(), ch->links.end(), [&](const auto& l) { return l.first == link; });
  if (it == ch->links.end()) return;
  if (--it->second == 0) ch->links.erase(it);
}

Position Hub::publish(std::string_view name, std::string data) {
  Channel& ch = channel(name);
  int64_t now = clock_();
  ++ch.seq;
  ++published_;
  auto payload = std::make_shared<const std::string>(std::move(data));
  if (config_.size > 0 && messageCost(*payload) <= config_.max_bytes) {
    ch.history.push_back({ch.seq, payload, now});
    uint64_t cost = messageCost(*payload);
    ch.bytes += cost;
    history_bytes_ += cost;
    ++history_messages_;
  } else {
    // Not kept (no history, or bigger than the channel's byte budget): history must stay
    // contiguous, so everything before it goes too and a resume from before answers
    // recovered: false.
    while (!ch.history.empty()) popFront(ch);
  }
  trim(ch, now);
  Position pos{ch.epoch, ch.seq};
  if (!ch.links.empty()) {
    scratch_links_.clear();
    for (const auto& l : ch.links) scratch_links_.push_back(l.first);
    deliver_(scratch_links_, name, pos, payload);
  }
  return pos;
}

Catchup Hub::history(std::string_view name, const std::optional<Position>& since, size_t limit) {
  // Created if new (the sweep forgets it again), so that its position stays the same
  // from one read to the next.
  Channel& ch = channel(name);
  if (since) return catchup(ch, since, limit);
  trim(ch, clock_());
  Catchup c;
  c.position = {ch.epoch, ch.seq};
  size_t n = std::min(limit, ch.history.size());
  c.messages.assign(ch.history.end() - static_cast<std::ptrdiff_t>(n), ch.history.end());
  return c;
}

Hub::Info Hub::info(std::string_view name) {
  Channel& ch = channel(name);  // as in history()
  Info i;
  i.position = {ch.epoch, ch.seq};
  for (const auto& l : ch.links) i.subscribers += l.second;
  return i;
}

void Hub::dropLink(LinkId link) {
  for (auto& [name, ch] : channels_)
    std::erase_if(ch.links, [&](const auto& l) { return l.first == link; });
}

void Hub::sweep() {
  int64_t now = clock_();
  for (auto it = channels_.begin(); it != channels_.end();) {
    trim(it->second, now);
    if (it->second.links.empty() && it->second.history.empty()) it = channels_.erase(it);
    else ++it;
  }
}

}  // namespace dingo
