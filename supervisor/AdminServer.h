#pragma once
// The supervisor's admin HTTP listener: GET /metrics and GET /healthz.
#include <functional>
#include <memory>
#include <string>
#include <utility>

#include "core/Net.h"

namespace boost::asio {
class io_context;
}

namespace dingo {

class AdminServer {
 public:
  using MetricsFn = std::function<std::string()>;
  using HealthFn = std::function<std::pair<int, std::string>()>;  // status, JSON body

  // Binds now (throws std::system_error) and serves on `io` until destroyed.
  AdminServer(boost::asio::io_context& io, const SockAddr& address, MetricsFn metrics,
              HealthFn health);
  ~AdminServer();

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace dingo
