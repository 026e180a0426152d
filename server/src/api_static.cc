#include "api_static.h"

#include <string>
#include <string_view>

#include "http_session.h"
#include "web_assets.h"

namespace fieldsync::server {

namespace http = boost::beast::http;

namespace {

void serve(const std::shared_ptr<HttpSession>& session, const HttpRequest& req, const WebAsset& asset) {
  // no-cache (not no-store): the browser keeps the file but asks each time, and the ETag makes that a 304, so
  // a dashboard is never a build behind its server.
  HttpSession::Headers headers{
      {"Content-Security-Policy", kDashboardCsp}, {"X-Content-Type-Options", "nosniff"},
      {http::field::x_frame_options, "DENY"},     {"Referrer-Policy", "no-referrer"},
      {http::field::cache_control, "no-cache"},   {http::field::etag, asset.etag}};
  const auto inm = req.message.find(http::field::if_none_match);
  if (inm != req.message.end() && std::string_view(inm->value().data(), inm->value().size()) == asset.etag)
    return session->respond(http::status::not_modified, asset.content_type, "", std::move(headers));
  session->respond(http::status::ok, asset.content_type,
                   std::string(reinterpret_cast<const char*>(asset.data), asset.size), std::move(headers));
}

}  // namespace

void add_static_routes(RouteTable& routes) {
  for (const WebAsset& asset : web_assets()) {
    const std::string path(asset.path);
    auto handler = [&asset](const std::shared_ptr<HttpSession>& session, HttpRequest& req) {
      serve(session, req, asset);
    };
    routes.add({http::verb::get, "/app/" + path, RouteAuth::kPublic, 0, "", "/app", handler});
    if (path == "index.html") routes.add({http::verb::get, "/", RouteAuth::kPublic, 0, "", "/", handler});
  }
}

}  // namespace fieldsync::server
