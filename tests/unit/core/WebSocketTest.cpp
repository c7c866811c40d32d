#include "core/WebSocket.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace dingo::ws {
namespace {

constexpr uint8_t kText = 0x1, kBinary = 0x2, kCont = 0x0, kClose = 0x8, kPing = 0x9, kPong = 0xA;

// A client frame: masked, as RFC 6455 requires of clients. `rsv` is the 3-bit RSV field.
std::string clientFrame(uint8_t opcode, std::string_view payload, bool fin = true, uint8_t rsv = 0,
                        bool mask = true) {
  std::string f;
  f.push_back(static_cast<char>((fin ? 0x80 : 0) | (rsv << 4) | opcode));
  const uint8_t m = mask ? 0x80 : 0;
  if (payload.size() < 126) {
    f.push_back(static_cast<char>(m | payload.size()));
  } else if (payload.size() < 65536) {
    f.push_back(static_cast<char>(m | 126));
    f.push_back(static_cast<char>(payload.size() >> 8));
    f.push_back(static_cast<char>(payload.size()));
  } else {
    f.push_back(static_cast<char>(m | 127));
    for (int i = 7; i >= 0; --i) f.push_back(static_cast<char>(static_cast<uint64_t>(payload.size()) >> (8 * i)));
  }
  const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};
  if (mask) f.append(reinterpret_cast<const char*>(key), 4);
  for (size_t i = 0; i < payload.size(); ++i)
    f.push_back(mask ? static_cast<char>(static_cast<uint8_t>(payload[i]) ^ key[i % 4]) : payload[i]);
  return f;
}

std::string closePayload(uint16_t code, std::string_view reason = {}) {
  std::string p;
  p.push_back(static_cast<char>(code >> 8));
  p.push_back(static_cast<char>(code & 0xFF));
  p.append(reason);
  return p;
}

struct Seen {
  Event::Kind kind;
  std::string payload;
  uint16_t code;
  bool operator==(const Seen&) const = default;
};

void PrintTo(const Seen& s, std::ostream* os) {
  *os << "{kind=" << static_cast<int>(s.kind) << " code=" << s.code << " payload(" << s.payload.size() << ")}";
}

// Feeds `bytes` in pieces of `chunk` bytes (0: all at once) and records every event.
std::vector<Seen> parseAll(std::string_view bytes, size_t max = 1 << 20, size_t chunk = 0) {
  Parser p(max);
  std::vector<Seen> out;
  auto cb = [&](const Event& e) { out.push_back({e.kind, std::string(e.payload), e.code}); };
  if (chunk == 0) {
    p.feed(bytes, cb);
  } else {
    for (size_t i = 0; i < bytes.size(); i += chunk) p.feed(bytes.substr(i, chunk), cb);
  }
  return out;
}

// Feeds `bytes` split at the given cut points.
std::vector<Seen> parseSplit(std::string_view bytes, const std::vector<size_t>& cuts) {
  Parser p(1 << 20);
  std::vector<Seen> out;
  auto cb = [&](const Event& e) { out.push_back({e.kind, std::string(e.payload), e.code}); };
  size_t from = 0;
  for (size_t cut : cuts) {
    p.feed(bytes.substr(from, cut - from), cb);
    from = cut;
  }
  p.feed(bytes.substr(from), cb);
  return out;
}

// The input must produce exactly one event, an Error; returns its code (0 otherwise).
uint16_t onlyError(std::string_view bytes, size_t max = 1 << 20) {
  auto seen = parseAll(bytes, max);
  if (seen.size() != 1 || seen[0].kind != Event::Kind::Error) return 0;
  return seen[0].code;
}

// ---- Parser: messages --------------------------------------------------------------------

TEST(WebSocketParserTest, OneTextFrame) {
  Parser p(1 << 20);
  std::vector<Seen> seen;
  EXPECT_TRUE(p.feed(clientFrame(kText, R"({"op":"ping"})"),
                     [&](const Event& e) { seen.push_back({e.kind, std::string(e.payload), e.code}); }));
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0], (Seen{Event::Kind::Text, R"({"op":"ping"})", 0}));
  EXPECT_FALSE(p.failed());
  EXPECT_EQ(p.buffered(), 0u);
}

TEST(WebSocketParserTest, SeveralFramesInOneFeedInOrder) {
  std::string bytes = clientFrame(kText, "a") + clientFrame(kPing, "p") + clientFrame(kBinary, std::string("\x00\xff", 2)) +
                      clientFrame(kPong, "") + clientFrame(kClose, closePayload(1000, "done"));
  auto seen = parseAll(bytes);
  std::vector<Seen> want = {{Event::Kind::Text, "a", 0},
                            {Event::Kind::Ping, "p", 0},
                            {Event::Kind::Binary, std::string("\x00\xff", 2), 0},
                            {Event::Kind::Pong, "", 0},
                            {Event::Kind::Close, "done", 1000}};
  EXPECT_EQ(seen, want);
}

