#pragma once
// The Redis engine's hub, inside the supervisor ([bus] engine = "redis"): the workers
// talk hubwire to it exactly as to the local hub, and it keeps positions and history in
// Redis (core/RedisChannelStore.h) and fans messages out between hosts through Redis
// pub/sub. One Redis subscription per channel per host, held while the host has
// subscribers on it (interest-based). A new subscriber's history is read after the
// channel's subscription is confirmed, and live messages that arrive meanwhile are held
// and merged by SEQ: no gap, no duplicate. After the pub/sub connection comes back, every
// channel is subscribed again and compared with what this host delivered; what was
// missed and is still in history is delivered in order, without disconnecting anyone.
#include <cstdint>
#include <memory>
#include <nlohmann/json_fwd.hpp>

#include "core/Config.h"
#include "supervisor/HubService.h"
#include "supervisor/NodeRegistry.h"

namespace boost::asio {
class io_context;
}

namespace dingo {

class RedisHubServer final : public HubService {
 public:
  // `nodes`: what this host advertises in the node registry (nodeRegistryOptions()).
  RedisHubServer(boost::asio::io_context& io, const BusConfig& bus, const HistoryConfig& history,
                 NodeRegistryOptions nodes);
  ~RedisHubServer() override;

  uint32_t attach(int fd, int worker_slot) override;
  void detach(uint32_t link) override;
  nlohmann::json stats(size_t top_channels) const override;
  bool degraded() const override;
  void withdraw() override;

  struct Impl;

 private:
  void startNodeRegistry(boost::asio::io_context& io, const BusConfig& bus, NodeRegistryOptions nodes);

  std::shared_ptr<Impl> impl_;
  // Every host's endpoints, pushed to every worker link (hubwire Nodes) for /v1/nodes.
  // Declared after impl_: destroyed first.
  std::unique_ptr<NodeRegistry> nodes_;
};

}  // namespace dingo
