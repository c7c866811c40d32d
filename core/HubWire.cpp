#include "core/HubWire.h"

#include <cstring>

namespace dingo::hubwire {

namespace {

void putU8(std::string& out, uint8_t v) { out.push_back(static_cast<char>(v)); }
void putU32(std::string& out, uint32_t v) {
  char b[4];
  for (int i = 0; i < 4; ++i) b[i] = static_cast<char>(v >> (8 * i));
  out.append(b, 4);
}
void putU64(std::string& out, uint64_t v) {
  char b[8];
  for (int i = 0; i < 8; ++i) b[i] = static_cast<char>(v >> (8 * i));
  out.append(b, 8);
}
void putStr(std::string& out, std::string_view s) {
  putU32(out, static_cast<uint32_t>(s.size()));
  out.append(s);
}
void putPosition(std::string& out, const Position& p) {
  putStr(out, p.epoch);
  putU64(out, p.seq);
}
void putSince(std::string& out, const std::optional<Position>& since) {
  putU8(out, since ? 1 : 0);
  if (since) putPosition(out, *since);
}

// Starts a frame: reserves the length prefix; finish() fills it in.
size_t begin(std::string& out, Type t) {
  size_t at = out.size();
  putU32(out, 0);
  putU8(out, static_cast<uint8_t>(t));
  return at;
}
void finish(std::string& out, size_t at) {
  uint32_t len = static_cast<uint32_t>(out.size() - at - 4);
  for (int i = 0; i < 4; ++i) out[at + i] = static_cast<char>(len >> (8 * i));
}

class Reader {
 public:
  explicit Reader(std::string_view b) : b_(b) {}
  bool u8(uint8_t& v) {
    if (b_.size() < 1) return false;
    v = static_cast<uint8_t>(b_[0]);
    b_.remove_prefix(1);
    return true;
  }
  bool u32(uint32_t& v) {
    if (b_.size() < 4) return false;
    v = 0;
    for (int i = 0; i < 4; ++i) v |= static_cast<uint32_t>(static_cast<uint8_t>(b_[i])) << (8 * i);
    b_.remove_prefix(4);
    return true;
  }
  bool u64(uint64_t& v) {
    if (b_.size() < 8) return false;
    v = 0;
    for (int i = 0; i < 8; ++i) v |= static_cast<uint64_t>(static_cast<uint8_t>(b_[i])) << (8 * i);
    b_.remove_prefix(8);
    return true;
  }
  bool str(std::string_view& s) {
    uint32_t n = 0;
    if (!u32(n) || b_.size() < n) return false;
    s = b_.substr(0, n);
    b_.remove_prefix(n);
    return true;
  }
  bool position(Position& p) {
    std::string_view e;
    if (!str(e)) return false;
    p.epoch.assign(e);
    return u64(p.seq);
  }
  bool since(std::optional<Position>& s) {
    uint8_t has = 0;
    if (!u8(has)) return false;
    if (!has) {
      s.reset();
      return true;
    }
    s.emplace();
    return position(*s);
  }
  bool done() const { return b_.empty(); }

