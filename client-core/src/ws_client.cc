#include "fieldsync/client/ws_client.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <optional>
#include <random>
#include <thread>

#include "fieldsync/io/certificate.h"
#include "fieldsync/io/tls_policy.h"
#include "fieldsync/io/tls_stream.h"
#include "fieldsync/sync/thread_annotations.h"
#include "fieldsync/sync/tuning.h"

namespace fieldsync::client {

namespace beast = boost::beast;
namespace websocket = beast::websocket;
namespace net = boost::asio;
namespace ssl = net::ssl;
using tcp = net::ip::tcp;
using Ws = fieldsync::net::WebSocketStream;
constexpr auto kAwait = net::as_tuple(net::use_awaitable);

std::string_view to_string(WsError e) {
  switch (e) {
    case WsError::kNone:
      return "ok";
    case WsError::kBadUrl:
      return "bad_url";
    case WsError::kResolve:
      return "resolve";
    case WsError::kConnect:
      return "connect";
    case WsError::kTlsHandshake:
      return "tls_handshake";
    case WsError::kCertificate:
      return "certificate";
    case WsError::kPinMismatch:
      return "pin_mismatch";
    case WsError::kUpgrade:
      return "upgrade";
    case WsError::kTimeout:
      return "timeout";
    case WsError::kClosed:
      return "closed";
    case WsError::kStopped:
      return "stopped";
    case WsError::kInvalidArgument:
      return "invalid_argument";
  }
  return "unknown";
}

std::string WsStatus::to_string() const {
  std::string s(client::to_string(code));
  if (!message.empty()) s += ": " + message;
  return s;
}

namespace {

int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

struct Url {
  std::string host;
  std::string port = "443";
  std::string target = "/";
};

WsStatus parse_url(const std::string& url, Url& out) {
  const std::string scheme = "wss://";
  if (url.rfind(scheme, 0) != 0)
    return {WsError::kBadUrl, "expected wss://host[:port]/path, got '" + url + "'"};
  std::string rest = url.substr(scheme.size());
  size_t slash = rest.find('/');
  std::string authority = rest.substr(0, slash);
  if (slash != std::string::npos) out.target = rest.substr(slash);
  if (!authority.empty() && authority.front() == '[') {  // [v6]:port
    size_t close = authority.find(']');
    if (close == std::string::npos) return {WsError::kBadUrl, "bad IPv6 literal in '" + url + "'"};
    out.host = authority.substr(1, close - 1);
    if (close + 1 < authority.size() && authority[close + 1] == ':') out.port = authority.substr(close + 2);
  } else if (size_t colon = authority.rfind(':'); colon != std::string::npos) {
    out.host = authority.substr(0, colon);
    out.port = authority.substr(colon + 1);
  } else {
    out.host = authority;
  }
  if (out.host.empty() || out.port.empty() || out.port.find_first_not_of("0123456789") != std::string::npos)
    return {WsError::kBadUrl, "bad host or port in '" + url + "'"};
  return {};
}

WsStatus normalise_pin(const std::string& pin, std::string& out) {
  out.clear();
  for (char c : pin) {
    if (c == ':') continue;
    if (!std::isxdigit(static_cast<unsigned char>(c))) return {WsError::kInvalidArgument, "pin: not hex"};
    out += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  if (!out.empty() && out.size() != 64)
    return {WsError::kInvalidArgument, "pin: expected 64 hex digits (SHA-256)"};
  return {};
}

// TLS 1.2+ client context. Verification mode is per connection (see open_connection).
WsStatus make_context(const WsClientOptions& o, std::optional<ssl::context>& ctx) {
  ctx.emplace(ssl::context::tls_client);
  ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                   ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
  // TLS 1.2 minimum, AEAD suites only, no renegotiation: the server's policy (tls_policy.h).
  if (!fieldsync::net::apply_tls_policy(ctx->native_handle()))
    return {WsError::kInvalidArgument, "TLS: no AEAD cipher suite available"};
  boost::system::error_code ec;
  if (!o.ca_file.empty()) {
    ctx->load_verify_file(o.ca_file, ec);
    if (ec) return {WsError::kInvalidArgument, "CA file " + o.ca_file + ": " + ec.message()};
  } else {
    ctx->set_default_verify_paths(ec);
    if (ec) return {WsError::kInvalidArgument, "system CA store: " + ec.message()};
  }
  return {};
}

WsStatus from_ec(WsError kind, const std::string& stage, const boost::system::error_code& ec) {
  if (ec == beast::error::timeout) return {WsError::kTimeout, stage + " timed out"};
  return {kind, stage + ": " + ec.message()};
}

// Resolve, connect, TLS (with verification or pin). Every stage bounded by the timeout.
net::awaitable<WsStatus> open_tls(fieldsync::net::TlsStream& stream, const Url& url, const WsClientOptions& o,
                                  const std::string& pin) {
  auto ex = co_await net::this_coro::executor;
  auto timeout = std::chrono::milliseconds(o.connect_timeout_ms);
  tcp::resolver resolver(ex);
  auto [rec, results] = co_await resolver.async_resolve(url.host, url.port, kAwait);
  if (rec) co_return from_ec(WsError::kResolve, "looking up " + url.host, rec);
  beast::tcp_stream& tcp_stream = beast::get_lowest_layer(stream);
  tcp_stream.expires_after(timeout);
  auto [cec, ep] = co_await tcp_stream.async_connect(results, kAwait);
  if (cec) co_return from_ec(WsError::kConnect, "TCP to " + url.host + ":" + url.port, cec);
  tcp_stream.socket().set_option(tcp::no_delay(true));

  auto& tls = stream.next_layer();

  SSL* ssl_handle = tls.native_handle();
  boost::system::error_code aec;
  net::ip::make_address(url.host, aec);
  const bool is_ip = !aec;
  const bool verify_chain = pin.empty() || !o.ca_file.empty();
  if (!is_ip) SSL_set_tlsext_host_name(ssl_handle, url.host.c_str());
  if (verify_chain) {
    tls.set_verify_mode(ssl::verify_peer);
    X509_VERIFY_PARAM* param = SSL_get0_param(ssl_handle);
    if (is_ip)
      X509_VERIFY_PARAM_set1_ip_asc(param, url.host.c_str());
    else
      X509_VERIFY_PARAM_set1_host(param, url.host.c_str(), 0);
  } else {
    tls.set_verify_mode(ssl::verify_none);  // the pin below is the whole check
  }
  tcp_stream.expires_after(timeout);
  auto [hec] = co_await stream.async_handshake(ssl::stream_base::client, kAwait);
  if (hec) {
    long vr = SSL_get_verify_result(ssl_handle);
    if (verify_chain && vr != X509_V_OK)
      co_return WsStatus{WsError::kCertificate, X509_verify_cert_error_string(vr)};
    co_return from_ec(WsError::kTlsHandshake, "TLS handshake", hec);
  }
  if (!pin.empty()) {
    X509* peer = SSL_get1_peer_certificate(ssl_handle);
    std::string got = fieldsync::net::certificate_sha256(peer);
    if (peer) X509_free(peer);
    if (got != pin)
      co_return WsStatus{WsError::kPinMismatch,
                         "server certificate SHA-256 " + got + " is not the pinned one"};
  }
  co_return WsStatus{};
}

// open_tls, then the WebSocket upgrade.
net::awaitable<WsStatus> open_connection(Ws& ws, const Url& url, const WsClientOptions& o,
                                         const std::string& pin) {
  if (WsStatus s = co_await open_tls(ws.next_layer(), url, o, pin); !s.ok()) co_return s;
  auto timeout = std::chrono::milliseconds(o.connect_timeout_ms);
  beast::get_lowest_layer(ws).expires_never();  // the WebSocket layer's timeouts take over
  websocket::stream_base::timeout t;
  t.handshake_timeout = timeout;
  t.idle_timeout = std::chrono::milliseconds(o.idle_timeout_ms);
  t.keep_alive_pings = true;
  ws.set_option(t);
  ws.read_message_max(tuning::kMaxMessageBytes);
  ws.binary(true);
  ws.set_option(websocket::stream_base::decorator(
      [](websocket::request_type& req) { req.set(beast::http::field::user_agent, "fieldsync-client"); }));
  std::string host_header = url.host + ":" + url.port;
  auto [wec] = co_await ws.async_handshake(host_header, url.target, kAwait);
  if (wec) co_return from_ec(WsError::kUpgrade, "WebSocket upgrade", wec);
  co_return WsStatus{};
}

WsStatus closed_status(Ws& ws, const boost::system::error_code& ec) {
  if (ec == websocket::error::closed) {
    const websocket::close_reason& r = ws.reason();
    WsStatus s{WsError::kClosed,
               "closed by the server (code " + std::to_string(r.code) +
                   (r.reason.empty() ? std::string() : ", " + std::string(r.reason.data(), r.reason.size())) +
                   ")"};
    s.close_code = r.code;
    return s;
  }
  if (ec == websocket::error::message_too_big) return {WsError::kClosed, "message over the size limit"};
  return from_ec(WsError::kClosed, "connection", ec);
}

}  // namespace

// ==== login

std::string LoginReply::to_string() const {
  if (!transport.ok()) return transport.to_string();
  return status.to_string();
}

LoginReply login(const WsClientOptions& options, const std::string& user, const std::string& password,
                 NodeId node) {
  LoginReply reply;
  Url url;
  std::string pin;
  std::optional<ssl::context> tls;
  if (WsStatus s = parse_url(options.url, url); !s.ok()) return reply.transport = s, reply;
  if (WsStatus s = normalise_pin(options.pin_sha256, pin); !s.ok()) return reply.transport = s, reply;
  if (WsStatus s = make_context(options, tls); !s.ok()) return reply.transport = s, reply;
  net::io_context ioc;
  fieldsync::net::TlsStream stream(ioc, *tls);
  namespace http = beast::http;
  http::response<http::string_body> res;
  auto exchange = [&]() -> net::awaitable<WsStatus> {
    if (WsStatus s = co_await open_tls(stream, url, options, pin); !s.ok()) co_return s;
    boost::json::object body;
    body["user"] = user;
    body["password"] = password;
    body["node"] = std::to_string(node);  // text: node ids use all 64 bits
    http::request<http::string_body> req(http::verb::post, "/login", 11);
    req.set(http::field::host, url.host + ":" + url.port);
    req.set(http::field::user_agent, "fieldsync-client");
    req.set(http::field::content_type, "application/json");
    req.body() = boost::json::serialize(body);
    req.prepare_payload();
    beast::get_lowest_layer(stream).expires_after(std::chrono::milliseconds(options.connect_timeout_ms));
    auto [wec, wn] = co_await http::async_write(stream, req, kAwait);
    if (wec) co_return from_ec(WsError::kClosed, "sending the login", wec);
    beast::flat_buffer buffer;
    http::response_parser<http::string_body> parser;
    parser.body_limit(64 * 1024);
    auto [rec, rn] = co_await http::async_read(stream, buffer, parser, kAwait);
    if (rec) co_return from_ec(WsError::kClosed, "reading the login answer", rec);
    res = parser.release();
    co_return WsStatus{};
  };
  std::optional<WsStatus> done;
  net::co_spawn(ioc, exchange(), [&](std::exception_ptr e, WsStatus s) {
    done = e ? WsStatus{WsError::kClosed, "exception"} : std::move(s);
  });
  ioc.run();
  reply.transport = done.value_or(WsStatus{WsError::kTimeout, "login timed out"});
  if (!reply.transport.ok()) return reply;

  boost::system::error_code jec;
  boost::json::value v = boost::json::parse(res.body(), jec);
  const boost::json::object* o = jec ? nullptr : v.if_object();
  auto text = [&](const char* key) -> std::string {
    if (o == nullptr) return {};
    const boost::json::value* f = o->if_contains(key);
    return f != nullptr && f->is_string() ? std::string(f->as_string()) : std::string();
  };
  if (auto it = res.find(http::field::retry_after); it != res.end())
    reply.retry_after_s = std::strtoll(std::string(it->value()).c_str(), nullptr, 10);
  const std::string message = text("message").empty() ? std::string(res.reason()) : text("message");
  switch (res.result()) {
    case http::status::ok: {
      reply.token = text("token");
      const boost::json::value* exp = o != nullptr ? o->if_contains("expires_at_ms") : nullptr;
      if (exp != nullptr && exp->is_int64()) reply.expires_at_ms = exp->as_int64();
      if (reply.token.empty()) reply.status = Status(ErrorCode::kInternal, "login answer without a token");
      break;
    }
    case http::status::unauthorized:
      reply.status = Status(ErrorCode::kAuthFailed, message);
      break;
    case http::status::too_many_requests:
    case http::status::service_unavailable:
      reply.status = Status(ErrorCode::kRateLimited, message, true);
      break;
    case http::status::bad_request:
      reply.status = Status(ErrorCode::kInvalidArgument, message);
      break;
    default:
      reply.status =
          Status(ErrorCode::kInternal, "login: HTTP " + std::to_string(res.result_int()) + " " + message);
  }
  return reply;
}

// ==== WsClient

struct WsClient::Impl {
  // One connection's state. All of it is touched only on the transport thread.
  struct Conn {
    Conn(net::io_context& ioc, ssl::context& ctx) : ws(ioc, ctx), wake(ioc) {}
    Ws ws;
    beast::flat_buffer buffer;
    net::steady_timer wake;  // the writer sleeps on it until the next tick or a wake-up
    bool wake_pending = false;
    bool done = false;
  };
  // Lets SyncEngine's wake-up callback outlive this object safely.
  struct WakeTarget {
    Mutex mu;
    Impl* impl GUARDED_BY(mu) = nullptr;
  };