TEST(WebSocketParserTest, UnmasksAllByteValues) {
  std::string payload;
  for (int rep = 0; rep < 3; ++rep)
    for (int b = 0; b < 256; ++b) payload.push_back(static_cast<char>(b));
  payload.push_back('!');  // not a multiple of 4 or 8
  auto seen = parseAll(clientFrame(kBinary, payload));
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].kind, Event::Kind::Binary);
  EXPECT_EQ(seen[0].payload, payload);
}

TEST(WebSocketParserTest, ByteByByteGivesTheSameResult) {
  std::string bytes = clientFrame(kText, "h\xc3\xa9llo") + clientFrame(kPing, "p") +
                      clientFrame(kText, std::string(300, 'x') + "\xf0\x9f\x98\x80") +
                      clientFrame(kBinary, std::string(70000, 'y')) + clientFrame(kText, "frag", false) +
                      clientFrame(kPong, "in between") + clientFrame(kCont, "ment") +
                      clientFrame(kClose, closePayload(1001, "bye"));
  auto whole = parseAll(bytes);
  ASSERT_EQ(whole.size(), 7u);
  EXPECT_EQ(whole[0], (Seen{Event::Kind::Text, "h\xc3\xa9llo", 0}));
  EXPECT_EQ(whole[2].payload.size(), 304u);
  EXPECT_EQ(whole[3].payload, std::string(70000, 'y'));
  EXPECT_EQ(whole[4], (Seen{Event::Kind::Pong, "in between", 0}));
  EXPECT_EQ(whole[5], (Seen{Event::Kind::Text, "fragment", 0}));
  EXPECT_EQ(whole[6], (Seen{Event::Kind::Close, "bye", 1001}));
  for (size_t chunk : {1, 2, 3, 5, 7, 8, 13, 100, 4096}) EXPECT_EQ(parseAll(bytes, 1 << 20, chunk), whole) << chunk;
}

TEST(WebSocketParserTest, EverySplitGivesTheSameResult) {
  // Header, extended length, mask and payload, with a multi-byte character: every one- and
  // two-point split must give exactly the events of the whole.
  std::string bytes = clientFrame(kText, std::string(130, 'a') + "\xe2\x82\xac", false) + clientFrame(kPing, "pp") +
                      clientFrame(kCont, "z\xf0\x9f\x98\x80");
  auto whole = parseAll(bytes);
  ASSERT_EQ(whole.size(), 2u);
  EXPECT_EQ(whole[0], (Seen{Event::Kind::Ping, "pp", 0}));
  EXPECT_EQ(whole[1], (Seen{Event::Kind::Text, std::string(130, 'a') + "\xe2\x82\xac" + "z\xf0\x9f\x98\x80", 0}));
  for (size_t a = 0; a <= bytes.size(); ++a) {
    ASSERT_EQ(parseSplit(bytes, {a}), whole) << a;
    for (size_t b = a; b <= bytes.size(); b += 3) ASSERT_EQ(parseSplit(bytes, {a, b}), whole) << a << "," << b;
  }
}

TEST(WebSocketParserTest, FragmentsWithAPingBetween) {
  std::string bytes = clientFrame(kText, "Hel", false) + clientFrame(kPing, "ping!") +
                      clientFrame(kCont, "lo ", false) + clientFrame(kPong, "") + clientFrame(kCont, "world", true);
  auto seen = parseAll(bytes);
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen[0], (Seen{Event::Kind::Ping, "ping!", 0}));
  EXPECT_EQ(seen[1], (Seen{Event::Kind::Pong, "", 0}));
  EXPECT_EQ(seen[2], (Seen{Event::Kind::Text, "Hello world", 0}));
}

TEST(WebSocketParserTest, FragmentedBinaryAndEmptyFragments) {
  std::string bytes = clientFrame(kBinary, "", false) + clientFrame(kCont, "\x80\x81", false) +
                      clientFrame(kCont, "", false) + clientFrame(kCont, "\xff");
  auto seen = parseAll(bytes);
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0], (Seen{Event::Kind::Binary, "\x80\x81\xff", 0}));
  // A new message may start after the previous one finished.
  auto two = parseAll(bytes + clientFrame(kText, "next"));
  ASSERT_EQ(two.size(), 2u);
  EXPECT_EQ(two[1], (Seen{Event::Kind::Text, "next", 0}));
}

TEST(WebSocketParserTest, LengthEncodings) {
  for (size_t n : {0u, 125u, 126u, 127u, 65535u, 65536u, 100000u}) {
    std::string payload(n, 'b');
    for (size_t i = 0; i < n; i += 97) payload[i] = static_cast<char>('a' + i % 26);
    std::string f = clientFrame(kBinary, payload);
    EXPECT_EQ(f.size(), n + (n < 126 ? 6 : n < 65536 ? 8 : 14)) << n;
    auto seen = parseAll(f);
    ASSERT_EQ(seen.size(), 1u) << n;
    EXPECT_EQ(seen[0].kind, Event::Kind::Binary);
    EXPECT_EQ(seen[0].payload, payload) << n;
  }
}

