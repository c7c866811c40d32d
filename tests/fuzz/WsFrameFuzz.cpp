// fuzz_ws_frame: ws::Parser (core/WebSocket.h), the decoder every WebSocket connection
// runs on what its client sends. The input is fed twice, whole and in chunks whose size
// the first bytes choose; both must report the same events, within the parser's limits.
#include <string>
#include <vector>

#include "core/WebSocket.h"
#include "tests/fuzz/FuzzCheck.h"

namespace {

using dingo::ws::Event;

struct Seen {
  Event::Kind kind;
  std::string payload;
  uint16_t code;
  bool operator==(const Seen&) const = default;
};

// Feeds `input` in pieces of `chunk` bytes (0: at once) and checks each event as it comes.
std::vector<Seen> run(std::string_view input, size_t max_message, size_t chunk) {
  dingo::ws::Parser parser(max_message);
  std::vector<Seen> seen;
  bool errored = false;
  auto on_event = [&](const Event& e) {
    FUZZ_CHECK(!errored);  // nothing after an error
    switch (e.kind) {
      case Event::Kind::Text: {
        dingo::ws::Utf8Validator utf8;
        FUZZ_CHECK(utf8.feed(e.payload) && utf8.complete());
        FUZZ_CHECK(e.payload.size() <= max_message);
        break;
      }
      case Event::Kind::Binary: FUZZ_CHECK(e.payload.size() <= max_message); break;
      case Event::Kind::Ping:
      case Event::Kind::Pong: FUZZ_CHECK(e.payload.size() <= 125); break;
      case Event::Kind::Close: {
        dingo::ws::Utf8Validator utf8;
        FUZZ_CHECK(e.payload.size() <= 123 && utf8.feed(e.payload) && utf8.complete());
        FUZZ_CHECK(e.code == dingo::ws::kNoStatus || dingo::ws::validCloseCode(e.code));
        break;
      }
      case Event::Kind::Error:
        FUZZ_CHECK(e.code == dingo::ws::kProtocolError || e.code == dingo::ws::kInvalidPayload ||
                   e.code == dingo::ws::kTooBig);
        errored = true;
        break;
    }
    seen.push_back({e.kind, std::string(e.payload), e.code});
  };
  size_t step = chunk == 0 ? input.size() : chunk;
  for (size_t at = 0; at < input.size(); at += step) {
    bool ok = parser.feed(input.substr(at, step), on_event);
    FUZZ_CHECK(ok == !errored);
    FUZZ_CHECK(parser.failed() == errored);
    // A message being assembled, a control frame and a frame header, no more.
    if (!errored) FUZZ_CHECK(parser.buffered() <= max_message + 125 + 14);
  }
  return seen;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  size_t max_message = size_t{16} << (data[0] % 13);  // 16 B to 64 KiB (the default)
  size_t chunk = data[1] % 17;                        // 1 to 16 bytes at a time
  std::string_view input = dingo::fuzz::text(data + 2, size - 2);
  auto whole = run(input, max_message, 0);
  if (chunk > 0) FUZZ_CHECK(run(input, max_message, chunk) == whole);
  return 0;
}