  Impl(SyncEngine& e, WsClientOptions o) : engine(e), options(std::move(o)), retry_timer(ioc) {
    uint64_t seed = options.backoff_seed;
    if (seed == 0) seed = (static_cast<uint64_t>(std::random_device{}()) << 32) ^ std::random_device{}();
    backoff.emplace(seed);
    wake_target = std::make_shared<WakeTarget>();
    {
      MutexLock lock(wake_target->mu);
      wake_target->impl = this;
    }
    engine.set_wakeup([target = wake_target] {
      MutexLock lock(target->mu);
      // Only while running: a stopped client's io_context would just pile the wake-ups up.
      if (Impl* self = target->impl; self && self->is_running) net::post(self->ioc, [self] { self->wake(); });
    });
  }
  ~Impl() {
    engine.set_wakeup(nullptr);
    MutexLock lock(wake_target->mu);
    wake_target->impl = nullptr;
  }

  void notify() {
    { MutexLock lock(mu); }
    cv.notify_all();
  }
  void set_error(WsStatus s) {
    {
      MutexLock lock(mu);
      last_error = std::move(s);
    }
    cv.notify_all();
  }
  void wake() {
    if (auto c = current.lock()) {
      c->wake_pending = true;
      c->wake.cancel();
    }
  }

  net::awaitable<void> run();
  net::awaitable<WsStatus> one_connection();
  net::awaitable<WsStatus> reader(std::shared_ptr<Conn> c);
  net::awaitable<void> writer(std::shared_ptr<Conn> c);

