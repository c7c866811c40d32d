#pragma once
// TLS session ticket keys for every worker. A key is made at start and every
// [tls] ticket_rotation; the ring keeps the newest TicketKeyRing::kKeep, so a ticket
// sealed by any worker opens on any other, and one older than two rotations is refused.
// A worker gets the ring when it says hello (serialized()) and again after each
// rotation (`rotated`, which Supervisor wires to the workers). The key source is
// injectable for tests.
#include <functional>
#include <memory>
#include <string>

#include "core/Config.h"
#include "core/Tls.h"
#include "supervisor/TimeSource.h"

namespace dingo {

class TicketKeys {
 public:
  using Generate = std::function<TicketKey()>;

  // `tls` is the running configuration (a reload may change its rotation period).
  TicketKeys(TimeSource& time, const TlsConfig& tls, std::function<void()> rotated,
             Generate generate = generateTicketKey);

  // Makes the first key and starts rotating.
  void start();
  void stop();

  // The ring as the TicketKeys message carries it.
  std::string serialized() const { return ring_.serialize(); }
  size_t size() const { return ring_.size(); }

 private:
  void schedule();

  const TlsConfig& tls_;
  std::function<void()> rotated_;
  Generate generate_;
  TicketKeyRing ring_;
  std::unique_ptr<Timer> timer_;
};

}  // namespace dingo
