#pragma once
// The Broker implementations a gateway can run with.
#include <functional>
#include <memory>
#include <string_view>

#include "core/Config.h"
#include "gateway/Broker.h"

namespace boost::asio {
class io_context;
}

namespace dingo {

// A hub in this process (standalone gateways, tests).
std::unique_ptr<Broker> makeLocalBroker(const HistoryConfig& history);

// The supervisor's hub, over the stream socket `fd` (the worker's fd 4). A request the
// hub has not answered within `timeout` fails as unavailable (checked by sweep(), so
// up to a second later); a late answer is then dropped, and a late subscribe undone.
// `on_nodes` gets the /v1/nodes document of every host when the hub sends one (the
// Redis engine's node registry; the local engine sends none).
using NodesFn = std::function<void(std::string_view document)>;
std::unique_ptr<Broker> makeHubClient(boost::asio::io_context& io, int fd, Duration timeout, NodesFn on_nodes = {});

}  // namespace dingo
