#include "core/WebSocket.h"

#include <gtest/gtest.h>

#include <vector>

namespace dingo::ws {
namespace {

// A client frame: masked, as RFC 6455 requires of clients.
std::string clientFrame(uint8_t opcode, std::string_view payload, bool fin = true, uint8_t rsv = 0,
                        bool mask = true) {
  std::string f;
  f.push_back(static_cast<char>((fin ? 0x80 : 0) | (rsv << 4) | opcode));
  uint8_t m = mask ? 0x80 : 0;
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
    f.push_back(mask ? static_cast<char>(payload[i] ^ key[i % 4]) : payload[i]);
  return f;
}

struct Seen {
  Event::Kind kind;
  std::string payload;
  uint16_t code;
  bool operator==(const Seen&) const = default;
};

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

uint16_t errorCode(std::string_view bytes, size_t max = 1 << 20) {
  auto seen = parseAll(bytes, max);
  if (seen.empty() || seen.back().kind != Event::Kind::Error) return 0;
  return seen.back().code;
}

TEST(WebSocketParserTest, OneTextFrame) {
  auto seen = parseAll(clientFrame(1, R"({"op":"ping"})"));
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0], (Seen{Event::Kind::Text, R"({"op":"ping"})", 0}));
}

TEST(WebSocketParserTest, AnyChunkingGivesTheSameResult) {
  std::string bytes = clientFrame(1, "hello") + clientFrame(9, "p") + clientFrame(1, std::string(300, 'x')) +
                      clientFrame(1, std::string(70000, 'y'));
  auto whole = parseAll(bytes);
  ASSERT_EQ(whole.size(), 4u);
  for (size_t chunk : {1, 2, 3, 7, 13, 100, 4096}) EXPECT_EQ(parseAll(bytes, 1 << 20, chunk), whole) << chunk;
}

TEST(WebSocketParserTest, FragmentsWithAPingBetween) {
  std::string bytes = clientFrame(1, "Hel", false) + clientFrame(9, "ping!") + clientFrame(0, "lo ", false) +
                      clientFrame(0, "world", true);
  auto seen = parseAll(bytes);
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0], (Seen{Event::Kind::Ping, "ping!", 0}));
  EXPECT_EQ(seen[1], (Seen{Event::Kind::Text, "Hello world", 0}));
}

TEST(WebSocketParserTest, LengthEncodings) {
  for (size_t n : {0u, 125u, 126u, 65535u, 65536u, 100000u}) {
    auto seen = parseAll(clientFrame(2, std::string(n, 'b')));
    ASSERT_EQ(seen.size(), 1u) << n;
    EXPECT_EQ(seen[0].kind, Event::Kind::Binary);
    EXPECT_EQ(seen[0].payload.size(), n);
  }
}

TEST(WebSocketParserTest, ProtocolErrors1002) {
  EXPECT_EQ(errorCode(clientFrame(1, "x", true, 0, false)), kProtocolError);  // unmasked
  EXPECT_EQ(errorCode(clientFrame(1, "x", true, 4)), kProtocolError);         // RSV1
  EXPECT_EQ(errorCode(clientFrame(1, "x", true, 2)), kProtocolError);         // RSV2
  EXPECT_EQ(errorCode(clientFrame(3, "x")), kProtocolError);                  // reserved opcode
  EXPECT_EQ(errorCode(clientFrame(0xB, "x")), kProtocolError);                // reserved control
  EXPECT_EQ(errorCode(clientFrame(0, "x")), kProtocolError);                  // continuation first
  EXPECT_EQ(errorCode(clientFrame(9, "x", false)), kProtocolError);           // fragmented ping
  EXPECT_EQ(errorCode(clientFrame(9, std::string(126, 'x'))), kProtocolError);  // long ping
  EXPECT_EQ(errorCode(clientFrame(1, "a", false) + clientFrame(1, "b")), kProtocolError);  // new message
  EXPECT_EQ(errorCode(clientFrame(8, "x")), kProtocolError);                  // 1-byte close
  EXPECT_EQ(errorCode(clientFrame(8, std::string("\x03\xed", 2))), kProtocolError);  // close 1005
  EXPECT_EQ(errorCode(clientFrame(8, std::string("\x03\xe7", 2))), kProtocolError);  // close 999
  std::string huge = std::string("\x81\xff\x80\x00\x00\x00\x00\x00\x00\x00", 10) + std::string(4, '\0');
  EXPECT_EQ(errorCode(huge), kProtocolError);
}

TEST(WebSocketParserTest, NothingAfterAnError) {
  Parser p(1 << 20);
  int events = 0;
  auto cb = [&](const Event&) { ++events; };
  EXPECT_FALSE(p.feed(clientFrame(3, "x") + clientFrame(1, "ok"), cb));
  EXPECT_EQ(events, 1);
  EXPECT_FALSE(p.feed(clientFrame(1, "ok"), cb));
  EXPECT_EQ(events, 1);
  EXPECT_TRUE(p.failed());
}

