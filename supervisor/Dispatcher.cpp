#include "supervisor/Dispatcher.h"

#include <algorithm>
#include <numeric>

#include "core/Hash.h"

namespace dingo {

namespace {

uint64_t mix64(uint64_t x) {
  // splitmix64's finaliser: a cheap, well-distributed bijection.
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

// Consistent hashing on a ring of virtual nodes. A slot that is not eligible is
// skipped, so only the clients that hashed to it move, and they spread over the rest.
class IpHashDispatcher final : public Dispatcher {
 public:
  static constexpr int kVirtualNodes = 160;

  explicit IpHashDispatcher(size_t slots) : slots_(slots) {
    ring_.reserve(slots * kVirtualNodes);
    for (size_t s = 0; s < slots; ++s)
      for (int v = 0; v < kVirtualNodes; ++v)
        ring_.push_back({mix64((static_cast<uint64_t>(s) << 32) | static_cast<uint64_t>(v)),
                         static_cast<int>(s)});
    std::sort(ring_.begin(), ring_.end(),
              [](const Point& a, const Point& b) { return a.hash < b.hash; });
  }

  void order(std::string_view peer_ip, std::span<const SlotView> slots, size_t max,
             std::vector<int>& out) override {
    if (ring_.empty()) return;
    uint64_t h = hashPeer(peer_ip);
    auto it = std::lower_bound(ring_.begin(), ring_.end(), h,
                               [](const Point& p, uint64_t v) { return p.hash < v; });
    size_t start = static_cast<size_t>(it - ring_.begin());
    size_t first = out.size();
    for (size_t i = 0; i < ring_.size() && out.size() - first < max; ++i) {
      int slot = ring_[(start + i) % ring_.size()].slot;
      if (static_cast<size_t>(slot) >= slots.size() || !slots[slot].eligible) continue;
      if (std::find(out.begin() + static_cast<long>(first), out.end(), slot) == out.end())
        out.push_back(slot);
    }
  }

 private:
  struct Point {
    uint64_t hash;
    int slot;
  };
  size_t slots_;
  std::vector<Point> ring_;
};

class RoundRobinDispatcher final : public Dispatcher {
 public:
  void order(std::string_view, std::span<const SlotView> slots, size_t max,
             std::vector<int>& out) override {
    size_t n = slots.size();
    if (n == 0) return;
    size_t start = next_++ % n;
    for (size_t i = 0; i < n && max > 0; ++i) {
      size_t s = (start + i) % n;
      if (slots[s].eligible) {
        out.push_back(static_cast<int>(s));
        --max;
      }
    }
  }

 private:
  uint64_t next_ = 0;
};

class LeastConnDispatcher final : public Dispatcher {
 public:
  void order(std::string_view, std::span<const SlotView> slots, size_t max,
             std::vector<int>& out) override {
    size_t first = out.size();
    for (size_t s = 0; s < slots.size(); ++s)
      if (slots[s].eligible) out.push_back(static_cast<int>(s));
    // Ties go round-robin, so equal workers share a burst of new connections.
    size_t n = slots.size();
    size_t rot = n ? (tie_++ % n) : 0;
    auto key = [&](int s) { return std::pair(slots[s].load, (static_cast<size_t>(s) + n - rot) % n); };
    size_t keep = std::min(max, out.size() - first);
    std::partial_sort(out.begin() + static_cast<long>(first),
                      out.begin() + static_cast<long>(first + keep), out.end(),
                      [&](int a, int b) { return key(a) < key(b); });
    out.resize(first + keep);
  }

 private:
  uint64_t tie_ = 0;
};

}  // namespace

uint64_t hashPeer(std::string_view bytes) {
  // An IPv4 client that reached a dual-stack listener shows up as ::ffff:a.b.c.d; it is
  // the same client as a.b.c.d, so it hashes as its 4 bytes.
  static constexpr std::string_view kV4MappedPrefix("\0\0\0\0\0\0\0\0\0\0\xff\xff", 12);
  if (bytes.size() == 16 && bytes.substr(0, 12) == kV4MappedPrefix) bytes.remove_prefix(12);
  return mix64(fnv1a64(bytes));
}

std::unique_ptr<Dispatcher> makeDispatcher(DispatchPolicy policy, size_t slots) {
  switch (policy) {
    case DispatchPolicy::IpHash: return std::make_unique<IpHashDispatcher>(slots);
    case DispatchPolicy::RoundRobin: return std::make_unique<RoundRobinDispatcher>();
    case DispatchPolicy::LeastConn: return std::make_unique<LeastConnDispatcher>();
  }
  return std::make_unique<RoundRobinDispatcher>();
}

}  // namespace dingo
