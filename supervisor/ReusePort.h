#pragma once
// The kernel dispatch mode's two pieces: the SO_REUSEPORT listening sockets of one
// [[listen]] address, one per worker slot (the kernel puts each new connection in one
// socket's accept queue, and that slot's worker accepts it), and the classic BPF
// program (SO_ATTACH_REUSEPORT_CBPF) that picks the socket.
//
// Kernel facts this rests on (net/core/sock_reuseport.c):
// - A socket joins its address's group at listen(); the program's return value is an
//   index into the group's array, which is in listen() order as long as no member
//   closes (a closing member is replaced by the last one). So the supervisor opens
//   slot 0, 1, ... in order and keeps every one open for as long as it runs.
// - An index past the end makes the kernel fall back to its own 4-tuple hash.
// - For TCP the program sees the skb with its data at the TCP payload: the client's
//   address is read relative to the network header (SKF_NET_OFF + 12 for IPv4, + 8..23
//   for IPv6). SKF_AD_RANDOM gives a fresh random number per SYN.
// - Attaching a program to any member replaces the whole group's program, atomically.
#include <linux/filter.h>
#include <sys/socket.h>

#include <cstdint>
#include <string_view>
#include <vector>

#include "core/Net.h"
#include "core/UniqueFd.h"

namespace dingo {

// Maps new connections to worker slots: the client's address (hash) or a random number
// (spread) picks one of kBuckets buckets; each slot owns a contiguous run of buckets.
// A slot left out (suspect, or dead for longer than a moment) has its run cut into
// pieces shared by the slots still in, so only its clients move, and they get their
// old slot back when it returns (ip-hash keeps its stickiness).
class ReusePortProgram {
 public:
  enum class Pick { AddressHash, Random };
  static constexpr int kBucketBits = 12;
  static constexpr uint32_t kBuckets = 1u << kBucketBits;

  // `in[s]`: slot s takes new connections. With no slot in, every slot keeps its own
  // run (the connections wait in the queues of the slots for whoever comes first).
  ReusePortProgram(Pick pick, int family, const std::vector<bool>& in);

  // The slot whose socket the kernel picks for a client at `address_bytes` (4 or 16
  // bytes, network order). Only for Pick::AddressHash; tests compare it with the kernel.
  int slotFor(std::string_view address_bytes) const;
  static uint32_t bucketOf(std::string_view address_bytes);

  const std::vector<sock_filter>& code() const { return code_; }
  // Attaches to the group `fd` belongs to. Returns 0 or an errno value.
  int attach(int fd) const;

 private:
  struct Run {
    uint32_t first;  // first bucket
    int slot;
  };
  std::vector<Run> runs_;
  std::vector<sock_filter> code_;
};

// Opens `count` SO_REUSEPORT listening sockets on `address`, one per slot, after the
// ones in `inherited` (passed by the supervisor this one upgrades from, in slot order,
// already listening). Returns them all, inherited first. Throws std::system_error.
std::vector<UniqueFd> openReusePortSockets(const SockAddr& address, int backlog, size_t count,
                                           std::vector<UniqueFd> inherited);

// True when `fd` has SO_REUSEPORT set (a socket that can share its group).
bool hasReusePort(int fd);

}  // namespace dingo
