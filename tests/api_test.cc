// The head-office API (/api/v1/, docs/API.md) over real HTTPS on loopback against the real server: a
// NetServer on a SQLite central store with group commit (as fieldsync-server runs it) and a Directory.
// Sessions, cookie flags, CSRF and Origin; every role's and the partner's scope; generic reads, paging under
// concurrent writes; writes through the device path with bad input changing nothing; order approval reaching
// a rep's phone (FieldClient over WsClient) and locking the order there; the change feed and its SSE stream;
// the conflict inbox; people, devices and the audit trail.
//
// Built twice: api_test on SQLite, and pg_api_test (FIELDSYNC_API_ON_POSTGRESQL) with the central store and
// the directory in PostgreSQL (the pg_cluster fixture), where every test here runs again (the reports, their
// settings, the CSV exports and dispatch included) except the SQLite directory file's own migration; plus
// tests of two API instances on one database.
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/json.hpp>
#include <chrono>
#include <filesystem>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "fieldsync/client/field_client.h"
#include "fieldsync/client/ws_client.h"
#include "fieldsync/server/directory.h"
#include "fieldsync/server/net_server.h"
#include "fieldsync/server/reports.h"
#include "fieldsync/server/sqlite_store.h"
#include "fieldsync/server/tls.h"
#include "support/test_pki.h"
#if FIELDSYNC_API_ON_POSTGRESQL
#include "fieldsync/server/pg_store.h"
#include "support/pg_test_db.h"
// The same tests under a suite name of their own, so that ctest tells the two builds' tests apart.
#define ApiTest PgApiTest
#endif

namespace fieldsync {
namespace {

using namespace std::chrono_literals;
namespace json = boost::json;
namespace net = boost::asio;
namespace http = boost::beast::http;
using client::FieldClient;
using client::WsClient;
using client::WsClientOptions;
using testing_support::TestPki;
using testing_support::wall_now_ms;

struct Reply {
  int status = 0;
  std::string body;
  std::multimap<std::string, std::string> headers;
  json::value json;
  const json::object& obj() const { return json.as_object(); }
  std::string code() const {
    return json.is_object() && json.as_object().contains("code") && json.as_object().at("code").is_string()
               ? std::string(json.as_object().at("code").as_string())
               : std::string();
  }
  std::string header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? std::string() : it->second;
  }
};

std::string str(const json::value& v) {
  return v.is_string() ? std::string(v.as_string()) : json::serialize(v);
}

// One HTTPS request on a fresh connection (the server closes after each answer).
Reply https(uint16_t port, http::verb method, const std::string& target, const std::string& body,
            const std::map<std::string, std::string>& headers) {
  net::io_context ioc;
  net::ssl::context ctx(net::ssl::context::tls_client);
  ctx.set_verify_mode(net::ssl::verify_none);
  boost::beast::ssl_stream<boost::beast::tcp_stream> stream(ioc, ctx);
  boost::beast::get_lowest_layer(stream).expires_after(20s);
  boost::beast::get_lowest_layer(stream).connect(
      net::ip::tcp::endpoint(net::ip::make_address("127.0.0.1"), port));
  stream.handshake(net::ssl::stream_base::client);
  http::request<http::string_body> req(method, target, 11);
  req.set(http::field::host, "127.0.0.1:" + std::to_string(port));
  for (const auto& [k, v] : headers) req.set(k, v);
  if (!body.empty() && headers.count("Content-Type") == 0)
    req.set(http::field::content_type, "application/json");
  req.body() = body;
  req.prepare_payload();
  http::write(stream, req);
  boost::beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(64 * 1024 * 1024);
  http::read(stream, buffer, parser);
  http::response<http::string_body> res = parser.release();
  Reply r;
  r.status = static_cast<int>(res.result_int());
  r.body = res.body();
  for (const auto& f : res) r.headers.emplace(std::string(f.name_string()), std::string(f.value()));
  boost::system::error_code ec;
  r.json = json::parse(r.body, ec);
  if (ec) r.json = nullptr;
  boost::system::error_code ignored;
  stream.shutdown(ignored);
  return r;
}

// A signed-in browser (cookie + CSRF token) or script (bearer token).
struct Web {
  uint16_t port = 0;
  std::string cookie;  // "fs_session=..."
  std::string csrf;
  std::string bearer;
  std::string user;

  Reply call(http::verb method, const std::string& target, const std::string& body = {},
             std::map<std::string, std::string> headers = {}) const {
    if (!cookie.empty()) headers.emplace("Cookie", cookie);
    if (!bearer.empty()) headers.emplace("Authorization", "Bearer " + bearer);
    if (!cookie.empty() && method != http::verb::get) headers.emplace("X-CSRF-Token", csrf);
    return https(port, method, target, body, headers);
  }
  Reply get(const std::string& t) const { return call(http::verb::get, t); }
  Reply post(const std::string& t, const json::value& b) const {
    return call(http::verb::post, t, json::serialize(b));
  }
  Reply patch(const std::string& t, const json::value& b) const {
    return call(http::verb::patch, t, json::serialize(b));
  }
};

constexpr const char* kPassword = "correct horse battery";

// A Server-Sent Events stream read over a raw TLS connection (the one-shot request helpers read whole bodies,
// a stream never ends): `got` accumulates everything received, headers included.
struct EventStream {
  EventStream(uint16_t port, const std::string& target, const std::string& cookie,
              const std::string& last_event_id = {})
      : ctx(net::ssl::context::tls_client), stream(ioc, ctx) {
    ctx.set_verify_mode(net::ssl::verify_none);
    boost::beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(20));
    boost::beast::get_lowest_layer(stream).connect(
        net::ip::tcp::endpoint(net::ip::make_address("127.0.0.1"), port));
    stream.handshake(net::ssl::stream_base::client);
    http::request<http::empty_body> req(http::verb::get, target, 11);
    req.set(http::field::host, "127.0.0.1:" + std::to_string(port));
    req.set(http::field::cookie, cookie);
    if (!last_event_id.empty()) req.set("Last-Event-ID", last_event_id);
    http::write(stream, req);
  }
  // Reads until `needle` has arrived; false when the connection ends (or times out) first.
  bool read_until(const std::string& needle) {
    char buf[4096];
    while (got.find(needle) == std::string::npos) {
      boost::system::error_code ec;
      size_t n = stream.read_some(net::buffer(buf), ec);
      if (ec) return false;
      got.append(buf, n);
    }
    return true;
  }
  void close() { boost::beast::get_lowest_layer(stream).close(); }

  net::io_context ioc;
  net::ssl::context ctx;
  boost::beast::ssl_stream<boost::beast::tcp_stream> stream;
  std::string got;
};

class ApiTest : public ::testing::Test {
 protected:
  ApiTest() {
    dir = std::filesystem::temp_directory_path() /
          ("fieldsync-api-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    std::filesystem::create_directories(dir);
  }
  ~ApiTest() override {
    phones.clear();
    if (server) server->stop();
    server.reset();
    if (server2) server2->stop();
    server2.reset();
    store2.reset();
    directory2.reset();
    store.reset();
    directory.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }

  void SetUp() override { start(); }

  // Where the central store and the directory live: the data directory's files, or a fresh PostgreSQL
  // database (a new one each time start() is called from scratch).
#if FIELDSYNC_API_ON_POSTGRESQL
  std::unique_ptr<fieldsync::testing::PgTestDatabase> pg;
  std::string store_location() {
    return pg->url();
  }
  std::string directory_location() {
    return pg->url();
  }
#else
  std::string store_location() {
    return (dir / "central.db").string();
  }
  std::string directory_location() {
    return (dir / "directory.db").string();
  }
#endif

  void start(int64_t session_ttl_ms = 0) {
#if FIELDSYNC_API_ON_POSTGRESQL
    pg = std::make_unique<fieldsync::testing::PgTestDatabase>();
    ASSERT_TRUE(pg->ok());
    auto s = server::PgCentralStore::open(pg->url(), server::PgCentralStore::Options{});
#else
    server::SqliteCentralStore::Options so;
    so.group_commit = true;
    auto s = server::SqliteCentralStore::open(store_location(), so);
#endif
    ASSERT_TRUE(s.is_ok()) << s.status().to_string();
    store = std::move(s.value());
    server::Directory::Options dopts;
    dopts.pbkdf2_iterations = 1000;
    auto d = server::Directory::open(directory_location(), dopts);
    ASSERT_TRUE(d.is_ok()) << d.status().to_string();
    directory = std::move(d.value());
    seed_directory();
    server = std::make_unique<server::NetServer>(*store, *directory, options(session_ttl_ms, *directory));
    Result<uint16_t> p = server->start();
    ASSERT_TRUE(p.is_ok()) << p.status().to_string();
    port = *p;
  }

  server::NetServerOptions options(int64_t session_ttl_ms, server::Directory& directory_of_server) {
    server::NetServerOptions o;
    o.address = "127.0.0.1";
    o.port = 0;
    o.threads = 2;
    o.cert_pem = TestPki::get().pem.cert_pem;
    o.key_pem = TestPki::get().pem.key_pem;
    o.drain_timeout_ms = 1000;
    o.login_failure_delay_ms = 200;
    o.log = [](const std::string&) {};
    o.directory = &directory_of_server;
    o.store_path = store_location();
    if (session_ttl_ms) o.web_session_ttl_ms = session_ttl_ms;
    server::Directory* dirp = &directory_of_server;
    o.login = [dirp](const std::string& user, const std::string& password, NodeId node,
                     int64_t now) -> Result<server::LoginGrant> {
      Result<std::string> t = dirp->login(user, password, node, now);
      if (!t) return t.status();
      return server::LoginGrant{*t, dirp->verify_token(*t)->expiry_ms};
    };
    return o;
  }

  void add_user(const std::string& id, const std::string& role, std::vector<std::string> territories = {}) {
    std::optional<server::User> u = server::user_with_role(role);
    ASSERT_TRUE(u);
    u->id = id;
    u->display_name = id + " name";
    ASSERT_TRUE(directory->add_user(*u, kPassword, wall_now_ms()).is_ok());
    for (const std::string& t : territories) ASSERT_TRUE(directory->assign_territory(id, t).is_ok());
  }

  void seed_directory() {
    ASSERT_TRUE(directory->add_territory({"north", "North"}).is_ok());
    ASSERT_TRUE(directory->add_territory({"south", "South"}).is_ok());
    ASSERT_TRUE(directory->add_territory({"east", "East"}).is_ok());
    add_user("boss", "head_office");
    add_user("mgr", "manager");
    add_user("rep1", "rep", {"north"});
    add_user("rep2", "rep", {"south"});
    add_user("rep3", "rep", {"east"});
    add_user("dealer", "partner", {"north"});
    ASSERT_TRUE(directory->assign_team("mgr", "rep1").is_ok());
    ASSERT_TRUE(directory->register_device(100, "rep1", wall_now_ms()).is_ok());
    ASSERT_TRUE(directory->register_device(101, "rep2", wall_now_ms()).is_ok());
  }

  Reply sign_in_raw(const std::string& user, const std::string& password, const std::string& mode = "cookie",
                    std::map<std::string, std::string> headers = {}) {
    json::object b;
    b["user"] = user;
    b["password"] = password;
    b["mode"] = mode;
    return https(port, http::verb::post, "/api/v1/session", json::serialize(b), headers);
  }

  Web sign_in(const std::string& user, bool bearer = false) {
    Reply r = sign_in_raw(user, kPassword, bearer ? "token" : "cookie");
    EXPECT_EQ(r.status, 200) << r.body;
    Web w;
    w.port = port;
    w.user = user;
    if (r.status != 200) return w;
    w.csrf = str(r.obj().at("csrf_token"));
    if (bearer) {
      w.bearer = str(r.obj().at("token"));
    } else {
      const std::string c = r.header("Set-Cookie");
      w.cookie = c.substr(0, c.find(';'));
    }
    return w;
  }

  // A record created through the API as `w`; returns its id.
  std::string create(const Web& w, const std::string& entity, json::object fields) {
    Reply r = w.post("/api/v1/entities/" + entity, fields);
    EXPECT_EQ(r.status, 201) << entity << ": " << r.body;
    return r.status == 201 ? str(r.obj().at("id")) : std::string();
  }

  std::string account(const Web& w, const std::string& name, const std::string& territory,
                      const std::string& created_by) {
    return create(w, "account", {{"name", name}, {"territory_id", territory}, {"created_by", created_by}});
  }

  uint64_t head() {
    return *store->head_seq();
  }

#if FIELDSYNC_API_ON_POSTGRESQL
  // A second instance on the same database (its own store and directory objects, as another process has):
  // returns its port.
  uint16_t second_instance() {
    auto s = server::PgCentralStore::open(pg->url(), server::PgCentralStore::Options{});
    EXPECT_TRUE(s.is_ok()) << s.status().to_string();
    store2 = std::move(s.value());
    server::Directory::Options dopts;
    dopts.pbkdf2_iterations = 1000;
    auto d = server::Directory::open(pg->url(), dopts);
    EXPECT_TRUE(d.is_ok()) << d.status().to_string();
    directory2 = std::move(d.value());
    server2 = std::make_unique<server::NetServer>(*store2, *directory2, options(0, *directory2));
    Result<uint16_t> p = server2->start();
    EXPECT_TRUE(p.is_ok()) << p.status().to_string();
    return p ? *p : 0;
  }
#endif

  // A phone of `user` on node `node`: a FieldClient on a SQLite replica, synced over WsClient.
  struct Phone {
    std::unique_ptr<FieldClient> client;
    std::unique_ptr<WsClient> ws;
    ~Phone() {
      if (ws) ws->stop();
    }
  };
  Phone& phone(const std::string& user, NodeId node, const std::string& app_version = {}) {
    auto p = std::make_unique<Phone>();
    FieldClient::Options o;
    o.user = user;
    o.app_version = app_version;
    Result<std::string> t = directory->login(user, kPassword, node, wall_now_ms());
    EXPECT_TRUE(t.is_ok());
    o.token = *t;
    o.node = node;
    o.synchronous_full = false;
    auto c = FieldClient::open((dir / (user + ".db")).string(), std::move(o));
    EXPECT_TRUE(c.is_ok()) << c.status().to_string();
    p->client = std::move(c.value());
    phones.push_back(std::move(p));
    return *phones.back();
  }
  WsClientOptions ws_options(Phone& p) {
    WsClientOptions o;
    o.url = "wss://127.0.0.1:" + std::to_string(port) + "/sync";
    o.ca_file = TestPki::get().ca_file;
    o.reconnect_cap_ms = 200;
    FieldClient* c = p.client.get();
    o.after_frame = [c] { c->dispatch_events(); };
    return o;
  }
  void sync(Phone& p) {
    WsClient c(p.client->engine(), ws_options(p));
    client::WsStatus s = c.sync_once(20s);
    ASSERT_TRUE(s.ok()) << s.to_string();
    p.client->dispatch_events();
  }

  static inline int counter = 0;
  std::filesystem::path dir;
  std::unique_ptr<CentralStore> store;
  std::unique_ptr<server::Directory> directory;
  std::unique_ptr<server::NetServer> server;
  // PostgreSQL only: a second instance on the same database, with objects of its own (second_instance()).
  std::unique_ptr<CentralStore> store2;
  std::unique_ptr<server::Directory> directory2;
  std::unique_ptr<server::NetServer> server2;
  std::vector<std::unique_ptr<Phone>> phones;
  uint16_t port = 0;
};

// ---- Sessions

TEST_F(ApiTest, CookieSessionHasItsFlagsAndNeedsCsrfAndOwnOrigin) {
  Reply r = sign_in_raw("boss", kPassword);
  ASSERT_EQ(r.status, 200) << r.body;
  const std::string cookie = r.header("Set-Cookie");
  EXPECT_EQ(cookie.rfind("fs_session=", 0), 0u) << cookie;
  for (const char* flag : {"; HttpOnly", "; Secure", "; SameSite=Strict", "; Path=/api/"})
    EXPECT_NE(cookie.find(flag), std::string::npos) << flag << " in " << cookie;
  EXPECT_EQ(str(r.obj().at("role")), "head_office");
  EXPECT_EQ(str(r.obj().at("display_name")), "boss name");
  EXPECT_FALSE(r.obj().contains("token")) << "a browser's session is only in the HttpOnly cookie";
  EXPECT_GT(r.obj().at("expires_at_ms").as_int64(), wall_now_ms());
  Web w = sign_in("boss");

  Reply me = w.get("/api/v1/session");
  EXPECT_EQ(me.status, 200) << me.body;
  EXPECT_EQ(str(me.obj().at("user")), "boss");
  EXPECT_EQ(str(me.obj().at("csrf_token")), w.csrf);

  // A state-changing request without the CSRF token, or with another, is refused and changes nothing.
  const uint64_t before = head();
  json::object acc{{"name", "Acme"}, {"territory_id", "north"}, {"created_by", "boss"}};
  Reply no_csrf =
      https(port, http::verb::post, "/api/v1/entities/account", json::serialize(acc), {{"Cookie", w.cookie}});
  EXPECT_EQ(no_csrf.status, 403);
  EXPECT_EQ(no_csrf.code(), "csrf_failed");
  EXPECT_TRUE(no_csrf.obj().at("field").is_null());
  Reply bad_csrf = https(port, http::verb::post, "/api/v1/entities/account", json::serialize(acc),
                         {{"Cookie", w.cookie}, {"X-CSRF-Token", w.csrf + "x"}});
  EXPECT_EQ(bad_csrf.code(), "csrf_failed");
  EXPECT_EQ(head(), before);

  // Another origin is refused even with the token; the server's own origin is fine.
  Reply foreign = w.call(http::verb::post, "/api/v1/entities/account", json::serialize(acc),
                         {{"Origin", "https://evil.example"}});
  EXPECT_EQ(foreign.status, 403);
  EXPECT_EQ(foreign.code(), "bad_origin");
  EXPECT_EQ(head(), before);
  Reply own = w.call(http::verb::post, "/api/v1/entities/account", json::serialize(acc),
                     {{"Origin", "https://127.0.0.1:" + std::to_string(port)}});
  EXPECT_EQ(own.status, 201) << own.body;
  EXPECT_EQ(head(), before + 1);
  EXPECT_EQ(sign_in_raw("boss", kPassword, "cookie", {{"Origin", "https://evil.example"}}).code(),
            "bad_origin");

  // Logout ends the session.
  Reply out = w.call(http::verb::delete_, "/api/v1/session");
  EXPECT_EQ(out.status, 200);
  EXPECT_NE(out.header("Set-Cookie").find("Max-Age=0"), std::string::npos);
  EXPECT_EQ(w.get("/api/v1/session").status, 401);
  EXPECT_EQ(w.get("/api/v1/entities/account").code(), "unauthenticated");
}

TEST_F(ApiTest, BearerTokenNeedsNoCsrfAndFailuresAreLateAndAlike) {
  Web script = sign_in("boss", /*bearer=*/true);
  EXPECT_FALSE(script.bearer.empty());
  EXPECT_EQ(account(script, "Scripted", "north", "boss").size(), 36u);
  // A bearer token is not a cookie and the reverse.
  EXPECT_EQ(
      https(port, http::verb::get, "/api/v1/session", "", {{"Cookie", "fs_session=" + script.bearer}}).status,
      401);

  const auto t0 = std::chrono::steady_clock::now();
  Reply wrong = sign_in_raw("boss", "wrong password");
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 200ms);
  EXPECT_EQ(wrong.status, 401);
  Reply nobody = sign_in_raw("nobody", "wrong password");
  EXPECT_EQ(nobody.body, wrong.body) << "an unknown user reads like a wrong password";
  EXPECT_EQ(sign_in_raw("boss", kPassword, "sideways").code(), "value_invalid");
  EXPECT_EQ(https(port, http::verb::post, "/api/v1/session", "{\"user\":1}", {}).code(), "wrong_type");
  EXPECT_EQ(https(port, http::verb::get, "/api/v1/entities/account", "", {}).status, 401);
  EXPECT_EQ(
      https(port, http::verb::get, "/api/v1/entities/account", "", {{"Authorization", "Bearer nope"}}).status,
      401);
}

