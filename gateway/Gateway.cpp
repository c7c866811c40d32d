// The worker process (dingo-gateway): builds its parts, wires them and runs the event loop.
//   onMessage      what the supervisor sends on the IPC socket: handed-off connections
//                  (adopt), the kernel dispatch mode's slot sockets (Listeners), ticket
//                  keys, disconnect requests, drain
//   Listeners      the sockets the worker accepts from itself (Listeners.h)
//   Reattacher     an orphan's way back to a new supervisor (Reattacher.h)
//   here as well   stats to the supervisor, the deadline sweep, drain and signals
// A connection's life is in HttpSession.h (startSession).
#include "gateway/Gateway.h"

#include <malloc.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "core/Asio.h"
#include "core/Ipc.h"
#include "core/Json.h"
#include "core/Log.h"
#include "core/Net.h"
#include "core/Process.h"
#include "core/Tls.h"
#include "gateway/Auth.h"
#include "gateway/Brokers.h"
#include "gateway/HttpSession.h"
#include "gateway/Listeners.h"
#include "gateway/PeerLimits.h"
#include "gateway/Polling.h"
#include "gateway/PubSub.h"
#include "gateway/Reattacher.h"
#include "gateway/UserRegistry.h"

namespace dingo {

namespace {

using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using asio::posix::stream_descriptor;
constexpr const char* kLog = "gateway";

class Gateway {
 public:
  Gateway(const Config& config, const GatewayOptions& options)
      : options_(options),
        config_(effectiveConfig(config, options)),
        ctx_{config_},
        signals_(io_),
        stats_timer_(io_),
        ticket_timer_(io_),
        drain_timer_(io_) {
    ctx_.worker_id = options.worker_id;
    ctx_.pid = ::getpid();
    ctx_.generation = options.generation;
    ctx_.on_idle_when_draining = [](void* self) { static_cast<Gateway*>(self)->finishDrain(); };
    ctx_.on_idle_arg = this;
  }

  ~Gateway() {
    ctx_.on_idle_when_draining = nullptr;
    // The broker goes first, while every session is still alive: its pending requests
    // are failed and resume their sessions; sessions destroyed with io_ later find no
    // broker to tell.
    ctx_.broker = nullptr;
    broker_.reset();
  }

  int run() {
    const Config& cfg = ctx_.config;
    bool want_tls = cfg.anyTls() || !options_.listen_tls.empty();
    if (want_tls || !cfg.tls.cert.empty()) {
      if (cfg.tls.cert.empty())
        throw std::runtime_error("TLS listeners need [tls] cert and key in the config");
      ssl_ctx_ = createServerContext(cfg.tls, &ticket_keys_);
      ctx_.tls = ssl_ctx_.get();
    }

    ctx_.schedule_flush = [this] { asio::post(io_, [this] { ctx_.runFlushes(); }); };
    if (options_.standalone) broker_ = makeLocalBroker(cfg.history);
    else if (options_.hub_fd >= 0)
      broker_ = makeHubClient(io_, options_.hub_fd, ctx_.config.gateway.hub_timeout, nodesFn());
    channels_ = std::make_unique<ChannelTable>(ctx_);
    ctx_.channels = channels_.get();
    polls_ = std::make_unique<PollCache>(ctx_);
    ctx_.polls = polls_.get();
    ctx_.cursors = &cursors_;
    ctx_.peers = &peers_;
    auth_ = std::make_unique<Authenticator>(cfg.auth, loadJwtKeys(cfg.auth));
    ctx_.auth = auth_.get();
    ctx_.users = &users_;
    if (auth_->enabled())
      logInfo(kLog, "auth: {} key(s), tokens {}", cfg.auth.jwt_public_keys.size() + !cfg.auth.jwt_hmac_secret_file.empty(),
              cfg.auth.required ? "required" : "optional");
    ctx_.broker = broker_.get();
    if (broker_) broker_->setSink(channels_.get());
    else logWarn(kLog, "no hub link from the supervisor: pub/sub is unavailable");

    setupSignals();
    if (options_.standalone) {
      listeners_.openStandalone(ctx_.config.listen);  // --listen/--listen-tls are in it
      ticket_keys_.rotate(generateTicketKey());
      scheduleTicketRotation();
    } else {
      ipc_ = std::make_unique<stream_descriptor>(io_, options_.ipc_fd);
      ipc_->non_blocking(true);
      if (int err = sayHello()) throw std::runtime_error("saying hello to the supervisor: " + errnoText(err));
      watchIpc();
    }
    last_tick_ = Clock::now();
    scheduleStats();
    scheduleSweep();
    logInfo(kLog, "worker {} serving (pid {}{})", options_.worker_id, ::getpid(),
            options_.standalone ? ", standalone" : "");
    io_.run();
    logInfo(kLog, "worker {} exiting: {} connections served", options_.worker_id,
            ctx_.counters.accepted);
    return 0;
  }