TEST(WebSocketParserTest, SixteenAndSixtyFourBitLengthsByHand) {
  // 16-bit: 0x7E then 0x0100 = 256 bytes.
  std::string f16 = std::string("\x82\xfe\x01\x00", 4) + std::string(4, '\0') + std::string(256, 'q');
  auto seen = parseAll(f16);
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].payload, std::string(256, 'q'));
  // 64-bit: 0x7F then 0x0000000000010001 = 65537 bytes.
  std::string f64 = std::string("\x82\xff\x00\x00\x00\x00\x00\x01\x00\x01", 10) + std::string(4, '\0') +
                    std::string(65537, 'r');
  seen = parseAll(f64);
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].payload.size(), 65537u);
  // A 64-bit length may encode a small size too.
  std::string small = std::string("\x81\xff\x00\x00\x00\x00\x00\x00\x00\x02", 10) + std::string(4, '\0') + "ok";
  seen = parseAll(small);
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0], (Seen{Event::Kind::Text, "ok", 0}));
}

// ---- Parser: close frames ------------------------------------------------------------------

TEST(WebSocketParserTest, CloseFrames) {
  auto none = parseAll(clientFrame(kClose, ""));
  ASSERT_EQ(none.size(), 1u);
  EXPECT_EQ(none[0], (Seen{Event::Kind::Close, "", kNoStatus}));
  auto code_only = parseAll(clientFrame(kClose, closePayload(1000)));
  ASSERT_EQ(code_only.size(), 1u);
  EXPECT_EQ(code_only[0], (Seen{Event::Kind::Close, "", 1000}));
  auto with = parseAll(clientFrame(kClose, closePayload(4000, "bye \xc3\xa9")));
  ASSERT_EQ(with.size(), 1u);
  EXPECT_EQ(with[0], (Seen{Event::Kind::Close, "bye \xc3\xa9", 4000}));
  // The longest allowed close frame: 2 + 123.
  auto longest = parseAll(clientFrame(kClose, closePayload(1001, std::string(123, 'r'))));
  ASSERT_EQ(longest.size(), 1u);
  EXPECT_EQ(longest[0], (Seen{Event::Kind::Close, std::string(123, 'r'), 1001}));
}

TEST(WebSocketParserTest, CloseCodesOnTheWire) {
  for (uint16_t c : {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4999}) {
    auto seen = parseAll(clientFrame(kClose, closePayload(c)));
    ASSERT_EQ(seen.size(), 1u) << c;
    EXPECT_EQ(seen[0], (Seen{Event::Kind::Close, "", c})) << c;
  }
  for (uint16_t c : {0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535})
    EXPECT_EQ(onlyError(clientFrame(kClose, closePayload(c))), kProtocolError) << c;
}

// ---- Parser: errors --------------------------------------------------------------------------

TEST(WebSocketParserTest, ProtocolErrors1002) {
  struct Case {
    const char* what;
    std::string bytes;
  };
  const std::vector<Case> cases = {
      {"unmasked", clientFrame(kText, "x", true, 0, false)},
      {"unmasked control", clientFrame(kPing, "", true, 0, false)},
      {"RSV1", clientFrame(kText, "x", true, 4)},
      {"RSV2", clientFrame(kText, "x", true, 2)},
      {"RSV3", clientFrame(kText, "x", true, 1)},
      {"RSV on a control frame", clientFrame(kPing, "x", true, 4)},
      {"opcode 3", clientFrame(3, "x")},
      {"opcode 7", clientFrame(7, "x")},
      {"opcode 0xB", clientFrame(0xB, "x")},
      {"opcode 0xF", clientFrame(0xF, "x")},
      {"continuation with no message", clientFrame(kCont, "x")},
      {"non-final continuation with no message", clientFrame(kCont, "x", false)},
      {"fragmented ping", clientFrame(kPing, "x", false)},
      {"fragmented pong", clientFrame(kPong, "x", false)},
      {"fragmented close", clientFrame(kClose, closePayload(1000), false)},
      {"ping of 126 bytes", clientFrame(kPing, std::string(126, 'x'))},
      {"close of 126 bytes", clientFrame(kClose, closePayload(1000, std::string(124, 'x')))},
      {"text while text unfinished", clientFrame(kText, "a", false) + clientFrame(kText, "b")},
      {"binary while text unfinished", clientFrame(kText, "a", false) + clientFrame(kBinary, "b")},
      {"1-byte close", clientFrame(kClose, "x")},
      {"close code 1005", clientFrame(kClose, closePayload(1005))},
      {"close code 999", clientFrame(kClose, closePayload(999))},
      {"64-bit length with the top bit",
       std::string("\x82\xff\x80\x00\x00\x00\x00\x00\x00\x00", 10) + std::string(4, '\0')},
  };
  for (const Case& c : cases) {
    // The bad frame comes after a good, finished message, which is still reported (so the
    // continuation cases are also "continuation after a finished message").
    std::string bytes = clientFrame(kText, "ok") + c.bytes;
    auto seen = parseAll(bytes);
    ASSERT_EQ(seen.size(), 2u) << c.what;
    EXPECT_EQ(seen[0], (Seen{Event::Kind::Text, "ok", 0})) << c.what;
    EXPECT_EQ(seen[1], (Seen{Event::Kind::Error, "", kProtocolError})) << c.what;
    // The same in one-byte pieces.
    EXPECT_EQ(parseAll(bytes, 1 << 20, 1), seen) << c.what;
  }
}

