// fuzz_hub_wire: the hub protocol decoder (core/HubWire.h). The supervisor's hub server
// decodes what workers send, and a compromised worker must not crash it; a worker
// decodes the hub's replies. The input is a byte stream cut into frames as the readers
// cut it (frameLength); each frame that decodes must encode back to a frame that decodes
// to the same fields.
#include <memory>
#include <string>

#include "core/HubWire.h"
#include "tests/fuzz/FuzzCheck.h"

namespace {

namespace hw = dingo::hubwire;

// The frame's fields encoded again with the encoder of its type.
std::string reencode(const hw::Frame& f) {
  std::string out;
  switch (f.type) {
    case hw::Type::Subscribe: hw::encodeSubscribe(out, f.id, f.channel, f.since); break;
    case hw::Type::Unsubscribe: hw::encodeUnsubscribe(out, f.channel); break;
    case hw::Type::Publish: hw::encodePublish(out, f.id, f.channel, f.data); break;
    case hw::Type::History: hw::encodeHistory(out, f.id, f.channel, f.since, f.limit); break;
    case hw::Type::Info: hw::encodeInfo(out, f.id, f.channel); break;
    case hw::Type::CatchupReply: {
      dingo::Catchup c;
      c.position = f.position;
      c.recovered = f.recovered;
      for (const auto& [seq, data] : f.messages)
        c.messages.push_back({seq, std::make_shared<const std::string>(data), 0});
      hw::encodeCatchup(out, f.id, c);
      break;
    }
    case hw::Type::PublishReply: hw::encodePublishReply(out, f.id, f.position); break;
    case hw::Type::InfoReply: hw::encodeInfoReply(out, f.id, dingo::Hub::Info{f.position, f.subscribers}); break;
    case hw::Type::ErrorReply: hw::encodeError(out, f.id, f.error); break;
    case hw::Type::Message: hw::encodeMessage(out, f.channel, f.position, f.data); break;
    case hw::Type::Nodes: hw::encodeNodes(out, f.data); break;
  }
  return out;
}

bool sameFields(const hw::Frame& a, const hw::Frame& b) {
  return a.type == b.type && a.id == b.id && a.channel == b.channel && a.since == b.since && a.limit == b.limit &&
         a.data == b.data && a.position == b.position && a.recovered == b.recovered &&
         a.subscribers == b.subscribers && a.error == b.error && a.messages == b.messages;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view stream = dingo::fuzz::text(data, size);
  while (!stream.empty()) {
    auto len = hw::frameLength(stream);
    if (!len || *len == 0) break;  // over kMaxFrame (the reader drops the link), or cut short
    FUZZ_CHECK(*len >= 4 && *len <= stream.size() && *len <= hw::kMaxFrame + 4);
    std::string_view frame = stream.substr(0, *len);
    stream.remove_prefix(*len);
    hw::Frame f;
    if (!hw::decode(frame, f)) continue;
    std::string again = reencode(f);
    FUZZ_CHECK(hw::frameLength(again) == again.size());
    hw::Frame g;
    FUZZ_CHECK(hw::decode(again, g));
    FUZZ_CHECK(sameFields(f, g));
  }
  return 0;
}
