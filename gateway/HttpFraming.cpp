// HTTP/1.1 request framing rules (RFC 9112): see HttpFraming.h for the list, in order.
#include "gateway/HttpFraming.h"

#include <array>

namespace dingo {

namespace {

constexpr std::string_view kChunked = "chunked";

char lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (lower(a[i]) != lower(b[i])) return false;
  return true;
}

bool isOws(char c) { return c == ' ' || c == '\t'; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && isOws(s.front())) s.remove_prefix(1);
  while (!s.empty() && isOws(s.back())) s.remove_suffix(1);
  return s;
}

// Calls `each` with every non-empty element of a comma-separated list (RFC 9110 5.6.1:
// empty elements are allowed and do not count), trimmed. Stops when `each` returns false.
template <typename Each>
bool forEachElement(std::string_view list, Each each) {
  while (!list.empty()) {
    size_t comma = list.find(',');
    std::string_view element = trim(list.substr(0, comma));
    list = comma == std::string_view::npos ? std::string_view() : list.substr(comma + 1);
    if (!element.empty() && !each(element)) return false;
  }
  return true;
}

bool isDigit(char c) { return c >= '0' && c <= '9'; }

// 1*DIGIT that fits 64 bits.
bool parseLength(std::string_view s, uint64_t& out) {
  if (s.empty()) return false;
  uint64_t v = 0;
  for (char c : s) {
    if (!isDigit(c)) return false;
    uint64_t d = static_cast<uint64_t>(c - '0');
    if (v > (UINT64_MAX - d) / 10) return false;
    v = v * 10 + d;
  }
  out = v;
  return true;
}

// RFC 3986 authority without userinfo: host [ ":" port ], the host a reg-name (unreserved,
// pct-encoded, sub-delims), an IPv4 address or an IP-literal in brackets. Empty is valid
// for Host (RFC 9112 3.2: a target URI without an authority).
bool validAuthority(std::string_view a) {
  if (a.empty()) return true;
  std::string_view host = a, port;
  if (a.front() == '[') {
    size_t close = a.find(']');
    if (close == std::string_view::npos) return false;
    host = a.substr(1, close - 1);
    std::string_view rest = a.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return false;
      port = rest.substr(1);
    }
    if (host.empty()) return false;
    for (char c : host)
      if (!(isDigit(c) || (lower(c) >= 'a' && lower(c) <= 'f') || c == ':' || c == '.' || lower(c) == 'v'))
        return false;
  } else {
    size_t colon = a.rfind(':');
    if (colon != std::string_view::npos) {
      host = a.substr(0, colon);
      port = a.substr(colon + 1);
    }
    for (char c : host) {
      bool ok = isDigit(c) || (lower(c) >= 'a' && lower(c) <= 'z') || c == '-' || c == '.' || c == '_' ||
                c == '~' || c == '%' || c == '!' || c == '$' || c == '&' || c == '\'' || c == '(' || c == ')' ||
                c == '*' || c == '+' || c == ',' || c == ';' || c == '=';
      if (!ok) return false;
    }
    if (colon != std::string_view::npos && host.empty()) return false;
  }
  if (port.size() > 5) return false;
  for (char c : port)
    if (!isDigit(c)) return false;
  return true;
}

// The methods that exist for this server: a resource that does not allow one answers 405
// with Allow. Anything else is not implemented (501).
bool knownMethod(std::string_view m) {
  static constexpr std::array<std::string_view, 8> kKnown = {"GET",     "HEAD",  "POST",  "PUT",
                                                             "DELETE",  "OPTIONS", "TRACE", "PATCH"};
  for (std::string_view k : kKnown)
    if (m == k) return true;
  return false;
}

FramingVerdict reject(FramingVerdict v, int status, std::string_view message, bool close) {
  v.status = status;
  v.message = message;
  v.close = close;
  v.expect_continue = false;
  return v;
}

}  // namespace

size_t leadingEmptyLines(std::string_view data) {
  size_t i = 0;
  for (;;) {
    if (i < data.size() && data[i] == '\n') {
      ++i;
    } else if (i + 1 < data.size() && data[i] == '\r' && data[i + 1] == '\n') {
      i += 2;
    } else {
      return i;
    }
  }
}