TEST(WebSocketParserTest, ErrorsFromTheHeaderAlone) {
  // An unmasked frame fails after its first two bytes.
  Parser p(1 << 20);
  std::vector<uint16_t> codes;
  auto cb = [&](const Event& e) { codes.push_back(e.code); };
  EXPECT_FALSE(p.feed(std::string("\x81\x05", 2), cb));
  EXPECT_EQ(codes, std::vector<uint16_t>{kProtocolError});
  // A 64-bit length with the top bit set fails once the header is in, with no payload.
  Parser q(1 << 20);
  codes.clear();
  EXPECT_FALSE(q.feed(std::string("\x82\xff\xff\xff\xff\xff\xff\xff\xff\xff", 10) + std::string(4, '\0'), cb));
  EXPECT_EQ(codes, std::vector<uint16_t>{kProtocolError});
}

TEST(WebSocketParserTest, NothingAfterAnError) {
  Parser p(1 << 20);
  std::vector<Seen> seen;
  auto cb = [&](const Event& e) { seen.push_back({e.kind, std::string(e.payload), e.code}); };
  EXPECT_FALSE(p.feed(clientFrame(3, "x") + clientFrame(kText, "ok"), cb));
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0], (Seen{Event::Kind::Error, "", kProtocolError}));
  EXPECT_TRUE(p.failed());
  EXPECT_FALSE(p.feed(clientFrame(kText, "ok"), cb));
  EXPECT_FALSE(p.feed(clientFrame(kClose, ""), cb));
  EXPECT_FALSE(p.feed({}, cb));
  EXPECT_EQ(seen.size(), 1u);
  EXPECT_EQ(p.buffered(), 0u);
}

TEST(WebSocketParserTest, InvalidUtf8InOneFrame1007) {
  EXPECT_EQ(onlyError(clientFrame(kText, "\xc3\x28")), kInvalidPayload);
  EXPECT_EQ(onlyError(clientFrame(kText, "abc\xff")), kInvalidPayload);
  EXPECT_EQ(onlyError(clientFrame(kText, "\xed\xa0\x80")), kInvalidPayload);  // surrogate
  EXPECT_EQ(onlyError(clientFrame(kText, "\xc0\x80")), kInvalidPayload);      // overlong
  EXPECT_EQ(onlyError(clientFrame(kText, std::string(40, 'a') + "\x80" + std::string(40, 'a'))), kInvalidPayload);
  // Incomplete at the end of the message.
  EXPECT_EQ(onlyError(clientFrame(kText, "abc\xe2\x82")), kInvalidPayload);
  // Binary messages are not checked.
  auto bin = parseAll(clientFrame(kBinary, "\xff\xfe"));
  ASSERT_EQ(bin.size(), 1u);
  EXPECT_EQ(bin[0], (Seen{Event::Kind::Binary, "\xff\xfe", 0}));
}

TEST(WebSocketParserTest, Utf8AcrossFragments1007) {
  // A valid character split across fragments passes.
  auto ok = parseAll(clientFrame(kText, "caf\xc3", false) + clientFrame(kCont, "\xa9!"));
  ASSERT_EQ(ok.size(), 1u);
  EXPECT_EQ(ok[0], (Seen{Event::Kind::Text, "caf\xc3\xa9!", 0}));
  auto emoji = parseAll(clientFrame(kText, "\xf0", false) + clientFrame(kCont, "\x9f", false) +
                        clientFrame(kPing, "between") + clientFrame(kCont, "\x98\x80"));
  ASSERT_EQ(emoji.size(), 2u);
  EXPECT_EQ(emoji[0], (Seen{Event::Kind::Ping, "between", 0}));
  EXPECT_EQ(emoji[1], (Seen{Event::Kind::Text, "\xf0\x9f\x98\x80", 0}));
  // An invalid continuation in the next fragment fails.
  EXPECT_EQ(onlyError(clientFrame(kText, "\xe2\x82", false) + clientFrame(kCont, "\x28")), kInvalidPayload);
  // A surrogate split across fragments fails.
  EXPECT_EQ(onlyError(clientFrame(kText, "\xed", false) + clientFrame(kCont, "\xa0\x80")), kInvalidPayload);
  // A message ending in the middle of a character fails.
  EXPECT_EQ(onlyError(clientFrame(kText, "ok", false) + clientFrame(kCont, "\xf0\x9f")), kInvalidPayload);
}