 private:
  // ---- sockets from the supervisor ----------------------------------------------------

  void watchIpc() {
    ipc_->async_wait(stream_descriptor::wait_read, [this](boost::system::error_code ec) {
      if (ec) return;
      for (int i = 0; i < 1024; ++i) {
        ipc::Message msg;
        int rc = ipc::receive(ipc_->native_handle(), msg);
        if (rc == EAGAIN) break;
        if (rc == EBADMSG) {
          logWarn(kLog, "malformed message from the supervisor; ignored");
          continue;
        }
        if (rc != 0) {
          onSupervisorGone();
          return;
        }
        onMessage(msg);
      }
      watchIpc();
    });
  }

  void onMessage(ipc::Message& msg) {
    switch (msg.type) {
      case ipc::MsgType::Handoff: {
        ipc::HandoffInfo info;
        if (!msg.fd || !ipc::fromBytes(msg.payload, info)) {
          logWarn(kLog, "hand-off without a socket or with a bad header; ignored");
          return;
        }
        adopt(std::move(msg.fd), info.peer.ss_family == AF_INET6, info.tls != 0,
              info.listener == ipc::kProbeListener);
        break;
      }
      case ipc::MsgType::Listen: {
        ipc::ListenInfo info;
        if (!msg.fd || !ipc::fromBytes(msg.payload, info)) {
          logWarn(kLog, "listening socket without a socket or with a bad header; ignored");
          return;
        }
        listeners_.adoptSlotSocket(std::move(msg.fd), info.tls != 0);
        break;
      }
      case ipc::MsgType::TicketKeys: {
        auto keys = TicketKeyRing::parse(msg.payload);
        if (!keys) {
          logWarn(kLog, "malformed ticket keys from the supervisor; ignored");
          return;
        }
        ticket_keys_.set(std::move(*keys));
        break;
      }
      case ipc::MsgType::Disconnect: {
        ParsedJson j = parseJson(msg.payload);
        auto id = field<uint64_t>(j.value, "id");
        auto user = field<std::string>(j.value, "user");
        if (!j.ok() || !id || !user) {
          logWarn(kLog, "malformed disconnect request from the supervisor; ignored");
          return;
        }
        size_t closed = users_.disconnect(*user, field<std::string>(j.value, "reason").value_or(""));
        if (closed) logInfo(kLog, "disconnected user {}: {} connections", *user, closed);
        nlohmann::json reply = {{"id", *id}, {"closed", closed}};
        if (ipc_) ipc::send(ipc_->native_handle(), ipc::MsgType::Disconnected, reply.dump());
        break;
      }
      case ipc::MsgType::Drain: {
        ipc::DrainInfo info;
        Duration deadline = ctx_.config.supervisor.drain_timeout;
        if (ipc::fromBytes(msg.payload, info) && info.deadline_ms > 0) deadline = Duration(info.deadline_ms);
        beginDrain(deadline, "the supervisor asked");
        break;
      }
      default:
        logWarn(kLog, "unexpected message type {} from the supervisor", static_cast<int>(msg.type));
    }
  }

