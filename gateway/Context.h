#pragma once
// What every session of a gateway process shares. Single-threaded: one io_context
// per worker process, so nothing here needs a lock.
#include <cstdint>
#include <string>

#include "core/Config.h"

using SSL_CTX = struct ssl_ctx_st;

namespace dingo {

struct GatewayCounters {
  uint64_t connections = 0;  // open now
  uint64_t accepted = 0;     // adopted (worker) or accepted (standalone), total
  uint64_t rejected = 0;     // closed at once: over max_connections or draining
  uint64_t requests = 0;
  uint64_t bytes_in = 0;
  uint64_t bytes_out = 0;
  uint64_t tls_handshakes = 0;
  uint64_t tls_resumed = 0;
  uint64_t tls_failures = 0;
  uint64_t timeouts = 0;
  uint64_t bad_requests = 0;
};

// A live connection, linked into the process's list so that a drain and the deadline
// sweep can reach it.
class SessionEntry {
 public:
  static constexpr int64_t kNoDeadline = INT64_MAX;

  virtual ~SessionEntry() = default;
  // Called once when the process starts draining: close now if idle, else finish the
  // request in flight and close after it.
  virtual void onDrain() = 0;
  // Called by the sweep once `deadline_ms` has passed: cancel whatever I/O is pending.
  virtual void onDeadline() = 0;

  SessionEntry* prev = nullptr;
  SessionEntry* next = nullptr;
  // When the current phase (handshake, request head, idle, write) must be over, in
  // steady-clock milliseconds. Setting it is a store; the sweep enforces it.
  int64_t deadline_ms = kNoDeadline;
};

// Milliseconds on the steady clock (what deadline_ms is measured in).
int64_t steadyNowMs();

struct GatewayContext {
  const Config& config;
  int worker_id = 0;
  int pid = 0;  // getpid() is a system call; ask once
  int generation = 0;
  SSL_CTX* tls = nullptr;  // null when no certificate is configured
  GatewayCounters counters;
  bool draining = false;
  // The supervisor is gone: keep serving the connections we have, take no new ones (none
  // can come), and exit when the last one closes or at the drain deadline.
  bool orphaned = false;
  SessionEntry* sessions = nullptr;  // head of the intrusive list
  // Called when the last connection of a draining or orphaned process closes.
  void (*on_idle_when_draining)(void*) = nullptr;
  void* on_idle_arg = nullptr;

  void link(SessionEntry* e) {
    e->next = sessions;
    if (sessions) sessions->prev = e;
    sessions = e;
    ++counters.connections;
  }
  void unlink(SessionEntry* e) {
    if (e->prev) e->prev->next = e->next;
    else sessions = e->next;
    if (e->next) e->next->prev = e->prev;
    e->prev = e->next = nullptr;
    --counters.connections;
    if ((draining || orphaned) && counters.connections == 0 && on_idle_when_draining)
      on_idle_when_draining(on_idle_arg);
  }
};

}  // namespace dingo