TEST(WebSocketParserTest, InvalidUtf8FailsFast) {
  // In a non-final fragment: reported before the message is complete.
  Parser p(1 << 20);
  std::vector<uint16_t> codes;
  auto cb = [&](const Event& e) { codes.push_back(e.code); };
  EXPECT_FALSE(p.feed(clientFrame(kText, "\xff", false), cb));
  EXPECT_EQ(codes, std::vector<uint16_t>{kInvalidPayload});
  // In the middle of a frame: reported as soon as the bad byte arrives.
  Parser q(1 << 20);
  codes.clear();
  std::string f = clientFrame(kText, "abcd\xc0rest of a long frame");
  EXPECT_TRUE(q.feed(f.substr(0, 6 + 4), cb));  // header + "abcd"
  EXPECT_TRUE(codes.empty());
  EXPECT_FALSE(q.feed(f.substr(10, 1), cb));  // the 0xC0
  EXPECT_EQ(codes, std::vector<uint16_t>{kInvalidPayload});
}

TEST(WebSocketParserTest, InvalidUtf8InCloseReason1007) {
  EXPECT_EQ(onlyError(clientFrame(kClose, closePayload(1000, "\xc3\x28"))), kInvalidPayload);
  EXPECT_EQ(onlyError(clientFrame(kClose, closePayload(1000, "cut \xe2\x82"))), kInvalidPayload);  // incomplete
  // The reason is checked on its own, not as part of a text message in progress.
  auto seen = parseAll(clientFrame(kText, "\xc3", false) + clientFrame(kClose, closePayload(1000, "\xa9")));
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0], (Seen{Event::Kind::Error, "", kInvalidPayload}));
}

TEST(WebSocketParserTest, TooBigFromTheHeader1009) {
  Parser p(1000);
  std::vector<uint16_t> codes;
  auto cb = [&](const Event& e) { codes.push_back(e.code); };
  // Only the header of a 2000-byte frame: the parser refuses before any payload.
  std::string header = clientFrame(kText, std::string(2000, 'x')).substr(0, 8);
  ASSERT_EQ(header.size(), 8u);
  EXPECT_FALSE(p.feed(header, cb));
  EXPECT_EQ(codes, std::vector<uint16_t>{kTooBig});
  EXPECT_EQ(p.buffered(), 0u);
  // A 64-bit length far beyond the limit, also from the header alone.
  Parser q(1000);
  codes.clear();
  EXPECT_FALSE(q.feed(std::string("\x82\xff\x00\x00\x01\x00\x00\x00\x00\x00", 10) + std::string(4, '\0'), cb));
  EXPECT_EQ(codes, std::vector<uint16_t>{kTooBig});
  // The limit is on the whole message: fragments add up, and the second header fails.
  EXPECT_EQ(onlyError(clientFrame(kText, std::string(600, 'a'), false) + clientFrame(kCont, std::string(401, 'b')),
                      1000),
            kTooBig);
  // Exactly the limit passes, in one frame or in fragments.
  auto one = parseAll(clientFrame(kText, std::string(1000, 'a')), 1000);
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(one[0].payload.size(), 1000u);
  auto frags = parseAll(clientFrame(kBinary, std::string(600, 'a'), false) + clientFrame(kPing, "p") +
                            clientFrame(kCont, std::string(400, 'b')),
                        1000);
  ASSERT_EQ(frags.size(), 2u);
  EXPECT_EQ(frags[1].kind, Event::Kind::Binary);
  EXPECT_EQ(frags[1].payload.size(), 1000u);
  // The limit applies per message: the next one starts from zero.
  auto two = parseAll(clientFrame(kText, std::string(800, 'a')) + clientFrame(kText, std::string(800, 'b')), 1000);
  ASSERT_EQ(two.size(), 2u);
  EXPECT_EQ(two[1].payload, std::string(800, 'b'));
}

// An endless run of empty fragments (6 bytes each: nothing for the size limit to see)
// is cut: a message may have only so many frames.
TEST(WebSocketParserTest, EndlessEmptyFragmentsAreCut) {
  Parser p(1 << 20);
  std::vector<uint16_t> codes;
  auto cb = [&](const Event& e) { codes.push_back(e.code); };
  std::string batch;
  for (int i = 0; i < 1000; ++i) batch += clientFrame(kCont, "", false);
  p.feed(clientFrame(kText, "", false), cb);
  for (size_t frames = 0; frames < 1'000'000 && !p.failed(); frames += 1000) p.feed(batch, cb);
  EXPECT_TRUE(p.failed());
  EXPECT_EQ(codes, std::vector<uint16_t>{kTooBig});
}

