#pragma once
// What the supervisor needs of a pub/sub engine's hub: one link per worker (the hubwire
// protocol over the worker's socketpair, fd 4) and its figures. HubServer is the local
// engine (a sequencer in this process); RedisHubServer the Redis engine (positions,
// history and fan-out between hosts in Redis).
#include <cstddef>
#include <cstdint>
#include <nlohmann/json_fwd.hpp>

namespace dingo {

class HubService {
 public:
  virtual ~HubService() = default;
  // Serves a worker on our end `fd` of its socketpair (taken over). Returns the link id.
  virtual uint32_t attach(int fd, int worker_slot) = 0;
  // The worker is gone: forget its subscribers and close the link.
  virtual void detach(uint32_t link) = 0;
  // Its figures; with top_channels > 0, also the channels with the most subscribers
  // here (for the dashboard), which costs a pass over every channel.
  virtual nlohmann::json stats(size_t top_channels) const = 0;
  // The bus cannot serve (Redis unreachable): publishes fail, status says degraded.
  virtual bool degraded() const { return false; }
  // This host stops taking connections (drain, stop, upgrade): it leaves whatever
  // registry of hosts the engine keeps (the Redis engine's node registry).
  virtual void withdraw() {}
};

}  // namespace dingo
