#pragma once
#include <string>

#include "core/Config.h"

namespace dingo {

struct SupervisorOptions {
  std::string config_path;  // absolute; handed to the workers
};

// Binds, spawns workers and serves until stopped by a signal or `dingoctl stop`.
// Returns the process exit code. Throws std::exception for start-up failures.
int runSupervisor(const Config& config, const SupervisorOptions& options);

}  // namespace dingo
