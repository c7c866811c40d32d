#include "gateway/Brokers.h"

#include <map>
#include <variant>

#include "core/Asio.h"
#include "core/HubLink.h"
#include "core/HubWire.h"
#include "core/Log.h"
#include "gateway/Context.h"

namespace dingo {

namespace {

constexpr const char* kLog = "gateway";

class LocalBroker final : public Broker {
 public:
  explicit LocalBroker(const HistoryConfig& history)
      : hub_(history, [this](const std::vector<Hub::LinkId>&, std::string_view channel, const Position& pos,
                             const std::shared_ptr<const std::string>& data) {
          if (sink_) sink_->onMessage(channel, pos, *data);
        }) {}

  void setSink(BrokerSink* sink) override { sink_ = sink; }
  void subscribe(std::string_view channel, const std::optional<Position>& since, CatchupFn done) override {
    if (!hub_.admits(channel)) return done(nullptr, kHubFull);
    Catchup c = hub_.subscribe(0, channel, since);
    done(&c, {});
  }
  void unsubscribe(std::string_view channel) override { hub_.unsubscribe(0, channel); }
  void publish(std::string_view channel, std::string data, PublishFn done) override {
    if (!hub_.admits(channel)) return done(nullptr, kHubFull);
    Position p = hub_.publish(channel, std::move(data));
    done(&p, {});
  }
  void history(std::string_view channel, const std::optional<Position>& since, uint32_t limit,
               CatchupFn done) override {
    Catchup c = hub_.history(channel, since, limit);
    done(&c, {});
  }
  void info(std::string_view channel, InfoFn done) override {
    Hub::Info i = hub_.info(channel);
    done(&i, {});
  }
  bool available() const override { return true; }
  void sweep() override { hub_.sweep(); }

 private:
  static constexpr std::string_view kHubFull = "the hub holds [history] max_channels channels already";
  BrokerSink* sink_ = nullptr;
  Hub hub_;
};

// The supervisor's hub over a socket. Requests carry an id; the hub answers in order.
class HubClient final : public Broker {
 public:
  HubClient(asio::io_context& io, int fd, Duration timeout, NodesFn on_nodes)
      : link_(HubLink::create(io, fd, kMaxQueue)), timeout_ms_(timeout.count()), on_nodes_(std::move(on_nodes)) {
    link_->start([this](std::string_view frame) { onFrame(frame); },
                 [this](const std::string& why) { onClose(why); });
  }
  ~HubClient() override {
    sink_ = nullptr;
    shutting_down_ = true;
    link_->close("shutting down");
  }

  void setSink(BrokerSink* sink) override { sink_ = sink; }

  void subscribe(std::string_view channel, const std::optional<Position>& since, CatchupFn done) override {
    if (!ready(done)) return;
    uint64_t id = track(std::move(done), channel);
    std::string f;
    hubwire::encodeSubscribe(f, id, channel, since);
    link_->send(std::move(f));
  }
  void unsubscribe(std::string_view channel) override {
    if (!link_->isOpen()) return;
    std::string f;
    hubwire::encodeUnsubscribe(f, channel);
    link_->send(std::move(f));
  }
  void publish(std::string_view channel, std::string data, PublishFn done) override {
    if (!ready(done)) return;
    uint64_t id = track(std::move(done));
    std::string f;
    hubwire::encodePublish(f, id, channel, data);
    link_->send(std::move(f));
  }
  void history(std::string_view channel, const std::optional<Position>& since, uint32_t limit,
               CatchupFn done) override {
    if (!ready(done)) return;
    uint64_t id = track(std::move(done));
    std::string f;
    hubwire::encodeHistory(f, id, channel, since, limit);
    link_->send(std::move(f));
  }
  void info(std::string_view channel, InfoFn done) override {
    if (!ready(done)) return;
    uint64_t id = track(std::move(done));
    std::string f;
    hubwire::encodeInfo(f, id, channel);
    link_->send(std::move(f));
  }
  bool available() const override { return link_->isOpen(); }

  // Fails every request older than the timeout. The hub answers in order, so the
  // oldest are at the front of the id order; a map walk is fine at one call a second.
  void sweep() override {
    int64_t now = steadyNowMs();
    std::vector<Pending> expired;
    for (auto it = pending_.begin(); it != pending_.end();) {
      if (now - it->second.sent_ms < timeout_ms_) break;  // ids grow with time
      if (std::holds_alternative<CatchupFn>(it->second.done) && !it->second.channel.empty())
        abandoned_.emplace(it->first, std::move(it->second.channel));
      expired.push_back(std::move(it->second.done));
      it = pending_.erase(it);
    }
    if (expired.empty()) return;
    if (!stall_logged_) logWarn(kLog, "the hub has not answered for {}ms; failing {} request(s)", timeout_ms_, expired.size());
    stall_logged_ = true;
    timed_out_ += expired.size();
    for (auto& p : expired) fail(p, kTimedOut);
    if (abandoned_.size() > kMaxAbandoned) link_->close("the hub stopped answering");
  }

