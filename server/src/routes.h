// The HTTP route table: method + path pattern -> handler, each route with who may call it, how big a body
// it takes and in which content type. HttpSession checks all of that before a handler runs and answers what
// matches no route: an unknown path 404, a known path with another method 405 with Allow. Internal to
// server/src.
#pragma once

#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/verb.hpp>
#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace fieldsync::server {

class HttpSession;

struct HttpRequest {
  boost::beast::http::request<boost::beast::http::string_body> message;
  std::map<std::string, std::string> params;  // the pattern's {name} segments
};

enum class RouteAuth {
  kPublic,    // anyone (the handler may still authenticate: /login checks a password, /sync a token)
  kOperator,  // loopback peers, or any peer with `Authorization: Bearer <metrics_token>` when one is set
};

struct Route {
  boost::beast::http::verb method = boost::beast::http::verb::get;
  std::string pattern;  // "/login", "/accounts/{id}": a {name} segment matches any one non-empty segment
  RouteAuth auth = RouteAuth::kPublic;
  size_t body_limit = 0;     // bytes; 0: no body (413 otherwise)
  std::string content_type;  // what a body must be sent as (415 otherwise); empty: no body expected
  std::string label;         // the metric's path label (fieldsync_http_requests_total)
  std::function<void(const std::shared_ptr<HttpSession>&, HttpRequest&)> handler;
};

class RouteTable {
 public:
  void add(Route route);

  struct Match {
    const Route* route = nullptr;  // null: no route for this method and path
    std::string allow;             // no route for the method but the path exists: its methods ("GET, POST")
    std::string label;             // the path's label when the path exists
    std::map<std::string, std::string> params;
  };
  // The target's query string is ignored. An unknown method (verb::unknown) matches nothing.
  Match find(boost::beast::http::verb method, std::string_view target) const;
  const std::vector<Route>& routes() const { return routes_; }

 private:
  std::vector<Route> routes_;
};

}  // namespace fieldsync::server
