#include "gateway/PubSub.h"

#include <fmt/format.h>

#include "core/WebSocket.h"
#include "gateway/Context.h"
#include "gateway/Polling.h"

namespace dingo {

void appendMessageJson(std::string& out, std::string_view channel, const Position& position, std::string_view data) {
  // Channel names and positions need no JSON escaping: their characters are restricted.
  fmt::format_to(std::back_inserter(out), R"({{"channel":"{}","position":"{}.{}","data":{}}})", channel,
                 position.epoch, position.seq, data);
}

ChannelTable::~ChannelTable() {
  for (auto& [name, ch] : channels_)
    for (Subscription* s : ch->subs) delete s;
  for (auto& [ptr, ch] : detached_)
    for (Subscription* s : ch->subs) delete s;
}

Subscription* ChannelTable::add(std::string_view channel, Subscriber* s, const Position& from) {
  auto it = channels_.find(channel);
  if (it == channels_.end()) {
    auto ch = std::make_unique<LocalChannel>();
    ch->name.assign(channel);
    it = channels_.emplace(ch->name, std::move(ch)).first;
  }
  LocalChannel* ch = it->second.get();
  auto* sub = new Subscription{ch, s, static_cast<uint32_t>(ch->subs.size()), from};
  ch->subs.push_back(sub);
  return sub;
}

void ChannelTable::remove(Subscription* sub) {
  LocalChannel* ch = sub->channel;
  // Swap with the last one: O(1) however many subscribers the channel has.
  Subscription* last = ch->subs.back();
  ch->subs[sub->index] = last;
  last->index = sub->index;
  ch->subs.pop_back();
  delete sub;
  if (ch->detached) {
    if (ch->subs.empty()) detached_.erase(ch);
    return;
  }
  if (ctx_.broker) ctx_.broker->unsubscribe(ch->name);
  if (ch->subs.empty()) channels_.erase(ch->name);
}

void ChannelTable::onMessage(std::string_view channel, const Position& position, std::string_view data) {
  auto it = channels_.find(channel);
  // None here: the last local subscriber left while the message was on its way.
  if (it == channels_.end()) return;
  // Built once for every local subscriber: the message, and the WebSocket frame
  // {"event":"message",<the message's fields>}.
  message_.clear();
  appendMessageJson(message_, channel, position, data);
  static constexpr std::string_view kPrefix = R"({"event":"message",)";
  size_t json_len = kPrefix.size() + message_.size() - 1;
  auto frame = std::make_shared<std::string>();
  frame->reserve(json_len + 10);
  ws::appendFrameHeader(*frame, ws::Opcode::Text, json_len);
  frame->append(kPrefix);
  frame->append(message_, 1);
  SharedFrame shared = std::move(frame);
  Delivery d{channel, position, data, message_, shared};
  // Subscribers are told of a gap after the loop (the telling may end a session), so
  // that the fan-out walks the channel's own list with no copy per message.
  gapped_.clear();
  for (Subscription* s : it->second->subs) {
    if (s->broken) continue;
    switch (continuity(s->last, position)) {
      case Continuity::Next:
        s->last = position;
        ++ctx_.counters.delivered;
        s->owner->push(d);
        break;
      case Continuity::Seen:
        break;
      case Continuity::Gap:
        s->broken = true;
        ++ctx_.counters.gaps;
        gapped_.push_back(s->owner);
        break;
    }
  }
  for (Subscriber* owner : gapped_) owner->onGap(channel);
}

ChannelTable::Continuity ChannelTable::continuity(const Position& last, const Position& next) {
  if (next.epoch == last.epoch) {
    if (next.seq <= last.seq) return Continuity::Seen;
    return next.seq == last.seq + 1 ? Continuity::Next : Continuity::Gap;
  }
  // A channel that did not exist (an absent position, 'z'...) and was born since: its
  // first message follows.
  bool absent = !last.epoch.empty() && last.epoch[0] == 'z' && last.seq == 0;
  return absent && next.seq == 1 ? Continuity::Next : Continuity::Gap;
}

void ChannelTable::onBrokerLost(std::string_view) {
  for (auto& [name, ch] : channels_) {
    ch->detached = true;
    LocalChannel* ptr = ch.get();
    detached_.emplace(ptr, std::move(ch));
  }
  channels_.clear();
  if (ctx_.polls) ctx_.polls->clear();  // held polls answer (unavailable on their next try)
  for (SessionEntry* e = ctx_.sessions; e;) {
    SessionEntry* next = e->next;
    e->onBrokerLost();
    e = next;
  }
}

}  // namespace dingo
