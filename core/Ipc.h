#pragma once
// Supervisor <-> worker messages over a SOCK_SEQPACKET Unix socketpair.
// Each datagram is one message: a fixed header, a payload, and at most one
// file descriptor carried with SCM_RIGHTS. Non-blocking callers get EAGAIN back
// as a value, so the supervisor never blocks on a slow worker.
#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/Net.h"
#include "core/UniqueFd.h"

namespace dingo::ipc {

constexpr uint32_t kMagic = 0x44494e47;  // "DING"
constexpr uint16_t kVersion = 1;
constexpr size_t kMaxPayload = 60 * 1024;
// The most fds one message carries over a stream socket (sendWithFds).
constexpr size_t kMaxFds = 4;
// What receive() and receiveWithFds() return at end of stream; errno values are positive.
constexpr int kEndOfStream = -1;

enum class MsgType : uint16_t {
  // supervisor -> worker
  Handoff = 1,     // a client socket (fd) + HandoffInfo payload
  TicketKeys = 2,  // TLS session ticket keys, newest first
  Drain = 3,       // stop taking work, finish, exit; payload: DrainInfo
  Disconnect = 4,  // close a user's connections; JSON {"id":N,"user":SUB,"reason":TEXT}
  Listen = 5,      // the kernel dispatch mode: a listening socket (fd) to accept from + ListenInfo
  // worker -> supervisor
  Hello = 100,         // JSON {"pid":..,"worker":..,"generation":..}
  Stats = 101,         // JSON counters
  Disconnected = 102,  // the answer to Disconnect: JSON {"id":N,"closed":K}
};

struct Header {
  uint32_t magic = kMagic;
  uint16_t version = kVersion;
  uint16_t type = 0;
};

// Sent with each handed-off client socket.
// HandoffInfo::listener of the supervisor's watchdog probes (a socketpair, not a client).
constexpr uint16_t kProbeListener = 0xFFFF;

struct HandoffInfo {
  uint16_t listener = 0;  // index into [[listen]], or kProbeListener
  uint8_t tls = 0;
  uint8_t reserved = 0;
  uint32_t peer_len = 0;
  int64_t accepted_unix_ns = 0;
  sockaddr_storage peer{};
};

// Sent with a listening socket of the worker's slot (the kernel dispatch mode). The worker
// accepts from it until it drains or its supervisor dies.
struct ListenInfo {
  uint16_t listener = 0;  // index into [[listen]]
  uint8_t tls = 0;
  uint8_t reserved = 0;
};

struct DrainInfo {
  int64_t deadline_ms = 0;  // drain deadline from now
};

struct Message {
  MsgType type{};
  std::string payload;
  UniqueFd fd;  // valid when the message carried one
};

// Sends one message. Returns 0 or an errno value (EAGAIN when the peer's queue is
// full, EPIPE/ECONNRESET when it is gone). Never raises SIGPIPE.
int send(int sock, MsgType type, std::string_view payload, int fd = -1);

// Receives one message. Returns 0, an errno value, or kEndOfStream.
// Malformed datagrams (bad magic, truncated) return EBADMSG and close any fd they carried.
int receive(int sock, Message& out);

// Stream sockets (the control socket, where an orphaned worker asks a new supervisor to
// adopt it): `bytes` and up to kMaxFds fds in one non-blocking sendmsg. Returns 0 or an errno
// value; a short write is EAGAIN (callers send small messages on fresh sockets).
int sendWithFds(int sock, std::string_view bytes, const std::vector<int>& fds);

// Reads what is there without blocking: appends at most `max_bytes` to `bytes` and takes
// ownership of any fds that came with them. Returns 0, an errno value (EAGAIN: nothing
// yet), or kEndOfStream.
int receiveWithFds(int sock, std::string& bytes, std::vector<UniqueFd>& fds, size_t max_bytes);

template <typename T>
std::string_view asBytes(const T& value) {
  return {reinterpret_cast<const char*>(&value), sizeof(T)};
}

// Copies a POD out of a payload; false when the sizes differ.
template <typename T>
bool fromBytes(std::string_view payload, T& out) {
  if (payload.size() != sizeof(T)) return false;
  __builtin_memcpy(&out, payload.data(), sizeof(T));
  return true;
}

}  // namespace dingo::ipc
