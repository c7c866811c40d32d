#pragma once
// The supervisor's admin HTTP listener, read-only: GET /metrics, GET /healthz, the
// status document at GET /v1/status and as a live SSE stream at GET /v1/status/stream,
// and the dashboard page (supervisor/dashboard/, built in) at GET /.
#include <functional>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <utility>

#include "core/Net.h"

namespace boost::asio {
class io_context;
}

namespace dingo {

class AdminServer {
 public:
  struct Handlers {
    std::function<std::string()> metrics;                 // Prometheus text
    std::function<std::pair<int, std::string>()> health;  // status, JSON body
    std::function<std::string()> status;                  // the status document, compact JSON
  };

  // Binds now (throws std::system_error) and serves on `io` until destroyed.
  AdminServer(boost::asio::io_context& io, const SockAddr& address, Handlers handlers);
  ~AdminServer();

  // {"streams":N (open now),"streams_total":N,"streams_refused":N (over kMaxStreams),
  //  "streams_cut":N (a reader that stopped reading)}
  nlohmann::json stats() const;

  // Status streams open at once; one more is answered 503.
  static constexpr int kMaxStreams = 16;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace dingo
