// The head-office API's frame: web sessions, CSRF and Origin checks, roles, the worker threads, errors; and
// the people-and-devices endpoints (users, territories, devices, audit, sync health). api.h has the map.
#include "api.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <algorithm>
#include <boost/asio/post.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <charconv>
#include <set>

#include "fieldsync/io/sqlite_db.h"
#include "fieldsync/server/directory.h"
#include "fieldsync/server/sqlite_store.h"
#include "pg.h"
#include "wall_clock.h"

namespace fieldsync::server {

namespace http = boost::beast::http;
namespace json = boost::json;

namespace {

constexpr std::string_view kCookieName = "fs_session";

std::string random_token() {
  unsigned char raw[32];
  if (RAND_bytes(raw, sizeof raw) != 1) std::abort();  // no entropy: nothing safe to do
  return base64url_encode(raw);
}

// Sessions are found by a digest of their token, so the map's comparisons leak nothing about a token.
std::string token_key(std::string_view token) {
  unsigned char md[32];
  unsigned int len = 0;
  if (EVP_Digest(token.data(), token.size(), md, &len, EVP_sha256(), nullptr) != 1) std::abort();
  return base64url_encode(std::span<const uint8_t>(md, len));
}

bool same_secret(std::string_view a, std::string_view b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace

// Web sessions, in the directory's database (directory.h WebSession): every instance on one database knows
// every session, and a sign-out or a disabled user ends it on all of them. Any worker thread (each call is a
// directory round trip; never on an io thread).
struct ApiState {
  using WebSession = server::WebSession;

  Directory* directory = nullptr;
  std::shared_ptr<ReaderPool> readers;  // set once by register_api_routes, before any request

  int64_t ttl_ms = limits::kWebSessionTtlMs;
  int64_t idle_ms = limits::kWebSessionIdleMs;

  // A use is written back at most this often per session: a write per request would cost every read a
  // directory commit; the idle timeout is then judged up to this late.
  int64_t touch_every_ms() const { return std::min<int64_t>(60'000, idle_ms / 4); }

  // A new session for `user`: its token, with the session in *out.
  Result<std::string> create(const UserId& user, bool bearer, int64_t now_ms, WebSession* out) {
    const std::string token = random_token();
    WebSession s{token_key(token), user, random_token(), bearer, now_ms, now_ms, now_ms + ttl_ms};
    if (Status st = directory->add_web_session(s, limits::kMaxWebSessions, idle_ms); !st) return st;
    *out = std::move(s);
    return token;
  }

  // The live session of `key`, or nullopt (unknown, expired, idle too long: an ended one is removed).
  Result<std::optional<WebSession>> find(const std::string& key, int64_t now_ms) {
    Result<std::optional<WebSession>> s = directory->web_session(key);
    if (!s || !*s) return s;
    WebSession& w = **s;
    if (now_ms >= w.expires_at_ms || now_ms - w.last_used_ms >= idle_ms) {
      (void)directory->remove_web_session(key);
      return std::optional<WebSession>();
    }
    if (now_ms - w.last_used_ms >= touch_every_ms()) {
      if (Status st = directory->touch_web_session(key, now_ms); !st) return st;
      w.last_used_ms = now_ms;
    }
    return s;
  }

  Status erase(const std::string& key) { return directory->remove_web_session(key); }
  Status erase_user(const UserId& user) { return directory->remove_web_sessions_of(user); }
};

ApiError api_error(http::status status, std::string code, std::string message, std::string field) {
  return ApiError{status, std::move(code), std::move(message), std::move(field)};
}

ApiError api_error_from(const Status& status) {
  // The field a rule names: rules.cc describes a change as "<entity> <id>: field <name>: ...".
  std::string field;
  const std::string& m = status.message();
  if (size_t at = m.find(": field "); at != std::string::npos) {
    size_t start = at + 8, end = m.find_first_of(": ", start);
    field = m.substr(start, end == std::string::npos ? std::string::npos : end - start);
  }
  http::status code = http::status::unprocessable_entity;
  switch (status.code()) {
    case ErrorCode::kOutOfScope:
    case ErrorCode::kRecordNotFound:
      // Outside the caller's scope reads the same as absent: nothing is revealed.
      return api_error(http::status::not_found, "not_found", "no such record", field);
    case ErrorCode::kPermissionDenied:
    case ErrorCode::kServerOwnedField:
      code = http::status::forbidden;
      break;
    case ErrorCode::kOrderLocked:
    case ErrorCode::kDuplicateId:
    case ErrorCode::kRecordDeleted:
    case ErrorCode::kInvalidTransition:
    case ErrorCode::kImmutableField:
      code = http::status::conflict;
      break;
    case ErrorCode::kStorageLocked:
    case ErrorCode::kStorageIo:
    case ErrorCode::kStorageFull:
    case ErrorCode::kStorageCorrupt:
    case ErrorCode::kStorageReadOnly:
      return api_error(http::status::service_unavailable, "storage_unavailable",
                       "the store could not be read or written; try again", {});
    default:
      break;
  }
  return api_error(code, std::string(to_string(status.code())), status.message(), field);
}

std::optional<int64_t> parse_int(const std::string& text) {
  int64_t v = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || p != text.data() + text.size() || text.empty()) return std::nullopt;
  return v;
}

Result<std::vector<std::string>> string_list(const json::value& v, const std::string& field) {
  if (!v.is_array()) return Status(ErrorCode::kTypeMismatch, field + ": expected an array of strings");
  std::vector<std::string> out;
  for (const json::value& item : v.as_array()) {
    if (!item.is_string()) return Status(ErrorCode::kTypeMismatch, field + ": expected an array of strings");
    out.emplace_back(item.as_string());
  }
  return out;
}

namespace {

std::string error_body(const ApiError& e) {
  json::object o;
  o["code"] = e.code;
  o["message"] = e.message;
  if (e.field.empty()) {
    o["field"] = nullptr;
  } else {
    o["field"] = e.field;
  }
  return json::serialize(o) + "\n";
}

void send(const std::shared_ptr<HttpSession>& session, ApiResult result) {
  if (auto* e = std::get_if<ApiError>(&result)) {
    HttpSession::Headers h;
    if (e->status == http::status::service_unavailable) h.emplace_back(http::field::retry_after, "2");
    return session->respond(e->status, "application/json", error_body(*e), std::move(h));
  }
  ApiReply& r = std::get<ApiReply>(result);
  session->respond(r.status, "application/json", json::serialize(r.body) + "\n", std::move(r.headers));
}

// Percent-decoding of one query component ('+' is a space, as forms send it).
std::optional<std::string> url_decode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out += ' ';
    } else if (s[i] == '%') {
      if (i + 2 >= s.size()) return std::nullopt;
      int v = 0;
      auto [p, ec] = std::from_chars(s.data() + i + 1, s.data() + i + 3, v, 16);
      if (ec != std::errc() || p != s.data() + i + 3) return std::nullopt;
      out += static_cast<char>(v);
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

}  // namespace

std::optional<std::map<std::string, std::string>> parse_query(std::string_view target) {
  std::map<std::string, std::string> out;
  const size_t q = target.find('?');
  if (q == std::string_view::npos) return out;
  std::string_view rest = target.substr(q + 1);
  while (!rest.empty()) {
    const size_t amp = rest.find('&');
    std::string_view part = rest.substr(0, amp);
    rest = amp == std::string_view::npos ? std::string_view() : rest.substr(amp + 1);
    if (part.empty()) continue;
    const size_t eq = part.find('=');
    std::optional<std::string> name = url_decode(part.substr(0, eq));
    std::optional<std::string> value =
        url_decode(eq == std::string_view::npos ? std::string_view() : part.substr(eq + 1));
    if (!name || !value || name->empty() || out.count(*name)) return std::nullopt;
    out[*name] = *value;
  }
  return out;
}

namespace {

std::string header(const http::request<http::string_body>& m, http::field f) {
  auto it = m.find(f);
  return it == m.end() ? std::string() : std::string(it->value());
}

std::string header(const http::request<http::string_body>& m, std::string_view name) {
  auto it = m.find(name);
  return it == m.end() ? std::string() : std::string(it->value());
}

std::string cookie_value(const http::request<http::string_body>& m, std::string_view name) {
  for (auto it = m.find(http::field::cookie); it != m.end() && it->name() == http::field::cookie; ++it) {
    std::string_view v(it->value().data(), it->value().size());
    while (!v.empty()) {
      const size_t semi = v.find(';');
      std::string_view part = v.substr(0, semi);
      v = semi == std::string_view::npos ? std::string_view() : v.substr(semi + 1);
      while (!part.empty() && part.front() == ' ') part.remove_prefix(1);
      if (part.size() > name.size() && part.substr(0, name.size()) == name && part[name.size()] == '=')
        return std::string(part.substr(name.size() + 1));
    }
  }
  return {};
}

// A request whose Origin is not this server's own (https://<Host>) is refused: a page elsewhere that a
// signed-in browser runs may not use the session.
bool origin_ok(const http::request<http::string_body>& m) {
  const std::string origin = header(m, http::field::origin);
  if (origin.empty()) return true;
  const std::string host = header(m, http::field::host);
  return !host.empty() && origin == "https://" + host;
}

bool state_changing(http::verb v) {
  return v == http::verb::post || v == http::verb::put || v == http::verb::patch || v == http::verb::delete_;
}

std::string session_cookie(const std::string& token, int64_t max_age_s) {
  return std::string(kCookieName) + "=" + token +
         "; HttpOnly; Secure; SameSite=Strict; Path=/api/; Max-Age=" + std::to_string(max_age_s);
}

bool has_role(const std::vector<std::string>& roles, const std::string& role) {
  return std::find(roles.begin(), roles.end(), role) != roles.end();
}

// The body of one request, once authenticated: runs on a worker thread, answers on the session's strand.
struct Pending {
  std::shared_ptr<HttpSession> session;
  HttpRequest req;
  std::string key;
  bool bearer = false;
};

// The checks that need no database (Origin, a credential present), on the strand; fills `out` or answers the
// error itself. The session and its CSRF token are checked on the worker (prepare): they are in the
// directory.
bool authenticate(NetServer::Impl&, const std::shared_ptr<HttpSession>& session, HttpRequest& req,
                  Pending* out) {
  const auto& m = req.message;
  if (!origin_ok(m)) {
    send(session,
         api_error(http::status::forbidden, "bad_origin", "the request's Origin is not this server"));
    return false;
  }
  std::string token;
  bool bearer = false;
  const std::string auth = header(m, http::field::authorization);
  if (auth.rfind("Bearer ", 0) == 0) {
    token = auth.substr(7);
    bearer = true;
  } else {
    token = cookie_value(m, kCookieName);
  }
  if (token.empty()) {
    send(session, api_error(http::status::unauthorized, "unauthenticated", "sign in first"));
    return false;
  }
  out->session = session;
  out->req = std::move(req);
  out->key = token_key(token);
  out->bearer = bearer;
  return true;
}

bool reserve_worker(NetServer::Impl& impl, const std::shared_ptr<HttpSession>& session) {
  if (impl.api_queued.fetch_add(1) >= limits::kMaxApiQueued) {
    impl.api_queued.fetch_sub(1);
    send(session, api_error(http::status::service_unavailable, "busy", "too many requests in progress"));
    return false;
  }
  return true;
}

// On a worker: the caller (the directory's current word: a disabled user is out now), the query and body.
std::optional<ApiError> prepare(NetServer::Impl& impl, Pending& p, const std::vector<std::string>& roles,
                                ApiRequest* r) {
  Result<std::optional<ApiState::WebSession>> found = impl.api->find(p.key, wall_ms());
  if (!found) return api_error_from(found.status());
  std::optional<ApiState::WebSession>& ws = *found;
  if (!ws || ws->bearer != p.bearer)
    return api_error(http::status::unauthorized, "unauthenticated", "the session ended; sign in again");
  if (!p.bearer && state_changing(p.req.message.method()) &&
      !same_secret(header(p.req.message, std::string_view("X-CSRF-Token")), ws->csrf))
    return api_error(http::status::forbidden, "csrf_failed",
                     "missing or wrong X-CSRF-Token for this session");
  Result<User> user = impl.options.directory->user(ws->user);
  Result<Principal> principal = impl.options.directory->principal(ws->user);
  if (!user || !principal || user->disabled) {
    (void)impl.api->erase_user(ws->user);
    return api_error(http::status::unauthorized, "unauthenticated", "the session ended; sign in again");
  }
  r->impl = &impl;
  r->session = p.session;
  r->method = p.req.message.method();
  r->params = std::move(p.req.params);
  r->session_key = p.key;
  r->last_event_id = std::string(p.req.message["Last-Event-ID"]);
  r->caller = Caller{ws->user, std::string(role_name(*user)), std::move(principal.value())};
  if (!has_role(roles, r->caller.role))
    return api_error(http::status::forbidden, "forbidden", "your role may not do this");
  std::optional<std::map<std::string, std::string>> query = parse_query(p.req.message.target());
  if (!query) return api_error(http::status::bad_request, "bad_query", "the query string does not parse");
  r->query = std::move(*query);
  const std::string& body = p.req.message.body();
  if (!body.empty()) {
    std::variant<json::object, ApiError> v = parse_json_body(body);
    if (ApiError* e = std::get_if<ApiError>(&v)) return std::move(*e);
    r->body = json::value(std::move(std::get<json::object>(v)));
  } else if (state_changing(r->method) && r->method != http::verb::delete_) {
    r->body = json::object();
  }
  return std::nullopt;
}

}  // namespace

std::variant<json::object, ApiError> parse_json_body(std::string_view body) {
  boost::system::error_code ec;
  json::value v = json::parse(body, ec);
  if (ec)
    return api_error(http::status::bad_request, "invalid_json", "the body is not JSON: " + ec.message());
  if (!v.is_object())
    return api_error(http::status::bad_request, "invalid_json", "the body must be an object");
  return std::move(v.as_object());
}

std::variant<SignIn, ApiError> parse_sign_in(std::string_view body) {
  boost::system::error_code ec;
  json::value v = json::parse(body, ec);
  if (ec || !v.is_object())
    return api_error(http::status::bad_request, "invalid_json", "expected a JSON object");
  SignIn out;
  for (const auto& [k, val] : v.as_object()) {
    const std::string key(k);
    if (key != "user" && key != "password" && key != "mode")
      return api_error(http::status::bad_request, "unknown_field", "unknown field " + key, key);
    if (!val.is_string())
      return api_error(http::status::bad_request, "wrong_type", key + " must be a string", key);
    if (key == "user") out.user = val.as_string();
    if (key == "password") out.password = val.as_string();
    if (key == "mode") {
      if (val.as_string() != "cookie" && val.as_string() != "token")
        return api_error(http::status::bad_request, "value_invalid", "mode is cookie or token", "mode");
      out.bearer = val.as_string() == "token";
    }
  }
  if (out.user.empty() || out.password.empty())
    return api_error(http::status::bad_request, "missing_field", "user and password are required",
                     out.user.empty() ? "user" : "password");
  return out;
}

// Checks that a body has only `allowed` keys.
std::optional<ApiError> only_fields(const json::object& o, std::initializer_list<std::string_view> allowed) {
  for (const auto& [k, v] : o) {
    if (std::find(allowed.begin(), allowed.end(), std::string_view(k)) == allowed.end())
      return api_error(http::status::bad_request, "unknown_field", "unknown field " + std::string(k),
                       std::string(k));
  }
  return std::nullopt;
}

std::optional<ApiError> string_field(const json::object& o, const char* name, std::string* out,
                                     bool required) {
  auto it = o.find(name);
  if (it == o.end()) {
    if (required)
      return api_error(http::status::bad_request, "missing_field", std::string(name) + " is required", name);
    return std::nullopt;
  }
  if (!it->value().is_string())
    return api_error(http::status::bad_request, "wrong_type", std::string(name) + " must be a string", name);
  *out = it->value().as_string();
  return std::nullopt;
}

void api_post(NetServer::Impl& impl, std::function<void()> fn) {
  boost::asio::post(*impl.api_pool, std::move(fn));
}

void api_stream(ApiRequest& r, std::string content_type, HttpSession::Headers headers,
                std::function<std::optional<std::string>()> produce) {
  NetServer::Impl* impl = r.impl;
  auto next = std::make_shared<std::function<std::optional<std::string>()>>(std::move(produce));
  Strand strand = r.session->strand();
  boost::asio::post(strand, [session = r.session, impl, next, content_type = std::move(content_type),
                             headers = std::move(headers)]() mutable {
    session->respond_stream(http::status::ok, content_type, std::move(headers),
                            [impl, next](HttpSession::ChunkSink deliver) {
                              api_post(*impl, [next, deliver = std::move(deliver)] { deliver((*next)()); });
                            });
  });
}

void api_stream_checked(ApiRequest& r, std::string content_type, HttpSession::Headers headers,
                        std::function<Result<std::optional<std::string>>()> produce) {
  auto next = std::make_shared<std::function<Result<std::optional<std::string>>()>>(std::move(produce));
  std::weak_ptr<HttpSession> weak = r.session;  // not owned: the session owns this producer
  api_stream(r, std::move(content_type), std::move(headers), [next, weak]() -> std::optional<std::string> {
    Result<std::optional<std::string>> chunk = (*next)();
    if (chunk) return std::move(*chunk);
    if (std::shared_ptr<HttpSession> session = weak.lock()) {
      // Posted before api_stream delivers the end below, so the strand aborts first and drops the end.
      Strand strand = session->strand();
      boost::asio::post(strand, [session] { session->abort_stream("stream_failed"); });
    }
    return std::nullopt;
  });
}

void api_revoke_sessions(NetServer::Impl& impl, const UserId& user) {
  (void)impl.api->erase_user(user);
}

ReaderPool& api_readers(NetServer::Impl& impl) {
  return *impl.api->readers;
}

void add_api_route(NetServer::Impl& impl, RouteTable& routes, http::verb method, const std::string& pattern,
                   std::vector<std::string> roles, ApiHandler handler) {
  const bool body = method == http::verb::post || method == http::verb::patch || method == http::verb::put;
  routes.add({method, pattern, RouteAuth::kPublic, body ? limits::kMaxApiBodyBytes : 0,
              body ? "application/json" : "", pattern,
              [&impl, roles = std::move(roles), handler = std::move(handler)](
                  const std::shared_ptr<HttpSession>& session, HttpRequest& req) {
                auto p = std::make_shared<Pending>();
                if (!authenticate(impl, session, req, p.get())) return;
                if (!reserve_worker(impl, session)) return;
                api_post(impl, [&impl, p, roles, handler] {
                  ApiRequest r;
                  std::optional<ApiError> bad = prepare(impl, *p, roles, &r);
                  ApiResult result = bad ? ApiResult(*bad) : [&]() -> ApiResult {
                    try {
                      return handler(r);
                    } catch (const std::exception& e) {  // Boost.JSON's accessors on unexpected shapes
                      return api_error(http::status::bad_request, "bad_request", e.what());
                    }
                  }();
                  impl.api_queued.fetch_sub(1);
                  Strand strand = p->session->strand();
                  boost::asio::post(strand, [session = p->session, result = std::move(result)]() mutable {
                    send(session, std::move(result));
                  });
                });
              }});
}

void add_api_stream_route(NetServer::Impl& impl, RouteTable& routes, const std::string& pattern,
                          std::vector<std::string> roles,
                          std::function<std::optional<ApiError>(ApiRequest&)> start) {
  routes.add({http::verb::get, pattern, RouteAuth::kPublic, 0, "", pattern,
              [&impl, roles = std::move(roles), start = std::move(start)](
                  const std::shared_ptr<HttpSession>& session, HttpRequest& req) {
                auto p = std::make_shared<Pending>();
                if (!authenticate(impl, session, req, p.get())) return;
                if (!reserve_worker(impl, session)) return;
                api_post(impl, [&impl, p, roles, start] {
                  ApiRequest r;
                  std::optional<ApiError> bad = prepare(impl, *p, roles, &r);
                  if (!bad) bad = start(r);
                  impl.api_queued.fetch_sub(1);
                  if (!bad) return;
                  Strand strand = p->session->strand();
                  boost::asio::post(strand, [session = p->session, e = std::move(*bad)]() mutable {
                    send(session, std::move(e));
                  });
                });
              }});
}

namespace {

const std::vector<std::string> kAll = {"head_office", "manager", "rep", "partner"};
const std::vector<std::string> kHeadOffice = {"head_office"};
const std::vector<std::string> kManagers = {"head_office", "manager"};

json::object session_json(const User& u, const ApiState::WebSession& s) {
  json::object o;
  o["user"] = u.id;
  o["role"] = role_name(u);
  o["display_name"] = u.display_name;
  o["csrf_token"] = s.csrf;
  o["expires_at_ms"] = s.expires_at_ms;
  return o;
}

// POST /api/v1/session: {"user", "password", "mode": "cookie" (default) | "token"}. The KDF runs on a login
// thread; failures are one 401 answered late; the /login throttle counts them.
void sign_in(NetServer::Impl& impl, const std::shared_ptr<HttpSession>& session, HttpRequest& req) {
  if (!origin_ok(req.message))
    return send(session,
                api_error(http::status::forbidden, "bad_origin", "the request's Origin is not this server"));
  std::variant<SignIn, ApiError> parsed = parse_sign_in(req.message.body());
  if (ApiError* e = std::get_if<ApiError>(&parsed)) return send(session, std::move(*e));
  const std::string user = std::get<SignIn>(parsed).user, password = std::get<SignIn>(parsed).password;
  const bool bearer = std::get<SignIn>(parsed).bearer;
  const std::string address =
      session->peer_address() ? session->peer_address()->to_string() : session->peer();
  const int64_t now = wall_ms();
  if (!impl.login_throttle.begin(address, now)) {
    impl.metrics.add(Counter::kLogins, 1, "rate_limited");
    return session->respond(
        http::status::too_many_requests, "application/json",
        error_body(api_error(http::status::too_many_requests, "rate_limited",
                             "too many failed sign-ins from this address; try again later")),
        {{http::field::retry_after, std::to_string(limits::kLoginWindowMs / 1000)}});
  }
  if (impl.logins_queued.fetch_add(1) >= limits::kMaxLoginsQueued) {
    impl.logins_queued.fetch_sub(1);
    impl.login_throttle.succeeded(address, now);
    return send(session,
                api_error(http::status::service_unavailable, "busy", "too many sign-ins in progress"));
  }
  boost::asio::post(*impl.login_pool, [&impl, session, user, password, bearer, address, now] {
    Result<User> u = impl.options.directory->check_password(user, password);
    impl.logins_queued.fetch_sub(1);
    if (u) impl.login_throttle.succeeded(address, now);
    ApiState::WebSession s;
    Result<std::string> token = u ? impl.api->create(u->id, bearer, wall_ms(), &s) : std::string();
    boost::asio::post(session->strand(), [&impl, session, u = std::move(u), bearer, user, s = std::move(s),
                                          token = std::move(token)]() mutable {
      impl.log("event=web_login session=" + std::to_string(session->id()) + " peer=" + session->peer() +
               " user=" + user + " outcome=" + (u ? "ok" : "failed"));
      impl.metrics.add(Counter::kLogins, 1, u ? "ok" : "failed");
      if (!u) {
        return session->after(impl.options.login_failure_delay_ms, [session] {
          send(session, api_error(http::status::unauthorized, "auth_failed", "authentication failed"));
        });
      }
      if (!token) return send(session, api_error_from(token.status()));
      json::object o = session_json(*u, s);
      ApiReply reply;
      if (bearer) {
        o["token"] = *token;
      } else {
        reply.headers.emplace_back(http::field::set_cookie, session_cookie(*token, impl.api->ttl_ms / 1000));
      }
      reply.body = std::move(o);
      send(session, std::move(reply));
    });
  });
}

// ---- People and devices

json::object user_json(Directory& dir, const User& u) {
  json::object o;
  o["id"] = u.id;
  o["display_name"] = u.display_name;
  o["role"] = role_name(u);
  o["disabled"] = u.disabled;
  json::array territories, team;
  if (Result<std::vector<std::string>> t = dir.user_territories(u.id))
    for (const std::string& x : *t) territories.emplace_back(x);
  if (Result<std::vector<UserId>> t = dir.team(u.id))
    for (const std::string& x : *t) team.emplace_back(x);
  o["territories"] = std::move(territories);
  o["team"] = std::move(team);
  return o;
}

void audit(ApiRequest& r, std::string action, std::string target, json::object detail = {}) {
  (void)r.impl->options.directory->audit(AuditRecord{0, wall_ms(), r.caller.user, std::move(action),
                                                     std::move(target), json::serialize(detail)});
}

ApiError from_directory(const Status& s, std::string field = {}) {
  if (s.code() == ErrorCode::kInvalidArgument)
    return api_error(http::status::unprocessable_entity, "invalid_argument", s.message(), std::move(field));
  return api_error_from(s);
}

ApiResult list_users(ApiRequest& r) {
  Directory& dir = *r.impl->options.directory;
  json::array items;
  std::set<UserId> visible;
  if (!r.caller.head_office()) {
    visible.insert(r.caller.user);
    for (const UserId& m : r.caller.principal.team) visible.insert(m);
  }
  for (const User& u : dir.users())
    if (r.caller.head_office() || visible.count(u.id)) items.push_back(user_json(dir, u));
  json::object o;
  o["items"] = std::move(items);
  return ApiReply{http::status::ok, std::move(o), {}};
}

ApiResult create_user(ApiRequest& r) {
  const json::object& b = r.body->as_object();
  if (auto e = only_fields(b, {"id", "display_name", "role", "password", "territories", "team"})) return *e;
  std::string id, name, role, password;
  for (auto [f, out] :
       {std::pair{"id", &id}, {"display_name", &name}, {"role", &role}, {"password", &password}})
    if (auto e = string_field(b, f, out, true)) return *e;
  std::optional<User> u = user_with_role(role);
  if (!u) return api_error(http::status::bad_request, "value_invalid", "unknown role " + role, "role");
  u->id = id;
  u->display_name = name;
  Directory& dir = *r.impl->options.directory;
  if (Status s = dir.add_user(*u, password, wall_ms()); !s) return from_directory(s, "id");
  if (auto it = b.find("territories"); it != b.end()) {
    Result<std::vector<std::string>> t = string_list(it->value(), "territories");
    if (!t) return api_error(http::status::bad_request, "wrong_type", t.status().message(), "territories");
    for (const std::string& x : *t)
      if (Status s = dir.assign_territory(id, x); !s) return from_directory(s, "territories");
  }
  if (auto it = b.find("team"); it != b.end()) {
    Result<std::vector<std::string>> t = string_list(it->value(), "team");
    if (!t) return api_error(http::status::bad_request, "wrong_type", t.status().message(), "team");
    for (const std::string& x : *t)
      if (Status s = dir.assign_team(id, x); !s) return from_directory(s, "team");
  }
  json::object detail;
  detail["role"] = role;
  audit(r, "user.create", id, detail);
  return ApiReply{http::status::created, user_json(dir, *dir.user(id)), {}};
}

ApiResult patch_user(ApiRequest& r) {
  const json::object& b = r.body->as_object();
  if (auto e = only_fields(b, {"display_name", "role", "disabled", "territories", "team"})) return *e;
  Directory& dir = *r.impl->options.directory;
  const UserId id = r.params["id"];
  Result<User> current = dir.user(id);
  if (!current) return api_error(http::status::not_found, "not_found", "no such user");
  // Types first, so that a bad body changes nothing.
  std::string name, role;
  if (auto e = string_field(b, "display_name", &name, false)) return *e;
  if (auto e = string_field(b, "role", &role, false)) return *e;
  std::optional<User> new_role;
  if (b.contains("role")) {
    new_role = user_with_role(role);
    if (!new_role)
      return api_error(http::status::bad_request, "value_invalid", "unknown role " + role, "role");
  }
  std::optional<bool> disabled;
  if (auto it = b.find("disabled"); it != b.end()) {
    if (!it->value().is_bool())
      return api_error(http::status::bad_request, "wrong_type", "disabled must be true or false", "disabled");
    disabled = it->value().as_bool();
  }
  std::optional<std::vector<std::string>> territories, team;
  for (auto [f, out] : {std::pair{"territories", &territories}, {"team", &team}}) {
    if (auto it = b.find(f); it != b.end()) {
      Result<std::vector<std::string>> t = string_list(it->value(), f);
      if (!t) return api_error(http::status::bad_request, "wrong_type", t.status().message(), f);
      *out = std::move(*t);
    }
  }
  if (territories) {
    std::set<std::string> known;
    for (const Territory& t : dir.territories()) known.insert(t.id);
    for (const std::string& t : *territories)
      if (!known.count(t))
        return api_error(http::status::unprocessable_entity, "invalid_argument", "no territory " + t,
                         "territories");
  }
  json::object detail;
  if (b.contains("display_name")) {
    if (Status s = dir.set_display_name(id, name); !s) return from_directory(s, "display_name");
    detail["display_name"] = name;
  }
  if (new_role) {
    if (Status s = dir.set_role(id, *new_role); !s) return from_directory(s, "role");
    detail["role"] = role;
  }
  if (territories) {
    Result<std::vector<std::string>> old = dir.user_territories(id);
    if (!old) return api_error_from(old.status());
    for (const std::string& t : *old)
      if (std::find(territories->begin(), territories->end(), t) == territories->end())
        (void)dir.unassign_territory(id, t);
    for (const std::string& t : *territories)
      if (Status s = dir.assign_territory(id, t); !s) return from_directory(s, "territories");
    json::array a;
    for (const std::string& t : *territories) a.emplace_back(t);
    detail["territories"] = std::move(a);
  }
  if (team) {
    Result<std::vector<UserId>> old = dir.team(id);
    if (!old) return api_error_from(old.status());
    for (const UserId& t : *old)
      if (std::find(team->begin(), team->end(), t) == team->end()) (void)dir.unassign_team(id, t);
    for (const UserId& t : *team)
      if (Status s = dir.assign_team(id, t); !s) return from_directory(s, "team");
    json::array a;
    for (const std::string& t : *team) a.emplace_back(t);
    detail["team"] = std::move(a);
  }
  if (disabled) {
    if (Status s = dir.set_disabled(id, *disabled); !s) return from_directory(s, "disabled");
    detail["disabled"] = *disabled;
    if (*disabled) {
      // Now, not at the next sign-in: web sessions go, live device sessions are closed.
      api_revoke_sessions(*r.impl, id);
      r.impl->service.cut_user(id, ErrorCode::kAuthFailed, "this user was disabled");
    }
  }
  audit(r, "user.update", id, detail);
  return ApiReply{http::status::ok, user_json(dir, *dir.user(id)), {}};
}

ApiResult set_password(ApiRequest& r) {
  const json::object& b = r.body->as_object();
  if (auto e = only_fields(b, {"password"})) return *e;
  std::string password;
  if (auto e = string_field(b, "password", &password, true)) return *e;
  const UserId id = r.params["id"];
  if (!r.caller.head_office() && id != r.caller.user)
    return api_error(http::status::forbidden, "forbidden", "only head office resets others' passwords");
  Directory& dir = *r.impl->options.directory;
  if (!dir.user(id)) return api_error(http::status::not_found, "not_found", "no such user");
  if (Status s = dir.set_password(id, password); !s) return from_directory(s, "password");
  audit(r, "user.password", id);
  json::object o;
  o["ok"] = true;
  return ApiReply{http::status::ok, std::move(o), {}};
}

ApiResult list_territories(ApiRequest& r) {
  json::array items;
  const Principal& p = r.caller.principal;
  for (const Territory& t : r.impl->options.directory->territories()) {
    if (!r.caller.head_office() &&
        std::find(p.territories.begin(), p.territories.end(), t.id) == p.territories.end())
      continue;
    json::object o;
    o["id"] = t.id;
    o["name"] = t.name;
    items.push_back(std::move(o));
  }
  json::object o;
  o["items"] = std::move(items);
  return ApiReply{http::status::ok, std::move(o), {}};
}

ApiResult create_territory(ApiRequest& r) {
  const json::object& b = r.body->as_object();
  if (auto e = only_fields(b, {"id", "name"})) return *e;
  std::string id, name;
  if (auto e = string_field(b, "id", &id, true)) return *e;
  if (auto e = string_field(b, "name", &name, false)) return *e;
  if (Status s = r.impl->options.directory->add_territory(Territory{id, name}); !s)
    return from_directory(s, "id");
  json::object detail;
  detail["name"] = name;
  audit(r, "territory.create", id, detail);
  json::object o;
  o["id"] = id;
  o["name"] = name.empty() ? id : name;
  return ApiReply{http::status::created, std::move(o), {}};
}

json::object device_json(const Device& d, const SyncService::LiveDevice* activity, bool online) {
  json::object o;
  o["node"] = std::to_string(d.node);
  o["user"] = d.user;
  o["registered_at_ms"] = d.registered_at_ms;
  o["revoked"] = d.revoked;
  if (d.revoked) {
    o["revoked_at_ms"] = d.revoked_at_ms;
  } else {
    o["revoked_at_ms"] = nullptr;
  }
  o["online"] = online;
  auto ms = [](int64_t v) { return v == 0 ? json::value(nullptr) : json::value(v); };
  o["last_connected_ms"] = activity ? ms(activity->connected_at_ms) : json::value(nullptr);
  o["last_push_ms"] = activity ? ms(activity->last_push_ms) : json::value(nullptr);
  o["last_pull_ms"] = activity ? ms(activity->last_pull_ms) : json::value(nullptr);
  return o;
}

std::set<UserId> visible_users(const ApiRequest& r) {
  std::set<UserId> out{r.caller.user};
  for (const UserId& m : r.caller.principal.team) out.insert(m);
  return out;
}

ApiResult list_devices(ApiRequest& r) {
  std::map<NodeId, SyncService::LiveDevice> activity = r.impl->service.device_activity();
  std::set<NodeId> online;
  for (const SyncService::LiveDevice& d : r.impl->service.live_devices()) online.insert(d.node);
  const std::set<UserId> users = visible_users(r);
  json::array items;
  for (const Device& d : r.impl->options.directory->devices()) {
    if (!r.caller.head_office() && !users.count(d.user)) continue;
    auto it = activity.find(d.node);
    items.push_back(device_json(d, it == activity.end() ? nullptr : &it->second, online.count(d.node) > 0));
  }
  json::object o;
  o["items"] = std::move(items);
  return ApiReply{http::status::ok, std::move(o), {}};
}

std::optional<NodeId> parse_node(const json::value& v) {
  if (v.is_int64() && v.as_int64() > 0) return static_cast<NodeId>(v.as_int64());
  if (v.is_uint64()) return v.as_uint64();
  if (v.is_string()) {
    const std::string s(v.as_string());
    uint64_t n = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
    if (ec == std::errc() && p == s.data() + s.size() && !s.empty()) return n;
  }
  return std::nullopt;
}

ApiResult register_device(ApiRequest& r) {
  const json::object& b = r.body->as_object();
  if (auto e = only_fields(b, {"node", "user"})) return *e;
  auto it = b.find("node");
  if (it == b.end()) return api_error(http::status::bad_request, "missing_field", "node is required", "node");
  std::optional<NodeId> node = parse_node(it->value());
  if (!node)
    return api_error(http::status::bad_request, "wrong_type", "node is a number or decimal text", "node");
  std::string user;
  if (auto e = string_field(b, "user", &user, true)) return *e;
  Directory& dir = *r.impl->options.directory;
  if (Status s = dir.register_device(*node, user, wall_ms()); !s) return from_directory(s, "node");
  json::object detail;
  detail["user"] = user;
  audit(r, "device.register", std::to_string(*node), detail);
  return ApiReply{http::status::created, device_json(*dir.device(*node), nullptr, false), {}};
}

ApiResult revoke_device(ApiRequest& r) {
  std::optional<NodeId> node = parse_node(json::value(r.params["node"]));
  Directory& dir = *r.impl->options.directory;
  if (!node || !dir.device(*node)) return api_error(http::status::not_found, "not_found", "no such device");
  if (Status s = dir.revoke_device(*node, wall_ms()); !s) return from_directory(s);
  // A connected phone learns it now and erases its replica.
  r.impl->service.cut_node(*node, ErrorCode::kDeviceRevoked, "this device was revoked; erase its local data");
  audit(r, "device.revoke", std::to_string(*node));
  return ApiReply{http::status::ok, device_json(*dir.device(*node), nullptr, false), {}};
}

ApiResult list_audit(ApiRequest& r) {
  int64_t after = 0;
  size_t limit = limits::kApiDefaultPage;
  if (auto it = r.query.find("after"); it != r.query.end()) {
    std::optional<int64_t> v = parse_int(it->second);
    if (!v || *v < 0)
      return api_error(http::status::bad_request, "value_invalid", "after is a number", "after");
    after = *v;
  }
  if (auto it = r.query.find("limit"); it != r.query.end()) {
    std::optional<int64_t> v = parse_int(it->second);
    if (!v || *v < 1 || *v > static_cast<int64_t>(limits::kApiMaxPage))
      return api_error(http::status::bad_request, "value_invalid", "limit is 1..500", "limit");
    limit = static_cast<size_t>(*v);
  }
  for (const auto& [k, v] : r.query)
    if (k != "after" && k != "limit")
      return api_error(http::status::bad_request, "unknown_field", "unknown parameter " + k, k);
  Result<std::vector<AuditRecord>> rows = r.impl->options.directory->audit_trail(after, limit);
  if (!rows) return api_error_from(rows.status());
  json::array items;
  for (const AuditRecord& a : *rows) {
    json::object o;
    o["id"] = a.id;
    o["at_ms"] = a.at_ms;
    o["actor"] = a.actor;
    o["action"] = a.action;
    o["target"] = a.target;
    boost::system::error_code ec;
    json::value d = json::parse(a.detail, ec);
    o["detail"] = ec ? json::value(json::object()) : d;
    items.push_back(std::move(o));
  }
  json::object o;
  o["next_after"] = rows->size() == limit ? json::value(rows->back().id) : json::value(nullptr);
  o["items"] = std::move(items);
  return ApiReply{http::status::ok, std::move(o), {}};
}

}  // namespace

ApiResult sync_health(ApiRequest& r);  // api_entities.cc: needs the store

void add_api_routes(NetServer::Impl& impl, RouteTable& routes) {
  impl.api = std::make_shared<ApiState>();
  impl.api->readers = ReaderPool::make(
      [path = impl.options.store_path]() -> Result<std::unique_ptr<SqlReader>> {
        if (is_postgresql_url(path)) {
          // The same database the store writes: read-only sessions, each statement its own snapshot.
          Result<std::unique_ptr<pg::Conn>> conn = pg::Conn::open(path);
          if (!conn) return conn.status();
          if (Status s = (*conn)->exec_script("SET default_transaction_read_only = on"); !s) return s;
          return pg_reader(std::move(*conn));
        }
        Result<std::unique_ptr<sqlite::Db>> db =
            sqlite::Db::open(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, 5000);
        if (!db) return db.status();
        if (Status s = (*db)->exec("PRAGMA query_only = 1"); !s) return s;
        return sqlite_reader(std::move(*db));
      },
      limits::kApiThreads + 1);
  impl.api->directory = impl.options.directory;
  impl.api->ttl_ms = impl.options.web_session_ttl_ms;
  impl.api->idle_ms = impl.options.web_session_idle_ms;
  const std::string base = "/api/v1";
  routes.add({http::verb::post, base + "/session", RouteAuth::kPublic, limits::kMaxHttpBodyBytes,
              "application/json", base + "/session",
              [&impl](const std::shared_ptr<HttpSession>& session, HttpRequest& req) {
                sign_in(impl, session, req);
              }});
  add_api_route(impl, routes, http::verb::get, base + "/session", kAll, [](ApiRequest& r) -> ApiResult {
    Result<std::optional<ApiState::WebSession>> s = r.impl->api->find(r.session_key, wall_ms());
    if (!s) return api_error_from(s.status());
    Result<User> u = r.impl->options.directory->user(r.caller.user);
    if (!*s || !u) return api_error(http::status::unauthorized, "unauthenticated", "sign in first");
    return ApiReply{http::status::ok, session_json(*u, **s), {}};
  });
  add_api_route(impl, routes, http::verb::delete_, base + "/session", kAll, [](ApiRequest& r) -> ApiResult {
    if (Status s = r.impl->api->erase(r.session_key); !s) return api_error_from(s);
    json::object o;
    o["ok"] = true;
    return ApiReply{http::status::ok, std::move(o), {{http::field::set_cookie, session_cookie("", 0)}}};
  });
  add_api_route(impl, routes, http::verb::get, base + "/users", kAll, list_users);
  add_api_route(impl, routes, http::verb::post, base + "/users", kHeadOffice, create_user);
  add_api_route(impl, routes, http::verb::patch, base + "/users/{id}", kHeadOffice, patch_user);
  add_api_route(impl, routes, http::verb::post, base + "/users/{id}/password", kAll, set_password);
  add_api_route(impl, routes, http::verb::get, base + "/territories", kAll, list_territories);
  add_api_route(impl, routes, http::verb::post, base + "/territories", kHeadOffice, create_territory);
  add_api_route(impl, routes, http::verb::get, base + "/devices", kManagers, list_devices);
  add_api_route(impl, routes, http::verb::post, base + "/devices", kHeadOffice, register_device);
  add_api_route(impl, routes, http::verb::post, base + "/devices/{node}/revoke", kHeadOffice, revoke_device);
  add_api_route(impl, routes, http::verb::get, base + "/audit", kHeadOffice, list_audit);
  add_api_route(impl, routes, http::verb::get, base + "/sync-health", kManagers, sync_health);
  add_entity_routes(impl, routes);
  add_report_routes(impl, routes);
  add_case_sla_routes(impl, routes);
  add_service_routes(impl, routes);
}

}  // namespace fieldsync::server
