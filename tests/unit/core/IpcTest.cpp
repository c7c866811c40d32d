#include "core/Ipc.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstring>

using namespace dingo;

namespace {

struct Pair {
  UniqueFd a, b;
  Pair() {
    int sv[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv), 0);
    a.reset(sv[0]);
    b.reset(sv[1]);
  }
};

struct Pipe {
  UniqueFd r, w;
  Pipe() {
    int p[2];
    EXPECT_EQ(::pipe2(p, O_CLOEXEC), 0);
    r.reset(p[0]);
    w.reset(p[1]);
  }
};

}  // namespace

TEST(Ipc, PassesAFileDescriptorWithItsHeader) {
  Pair sp;
  Pipe pipe;
  ipc::HandoffInfo info;
  info.listener = 3;
  info.tls = 1;
  info.accepted_unix_ns = 42;
  ASSERT_EQ(ipc::send(sp.a.get(), ipc::MsgType::Handoff, ipc::asBytes(info), pipe.w.get()), 0);
  pipe.w.reset();  // the only writer left is the one in flight

  ipc::Message msg;
  ASSERT_EQ(ipc::receive(sp.b.get(), msg), 0);
  EXPECT_EQ(msg.type, ipc::MsgType::Handoff);
  ipc::HandoffInfo got;
  ASSERT_TRUE(ipc::fromBytes(msg.payload, got));
  EXPECT_EQ(got.listener, 3);
  EXPECT_EQ(got.tls, 1);
  EXPECT_EQ(got.accepted_unix_ns, 42);
  ASSERT_TRUE(msg.fd.valid());
  EXPECT_NE(::fcntl(msg.fd.get(), F_GETFD) & FD_CLOEXEC, 0);  // received close-on-exec

  // The received descriptor is the same pipe: what we write arrives at the read end.
  ASSERT_EQ(::write(msg.fd.get(), "x", 1), 1);
  char c = 0;
  ASSERT_EQ(::read(pipe.r.get(), &c, 1), 1);
  EXPECT_EQ(c, 'x');
}

TEST(Ipc, InFlightDescriptorsCloseWhenTheReceiverGoesAway) {
  Pair sp;
  Pipe pipe;
  ASSERT_EQ(ipc::send(sp.a.get(), ipc::MsgType::Handoff, "h", pipe.w.get()), 0);
  pipe.w.reset();
  sp.b.reset();  // the worker dies before reading
  // With no writer left anywhere, the read end sees end of file: nothing leaked.
  pollfd p{pipe.r.get(), POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 2000), 1);
  char c;
  EXPECT_EQ(::read(pipe.r.get(), &c, 1), 0);
}

TEST(Ipc, FullQueueIsEagainNotABlock) {
  Pair sp;
  int err = 0;
  int sent = 0;
  for (; sent < 100000; ++sent) {
    err = ipc::send(sp.a.get(), ipc::MsgType::Stats, std::string(512, 's'));
    if (err) break;
  }
  EXPECT_EQ(err, EAGAIN);
  EXPECT_GT(sent, 0);
}

TEST(Ipc, SendToAGonePeerIsAnErrorValue) {
  Pair sp;
  sp.b.reset();
  EXPECT_EQ(ipc::send(sp.a.get(), ipc::MsgType::Hello, "{}"), EPIPE);
  ipc::Message msg;
  EXPECT_EQ(ipc::receive(sp.a.get(), msg), ipc::kEndOfStream);
}

TEST(Ipc, MalformedMessagesAreRejectedAndTheirFdsClosed) {
  Pair sp;
  Pipe pipe;
  // A datagram without our header, carrying a descriptor.
  char junk[3] = {1, 2, 3};
  iovec iov{junk, sizeof junk};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr m{};
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  m.msg_control = control;
  m.msg_controllen = sizeof control;
  cmsghdr* c = CMSG_FIRSTHDR(&m);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  int fd = pipe.w.get();
  std::memcpy(CMSG_DATA(c), &fd, sizeof fd);
  ASSERT_EQ(::sendmsg(sp.a.get(), &m, 0), 3);
  pipe.w.reset();

  ipc::Message msg;
  EXPECT_EQ(ipc::receive(sp.b.get(), msg), EBADMSG);
  pollfd p{pipe.r.get(), POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 2000), 1);
  char ch;
  EXPECT_EQ(::read(pipe.r.get(), &ch, 1), 0);  // the fd that came with it was closed
  EXPECT_EQ(ipc::receive(sp.b.get(), msg), EAGAIN);
}

TEST(Ipc, OversizedPayloadIsRefused) {
  Pair sp;
  EXPECT_EQ(ipc::send(sp.a.get(), ipc::MsgType::Stats, std::string(ipc::kMaxPayload + 1, 'x')),
            EMSGSIZE);
}

// A supervisor killed while a worker's stats sat unread in its queue leaves the worker's
// socket with a pending ECONNRESET, which a datagram read reports before the messages
// still queued. Those messages are sockets of clients that have sent their requests:
// they must all be delivered, and only then the end of the stream.
TEST(Ipc, MessagesQueuedBeforeThePeerDiedAreDeliveredBeforeTheEnd) {
  Pair sp;
  ASSERT_EQ(ipc::send(sp.b.get(), ipc::MsgType::Stats, "{}"), 0);  // never read by a
  Pipe pipe;
  for (int i = 0; i < 3; ++i)
    ASSERT_EQ(ipc::send(sp.a.get(), ipc::MsgType::Handoff, "h", pipe.w.get()), 0);
  sp.a.reset();  // the supervisor dies

  ipc::Message msg;
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(ipc::receive(sp.b.get(), msg), 0) << "message " << i;
    EXPECT_TRUE(msg.fd.valid());
  }
  EXPECT_EQ(ipc::receive(sp.b.get(), msg), ipc::kEndOfStream);  // then
}
