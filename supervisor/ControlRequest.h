#pragma once
// One request line of the control socket, parsed and checked before the supervisor acts
// on it. The socket is reachable by root and the dingo group (and by orphaned workers
// asking to be adopted), so a line may hold anything: wrong types, non-JSON, invalid
// UTF-8, megabytes. parseControlRequest() turns every such line into an error message
// for the reply and never throws; the supervisor only ever sees well-typed requests.
//
// Wire form: one JSON object per line, {"cmd":NAME,...}:
//   status | metrics | reload | upgrade
//   stop           [drain_ms: unsigned]
//   drain-worker   id: int
//   adopt          pid: int > 0, worker: int, generation: int, config_digest: string,
//                  connections: unsigned   (sent by an orphaned dingo-gateway)
//   disconnect     user: string, reason: printable ASCII (optional)
#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "core/Duration.h"

namespace dingo {

// The longest line the control socket reads; a longer one is answered with an error.
constexpr size_t kMaxControlLine = 64 * 1024;
// The longest reason of a disconnect: it ends up in a WebSocket close frame (123 bytes).
constexpr size_t kMaxDisconnectReason = 120;

struct AdoptRequest {
  pid_t pid = 0;
  int slot = -1;
  std::optional<int> generation;
  std::string config_digest;
  uint64_t connections = 0;
};

struct ControlRequest {
  enum class Cmd { Status, Metrics, Stop, Reload, Upgrade, DrainWorker, Adopt, Disconnect };
  Cmd cmd = Cmd::Status;
  std::optional<Duration> drain;  // stop: how long to drain (default: the config's)
  int worker = -1;                // drain-worker
  AdoptRequest adopt;             // adopt
  std::string user;               // disconnect: whose connections
  std::string reason;             // disconnect: told to the clients
};

// The request, or the reason it is refused (for {"ok":false,"error":...}).
std::variant<ControlRequest, std::string> parseControlRequest(std::string_view line);

}  // namespace dingo
