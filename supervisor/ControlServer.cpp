#include "supervisor/ControlServer.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <charconv>
#include <nlohmann/json.hpp>

#include "core/Asio.h"
#include "core/Ipc.h"
#include "core/Log.h"
#include "core/Process.h"

namespace dingo {

namespace {
constexpr const char* kLog = "supervisor";
using json = nlohmann::json;
using asio::local::stream_protocol;

// The supplementary groups of `pid`, from /proc/PID/status ("Groups:\t4 27 1000").
bool processInGroup(pid_t pid, gid_t gid) {
  auto text = readFile(fmt::format("/proc/{}/status", pid));
  if (!text) return false;
  size_t at = text->find("\nGroups:");
  if (at == std::string::npos) return false;
  std::string_view line(*text);
  line = line.substr(at + 8, line.find('\n', at + 1) - (at + 8));
  while (!line.empty()) {
    size_t skip = line.find_first_not_of(" \t");
    if (skip == std::string_view::npos) break;
    line.remove_prefix(skip);
    gid_t g = 0;
    auto [p, ec] = std::from_chars(line.data(), line.data() + line.size(), g);
    if (ec != std::errc()) break;
    if (g == gid) return true;
    line.remove_prefix(static_cast<size_t>(p - line.data()));
  }
  return false;
}
}  // namespace

struct ControlServer::Impl {
  std::unique_ptr<stream_protocol::acceptor> acceptor;
};

struct ControlServer::Conn {
  Conn(stream_protocol::socket s, asio::io_context& io) : socket(std::move(s)), deadline(io) {}
  stream_protocol::socket socket;
  asio::steady_timer deadline;
  std::string in;
  std::string out;
  std::vector<UniqueFd> pass;  // fds to send with the answer (adopt)
  bool deferred = false;       // answered later (disconnect)
};

ControlServer::ControlServer(asio::io_context& io, const SupervisorConfig& config, Commands commands)
    : io_(io), config_(config), commands_(std::move(commands)), impl_(std::make_unique<Impl>()) {}

ControlServer::~ControlServer() = default;

bool ControlServer::bound() const { return impl_->acceptor != nullptr; }

void ControlServer::bind(bool upgrading) {
  const std::string& path = config_.control_socket;
  ensureParentDir(path);
  // A live socket means another supervisor owns it; a dead one is left over.
  {
    stream_protocol::socket probe(io_);
    boost::system::error_code ec;
    probe.connect(stream_protocol::endpoint(path), ec);
    if (!ec && !upgrading) throw std::runtime_error("another supervisor is running on control socket " + path);
    // Upgrading: the old supervisor keeps its socket open, but the path is ours now.
    ::unlink(path.c_str());
  }
  listen();
}

void ControlServer::listen() {
  const std::string& path = config_.control_socket;
  impl_->acceptor = std::make_unique<stream_protocol::acceptor>(io_, stream_protocol::endpoint(path));
  if (::chmod(path.c_str(), 0660) != 0) logWarn(kLog, "chmod 0660 {}: {}", path, errnoText(errno));
  accept();
}

void ControlServer::rebind() {
  close(false);
  try {
    ::unlink(config_.control_socket.c_str());
    listen();
  } catch (const std::exception& e) {
    logError(kLog, "control socket {}: {}", config_.control_socket, e.what());
  }
}

void ControlServer::close(bool unlink_path) {
  if (!impl_->acceptor) return;
  if (unlink_path) ::unlink(config_.control_socket.c_str());
  boost::system::error_code ec;
  impl_->acceptor->close(ec);
  impl_->acceptor.reset();
}

// Who may use the control socket: root, our own user (the workers that ask to be
// adopted run as it), and members of the socket's group (the `dingo` group when
// [supervisor] user is set). The file's mode (0660) says the same; this holds even
// when someone loosens the mode or the folder.
bool ControlServer::peerAllowed(int fd, std::string& why) const {
  ucred cred{};
  socklen_t len = sizeof cred;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    why = "SO_PEERCRED: " + errnoText(errno);
    return false;
  }
  if (cred.uid == 0 || cred.uid == ::geteuid()) return true;
  struct stat st {};
  if (::stat(config_.control_socket.c_str(), &st) != 0) {
    why = "stat: " + errnoText(errno);
    return false;
  }
  if (cred.gid == st.st_gid || processInGroup(cred.pid, st.st_gid)) return true;
  why = fmt::format("uid {} is neither root, uid {}, nor in group {}", cred.uid, ::geteuid(), st.st_gid);
  return false;
}

