#pragma once
// A file built into the binary (cmake/EmbedFiles.cmake generates the tables): what the
// admin listener serves as the dashboard, with no file to install or find at run time.
#include <span>
#include <string_view>

namespace dingo {

struct EmbeddedFile {
  std::string_view path;          // the URL path it is served at
  std::string_view content_type;  // from its extension
  std::string_view body;
};

// supervisor/dashboard/: index.html at "/", every other file at "/" + its name.
std::span<const EmbeddedFile> dashboardFiles();

}  // namespace dingo
