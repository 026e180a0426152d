// The dashboard's static files (server/web/), embedded in the server at build time by
// cmake/embed_web.cmake. Internal to server/src.
#pragma once

#include <cstddef>
#include <span>

namespace fieldsync::server {

struct WebAsset {
  const char* path;          // relative to server/web/: "index.html", "vendor/chart.umd.min.js"
  const char* content_type;  // "text/javascript; charset=utf-8"
  const char* etag;          // quoted, as sent: "\"0123456789abcdef\"" (SHA-256 prefix of the bytes)
  const unsigned char* data;
  size_t size;
};

std::span<const WebAsset> web_assets();

}  // namespace fieldsync::server
