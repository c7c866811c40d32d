#pragma once
// The files every gateway serves from its own binary: the browser client at /v1/client.js
// and the demo page at /demo/chat.html. They are embedded at build time
// (cmake/EmbedFiles.cmake), so what a gateway serves always matches its protocol.
#include <cstddef>
#include <string>
#include <string_view>

namespace dingo {

struct EmbeddedFile {
  std::string_view path;          // the URL path, e.g. "/v1/client.js"
  std::string_view content_type;
  std::string_view body;
  std::string_view etag;          // quoted: a hash of the body
};

// Defined by the generated EmbeddedFiles.cpp.
extern const EmbeddedFile kEmbeddedFiles[];
extern const size_t kEmbeddedFileCount;

// The embedded file at `path`, or nullptr.
const EmbeddedFile* findEmbeddedFile(std::string_view path);

// The answer to a request for an embedded file.
struct StaticAnswer {
  int status = 200;               // 200, 304 (not modified) or 405
  std::string_view content_type;
  std::string_view body;
  std::string headers;            // complete "Name: value\r\n" lines
};

// GET and HEAD only (`get_or_head`); `if_none_match` is the request's If-None-Match header.
StaticAnswer answerStatic(const EmbeddedFile& file, bool get_or_head, std::string_view if_none_match);

}  // namespace dingo
