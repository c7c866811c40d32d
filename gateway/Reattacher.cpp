#include "gateway/Reattacher.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

#include <nlohmann/json.hpp>

#include "core/Ipc.h"
#include "core/Json.h"
#include "core/Log.h"
#include "gateway/Context.h"

namespace dingo {

namespace {
constexpr const char* kLog = "gateway";
}  // namespace

Reattacher::Reattacher(asio::io_context& io, GatewayContext& ctx, Adopted adopted)
    : io_(io), ctx_(ctx), adopted_(std::move(adopted)), timer_(io), reply_deadline_(io) {}

void Reattacher::schedule() {
  timer_.expires_after(kEvery);
  timer_.async_wait([this](boost::system::error_code ec) {
    if (ec || !ctx_.orphaned || ctx_.draining) return;
    knock();
  });
}

void Reattacher::knock() {
  const std::string& path = ctx_.config.supervisor.control_socket;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) {
    logError(kLog, "control socket path {} is too long; this worker cannot re-attach", path);
    return;
  }
  std::memcpy(addr.sun_path, path.data(), path.size());
  // Non-blocking: a Unix connect completes at once or fails (no supervisor yet: ENOENT
  // or ECONNREFUSED; a full backlog: EAGAIN). Never waits in the event loop.
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd || ::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    schedule();
    return;
  }
  nlohmann::json req = {{"cmd", "adopt"},
                        {"pid", ::getpid()},
                        {"worker", ctx_.worker_id},
                        {"generation", ctx_.generation},
                        {"version", DINGO_VERSION},
                        {"config_digest", ctx_.config.digest},
                        {"connections", ctx_.counters.connections}};
  if (ipc::sendWithFds(fd.get(), req.dump() + "\n", {}) != 0) {
    schedule();
    return;
  }
  sock_ = std::make_unique<asio::posix::stream_descriptor>(io_, fd.release());
  reply_.clear();
  fds_.clear();
  reply_deadline_.expires_after(kReplyTimeout);
  reply_deadline_.async_wait([this](boost::system::error_code ec) {
    if (ec || !sock_) return;
    logWarn(kLog, "no answer from the control socket within {}s; trying again", kReplyTimeout.count());
    sock_.reset();
    schedule();
  });
  readReply();
}

void Reattacher::readReply() {
  sock_->async_wait(asio::posix::stream_descriptor::wait_read, [this](boost::system::error_code ec) {
    if (ec || !sock_) return;
    int rc = ipc::receiveWithFds(sock_->native_handle(), reply_, fds_, 4096);
    if (rc == EAGAIN) return readReply();
    size_t eol = reply_.find('\n');
    if (rc == 0 && eol == std::string::npos && reply_.size() < 4096) return readReply();
    reply_deadline_.cancel();
    sock_.reset();
    if (!ctx_.orphaned || ctx_.draining) return;
    // Whatever answers on the control socket path is not trusted to be well formed.
    ParsedJson parsed = parseJson(std::string_view(reply_).substr(0, eol));
    auto ok = field<bool>(parsed.value, "ok");
    if (!parsed.ok() || !ok) {
      schedule();  // a supervisor on its way down, or not one of ours
      return;
    }
    if (!*ok) {
      logWarn(kLog, "the new supervisor will not adopt this worker: {}; draining out",
              field<std::string>(parsed.value, "error").value_or("no reason given"));
      return;
    }
    if (fds_.size() != 2) {
      logError(kLog, "the new supervisor's answer carried {} fds, not 2; trying again", fds_.size());
      schedule();
      return;
    }
    ++reattachments_;
    adopted_(std::move(fds_[0]), std::move(fds_[1]));
  });
}

}  // namespace dingo
