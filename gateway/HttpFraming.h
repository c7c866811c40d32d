#pragma once
// HTTP/1.1 request framing (RFC 9112, with the method and Expect rules of RFC 9110): the
// rules that decide, from a request's head alone, how its body is delimited, which
// resource it names, and whether it can be served at all. A request whose framing is in
// doubt is never served: a server and a proxy in front of it that delimit a body
// differently let a client smuggle a second request inside the first.
//
// Pure: no I/O, no Asio or Beast in this header. HttpSession builds a RequestHead as soon
// as the parser has the head and applies the verdict before it reads a byte of the body;
// unit tests drive the rules table by table; a fuzzer can call checkRequestHead directly.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace dingo {

// One field line as received; the name in any case.
struct HeaderField {
  std::string_view name;
  std::string_view value;
};

// A parsed request line and its field lines. Views into the parser's buffer.
struct RequestHead {
  std::string_view method;  // case-sensitive, as sent
  std::string_view target;  // the request-target, as sent
  unsigned version = 11;    // 10 * major + minor: 10 is HTTP/1.0, 11 is HTTP/1.1
  std::span<const HeaderField> fields;  // every field line, in order, duplicates kept
};

enum class BodyFraming { None, ContentLength, Chunked };

// What checkRequestHead decides.
struct FramingVerdict {
  int status = 0;                // 0: serve the request; else answer this status
  std::string_view message;      // why (static text, for the error body)
  bool close = false;            // close after the answer (e.g. its body was not read)
  BodyFraming body = BodyFraming::None;
  uint64_t content_length = 0;   // with BodyFraming::ContentLength
  bool expect_continue = false;  // answer "100 Continue" before reading the body
  std::string_view target;       // in origin-form ("/path?query"), also for an absolute-form
                                 // request ("*" for OPTIONS *)
  std::string_view authority;    // the host the request is for: an absolute-form target's
                                 // authority, else the Host field's value
  bool ok() const { return status == 0; }
};

// Applies, in this order (the first rule broken decides):
// - HTTP major version other than 1: 505, close.
// - RFC 9112 6.1 and 6.3: Transfer-Encoding in an HTTP/1.0 request: 400, close. A
//   Transfer-Encoding whose final coding is not chunked (rule 4), chunked applied twice,
//   or an empty one: 400, close. Another coding before chunked (gzip, ...): 501, close,
//   since none is implemented. Transfer-Encoding with Content-Length (rule 3): 400, close.
//   More than one Content-Length field line, a list, or a value that is not 1*DIGIT or
//   does not fit 64 bits (rule 5): 400, close. Neither (rule 6): no body.
// - RFC 9112 3.2: an HTTP/1.1 request without Host, any request with more than one Host
//   line, or a Host value that is not an authority: 400.
// - RFC 9110 9.1: a method this server does not know (anything but GET, HEAD, POST, PUT,
//   DELETE, OPTIONS, TRACE and PATCH; CONNECT too: this is no proxy): 501.
// - RFC 9112 3.2: the target in origin-form ("/..."), absolute-form ("http://host/...",
//   "https://..."; the authority then names the host, userinfo is refused) or asterisk-form
//   (OPTIONS only); anything else: 400.
// - RFC 9110 10.1.1: Expect other than 100-continue: 417. 100-continue from an HTTP/1.0
//   client is ignored, as is one on a request with no body.
// Errors after the framing rules close only when the request has a body (it was not
// read); a request without one leaves the connection usable.
FramingVerdict checkRequestHead(const RequestHead& head);

// RFC 9112 2.2: a server should ignore at least one empty line (CRLF, or a bare LF)
// received before a request line. The number of such bytes at the start of `data`.
size_t leadingEmptyLines(std::string_view data);

// At most this many bytes of empty lines are skipped before a request: a peer that sends
// more is not speaking HTTP (and could hold a connection open with them forever).
constexpr size_t kMaxLeadingEmptyLineBytes = 64;

}  // namespace dingo