  SyncEngine& engine;
  WsClientOptions options;
  std::vector<Url> urls;  // options.url, then options.fallback_urls
  std::atomic<size_t> url_index{0};
  std::string pin;
  std::optional<ssl::context> tls;
  std::optional<Backoff> backoff;
  std::shared_ptr<WakeTarget> wake_target;

  mutable Mutex mu;  // guards last_error; with cv, wakes wait_until()
  std::condition_variable cv;
  WsStatus last_error GUARDED_BY(mu);
  std::atomic<bool> is_connected{false};
  std::atomic<bool> is_running{false};
  std::atomic<bool> stop_requested{false};
  std::atomic<uint64_t> messages_sent{0}, bytes_sent{0}, messages_received{0}, bytes_received{0};
  std::thread thread;

  // Transport thread only.
  std::weak_ptr<Conn> current;
  int64_t next_tick_ms = 0;
  net::io_context ioc;
  net::steady_timer retry_timer;
};

net::awaitable<void> WsClient::Impl::run() {
  while (!stop_requested && !engine.stopped()) {
    WsStatus st = co_await one_connection();
    is_connected = false;
    if (engine.stopped()) {
      set_error({WsError::kStopped, engine.stop_reason().to_string()});
      break;
    }
    if (!st.ok()) set_error(st);
    if (stop_requested) break;
    // The instance behind this URL failed or went away: the next attempt tries the next one.
    url_index = (url_index + 1) % urls.size();
    int64_t delay = backoff->next_delay_ms();
    if (options.reconnect_cap_ms > 0) delay = std::min(delay, options.reconnect_cap_ms);
    // A server older than this app (kUnsupportedSchema) is not asked again until it may have been upgraded.
    delay = std::max(delay, engine.reconnect_not_before_ms() - wall_ms());
    retry_timer.expires_after(std::chrono::milliseconds(delay));
    co_await retry_timer.async_wait(kAwait);
  }
  is_running = false;
  notify();
}

net::awaitable<WsStatus> WsClient::Impl::one_connection() {
  auto c = std::make_shared<Conn>(ioc, *tls);
  current = c;
  WsStatus st = co_await open_connection(c->ws, urls[url_index], options, pin);
  if (!st.ok()) co_return st;
  if (stop_requested) {
    co_await c->ws.async_close(websocket::close_code::going_away, kAwait);
    co_return WsStatus{};
  }
  is_connected = true;
  engine.connected(wall_ms());
  next_tick_ms = wall_ms() + options.tick_interval_ms;
  if (options.on_connection) options.on_connection(true);
  notify();
  net::co_spawn(ioc, writer(c), net::detached);
  WsStatus r = co_await reader(c);
  c->done = true;
  c->wake.cancel();
  beast::get_lowest_layer(c->ws).close();
  is_connected = false;
  engine.disconnected(wall_ms());
  if (options.on_connection) options.on_connection(false);
  notify();
  co_return r;
}

net::awaitable<WsStatus> WsClient::Impl::reader(std::shared_ptr<Conn> c) {
  for (;;) {
    auto [ec, n] = co_await c->ws.async_read(c->buffer, kAwait);
    if (ec) co_return closed_status(c->ws, ec);
    auto data = c->buffer.cdata();
    messages_received.fetch_add(1, std::memory_order_relaxed);
    bytes_received.fetch_add(data.size(), std::memory_order_relaxed);
    engine.frame(std::span<const uint8_t>(static_cast<const uint8_t*>(data.data()), data.size()), wall_ms());
    c->buffer.consume(c->buffer.size());
    if (options.after_frame) options.after_frame();
    // A session that got past the handshake counts as a successful connection: start backoff over.
    if (SyncClient::State s = engine.state();
        s == SyncClient::State::kSyncing || s == SyncClient::State::kBootstrapping)
      backoff->reset();
    c->wake_pending = true;
    c->wake.cancel();
    notify();
  }
}

net::awaitable<void> WsClient::Impl::writer(std::shared_ptr<Conn> c) {
  while (!c->done) {
    for (std::vector<uint8_t>& f : engine.take_frames()) {
      auto [ec, n] = co_await c->ws.async_write(net::buffer(f), kAwait);
      if (!ec) {
        messages_sent.fetch_add(1, std::memory_order_relaxed);
        bytes_sent.fetch_add(f.size(), std::memory_order_relaxed);
      }
      if (ec || c->done) {
        beast::get_lowest_layer(c->ws).close();  // the reader ends and the connection is torn down
        co_return;
      }
    }
    if (stop_requested || engine.wants_close()) {
      auto [ec] = co_await c->ws.async_close(
          stop_requested ? websocket::close_code::going_away : websocket::close_code::normal, kAwait);
      if (ec) beast::get_lowest_layer(c->ws).close();
      co_return;
    }
    if (c->wake_pending) {
      c->wake_pending = false;
      continue;
    }
    c->wake.expires_at(std::chrono::steady_clock::now() +
                       std::chrono::milliseconds(std::max<int64_t>(0, next_tick_ms - wall_ms())));
    auto [ec] = co_await c->wake.async_wait(kAwait);
    if (c->done) co_return;
    if (!ec) {  // the tick, not a wake-up
      engine.tick(wall_ms());
      next_tick_ms = wall_ms() + options.tick_interval_ms;
    }
    c->wake_pending = false;
  }
}

WsClient::WsClient(SyncEngine& engine, WsClientOptions options)
    : impl_(std::make_unique<Impl>(engine, std::move(options))) {}

WsClient::~WsClient() {
  stop();
}

WsStatus WsClient::start() {
  Impl& m = *impl_;
  if (m.is_running) return {};
  if (m.thread.joinable()) m.thread.join();
  std::vector<Url> urls(1 + m.options.fallback_urls.size());
  if (WsStatus s = parse_url(m.options.url, urls[0]); !s.ok()) return s;
  for (size_t i = 0; i < m.options.fallback_urls.size(); ++i)
    if (WsStatus s = parse_url(m.options.fallback_urls[i], urls[i + 1]); !s.ok()) return s;
  m.urls = std::move(urls);
  if (m.url_index >= m.urls.size()) m.url_index = 0;
  if (WsStatus s = normalise_pin(m.options.pin_sha256, m.pin); !s.ok()) return s;
  if (!m.tls) {
    if (WsStatus s = make_context(m.options, m.tls); !s.ok()) {
      m.tls.reset();
      return s;
    }
  }
  m.stop_requested = false;
  m.is_running = true;
  {
    MutexLock lock(m.mu);
    m.last_error = {};
  }
  m.ioc.restart();
  net::co_spawn(m.ioc, m.run(), net::detached);
  m.thread = std::thread([&m] { m.ioc.run(); });
  return {};
}

void WsClient::stop() {
  Impl& m = *impl_;
  if (!m.thread.joinable()) return;
  net::post(m.ioc, [&m] {
    m.stop_requested = true;
    m.retry_timer.cancel();
    m.wake();  // the writer sends the close frame
    if (auto c = m.current.lock(); c && !m.is_connected)
      beast::get_lowest_layer(c->ws).close();  // connecting
    // Bound the closing handshake: a server that does not answer is cut off.
    auto guard =
        std::make_shared<net::steady_timer>(m.ioc, std::chrono::milliseconds(m.options.connect_timeout_ms));
    guard->async_wait([&m, guard](boost::system::error_code ec) {
      if (ec) return;
      if (auto c = m.current.lock()) beast::get_lowest_layer(c->ws).close();
    });
    // The guard must not keep the io_context alive once the run loop ended.
    net::co_spawn(
        m.ioc,
        [&m, guard]() -> net::awaitable<void> {
          net::steady_timer poll(m.ioc);
          while (m.is_running) {
            poll.expires_after(std::chrono::milliseconds(5));
            co_await poll.async_wait(kAwait);
          }
          guard->cancel();
        },
        net::detached);
  });
  m.thread.join();
  m.is_running = false;
  m.is_connected = false;
}

bool WsClient::running() const {
  return impl_->is_running;
}
bool WsClient::connected() const {
  return impl_->is_connected;
}

WsStatus WsClient::last_error() const {
  MutexLock lock(impl_->mu);
  return impl_->last_error;
}

std::string WsClient::current_url() const {
  const Impl& m = *impl_;
  const size_t i = m.url_index;
  return i == 0 ? m.options.url : m.options.fallback_urls.at(i - 1);
}

WsCounters WsClient::counters() const {
  const Impl& m = *impl_;
  return WsCounters{
      m.messages_sent.load(std::memory_order_relaxed), m.bytes_sent.load(std::memory_order_relaxed),
      m.messages_received.load(std::memory_order_relaxed), m.bytes_received.load(std::memory_order_relaxed)};
}

bool WsClient::wait_until(const std::function<bool()>& done, std::chrono::milliseconds timeout) {
  Impl& m = *impl_;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  std::unique_lock lock(m.mu.native());  // only for cv: the predicate runs unlocked
  for (;;) {
    lock.unlock();
    bool ok = done();
    lock.lock();
    if (ok) return true;
    // A short cap on each wait: predicates may read state that changes without a notification (engine).
    auto next = std::min(deadline, std::chrono::steady_clock::now() + std::chrono::milliseconds(20));
    if (std::chrono::steady_clock::now() >= deadline) return false;
    m.cv.wait_until(lock, next);
  }
}

WsStatus WsClient::sync_once(std::chrono::milliseconds timeout) {
  Impl& m = *impl_;
  if (m.is_running) return {WsError::kInvalidArgument, "sync_once while running"};
  if (WsStatus s = start(); !s.ok()) return s;
  auto fatal = [&] {
    MutexLock lock(m.mu);
    return m.last_error.code == WsError::kCertificate || m.last_error.code == WsError::kPinMismatch ||
           m.last_error.code == WsError::kBadUrl;
  };
  bool idle = wait_until(
      [&] { return fatal() || !m.is_running || m.engine.stopped() || (m.is_connected && m.engine.idle()); },
      timeout);
  WsStatus result;
  if (m.engine.stopped()) {
    result = {WsError::kStopped, m.engine.stop_reason().to_string()};
  } else if (!idle || !m.engine.idle()) {
    result = last_error();
    if (result.ok())
      result = {WsError::kTimeout, "not synced within " + std::to_string(timeout.count()) + " ms"};
  }
  stop();
  return result;
}

// ==== WsRawPeer

struct WsRawPeer::Impl {
  explicit Impl(WsClientOptions o) : options(std::move(o)) {}

