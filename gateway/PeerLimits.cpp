#include "gateway/PeerLimits.h"

#include <netinet/in.h>

#include <algorithm>
#include <cstring>

#include "core/Hash.h"

namespace dingo {

size_t PeerLimits::KeyHash::operator()(const Key& k) const {
  return static_cast<size_t>(fnv1a64(std::string_view(reinterpret_cast<const char*>(k.data()), k.size())));
}

bool PeerLimits::keyOf(const sockaddr_storage& peer, Key& key) {
  key.fill(0);
  if (peer.ss_family == AF_INET) {
    const auto& a = reinterpret_cast<const sockaddr_in&>(peer);
    key[0] = 4;
    std::memcpy(&key[1], &a.sin_addr, 4);
    return true;
  }
  if (peer.ss_family == AF_INET6) {
    const auto& a = reinterpret_cast<const sockaddr_in6&>(peer);
    const uint8_t* b = a.sin6_addr.s6_addr;
    static constexpr uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (std::memcmp(b, kMapped, 12) == 0) {  // ::ffff:a.b.c.d is a.b.c.d
      key[0] = 4;
      std::memcpy(&key[1], b + 12, 4);
    } else {
      key[0] = 6;
      std::memcpy(&key[1], b, 8);  // the /64
    }
    return true;
  }
  return false;  // not an IP peer (a probe over a socketpair): never limited
}

void PeerLimits::refill(Entry& e, int64_t now_ms) const {
  // Bursts of up to one second's worth.
  double cap = per_second_;
  e.tokens = std::min(cap, e.tokens + static_cast<double>(now_ms - e.refilled_ms) * per_second_ / 1000.0);
  e.refilled_ms = now_ms;
}

PeerLimits::Verdict PeerLimits::admit(const sockaddr_storage& peer, int64_t now_ms, bool& counted) {
  counted = false;
  Key key;
  if (!enabled() || !keyOf(peer, key)) return Verdict::Admitted;
  auto it = table_.find(key);
  if (it == table_.end()) {
    if (table_.size() >= kMaxTracked) {
      ++untracked;
      return Verdict::Admitted;
    }
    it = table_.emplace(key, Entry{0, static_cast<double>(per_second_), now_ms}).first;
  }
  Entry& e = it->second;
  if (max_open_ && e.open >= max_open_) return Verdict::TooManyOpen;
  if (per_second_) {
    refill(e, now_ms);
    if (e.tokens < 1.0) return Verdict::TooFast;
    e.tokens -= 1.0;
  }
  ++e.open;
  counted = true;
  return Verdict::Admitted;
}

void PeerLimits::release(const sockaddr_storage& peer) {
  Key key;
  if (!enabled() || !keyOf(peer, key)) return;
  auto it = table_.find(key);
  if (it != table_.end() && it->second.open > 0) --it->second.open;
}

void PeerLimits::sweep(int64_t now_ms) {
  for (auto it = table_.begin(); it != table_.end();) {
    Entry& e = it->second;
    if (per_second_) refill(e, now_ms);
    bool full = !per_second_ || e.tokens >= per_second_;
    if (e.open == 0 && full) it = table_.erase(it);
    else ++it;
  }
}

}  // namespace dingo
