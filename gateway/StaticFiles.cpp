#include "gateway/StaticFiles.h"

namespace dingo {

namespace {

// Browsers revalidate after this; an unchanged file costs a 304 then.
constexpr std::string_view kCacheControl = "Cache-Control: public, max-age=300\r\n";

// If-None-Match is "*" or a list of entity tags, each possibly weak (W/"...").
bool matches(std::string_view if_none_match, std::string_view etag) {
  while (!if_none_match.empty()) {
    size_t comma = if_none_match.find(',');
    std::string_view tag = if_none_match.substr(0, comma);
    while (!tag.empty() && (tag.front() == ' ' || tag.front() == '\t')) tag.remove_prefix(1);
    while (!tag.empty() && (tag.back() == ' ' || tag.back() == '\t')) tag.remove_suffix(1);
    if (tag.starts_with("W/")) tag.remove_prefix(2);
    if (tag == "*" || tag == etag) return true;
    if (comma == std::string_view::npos) break;
    if_none_match.remove_prefix(comma + 1);
  }
  return false;
}

}  // namespace

const EmbeddedFile* findEmbeddedFile(std::string_view path) {
  for (size_t i = 0; i < kEmbeddedFileCount; ++i)
    if (kEmbeddedFiles[i].path == path) return &kEmbeddedFiles[i];
  return nullptr;
}

StaticAnswer answerStatic(const EmbeddedFile& file, bool get_or_head, std::string_view if_none_match) {
  StaticAnswer a;
  if (!get_or_head) {
    a.status = 405;
    a.content_type = "application/json";
    a.body = R"({"error":{"code":"bad_request","message":"this file answers GET and HEAD"}})";
    a.headers = "Allow: GET, HEAD\r\n";
    return a;
  }
  a.headers = "ETag: ";
  a.headers.append(file.etag).append("\r\n").append(kCacheControl);
  a.content_type = file.content_type;
  if (matches(if_none_match, file.etag)) a.status = 304;
  else a.body = file.body;
  return a;
}

}  // namespace dingo
