#pragma once
// Internal to libdingo-nsclient: the race of connection attempts and the socket helpers
// it shares with the resolver. Not installed.
#include <sys/socket.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "dingo/nsclient/Resolver.h"

namespace dingo::ns {

using Clock = std::chrono::steady_clock;

double msSince(Clock::time_point t);
// The next error on OpenSSL's queue, as text (and the queue cleared).
std::string sslError();
// A numeric endpoint as a socket address; false when the host is not an IP.
bool makeSockaddr(const Endpoint& ep, sockaddr_storage& ss, socklen_t& len);

// Races `candidates` (RFC 8305: the next attempt `stagger` after the previous one, or at
// once when it fails) with `request`, until one answers `expect_status`. `ctx` may be
// null when no candidate uses TLS. Every attempt's outcome goes to `log`, in order.
std::unique_ptr<Connection> runRace(SSL_CTX* ctx, const std::string& server_name, const std::string& request,
                                    int expect_status, std::chrono::milliseconds stagger,
                                    std::chrono::milliseconds attempt_timeout,
                                    const std::vector<Candidate>& candidates, std::vector<Attempt>& log);

}  // namespace dingo::ns
