#include "core/Ipc.h"

#include <sys/uio.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace dingo::ipc {

namespace {

// Every fd that came with a received message, owned.
void takeFds(msghdr& msg, std::vector<UniqueFd>& out) {
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
      out.emplace_back(fd);
    }
  }
}

// One sendmsg(2) without waiting, with up to kMaxFds fds. Returns the bytes sent or -errno.
ssize_t sendOnce(int sock, iovec* iov, size_t iovcnt, const int* fds, size_t nfds) {
  msghdr msg{};
  msg.msg_iov = iov;
  msg.msg_iovlen = iovcnt;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFds)];
  if (nfds > 0) {
    std::memset(control, 0, sizeof control);
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
    cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
    std::memcpy(CMSG_DATA(cmsg), fds, sizeof(int) * nfds);
  }
  for (;;) {
    ssize_t n = ::sendmsg(sock, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n >= 0) return n;
    if (errno != EINTR) return -errno;
  }
}

// One recvmsg(2) without waiting that takes every fd that came. Returns the bytes read,
// 0 at end of stream, or -errno; `flags` gets msg_flags.
ssize_t receiveOnce(int sock, iovec* iov, size_t iovcnt, std::vector<UniqueFd>& fds, int& flags) {
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFds)];
  msghdr msg{};
  msg.msg_iov = iov;
  msg.msg_iovlen = iovcnt;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t n;
  bool reset_seen = false;
  for (;;) {
    n = ::recvmsg(sock, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n >= 0) break;
    if (errno == EINTR) continue;
    // A peer that died with our messages unread in its queue leaves ECONNRESET on our
    // socket, and a SOCK_SEQPACKET read reports it before the messages still queued for
    // us (a stream read, after them). Reading it clears it: read on, so that what the
    // peer sent before dying (sockets of waiting clients) is delivered, then the end.
    if (errno == ECONNRESET && !reset_seen) {
      reset_seen = true;
      continue;
    }
    return -errno;
  }
  takeFds(msg, fds);
  flags = msg.msg_flags;
  return n;
}

}  // namespace

int send(int sock, MsgType type, std::string_view payload, int fd) {
  if (payload.size() > kMaxPayload) return EMSGSIZE;
  Header header;
  header.type = static_cast<uint16_t>(type);
  iovec iov[2];
  iov[0].iov_base = &header;
  iov[0].iov_len = sizeof header;
  iov[1].iov_base = const_cast<char*>(payload.data());
  iov[1].iov_len = payload.size();
  ssize_t n = sendOnce(sock, iov, payload.empty() ? 1 : 2, &fd, fd >= 0 ? 1 : 0);
  return n < 0 ? static_cast<int>(-n) : 0;
}

int receive(int sock, Message& out) {
  Header header;
  char buf[kMaxPayload];
  iovec iov[2];
  iov[0].iov_base = &header;
  iov[0].iov_len = sizeof header;
  iov[1].iov_base = buf;
  iov[1].iov_len = sizeof buf;
  // Take ownership of every fd that arrived, even on a malformed message, so none leaks.
  std::vector<UniqueFd> fds;
  int flags = 0;
  ssize_t n = receiveOnce(sock, iov, 2, fds, flags);
  if (n < 0) return static_cast<int>(-n);
  if (n == 0) return kEndOfStream;
  int nfds = static_cast<int>(fds.size());
  if ((flags & (MSG_TRUNC | MSG_CTRUNC)) != 0) return EBADMSG;
  if (static_cast<size_t>(n) < sizeof header || header.magic != kMagic ||
      header.version != kVersion || nfds > 1)
    return EBADMSG;

  out.type = static_cast<MsgType>(header.type);
  out.payload.assign(buf, static_cast<size_t>(n) - sizeof header);
  out.fd = nfds == 1 ? std::move(fds[0]) : UniqueFd();
  return 0;
}

int sendWithFds(int sock, std::string_view bytes, const std::vector<int>& fds) {
  if (fds.size() > kMaxFds || bytes.empty()) return EINVAL;
  iovec iov{const_cast<char*>(bytes.data()), bytes.size()};
  ssize_t n = sendOnce(sock, &iov, 1, fds.data(), fds.size());
  if (n < 0) return static_cast<int>(-n);
  return n == static_cast<ssize_t>(bytes.size()) ? 0 : EAGAIN;
}

int receiveWithFds(int sock, std::string& bytes, std::vector<UniqueFd>& fds, size_t max_bytes) {
  char buf[4096];
  iovec iov{buf, std::min(sizeof buf, max_bytes)};
  int flags = 0;
  ssize_t n = receiveOnce(sock, &iov, 1, fds, flags);
  if (n < 0) return static_cast<int>(-n);
  if (n == 0) return kEndOfStream;
  bytes.append(buf, static_cast<size_t>(n));
  return 0;
}

}  // namespace dingo::ipc
