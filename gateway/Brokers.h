#pragma once
// The Broker implementations a gateway can run with.
#include <memory>

#include "core/Config.h"
#include "gateway/Broker.h"

namespace boost::asio {
class io_context;
}

namespace dingo {

// A hub in this process (standalone gateways, tests).
std::unique_ptr<Broker> makeLocalBroker(const HistoryConfig& history);

// The supervisor's hub, over the stream socket `fd` (the worker's fd 4).
std::unique_ptr<Broker> makeHubClient(boost::asio::io_context& io, int fd);

}  // namespace dingo
