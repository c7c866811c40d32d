#pragma once
// What every session of a gateway process shares. Single-threaded: one io_context
// per worker process, so nothing here needs a lock.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/Config.h"

using SSL_CTX = struct ssl_ctx_st;

namespace dingo {

class Authenticator;
class Broker;
class ChannelTable;
class CursorCodec;
class PollCache;
class PeerLimits;
class UserRegistry;

struct GatewayCounters {
  uint64_t connections = 0;  // open now
  uint64_t accepted = 0;     // adopted (worker) or accepted (standalone), total
  uint64_t rejected = 0;     // closed at once: over max_connections or draining
  uint64_t probes = 0;       // the supervisor's watchdog probes served
  uint64_t requests = 0;
  uint64_t bytes_in = 0;
  uint64_t bytes_out = 0;
  uint64_t tls_handshakes = 0;
  uint64_t tls_resumed = 0;
  uint64_t tls_failures = 0;
  uint64_t timeouts = 0;
  uint64_t bad_requests = 0;
  // Pub/sub
  uint64_t ws_connections = 0;       // open now
  uint64_t ws_upgrades = 0;          // total
  uint64_t ws_commands = 0;
  uint64_t ws_protocol_errors = 0;   // closed with 1002, 1003, 1007 or 1009
  uint64_t published = 0;            // publishes this worker made (REST and WebSocket)
  uint64_t delivered = 0;            // messages pushed to subscribers
  uint64_t gaps = 0;                 // subscriptions that met a message that did not follow (resumed)
  uint64_t recovered = 0;            // subscribes with `since` that got what they missed
  uint64_t not_recovered = 0;        // ... that got recovered: false
  uint64_t slow_consumers = 0;       // closed because their send queue overflowed
  uint64_t resets = 0;               // cut with a reset: timed out, too slow, silent after close
  uint64_t peer_limited = 0;         // connections refused by the per-address limits
  uint64_t stream_limited = 0;       // polls and SSE streams refused over max_streams
  uint64_t rate_limited = 0;         // commands refused with `limit`
  // Long-polling and SSE
  uint64_t polls = 0;                // /v1/poll requests answered
  uint64_t held_polls = 0;           // held now, waiting for a message
  uint64_t poll_cache_hits = 0;      // polls served from this worker's session cache
  uint64_t poll_cache_misses = 0;    // polls with a cursor rebuilt from the hub
  uint64_t sse_streams = 0;          // open now
  uint64_t sse_total = 0;
  // Auth
  uint64_t authenticated = 0;        // WebSocket connections, SSE streams and held polls with a token, now
};

// Something with output to send once the current event-loop turn is over (fan-out
// queues a message on many sessions, then each sends everything queued in one write).
class Flushable {
 public:
  virtual ~Flushable() = default;
  virtual void flushNow() = 0;
  bool flush_queued = false;
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
  // The pub/sub broker is gone (the supervisor died): WebSocket sessions tell their
  // clients to reconnect elsewhere.
  virtual void onBrokerLost() {}

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
  Broker* broker = nullptr;
  ChannelTable* channels = nullptr;
  PollCache* polls = nullptr;
  const CursorCodec* cursors = nullptr;
  PeerLimits* peers = nullptr;  // per-address connection limits
  Authenticator* auth = nullptr;  // tokens and channel rights (docs/auth.md)
  UserRegistry* users = nullptr;  // connections by user, for dingoctl disconnect
  // GET /v1/nodes as the supervisor's hub sent it (the Redis engine: every host's
  // endpoints, from its node registry); empty: this gateway answers from its config.
  std::string nodes_document;
  // Output to send at the end of this event-loop turn; schedule_flush posts runFlushes.
  std::vector<Flushable*> flush_queue;
  std::vector<Flushable*> flushing;
  std::function<void()> schedule_flush;

  void requestFlush(Flushable* f) {
    if (f->flush_queued) return;
    f->flush_queued = true;
    flush_queue.push_back(f);
    if (flush_queue.size() == 1 && schedule_flush) schedule_flush();
  }
  // A Flushable going away takes itself out of the queues.
  void cancelFlush(Flushable* f) {
    if (!f->flush_queued) return;
    for (auto* v : {&flush_queue, &flushing})
      for (auto& q : *v)
        if (q == f) q = nullptr;
    f->flush_queued = false;
  }
  void runFlushes() {
    flushing.swap(flush_queue);
    for (size_t i = 0; i < flushing.size(); ++i) {
      Flushable* f = flushing[i];
      if (!f) continue;
      f->flush_queued = false;
      f->flushNow();
    }
    flushing.clear();
  }
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
