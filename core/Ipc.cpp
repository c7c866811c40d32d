#include "core/Ipc.h"

#include <sys/uio.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace dingo::ipc {

int send(int sock, MsgType type, std::string_view payload, int fd) {
  if (payload.size() > kMaxPayload) return EMSGSIZE;
  Header header;
  header.type = static_cast<uint16_t>(type);
  iovec iov[2];
  iov[0].iov_base = &header;
  iov[0].iov_len = sizeof header;
  iov[1].iov_base = const_cast<char*>(payload.data());
  iov[1].iov_len = payload.size();

  msghdr msg{};
  msg.msg_iov = iov;
  msg.msg_iovlen = payload.empty() ? 1 : 2;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
  if (fd >= 0) {
    std::memset(control, 0, sizeof control);
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(cmsg), &fd, sizeof(int));
  }
  for (;;) {
    ssize_t n = ::sendmsg(sock, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n >= 0) return 0;
    if (errno == EINTR) continue;
    return errno;
  }
}

int receive(int sock, Message& out) {
  Header header;
  char buf[kMaxPayload];
  iovec iov[2];
  iov[0].iov_base = &header;
  iov[0].iov_len = sizeof header;
  iov[1].iov_base = buf;
  iov[1].iov_len = sizeof buf;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 4)];
  msghdr msg{};
  msg.msg_iov = iov;
  msg.msg_iovlen = 2;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;

  ssize_t n;
  do {
    n = ::recvmsg(sock, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return errno;
  if (n == 0) return -1;

  // Take ownership of every fd that arrived, even on a malformed message, so none leaks.
  UniqueFd fds[4];
  int nfds = 0;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
      size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < count; ++i) {
        int fd;
        std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
        if (nfds < 4) fds[nfds++].reset(fd);
        else ::close(fd);
      }
    }
  }
  if ((msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) != 0) return EBADMSG;
  if (static_cast<size_t>(n) < sizeof header || header.magic != kMagic ||
      header.version != kVersion || nfds > 1)
    return EBADMSG;

  out.type = static_cast<MsgType>(header.type);
  out.payload.assign(buf, static_cast<size_t>(n) - sizeof header);
  out.fd = nfds == 1 ? std::move(fds[0]) : UniqueFd();
  return 0;
}

int sendWithFds(int sock, std::string_view bytes, const std::vector<int>& fds) {
  if (fds.size() > 4 || bytes.empty()) return EINVAL;
  iovec iov{const_cast<char*>(bytes.data()), bytes.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 4)];
  if (!fds.empty()) {
    std::memset(control, 0, sizeof control);
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(cmsg), fds.data(), sizeof(int) * fds.size());
  }
  for (;;) {
    ssize_t n = ::sendmsg(sock, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n == static_cast<ssize_t>(bytes.size())) return 0;
    if (n >= 0) return EAGAIN;
    if (errno == EINTR) continue;
    return errno;
  }
}

int receiveWithFds(int sock, std::string& bytes, std::vector<UniqueFd>& fds, size_t max_bytes) {
  char buf[4096];
  iovec iov{buf, std::min(sizeof buf, max_bytes)};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 4)];
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t n;
  do {
    n = ::recvmsg(sock, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return errno;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
      fds.emplace_back(fd);
    }
  }
  if (n == 0) return -1;
  bytes.append(buf, static_cast<size_t>(n));
  return 0;
}

}  // namespace dingo::ipc