// Exactly kMaxFramesPerMessage frames make a message; one more closes with 1009, with a
// reason. Control frames between the fragments do not count.
TEST(WebSocketParserTest, FramesPerMessageLimit) {
  auto fragments = [](size_t frames, bool ping_between) {
    std::string bytes = clientFrame(kText, "a", false);
    for (size_t i = 1; i + 1 < frames; ++i) {
      bytes += clientFrame(kCont, i % 2 ? "" : "b", false);
      if (ping_between) bytes += clientFrame(kPing, "");
    }
    return bytes + clientFrame(kCont, "c");
  };
  auto ok = parseAll(fragments(kMaxFramesPerMessage, false));
  ASSERT_EQ(ok.size(), 1u);
  EXPECT_EQ(ok[0].kind, Event::Kind::Text);
  auto with_pings = parseAll(fragments(kMaxFramesPerMessage, true));
  ASSERT_EQ(with_pings.size(), kMaxFramesPerMessage - 1);  // the pings, then the message
  EXPECT_EQ(with_pings.back().kind, Event::Kind::Text);
  auto over = parseAll(fragments(kMaxFramesPerMessage + 1, false));
  ASSERT_EQ(over.size(), 1u);
  EXPECT_EQ(over[0].kind, Event::Kind::Error);
  EXPECT_EQ(over[0].code, kTooBig);
  EXPECT_EQ(over[0].payload, "too many frames in one message");
  // The count is per message: two messages of the maximum pass one after the other.
  auto two = parseAll(fragments(kMaxFramesPerMessage, false) + fragments(kMaxFramesPerMessage, false));
  EXPECT_EQ(two.size(), 2u);
  // A smaller limit, as a constructor argument.
  Parser p(1 << 20, 3);
  std::vector<uint16_t> codes;
  auto cb = [&](const Event& e) { codes.push_back(e.code); };
  EXPECT_TRUE(p.feed(clientFrame(kText, "", false) + clientFrame(kCont, "", false) + clientFrame(kCont, ""), cb));
  EXPECT_FALSE(p.feed(clientFrame(kText, "", false) + clientFrame(kCont, "", false) + clientFrame(kCont, "", false) +
                          clientFrame(kCont, ""),
                      cb));
  EXPECT_EQ(codes, (std::vector<uint16_t>{0, kTooBig}));
}

TEST(WebSocketParserTest, BufferedBytes) {
  Parser p(1 << 20);
  auto ignore = [](const Event&) {};
  std::string big = clientFrame(kText, std::string(50000, 'x'));
  EXPECT_TRUE(p.feed(big.substr(0, 5), ignore));  // part of the header
  EXPECT_EQ(p.buffered(), 5u);
  EXPECT_TRUE(p.feed(big.substr(5, 100), ignore));  // rest of the 8-byte header + 97 payload bytes
  EXPECT_EQ(p.buffered(), 97u);
  EXPECT_TRUE(p.feed(big.substr(105), ignore));
  EXPECT_EQ(p.buffered(), 0u);
  EXPECT_TRUE(p.feed(clientFrame(kText, "abc", false), ignore));
  EXPECT_EQ(p.buffered(), 3u);
  EXPECT_TRUE(p.feed(clientFrame(kCont, "de"), ignore));
  EXPECT_EQ(p.buffered(), 0u);
}

// ---- Close codes, UTF-8 ----------------------------------------------------------------------

TEST(WebSocketCloseCodeTest, Table) {
  for (uint16_t c : {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999})
    EXPECT_TRUE(validCloseCode(c)) << c;
  for (uint16_t c : {0, 1, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535})
    EXPECT_FALSE(validCloseCode(c)) << c;
}

bool validUtf8(std::string_view s) {
  Utf8Validator v;
  return v.feed(s) && v.complete();
}

