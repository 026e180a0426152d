#include "routes.h"

#include <boost/asio/post.hpp>
#include <boost/beast/websocket/rfc6455.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <cerrno>
#include <cstdlib>

#include "api.h"
#include "api_static.h"
#include "http_session.h"
#include "login_body.h"
#include "wall_clock.h"

namespace fieldsync::server {

namespace http = boost::beast::http;
namespace json = boost::json;

namespace {

std::vector<std::string_view> segments(std::string_view path) {
  std::vector<std::string_view> out;
  for (size_t i = 0; i <= path.size();) {
    size_t j = path.find('/', i);
    if (j == std::string_view::npos) j = path.size();
    if (j > i) out.push_back(path.substr(i, j - i));
    i = j + 1;
  }
  return out;
}

bool matches(std::string_view pattern, std::string_view path, std::map<std::string, std::string>* params) {
  if (pattern.empty() || path.empty() || path.front() != '/') return false;
  const std::vector<std::string_view> p = segments(pattern), t = segments(path);
  if (p.size() != t.size()) return false;
  for (size_t i = 0; i < p.size(); ++i) {
    if (p[i].size() >= 2 && p[i].front() == '{' && p[i].back() == '}') {
      if (params != nullptr) (*params)[std::string(p[i].substr(1, p[i].size() - 2))] = std::string(t[i]);
    } else if (p[i] != t[i]) {
      return false;
    }
  }
  return true;
}

std::string json_error(std::string_view code, std::string_view message) {
  boost::json::object o;
  o["error"] = code;
  o["message"] = message;
  return boost::json::serialize(o) + "\n";
}

// POST /login: {"user": "...", "password": "...", "node": 123 or "123"}.
void login(const std::shared_ptr<HttpSession>& session, HttpRequest& req) {
  NetServer::Impl& impl = session->server();
  const std::string address =
      session->peer_address() ? session->peer_address()->to_string() : session->peer();
  const std::optional<LoginBody> body = parse_login_body(req.message.body());
  if (!body) {
    impl.metrics.add(Counter::kLogins, 1, "bad_request");
    return session->respond(http::status::bad_request, "application/json",
                            json_error("bad_request", "expected a JSON object with user, password and node"));
  }
  const int64_t now = wall_ms();
  if (!impl.login_throttle.begin(address, now)) {
    impl.metrics.add(Counter::kLogins, 1, "rate_limited");
    impl.log("event=login_throttled peer=" + session->peer());
    return session->respond(
        http::status::too_many_requests, "application/json",
        json_error("rate_limited", "too many failed logins from this address; try again later"),
        {{http::field::retry_after, std::to_string(limits::kLoginWindowMs / 1000)}});
  }
  if (impl.logins_queued.fetch_add(1) >= limits::kMaxLoginsQueued) {
    impl.logins_queued.fetch_sub(1);
    impl.login_throttle.succeeded(address, now);  // not tried: does not count
    impl.metrics.add(Counter::kLogins, 1, "busy");
    return session->respond(http::status::service_unavailable, "application/json",
                            json_error("busy", "too many logins in progress; try again shortly"),
                            {{http::field::retry_after, "2"}});
  }
  // The KDF runs on a login thread; the answer comes back to the session's strand.
  boost::asio::post(*impl.login_pool, [session, u = body->user, pw = body->password, node = body->node,
                                       address, now] {
    NetServer::Impl& impl = session->server();
    Result<LoginGrant> grant = impl.options.login(u, pw, node, wall_ms());
    impl.logins_queued.fetch_sub(1);
    if (grant) impl.login_throttle.succeeded(address, now);
    boost::asio::post(session->strand(), [session, grant = std::move(grant), u, node]() mutable {
      NetServer::Impl& impl = session->server();
      const std::string line = "event=login session=" + std::to_string(session->id()) +
                               " peer=" + session->peer() + " user=" + u + " node=" + std::to_string(node);
      if (grant) {
        impl.metrics.add(Counter::kLogins, 1, "ok");
        impl.log(line + " outcome=ok");
        boost::json::object o;
        o["token"] = grant->token;
        o["expires_at_ms"] = grant->expires_at_ms;
        return session->respond(http::status::ok, "application/json", boost::json::serialize(o) + "\n");
      }
      impl.metrics.add(Counter::kLogins, 1, "failed");
      impl.log(line + " outcome=failed");
      // Every failure reads the same and comes late: nothing tells which of user, password or device was
      // wrong.
      session->after(impl.options.login_failure_delay_ms, [session] {
        session->respond(http::status::unauthorized, "application/json",
                         json_error("auth_failed", "authentication failed"));
      });
    });
  });
}

}  // namespace

void RouteTable::add(Route route) {
  routes_.push_back(std::move(route));
}

RouteTable::Match RouteTable::find(http::verb method, std::string_view target) const {
  const std::string_view path = target.substr(0, target.find('?'));
  Match m;
  for (const Route& r : routes_) {
    if (!matches(r.pattern, path, nullptr)) continue;
    if (m.label.empty()) m.label = r.label;
    if (r.method == method && method != http::verb::unknown) {
      m.route = &r;
      m.allow.clear();
      matches(r.pattern, path, &m.params);
      return m;
    }
    if (!m.allow.empty()) m.allow += ", ";
    m.allow += std::string(http::to_string(r.method));
  }
  return m;
}

void add_routes(NetServer::Impl& impl, RouteTable& routes) {
  routes.add({http::verb::get, "/sync", RouteAuth::kPublic, 0, "", "/sync",
              [](const std::shared_ptr<HttpSession>& session, HttpRequest& req) {
                if (boost::beast::websocket::is_upgrade(req.message)) return session->upgrade(req);
                session->respond(http::status::upgrade_required, "text/plain", "/sync is a WebSocket\n",
                                 {{http::field::upgrade, "websocket"}});
              }});
  if (impl.options.login)
    routes.add({http::verb::post, "/login", RouteAuth::kPublic, limits::kMaxHttpBodyBytes, "application/json",
                "/login", login});
  routes.add({http::verb::get, "/metrics", RouteAuth::kOperator, 0, "", "/metrics",
              [](const std::shared_ptr<HttpSession>& session, HttpRequest&) {
                session->respond(http::status::ok, "text/plain; version=0.0.4",
                                 session->server().metrics.render());
              }});
  if (impl.options.directory) add_api_routes(impl, routes);
  routes.add({http::verb::get, "/healthz", RouteAuth::kPublic, 0, "", "/healthz",
              [](const std::shared_ptr<HttpSession>& session, HttpRequest&) {
                if (session->server().stopping)
                  return session->respond(http::status::service_unavailable, "text/plain", "draining\n");
                session->respond(http::status::ok, "text/plain", "ok\n");
              }});
  add_static_routes(routes);
}

}  // namespace fieldsync::server