TEST_F(ApiTest, SignInsAreThrottledLikeLogin) {
  int limited = 0;
  for (int i = 0; i < 22; ++i) limited += sign_in_raw("boss", "wrong password").status == 429;
  EXPECT_GE(limited, 2);
  EXPECT_EQ(sign_in_raw("boss", kPassword).status, 429) << "the address waits out the window";
}

TEST_F(ApiTest, SessionsExpire) {
  server->stop();
  server.reset();
  store.reset();
  directory.reset();
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  start(/*session_ttl_ms=*/600);
  Web w = sign_in("boss");
  EXPECT_EQ(w.get("/api/v1/session").status, 200);
  std::this_thread::sleep_for(700ms);
  EXPECT_EQ(w.get("/api/v1/session").status, 401);
}

// Web sessions are kept in the directory: a server restarted on the same store keeps its users signed in.
TEST_F(ApiTest, SessionsSurviveARestart) {
  Web boss = sign_in("boss");
  Web script = sign_in("rep1", /*bearer=*/true);
  server->stop();
  server = std::make_unique<server::NetServer>(*store, *directory, options(0, *directory));
  Result<uint16_t> p = server->start();
  ASSERT_TRUE(p.is_ok()) << p.status().to_string();
  boss.port = script.port = port = *p;
  EXPECT_EQ(boss.get("/api/v1/session").status, 200);
  EXPECT_EQ(account(boss, "After restart", "north", "boss").size(), 36u) << "its CSRF token still holds";
  EXPECT_EQ(script.get("/api/v1/entities/account").status, 200);
}

TEST_F(ApiTest, DisablingAUserEndsTheirSessionsAndSyncAtOnce) {
  Web boss = sign_in("boss");
  Web rep = sign_in("rep1");
  Phone& p = phone("rep1", 100);
  std::mutex mu;
  std::vector<ErrorCode> errors;
  client::Observer obs;
  obs.error = [&](const Status& s) {
    std::lock_guard lock(mu);
    errors.push_back(s.code());
  };
  p.client->add_observer(obs);
  WsClient live(p.client->engine(), ws_options(p));
  ASSERT_TRUE(live.start().ok());
  ASSERT_TRUE(live.wait_until(
      [&] {
        return p.client->sync_status().is_ok() && p.client->sync_status()->last_synced_at_ms.has_value();
      },
      20s));
  EXPECT_EQ(rep.get("/api/v1/session").status, 200);

  Reply d = boss.patch("/api/v1/users/rep1", json::object{{"disabled", true}});
  ASSERT_EQ(d.status, 200) << d.body;
  EXPECT_TRUE(d.obj().at("disabled").as_bool());
  EXPECT_EQ(rep.get("/api/v1/session").status, 401) << "the web session stopped";
  EXPECT_TRUE(live.wait_until(
      [&] {
        std::lock_guard lock(mu);
        return std::count(errors.begin(), errors.end(), ErrorCode::kAuthFailed) > 0;
      },
      10s))
      << live.last_error().to_string();
  EXPECT_EQ(sign_in_raw("rep1", kPassword).status, 401);
  EXPECT_FALSE(directory->login("rep1", kPassword, 100, wall_now_ms()).is_ok())
      << "no new device token either";
  live.stop();
}

// A territory granted through the directory reaches a rep's phone that stays connected: its accounts and
// what hangs off them arrive whole, later changes there arrive live, and a territory taken away is purged,
// all without a reconnect (SyncServer::update_principal, driven by the server's poll of the audit trail).
TEST_F(ApiTest, ATerritoryGrantedOrTakenReachesAConnectedPhoneWithoutReconnecting) {
  Web boss = sign_in("boss");
  const std::string south = account(boss, "Southern Mills", "south", "boss");
  const std::string contact = create(boss, "contact", {{"account_id", south}, {"name", "Ada South"}});
  Phone& p = phone("rep1", 100);
  std::atomic<int> connects{0};
  WsClientOptions o = ws_options(p);
  o.on_connection = [&](bool up) { connects += up ? 1 : 0; };
  WsClient live(p.client->engine(), o);
  ASSERT_TRUE(live.start().ok());
  ASSERT_TRUE(live.wait_until(
      [&] {
        return p.client->sync_status().is_ok() && p.client->sync_status()->last_synced_at_ms.has_value();
      },
      20s));
  std::this_thread::sleep_for(300ms);  // live (caught up)
  EXPECT_FALSE(p.client->account(south).is_ok()) << "not rep1's territory yet";
  const int connected = connects.load();

  Reply grant =
      boss.patch("/api/v1/users/rep1", json::object{{"territories", json::array{"north", "south"}}});
  ASSERT_EQ(grant.status, 200) << grant.body;
  ASSERT_TRUE(live.wait_until([&] { return p.client->account(south).is_ok(); }, 10s))
      << live.last_error().to_string();
  Result<client::AccountWithContacts> got = p.client->account(south);
  EXPECT_EQ(got->account.name, "Southern Mills");
  ASSERT_EQ(got->contacts.size(), 1u) << "with what hangs off it";
  EXPECT_EQ(got->contacts[0].id, contact);
  // The session now sees the south: a later change there arrives live.
  ASSERT_EQ(
      boss.patch("/api/v1/entities/account/" + south, json::object{{"name", "Southern Mills Ltd"}}).status,
      200);
  EXPECT_TRUE(
      live.wait_until([&] { return p.client->account(south)->account.name == "Southern Mills Ltd"; }, 10s));

  // Taken away: purged from the phone.
  ASSERT_EQ(boss.patch("/api/v1/users/rep1", json::object{{"territories", json::array{"north"}}}).status,
            200);
  EXPECT_TRUE(live.wait_until([&] { return !p.client->account(south).is_ok(); }, 10s));
  EXPECT_EQ(connects.load(), connected) << "one connection throughout";
  live.stop();
}

// ---- Roles and scope

