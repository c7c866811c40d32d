#pragma once
// The local engine's hub, inside the supervisor: one Hub, one link per worker. Each
// worker talks to it over a stream socketpair (its fd 4) in the hubwire protocol.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <nlohmann/json_fwd.hpp>

#include "core/Config.h"
#include "supervisor/HubService.h"

namespace boost::asio {
class io_context;
}

namespace dingo {

class HubServer final : public HubService {
 public:
  HubServer(boost::asio::io_context& io, const HistoryConfig& history);
  ~HubServer() override;

  uint32_t attach(int fd, int worker_slot) override;
  void detach(uint32_t link) override;
  // {"channels":N,"published":N,"history_messages":N,"history_bytes":N,"links":N,
  //  "link_overflows":N,"refused_full":N}, and with top_channels > 0,
  // "top_channels":[{"channel":NAME,"subscribers":N}, ...] (Hub::topChannels: one pass
  // over every channel, so only when asked).
  nlohmann::json stats(size_t top_channels) const override;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace dingo
