// The request framing rules (gateway/HttpFraming.h), table by table against RFC 9112's
// own lists: 6.1 and 6.3 (the body), 3.2 (Host and the target forms), 2.2 (empty lines
// before a request), 2.3 (the version), and RFC 9110 9.1 (methods) and 10.1.1 (Expect).
#include "gateway/HttpFraming.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace dingo {
namespace {

struct Case {
  const char* what;
  std::string method = "POST";
  std::string target = "/v1/publish/a";
  unsigned version = 11;
  std::vector<std::pair<std::string, std::string>> fields;
  int status = 0;       // 0: accepted
  bool close = false;   // expected when rejected
};

FramingVerdict check(const Case& c) {
  std::vector<HeaderField> fields;
  for (const auto& [n, v] : c.fields) fields.push_back({n, v});
  return checkRequestHead({c.method, c.target, c.version, fields});
}

void runTable(const std::vector<Case>& table) {
  for (const Case& c : table) {
    FramingVerdict v = check(c);
    EXPECT_EQ(v.status, c.status) << c.what << ": " << v.message;
    if (c.status != 0) {
      EXPECT_EQ(v.close, c.close) << c.what;
      EXPECT_FALSE(v.message.empty()) << c.what;
      EXPECT_FALSE(v.expect_continue) << c.what;
    }
  }
}

using F = std::vector<std::pair<std::string, std::string>>;

// RFC 9112 6.1 (Transfer-Encoding) and 6.3 (message body length), as they apply to
// requests. Every rejection here closes: the body was not read and cannot be skipped.
TEST(HttpFramingTest, BodyLengthRfc9112Section6) {
  runTable({
      // 6.3 rule 4: chunked is the final coding: the body is chunked.
      {"chunked", "POST", "/p", 11, F{{"Host", "h"}, {"Transfer-Encoding", "chunked"}}},
      {"CHUNKED in any case", "POST", "/p", 11, F{{"Host", "h"}, {"transfer-encoding", "Chunked"}}},
      {"chunked with empty list elements", "POST", "/p", 11, F{{"Host", "h"}, {"Transfer-Encoding", " , chunked ,"}}},
      // 6.3 rule 4: the final coding is not chunked: 400 and close (the smuggling case).
      {"chunked, identity", "POST", "/p", 11, F{{"Host", "h"}, {"Transfer-Encoding", "chunked, identity"}}, 400, true},
      {"identity", "POST", "/p", 11, F{{"Host", "h"}, {"Transfer-Encoding", "identity"}}, 400, true},
      {"gzip only", "POST", "/p", 11, F{{"Host", "h"}, {"Transfer-Encoding", "gzip"}}, 400, true},
      {"chunked then gzip on two lines", "POST", "/p", 11,
       F{{"Host", "h"}, {"Transfer-Encoding", "chunked"}, {"Transfer-Encoding", "gzip"}}, 400, true},
      {"empty", "POST", "/p", 11, F{{"Host", "h"}, {"Transfer-Encoding", ""}}, 400, true},
      {"only commas", "POST", "/p", 11, F{{"Host", "h"}, {"Transfer-Encoding", " , "}}, 400, true},
      {"chunked with a parameter", "POST", "/p", 11, F{{"Host", "h"}, {"Transfer-Encoding", "chunked;x=1"}}, 400, true},
      // 6.1: chunked at most once.
      {"chunked, chunked", "POST", "/p", 11, F{{"Host", "h"}, {"Transfer-Encoding", "chunked, chunked"}}, 400, true},
      {"chunked on two lines", "POST", "/p", 11,
       F{{"Host", "h"}, {"Transfer-Encoding", "chunked"}, {"Transfer-Encoding", "chunked"}}, 400, true},
      // 6.1: a coding we do not implement: 501.
      {"gzip, chunked", "POST", "/p", 11, F{{"Host", "h"}, {"Transfer-Encoding", "gzip, chunked"}}, 501, true},
      {"gzip then chunked on two lines", "POST", "/p", 11,
       F{{"Host", "h"}, {"Transfer-Encoding", "gzip"}, {"Transfer-Encoding", "chunked"}}, 501, true},
      // 6.1: Transfer-Encoding in an HTTP/1.0 request: faulty framing, 400 and close.
      {"HTTP/1.0 with chunked", "POST", "/p", 10, F{{"Transfer-Encoding", "chunked"}}, 400, true},
      // 6.3 rule 3: both: 400 and close (whatever the order).
      {"TE then CL", "POST", "/p", 11, F{{"Host", "h"}, {"Transfer-Encoding", "chunked"}, {"Content-Length", "5"}}, 400, true},
      {"CL then TE", "POST", "/p", 11, F{{"Host", "h"}, {"Content-Length", "5"}, {"Transfer-Encoding", "chunked"}}, 400, true},
      // 6.3 rule 5: Content-Length.
      {"Content-Length", "POST", "/p", 11, F{{"Host", "h"}, {"Content-Length", "5"}}},
      {"Content-Length 0", "POST", "/p", 11, F{{"Host", "h"}, {"Content-Length", "0"}}},
      {"Content-Length with spaces around", "POST", "/p", 11, F{{"Host", "h"}, {"Content-Length", " 5 "}}},
      {"Content-Length max", "POST", "/p", 11, F{{"Host", "h"}, {"Content-Length", "18446744073709551615"}}},
      {"two equal lines", "POST", "/p", 11, F{{"Host", "h"}, {"Content-Length", "5"}, {"Content-Length", "5"}}, 400, true},
      {"two different lines", "POST", "/p", 11, F{{"Host", "h"}, {"Content-Length", "5"}, {"Content-Length", "6"}}, 400, true},
      {"a list", "POST", "/p", 11, F{{"Host", "h"}, {"Content-Length", "5, 5"}}, 400, true},
      {"signed", "POST", "/p", 11, F{{"Host", "h"}, {"Content-Length", "+5"}}, 400, true},
      {"negative", "POST", "/p", 11, F{{"Host", "h"}, {"Content-Length", "-1"}}, 400, true},
      {"hex", "POST", "/p", 11, F{{"Host", "h"}, {"Content-Length", "0x5"}}, 400, true},
      {"empty", "POST", "/p", 11, F{{"Host", "h"}, {"Content-Length", ""}}, 400, true},
      {"overflow", "POST", "/p", 11, F{{"Host", "h"}, {"Content-Length", "18446744073709551616"}}, 400, true},
      // 6.3 rule 6 (requests): neither: no body.
      {"no body", "GET", "/p", 11, F{{"Host", "h"}}},
      {"HTTP/1.0 Content-Length", "POST", "/p", 10, F{{"Content-Length", "5"}}},
  });
}

TEST(HttpFramingTest, FramingIsReported) {
  std::vector<HeaderField> chunked{{"Host", "h"}, {"Transfer-Encoding", "chunked"}};
  FramingVerdict v = checkRequestHead({"POST", "/p", 11, chunked});
  EXPECT_EQ(v.body, BodyFraming::Chunked);
  std::vector<HeaderField> length{{"Host", "h"}, {"Content-Length", "42"}};
  v = checkRequestHead({"POST", "/p", 11, length});
  EXPECT_EQ(v.body, BodyFraming::ContentLength);
  EXPECT_EQ(v.content_length, 42u);
  std::vector<HeaderField> zero{{"Host", "h"}, {"Content-Length", "0"}};
  v = checkRequestHead({"POST", "/p", 11, zero});
  EXPECT_EQ(v.body, BodyFraming::None);
  std::vector<HeaderField> none{{"Host", "h"}};
  v = checkRequestHead({"GET", "/p", 11, none});
  EXPECT_EQ(v.body, BodyFraming::None);
}

// RFC 9112 3.2: Host. A request without a body stays on a usable connection.
TEST(HttpFramingTest, HostRfc9112Section3_2) {
  runTable({
      {"HTTP/1.1 without Host", "GET", "/p", 11, F{}, 400, false},
      {"HTTP/1.1 without Host, with a body", "POST", "/p", 11, F{{"Content-Length", "1"}}, 400, true},
      {"HTTP/1.0 without Host", "GET", "/p", 10, F{}},
      {"two Host lines", "GET", "/p", 11, F{{"Host", "a"}, {"Host", "a"}}, 400, false},
      {"two Host lines in HTTP/1.0", "GET", "/p", 10, F{{"Host", "a"}, {"host", "b"}}, 400, false},
      {"empty Host", "GET", "/p", 11, F{{"Host", ""}}},
      {"host:port", "GET", "/p", 11, F{{"Host", "gw.example.com:8080"}}},
      {"IPv4:port", "GET", "/p", 11, F{{"Host", "127.0.0.1:80"}}},
      {"IPv6 literal", "GET", "/p", 11, F{{"Host", "[::1]:8443"}}},
      {"a space inside", "GET", "/p", 11, F{{"Host", "a b"}}, 400, false},
      {"userinfo", "GET", "/p", 11, F{{"Host", "u@h"}}, 400, false},
      {"a path", "GET", "/p", 11, F{{"Host", "h/x"}}, 400, false},
      {"a bad port", "GET", "/p", 11, F{{"Host", "h:8x"}}, 400, false},
      {"a long port", "GET", "/p", 11, F{{"Host", "h:123456"}}, 400, false},
      {"an open bracket", "GET", "/p", 11, F{{"Host", "[::1"}}, 400, false},
  });
}

// RFC 9112 3.2.1-3.2.4: the forms of request-target a server meets.
TEST(HttpFramingTest, TargetFormsRfc9112Section3_2) {
  runTable({
      {"origin-form", "GET", "/healthz?x=1", 11, F{{"Host", "h"}}},
      {"absolute-form", "GET", "http://gw/healthz", 11, F{{"Host", "h"}}},
      {"absolute-form https", "GET", "HTTPS://gw:443/v1/nodes?x", 11, F{{"Host", "h"}}},
      {"absolute-form without a path", "GET", "http://gw", 11, F{{"Host", "h"}}},
      {"absolute-form with userinfo", "GET", "http://u:p@gw/healthz", 11, F{{"Host", "h"}}, 400, false},
      {"absolute-form without authority", "GET", "http:///healthz", 11, F{{"Host", "h"}}, 400, false},
      {"another scheme", "GET", "ftp://gw/healthz", 11, F{{"Host", "h"}}, 400, false},
      {"asterisk-form for OPTIONS", "OPTIONS", "*", 11, F{{"Host", "h"}}},
      {"asterisk-form for GET", "GET", "*", 11, F{{"Host", "h"}}, 400, false},
      {"no slash", "GET", "healthz", 11, F{{"Host", "h"}}, 400, false},
      {"authority-form", "GET", "gw:443", 11, F{{"Host", "h"}}, 400, false},
  });
  std::vector<HeaderField> host{{"Host", "other:1"}};
  FramingVerdict v = checkRequestHead({"GET", "http://gw.example:8080/healthz?a=b", 11, host});
  ASSERT_TRUE(v.ok()) << v.message;
  EXPECT_EQ(v.target, "/healthz?a=b");
  EXPECT_EQ(v.authority, "gw.example:8080");  // RFC 9112 3.2.2: it replaces Host
  v = checkRequestHead({"GET", "http://gw", 11, host});
  EXPECT_EQ(v.target, "/");
  v = checkRequestHead({"GET", "/x", 11, host});
  EXPECT_EQ(v.target, "/x");
  EXPECT_EQ(v.authority, "other:1");
}

// RFC 9110 9.1: an unknown or unimplemented method is 501; a known one that a resource
// does not allow is for the resource to answer (405 with Allow).
TEST(HttpFramingTest, MethodsRfc9110Section9_1) {
  for (const char* m : {"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "TRACE", "PATCH"})
    runTable({{m, m, "/p", 11, F{{"Host", "h"}}}});
  runTable({
      {"FOO", "FOO", "/p", 11, F{{"Host", "h"}}, 501, false},
      {"lowercase get: methods are case-sensitive", "get", "/p", 11, F{{"Host", "h"}}, 501, false},
      {"PROPFIND", "PROPFIND", "/p", 11, F{{"Host", "h"}}, 501, false},
      {"CONNECT: not a proxy", "CONNECT", "gw:443", 11, F{{"Host", "gw:443"}}, 501, false},
      {"unknown with a body", "FOO", "/p", 11, F{{"Host", "h"}, {"Content-Length", "3"}}, 501, true},
  });
}

// RFC 9110 10.1.1: Expect.
TEST(HttpFramingTest, ExpectRfc9110Section10_1_1) {
  runTable({
      {"100-continue", "POST", "/p", 11, F{{"Host", "h"}, {"Content-Length", "3"}, {"Expect", "100-continue"}}},
      {"100-Continue in any case", "POST", "/p", 11, F{{"Host", "h"}, {"Content-Length", "3"}, {"Expect", "100-Continue"}}},
      {"something else", "POST", "/p", 11, F{{"Host", "h"}, {"Content-Length", "3"}, {"Expect", "200-ok"}}, 417, true},
      {"100-continue and more", "POST", "/p", 11,
       F{{"Host", "h"}, {"Content-Length", "3"}, {"Expect", "100-continue, foo"}}, 417, true},
      {"something else without a body", "GET", "/p", 11, F{{"Host", "h"}, {"Expect", "x"}}, 417, false},
  });
  auto expects = [](unsigned version, std::vector<HeaderField> fields) {
    return checkRequestHead({"POST", "/p", version, fields}).expect_continue;
  };
  EXPECT_TRUE(expects(11, {{"Host", "h"}, {"Content-Length", "3"}, {"Expect", "100-continue"}}));
  EXPECT_TRUE(expects(11, {{"Host", "h"}, {"Transfer-Encoding", "chunked"}, {"Expect", "100-continue"}}));
  // Nothing to wait for: no body.
  EXPECT_FALSE(expects(11, {{"Host", "h"}, {"Content-Length", "0"}, {"Expect", "100-continue"}}));
  // An HTTP/1.0 client gets no 100 (RFC 9110 15.2: it does not understand one).
  EXPECT_FALSE(expects(10, {{"Content-Length", "3"}, {"Expect", "100-continue"}}));
}

// RFC 9112 2.3: HTTP/1.x only.
TEST(HttpFramingTest, VersionRfc9112Section2_3) {
  runTable({
      {"HTTP/1.0", "GET", "/p", 10, F{}},
      {"HTTP/1.1", "GET", "/p", 11, F{{"Host", "h"}}},
      {"HTTP/1.2 is 1.x", "GET", "/p", 12, F{{"Host", "h"}}},
      {"HTTP/2.0", "GET", "/p", 20, F{{"Host", "h"}}, 505, true},
      {"HTTP/0.9", "GET", "/p", 9, F{}, 505, true},
  });
}

// RFC 9112 2.2: empty lines before a request line.
TEST(HttpFramingTest, LeadingEmptyLinesRfc9112Section2_2) {
  EXPECT_EQ(leadingEmptyLines(""), 0u);
  EXPECT_EQ(leadingEmptyLines("GET / HTTP/1.1\r\n"), 0u);
  EXPECT_EQ(leadingEmptyLines("\r\nGET"), 2u);
  EXPECT_EQ(leadingEmptyLines("\r\n\r\n\nGET"), 5u);
  EXPECT_EQ(leadingEmptyLines("\r\n\r"), 2u);  // a CR alone may be half of the next CRLF
  EXPECT_EQ(leadingEmptyLines("\rGET"), 0u);
  EXPECT_EQ(leadingEmptyLines(" \r\nGET"), 0u);  // a line with a space is not empty
}

}  // namespace
}  // namespace dingo