TEST_F(ApiTest, EveryRoleSeesItsScopeAndOutsideIsNotFound) {
  Web boss = sign_in("boss");
  const std::string north = account(boss, "North Co", "north", "boss");
  const std::string south = account(boss, "South Co", "south", "boss");
  const std::string east = account(boss, "East Co", "east", "boss");
  create(boss, "contact", {{"account_id", north}, {"name", "Nina"}});
  create(boss, "contact", {{"account_id", south}, {"name", "Sam"}});
  create(boss, "opportunity",
         {{"account_id", north},
          {"owner_id", "rep1"},
          {"name", "Big"},
          {"stage", "prospect"},
          {"amount_cents", 100000},
          {"currency", "EUR"}});

  auto ids = [](const Reply& r) {
    std::set<std::string> out;
    for (const json::value& v : r.obj().at("items").as_array()) out.insert(str(v.as_object().at("id")));
    return out;
  };
  EXPECT_EQ(ids(boss.get("/api/v1/entities/account")), (std::set<std::string>{north, south, east}));
  Web rep1 = sign_in("rep1"), rep2 = sign_in("rep2"), mgr = sign_in("mgr"), dealer = sign_in("dealer");
  EXPECT_EQ(ids(rep1.get("/api/v1/entities/account")), (std::set<std::string>{north}));
  EXPECT_EQ(ids(rep2.get("/api/v1/entities/account")), (std::set<std::string>{south}));
  EXPECT_EQ(ids(mgr.get("/api/v1/entities/account")), (std::set<std::string>{north}))
      << "the team's territories";
  EXPECT_EQ(ids(dealer.get("/api/v1/entities/account")), (std::set<std::string>{north}))
      << "the partner's grant";
  EXPECT_EQ(rep1.get("/api/v1/entities/contact").obj().at("items").as_array().size(), 1u);

  // Outside the scope: 404 with nothing about the record, exactly like an id that does not exist.
  Reply hidden = rep1.get("/api/v1/entities/account/" + south);
  Reply missing = rep1.get("/api/v1/entities/account/01890000-0000-7000-8000-000000000000");
  EXPECT_EQ(hidden.status, 404);
  EXPECT_EQ(hidden.body, missing.body);
  EXPECT_EQ(rep1.get("/api/v1/entities/account/" + south + "/history").status, 404);
  EXPECT_EQ(dealer.get("/api/v1/entities/account/" + south).status, 404);

  // The partner: accounts of the grant, no contacts or deals at all, and only visits, notes and orders.
  EXPECT_EQ(dealer.get("/api/v1/entities/contact").code(), "unknown_entity");
  EXPECT_EQ(dealer.get("/api/v1/entities/opportunity").status, 404);
  Reply with_children = dealer.get("/api/v1/entities/account/" + north);
  ASSERT_EQ(with_children.status, 200) << with_children.body;
  EXPECT_FALSE(with_children.obj().at("children").as_object().contains("contact"));
  EXPECT_FALSE(with_children.obj().at("children").as_object().contains("opportunity"));
  const uint64_t before = head();
  EXPECT_EQ(dealer.patch("/api/v1/entities/account/" + north, json::object{{"name", "Mine now"}}).status,
            403);
  EXPECT_EQ(
      dealer.post("/api/v1/entities/contact", json::object{{"account_id", north}, {"name", "X"}}).status,
      404);
  EXPECT_EQ(dealer
                .post("/api/v1/entities/account",
                      json::object{{"name", "New"}, {"territory_id", "north"}, {"created_by", "dealer"}})
                .status,
            403);
  EXPECT_EQ(dealer.get("/api/v1/users").obj().at("items").as_array().size(), 1u) << "only themselves";
  EXPECT_EQ(dealer.get("/api/v1/conflicts").status, 403);
  EXPECT_EQ(dealer.post("/api/v1/orders/" + north + "/approve", json::object{}).status, 403);
  EXPECT_EQ(head(), before) << "nothing the partner may not do was written";
  EXPECT_EQ(dealer.patch("/api/v1/entities/account/" + north, json::object{{"notes", "Called by the dealer"}})
                .status,
            200);
  const std::string visit = create(dealer, "visit",
                                   {{"account_id", north},
                                    {"rep_id", "dealer"},
                                    {"check_in_at", wall_now_ms()},
                                    {"outcome", "order_taken"}});
  EXPECT_FALSE(visit.empty());
  const std::string order =
      create(dealer, "order",
             {{"account_id", north}, {"rep_id", "dealer"}, {"status", "draft"}, {"currency", "EUR"}});
  EXPECT_FALSE(order.empty());
  // Not in the grant: the same 404 as anything else outside.
  EXPECT_EQ(
      dealer
          .post("/api/v1/entities/visit",
                json::object{{"account_id", south}, {"rep_id", "dealer"}, {"check_in_at", wall_now_ms()}})
          .status,
      404);

  // Head-office-only endpoints refuse the other roles.
  for (const Web* w : {&rep1, &mgr, &dealer}) {
    EXPECT_EQ(
        w->post("/api/v1/users",
                json::object{{"id", "x"}, {"display_name", "x"}, {"role", "rep"}, {"password", kPassword}})
            .status,
        403)
        << w->user;
    EXPECT_EQ(w->get("/api/v1/audit").status, 403) << w->user;
    EXPECT_EQ(w->post("/api/v1/accounts/reassign",
                      json::object{{"accounts", json::array{north}}, {"territory", "south"}})
                  .status,
              403)
        << w->user;
  }
  EXPECT_EQ(rep1.get("/api/v1/devices").status, 403);
  EXPECT_EQ(mgr.get("/api/v1/devices").status, 200);
}

// ---- Generic reads