TEST(WebSocketParserTest, InvalidUtf8Closes1007) {
  EXPECT_EQ(errorCode(clientFrame(1, "\xc3\x28")), kInvalidPayload);
  // Split across fragments: a valid character passes, an invalid one fails.
  auto ok = parseAll(clientFrame(1, "caf\xc3", false) + clientFrame(0, "\xa9!"));
  ASSERT_EQ(ok.size(), 1u);
  EXPECT_EQ(ok[0].payload, "caf\xc3\xa9!");
  EXPECT_EQ(errorCode(clientFrame(1, "\xe2\x82", false) + clientFrame(0, "\x28")), kInvalidPayload);
  // Incomplete at the end of the message.
  EXPECT_EQ(errorCode(clientFrame(1, "abc\xe2\x82")), kInvalidPayload);
  // Fails fast: before the message is complete.
  Parser p(1 << 20);
  uint16_t code = 0;
  p.feed(clientFrame(1, "\xff", false), [&](const Event& e) { code = e.code; });
  EXPECT_EQ(code, kInvalidPayload);
  // Binary messages are not checked.
  EXPECT_EQ(parseAll(clientFrame(2, "\xff\xfe"))[0].kind, Event::Kind::Binary);
  // A close reason must be UTF-8.
  EXPECT_EQ(errorCode(clientFrame(8, std::string("\x03\xe8\xc3\x28", 4))), kInvalidPayload);
}

TEST(WebSocketParserTest, TooBigClosesFromTheHeader1009) {
  Parser p(1000);
  std::vector<uint16_t> codes;
  // Only the header of a 2000-byte frame: the parser refuses before any payload.
  std::string header = clientFrame(1, std::string(2000, 'x')).substr(0, 8);
  p.feed(header, [&](const Event& e) { codes.push_back(e.code); });
  EXPECT_EQ(codes, std::vector<uint16_t>{kTooBig});
  // The limit is on the whole message: fragments add up.
  EXPECT_EQ(errorCode(clientFrame(1, std::string(600, 'a'), false) + clientFrame(0, std::string(600, 'b')), 1000),
            kTooBig);
  EXPECT_EQ(parseAll(clientFrame(1, std::string(1000, 'a')), 1000).size(), 1u);
}

TEST(WebSocketParserTest, CloseFrames) {
  auto none = parseAll(clientFrame(8, ""));
  ASSERT_EQ(none.size(), 1u);
  EXPECT_EQ(none[0], (Seen{Event::Kind::Close, "", kNoStatus}));
  auto with = parseAll(clientFrame(8, std::string("\x0f\xa0", 2) + "bye"));
  EXPECT_EQ(with[0], (Seen{Event::Kind::Close, "bye", 4000}));
}

TEST(WebSocketParserTest, IdleParserHoldsNoBuffer) {
  Parser p(1 << 20);
  p.feed(clientFrame(1, std::string(50000, 'x')), [](const Event&) {});
  EXPECT_EQ(p.buffered(), 0u);
  p.feed(clientFrame(1, "abc", false), [](const Event&) {});
  EXPECT_EQ(p.buffered(), 3u);
}

TEST(WebSocketCloseCodeTest, Table) {
  for (uint16_t c : {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 3000, 4999})
    EXPECT_TRUE(validCloseCode(c)) << c;
  for (uint16_t c : {0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000})
    EXPECT_FALSE(validCloseCode(c)) << c;
}

TEST(WebSocketUtf8Test, Validator) {
  auto valid = [](std::string_view s) {
    Utf8Validator v;
    return v.feed(s) && v.complete();
  };
  EXPECT_TRUE(valid("plain ascii, long enough for the fast path"));
  EXPECT_TRUE(valid("\xf0\x9f\x98\x80"));  // U+1F600
  EXPECT_TRUE(valid("\xf4\x8f\xbf\xbf"));  // U+10FFFF
  EXPECT_TRUE(valid("\xed\x9f\xbf"));      // U+D7FF
  EXPECT_FALSE(valid("\xc0\x80"));         // overlong NUL
  EXPECT_FALSE(valid("\xe0\x80\xaf"));     // overlong
  EXPECT_FALSE(valid("\xed\xa0\x80"));     // surrogate
  EXPECT_FALSE(valid("\xf4\x90\x80\x80"));  // above U+10FFFF
  EXPECT_FALSE(valid("\xf5\x80\x80\x80"));
  EXPECT_FALSE(valid("\x80"));
  EXPECT_FALSE(valid("\xe2\x82"));  // incomplete
  // Split at every point, the emoji is still valid.
  std::string emoji = "ab\xf0\x9f\x98\x80yz";
  for (size_t cut = 0; cut <= emoji.size(); ++cut) {
    Utf8Validator v;
    EXPECT_TRUE(v.feed(emoji.substr(0, cut)));
    EXPECT_TRUE(v.feed(emoji.substr(cut)));
    EXPECT_TRUE(v.complete());
  }
}

TEST(WebSocketFrameTest, ServerFrames) {
  for (size_t n : {0u, 125u, 126u, 65535u, 65536u}) {
    std::string f = frame(Opcode::Text, std::string(n, 'x'));
    size_t header = n < 126 ? 2 : n < 65536 ? 4 : 10;
    EXPECT_EQ(f.size(), header + n) << n;
    EXPECT_EQ(static_cast<uint8_t>(f[0]), 0x81);
    EXPECT_EQ(static_cast<uint8_t>(f[1]) & 0x80, 0);  // never masked
  }
  std::string c = closeFrame(1012, "service restart");
  EXPECT_EQ(c, std::string("\x88\x11\x03\xf4", 4) + "service restart");
  // A long reason is cut to fit 125 bytes, never inside a character.
  std::string reason;
  for (int i = 0; i < 60; ++i) reason += "\xc3\xa9";
  std::string cut = closeFrame(1000, reason);
  size_t len = static_cast<uint8_t>(cut[1]);
  EXPECT_LE(len, 125u);
  Utf8Validator v;
  EXPECT_TRUE(v.feed(cut.substr(4)) && v.complete());
}

TEST(WebSocketFrameTest, AcceptKeyFromRfc6455) {
  EXPECT_EQ(acceptKey("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

}  // namespace
}  // namespace dingo::ws