FramingVerdict checkRequestHead(const RequestHead& head) {
  FramingVerdict v;
  if (head.version / 10 != 1) return reject(v, 505, "only HTTP/1.0 and HTTP/1.1 are supported", true);

  // ---- the body: Transfer-Encoding and Content-Length (RFC 9112 6.1, 6.3) ----
  size_t te_lines = 0, cl_lines = 0, host_lines = 0;
  std::string_view host, cl_value;
  size_t codings = 0, chunked_count = 0;
  bool last_chunked = false, other_coding = false;
  bool expect_continue = false, expect_other = false;
  for (const HeaderField& f : head.fields) {
    if (iequals(f.name, "transfer-encoding")) {
      ++te_lines;
      forEachElement(f.value, [&](std::string_view coding) {
        last_chunked = iequals(coding, kChunked);
        chunked_count += last_chunked ? 1 : 0;
        other_coding = other_coding || !last_chunked;
        ++codings;
        return true;
      });
    } else if (iequals(f.name, "content-length")) {
      ++cl_lines;
      cl_value = f.value;
    } else if (iequals(f.name, "host")) {
      ++host_lines;
      host = f.value;
    } else if (iequals(f.name, "expect")) {
      forEachElement(f.value, [&](std::string_view e) {
        if (iequals(e, "100-continue")) expect_continue = true;
        else expect_other = true;
        return true;
      });
    }
  }
  if (te_lines > 0) {
    if (head.version < 11) return reject(v, 400, "Transfer-Encoding is not allowed in an HTTP/1.0 request", true);
    if (cl_lines > 0) return reject(v, 400, "a request may not have both Transfer-Encoding and Content-Length", true);
    if (codings == 0) return reject(v, 400, "Transfer-Encoding is empty", true);
    if (!last_chunked) return reject(v, 400, "the final transfer coding of a request must be chunked", true);
    if (chunked_count > 1) return reject(v, 400, "chunked may be applied only once", true);
    if (other_coding) return reject(v, 501, "no transfer coding but chunked is implemented", true);
    v.body = BodyFraming::Chunked;
  } else if (cl_lines > 0) {
    if (cl_lines > 1) return reject(v, 400, "more than one Content-Length", true);
    if (!parseLength(trim(cl_value), v.content_length)) return reject(v, 400, "Content-Length must be one decimal number", true);
    if (v.content_length > 0) v.body = BodyFraming::ContentLength;
  }
  // From here on the body is delimited: an error answer closes only when it goes unread.
  const bool unread_body = v.body != BodyFraming::None;

  // ---- the host (RFC 9112 3.2) ----
  if (host_lines > 1) return reject(v, 400, "more than one Host", unread_body);
  if (host_lines == 0 && head.version >= 11) return reject(v, 400, "an HTTP/1.1 request needs Host", unread_body);
  if (!validAuthority(trim(host))) return reject(v, 400, "Host is not a valid host[:port]", unread_body);
  v.authority = trim(host);

  // ---- the method (RFC 9110 9.1) ----
  if (!knownMethod(head.method)) return reject(v, 501, "this method is not implemented", unread_body);

  // ---- the target (RFC 9112 3.2) ----
  std::string_view t = head.target;
  if (!t.empty() && t.front() == '/') {
    v.target = t;
  } else if (t == "*") {
    if (head.method != "OPTIONS") return reject(v, 400, "the asterisk-form target is for OPTIONS", unread_body);
    v.target = t;
  } else {
    size_t scheme_len = 0;
    if (t.size() > 7 && iequals(t.substr(0, 7), "http://")) scheme_len = 7;
    else if (t.size() > 8 && iequals(t.substr(0, 8), "https://")) scheme_len = 8;
    if (scheme_len == 0) return reject(v, 400, "the target must be a path or an absolute http(s) URI", unread_body);
    std::string_view rest = t.substr(scheme_len);
    size_t end = rest.find_first_of("/?#");
    std::string_view authority = rest.substr(0, end);
    rest = end == std::string_view::npos ? std::string_view() : rest.substr(end);
    if (authority.empty() || authority.find('@') != std::string_view::npos || !validAuthority(authority))
      return reject(v, 400, "the target's authority is not a valid host[:port]", unread_body);
    // "http://h" means "/"; "http://h?q" would need a "/" put in: no client sends it.
    if (rest.empty()) rest = "/";
    if (rest.front() != '/') return reject(v, 400, "an absolute target's path must start with /", unread_body);
    v.target = rest;
    v.authority = authority;  // RFC 9112 3.2.2: it replaces Host
  }

  // ---- expectations (RFC 9110 10.1.1) ----
  if (expect_other) return reject(v, 417, "the only expectation supported is 100-continue", unread_body);
  v.expect_continue = expect_continue && head.version >= 11 && unread_body;
  return v;
}

}  // namespace dingo
