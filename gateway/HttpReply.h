#pragma once
// What an HTTP handler answers, and how it goes on the wire. Serialised by hand into one
// buffer: the responses are small and few-shaped, and Beast's generic serializer costs
// more than the rest of a request. Error bodies are {"error":{"code":C,"message":M}}
// (docs/protocol.md).
#include <string>
#include <string_view>

namespace dingo {

struct Reply {
  int status = 200;
  std::string_view content_type = "application/json";
  std::string body;
  std::string extra_headers;  // complete "Name: value\r\n" lines
};

// The reason phrase of a status this server sends.
std::string_view reasonPhrase(int status);

// The response to `r` into `out` (cleared first): status line, Content-Type,
// Content-Length (not for 304), nosniff, Connection: close unless `keep_alive`, the
// extra headers, then the body unless `head_only`.
void serializeReply(const Reply& r, bool keep_alive, bool head_only, std::string& out);

// Makes `r` an error answer; `message` is JSON-escaped.
void setError(Reply& r, int status, std::string_view code, std::string_view message);

// 503 with Retry-After: 1 (the hub is gone, a limit of this worker, draining).
void setUnavailable(Reply& r, std::string_view why);

}  // namespace dingo
