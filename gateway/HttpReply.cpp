#include "gateway/HttpReply.h"

#include <fmt/format.h>

#include <iterator>

#include "core/Log.h"

namespace dingo {

std::string_view reasonPhrase(int status) {
  switch (status) {
    case 200: return "OK";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 413: return "Payload Too Large";
    case 417: return "Expectation Failed";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
  }
  return "Unknown";
}

void serializeReply(const Reply& r, bool keep_alive, bool head_only, std::string& out) {
  out.clear();
  // nosniff: a browser takes a JSON answer (which may echo the request's path) for
  // nothing else, such as HTML.
  fmt::format_to(std::back_inserter(out), "HTTP/1.1 {} {}\r\nContent-Type: {}\r\n", r.status, reasonPhrase(r.status),
                 r.content_type);
  // A 304's Content-Length would have to be the full body's (RFC 9110 8.6): leave it out.
  if (r.status != 304) fmt::format_to(std::back_inserter(out), "Content-Length: {}\r\n", r.body.size());
  out += "X-Content-Type-Options: nosniff\r\n";
  if (!keep_alive) out += "Connection: close\r\n";
  out += r.extra_headers;
  out += "\r\n";
  if (!head_only) out += r.body;
}

void setError(Reply& r, int status, std::string_view code, std::string_view message) {
  r.status = status;
  r.content_type = "application/json";
  r.body = fmt::format(R"({{"error":{{"code":"{}","message":"{}"}}}})", code, jsonEscape(message));
}

void setUnavailable(Reply& r, std::string_view why) {
  setError(r, 503, "unavailable", why);
  r.extra_headers = "Retry-After: 1\r\n";
}

}  // namespace dingo
