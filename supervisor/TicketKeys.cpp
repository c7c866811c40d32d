#include "supervisor/TicketKeys.h"

#include "core/Log.h"

namespace dingo {

namespace {
constexpr const char* kLog = "supervisor";
}

TicketKeys::TicketKeys(TimeSource& time, const TlsConfig& tls, std::function<void()> rotated, Generate generate)
    : tls_(tls), rotated_(std::move(rotated)), generate_(std::move(generate)), timer_(time.makeTimer()) {}

void TicketKeys::start() {
  ring_.rotate(generate_());
  schedule();
}

void TicketKeys::stop() { timer_->cancel(); }

void TicketKeys::schedule() {
  timer_->start(tls_.ticket_rotation, [this] {
    ring_.rotate(generate_());
    rotated_();
    logInfo(kLog, "rotated TLS session ticket keys ({} kept)", ring_.size());
    schedule();
  });
}

}  // namespace dingo
