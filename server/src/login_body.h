// The body of POST /login, parsed: {"user": "...", "password": "...", "node": 123 or "123"}. Internal to
// server/src (routes.cc answers with it); a header of its own so the fuzz target (tests/fuzz/login_target.cc)
// runs the very parse the route runs.
#pragma once

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>
#include <cerrno>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>

#include "fieldsync/sync/change.h"

namespace fieldsync::server {

struct LoginBody {
  std::string user;
  std::string password;
  NodeId node = 0;  // never 0 in a parsed body
};

// nullopt: not JSON, not an object, user or password missing or not strings, node missing, 0 or unreadable.
inline std::optional<LoginBody> parse_login_body(std::string_view text) {
  boost::system::error_code jec;
  boost::json::value body = boost::json::parse(text, jec);
  const boost::json::object* o = jec ? nullptr : body.if_object();
  const boost::json::string* user =
      o ? o->if_contains("user") ? o->at("user").if_string() : nullptr : nullptr;
  const boost::json::string* password =
      o ? o->if_contains("password") ? o->at("password").if_string() : nullptr : nullptr;
  NodeId node = 0;
  if (o != nullptr && o->if_contains("node")) {
    const boost::json::value& n = o->at("node");
    if (n.is_uint64()) {
      node = n.as_uint64();
    } else if (n.is_int64() && n.as_int64() > 0) {
      node = static_cast<NodeId>(n.as_int64());
    } else if (n.is_string()) {
      // Node ids use all 64 bits, beyond what JSON numbers carry exactly in many languages: accept text.
      const boost::json::string& t = n.as_string();
      char* end = nullptr;
      errno = 0;
      unsigned long long v = std::strtoull(t.c_str(), &end, 10);
      if (errno == 0 && end != t.c_str() && *end == '\0') node = v;
    }
  }
  if (user == nullptr || password == nullptr || node == 0) return std::nullopt;
  return LoginBody{std::string(*user), std::string(*password), node};
}

}  // namespace fieldsync::server
