// fuzz_control_request: a line on the supervisor's control socket, as
// supervisor/ControlRequest.h parses it. Whatever the line, the answer is a typed
// request or an error message that the reply can carry (printable, bounded).
#include "supervisor/ControlRequest.h"
#include "tests/fuzz/FuzzCheck.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto parsed = dingo::parseControlRequest(dingo::fuzz::text(data, size));
  if (auto* why = std::get_if<std::string>(&parsed)) {
    FUZZ_CHECK(!why->empty() && why->size() < 1024);
    for (char c : *why) FUZZ_CHECK(c >= 0x20 && c < 0x7f);
    return 0;
  }
  const auto& req = std::get<dingo::ControlRequest>(parsed);
  if (req.cmd == dingo::ControlRequest::Cmd::Adopt) FUZZ_CHECK(req.adopt.pid > 0);
  if (req.drain) FUZZ_CHECK(req.drain->count() >= 0);
  return 0;
}