  // A probe (the supervisor's watchdog, over a socketpair) is served like a client but
  // not counted as one, and is served even at max_connections.
  void adopt(UniqueFd fd, bool ipv6, bool tls, bool probe = false) {
    if (probe) ++ctx_.counters.probes;
    else ++ctx_.counters.accepted;
    // A socket handed just before or after a drain began is still served (one request,
    // answered with Connection: close): closing it would fail a request that the
    // client has already sent. The drain deadline bounds it like any other.
    if ((!probe && ctx_.counters.connections >= ctx_.config.gateway.max_connections) || (tls && !ctx_.tls)) {
      ++ctx_.counters.rejected;
      return;  // fd closes here
    }
    tcp::socket socket(io_);
    boost::system::error_code ec;
    socket.assign(ipv6 ? tcp::v6() : tcp::v4(), fd.get(), ec);
    if (ec) {
      logWarn(kLog, "adopting a socket: {}", ec.message());
      return;
    }
    fd.release();
    startSession(ctx_, std::move(socket), tls);
  }

  // Unlike a drain, established connections, idle keep-alives included, go on being
  // served: a supervisor's death must not drop them. Meanwhile the worker knocks on the
  // control socket until a new supervisor adopts it (Reattacher.h); if none does, it
  // leaves when the last connection closes, or at the drain deadline.
  void onSupervisorGone() {
    ipc_.reset();
    listeners_.releaseSlotSockets();
    if (ctx_.draining) return;
    ctx_.orphaned = true;
    Duration deadline = ctx_.config.supervisor.drain_timeout;
    logWarn(kLog,
            "the supervisor is gone: serving {} open connections for up to {}, and asking {} "
            "for a new supervisor to adopt this worker",
            ctx_.counters.connections, formatDuration(deadline), ctx_.config.supervisor.control_socket);
    leaveBy(deadline);
    reattacher_.start();
  }

  // A new supervisor took this worker (Reattacher.h): its IPC socket and hub link.
  void reattached(UniqueFd ipc_fd, UniqueFd hub_fd) {
    ctx_.orphaned = false;
    drain_timer_.cancel();
    ipc_ = std::make_unique<stream_descriptor>(io_, ipc_fd.release());
    ipc_->non_blocking(true);
    // The old hub link is gone (its subscribers were told to reconnect): a new one. The
    // node list is the new hub's (none from a local engine's).
    ctx_.nodes_document.clear();
    broker_ = makeHubClient(io_, hub_fd.release(), ctx_.config.gateway.hub_timeout, nodesFn());
    broker_->setSink(channels_.get());
    ctx_.broker = broker_.get();
    if (int err = sayHello()) logError(kLog, "saying hello to the new supervisor: {}", errnoText(err));
    watchIpc();
    logInfo(kLog, "adopted by the new supervisor: serving again with {} open connections",
            ctx_.counters.connections);
  }

  // The hub's node list (the Redis engine's registry: every host) answers /v1/nodes. It
  // is kept when the hub goes away: the other hosts are still there.
  NodesFn nodesFn() {
    return [this](std::string_view document) { ctx_.nodes_document.assign(document); };
  }

  int sayHello() {
    nlohmann::json hello = {{"pid", ::getpid()}, {"worker", options_.worker_id},
                            {"generation", options_.generation}, {"version", DINGO_VERSION}};
    return ipc::send(ipc_->native_handle(), ipc::MsgType::Hello, hello.dump());
  }

  static constexpr size_t kTrimAfterSweeping = 1000;

  void scheduleTicketRotation() {
    ticket_timer_.expires_after(ctx_.config.tls.ticket_rotation);
    ticket_timer_.async_wait([this](boost::system::error_code ec) {
      if (ec) return;
      ticket_keys_.rotate(generateTicketKey());
      scheduleTicketRotation();
    });
  }

  // ---- deadlines ----------------------------------------------------------------------

  static constexpr std::chrono::milliseconds kSweepInterval{250};