 private:
  static constexpr size_t kMaxQueue = 64u << 20;
  static constexpr std::string_view kUnavailable = "the hub is unavailable";
  static constexpr std::string_view kTimedOut = "the hub did not answer in time";
  // Timed-out subscribes remembered until the hub answers them; a hub this far behind is
  // given up on.
  static constexpr size_t kMaxAbandoned = 100000;
  using Pending = std::variant<CatchupFn, PublishFn, InfoFn>;
  struct Request {
    Pending done;
    int64_t sent_ms = 0;
    std::string channel;  // subscribes: undone if the answer comes after the timeout
  };

  template <typename Fn>
  uint64_t track(Fn done, std::string_view channel = {}) {
    uint64_t id = next_id_++;
    pending_.emplace(id, Request{Pending(std::move(done)), steadyNowMs(), std::string(channel)});
    return id;
  }

  template <typename Fn>
  bool ready(Fn& done) {
    if (link_->isOpen()) return true;
    done(nullptr, kUnavailable);
    return false;
  }

  static void fail(Pending& p, std::string_view why) {
    std::visit([&](auto& fn) { fn(nullptr, why); }, p);
  }

  void onFrame(std::string_view bytes) {
    if (!hubwire::decode(bytes, frame_)) {
      link_->close("malformed frame from the hub");
      return;
    }
    const hubwire::Frame& f = frame_;
    if (f.type == hubwire::Type::Message) {
      if (sink_) sink_->onMessage(f.channel, f.position, f.data);
      return;
    }
    if (f.type == hubwire::Type::Nodes) {
      if (on_nodes_) on_nodes_(f.data);
      return;
    }
    stall_logged_ = false;
    auto it = pending_.find(f.id);
    if (it == pending_.end()) {
      lateAnswer(f);
      return;
    }
    Pending p = std::move(it->second.done);
    pending_.erase(it);
    switch (f.type) {
      case hubwire::Type::CatchupReply: {
        Catchup c;
        c.position = f.position;
        c.recovered = f.recovered;
        c.messages.reserve(f.messages.size());
        for (const auto& [seq, data] : f.messages)
          c.messages.push_back({seq, std::make_shared<const std::string>(data), 0});
        if (auto* fn = std::get_if<CatchupFn>(&p)) (*fn)(&c, {});
        else fail(p, "mismatched reply from the hub");
        break;
      }
      case hubwire::Type::PublishReply:
        if (auto* fn = std::get_if<PublishFn>(&p)) (*fn)(&f.position, {});
        else fail(p, "mismatched reply from the hub");
        break;
      case hubwire::Type::InfoReply: {
        Hub::Info i{f.position, f.subscribers};
        if (auto* fn = std::get_if<InfoFn>(&p)) (*fn)(&i, {});
        else fail(p, "mismatched reply from the hub");
        break;
      }
      case hubwire::Type::ErrorReply: fail(p, f.error); break;
      default: fail(p, "unexpected frame from the hub");
    }
  }

  // An answer to a request that timed out. Answers come in order, so every abandoned
  // request before this one was answered (and is forgotten) too.
  void lateAnswer(const hubwire::Frame& f) {
    auto it = abandoned_.find(f.id);
    if (it != abandoned_.end() && f.type == hubwire::Type::CatchupReply) {
      // The hub counted this subscriber; nobody holds it any more.
      std::string f2;
      hubwire::encodeUnsubscribe(f2, it->second);
      link_->send(std::move(f2));
    } else if (it == abandoned_.end() && f.id >= next_id_) {
      logWarn(kLog, "hub answered request {}, which was never sent; ignored", f.id);
    }
    abandoned_.erase(abandoned_.begin(), abandoned_.upper_bound(f.id));
  }

  void onClose(const std::string& why) {
    if (!shutting_down_) logError(kLog, "lost the hub: {}", why);
    auto pending = std::move(pending_);
    pending_.clear();
    for (auto& [id, p] : pending) fail(p.done, kUnavailable);
    abandoned_.clear();
    if (sink_) sink_->onBrokerLost(why);
  }

  std::shared_ptr<HubLink> link_;
  BrokerSink* sink_ = nullptr;
  uint64_t next_id_ = 1;
  int64_t timeout_ms_;
  std::map<uint64_t, Request> pending_;       // by id: oldest first
  std::map<uint64_t, std::string> abandoned_;  // timed-out subscribes: id -> channel
  uint64_t timed_out_ = 0;
  bool stall_logged_ = false;
  bool shutting_down_ = false;
  hubwire::Frame frame_;  // reused: its vector keeps its capacity
  NodesFn on_nodes_;
};

}  // namespace

std::unique_ptr<Broker> makeLocalBroker(const HistoryConfig& history) {
  return std::make_unique<LocalBroker>(history);
}

std::unique_ptr<Broker> makeHubClient(asio::io_context& io, int fd, Duration timeout, NodesFn on_nodes) {
  return std::make_unique<HubClient>(io, fd, timeout, std::move(on_nodes));
}

}  // namespace dingo
