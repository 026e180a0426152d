// The head-office dashboard's static files: GET / and GET /app/<path>, from the copy embedded at build time
// (web_assets.h). Internal to server/src.
#pragma once

#include "routes.h"

namespace fieldsync::server {

// The dashboard's Content-Security-Policy: every script, style, image and connection from this server only,
// no inline script or style, no framing (docs/API.md, "Dashboard").
inline constexpr const char* kDashboardCsp =
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

// One route per embedded file, and GET / for index.html.
void add_static_routes(RouteTable& routes);

}  // namespace fieldsync::server