  void scheduleSweep() {
    sweep_timer_.expires_after(kSweepInterval);
    sweep_timer_.async_wait([this](boost::system::error_code ec) {
      if (ec) return;
      sweepDeadlines(ctx_);
      scheduleSweep();
    });
  }

  // ---- stats ------------------------------------------------------------------------

  void scheduleStats() {
    stats_timer_.expires_after(std::chrono::seconds(1));
    stats_timer_.async_wait([this](boost::system::error_code ec) {
      if (ec) return;
      auto now = Clock::now();
      // How late this 1 s timer fired: the event loop's lag.
      double lag_ms = std::max(0.0, std::chrono::duration<double, std::milli>(now - last_tick_).count() - 1000.0);
      last_tick_ = now;
      if (broker_) broker_->sweep();
      // Many sessions gone at once (a burst of clients that never came back): give the
      // memory back instead of keeping the peak for ever.
      if (polls_ && polls_->sweep() >= kTrimAfterSweeping) ::malloc_trim(0);
      peers_.sweep(steadyNowMs());
      sendStats(lag_ms);
      scheduleStats();
    });
  }

  void sendStats(double lag_ms) {
    if (!ipc_) return;
    const auto& c = ctx_.counters;
    nlohmann::json j = {{"connections", c.connections}, {"accepted", c.accepted},
                        {"rejected", c.rejected},       {"requests", c.requests},
                        {"bytes_in", c.bytes_in},       {"bytes_out", c.bytes_out},
                        {"tls_handshakes", c.tls_handshakes}, {"tls_resumed", c.tls_resumed},
                        {"tls_failures", c.tls_failures},     {"timeouts", c.timeouts},
                        {"bad_requests", c.bad_requests},     {"loop_lag_ms", lag_ms},
                        {"draining", ctx_.draining},          {"probes", c.probes},
                        {"reattached", reattacher_.reattachments()},
                        {"ws_connections", c.ws_connections}, {"ws_upgrades", c.ws_upgrades},
                        {"ws_commands", c.ws_commands},       {"ws_protocol_errors", c.ws_protocol_errors},
                        {"published", c.published},           {"delivered", c.delivered}, {"gaps", c.gaps},
                        {"recovered", c.recovered},           {"not_recovered", c.not_recovered},
                        {"slow_consumers", c.slow_consumers}, {"rate_limited", c.rate_limited},
                        {"resets", c.resets},                 {"peer_limited", c.peer_limited},
                        {"stream_limited", c.stream_limited}, {"peers_tracked", peers_.tracked()},
                        {"polls", c.polls},                   {"held_polls", c.held_polls},
                        {"poll_cache_hits", c.poll_cache_hits}, {"poll_cache_misses", c.poll_cache_misses},
                        {"poll_sessions", polls_ ? polls_->entries() : 0},
                        {"poll_session_bytes", polls_ ? polls_->bytes() : 0},
                        {"poll_evictions", polls_ ? polls_->evictions : 0},
                        {"sse_streams", c.sse_streams},       {"sse_total", c.sse_total},
                        {"channels", channels_ ? channels_->channels() : 0},
                        {"authenticated", c.authenticated}};
    if (auth_ && auth_->enabled()) {
      auto a = auth_->counters();
      j["auth_cache_hits"] = a.cache_hits;
      j["auth_cache_misses"] = a.cache_misses;
      j["auth_cached"] = a.cached;
      for (const auto& [key, n] : a.refusals) j["auth_refused_" + key] = n;
    }
    ipc::send(ipc_->native_handle(), ipc::MsgType::Stats, j.dump());
  }

  // ---- drain and signals ------------------------------------------------------------

  void setupSignals() {
    for (int sig : {SIGTERM, SIGINT, SIGQUIT, SIGHUP}) signals_.add(sig);
    waitSignal();
  }

