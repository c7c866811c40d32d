#include "supervisor/ReusePort.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/tcp.h>

#include <cerrno>
#include <cstring>
#include <system_error>

#include <fmt/format.h>

namespace dingo {

namespace {

constexpr uint32_t kGolden = 0x9E3779B1u;  // Fibonacci hashing: the top bits mix every input bit
// BPF_MAXINSNS is 4096; each run costs two instructions.
constexpr size_t kMaxRuns = 1900;

sock_filter stmt(uint16_t code, uint32_t k) { return sock_filter{code, 0, 0, k}; }
sock_filter jump(uint16_t code, uint32_t k, uint8_t jt, uint8_t jf) { return sock_filter{code, jt, jf, k}; }

uint32_t word(std::string_view bytes, size_t at) {
  uint32_t w;
  std::memcpy(&w, bytes.data() + at, 4);
  return ntohl(w);
}

}  // namespace

uint32_t ReusePortProgram::bucketOf(std::string_view b) {
  uint32_t w = 0;
  if (b.size() == 4) w = word(b, 0);
  else if (b.size() == 16) w = word(b, 0) ^ word(b, 4) ^ word(b, 8) ^ word(b, 12);
  return (w * kGolden) >> (32 - kBucketBits);
}

ReusePortProgram::ReusePortProgram(Pick pick, int family, const std::vector<bool>& in) {
  const size_t n = in.size();
  std::vector<int> members;
  for (size_t s = 0; s < n; ++s)
    if (in[s]) members.push_back(static_cast<int>(s));
  // Bucket b belongs to slot b * n / kBuckets; a slot that is out shares its run among
  // the members, in pieces as large as the instruction limit allows.
  size_t pieces = members.empty() ? 1 : members.size();
  if (n * (pieces + 1) > kMaxRuns) pieces = std::max<size_t>(1, kMaxRuns / n - 1);
  std::vector<Run> runs;
  auto push = [&runs](uint32_t first, int slot) {
    if (runs.empty() || runs.back().slot != slot) runs.push_back({first, slot});
  };
  for (size_t s = 0; s < n; ++s) {
    uint32_t lo = static_cast<uint32_t>(s * kBuckets / n);
    uint32_t hi = static_cast<uint32_t>((s + 1) * kBuckets / n);
    if (lo == hi) continue;
    if (in[s] || members.empty()) {
      push(lo, static_cast<int>(s));
      continue;
    }
    for (size_t j = 0; j < pieces; ++j) {
      uint32_t first = lo + static_cast<uint32_t>(j * (hi - lo) / pieces);
      uint32_t next = lo + static_cast<uint32_t>((j + 1) * (hi - lo) / pieces);
      if (first == next) continue;
      // Start each out slot's pieces at a different member, so that two slots out at
      // once do not both load the same member first.
      push(first, members[(j + s) % members.size()]);
    }
  }
  if (runs.empty()) runs.push_back({0, 0});
  runs_ = runs;

  // A = the bucket.
  if (pick == Pick::Random) {
    code_.push_back(stmt(BPF_LD | BPF_W | BPF_ABS, static_cast<uint32_t>(SKF_AD_OFF + SKF_AD_RANDOM)));
  } else if (family == AF_INET6) {
    // The four words of the IPv6 source address, XORed (as bucketOf does).
    uint32_t at = static_cast<uint32_t>(SKF_NET_OFF + 8);
    code_.push_back(stmt(BPF_LD | BPF_W | BPF_ABS, at));
    for (uint32_t i = 1; i < 4; ++i) {
      code_.push_back(stmt(BPF_MISC | BPF_TAX, 0));
      code_.push_back(stmt(BPF_LD | BPF_W | BPF_ABS, at + 4 * i));
      code_.push_back(stmt(BPF_ALU | BPF_XOR | BPF_X, 0));
    }
  } else {
    code_.push_back(stmt(BPF_LD | BPF_W | BPF_ABS, static_cast<uint32_t>(SKF_NET_OFF + 12)));
  }
  if (pick == Pick::AddressHash) code_.push_back(stmt(BPF_ALU | BPF_MUL | BPF_K, kGolden));
  code_.push_back(stmt(BPF_ALU | BPF_RSH | BPF_K, 32 - kBucketBits));
  // Runs from the last: "bucket >= first: return slot". Only short jumps.
  for (size_t i = runs.size(); i-- > 1;) {
    code_.push_back(jump(BPF_JMP | BPF_JGE | BPF_K, runs[i].first, 0, 1));
    code_.push_back(stmt(BPF_RET | BPF_K, static_cast<uint32_t>(runs[i].slot)));
  }
  code_.push_back(stmt(BPF_RET | BPF_K, static_cast<uint32_t>(runs[0].slot)));
}

int ReusePortProgram::slotFor(std::string_view address_bytes) const {
  uint32_t b = bucketOf(address_bytes);
  for (size_t i = runs_.size(); i-- > 0;)
    if (b >= runs_[i].first) return runs_[i].slot;
  return runs_.front().slot;
}

int ReusePortProgram::attach(int fd) const {
  sock_fprog prog{static_cast<unsigned short>(code_.size()), const_cast<sock_filter*>(code_.data())};
  if (::setsockopt(fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &prog, sizeof prog) != 0) return errno;
  return 0;
}

bool hasReusePort(int fd) {
  int on = 0;
  socklen_t len = sizeof on;
  return ::getsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, &len) == 0 && on != 0;
}

std::vector<UniqueFd> openReusePortSockets(const SockAddr& address, int backlog, size_t count,
                                           std::vector<UniqueFd> inherited) {
  std::vector<UniqueFd> out = std::move(inherited);
  for (auto& fd : out) ::fcntl(fd.get(), F_SETFL, ::fcntl(fd.get(), F_GETFL) | O_NONBLOCK);
  // One at a time, in slot order: listen() is what puts a socket in the group's array.
  // Port 0 means the port the first one got.
  while (out.size() < count)
    out.push_back(listenTcp(out.empty() ? address : localAddress(out.front().get()), ListenOptions{backlog, true}));
  return out;
}

}  // namespace dingo
