#include "gateway/StreamRequest.h"

#include <fmt/format.h>

#include <algorithm>
#include <unordered_set>

#include "core/Config.h"
#include "gateway/HttpQuery.h"

namespace dingo {

namespace {

// Up to this many channels a linear search finds duplicates faster than a hash set.
constexpr size_t kLinearDedupChannels = 16;

}  // namespace

bool parseStreamRequest(std::string_view query, std::string_view last_event_id, const GatewayContext& ctx,
                        StreamRequest& req, Reply& r) {
  const size_t max_channels = ctx.config.gateway.max_channels;
  std::vector<std::string_view> raw_channels = queryValues(query, "channel");
  // Never more than max_channels entries: `seen` views them, so they must not move.
  req.channels.reserve(std::min(raw_channels.size(), max_channels));
  std::unordered_set<std::string_view> seen;  // used once the list is long
  bool too_many = false;
  for (std::string_view raw : raw_channels) {
    auto name = percentDecode(raw, true);
    if (!name || !validChannel(*name)) {
      setError(r, 400, "bad_request", "a channel is 1 to 255 characters of [A-Za-z0-9_.:/-] starting with /");
      return false;
    }
    // Past max_channels the answer is 400 whatever follows: only validity is checked.
    if (too_many) continue;
    bool duplicate;
    if (req.channels.size() < kLinearDedupChannels) {
      duplicate = std::find(req.channels.begin(), req.channels.end(), *name) != req.channels.end();
    } else {
      if (seen.empty()) seen.insert(req.channels.begin(), req.channels.end());
      duplicate = seen.contains(*name);
    }
    if (duplicate) continue;
    if (req.channels.size() == max_channels) {
      too_many = true;
      continue;
    }
    req.channels.push_back(std::move(*name));
    if (!seen.empty()) seen.insert(req.channels.back());
  }
  if (req.channels.empty() || too_many) {
    setError(r, 400, "bad_request", fmt::format("name 1 to {} channels with channel=", max_channels));
    return false;
  }
  // The cursor carries every channel's position and comes back in the next request head
  // beside the channel list: refuse now what could not be resumed exactly later.
  size_t cursor_size = CursorCodec::encodedSize(req.channels, Position::kEpochLength);
  size_t channel_list = 0;
  for (std::string_view raw : raw_channels) channel_list += raw.size() + 9;  // "channel=" "&"
  if (cursor_size + channel_list + kRequestHeadSlack > ctx.config.gateway.max_header_bytes) {
    setError(r, 413, "too_large",
             fmt::format("{} channels need a cursor of {} bytes, which with the channel list would not fit in "
                         "max_header_bytes ({}); name fewer channels",
                         req.channels.size(), cursor_size, ctx.config.gateway.max_header_bytes));
    return false;
  }
  req.from.assign(req.channels.size(), std::nullopt);
  auto cursors = queryValues(query, "cursor");
  std::string cursor_text;
  if (!cursors.empty()) cursor_text = percentDecode(cursors.front(), true).value_or("!");
  else cursor_text.assign(last_event_id);
  if (!cursor_text.empty()) {
    req.cursor = ctx.cursors->decode(cursor_text);
    if (!req.cursor) {
      setError(r, 400, "bad_request", "the cursor is malformed or was not made by this service");
      return false;
    }
    for (size_t i = 0; i < req.channels.size(); ++i)
      if (const Position* p = req.cursor->find(req.channels[i])) req.from[i] = *p;
    req.resuming = true;
  }
  for (std::string_view raw : queryValues(query, "since")) {
    auto text = percentDecode(raw, true);
    size_t at = text ? text->rfind('@') : std::string::npos;
    std::optional<Position> pos;
    if (at != std::string::npos) pos = Position::parse(std::string_view(*text).substr(at + 1));
    auto it = pos ? std::find(req.channels.begin(), req.channels.end(), text->substr(0, at)) : req.channels.end();
    if (it == req.channels.end()) {
      setError(r, 400, "bad_request", "since is CHANNEL@EPOCH.SEQ, for a channel named with channel=");
      return false;
    }
    req.from[static_cast<size_t>(it - req.channels.begin())] = pos;
    req.resuming = true;
  }
  return true;
}

bool streamsFull(GatewayContext& ctx) {
  if (ctx.counters.held_polls + ctx.counters.sse_streams < ctx.config.gateway.max_streams) return false;
  ++ctx.counters.stream_limited;
  return true;
}

}  // namespace dingo
