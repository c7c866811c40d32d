#pragma once
// Chooses which worker gets a newly accepted connection.
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "core/Config.h"

namespace dingo {

// What a policy may look at for one worker slot.
struct SlotView {
  bool eligible = false;  // ready, not draining, under its in-flight limit
  uint64_t load = 0;      // estimated open connections (least-conn)
};

class Dispatcher {
 public:
  virtual ~Dispatcher() = default;
  // Appends to `out` up to `max` distinct eligible slot indexes, best first. The
  // caller tries them in order until one takes the socket. `peer_ip` is the client's
  // address bytes (4 for IPv4, 16 for IPv6; an IPv4-mapped IPv6 address counts as its
  // IPv4 address).
  virtual void order(std::string_view peer_ip, std::span<const SlotView> slots, size_t max,
                     std::vector<int>& out) = 0;
};

// `slots` is the number of worker slots; a respawned worker keeps its slot, and so
// under ip-hash it gets back the same share of clients.
std::unique_ptr<Dispatcher> makeDispatcher(DispatchPolicy policy, size_t slots);

// A 64-bit hash of a client address (stable across processes and restarts);
// ::ffff:a.b.c.d hashes as a.b.c.d.
uint64_t hashPeer(std::string_view bytes);

}  // namespace dingo
