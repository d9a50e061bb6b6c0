// The chat UI's files, embedded into the binary at build time (see web/CMakeLists.txt).
#pragma once

#include <string_view>

namespace eyrie::web {

struct Asset {
  std::string_view path;  // URL path, e.g. "/app.js"
  std::string_view content_type;
  std::string_view body;
  std::string_view etag;  // quoted, from the file's SHA-256: lets browsers revalidate
};

// "/" is index.html; nullptr when no such file (or when built with EYRIE_WEB_UI=OFF).
const Asset* find_asset(std::string_view path);

}  // namespace eyrie::web