void ControlServer::accept() {
  impl_->acceptor->async_accept([this](boost::system::error_code ec, stream_protocol::socket s) {
    if (ec == asio::error::operation_aborted || !impl_->acceptor) return;
    std::string why;
    if (!ec && !peerAllowed(s.native_handle(), why)) {
      logWarn(kLog, "control socket: refused a caller: {}", why);
      std::string reply = json{{"ok", false}, {"error", "permission denied: " + why}}.dump() + "\n";
      // Small, on a fresh socket: one non-blocking send, then the socket closes.
      (void)::send(s.native_handle(), reply.data(), reply.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    } else if (!ec) {
      serve(std::make_shared<Conn>(std::move(s), io_));
    }
    accept();
  });
}

void ControlServer::serve(std::shared_ptr<Conn> c) {
  c->deadline.expires_after(kRequestDeadline);
  c->deadline.async_wait([c](boost::system::error_code ec) {
    if (!ec) c->socket.close();
  });
  asio::async_read_until(
      c->socket, asio::dynamic_buffer(c->in, kMaxControlLine + 1), '\n',
      [this, c](boost::system::error_code ec, size_t line_end) {
        if (ec == asio::error::not_found) {
          // No newline within the limit: longer than any request. Answered, not dropped.
          c->out = json{{"ok", false},
                        {"error", fmt::format("a request is one line of at most {} bytes", kMaxControlLine)}}
                       .dump() +
                   "\n";
        } else if (ec) {
          c->deadline.cancel();
          return;
        } else {
          c->out = reply(std::string_view(c->in).substr(0, line_end), c);
          if (c->deferred) return;  // its answer comes later, through the Reply
        }
        if (!c->pass.empty()) {
          // Small, on a fresh socket: one sendmsg with the fds, no waiting.
          std::vector<int> fds;
          for (auto& fd : c->pass) fds.push_back(fd.get());
          int err = ipc::sendWithFds(c->socket.native_handle(), c->out, fds);
          if (err) logError(kLog, "answering an adopt request: {}", errnoText(err));
          c->pass.clear();
          c->deadline.cancel();
          boost::system::error_code ignored;
          c->socket.shutdown(asio::socket_base::shutdown_both, ignored);
          return;
        }
        send(c, std::move(c->out));
      });
}

void ControlServer::send(std::shared_ptr<Conn> c, std::string text) {
  c->out = std::move(text);
  asio::async_write(c->socket, asio::buffer(c->out), [c](boost::system::error_code, size_t) {
    c->deadline.cancel();
    boost::system::error_code ignored;
    c->socket.shutdown(asio::socket_base::shutdown_both, ignored);
  });
}

// The answer to one request line, as the text to send. Nothing a caller sends can
// make it throw: the line is parsed without exceptions, and strings that are not
// UTF-8 (an error naming a byte of a bad config file) are sent with U+FFFD.
std::string ControlServer::reply(std::string_view line, const std::shared_ptr<Conn>& conn) {
  json reply;
  try {
    reply = handle(line, conn);
  } catch (const std::exception& e) {
    // A defect of ours, not of the caller: say so, keep serving.
    logError(kLog, "control request failed: {}", e.what());
    reply = json{{"ok", false}, {"error", std::string("internal error: ") + e.what()}};
  }
  return reply.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
}

json ControlServer::handle(std::string_view line, const std::shared_ptr<Conn>& conn) {
  auto parsed = parseControlRequest(line);
  if (auto* why = std::get_if<std::string>(&parsed)) return json{{"ok", false}, {"error", *why}};
  const ControlRequest& req = std::get<ControlRequest>(parsed);
  using Cmd = ControlRequest::Cmd;
  switch (req.cmd) {
    case Cmd::Status: return json{{"ok", true}, {"status", commands_.status()}};
    case Cmd::Metrics: return json{{"ok", true}, {"text", commands_.metrics()}};
    case Cmd::Adopt: return commands_.adopt(req.adopt, conn->socket.native_handle(), conn->pass);
    case Cmd::Stop: {
      Duration drain = req.drain.value_or(config_.drain_timeout);
      logInfo(kLog, "stop requested over the control socket (drain {})", formatDuration(drain));
      asio::post(io_, [this, drain] { commands_.stop(drain); });
      return json{{"ok", true}};
    }
    case Cmd::Reload: {
      std::string error;
      auto generation = commands_.reload(error);
      if (!generation) {
        logError(kLog, "reload refused, the running configuration stays: {}", error);
        return json{{"ok", false}, {"error", error}, {"kind", "config"}};
      }
      return json{{"ok", true}, {"generation", *generation}};
    }
    case Cmd::Upgrade: {
      std::string error;
      auto pid = commands_.upgrade(error);
      if (!pid) return json{{"ok", false}, {"error", error}};
      return json{{"ok", true}, {"pid", *pid}};
    }
    case Cmd::Disconnect: {
      conn->deferred = true;
      // The answer holds the connection (it waits for the workers).
      commands_.disconnect(req, [this, c = conn](const json& answer) {
        send(c, answer.dump(-1, ' ', false, json::error_handler_t::replace) + "\n");
      });
      return json{};
    }
    case Cmd::DrainWorker: {
      std::string error;
      if (!commands_.drainWorker(req.worker, error)) return json{{"ok", false}, {"error", error}};
      return json{{"ok", true}};
    }
  }
  return json{{"ok", false}, {"error", "unhandled command"}};
}

}  // namespace dingo
