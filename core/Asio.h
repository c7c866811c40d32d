#pragma once
// The one way into Boost.Asio for the whole project.
// Boost 1.74's asio/awaitable.hpp uses std::exchange without including <utility>
// under g++ 12, so <utility> must come first. Include this header only from .cpp
// files: Asio is slow to compile and must stay out of widely included headers.
#include <utility>

#include <boost/asio.hpp>

namespace dingo {
namespace asio = boost::asio;
}