  // Runs `op` on the io_context for at most `timeout`; on timeout the socket is closed so the op ends.
  template <typename Op>
  WsStatus run(Op op, std::chrono::milliseconds timeout) {
    std::optional<WsStatus> result;
    ioc.restart();
    net::co_spawn(ioc, std::move(op), [&result](std::exception_ptr e, WsStatus s) {
      result = e ? WsStatus{WsError::kClosed, "exception"} : std::move(s);
    });
    // Not run_for: the stream's own timers (pings) keep the io_context busy after the operation is done.
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!result && ioc.run_one_until(deadline) != 0) {
    }
    if (!result) {
      if (ws) beast::get_lowest_layer(*ws).close();
      ioc.restart();
      auto grace = std::chrono::steady_clock::now() + std::chrono::seconds(1);
      while (!result && ioc.run_one_until(grace) != 0) {
      }
      return {WsError::kTimeout, "timed out"};
    }
    return *result;
  }

  WsClientOptions options;
  net::io_context ioc;
  std::optional<ssl::context> tls;
  std::optional<Ws> ws;
  beast::flat_buffer buffer;
};

WsRawPeer::WsRawPeer(WsClientOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}
WsRawPeer::~WsRawPeer() = default;

WsStatus WsRawPeer::connect() {
  Impl& m = *impl_;
  Url url;
  std::string pin;
  if (WsStatus s = parse_url(m.options.url, url); !s.ok()) return s;
  if (WsStatus s = normalise_pin(m.options.pin_sha256, pin); !s.ok()) return s;
  if (WsStatus s = make_context(m.options, m.tls); !s.ok()) return s;
  m.ws.emplace(m.ioc, *m.tls);
  return m.run(open_connection(*m.ws, url, m.options, pin),
               std::chrono::milliseconds(m.options.connect_timeout_ms) * 2);
}

WsStatus WsRawPeer::send(std::span<const uint8_t> message, std::chrono::milliseconds timeout, bool binary) {
  Impl& m = *impl_;
  if (!m.ws) return {WsError::kInvalidArgument, "not connected"};
  m.ws->binary(binary);
  auto op = [](Ws& ws, std::span<const uint8_t> msg) -> net::awaitable<WsStatus> {
    auto [ec, n] = co_await ws.async_write(net::buffer(msg.data(), msg.size()), kAwait);
    if (ec) co_return closed_status(ws, ec);
    co_return WsStatus{};
  };
  return m.run(op(*m.ws, message), timeout);
}

WsStatus WsRawPeer::receive(std::vector<uint8_t>& message, std::chrono::milliseconds timeout) {
  Impl& m = *impl_;
  if (!m.ws) return {WsError::kInvalidArgument, "not connected"};
  auto op = [](Ws& ws, beast::flat_buffer& buf, std::vector<uint8_t>& out) -> net::awaitable<WsStatus> {
    auto [ec, n] = co_await ws.async_read(buf, kAwait);
    if (ec) co_return closed_status(ws, ec);
    auto d = buf.cdata();
    out.assign(static_cast<const uint8_t*>(d.data()), static_cast<const uint8_t*>(d.data()) + d.size());
    buf.consume(buf.size());
    co_return WsStatus{};
  };
  return m.run(op(*m.ws, m.buffer, message), timeout);
}

}  // namespace fieldsync::client