 private:
  std::string_view b_;
};

}  // namespace

void encodeSubscribe(std::string& out, uint64_t id, std::string_view channel, const std::optional<Position>& since) {
  size_t at = begin(out, Type::Subscribe);
  putU64(out, id);
  putStr(out, channel);
  putSince(out, since);
  finish(out, at);
}

void encodeUnsubscribe(std::string& out, std::string_view channel) {
  size_t at = begin(out, Type::Unsubscribe);
  putStr(out, channel);
  finish(out, at);
}

void encodePublish(std::string& out, uint64_t id, std::string_view channel, std::string_view data) {
  size_t at = begin(out, Type::Publish);
  putU64(out, id);
  putStr(out, channel);
  putStr(out, data);
  finish(out, at);
}

void encodeHistory(std::string& out, uint64_t id, std::string_view channel, const std::optional<Position>& since,
                   uint32_t limit) {
  size_t at = begin(out, Type::History);
  putU64(out, id);
  putStr(out, channel);
  putSince(out, since);
  putU32(out, limit);
  finish(out, at);
}

void encodeInfo(std::string& out, uint64_t id, std::string_view channel) {
  size_t at = begin(out, Type::Info);
  putU64(out, id);
  putStr(out, channel);
  finish(out, at);
}

void encodeCatchup(std::string& out, uint64_t id, const Catchup& c) {
  size_t at = begin(out, Type::CatchupReply);
  putU64(out, id);
  putPosition(out, c.position);
  putU8(out, c.recovered ? 1 : 0);
  putU32(out, static_cast<uint32_t>(c.messages.size()));
  for (const auto& m : c.messages) {
    putU64(out, m.seq);
    putStr(out, *m.data);
  }
  finish(out, at);
}

void encodePublishReply(std::string& out, uint64_t id, const Position& p) {
  size_t at = begin(out, Type::PublishReply);
  putU64(out, id);
  putPosition(out, p);
  finish(out, at);
}

void encodeInfoReply(std::string& out, uint64_t id, const Hub::Info& info) {
  size_t at = begin(out, Type::InfoReply);
  putU64(out, id);
  putPosition(out, info.position);
  putU64(out, info.subscribers);
  finish(out, at);
}

void encodeError(std::string& out, uint64_t id, std::string_view message) {
  size_t at = begin(out, Type::ErrorReply);
  putU64(out, id);
  putStr(out, message);
  finish(out, at);
}

void encodeMessage(std::string& out, std::string_view channel, const Position& p, std::string_view data) {
  size_t at = begin(out, Type::Message);
  putStr(out, channel);
  putPosition(out, p);
  putStr(out, data);
  finish(out, at);
}

void encodeNodes(std::string& out, std::string_view document) {
  size_t at = begin(out, Type::Nodes);
  putStr(out, document);
  finish(out, at);
}

std::optional<size_t> frameLength(std::string_view buffer) {
  if (buffer.size() < 4) return 0;
  uint32_t len = 0;
  for (int i = 0; i < 4; ++i) len |= static_cast<uint32_t>(static_cast<uint8_t>(buffer[i])) << (8 * i);
  if (len > kMaxFrame) return std::nullopt;
  if (buffer.size() < 4 + static_cast<size_t>(len)) return 0;
  return 4 + static_cast<size_t>(len);
}

bool decode(std::string_view frame, Frame& f) {
  if (frame.size() < 5) return false;
  Reader r(frame.substr(4));
  uint8_t type = 0;
  r.u8(type);
  f = Frame{};
  f.type = static_cast<Type>(type);
  bool ok = false;
  switch (f.type) {
    case Type::Subscribe: ok = r.u64(f.id) && r.str(f.channel) && r.since(f.since); break;
    case Type::Unsubscribe: ok = r.str(f.channel); break;
    case Type::Publish: ok = r.u64(f.id) && r.str(f.channel) && r.str(f.data); break;
    case Type::History: ok = r.u64(f.id) && r.str(f.channel) && r.since(f.since) && r.u32(f.limit); break;
    case Type::Info: ok = r.u64(f.id) && r.str(f.channel); break;
    case Type::CatchupReply: {
      uint8_t rec = 0;
      uint32_t n = 0;
      ok = r.u64(f.id) && r.position(f.position) && r.u8(rec) && r.u32(n);
      f.recovered = rec != 0;
      for (uint32_t i = 0; ok && i < n; ++i) {
        uint64_t seq = 0;
        std::string_view data;
        ok = r.u64(seq) && r.str(data);
        if (ok) f.messages.emplace_back(seq, data);
      }
      break;
    }
    case Type::PublishReply: ok = r.u64(f.id) && r.position(f.position); break;
    case Type::InfoReply: ok = r.u64(f.id) && r.position(f.position) && r.u64(f.subscribers); break;
    case Type::ErrorReply: ok = r.u64(f.id) && r.str(f.error); break;
    case Type::Message: ok = r.str(f.channel) && r.position(f.position) && r.str(f.data); break;
    case Type::Nodes: ok = r.str(f.data); break;
    default: return false;
  }
  return ok && r.done();
}

}  // namespace dingo::hubwire
