#include "supervisor/ControlRequest.h"

#include <fmt/format.h>

#include <algorithm>

#include "core/Json.h"

namespace dingo {

namespace {

// At most this much of a client's text goes back in an error message.
constexpr size_t kEcho = 64;

std::string printable(std::string_view s) {
  // Only printable ASCII is echoed; the rest would make our reply invalid JSON text or
  // let a caller write what it likes into an operator's terminal.
  std::string out;
  for (char c : s.substr(0, kEcho)) out += (c >= 0x20 && c < 0x7f) ? c : '?';
  return out;
}

}  // namespace

std::variant<ControlRequest, std::string> parseControlRequest(std::string_view line) {
  if (line.size() > kMaxControlLine) return fmt::format("a request is one line of at most {} bytes", kMaxControlLine);
  ParsedJson parsed = parseJson(line);
  const nlohmann::json& req = parsed.value;
  auto cmd = field<std::string>(req, "cmd");
  if (!parsed.ok() || !cmd) return std::string("expected a JSON object with a \"cmd\" string");

  ControlRequest out;
  if (*cmd == "status") {
    out.cmd = ControlRequest::Cmd::Status;
  } else if (*cmd == "metrics") {
    out.cmd = ControlRequest::Cmd::Metrics;
  } else if (*cmd == "reload") {
    out.cmd = ControlRequest::Cmd::Reload;
  } else if (*cmd == "upgrade") {
    out.cmd = ControlRequest::Cmd::Upgrade;
  } else if (*cmd == "stop") {
    out.cmd = ControlRequest::Cmd::Stop;
    if (req.contains("drain_ms")) {
      auto ms = field<int64_t>(req, "drain_ms");
      if (!ms || *ms < 0) return std::string("drain_ms must be a non-negative integer (milliseconds)");
      out.drain = Duration(*ms);
    }
  } else if (*cmd == "drain-worker") {
    out.cmd = ControlRequest::Cmd::DrainWorker;
    auto id = field<int>(req, "id");
    if (!id) return std::string("drain-worker needs \"id\", a worker id");
    out.worker = *id;
  } else if (*cmd == "adopt") {
    out.cmd = ControlRequest::Cmd::Adopt;
    AdoptRequest& a = out.adopt;
    auto pid = field<int>(req, "pid");
    auto slot = field<int>(req, "worker");
    if (!pid || *pid <= 0 || !slot) return std::string("adopt needs \"pid\" (a positive integer) and \"worker\" (an integer)");
    a.pid = *pid;
    a.slot = *slot;
    a.generation = field<int>(req, "generation");
    a.config_digest = field<std::string>(req, "config_digest").value_or("");
    a.connections = field<uint64_t>(req, "connections").value_or(0);
  } else if (*cmd == "disconnect") {
    out.cmd = ControlRequest::Cmd::Disconnect;
    auto user = field<std::string>(req, "user");
    if (!user || user->empty() || user->size() > 255) return std::string("disconnect needs \"user\", a token's sub");
    out.user = std::move(*user);
    out.reason = field<std::string>(req, "reason").value_or("");
    // It becomes a WebSocket close reason (at most 123 bytes) and a log line.
    bool ascii = std::all_of(out.reason.begin(), out.reason.end(), [](char c) { return c >= 0x20 && c < 0x7f; });
    if (out.reason.size() > kMaxDisconnectReason || !ascii)
      return fmt::format("reason must be printable ASCII of at most {} bytes", kMaxDisconnectReason);
  } else {
    return fmt::format("unknown command '{}'", printable(*cmd));
  }
  return out;
}

}  // namespace dingo