TEST_F(ApiTest, ListsFilterSortAndPageRecordsComeWithChildrenAndHistory) {
  Web boss = sign_in("boss");
  const std::string a = account(boss, "Alpha", "north", "boss");
  const std::string b = account(boss, "Beta", "south", "boss");
  const std::string product = create(boss, "product", {{"sku", "P-1"}, {"name", "Widget"}, {"active", true}});
  const std::string order = create(
      boss, "order", {{"account_id", a}, {"rep_id", "rep1"}, {"status", "draft"}, {"currency", "EUR"}});
  create(boss, "order_line",
         {{"order_id", order},
          {"product_id", product},
          {"quantity", 3},
          {"unit_price_cents", 1000},
          {"discount_bp", 1000}});
  create(boss, "order_line",
         {{"order_id", order}, {"product_id", product}, {"quantity", 1}, {"unit_price_cents", 550}});

  // Filters on the scope field and on a reference; sort by a declared field.
  Reply north = boss.get("/api/v1/entities/account?territory_id=north");
  ASSERT_EQ(north.status, 200) << north.body;
  ASSERT_EQ(north.obj().at("items").as_array().size(), 1u);
  EXPECT_EQ(str(north.obj().at("items").as_array()[0].as_object().at("name")), "Alpha");
  Reply by_name = boss.get("/api/v1/entities/account?sort=name&order=desc");
  EXPECT_EQ(str(by_name.obj().at("items").as_array()[0].as_object().at("id")), b);
  EXPECT_EQ(boss.get("/api/v1/entities/order?account_id=" + b).obj().at("items").as_array().size(), 0u);
  EXPECT_EQ(boss.get("/api/v1/entities/order?status=draft").obj().at("items").as_array().size(), 1u);
  EXPECT_EQ(boss.get("/api/v1/entities/account?q=lph").obj().at("items").as_array().size(), 1u);
  EXPECT_EQ(boss.get("/api/v1/entities/account?name=Alpha").code(), "unknown_field")
      << "text is searched with q";
  EXPECT_EQ(boss.get("/api/v1/entities/account?colour=red").code(), "unknown_field");
  EXPECT_EQ(boss.get("/api/v1/entities/account?sort=colour").code(), "unknown_field");
  EXPECT_EQ(boss.get("/api/v1/entities/nothing").code(), "unknown_entity");
  EXPECT_EQ(boss.get("/api/v1/entities/account?limit=0").code(), "value_invalid");
  EXPECT_EQ(boss.get("/api/v1/entities/account?cursor=garbage").code(), "bad_cursor");

  // Credit limits are head office's (server-owned): a manager's attempt is refused and changes nothing.
  ASSERT_EQ(boss.patch("/api/v1/entities/account/" + a, json::object{{"credit_limit_cents", 500000}}).status,
            200);
  Reply limit =
      sign_in("mgr").patch("/api/v1/entities/account/" + a, json::object{{"credit_limit_cents", 1}});
  EXPECT_EQ(limit.status, 403) << limit.body;
  EXPECT_EQ(limit.code(), "server_owned_field");
  EXPECT_EQ(boss.get("/api/v1/entities/account/" + a)
                .obj()
                .at("record")
                .as_object()
                .at("credit_limit_cents")
                .as_int64(),
            500000);

  // One record with its children and the order's totals (3 x 10.00 - 10% + 5.50 = 32.50).
  Reply o = boss.get("/api/v1/entities/order/" + order);
  ASSERT_EQ(o.status, 200) << o.body;
  EXPECT_EQ(o.obj().at("children").as_object().at("order_line").as_array().size(), 2u);
  EXPECT_EQ(o.obj().at("totals").as_object().at("gross_cents").as_int64(), 3550);
  EXPECT_EQ(o.obj().at("totals").as_object().at("net_cents").as_int64(), 3250);
  Reply acc = boss.get("/api/v1/entities/account/" + a);
  ASSERT_EQ(acc.status, 200);
  EXPECT_EQ(acc.obj().at("children").as_object().at("order").as_array().size(), 1u);
  for (const char* child : {"contact", "visit", "order", "opportunity"})
    EXPECT_TRUE(acc.obj().at("children").as_object().contains(child)) << child;

  // History: who, when, from which device, old and new values.
  ASSERT_EQ(boss.patch("/api/v1/entities/account/" + a, json::object{{"phone", "+49 1"}}).status, 200);
  ASSERT_EQ(boss.patch("/api/v1/entities/account/" + a, json::object{{"phone", "+49 2"}}).status, 200);
  Reply h = boss.get("/api/v1/entities/account/" + a + "/history");
  ASSERT_EQ(h.status, 200) << h.body;
  std::vector<std::pair<std::string, std::string>> phones;
  for (const json::value& v : h.obj().at("items").as_array()) {
    const json::object& e = v.as_object();
    EXPECT_EQ(str(e.at("user")), "boss");
    EXPECT_EQ(str(e.at("device")), "web");
    EXPECT_GT(e.at("at_ms").as_int64(), wall_now_ms() - 60'000);
    if (e.at("field") == json::value("phone")) phones.emplace_back(str(e.at("old")), str(e.at("new")));
  }
  EXPECT_EQ(phones,
            (std::vector<std::pair<std::string, std::string>>{{"null", "+49 1"}, {"+49 1", "+49 2"}}));
}

TEST_F(ApiTest, KeysetPagingIsStableUnderConcurrentWrites) {
  Web boss = sign_in("boss", true);
  std::set<std::string> original;
  for (int i = 0; i < 60; ++i) original.insert(account(boss, "Acc " + std::to_string(i), "north", "boss"));
  std::atomic<bool> stop{false};
  std::atomic<int> written{0};
  std::thread writer([&] {
    Web w = boss;
    for (int i = 0; !stop && i < 200; ++i) {
      if (w.post("/api/v1/entities/account", json::object{{"name", "Late " + std::to_string(i)},
                                                          {"territory_id", "north"},
                                                          {"created_by", "boss"}})
              .status == 201)
        written++;
    }
  });
  for (const std::string sort : {"id", "name"}) {
    std::vector<std::string> seen;
    std::string cursor;
    for (int page = 0; page < 100; ++page) {
      Reply r = boss.get("/api/v1/entities/account?limit=7&sort=" + sort +
                         (cursor.empty() ? "" : "&cursor=" + cursor));
      ASSERT_EQ(r.status, 200) << r.body;
      for (const json::value& v : r.obj().at("items").as_array()) seen.push_back(str(v.as_object().at("id")));
      if (r.obj().at("next_cursor").is_null()) break;
      cursor = str(r.obj().at("next_cursor"));
      std::this_thread::sleep_for(5ms);
    }
    std::set<std::string> unique(seen.begin(), seen.end());
    EXPECT_EQ(unique.size(), seen.size()) << sort << ": no record twice";
    for (const std::string& id : original)
      EXPECT_TRUE(unique.count(id)) << sort << ": every record that existed throughout";
  }
  stop = true;
  writer.join();
  EXPECT_GT(written.load(), 0) << "the writes did run concurrently";
}

// ---- Bad input changes nothing

TEST_F(ApiTest, BadInputOfEachKindIsA4xxWithCodeAndFieldAndChangesNothing) {
  Web boss = sign_in("boss");
  const std::string a = account(boss, "Alpha", "north", "boss");
  const uint64_t before = head();
  const std::string record_before = boss.get("/api/v1/entities/account/" + a).body;
  struct Case {
    http::verb method;
    std::string target;
    std::string body;
    int status;
    std::string code;
    std::string field;
  };
  const std::string path = "/api/v1/entities/account/" + a;
  const std::vector<Case> cases = {
      {http::verb::patch, path, "{not json", 400, "invalid_json", ""},
      {http::verb::patch, path, "[1,2]", 400, "invalid_json", ""},
      {http::verb::patch, path, R"({"phone": 12})", 400, "wrong_type", "phone"},
      {http::verb::patch, path, R"({"credit_limit_cents": "lots"})", 400, "wrong_type", "credit_limit_cents"},
      {http::verb::patch, path, R"({"colour": "red"})", 400, "unknown_field", "colour"},
      {http::verb::patch, path, R"({"email": "not an address"})", 422, "value_invalid", "email"},
      {http::verb::patch, path, R"({"segment": "z"})", 422, "value_invalid", "segment"},
      {http::verb::patch, path, R"({"credit_limit_cents": -5})", 422, "value_invalid", "credit_limit_cents"},
      {http::verb::patch, path, R"({"name": null})", 422, "null_violation", "name"},
      {http::verb::patch, path, R"({"phone": "+1", "email": "bad"})", 422, "value_invalid", "email"},
      {http::verb::patch, "/api/v1/entities/account/01890000-0000-7000-8000-000000000000",
       R"({"phone": "+1"})", 404, "not_found", ""},
      {http::verb::patch, "/api/v1/entities/account/not-an-id", R"({"phone": "+1"})", 404, "not_found", ""},
      {http::verb::post, "/api/v1/entities/account", R"({"name": "No territory", "created_by": "boss"})", 422,
       "missing_field", "territory_id"},
      {http::verb::post, "/api/v1/entities/widget", R"({"name": "x"})", 404, "unknown_entity", "entity"},
      {http::verb::post, "/api/v1/entities/account", "{\"name\": \"" + std::string(300 * 1024, 'x') + "\"}",
       413, "body_too_large", ""},
      {http::verb::post, "/api/v1/orders/" + a + "/reject", R"({})", 400, "missing_field", "reason"},
      {http::verb::post, "/api/v1/conflicts/99/resolve", R"({"action": "undo"})", 400, "value_invalid",
       "action"},
  };
  for (const Case& c : cases) {
    Reply r = boss.call(c.method, c.target, c.body);
    EXPECT_EQ(r.status, c.status) << c.body.substr(0, 80) << " -> " << r.body.substr(0, 200);
    if (c.code.empty()) continue;
    EXPECT_EQ(r.code(), c.code) << c.body.substr(0, 80) << " -> " << r.body;
    ASSERT_TRUE(r.json.is_object()) << r.body;
    EXPECT_TRUE(r.obj().at("message").is_string());
    if (c.field.empty()) {
      EXPECT_TRUE(r.obj().at("field").is_null()) << r.body;
    } else {
      EXPECT_EQ(str(r.obj().at("field")), c.field) << r.body;
    }
  }
  Reply text = https(port, http::verb::patch, path, R"({"phone":"+1"})",
                     {{"Cookie", boss.cookie}, {"X-CSRF-Token", boss.csrf}, {"Content-Type", "text/plain"}});
  EXPECT_EQ(text.status, 415);
  EXPECT_EQ(text.code(), "unsupported_media_type");
  EXPECT_EQ(boss.get("/api/v1/nothing/here").code(), "not_found");
  EXPECT_EQ(boss.call(http::verb::put, path).code(), "method_not_allowed");
  EXPECT_EQ(head(), before) << "no bad request wrote anything";
  EXPECT_EQ(boss.get("/api/v1/entities/account/" + a).body, record_before);
}

// ---- Orders through the device path

TEST_F(ApiTest, ApprovalReachesTheRepsPhoneWhoseEditIsThenRejectedAndRolledBack) {
  Web boss = sign_in("boss");
  Web mgr = sign_in("mgr");
  Web rep2 = sign_in("rep2");
  const std::string acc = account(boss, "Northwind", "north", "boss");
  const std::string product = create(boss, "product", {{"sku", "W-1"}, {"name", "Widget"}, {"active", true}});

  Phone& p = phone("rep1", 100);
  sync(p);
  Result<std::string> order = p.client->draft_order(acc, "EUR");
  ASSERT_TRUE(order.is_ok()) << order.status().to_string();
  ASSERT_TRUE(p.client->add_line(*order, client::NewLine{product, 2, 1500}).is_ok());
  ASSERT_TRUE(p.client->submit_order(*order).is_ok());
  sync(p);

  // Outside the manager's team or not submitted: refused, nothing written.
  const uint64_t before = head();
  EXPECT_EQ(rep2.post("/api/v1/orders/" + *order + "/approve", json::object{}).status, 403)
      << "reps do not approve";
  EXPECT_EQ(boss.post("/api/v1/orders/" + *order + "/fulfil", json::object{}).code(), "invalid_transition");
  EXPECT_EQ(mgr.post("/api/v1/orders/" + *order + "/fulfil", json::object{}).status, 403);
  EXPECT_EQ(head(), before);

  // The manager of rep1's team approves: status, approved_by and approved_at, in the log as the manager.
  const int64_t t0 = wall_now_ms();
  Reply ok = mgr.post("/api/v1/orders/" + *order + "/approve", json::object{});
  ASSERT_EQ(ok.status, 200) << ok.body;
  Reply o = boss.get("/api/v1/entities/order/" + *order);
  EXPECT_EQ(str(o.obj().at("record").as_object().at("status")), "approved");
  EXPECT_EQ(str(o.obj().at("record").as_object().at("approved_by")), "mgr");
  EXPECT_GE(o.obj().at("record").as_object().at("approved_at").as_int64(), t0);
  EXPECT_TRUE(o.obj().at("record").as_object().at("delivery_date").is_null()) << "nothing else is filled";
  EXPECT_EQ(mgr.post("/api/v1/orders/" + *order + "/approve", json::object{}).code(), "invalid_transition");

  // The rep, not yet synced, still sees the order submitted and changes a line offline. At the next sync the
  // server refuses that edit with order_locked, the device rolls it back, and the approval arrives.
  Result<client::Order> before_sync = p.client->order(*order);
  ASSERT_TRUE(before_sync.is_ok());
  ASSERT_EQ(before_sync->status, "submitted");
  ASSERT_FALSE(before_sync->lines.empty());
  client::LineEdit edit;
  edit.quantity = 5;
  ASSERT_TRUE(p.client->change_line(before_sync->lines.front().id, edit).is_ok());
  EXPECT_EQ(p.client->order(*order)->lines.front().quantity, 5);
  sync(p);
  Result<std::vector<Rejection>> rej = p.client->rejections();
  ASSERT_TRUE(rej.is_ok());
  ASSERT_EQ(rej->size(), 1u) << "the server refused the edit";
  EXPECT_EQ(rej->back().reason, ErrorCode::kOrderLocked) << rej->back().message;
  Result<client::Order> on_phone = p.client->order(*order);
  ASSERT_TRUE(on_phone.is_ok());
  EXPECT_EQ(on_phone->status, "approved") << "the approval reached the phone";
  EXPECT_EQ(on_phone->lines.front().quantity, 2) << "the edit was rolled back on the device";
  EXPECT_EQ(p.client->change_line(on_phone->lines.front().id, edit).code(), ErrorCode::kOrderLocked)
      << "and the device now refuses such edits itself";
  Reply lines = boss.get("/api/v1/entities/order/" + *order);
  EXPECT_EQ(lines.obj()
                .at("children")
                .as_object()
                .at("order_line")
                .as_array()[0]
                .as_object()
                .at("quantity")
                .as_int64(),
            2);

  // Head office fulfils it.
  EXPECT_EQ(boss.post("/api/v1/orders/" + *order + "/fulfil", json::object{}).status, 200);
  EXPECT_EQ(str(boss.get("/api/v1/entities/order/" + *order).obj().at("record").as_object().at("status")),
            "fulfilled");
}

TEST_F(ApiTest, AnApprovalReachesAConnectedPhoneLive) {
  Web boss = sign_in("boss");
  const std::string acc = account(boss, "Live Co", "north", "boss");
  const std::string product = create(boss, "product", {{"sku", "L-1"}, {"name", "Live"}, {"active", true}});
  Phone& p = phone("rep1", 100);
  sync(p);
  Result<std::string> order = p.client->draft_order(acc, "EUR");
  ASSERT_TRUE(order.is_ok());
  ASSERT_TRUE(p.client->add_line(*order, client::NewLine{product, 1, 100}).is_ok());
  ASSERT_TRUE(p.client->submit_order(*order).is_ok());
  sync(p);
  WsClient live(p.client->engine(), ws_options(p));
  ASSERT_TRUE(live.start().ok());
  ASSERT_TRUE(
      live.wait_until([&] { return p.client->sync_status()->pending_txns == 0 && live.connected(); }, 20s));
  std::this_thread::sleep_for(300ms);  // the session is live (caught up) before the approval
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_EQ(boss.post("/api/v1/orders/" + *order + "/approve", json::object{}).status, 200);
  ASSERT_TRUE(live.wait_until([&] { return p.client->order(*order)->status == "approved"; }, 10s));
  const auto took =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
  // The live fan-out of the approval's own commit, no pull: well under the idle pull interval (60 s). The
  // answer itself waits for the group commit's flush, which the batch to the phone leaves with.
  EXPECT_LT(took.count(), 2000) << "approval to phone: " << took.count() << " ms";
  RecordProperty("approval_to_phone_ms", static_cast<int>(took.count()));
  live.stop();
}

// Schema 2: an open order changes hands through the generic PATCH under the model's rules -- a manager to a
// rep of her team, never a rep -- and the phone of the territory sees the new rep after its next sync.
TEST_F(ApiTest, AnOpenOrderChangesHandsUnderTheModelsRulesAndThePhoneSeesIt) {
  ASSERT_TRUE(directory->assign_team("mgr", "rep3").is_ok());
  Web boss = sign_in("boss");
  Web mgr = sign_in("mgr");
  Web rep1 = sign_in("rep1");
  const std::string acc = account(boss, "Northwind", "north", "boss");
  const std::string product = create(boss, "product", {{"sku", "W-1"}, {"name", "Widget"}, {"active", true}});
  Phone& p = phone("rep1", 100);
  sync(p);
  Result<std::string> order = p.client->draft_order(acc, "EUR");
  ASSERT_TRUE(order.is_ok()) << order.status().to_string();
  ASSERT_TRUE(p.client->add_line(*order, client::NewLine{product, 2, 1500}).is_ok());
  sync(p);

  const uint64_t before = head();
  Reply own = rep1.patch("/api/v1/entities/order/" + *order, json::object{{"rep_id", "rep3"}});
  EXPECT_EQ(own.status, 403) << "a rep does not hand her orders on: " << own.body;
  Reply outside = mgr.patch("/api/v1/entities/order/" + *order, json::object{{"rep_id", "rep2"}});
  EXPECT_EQ(outside.status, 403) << "rep2 is not on the manager's team: " << outside.body;
  EXPECT_EQ(head(), before) << "nothing written";

  Reply ok = mgr.patch("/api/v1/entities/order/" + *order, json::object{{"rep_id", "rep3"}});
  ASSERT_EQ(ok.status, 200) << ok.body;
  sync(p);
  Result<client::Order> o = p.client->order(*order);
  ASSERT_TRUE(o.is_ok()) << o.status().to_string();
  EXPECT_EQ(o->rep_id, "rep3");
  EXPECT_EQ(o->lines.size(), 1u);
}

TEST_F(ApiTest, RejectionGoesBackToDraftWithAReasonTheRepSees) {
  Web mgr = sign_in("mgr");
  Web boss = sign_in("boss");
  const std::string acc = account(boss, "Northwind", "north", "boss");
  Phone& p = phone("rep1", 100);
  sync(p);
  const std::string product = create(boss, "product", {{"sku", "W-1"}, {"name", "Widget"}, {"active", true}});
  sync(p);
  Result<std::string> order = p.client->draft_order(acc, "EUR");
  ASSERT_TRUE(order.is_ok());
  ASSERT_TRUE(p.client->add_line(*order, client::NewLine{product, 1, 100}).is_ok());
  ASSERT_TRUE(p.client->submit_order(*order).is_ok());
  sync(p);
  Reply r = mgr.post("/api/v1/orders/" + *order + "/reject", json::object{{"reason", "Price list expired"}});
  ASSERT_EQ(r.status, 200) << r.body;
  sync(p);
  Result<client::Order> o = p.client->order(*order);
  ASSERT_TRUE(o.is_ok());
  EXPECT_EQ(o->status, "draft");
  EXPECT_NE(o->notes.find("Price list expired"), std::string::npos) << o->notes;
  EXPECT_NE(o->notes.find("mgr"), std::string::npos);
  EXPECT_EQ(mgr.post("/api/v1/orders/" + *order + "/reject", json::object{{"reason", "  "}}).code(),
            "value_invalid");
}

// ---- Change feed

TEST_F(ApiTest, ChangeFeedPagesInServerOrderScopeFiltered) {
  Web boss = sign_in("boss");
  const std::string n = account(boss, "N", "north", "boss");
  const std::string s = account(boss, "S", "south", "boss");
  Web rep1 = sign_in("rep1");
  Reply all = boss.get("/api/v1/changes?since=0");
  ASSERT_EQ(all.status, 200) << all.body;
  EXPECT_EQ(all.obj().at("items").as_array().size(), 2u);
  EXPECT_EQ(all.obj().at("next_since").to_number<uint64_t>(), head());
  Reply mine = rep1.get("/api/v1/changes?since=0");
  ASSERT_EQ(mine.obj().at("items").as_array().size(), 1u);
  EXPECT_EQ(
      str(mine.obj().at("items").as_array()[0].as_object().at("changes").as_array()[0].as_object().at("id")),
      n);
  const uint64_t first =
      all.obj().at("items").as_array()[0].as_object().at("server_seq").to_number<uint64_t>();
  Reply after = boss.get("/api/v1/changes?since=" + std::to_string(first));
  ASSERT_EQ(after.obj().at("items").as_array().size(), 1u);
  EXPECT_EQ(
      str(after.obj().at("items").as_array()[0].as_object().at("changes").as_array()[0].as_object().at("id")),
      s);
  EXPECT_EQ(boss.get("/api/v1/changes?since=-1").code(), "value_invalid");
}

TEST_F(ApiTest, ChangeStreamSendsServerSentEventsAsChangesArrive) {
  Web boss = sign_in("boss");
  const uint64_t since = head();
  // A raw TLS connection reading the event stream while head office writes.
  EventStream events(port, "/api/v1/changes/stream?since=" + std::to_string(since), boss.cookie);
  std::string& got = events.got;
  auto read_until = [&](const std::string& needle) { return events.read_until(needle); };
  ASSERT_TRUE(read_until("retry: 2000")) << got;
  EXPECT_NE(got.find("Content-Type: text/event-stream"), std::string::npos) << got;
  EXPECT_NE(got.find("Transfer-Encoding: chunked"), std::string::npos) << got;
  const std::string id = account(boss, "Streamed", "north", "boss");
  ASSERT_TRUE(read_until(id)) << got;
  EXPECT_NE(got.find("event: change"), std::string::npos);
  EXPECT_NE(got.find("id: " + std::to_string(since + 1)), std::string::npos) << got;
}

// A reconnecting EventSource sends Last-Event-ID: the stream resumes after it, whatever `since` the URL says.
TEST_F(ApiTest, ChangeStreamResumesAfterLastEventId) {
  Web boss = sign_in("boss");
  const uint64_t since = head();
  const std::string first = account(boss, "First", "north", "boss");
  const std::string second = account(boss, "Second", "north", "boss");
  const uint64_t seen = head();  // the browser got up to here before it lost the connection
  const std::string third = account(boss, "Third", "north", "boss");

  EventStream events(port, "/api/v1/changes/stream?since=" + std::to_string(since), boss.cookie,
                     std::to_string(seen));
  const std::string& got = events.got;
  ASSERT_TRUE(events.read_until(third)) << got;
  EXPECT_EQ(got.find(first), std::string::npos) << "sent before the connection was lost";
  EXPECT_EQ(got.find(second), std::string::npos) << "sent before the connection was lost";
  EXPECT_NE(got.find("id: " + std::to_string(seen + 1)), std::string::npos) << got;
  events.close();

  Reply bad = boss.call(http::verb::get, "/api/v1/changes/stream", {}, {{"Last-Event-ID", "yesterday"}});
  EXPECT_EQ(bad.status, 400);
  EXPECT_EQ(bad.code(), "value_invalid");
}

// Each conflict event has an id of its own ("SEQ.N": the Nth conflict of commit SEQ), sent right after its
// commit's change: a connection lost between a change and its conflicts, or between two conflicts, resumes
// with what is left, nothing skipped and nothing twice.
TEST_F(ApiTest, ChangeStreamResumesBetweenAChangeAndItsConflicts) {
  Web boss = sign_in("boss");
  const std::string acc = account(boss, "Contested", "north", "boss");
  Phone& p = phone("rep1", 100);
  sync(p);
  client::AccountEdit e;  // one transaction: a change that stands and two conflicts in one commit
  e.address = "Rep Street 1";
  e.phone = "+49 rep";
  e.city = "Rep City";
  ASSERT_TRUE(p.client->edit_account(acc, e).is_ok());
  std::this_thread::sleep_for(5ms);
  ASSERT_EQ(boss.patch("/api/v1/entities/account/" + acc,
                       json::object{{"phone", "+49 office"}, {"city", "Office City"}})
                .status,
            200);
  const uint64_t before = head();
  sync(p);
  const uint64_t seq = head();
  ASSERT_EQ(seq, before + 1);
  ASSERT_EQ(boss.get("/api/v1/conflicts?resolved=false").obj().at("items").as_array().size(), 2u);
  const std::string change_id = "id: " + std::to_string(seq) + "\nevent: change";
  const std::string c1 = "id: " + std::to_string(seq) + ".1\nevent: conflict";
  const std::string c2 = "id: " + std::to_string(seq) + ".2\nevent: conflict";

  {  // from before the commit: the change, then its two conflicts
    EventStream events(port, "/api/v1/changes/stream?since=" + std::to_string(before), boss.cookie);
    ASSERT_TRUE(events.read_until(c2)) << events.got;
    EXPECT_LT(events.got.find(change_id), events.got.find(c1)) << events.got;
    EXPECT_LT(events.got.find(c1), events.got.find(c2)) << events.got;
    events.close();
  }
  // Resumed from the change's id: both conflicts, not the change again.
  auto resumed = [&](const std::string& last_id, const std::string& marker) {
    EventStream events(port, "/api/v1/changes/stream?since=" + std::to_string(before), boss.cookie, last_id);
    const std::string later = account(boss, "Later " + marker, "north", "boss");
    EXPECT_TRUE(events.read_until(later)) << events.got;
    events.close();
    return events.got;
  };
  std::string got = resumed(std::to_string(seq), "a");
  EXPECT_EQ(got.find(change_id), std::string::npos) << got;
  EXPECT_NE(got.find(c1), std::string::npos) << got;
  EXPECT_NE(got.find(c2), std::string::npos) << got;
  // From the first conflict: only the second.
  got = resumed(std::to_string(seq) + ".1", "b");
  EXPECT_EQ(got.find(c1), std::string::npos) << got;
  EXPECT_NE(got.find(c2), std::string::npos) << got;
  // From the second: neither.
  got = resumed(std::to_string(seq) + ".2", "c");
  EXPECT_EQ(got.find("event: conflict"), std::string::npos) << got;
  for (const char* bad : {"12.x", ".3", "4.-1"})
    EXPECT_EQ(boss.call(http::verb::get, "/api/v1/changes/stream", {}, {{"Last-Event-ID", bad}}).code(),
              "value_invalid")
        << bad;
}

// Reads reuse a few SQLite connections: each list right after a write still sees it (a reused connection
// must not keep an old snapshot). Prints the mean latency of a list request (PERFORMANCE.md, "API reads").
TEST_F(ApiTest, ListsSeeEveryWriteOnReusedConnections) {
  Web boss = sign_in("boss", true);
  constexpr int kRounds = 60;
  double list_ms = 0;
  for (int i = 0; i < kRounds; ++i) {
    account(boss, "Acc " + std::to_string(i), "north", "boss");
    const auto t0 = std::chrono::steady_clock::now();
    Reply r = boss.get("/api/v1/entities/account?territory_id=north&limit=500");
    list_ms += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    ASSERT_EQ(r.status, 200) << r.body;
    ASSERT_EQ(r.obj().at("items").as_array().size(), static_cast<size_t>(i + 1)) << "round " << i;
  }
  std::printf("list request (new TLS connection each): %.2f ms mean over %d\n", list_ms / kRounds, kRounds);
  RecordProperty("list_ms_mean_x100", static_cast<int>(list_ms / kRounds * 100));
}

TEST_F(ApiTest, ChangeExportStreamsEveryVisibleTransactionAsNdjsonInChunks) {
  Web boss = sign_in("boss", true);
  std::set<std::string> north;
  for (int i = 0; i < 40; ++i) {
    const std::string id = account(boss, "Acc " + std::to_string(i), i % 2 ? "north" : "south", "boss");
    if (i % 2) north.insert(id);
  }
  Reply all = boss.get("/api/v1/changes/export?since=0");
  ASSERT_EQ(all.status, 200) << all.body;
  EXPECT_EQ(all.header("Transfer-Encoding"), "chunked");
  EXPECT_EQ(std::count(all.body.begin(), all.body.end(), '\n'), 40);
  Reply mine = sign_in("rep1", true).get("/api/v1/changes/export?since=0");
  ASSERT_EQ(mine.status, 200);
  std::set<std::string> seen;
  size_t start = 0;
  for (size_t nl; (nl = mine.body.find('\n', start)) != std::string::npos; start = nl + 1) {
    json::value line = json::parse(mine.body.substr(start, nl - start));
    for (const json::value& c : line.as_object().at("changes").as_array())
      seen.insert(str(c.as_object().at("id")));
  }
  EXPECT_EQ(seen, north) << "scope-filtered like a device";
  EXPECT_EQ(boss.get("/api/v1/changes/export?since=x").code(), "value_invalid");
}

// ---- Conflicts

TEST_F(ApiTest, ConflictInboxListsAndRestoresTheLosingValue) {
  Web boss = sign_in("boss");
  const std::string acc = account(boss, "Contested", "north", "boss");
  Phone& p = phone("rep1", 100);
  sync(p);
  // The rep edits offline; head office edits afterwards, so the rep's older write loses when it arrives.
  client::AccountEdit e;
  e.phone = "+49 rep";
  ASSERT_TRUE(p.client->edit_account(acc, e).is_ok());
  std::this_thread::sleep_for(5ms);
  ASSERT_EQ(boss.patch("/api/v1/entities/account/" + acc, json::object{{"phone", "+49 office"}}).status, 200);
  sync(p);
  Reply list = boss.get("/api/v1/conflicts?kind=concurrent_write&resolved=false");
  ASSERT_EQ(list.status, 200) << list.body;
  ASSERT_EQ(list.obj().at("items").as_array().size(), 1u) << list.body;
  const json::object& c = list.obj().at("items").as_array()[0].as_object();
  EXPECT_EQ(str(c.at("field")), "phone");
  EXPECT_EQ(str(c.at("winner").as_object().at("value")), "+49 office");
  EXPECT_EQ(str(c.at("loser").as_object().at("value")), "+49 rep");
  EXPECT_EQ(str(c.at("loser").as_object().at("user")), "rep1");
  EXPECT_EQ(str(c.at("rule")), "last_writer_wins");
  EXPECT_EQ(boss.get("/api/v1/conflicts?rep=rep2").obj().at("items").as_array().size(), 0u);
  const int64_t id = c.at("id").as_int64();

  EXPECT_EQ(
      sign_in("rep1")
          .post("/api/v1/conflicts/" + std::to_string(id) + "/resolve", json::object{{"action", "restore"}})
          .status,
      403);
  Reply restored =
      boss.post("/api/v1/conflicts/" + std::to_string(id) + "/resolve", json::object{{"action", "restore"}});
  ASSERT_EQ(restored.status, 200) << restored.body;
  EXPECT_EQ(str(boss.get("/api/v1/entities/account/" + acc).obj().at("record").as_object().at("phone")),
            "+49 rep");
  EXPECT_EQ(
      boss.post("/api/v1/conflicts/" + std::to_string(id) + "/resolve", json::object{{"action", "accept"}})
          .code(),
      "already_resolved");
  EXPECT_EQ(boss.get("/api/v1/conflicts?resolved=false").obj().at("items").as_array().size(), 0u);
  // The restored value syncs out like any change.
  sync(p);
  EXPECT_EQ(p.client->account(acc)->account.phone, "+49 rep");
}

TEST_F(ApiTest, SchedulingConflictsAreListedPerRepAndDay) {
  Web mgr = sign_in("mgr");
  const int64_t start = (wall_now_ms() / 86'400'000 + 2) * 86'400'000 + 9 * 3'600'000;
  for (int i = 0; i < 2; ++i)
    create(mgr, "calendar_event",
           {{"owner_id", "rep1"},
            {"title", "Visit " + std::to_string(i)},
            {"start_at", start + i * 600'000},
            {"end_at", start + 3'600'000},
            {"status", "scheduled"}});
  Reply r = mgr.get("/api/v1/conflicts/scheduling?rep=rep1");
  ASSERT_EQ(r.status, 200) << r.body;
  ASSERT_EQ(r.obj().at("items").as_array().size(), 1u) << r.body;
  EXPECT_EQ(str(r.obj().at("items").as_array()[0].as_object().at("rep")), "rep1");
  EXPECT_EQ(r.obj().at("items").as_array()[0].as_object().at("day_ms").as_int64(), start - 9 * 3'600'000);
  EXPECT_EQ(sign_in("rep2").get("/api/v1/conflicts/scheduling").obj().at("items").as_array().size(), 0u);
}

// ---- Accounts: reassignment and handover

TEST_F(ApiTest, ReassignAndHandover) {
  Web boss = sign_in("boss");
  const std::string a = account(boss, "A", "north", "boss");
  const std::string b = account(boss, "B", "north", "boss");
  Reply one =
      boss.post("/api/v1/accounts/reassign", json::object{{"accounts", json::array{a}}, {"to_rep", "rep2"}});
  ASSERT_EQ(one.status, 200) << one.body;
  EXPECT_EQ(str(boss.get("/api/v1/entities/account/" + a).obj().at("record").as_object().at("territory_id")),
            "south");
  EXPECT_EQ(sign_in("rep2").get("/api/v1/entities/account/" + a).status, 200);
  EXPECT_EQ(sign_in("rep1").get("/api/v1/entities/account/" + a).status, 404);
  Reply bulk =
      boss.post("/api/v1/accounts/reassign", json::object{{"from_rep", "rep2"}, {"territory", "east"}});
  ASSERT_EQ(bulk.status, 200) << bulk.body;
  EXPECT_EQ(bulk.obj().at("accounts").as_int64(), 1);
  EXPECT_EQ(boss.post("/api/v1/accounts/reassign",
                      json::object{{"accounts", json::array{a}}, {"territory", "mars"}})
                .code(),
            "value_invalid");

  // rep1 leaves: territories, open deals and future appointments go to rep3 in one step.
  const std::string deal = create(boss, "opportunity",
                                  {{"account_id", b},
                                   {"owner_id", "rep1"},
                                   {"name", "D"},
                                   {"stage", "proposal"},
                                   {"amount_cents", 5000},
                                   {"currency", "EUR"}});
  const int64_t tomorrow = wall_now_ms() + 86'400'000;
  const std::string ev = create(boss, "calendar_event",
                                {{"owner_id", "rep1"},
                                 {"title", "Meet B"},
                                 {"account_id", b},
                                 {"start_at", tomorrow},
                                 {"end_at", tomorrow + 3'600'000},
                                 {"status", "scheduled"}});
  // Open orders (draft, submitted) change hands; a cancelled (locked) one keeps the rep who took it.
  auto order = [&](const std::string& status) {
    return create(boss, "order",
                  {{"account_id", b}, {"rep_id", "rep1"}, {"status", status}, {"currency", "EUR"}});
  };
  const std::string draft = order("draft");
  const std::string submitted = order("submitted");
  const std::string cancelled = order("submitted");
  ASSERT_EQ(boss.patch("/api/v1/entities/order/" + cancelled, json::object{{"status", "cancelled"}}).status,
            200);
  // Schema 3: an open lead and task of rep1's and a case assigned to them change hands too.
  const std::string lead = create(boss, "lead",
                                  {{"person_name", "Lee"},
                                   {"source", "referral"},
                                   {"owner_id", "rep1"},
                                   {"territory_id", "north"},
                                   {"status", "contacted"},
                                   {"created_at", wall_now_ms()}});
  const std::string task =
      create(boss, "task", {{"owner_id", "rep1"}, {"title", "Call back B"}, {"status", "open"}});
  const std::string case_id = create(boss, "service_case",
                                     {{"account_id", b},
                                      {"subject", "Leaking valve"},
                                      {"priority", "high"},
                                      {"status", "assigned"},
                                      {"assignee_id", "rep1"},
                                      {"opened_at", wall_now_ms()},
                                      {"opened_by", "boss"}});
  Reply h = boss.post("/api/v1/users/rep1/handover", json::object{{"to", "rep3"}});
  ASSERT_EQ(h.status, 200) << h.body;
  EXPECT_EQ(h.obj().at("deals").as_int64(), 1);
  EXPECT_EQ(h.obj().at("orders").as_int64(), 2);
  EXPECT_EQ(h.obj().at("appointments").as_int64(), 1);
  EXPECT_EQ(h.obj().at("leads").as_int64(), 1);
  EXPECT_EQ(h.obj().at("tasks").as_int64(), 1);
  EXPECT_EQ(h.obj().at("service_cases").as_int64(), 1);
  auto field = [&](const std::string& entity, const std::string& id, const char* name) {
    return str(boss.get("/api/v1/entities/" + entity + "/" + id).obj().at("record").as_object().at(name));
  };
  EXPECT_EQ(field("opportunity", deal, "owner_id"), "rep3");
  EXPECT_EQ(field("order", draft, "rep_id"), "rep3");
  EXPECT_EQ(field("order", submitted, "rep_id"), "rep3");
  EXPECT_EQ(field("order", cancelled, "rep_id"), "rep1");
  EXPECT_EQ(field("calendar_event", ev, "owner_id"), "rep3") << "the same appointment, not a copy";
  EXPECT_EQ(field("calendar_event", ev, "status"), "scheduled");
  EXPECT_EQ(field("lead", lead, "owner_id"), "rep3");
  EXPECT_EQ(field("task", task, "owner_id"), "rep3");
  EXPECT_EQ(field("service_case", case_id, "assignee_id"), "rep3");
  EXPECT_EQ(boss.get("/api/v1/entities/calendar_event?owner_id=rep3").obj().at("items").as_array().size(),
            1u);
  Web rep3 = sign_in("rep3");
  EXPECT_EQ(rep3.get("/api/v1/entities/account/" + b).status, 200) << "north is rep3's now";
  EXPECT_EQ(sign_in("rep1").get("/api/v1/entities/account/" + b).status, 404);
}

// ---- People, devices, audit

TEST_F(ApiTest, PeopleAndDevicesWithAnAuditTrail) {
  Web boss = sign_in("boss");
  Reply u = boss.post("/api/v1/users", json::object{{"id", "newbie"},
                                                    {"display_name", "New Rep"},
                                                    {"role", "rep"},
                                                    {"password", kPassword},
                                                    {"territories", json::array{"south"}}});
  ASSERT_EQ(u.status, 201) << u.body;
  EXPECT_EQ(u.obj().at("territories"), (json::array{"south"}));
  EXPECT_EQ(boss.post("/api/v1/users",
                      json::object{
                          {"id", "newbie"}, {"display_name", "x"}, {"role", "rep"}, {"password", kPassword}})
                .code(),
            "invalid_argument");
  EXPECT_EQ(boss.post("/api/v1/users",
                      json::object{
                          {"id", "y"}, {"display_name", "x"}, {"role", "emperor"}, {"password", kPassword}})
                .code(),
            "value_invalid");
  Reply role =
      boss.patch("/api/v1/users/newbie", json::object{{"role", "manager"}, {"team", json::array{"rep2"}}});
  ASSERT_EQ(role.status, 200) << role.body;
  EXPECT_EQ(str(role.obj().at("role")), "manager");
  EXPECT_EQ(boss.patch("/api/v1/users/newbie", json::object{{"territories", json::array{"atlantis"}}}).status,
            422);
  EXPECT_EQ(boss.patch("/api/v1/users/ghost", json::object{{"disabled", true}}).status, 404);
  EXPECT_EQ(boss.post("/api/v1/users/newbie/password", json::object{{"password", "short"}}).status, 422);
  ASSERT_EQ(boss.post("/api/v1/users/newbie/password", json::object{{"password", "another long one"}}).status,
            200);
  EXPECT_EQ(sign_in_raw("newbie", "another long one").status, 200);
  Reply partner = boss.post("/api/v1/users", json::object{{"id", "shop"},
                                                          {"display_name", "Shop"},
                                                          {"role", "partner"},
                                                          {"password", kPassword},
                                                          {"territories", json::array{"east"}}});
  ASSERT_EQ(partner.status, 201) << partner.body;
  EXPECT_EQ(boss.post("/api/v1/devices", json::object{{"node", 500}, {"user", "shop"}}).status, 422)
      << "partners have no devices";

  ASSERT_EQ(boss.post("/api/v1/territories", json::object{{"id", "west"}, {"name", "West"}}).status, 201);
  EXPECT_EQ(boss.get("/api/v1/territories").obj().at("items").as_array().size(), 4u);
  Reply dev = boss.post("/api/v1/devices", json::object{{"node", "900"}, {"user", "newbie"}});
  ASSERT_EQ(dev.status, 201) << dev.body;
  EXPECT_EQ(str(dev.obj().at("node")), "900");

  // Revoking a connected device cuts its session at once.
  Phone& p = phone("rep2", 101);
  WsClient live(p.client->engine(), ws_options(p));
  ASSERT_TRUE(live.start().ok());
  ASSERT_TRUE(live.wait_until(
      [&] {
        return p.client->sync_status().is_ok() && p.client->sync_status()->last_synced_at_ms.has_value();
      },
      20s));
  Reply rv = boss.post("/api/v1/devices/101/revoke", json::object{});
  ASSERT_EQ(rv.status, 200) << rv.body;
  EXPECT_TRUE(rv.obj().at("revoked").as_bool());
  EXPECT_TRUE(live.wait_until([&] { return p.client->erased(); }, 10s)) << live.last_error().to_string();
  live.stop();
  EXPECT_EQ(boss.post("/api/v1/devices/4242/revoke", json::object{}).status, 404);

  Reply health = boss.get("/api/v1/sync-health");
  ASSERT_EQ(health.status, 200) << health.body;
  bool found = false;
  for (const json::value& d : health.obj().at("devices").as_array())
    if (str(d.as_object().at("node")) == "101") {
      found = true;
      EXPECT_TRUE(d.as_object().at("revoked").as_bool());
      EXPECT_FALSE(d.as_object().at("last_connected_ms").is_null());
      EXPECT_EQ(d.as_object().at("schema_version"), json::value(schema::kSchemaVersion));
      EXPECT_FALSE(d.as_object().at("cursor").is_null());
    }
  EXPECT_TRUE(found);

  Reply audit = boss.get("/api/v1/audit");
  ASSERT_EQ(audit.status, 200) << audit.body;
  std::vector<std::string> actions;
  for (const json::value& a : audit.obj().at("items").as_array()) {
    actions.push_back(str(a.as_object().at("action")) + " " + str(a.as_object().at("target")));
    EXPECT_EQ(str(a.as_object().at("actor")), "boss");
    EXPECT_GT(a.as_object().at("at_ms").as_int64(), 0);
  }
  EXPECT_EQ(actions,
            (std::vector<std::string>{"user.create newbie", "user.update newbie", "user.password newbie",
                                      "user.create shop", "territory.create west", "device.register 900",
                                      "device.revoke 101"}));
}

// ---- Reports, their setting and CSV exports (api_reports.cc over reports.h)

TEST_F(ApiTest, ReportsAnswerInTheCallersScopeAndRefuseBadFilters) {
  Web boss = sign_in("boss");
  Web rep1 = sign_in("rep1");
  Web rep2 = sign_in("rep2");
  Web dealer = sign_in("dealer");
  const std::string acc = account(boss, "Northwind", "north", "boss");
  const std::string product = create(boss, "product", {{"sku", "W-1"}, {"name", "Widget"}, {"active", true}});
  Phone& p = phone("rep1", 100);
  sync(p);
  Result<std::string> order = p.client->draft_order(acc, "EUR");
  ASSERT_TRUE(order.is_ok()) << order.status().to_string();
  ASSERT_TRUE(p.client->add_line(*order, client::NewLine{product, 3, 1500}).is_ok());
  ASSERT_TRUE(p.client->submit_order(*order).is_ok());
  sync(p);

  const std::string period = "?from=" + std::to_string(wall_now_ms() - 86'400'000) +
                             "&to=" + std::to_string(wall_now_ms() + 86'400'000);
  auto total = [](const Reply& r) -> int64_t {
    const json::array& t = r.obj().at("total").as_array();
    return t.empty() ? 0 : t[0].as_object().at("revenue_cents").as_int64();
  };
  Reply all = boss.get("/api/v1/reports/revenue" + period);
  ASSERT_EQ(all.status, 200) << all.body;
  EXPECT_EQ(total(all), 4500) << all.body;
  Reply own = rep1.get("/api/v1/reports/revenue" + period);
  ASSERT_EQ(own.status, 200) << own.body;
  EXPECT_EQ(total(own), 4500) << "the rep's own order";
  Reply other = rep2.get("/api/v1/reports/revenue" + period);
  ASSERT_EQ(other.status, 200) << other.body;
  EXPECT_EQ(total(other), 0) << "another rep's figures are not theirs";
  for (std::string_view name : server::reports::kReportNames)
    EXPECT_EQ(boss.get("/api/v1/reports/" + std::string(name) + period).status, 200) << name;
  for (const std::string file : {"leads.csv", "service_cases.csv"}) {
    Reply csv = rep1.get("/api/v1/export/" + file + period);
    EXPECT_EQ(csv.status, 200) << file << ": " << csv.body;
  }
  // Buckets in a named time zone; an unknown zone, or a zone beside a fixed offset, is the parameter's 400.
  Reply zoned = boss.get("/api/v1/reports/activity" + period + "&tz=Europe/Berlin");
  ASSERT_EQ(zoned.status, 200) << zoned.body;
  EXPECT_EQ(str(zoned.obj().at("period").at("time_zone")), "Europe/Berlin");
  EXPECT_FALSE(zoned.obj().at("period").at("company_zone").as_bool());
  // Asked without a zone: the company's (this server's store has none set: UTC), named in the answer.
  EXPECT_EQ(str(all.obj().at("period").at("time_zone")), "UTC") << all.body;
  EXPECT_TRUE(all.obj().at("period").at("company_zone").as_bool()) << all.body;
  for (const std::string q : {"&tz=Mars/Olympus", "&tz=Europe/Berlin&tz_offset_minutes=60"}) {
    Reply r = boss.get("/api/v1/reports/activity" + period + q);
    EXPECT_EQ(r.status, 400) << q;
    EXPECT_EQ(str(r.obj().at("field")), "tz") << q;
  }

  EXPECT_EQ(dealer.get("/api/v1/reports/revenue" + period).status, 403) << "partners read no company figures";
  EXPECT_EQ(rep1.get("/api/v1/reports/revenue" + period + "&territory=south").status, 404)
      << "a territory outside the caller's scope reveals nothing";
  Reply bad = boss.get("/api/v1/reports/revenue?from=yesterday");
  EXPECT_EQ(bad.status, 400);
  EXPECT_EQ(bad.code(), "value_invalid");
  EXPECT_EQ(str(bad.obj().at("field")), "from");
  EXPECT_EQ(boss.get("/api/v1/reports/horoscope").status, 404);
  EXPECT_EQ(https(port, http::verb::get, "/api/v1/reports/revenue", {}, {}).status, 401);
}

TEST_F(ApiTest, ForecastProbabilitiesAreHeadOfficesSettingWithAnAuditLine) {
  Web boss = sign_in("boss");
  Web mgr = sign_in("mgr");
  Reply before = mgr.get("/api/v1/settings/stage-probabilities");
  ASSERT_EQ(before.status, 200) << before.body;
  ASSERT_TRUE(before.json.is_object()) << before.body;
  EXPECT_EQ(before.obj().at("stage_probability_bp").as_object().at("proposal").as_int64(), 5000);
  const json::object change{{"stage_probability_bp", json::object{{"proposal", 4000}}}};
  EXPECT_EQ(mgr.call(http::verb::put, "/api/v1/settings/stage-probabilities", json::serialize(change)).status,
            403);
  Reply unknown =
      boss.call(http::verb::put, "/api/v1/settings/stage-probabilities",
                json::serialize(json::object{{"stage_probability_bp", json::object{{"maybe", 1}}}}));
  EXPECT_EQ(unknown.status, 422) << unknown.body;
  Reply range =
      boss.call(http::verb::put, "/api/v1/settings/stage-probabilities",
                json::serialize(json::object{{"stage_probability_bp", json::object{{"won", 10001}}}}));
  ASSERT_TRUE(range.json.is_object()) << range.status << " " << range.body;
  EXPECT_EQ(range.code(), "value_invalid");
  EXPECT_EQ(str(range.obj().at("field")), "won");
  Reply csrf = boss.call(http::verb::put, "/api/v1/settings/stage-probabilities", json::serialize(change),
                         {{"X-CSRF-Token", "forged"}});
  EXPECT_EQ(csrf.status, 403) << "a cookie request without its CSRF token changes nothing";
  EXPECT_EQ(mgr.get("/api/v1/settings/stage-probabilities")
                .obj()
                .at("stage_probability_bp")
                .as_object()
                .at("proposal")
                .as_int64(),
            5000)
      << "refused changes wrote nothing";

  Reply ok = boss.call(http::verb::put, "/api/v1/settings/stage-probabilities", json::serialize(change));
  ASSERT_EQ(ok.status, 200) << ok.body;
  ASSERT_TRUE(ok.json.is_object()) << ok.body;
  const json::object& bp = ok.obj().at("stage_probability_bp").as_object();
  EXPECT_EQ(bp.at("proposal").as_int64(), 4000);
  EXPECT_EQ(bp.at("negotiation").as_int64(), 7500) << "the stages not named keep theirs";
  bool audited = false;
  const Reply audit = boss.get("/api/v1/audit");
  for (const json::value& a : audit.obj().at("items").as_array())
    audited = audited || str(a.as_object().at("action")) == "settings.stage_probability";
  EXPECT_TRUE(audited);
}

TEST_F(ApiTest, CsvExportsStreamQuotedNeutralisedAndScoped) {
  Web boss = sign_in("boss");
  Web rep2 = sign_in("rep2");
  Web dealer = sign_in("dealer");
  account(boss, "=HYPERLINK(\"http://evil\")", "north", "boss");
  account(boss, "Müller, \"Söhne\"", "north", "boss");
  account(boss, "Southern Co", "south", "boss");
  for (int i = 0; i < 300; ++i) account(boss, "Bulk " + std::to_string(i), "east", "boss");

  Reply csv = boss.get("/api/v1/export/accounts.csv?bom=1");
  ASSERT_EQ(csv.status, 200) << csv.body;
  EXPECT_EQ(csv.header("Content-Type"), "text/csv; charset=utf-8");
  EXPECT_EQ(csv.header("Transfer-Encoding"), "chunked");
  EXPECT_EQ(csv.header("Content-Disposition"), "attachment; filename=\"accounts.csv\"");
  EXPECT_EQ(csv.body.rfind("\xEF\xBB\xBF", 0), 0u) << "the BOM comes first";
  EXPECT_NE(csv.body.find("\"'=HYPERLINK(\"\"http://evil\"\")\""), std::string::npos)
      << "a formula is neutralised and quoted: " << csv.body.substr(0, 400);
  EXPECT_NE(csv.body.find("\"Müller, \"\"Söhne\"\"\""), std::string::npos);
  size_t rows = 0;
  for (size_t at = 0; (at = csv.body.find("\r\n", at)) != std::string::npos; at += 2) ++rows;
  EXPECT_EQ(rows, 1u + 303u) << "a header and every account";

  Reply scoped = rep2.get("/api/v1/export/accounts.csv");
  ASSERT_EQ(scoped.status, 200);
  EXPECT_NE(scoped.body.find("Southern Co"), std::string::npos);
  EXPECT_EQ(scoped.body.find("Bulk"), std::string::npos) << "only the rep's territories";
  EXPECT_EQ(scoped.body.find("\xEF\xBB\xBF"), std::string::npos) << "no BOM unless asked";

  EXPECT_EQ(dealer.get("/api/v1/export/accounts.csv").status, 403);
  EXPECT_EQ(boss.get("/api/v1/export/secrets.csv").status, 404);
  EXPECT_EQ(boss.get("/api/v1/export/accounts.json").status, 404);
  EXPECT_EQ(boss.get("/api/v1/export/accounts.csv?bom=2").code(), "value_invalid");
  EXPECT_EQ(rep2.get("/api/v1/export/orders.csv?territory=north").status, 404);
  Reply orders = boss.get("/api/v1/export/orders.csv");
  ASSERT_EQ(orders.status, 200);
  EXPECT_NE(orders.body.find("\r\n"), std::string::npos) << "at least the header row";
}

#if !FIELDSYNC_API_ON_POSTGRESQL  // SQLite only: the directory file's own migration
// A directory made before the head-office API (no disabled column, no audit tables) opens and gains them.
TEST(ApiDirectory, OlderDirectoryFilesGainTheDisabledColumn) {
  const std::string path = (std::filesystem::temp_directory_path() /
                            ("fieldsync-api-olddir-" + std::to_string(::getpid()) + ".db"))
                               .string();
  std::filesystem::remove(path);
  {
    auto d = server::Directory::open(path, server::Directory::Options{1000});
    ASSERT_TRUE(d.is_ok());
    ASSERT_TRUE((*d)->add_user(server::User{"old", "Old Timer", schema::Role::kRep}, kPassword, wall_now_ms())
                    .is_ok());
  }
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
    // What issue 4's directory looked like: drop what this issue added.
    ASSERT_EQ(
        sqlite3_exec(db,
                     "CREATE TABLE u2 AS SELECT id, display_name, role, pw_salt, pw_hash, pw_iterations, "
                     "created_at_ms FROM users; DROP TABLE users; ALTER TABLE u2 RENAME TO users; DROP TABLE "
                     "audit; DROP TABLE conflict_resolutions;",
                     nullptr, nullptr, nullptr),
        SQLITE_OK);
    sqlite3_close(db);
  }
  auto d = server::Directory::open(path, server::Directory::Options{1000});
  ASSERT_TRUE(d.is_ok()) << d.status().to_string();
  Result<server::User> u = (*d)->user("old");
  ASSERT_TRUE(u.is_ok());
  EXPECT_FALSE(u->disabled);
  EXPECT_TRUE((*d)->check_password("old", kPassword).is_ok());
  ASSERT_TRUE((*d)->set_disabled("old", true).is_ok());
  EXPECT_EQ((*d)->check_password("old", kPassword).status().code(), ErrorCode::kAuthFailed);
  EXPECT_EQ((*d)->principal("old").status().code(), ErrorCode::kAuthFailed);
  EXPECT_TRUE((*d)->audit(server::AuditRecord{0, 1, "boss", "user.disable", "old", "{}"}).is_ok());
  EXPECT_EQ((*d)->audit_trail(0, 10)->size(), 1u);
  std::filesystem::remove(path);
}
#endif  // !FIELDSYNC_API_ON_POSTGRESQL

// ---- App version in sync health (Hello.app_version)

TEST_F(ApiTest, SyncHealthShowsTheAppVersionEachDeviceSentAndUnknownForOldApps) {
  Web boss = sign_in("boss");
  auto device = [&](const std::string& node) -> json::object {
    Reply health = boss.get("/api/v1/sync-health");
    EXPECT_EQ(health.status, 200) << health.body;
    for (const json::value& d : health.obj().at("devices").as_array())
      if (str(d.as_object().at("node")) == node) return d.as_object();
    ADD_FAILURE() << "no device " << node << " in " << health.body;
    return {};
  };
  // Before any connection since the server started: unknown.
  EXPECT_TRUE(device("100").at("app_version").is_null());
  // A phone whose app names its build, and one built before the field (its Hello carries none).
  Phone& current = phone("rep1", 100, "2.4.1 (317)");
  Phone& old = phone("rep2", 101);
  sync(current);
  sync(old);
  EXPECT_EQ(device("100").at("app_version"), json::value("2.4.1 (317)"));
  EXPECT_TRUE(device("101").at("app_version").is_null());
  EXPECT_FALSE(device("101").at("last_connected_ms").is_null()) << "the old app did connect";
  // The manager's view of the team carries it too.
  Reply mgr = sign_in("mgr").get("/api/v1/sync-health");
  ASSERT_EQ(mgr.status, 200) << mgr.body;
  bool seen = false;
  for (const json::value& d : mgr.obj().at("devices").as_array())
    if (str(d.as_object().at("node")) == "100")
      seen = d.as_object().at("app_version") == json::value("2.4.1 (317)");
  EXPECT_TRUE(seen) << mgr.body;
}

TEST_F(ApiTest, AnUnauthenticatedHelloNamesNoAppVersionAndABadOneIsRefusedAtOpen) {
  // A Hello with a registered node but a wrong token: the handshake fails, and neither the build it claimed
  // nor its connection, schema version or cursor is what head office reads for that device.
  auto forge = [&](NodeId node, const std::string& file) {
    FieldClient::Options o;
    o.user = "rep1";
    o.token = "not-a-token";
    o.node = node;
    o.synchronous_full = false;
    o.app_version = "9.9.9-forged";
    auto c = FieldClient::open((dir / file).string(), std::move(o));
    ASSERT_TRUE(c.is_ok()) << c.status().to_string();
    Phone forged;
    forged.client = std::move(c.value());
    WsClient ws(forged.client->engine(), ws_options(forged));
    EXPECT_FALSE(ws.sync_once(10s).ok());
  };
  auto device = [&](const std::string& node) -> json::object {
    Reply health = sign_in("boss").get("/api/v1/sync-health");
    EXPECT_EQ(health.status, 200) << health.body;
    for (const json::value& d : health.obj().at("devices").as_array())
      if (str(d.as_object().at("node")) == node) return d.as_object();
    ADD_FAILURE() << "no device " << node << " in " << health.body;
    return {};
  };
  // Node 101 never connected: a forged Hello leaves it unknown.
  forge(101, "forged-101.db");
  EXPECT_TRUE(device("101").at("last_connected_ms").is_null());
  EXPECT_TRUE(device("101").at("schema_version").is_null());
  EXPECT_TRUE(device("101").at("cursor").is_null());
  // Node 100 connected for real: a forged Hello later does not move what its real connection left.
  Phone& real = phone("rep1", 100);
  sync(real);
  const json::object before = device("100");
  ASSERT_FALSE(before.at("last_connected_ms").is_null());
  std::this_thread::sleep_for(5ms);  // a forged connection's time would differ
  forge(100, "forged-100.db");
  const json::object after = device("100");
  EXPECT_EQ(after.at("last_connected_ms"), before.at("last_connected_ms"));
  EXPECT_EQ(after.at("schema_version"), before.at("schema_version"));
  EXPECT_EQ(after.at("cursor"), before.at("cursor"));
  FieldClient::Options o;
  o.user = "rep1";
  o.token = "not-a-token";
  o.node = 100;
  o.synchronous_full = false;
  o.app_version = "9.9.9-forged";
  auto c = FieldClient::open((dir / "forged.db").string(), std::move(o));
  ASSERT_TRUE(c.is_ok()) << c.status().to_string();
  {
    Phone forged;
    forged.client = std::move(c.value());
    WsClient ws(forged.client->engine(), ws_options(forged));
    EXPECT_FALSE(ws.sync_once(10s).ok());
  }
  Reply health = sign_in("boss").get("/api/v1/sync-health");
  ASSERT_EQ(health.status, 200) << health.body;
  for (const json::value& d : health.obj().at("devices").as_array())
    if (str(d.as_object().at("node")) == "100") {
      EXPECT_TRUE(d.as_object().at("app_version").is_null()) << health.body;
    }

  for (const std::string& bad : {std::string(65, 'v'), std::string("2.4\n1")}) {
    FieldClient::Options b;
    b.user = "rep1";
    b.app_version = bad;
    auto r = FieldClient::open((dir / "bad.db").string(), std::move(b));
    ASSERT_FALSE(r.is_ok());
    EXPECT_EQ(r.status().code(), ErrorCode::kInvalidArgument);
  }
}

#if FIELDSYNC_API_ON_POSTGRESQL
// ---- PostgreSQL only

// Head office's settings live in the database: a probability or an SLA set through instance B is what
// instance A's forecast and dispatch use, and an order written through A is in B's revenue report and export.
TEST_F(ApiTest, SettingsAndReportsAreTheSameThroughEitherInstance) {
  const uint16_t port_b = second_instance();
  ASSERT_NE(port_b, 0);
  Web boss = sign_in("boss");
  Web boss_b = boss;
  boss_b.port = port_b;
  ASSERT_EQ(
      boss_b
          .call(http::verb::put, "/api/v1/settings/stage-probabilities",
                json::serialize(json::object{{"stage_probability_bp", json::object{{"proposal", 4321}}}}))
          .status,
      200);
  Reply bp = boss.get("/api/v1/settings/stage-probabilities");
  ASSERT_EQ(bp.status, 200) << bp.body;
  EXPECT_EQ(bp.obj().at("stage_probability_bp").at("proposal").as_int64(), 4321) << bp.body;
  Reply forecast = boss.get("/api/v1/reports/forecast");
  ASSERT_EQ(forecast.status, 200) << forecast.body;
  EXPECT_EQ(forecast.obj().at("probabilities_bp").at("proposal").as_int64(), 4321);
  ASSERT_EQ(boss_b
                .call(http::verb::put, "/api/v1/settings/case-sla",
                      json::serialize(json::object{{"due_minutes", json::object{{"urgent", 77}}}}))
                .status,
            200);
  Reply sla = boss.get("/api/v1/settings/case-sla");
  ASSERT_EQ(sla.status, 200) << sla.body;
  EXPECT_EQ(sla.obj().at("due_minutes").at("urgent").as_int64(), 77) << sla.body;
  EXPECT_EQ(sla.obj().at("due_minutes").at("low").as_int64(), 72 * 60) << "the others keep their default";

  // An account written through A is in B's accounts export and its activity report (never visited).
  const std::string id = account(boss, "Shared Report Bakery", "north", "boss");
  ASSERT_FALSE(id.empty());
  Reply csv = boss_b.get("/api/v1/export/accounts.csv");
  ASSERT_EQ(csv.status, 200) << csv.body;
  EXPECT_NE(csv.body.find("Shared Report Bakery"), std::string::npos) << csv.body;
  Reply activity = boss_b.get("/api/v1/reports/activity?territory=north");
  ASSERT_EQ(activity.status, 200) << activity.body;
  EXPECT_NE(activity.body.find(id), std::string::npos) << activity.body;
}

// Web sessions live in the database: a cookie or token from instance A works on B (CSRF checked there too),
// a sign-out through B ends it on A, and disabling a user through B ends their sessions on A.
TEST_F(ApiTest, ASessionFromOneInstanceHoldsOnTheOtherUntilSignOutOrDisableThroughEither) {
  const uint16_t port_b = second_instance();
  ASSERT_NE(port_b, 0);
  Web boss = sign_in("boss");
  Web boss_b = boss;
  boss_b.port = port_b;
  EXPECT_EQ(boss_b.get("/api/v1/session").status, 200);
  EXPECT_EQ(account(boss_b, "Made on B", "north", "boss").size(), 36u);
  Web forged = boss_b;
  forged.csrf = "not-the-token";
  EXPECT_EQ(forged
                .post("/api/v1/entities/account",
                      json::object{{"name", "x"}, {"territory_id", "north"}, {"created_by", "boss"}})
                .code(),
            "csrf_failed");
  Web rep = sign_in("rep1", /*bearer=*/true);
  Web rep_b = rep;
  rep_b.port = port_b;
  EXPECT_EQ(rep_b.get("/api/v1/entities/account").status, 200);

  ASSERT_EQ(boss_b.patch("/api/v1/users/rep1", json::object{{"disabled", true}}).status, 200);
  EXPECT_EQ(rep.get("/api/v1/entities/account").status, 401) << "disabled through B, out on A";
  ASSERT_EQ(boss.patch("/api/v1/users/rep1", json::object{{"disabled", false}}).status, 200);
  EXPECT_EQ(rep_b.get("/api/v1/entities/account").status, 401) << "re-enabling does not revive a session";

  EXPECT_EQ(boss_b.call(http::verb::delete_, "/api/v1/session").status, 200);
  EXPECT_EQ(boss.get("/api/v1/session").status, 401) << "signed out on B, out on A";
}

// Two instances on one database: what one writes through the API the other lists, shows with its history
// and puts in its change feed.
TEST_F(ApiTest, AWriteThroughOneInstanceIsReadThroughTheOther) {
  const uint16_t port_b = second_instance();
  ASSERT_NE(port_b, 0);
  Web boss = sign_in("boss");
  const std::string id = account(boss, "Shared Bakery", "north", "boss");
  ASSERT_FALSE(id.empty());
  Reply sign_b = https(port_b, http::verb::post, "/api/v1/session",
                       R"({"user":"boss","password":"correct horse battery","mode":"token"})", {});
  ASSERT_EQ(sign_b.status, 200) << sign_b.body;
  Web b;
  b.port = port_b;
  b.bearer = str(sign_b.obj().at("token"));
  Reply list = b.get("/api/v1/entities/account?q=shared");
  ASSERT_EQ(list.status, 200) << list.body;
  ASSERT_EQ(list.obj().at("items").as_array().size(), 1u) << list.body;
  EXPECT_EQ(str(list.obj().at("items").as_array()[0].at("id")), id);
  Reply one = b.get("/api/v1/entities/account/" + id + "/history");
  ASSERT_EQ(one.status, 200) << one.body;
  Reply feed = b.get("/api/v1/changes?since=0");
  ASSERT_EQ(feed.status, 200) << feed.body;
  EXPECT_NE(feed.body.find(id), std::string::npos) << feed.body;
  // A rep on B sees it too (north is theirs), and a rep of another territory does not.
  Reply r1 = https(port_b, http::verb::post, "/api/v1/session",
                   R"({"user":"rep1","password":"correct horse battery","mode":"token"})", {});
  ASSERT_EQ(r1.status, 200);
  Web rep1;
  rep1.port = port_b;
  rep1.bearer = str(r1.obj().at("token"));
  EXPECT_EQ(rep1.get("/api/v1/entities/account/" + id).status, 200);
  Reply r2 = https(port_b, http::verb::post, "/api/v1/session",
                   R"({"user":"rep2","password":"correct horse battery","mode":"token"})", {});
  ASSERT_EQ(r2.status, 200);
  Web rep2;
  rep2.port = port_b;
  rep2.bearer = str(r2.obj().at("token"));
  EXPECT_EQ(rep2.get("/api/v1/entities/account/" + id).status, 404);
}
#endif
// ---- Schema 3: leads, service cases, assets, tasks

TEST_F(ApiTest, GenericReadsAndWritesPickUpTheNewEntitiesFromTheModel) {
  Web rep1 = sign_in("rep1"), rep2 = sign_in("rep2"), boss = sign_in("boss"), dealer = sign_in("dealer");
  const std::string acct = account(boss, "Depot", "north", "boss");
  const std::string lead = create(rep1, "lead",
                                  {{"person_name", "Dana"},
                                   {"source", "web_form"},
                                   {"owner_id", "rep1"},
                                   {"territory_id", "north"},
                                   {"status", "new"},
                                   {"created_at", wall_now_ms()}});
  const std::string asset = create(rep1, "asset", {{"account_id", acct}, {"serial_number", "SN-1"}});
  const std::string sc = create(rep1, "service_case",
                                {{"account_id", acct},
                                 {"subject", "Leaking"},
                                 {"priority", "normal"},
                                 {"status", "open"},
                                 {"opened_at", wall_now_ms()},
                                 {"opened_by", "rep1"},
                                 {"asset_id", asset}});
  const std::string task =
      create(rep1, "task", {{"owner_id", "rep1"}, {"title", "Call"}, {"status", "open"}, {"lead_id", lead}});
  ASSERT_FALSE(lead.empty() || asset.empty() || sc.empty() || task.empty());
  Reply leads = rep1.get("/api/v1/entities/lead");
  ASSERT_EQ(leads.status, 200) << leads.body;
  ASSERT_EQ(leads.obj().at("items").as_array().size(), 1u);
  EXPECT_EQ(str(leads.obj().at("items").as_array()[0].as_object().at("source")), "web_form");
  // The account's record brings its cases and assets (their scope hangs off it).
  Reply rec = rep1.get("/api/v1/entities/account/" + acct);
  ASSERT_EQ(rec.status, 200) << rec.body;
  EXPECT_EQ(rec.obj().at("children").as_object().at("service_case").as_array().size(), 1u);
  EXPECT_EQ(rec.obj().at("children").as_object().at("asset").as_array().size(), 1u);
  EXPECT_EQ(rep1.get("/api/v1/entities/task/" + task).status, 200);
  // Outside the scope: not found, alike for every entity; a partner does not read them at all.
  for (const auto& [entity, id] :
       {std::pair{"lead", lead}, {"service_case", sc}, {"asset", asset}, {"task", task}}) {
    EXPECT_EQ(rep2.get(std::string("/api/v1/entities/") + entity + "/" + id).status, 404) << entity;
    EXPECT_EQ(dealer.get(std::string("/api/v1/entities/") + entity + "/" + id).status, 404) << entity;
  }
  EXPECT_TRUE(rep2.get("/api/v1/entities/lead").obj().at("items").as_array().empty());
  // The model's rules hold on the generic path too: a server-owned due time is head office's.
  Reply due = rep1.patch("/api/v1/entities/service_case/" + sc, json::object{{"due_at", wall_now_ms()}});
  EXPECT_EQ(due.status, 403) << due.body;
  Reply no_reason = rep1.patch("/api/v1/entities/lead/" + lead, json::object{{"status", "disqualified"}});
  EXPECT_EQ(no_reason.code(), "missing_field") << no_reason.body;
  EXPECT_EQ(str(no_reason.obj().at("field")), "disqualify_reason") << no_reason.body;
}

TEST_F(ApiTest, LeadConversionIsOneActionInTheCallersScope) {
  Web rep1 = sign_in("rep1"), rep2 = sign_in("rep2"), dealer = sign_in("dealer");
  const std::string lead = create(rep1, "lead",
                                  {{"person_name", "Dana Diaz"},
                                   {"company_name", "Diaz Bakery"},
                                   {"email", "dana@diaz.example"},
                                   {"source", "campaign"},
                                   {"owner_id", "rep1"},
                                   {"territory_id", "north"},
                                   {"status", "qualified"},
                                   {"created_at", wall_now_ms()}});
  ASSERT_FALSE(lead.empty());
  const std::string target = "/api/v1/leads/" + lead + "/convert";
  EXPECT_EQ(rep2.post(target, json::object{}).status, 404);    // not in their territory: nothing revealed
  EXPECT_EQ(dealer.post(target, json::object{}).status, 403);  // partners convert nothing
  EXPECT_EQ(rep1.call(http::verb::post, target, "{}", {{"X-CSRF-Token", "forged"}}).status, 403);
  Reply bad = rep1.post(target, json::object{{"amount", 5}});
  EXPECT_EQ(bad.code(), "unknown_field") << bad.body;
  const uint64_t before = head();
  Reply ok = rep1.post(target, json::object{{"opportunity_name", "Ovens"}, {"amount_cents", 250000}});
  ASSERT_EQ(ok.status, 200) << ok.body;
  EXPECT_EQ(head(), before + 1) << "one transaction";
  const std::string acct = str(ok.obj().at("account_id"));
  Reply l = rep1.get("/api/v1/entities/lead/" + lead);
  ASSERT_EQ(l.status, 200) << l.body;
  const json::object& rec = l.obj().at("record").as_object();
  EXPECT_EQ(str(rec.at("status")), "converted");
  EXPECT_EQ(str(rec.at("converted_account_id")), acct);
  EXPECT_EQ(str(rec.at("converted_contact_id")), str(ok.obj().at("contact_id")));
  EXPECT_EQ(str(rec.at("converted_opportunity_id")), str(ok.obj().at("opportunity_id")));
  Reply a = rep1.get("/api/v1/entities/account/" + acct);
  ASSERT_EQ(a.status, 200) << a.body;
  EXPECT_EQ(str(a.obj().at("record").as_object().at("name")), "Diaz Bakery");
  EXPECT_EQ(str(a.obj().at("record").as_object().at("territory_id")), "north");
  ASSERT_EQ(a.obj().at("children").as_object().at("contact").as_array().size(), 1u);
  EXPECT_EQ(a.obj().at("children").as_object().at("opportunity").as_array().size(), 1u);
  Reply again = rep1.post(target, json::object{});
  EXPECT_EQ(again.status, 409) << again.body;
  // The converted lead is frozen for every writer.
  Web boss = sign_in("boss");
  Reply frozen = boss.patch("/api/v1/entities/lead/" + lead, json::object{{"phone", "+41 1"}});
  EXPECT_EQ(frozen.code(), "order_locked") << frozen.body;
  // Into an account of another territory: out of the rep's scope, refused whole.
  const std::string lead2 = create(rep1, "lead",
                                   {{"person_name", "Eve"},
                                    {"source", "referral"},
                                    {"owner_id", "rep1"},
                                    {"territory_id", "north"},
                                    {"status", "new"},
                                    {"created_at", wall_now_ms()}});
  const std::string south = account(boss, "South Co", "south", "boss");
  const uint64_t before2 = head();
  Reply out = rep1.post("/api/v1/leads/" + lead2 + "/convert", json::object{{"existing_account_id", south}});
  EXPECT_EQ(out.status, 404) << "another territory's account reads as absent: " << out.body;
  EXPECT_EQ(head(), before2);
}

TEST_F(ApiTest, DispatchSetsTheDueTimeFromTheSlaAndHeadOfficeEscalates) {
  Web boss = sign_in("boss"), mgr = sign_in("mgr"), rep1 = sign_in("rep1"), rep2 = sign_in("rep2");
  Reply sla = mgr.get("/api/v1/settings/case-sla");
  ASSERT_EQ(sla.status, 200) << sla.body;
  EXPECT_EQ(sla.obj().at("due_minutes").as_object().at("urgent").as_int64(), 240);
  const json::object change{{"due_minutes", json::object{{"urgent", 90}}}};
  EXPECT_EQ(mgr.call(http::verb::put, "/api/v1/settings/case-sla", json::serialize(change)).status, 403);
  Reply bad = boss.call(http::verb::put, "/api/v1/settings/case-sla",
                        json::serialize(json::object{{"due_minutes", json::object{{"asap", 5}}}}));
  EXPECT_EQ(bad.code(), "value_invalid") << bad.body;
  Reply put = boss.call(http::verb::put, "/api/v1/settings/case-sla", json::serialize(change));
  ASSERT_EQ(put.status, 200) << put.body;
  EXPECT_EQ(put.obj().at("due_minutes").as_object().at("urgent").as_int64(), 90);
  EXPECT_EQ(put.obj().at("due_minutes").as_object().at("low").as_int64(), 72 * 60)
      << "the others keep theirs";

  // rep1's phone opens an urgent case on an asset whose warranty ran out; head office dispatches it.
  const std::string acct = account(boss, "Depot", "north", "boss");
  Phone& p = phone("rep1", 100);
  sync(p);
  auto asset =
      p.client->register_asset({.account_id = acct, .serial_number = "OV-9", .warranty_end_at_ms = 1'000});
  ASSERT_TRUE(asset.is_ok()) << asset.status().to_string();
  auto sc = p.client->open_case(
      {.account_id = acct, .subject = "Oven cold", .priority = "urgent", .asset_id = *asset});
  ASSERT_TRUE(sc.is_ok()) << sc.status().to_string();
  sync(p);
  const int64_t opened = p.client->service_case(*sc)->opened_at_ms;
  const std::string target = "/api/v1/service-cases/" + *sc;
  Reply read = boss.get(target);
  ASSERT_EQ(read.status, 200) << read.body;
  EXPECT_TRUE(read.obj().at("billable").as_bool()) << read.body;
  EXPECT_EQ(rep2.get(target).status, 404);
  EXPECT_EQ(rep1.post(target + "/dispatch", json::object{{"to", "rep1"}}).status,
            403);  // a rep takes, never dispatches
  EXPECT_EQ(mgr.post(target + "/dispatch", json::object{{"to", "rep2"}}).status, 403)
      << "not the manager's team";
  Reply not_team = boss.post(target + "/dispatch", json::object{{"to", "rep3"}});
  EXPECT_EQ(not_team.status, 422) << "rep3 cannot see the north: " << not_team.body;
  const uint64_t before = head();
  Reply d = mgr.post(target + "/dispatch", json::object{{"to", "rep1"}});
  ASSERT_EQ(d.status, 200) << d.body;
  EXPECT_EQ(head(), before + 1);
  EXPECT_EQ(d.obj().at("due_at").as_int64(), opened + 90 * 60'000);
  EXPECT_EQ(str(d.obj().at("status")), "assigned");

  EXPECT_EQ(mgr.post(target + "/escalate", json::object{}).status, 403);
  Reply e = boss.post(target + "/escalate", json::object{});
  ASSERT_EQ(e.status, 200) << e.body;
  EXPECT_EQ(e.obj().at("escalation_level").as_int64(), 1);
  EXPECT_EQ(boss.post(target + "/escalate", json::object{}).obj().at("escalation_level").as_int64(), 2);

  // The rep's phone shows the dispatch, the due time and the escalation.
  sync(p);
  auto mine = p.client->my_cases();
  ASSERT_TRUE(mine.is_ok());
  ASSERT_EQ(mine->size(), 1u);
  EXPECT_EQ(mine->front().assignee_id, "rep1");
  EXPECT_EQ(mine->front().status, "assigned");
  EXPECT_EQ(mine->front().due_at_ms, opened + 90 * 60'000);
  EXPECT_EQ(mine->front().escalation_level, 2);
  EXPECT_TRUE(mine->front().billable);
}

}  // namespace
}  // namespace fieldsync
