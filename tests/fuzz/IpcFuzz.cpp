// fuzz_ipc: ipc::receive (core/Ipc.h), which reads every datagram of the
// supervisor <-> worker socketpair, and what is parsed from its payloads: the hand-off
// and drain headers, the TLS ticket keys (core/Tls.h), and the JSON of Hello and Stats
// (parsed as the supervisor does). A compromised worker must not crash the supervisor,
// nor make it leak the fds it passes: each datagram may carry up to 4 of them, and after
// each input the lowest free fd must be what it was before.
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <nlohmann/json.hpp>

#include "core/Ipc.h"
#include "core/Json.h"
#include "core/Tls.h"
#include "tests/fuzz/FuzzCheck.h"

namespace {

// SOCK_SEQPACKET, like the worker's channel: [0] sends, [1] receives.
int* channel() {
  static int fds[2] = {-1, -1};
  if (fds[0] < 0) FUZZ_CHECK(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds) == 0);
  return fds;
}

int lowestFreeFd() {
  int fd = ::dup(0);
  FUZZ_CHECK(fd >= 0);
  ::close(fd);
  return fd;
}

// One datagram of exactly `bytes`, with `nfds` descriptors of /dev/null attached.
bool sendRaw(int sock, std::string_view bytes, int nfds) {
  int fds[4];
  for (int i = 0; i < nfds; ++i) fds[i] = ::dup(0);
  iovec iov{const_cast<char*>(bytes.data()), bytes.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof fds)] = {};
  if (nfds > 0) {
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * static_cast<size_t>(nfds));
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * static_cast<size_t>(nfds));
    std::memcpy(CMSG_DATA(c), fds, sizeof(int) * static_cast<size_t>(nfds));
  }
  bool sent = ::sendmsg(sock, &msg, MSG_DONTWAIT | MSG_NOSIGNAL) == static_cast<ssize_t>(bytes.size());
  for (int i = 0; i < nfds; ++i) ::close(fds[i]);  // the receiver holds its own copies
  return sent;
}

void readPayload(const dingo::ipc::Message& m) {
  using dingo::ipc::MsgType;
  switch (m.type) {
    case MsgType::Handoff: {
      dingo::ipc::HandoffInfo info;
      if (dingo::ipc::fromBytes(m.payload, info)) FUZZ_CHECK(m.payload.size() == sizeof info);
      break;
    }
    case MsgType::Listen: {
      dingo::ipc::ListenInfo info;
      if (dingo::ipc::fromBytes(m.payload, info)) FUZZ_CHECK(m.payload.size() == sizeof info);
      break;
    }
    case MsgType::Drain: {
      dingo::ipc::DrainInfo info;
      (void)dingo::ipc::fromBytes(m.payload, info);
      break;
    }
    case MsgType::TicketKeys: (void)dingo::TicketKeyRing::parse(m.payload); break;
    case MsgType::Hello:
    case MsgType::Stats:
    case MsgType::Disconnect:
    case MsgType::Disconnected: (void)dingo::parseJson(m.payload); break;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  int nfds = data[0] % 5;
  std::string_view datagram = dingo::fuzz::text(data + 1, size - 1);
  if (datagram.empty()) return 0;  // a zero-length datagram reads as end of stream
  int* fds = channel();
  int free_before = lowestFreeFd();
  if (sendRaw(fds[0], datagram, nfds)) {
    dingo::ipc::Message m;
    int rc = dingo::ipc::receive(fds[1], m);
    FUZZ_CHECK(rc == 0 || rc == EBADMSG);
    if (rc == 0) {
      FUZZ_CHECK(nfds <= 1 && m.fd.valid() == (nfds == 1));
      FUZZ_CHECK(datagram.size() >= sizeof(dingo::ipc::Header));
      FUZZ_CHECK(m.payload == datagram.substr(sizeof(dingo::ipc::Header)));
      readPayload(m);
    }
  }
  FUZZ_CHECK(lowestFreeFd() == free_before);
  return 0;
}
