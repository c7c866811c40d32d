#include "gateway/Brokers.h"

#include <unordered_map>
#include <variant>

#include "core/Asio.h"
#include "core/HubLink.h"
#include "core/HubWire.h"
#include "core/Log.h"

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
    Catchup c = hub_.subscribe(0, channel, since);
    done(&c, {});
  }
  void unsubscribe(std::string_view channel) override { hub_.unsubscribe(0, channel); }
  void publish(std::string_view channel, std::string data, PublishFn done) override {
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
  BrokerSink* sink_ = nullptr;
  Hub hub_;
};

// The supervisor's hub over a socket. Requests carry an id; the hub answers in order.
class HubClient final : public Broker {
 public:
  HubClient(asio::io_context& io, int fd) : link_(HubLink::create(io, fd, kMaxQueue)) {
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
    uint64_t id = next_id_++;
    pending_.emplace(id, std::move(done));
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
    uint64_t id = next_id_++;
    pending_.emplace(id, std::move(done));
    std::string f;
    hubwire::encodePublish(f, id, channel, data);
    link_->send(std::move(f));
  }
  void history(std::string_view channel, const std::optional<Position>& since, uint32_t limit,
               CatchupFn done) override {
    if (!ready(done)) return;
    uint64_t id = next_id_++;
    pending_.emplace(id, std::move(done));
    std::string f;
    hubwire::encodeHistory(f, id, channel, since, limit);
    link_->send(std::move(f));
  }
  void info(std::string_view channel, InfoFn done) override {
    if (!ready(done)) return;
    uint64_t id = next_id_++;
    pending_.emplace(id, std::move(done));
    std::string f;
    hubwire::encodeInfo(f, id, channel);
    link_->send(std::move(f));
  }
  bool available() const override { return link_->isOpen(); }

 private:
  static constexpr size_t kMaxQueue = 64u << 20;
  static constexpr std::string_view kUnavailable = "the hub is unavailable";
  using Pending = std::variant<CatchupFn, PublishFn, InfoFn>;

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
    auto it = pending_.find(f.id);
    if (it == pending_.end()) {
      logWarn(kLog, "hub answered request {}, which is not pending; ignored", f.id);
      return;
    }
    Pending p = std::move(it->second);
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

  void onClose(const std::string& why) {
    if (!shutting_down_) logError(kLog, "lost the hub: {}", why);
    auto pending = std::move(pending_);
    pending_.clear();
    for (auto& [id, p] : pending) fail(p, kUnavailable);
    if (sink_) sink_->onBrokerLost(why);
  }

  std::shared_ptr<HubLink> link_;
  BrokerSink* sink_ = nullptr;
  uint64_t next_id_ = 1;
  std::unordered_map<uint64_t, Pending> pending_;
  bool shutting_down_ = false;
  hubwire::Frame frame_;  // reused: its vector keeps its capacity
};

}  // namespace

std::unique_ptr<Broker> makeLocalBroker(const HistoryConfig& history) {
  return std::make_unique<LocalBroker>(history);
}

std::unique_ptr<Broker> makeHubClient(asio::io_context& io, int fd) { return std::make_unique<HubClient>(io, fd); }

}  // namespace dingo
