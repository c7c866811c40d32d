#include "core/Hub.h"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <limits>
#include <cstring>
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
  started_ms_ = clock_();
  absent_tag_ = base36(random_(), kAbsentTagSize);
}

// Epochs are 10 base-36 characters. A channel's epoch never starts with 'z' (35
// choices, then 9 random characters: about 51 bits, so a fresh hub never reuses an
// old one). An absent position's epoch is 'z', this hub's 4-character tag, and the
// seconds since the hub started in 5 characters (up to 1.9 years of uptime; past
// that, absent positions stop being resumable, which is honest, not wrong).
namespace {
constexpr char kDigits[] = "0123456789abcdefghijklmnopqrstuvwxyz";
constexpr char kAbsentMark = 'z';
constexpr size_t kAbsentSecondsSize = Position::kEpochLength - 1 - Hub::kAbsentTagSize;
}  // namespace

std::string Hub::base36(uint64_t v, size_t width) {
  std::string out(width, '0');
  for (size_t i = width; i-- > 0;) {
    out[i] = kDigits[v % 36];
    v /= 36;
  }
  return out;
}

std::string Hub::newEpoch() {
  uint64_t r = random_();
  std::string e = base36(r / 35, Position::kEpochLength);
  e[0] = kDigits[r % 35];  // never kAbsentMark
  return e;
}

Position Hub::absentPosition() const {
  uint64_t seconds = static_cast<uint64_t>(std::max<int64_t>(0, clock_() - started_ms_) / 1000);
  uint64_t cap = 1;
  for (size_t i = 0; i < kAbsentSecondsSize; ++i) cap *= 36;
  seconds = std::min(seconds, cap - 1);
  return {kAbsentMark + absent_tag_ + base36(seconds, kAbsentSecondsSize), 0};
}

std::optional<int64_t> Hub::absentIssuedMs(const Position& p) const {
  const std::string& e = p.epoch;
  if (p.seq != 0 || e.size() != Position::kEpochLength || e[0] != kAbsentMark || e.compare(1, kAbsentTagSize, absent_tag_) != 0)
    return std::nullopt;
  uint64_t seconds = 0;
  for (char c : std::string_view(e).substr(1 + kAbsentTagSize)) {
    const char* d = std::strchr(kDigits, c);
    if (!d || !*d) return std::nullopt;
    seconds = seconds * 36 + static_cast<uint64_t>(d - kDigits);
  }
  return started_ms_ + static_cast<int64_t>(seconds) * 1000;
}

// A life of a channel with a message published after `issued_ms` ends no sooner than a
// TTL after that message (see sweep). So a channel born, or found absent, before
// issued + TTL followed no such life: nothing was published that the client missed.
Position Hub::resumePoint(const Channel& ch, const Position& since) const {
  auto issued = absentIssuedMs(since);
  if (!issued || ch.born_ms >= *issued + config_.ttl.count()) return since;
  return {ch.epoch, 0};
}

Hub::Channel* Hub::find(std::string_view name) {
  auto it = channels_.find(name);
  return it == channels_.end() ? nullptr : &it->second;
}

Hub::Channel& Hub::channel(std::string_view name) {
  auto it = channels_.find(name);
  Channel* ch = it != channels_.end() ? &it->second : nullptr;
  if (!ch) {
    ch = &channels_[std::string(name)];
    ch->epoch = newEpoch();
    ch->born_ms = clock_();
  }
  return *ch;
}

bool Hub::admits(std::string_view name) const {
  return channels_.size() < config_.max_channels || channels_.find(name) != channels_.end();
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
  Position from = resumePoint(ch, *since);
  uint64_t first = ch.history.empty() ? ch.seq + 1 : ch.history.front().seq;
  // Recoverable: same epoch, not ahead, and everything after it still in history.
  if (from.epoch != ch.epoch || from.seq > ch.seq || from.seq + 1 < first) return c;
  c.recovered = true;
  // History is contiguous: the message after `since` sits at a known offset.
  size_t start = static_cast<size_t>(from.seq + 1 - first);
  for (size_t i = start; i < ch.history.size() && c.messages.size() < limit; ++i)
    c.messages.push_back(ch.history[i]);
  return c;
}

