#include "supervisor/HubServer.h"

#include <malloc.h>

#include <nlohmann/json.hpp>
#include <unordered_map>

#include "core/Asio.h"
#include "core/Hub.h"
#include "core/HubLink.h"
#include "core/HubWire.h"
#include "core/Log.h"

namespace dingo {

namespace {
constexpr const char* kLog = "hub";
// A worker that stops reading its hub link for this much is broken: the link closes,
// the worker loses pub/sub and tells its clients to reconnect (elsewhere).
constexpr size_t kMaxLinkQueue = 256u << 20;
constexpr std::string_view kHubFull = "the hub holds [history] max_channels channels already";
// Channels forgotten in one sweep past which the freed memory is returned (malloc_trim).
constexpr size_t kTrimAfterForgetting = 1000;
}  // namespace

struct HubServer::Impl {
  Impl(asio::io_context& io_, const HistoryConfig& history)
      : io(io_),
        hub(history, [this](const std::vector<Hub::LinkId>& links, std::string_view channel, const Position& pos,
                            const std::shared_ptr<const std::string>& data) { deliver(links, channel, pos, *data); }),
        sweep_timer(io_) {}

  struct Link {
    std::shared_ptr<HubLink> link;
    int slot = -1;
  };

  asio::io_context& io;
  Hub hub;
  asio::steady_timer sweep_timer;
  std::unordered_map<uint32_t, Link> links;
  uint32_t next_id = 1;
  uint64_t overflows = 0;
  uint64_t refused = 0;  // subscribes and publishes refused at max_channels
  hubwire::Frame frame;  // reused
  std::string reply;     // reused

  // One encoding of the message, shared by every worker link that has subscribers.
  void deliver(const std::vector<Hub::LinkId>& ids, std::string_view channel, const Position& pos,
               std::string_view data) {
    auto bytes = std::make_shared<std::string>();
    hubwire::encodeMessage(*bytes, channel, pos, data);
    std::shared_ptr<const std::string> shared = std::move(bytes);
    for (Hub::LinkId id : ids) {
      auto it = links.find(id);
      if (it != links.end()) it->second.link->send(shared);
    }
  }

  void onFrame(uint32_t id, std::string_view bytes) {
    auto it = links.find(id);
    if (it == links.end()) return;
    HubLink& link = *it->second.link;
    if (!hubwire::decode(bytes, frame)) {
      logWarn(kLog, "worker {} sent a malformed hub frame; closing its link", it->second.slot);
      link.close("malformed frame");
      return;
    }
    const hubwire::Frame& f = frame;
    reply.clear();
    if (f.type != hubwire::Type::Unsubscribe && !validChannel(f.channel)) {
      hubwire::encodeError(reply, f.id, "invalid channel name");
      link.send(reply);
      return;
    }
    if ((f.type == hubwire::Type::Subscribe || f.type == hubwire::Type::Publish) && !hub.admits(f.channel)) {
      ++refused;
      hubwire::encodeError(reply, f.id, kHubFull);
      link.send(reply);
      return;
    }
    switch (f.type) {
      case hubwire::Type::Subscribe:
        hubwire::encodeCatchup(reply, f.id, hub.subscribe(id, f.channel, f.since));
        break;
      case hubwire::Type::Unsubscribe:
        hub.unsubscribe(id, f.channel);
        return;
      case hubwire::Type::Publish: {
        // Deliveries go out (to this worker too) before the reply.
        Position p = hub.publish(f.channel, std::string(f.data));
        hubwire::encodePublishReply(reply, f.id, p);
        break;
      }
      case hubwire::Type::History:
        hubwire::encodeCatchup(reply, f.id, hub.history(f.channel, f.since, f.limit));
        break;
      case hubwire::Type::Info:
        hubwire::encodeInfoReply(reply, f.id, hub.info(f.channel));
        break;
      default:
        logWarn(kLog, "worker {} sent hub frame type {}; closing its link", it->second.slot,
                static_cast<int>(f.type));
        link.close("unexpected frame");
        return;
    }
    link.send(reply);
  }

  void onClose(uint32_t id, const std::string& why) {
    auto it = links.find(id);
    if (it == links.end()) return;
    if (why.find("over its limit") != std::string::npos) {
      ++overflows;
      logError(kLog, "worker {}: {}", it->second.slot, why);
    }
    hub.dropLink(id);
    // Erased later: we may be inside this link's own callback.
    asio::post(io, [this, id] { links.erase(id); });
  }

  void scheduleSweep() {
    sweep_timer.expires_after(std::chrono::seconds(1));
    sweep_timer.async_wait([this](boost::system::error_code ec) {
      if (ec) return;
      // Many channels gone at once (an attack's, or a burst of expired history): give
      // the memory back to the system instead of keeping the peak for ever.
      if (hub.sweep() >= kTrimAfterForgetting) ::malloc_trim(0);
      scheduleSweep();
    });
  }
};

HubServer::HubServer(asio::io_context& io, const HistoryConfig& history)
    : impl_(std::make_unique<Impl>(io, history)) {
  impl_->scheduleSweep();
}

HubServer::~HubServer() {
  for (auto& [id, l] : impl_->links) l.link->close("supervisor exiting");
}

uint32_t HubServer::attach(int fd, int worker_slot) {
  uint32_t id = impl_->next_id++;
  auto link = HubLink::create(impl_->io, fd, kMaxLinkQueue);
  impl_->links[id] = {link, worker_slot};
  Impl* impl = impl_.get();
  link->start([impl, id](std::string_view frame) { impl->onFrame(id, frame); },
              [impl, id](const std::string& why) { impl->onClose(id, why); });
  return id;
}

void HubServer::detach(uint32_t id) {
  auto it = impl_->links.find(id);
  if (it == impl_->links.end()) return;
  it->second.link->close("worker exited");
}

nlohmann::json HubServer::stats(size_t top_channels) const {
  const Hub& h = impl_->hub;
  nlohmann::json j = {{"channels", h.channels()},
                      {"published", h.published()},
                      {"history_messages", h.historyMessages()},
                      {"history_bytes", h.historyBytes()},
                      {"links", impl_->links.size()},
                      {"link_overflows", impl_->overflows},
                      {"refused_full", impl_->refused}};
  if (top_channels > 0) {
    auto& top = j["top_channels"] = nlohmann::json::array();
    for (const auto& c : h.topChannels(top_channels))
      top.push_back({{"channel", c.channel}, {"subscribers", c.subscribers}});
  }
  return j;
}

}  // namespace dingo
