#pragma once
// `dingoctl disconnect --user SUB`: every live worker is asked to close that user's
// connections (`ask`, wired to the pool, returns the pids asked); the request is answered
// when each has said how many it closed (answer()), or after kWait with what came (a
// worker that died meanwhile closed its connections anyway).
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "supervisor/TimeSource.h"

namespace dingo {

class Disconnects {
 public:
  static constexpr auto kWait = std::chrono::seconds(2);
  // Sends the Disconnect payload to every live worker; returns the pids that got it.
  using Ask = std::function<std::vector<pid_t>(const std::string& payload)>;
  using Reply = std::function<void(const nlohmann::json&)>;

  Disconnects(TimeSource& time, Ask ask) : time_(time), ask_(std::move(ask)) {}

  void start(const std::string& user, const std::string& reason, Reply reply);
  // A worker's answer (its Disconnected message).
  void answer(uint64_t id, pid_t pid, uint64_t closed);

 private:
  struct Pending {
    Reply reply;
    std::vector<pid_t> waiting;  // workers asked that have not answered
    int asked = 0;
    uint64_t closed = 0;
    std::unique_ptr<Timer> timer;
  };
  void finish(uint64_t id);

  TimeSource& time_;
  Ask ask_;
  std::map<uint64_t, Pending> pending_;
  uint64_t next_id_ = 1;
};

}  // namespace dingo
