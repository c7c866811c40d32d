#pragma once
// The parts of systemd's interfaces the supervisor speaks, without libsystemd:
// sd_notify (READY, WATCHDOG, STOPPING, STATUS) and socket activation (LISTEN_FDS).
#include <optional>
#include <string_view>
#include <vector>

#include "core/Duration.h"
#include "core/UniqueFd.h"

namespace dingo::systemd {

// Sends one notification ("READY=1", "STATUS=...") to $NOTIFY_SOCKET. False when there
// is none (not started by systemd) or the send failed.
bool notify(std::string_view state);

// How often to send WATCHDOG=1: half of $WATCHDOG_USEC, when it is meant for this
// process ($WATCHDOG_PID unset or ours). nullopt when the service has no watchdog.
std::optional<Duration> watchdogInterval();

// Takes the sockets systemd passed ($LISTEN_FDS from fd 3, when $LISTEN_PID is this
// process), marks them close-on-exec, and unsets the variables so that children do not
// see them. Empty when there are none.
std::vector<UniqueFd> takeListenFds();

// The other side, in a child between fork and exec: puts `fds` on fd 3, 4, ... (through
// copies above 100, so that no dup2 overwrites a source) and sets LISTEN_FDS and
// LISTEN_PID for the program about to be executed.
void passListenFds(const std::vector<int>& fds);

}  // namespace dingo::systemd