  void waitSignal() {
    signals_.async_wait([this](boost::system::error_code ec, int sig) {
      if (ec) return;
      if (sig == SIGQUIT) {
        logInfo(kLog, "SIGQUIT: stopping now");
        io_.stop();
        return;
      }
      if (sig == SIGHUP) logInfo(kLog, "SIGHUP ignored: the supervisor reloads workers");
      else beginDrain(ctx_.config.supervisor.drain_timeout, sig == SIGTERM ? "SIGTERM" : "SIGINT");
      waitSignal();
    });
  }

  void beginDrain(Duration deadline, const char* why) {
    if (ctx_.draining) return;
    ctx_.draining = true;
    logInfo(kLog, "draining ({}): {} connections, deadline {}", why, ctx_.counters.connections,
            formatDuration(deadline));
    sendStats(0);
    listeners_.closeAll();
    // Idle keep-alive connections close now; busy ones after their response.
    for (SessionEntry* e = ctx_.sessions; e;) {
      SessionEntry* next = e->next;
      e->onDrain();
      e = next;
    }
    leaveBy(deadline);
  }

  // Exits when the last connection closes (GatewayContext::unlink calls finishDrain) or
  // at `deadline`, closing whatever is still open.
  void leaveBy(Duration deadline) {
    drain_timer_.expires_after(deadline);
    drain_timer_.async_wait([this](boost::system::error_code ec) {
      if (ec) return;
      logWarn(kLog, "deadline reached with {} connections open; closing them",
              ctx_.counters.connections);
      io_.stop();
    });
    if (ctx_.counters.connections == 0) finishDrain();
  }

  void finishDrain() {
    // Deferred: we may be inside a session's destructor, or between the HTTP and the
    // WebSocket halves of an upgraded connection.
    asio::post(io_, [this] {
      if (ctx_.counters.connections == 0) io_.stop();
    });
  }

  // Declaration order matters: sessions still open when io_ is destroyed unlink
  // themselves from ctx_ and hold SSL objects of ssl_ctx_, so both outlive io_.
  // A standalone gateway's --listen/--listen-tls replace [[listen]] (GET /v1/nodes
  // reports them).
  static Config effectiveConfig(const Config& config, const GatewayOptions& o) {
    Config c = config;
    if (o.standalone && (!o.listen.empty() || !o.listen_tls.empty())) {
      c.listen.clear();
      for (const auto& a : o.listen) c.listen.push_back(ListenConfig{a, false});
      for (const auto& a : o.listen_tls) c.listen.push_back(ListenConfig{a, true});
    }
    return c;
  }

  GatewayOptions options_;
  Config config_;
  TicketKeyRing ticket_keys_;
  SslCtxPtr ssl_ctx_;
  GatewayContext ctx_;
  // Both outlive io_: sessions destroyed with it leave their channels (see ~Gateway).
  std::unique_ptr<ChannelTable> channels_;
  CursorCodec cursors_{ctx_.config.gateway.cursor_secret};
  PeerLimits peers_{ctx_.config.gateway.max_connections_per_ip, ctx_.config.gateway.new_connections_per_ip};
  std::unique_ptr<Authenticator> auth_;  // outlives io_ like channels_: sessions leave users_ as they go
  UserRegistry users_;
  std::unique_ptr<PollCache> polls_;  // after channels_: its entries leave their channels
  std::unique_ptr<Broker> broker_;
  asio::io_context io_{1};
  asio::signal_set signals_;
  asio::steady_timer stats_timer_;
  asio::steady_timer ticket_timer_;
  asio::steady_timer drain_timer_;
  asio::steady_timer sweep_timer_{io_};
  std::unique_ptr<stream_descriptor> ipc_;
  Reattacher reattacher_{io_, ctx_, [this](UniqueFd ipc, UniqueFd hub) { reattached(std::move(ipc), std::move(hub)); }};
  Listeners listeners_{io_, ctx_};
  Clock::time_point last_tick_;
};

}  // namespace

int runGateway(const Config& config, const GatewayOptions& options) {
  ::signal(SIGPIPE, SIG_IGN);
  Gateway g(config, options);
  return g.run();
}

}  // namespace dingo