TEST(WebSocketUtf8Test, Validator) {
  EXPECT_TRUE(validUtf8(""));
  EXPECT_TRUE(validUtf8("plain ascii, long enough for the fast path"));
  EXPECT_TRUE(validUtf8("\x7f"));
  EXPECT_TRUE(validUtf8("\xc2\x80"));          // U+0080
  EXPECT_TRUE(validUtf8("\xdf\xbf"));          // U+07FF
  EXPECT_TRUE(validUtf8("\xe0\xa0\x80"));      // U+0800
  EXPECT_TRUE(validUtf8("\xed\x9f\xbf"));      // U+D7FF
  EXPECT_TRUE(validUtf8("\xee\x80\x80"));      // U+E000
  EXPECT_TRUE(validUtf8("\xef\xbf\xbf"));      // U+FFFF
  EXPECT_TRUE(validUtf8("\xf0\x90\x80\x80"));  // U+10000
  EXPECT_TRUE(validUtf8("\xf0\x9f\x98\x80"));  // U+1F600, an emoji
  EXPECT_TRUE(validUtf8("\xf4\x8f\xbf\xbf"));  // U+10FFFF
  EXPECT_FALSE(validUtf8("\xc0\x80"));          // overlong NUL
  EXPECT_FALSE(validUtf8("\xc1\xbf"));          // overlong
  EXPECT_FALSE(validUtf8("\xe0\x80\xaf"));      // overlong
  EXPECT_FALSE(validUtf8("\xe0\x9f\xbf"));      // overlong
  EXPECT_FALSE(validUtf8("\xf0\x8f\xbf\xbf"));  // overlong
  EXPECT_FALSE(validUtf8("\xed\xa0\x80"));      // surrogate U+D800
  EXPECT_FALSE(validUtf8("\xed\xbf\xbf"));      // surrogate U+DFFF
  EXPECT_FALSE(validUtf8("\xf4\x90\x80\x80"));  // above U+10FFFF
  EXPECT_FALSE(validUtf8("\xf5\x80\x80\x80"));
  EXPECT_FALSE(validUtf8("\xff"));
  EXPECT_FALSE(validUtf8("\x80"));           // lone continuation
  EXPECT_FALSE(validUtf8("\xc3\xa9\xa9"));   // one continuation too many
  EXPECT_FALSE(validUtf8("\xe2\x82"));       // incomplete
  EXPECT_FALSE(validUtf8("\xe2\x82" "a"));   // interrupted
}

TEST(WebSocketUtf8Test, FeedFailsAsSoonAsBytesAreInvalid) {
  Utf8Validator v;
  EXPECT_TRUE(v.feed("\xe2"));  // a possible start
  EXPECT_FALSE(v.complete());
  EXPECT_FALSE(v.feed("\x28"));  // not a continuation
  Utf8Validator w;
  EXPECT_FALSE(w.feed("\xc0"));  // can never start valid UTF-8
  Utf8Validator x;
  EXPECT_FALSE(x.feed("\xf4\x90"));  // already above U+10FFFF
  // A bad byte anywhere in a long ASCII run (inside or after the 8-byte fast path).
  for (size_t at = 0; at < 24; ++at) {
    std::string s(24, 'a');
    s[at] = '\x80';
    EXPECT_FALSE(validUtf8(s)) << at;
    if (at + 1 == s.size()) continue;
    s[at] = '\xc3';
    s[at + 1] = '\xa9';
    EXPECT_TRUE(validUtf8(s)) << at;
  }
}

TEST(WebSocketUtf8Test, SplitSequences) {
  // Split at every point, these stay valid.
  for (std::string s : {"ab\xf0\x9f\x98\x80yz", "\xe2\x82\xac\xc3\xa9", "\xed\x9f\xbf\xf4\x8f\xbf\xbf"}) {
    for (size_t cut = 0; cut <= s.size(); ++cut) {
      Utf8Validator v;
      EXPECT_TRUE(v.feed(s.substr(0, cut))) << cut;
      EXPECT_TRUE(v.feed(s.substr(cut))) << cut;
      EXPECT_TRUE(v.complete()) << cut;
    }
  }
  // One byte per feed: the bounds for the second byte survive between calls.
  for (std::string bad : {"\xed\xa0\x80", "\xe0\x80\xaf", "\xf0\x80\x80\x80", "\xf4\x90\x80\x80"}) {
    Utf8Validator v;
    bool ok = true;
    for (char c : bad) ok = ok && v.feed(std::string_view(&c, 1));
    EXPECT_FALSE(ok) << static_cast<int>(static_cast<uint8_t>(bad[1]));
  }
  Utf8Validator v;
  EXPECT_TRUE(v.feed("\xf0"));
  EXPECT_TRUE(v.feed("\x9f"));
  EXPECT_TRUE(v.feed("\x98"));
  EXPECT_FALSE(v.complete());
  EXPECT_TRUE(v.feed("\x80"));
  EXPECT_TRUE(v.complete());
  v.reset();
  EXPECT_TRUE(v.feed("\xe2"));
  v.reset();
  EXPECT_TRUE(v.complete());
  EXPECT_TRUE(v.feed("a"));
}

// ---- Server frames ---------------------------------------------------------------------------

TEST(WebSocketFrameTest, HeaderSizesAndBytes) {
  struct Case {
    size_t n;
    std::string header;
  };
  const std::vector<Case> cases = {
      {0, std::string("\x81\x00", 2)},
      {125, std::string("\x81\x7d", 2)},
      {126, std::string("\x81\x7e\x00\x7e", 4)},
      {65535, std::string("\x81\x7e\xff\xff", 4)},
      {65536, std::string("\x81\x7f\x00\x00\x00\x00\x00\x01\x00\x00", 10)},
  };
  for (const Case& c : cases) {
    std::string h = "prefix";
    appendFrameHeader(h, Opcode::Text, c.n);
    EXPECT_EQ(h, "prefix" + c.header) << c.n;
    std::string payload(c.n, 'x');
    std::string f = frame(Opcode::Text, payload);
    EXPECT_EQ(f.size(), c.header.size() + c.n) << c.n;
    EXPECT_EQ(f.substr(0, c.header.size()), c.header) << c.n;
    EXPECT_EQ(f.substr(c.header.size()), payload) << c.n;
  }
  std::string big;
  appendFrameHeader(big, Opcode::Binary, size_t{0x0102030405});
  EXPECT_EQ(big, std::string("\x82\x7f\x00\x00\x00\x01\x02\x03\x04\x05", 10));
  EXPECT_EQ(frame(Opcode::Ping, {}), std::string("\x89\x00", 2));
  EXPECT_EQ(frame(Opcode::Pong, "hi"), std::string("\x8a\x02hi", 4));
}

