#pragma once
// The worker process (dingo-gateway): runGateway() serves HTTP, WebSocket, SSE and
// long-polling on the sockets the supervisor hands it (or on its own listeners when
// standalone) until it is drained or stopped. Sessions start in HttpSession.h; what
// they share is GatewayContext (Context.h).
#include <string>
#include <vector>

#include "core/Config.h"

namespace dingo {

struct GatewayOptions {
  bool standalone = false;
  std::vector<std::string> listen;      // standalone: plain listeners (default: [[listen]])
  std::vector<std::string> listen_tls;  // standalone: TLS listeners
  int ipc_fd = -1;                      // worker: the socket from the supervisor
  int hub_fd = -1;                      // worker: the stream socket to the supervisor's hub
  int worker_id = 0;
  int generation = 0;
};

// Serves until drained or stopped. Returns the process exit code. Throws on start-up
// failures (bad certificate, cannot bind).
int runGateway(const Config& config, const GatewayOptions& options);

}  // namespace dingo
