#pragma once
// The local engine's hub, inside the supervisor: one Hub, one link per worker. Each
// worker talks to it over a stream socketpair (its fd 4) in the hubwire protocol.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <nlohmann/json_fwd.hpp>

#include "core/Config.h"

namespace boost::asio {
class io_context;
}

namespace dingo {

class HubServer {
 public:
  HubServer(boost::asio::io_context& io, const HistoryConfig& history);
  ~HubServer();

  // Serves a worker on our end `fd` of its socketpair (taken over). Returns the link id.
  uint32_t attach(int fd, int worker_slot);
  // The worker is gone: forget its subscribers and close the link.
  void detach(uint32_t link);
  // {"channels":N,"published":N,"history_messages":N,"history_bytes":N,"links":N,
  //  "link_overflows":N,"refused_full":N}, and with top_channels > 0,
  // "top_channels":[{"channel":NAME,"subscribers":N}, ...] (Hub::topChannels: one pass
  // over every channel, so only when asked).
  nlohmann::json stats(size_t top_channels = 0) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace dingo