TEST(WebSocketFrameTest, CloseFrame) {
  EXPECT_EQ(closeFrame(1012, "service restart"), std::string("\x88\x11\x03\xf4", 4) + "service restart");
  EXPECT_EQ(closeFrame(1000), std::string("\x88\x02\x03\xe8", 4));
  // A reason of exactly 123 bytes is kept whole.
  std::string fits(123, 'r');
  EXPECT_EQ(closeFrame(1001, fits), std::string("\x88\x7d\x03\xe9", 4) + fits);
  // A longer ASCII reason is cut to 123 bytes.
  EXPECT_EQ(closeFrame(1001, std::string(200, 'r')), std::string("\x88\x7d\x03\xe9", 4) + fits);
}

TEST(WebSocketFrameTest, CloseFrameTruncationKeepsCharactersWhole) {
  // 70 two-byte characters = 140 bytes: 61 whole characters (122 bytes) fit, not 61.5.
  std::string reason;
  for (int i = 0; i < 70; ++i) reason += "\xc3\xa9";
  std::string cut = closeFrame(1000, reason);
  ASSERT_EQ(cut.size(), 2u + 2 + 122);
  EXPECT_EQ(static_cast<uint8_t>(cut[1]), 124);
  EXPECT_EQ(cut.substr(4), reason.substr(0, 122));
  EXPECT_TRUE(validUtf8(cut.substr(4)));
  // A 4-byte character straddling the limit is dropped whole: 121 ASCII + emoji.
  std::string emoji = std::string(121, 'a') + "\xf0\x9f\x98\x80";
  cut = closeFrame(1000, emoji);
  EXPECT_EQ(static_cast<uint8_t>(cut[1]), 2 + 121);
  EXPECT_EQ(cut.substr(4), std::string(121, 'a'));
  // 119 ASCII + emoji = 123 bytes exactly: kept.
  std::string exact = std::string(119, 'a') + "\xf0\x9f\x98\x80";
  EXPECT_EQ(closeFrame(1000, exact).substr(4), exact);
  // The parser accepts what closeFrame builds (once masked the way a client would).
  auto seen = parseAll(clientFrame(kClose, closeFrame(1000, reason).substr(2)));
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0], (Seen{Event::Kind::Close, reason.substr(0, 122), 1000}));
}

TEST(WebSocketKeyTest, OnlyBase64Of16Bytes) {
  EXPECT_TRUE(validClientKey("dGhlIHNhbXBsZSBub25jZQ=="));  // RFC 6455 4.2.2's example
  EXPECT_TRUE(validClientKey("AAAAAAAAAAAAAAAAAAAAAA=="));
  EXPECT_TRUE(validClientKey("/////////////////////w=="));
  EXPECT_TRUE(validClientKey("+++++++++++++++++++++g=="));
  for (const char* bad : {"", "dGhlIHNhbXBsZSBub25jZQ", "dGhlIHNhbXBsZSBub25jZQ=", "dGhlIHNhbXBsZSBub25jZQ===",
                          "!!!!!!!!!!!!!!!!!!!!!!==", "dGhlIHNhbXBsZSBub25jZ===", "AAAAAAAAAAAAAAAAAAAAAAA=",
                          "AAAAAAAAAAAAAAAAAAAAAAAA", "dGhlIHNhbXBsZSBub25j", "AAAAAAAAAAAAAAAAAAAAAB==",
                          "dGhlIHNhbXBsZSBub25jZQ==\r", " dGhlIHNhbXBsZSBub25jZQ=", "dGhlIHNhbXBsZSBub2-jZQ==",
                          "dGhlIHNhbXBsZSBub2_jZQ=="})
    EXPECT_FALSE(validClientKey(bad)) << bad;
}

TEST(WebSocketFrameTest, AcceptKeyFromRfc6455) {
  EXPECT_EQ(acceptKey("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
  // A second pair, checked against Python's hashlib + base64.
  std::string k = acceptKey("x3JJHMbDL1EzLkh9GBhXDw==");
  EXPECT_EQ(k, "HSmrc0sMlYUkAGmm5OPpG2HaGWk=");
  EXPECT_EQ(k.size(), 28u);
}

}  // namespace
}  // namespace dingo::ws