Catchup Hub::subscribe(LinkId link, std::string_view name, const std::optional<Position>& since) {
  Channel& ch = channel(name);
  auto it = std::find_if(ch.links.begin(), ch.links.end(), [&](const auto& l) { return l.first == link; });
  if (it == ch.links.end()) ch.links.emplace_back(link, 1);
  else ++it->second;
  ++ch.subscribers;
  Catchup c = catchup(ch, since, std::numeric_limits<size_t>::max());
  if (!since) c.recovered = true;
  return c;
}

void Hub::unsubscribe(LinkId link, std::string_view name) {
  Channel* ch = find(name);
  if (!ch) return;
  auto it = std::find_if(ch->links.begin(), ch->links.end(), [&](const auto& l) { return l.first == link; });
  if (it == ch->links.end()) return;
  --ch->subscribers;
  if (--it->second == 0) ch->links.erase(it);
}

Position Hub::publish(std::string_view name, std::string data) {
  Channel& ch = channel(name);
  int64_t now = clock_();
  ch.last_publish_ms = now;
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
  Channel* found = find(name);
  if (!found) {
    // Nothing to read, and nothing created. A resume from an absent position of ours
    // is exact: nothing was published to this channel since, or it would exist.
    Catchup c{absentPosition(), false, {}};
    auto issued = since ? absentIssuedMs(*since) : std::nullopt;
    c.recovered = issued && clock_() < *issued + config_.ttl.count();
    return c;
  }
  Channel& ch = *found;
  if (since) return catchup(ch, since, limit);
  trim(ch, clock_());
  Catchup c;
  c.position = {ch.epoch, ch.seq};
  size_t n = std::min(limit, ch.history.size());
  for (size_t i = ch.history.size() - n; i < ch.history.size(); ++i) c.messages.push_back(ch.history[i]);
  return c;
}

Hub::Info Hub::info(std::string_view name) {
  Channel* found = find(name);
  if (!found) return Info{absentPosition(), 0};  // as in history()
  Channel& ch = *found;
  Info i;
  i.position = {ch.epoch, ch.seq};
  i.subscribers = ch.subscribers;
  return i;
}

std::vector<Hub::ChannelCount> Hub::topChannels(size_t n) const {
  using Entry = std::pair<uint64_t, const std::string*>;
  // "Ranks before": more subscribers, then the smaller name. The heap's top is the
  // entry that ranks last among those kept, the first to go when a better one comes.
  auto ranks_before = [](const Entry& a, const Entry& b) {
    return a.first != b.first ? a.first > b.first : *a.second < *b.second;
  };
  std::vector<Entry> heap;
  if (n == 0) return {};
  heap.reserve(n + 1);
  for (const auto& [name, ch] : channels_) {
    if (ch.subscribers == 0) continue;
    Entry e{ch.subscribers, &name};
    if (heap.size() == n && !ranks_before(e, heap.front())) continue;
    heap.push_back(e);
    std::push_heap(heap.begin(), heap.end(), ranks_before);
    if (heap.size() > n) {
      std::pop_heap(heap.begin(), heap.end(), ranks_before);
      heap.pop_back();
    }
  }
  std::sort(heap.begin(), heap.end(), ranks_before);
  std::vector<ChannelCount> out;
  out.reserve(heap.size());
  for (const auto& [subscribers, name] : heap) out.push_back({*name, subscribers});
  return out;
}

void Hub::dropLink(LinkId link) {
  for (auto& entry : channels_) {
    Channel& ch = entry.second;  // a structured binding cannot be captured (clang 14)
    std::erase_if(ch.links, [&](const auto& l) {
      if (l.first != link) return false;
      ch.subscribers -= l.second;
      return true;
    });
  }
}

size_t Hub::sweep() {
  int64_t now = clock_();
  size_t forgotten = 0;
  for (auto it = channels_.begin(); it != channels_.end();) {
    Channel& ch = it->second;
    trim(ch, now);
    // A channel that had messages lives at least a TTL past its last publish, even
    // with its history emptied early (a message over max_bytes): absent positions
    // depend on it (resumePoint).
    bool quiet = ch.last_publish_ms == 0 || now - ch.last_publish_ms >= config_.ttl.count();
    if (ch.links.empty() && ch.history.empty() && quiet) {
      it = channels_.erase(it);
      ++forgotten;
    } else {
      ++it;
    }
  }
  return forgotten;
}

}  // namespace dingo
