#include "fieldsync/server/net_server.h"

#include <openssl/crypto.h>
#include <openssl/ssl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <cerrno>
#include <chrono>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "fieldsync/client/tls_stream.h"
#include "fieldsync/server/metrics.h"
#include "fieldsync/server/sync_service.h"
#include "fieldsync/sync/codec.h"
#include "wall_clock.h"

namespace fieldsync::server {

namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace net = boost::asio;
namespace ssl = net::ssl;
using tcp = net::ip::tcp;
using Strand = net::strand<net::io_context::executor_type>;
using WsStream = fieldsync::net::WebSocketStream;

namespace {

std::string endpoint_string(const tcp::socket& s) {
  boost::system::error_code ec;
  tcp::endpoint ep = s.remote_endpoint(ec);
  if (ec) return "?";
  return ep.address().to_string() + ":" + std::to_string(ep.port());
}

// The part of a close reason that names it ("read_error(Connection reset by peer)" -> "read_error"), so the
// metric's label set stays small.
std::string reason_label(const std::string& reason) {
  return reason.substr(0, reason.find('('));
}

// Failed logins per client address in a sliding window (limits::kLoginFailuresPerWindow per kLoginWindowMs).
// An attempt counts as a failure from the moment it arrives (begin) and is taken back only when it succeeds:
// counted when answered, thirty wrong passwords sent at once all reached the password check, since none had
// failed yet when the next arrived.
class LoginThrottle {
 public:
  // Records an attempt; false (nothing recorded) when the address is over the limit.
  bool begin(const std::string& address, int64_t now_ms) {
    std::lock_guard lock(mu_);
    auto it = failures_.find(address);
    if (it != failures_.end()) {
      prune(it->second, now_ms);
      if (it->second.size() >= limits::kLoginFailuresPerWindow) return false;
    }
    record(address, now_ms);
    return true;
  }
  // The attempt begun at `began_ms` succeeded: it no longer counts.
  void succeeded(const std::string& address, int64_t began_ms) {
    std::lock_guard lock(mu_);
    auto it = failures_.find(address);
    if (it == failures_.end()) return;
    auto t = std::find(it->second.begin(), it->second.end(), began_ms);
    if (t != it->second.end()) it->second.erase(t);
  }

 private:
  void record(const std::string& address, int64_t now_ms) {
    if (failures_.size() >= limits::kLoginThrottleAddresses && !failures_.count(address)) {
      // Forget the address whose latest failure is oldest.
      auto oldest = failures_.begin();
      for (auto it = failures_.begin(); it != failures_.end(); ++it)
        if (it->second.empty() || (!oldest->second.empty() && it->second.back() < oldest->second.back()))
          oldest = it;
      failures_.erase(oldest);
    }
    std::deque<int64_t>& times = failures_[address];
    prune(times, now_ms);
    times.push_back(now_ms);
  }
  static void prune(std::deque<int64_t>& times, int64_t now_ms) {
    while (!times.empty() && now_ms - times.front() >= limits::kLoginWindowMs) times.pop_front();
  }
  std::mutex mu_;
  std::map<std::string, std::deque<int64_t>> failures_;
};

bool is_loopback(const net::ip::address& a) {
  if (a.is_loopback()) return true;
  return a.is_v6() && a.to_v6().is_v4_mapped() &&
         net::ip::make_address_v4(net::ip::v4_mapped, a.to_v6()).is_loopback();
}

}  // namespace

class Session;

struct NetServer::Impl {
  Impl(CentralStore& store, Authenticator& auth, NetServerOptions o)
      : options(std::move(o)),
        service(store, auth, service_options(), [this](Outbound out) { deliver(std::move(out)); }) {}

  SyncService::Options service_options() {
    SyncService::Options so;
    so.sync = options.sync;
    so.auth_failure_delay_ms = options.auth_failure_delay_ms;
    so.log = [this](const std::string& line) { log(line); };
    so.metrics = &metrics;
    so.on_fatal = options.on_fatal;
    return so;
  }

  void log(const std::string& line) {
    if (options.log) return options.log(line);
    // One write(2) per line: std::cerr is unbuffered, so each << was a system call of its own (three per
    // line; at thousands of pushes a second, one log line each, that was 4% of the server's samples).
    std::string out;
    out.reserve(line.size() + 18);
    out.append("fieldsync-server ").append(line).push_back('\n');
    std::lock_guard lock(log_mu);
    for (size_t done = 0; done < out.size();) {
      const ssize_t n = ::write(STDERR_FILENO, out.data() + done, out.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;  // nowhere to log to: the line is dropped, the server goes on
      done += static_cast<size_t>(n);
    }
  }
  void deliver(Outbound out);
  void do_accept();
  void schedule_sweep();
  void on_accept(Strand strand, boost::system::error_code ec, tcp::socket socket);

  NetServerOptions options;
  Metrics metrics;
  std::mutex log_mu;

  std::mutex registry_mu;  // guards registry only; never held while calling into a session
  std::map<SessionId, std::weak_ptr<Session>> registry;
  std::atomic<uint64_t> next_session{1};
  std::atomic<size_t> live_sessions{0};
  std::atomic<uint64_t> overflow_closes{0};
  std::atomic<bool> stopping{false};
  std::atomic<bool> io_stopped{false};
  bool started = false;
  std::vector<std::thread> threads;

  // After the registry (which its sink uses while it releases its last frames) and before the io objects,
  // whose handlers hold sessions that tell it when they go.
  SyncService service;

  LoginThrottle login_throttle;
  std::atomic<size_t> logins_queued{0};
  std::optional<net::thread_pool> login_pool;

  // Declared last: destroyed first, so handlers it still holds (and the sessions they own) are destroyed
  // while the service and the registry are alive.
  std::optional<ssl::context> tls;
  net::io_context ioc;
  std::optional<tcp::acceptor> acceptor;
  std::optional<net::steady_timer> sweep_timer;  // runs on the acceptor's strand
};

void NetServer::Impl::schedule_sweep() {
  sweep_timer->expires_after(std::chrono::milliseconds(limits::kTokenExpirySweepMs));
  sweep_timer->async_wait([this](boost::system::error_code ec) {
    if (ec || stopping) return;
    const int64_t now = wall_ms();
    service.expire(now);
    service.poll_external_commits(now);
    metrics.tick(now);
    schedule_sweep();
  });
}

// One connection: TLS handshake, HTTP upgrade on /sync, then WebSocket binary messages both ways. Every
// handler runs on strand_.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(NetServer::Impl& impl, Strand strand, tcp::socket&& socket, SessionId id)
      : impl_(impl),
        strand_(strand),
        peer_(endpoint_string(socket)),
        ws_(std::move(socket), *impl.tls),
        id_(id),
        delay_timer_(strand),
        bucket_(impl.options.session_message_burst) {
    boost::system::error_code ec;
    tcp::endpoint ep = beast::get_lowest_layer(ws_).socket().remote_endpoint(ec);
    if (!ec) peer_address_ = ep.address();
    impl_.live_sessions.fetch_add(1);
  }
  ~Session() {
    if (registered_) impl_.service.disconnect(id_);
    {
      std::lock_guard lock(impl_.registry_mu);
      impl_.registry.erase(id_);
    }
    impl_.live_sessions.fetch_sub(1);
    const std::string reason = reason_.empty() ? "closed" : reason_;
    if (accepted_) impl_.metrics.add(Counter::kSessionsClosed, 1, reason_label(reason));
    impl_.log("event=session_close session=" + std::to_string(id_) + " peer=" + peer_ + " reason=" + reason);
  }

  Strand& strand() { return strand_; }

  void run() {
    {
      std::lock_guard lock(impl_.registry_mu);
      impl_.registry[id_] = weak_from_this();
    }
    net::dispatch(strand_, [self = shared_from_this()] { self->start_tls(); });
  }

  // Queues a frame (or, with close_after, a close once the queue is sent). A frame with a delay holds itself
  // and everything after it back that long. Strand only.
  void enqueue(Outbound out) {
    if (closed_ || close_requested_) return;
    if (delaying_ || out.delay_ms > 0) {
      const int64_t delay_ms = std::exchange(out.delay_ms, 0);
      delayed_.push_back(std::move(out));
      if (!delaying_) {
        delaying_ = true;
        delay_timer_.expires_after(std::chrono::milliseconds(delay_ms));
        delay_timer_.async_wait([self = shared_from_this()](boost::system::error_code) {
          self->delaying_ = false;
          std::deque<Outbound> ready = std::exchange(self->delayed_, {});
          for (Outbound& o : ready) self->enqueue(std::move(o));
        });
      }
      return;
    }
    Frame frame = std::move(out.frame);
    if (out.close_after || !frame) {
      if (out.close_after) request_close(websocket::close_code::policy_error);
      return;
    }
    if (queue_.size() >= impl_.options.max_queued_frames ||
        queued_bytes_ + frame->size() > impl_.options.max_queued_bytes)
      return overflow();
    queued_bytes_ += frame->size();
    queue_.push_back(std::move(frame));
    if (!backlogged_ && queue_.size() >= tuning::kMaxPendingLiveBatches) report_backlog(true);
    if (!writing_) do_write();
  }

  // The peer asks faster than it reads its answers (or cannot take live batches fast enough): its unsent
  // frames are dropped (it pulls them again from its cursor), and it is told so -- a retryable kRateLimited
  // and a close frame (1013, try again later) -- so it backs off instead of taking it for a network failure.
  // The Error goes past the caps: one small frame. The close handshake's timeout bounds a peer that never
  // reads it.
  void overflow() {
    impl_.overflow_closes.fetch_add(1);
    reason_ = "write_queue_overflow";
    drop_unsent();
    protocol::Error e;
    e.code = ErrorCode::kRateLimited;
    e.message = "answers are not being read as fast as they are asked for: slow down";
    e.retryable = true;
    Frame frame = std::make_shared<const std::vector<uint8_t>>(codec::encode(e));
    impl_.metrics.add(Counter::kErrors, 1, to_string(e.code));
    impl_.log("event=error session=" + std::to_string(id_) + " code=" + std::string(to_string(e.code)) +
              " message=\"" + e.message + "\" retryable=true");
    queued_bytes_ += frame->size();
    queue_.push_back(std::move(frame));
    close_requested_ = true;
    close_code_ = websocket::close_code::try_again_later;
    if (!writing_) do_write();
  }

  // Closes the socket at once. Strand only.
  void cut(const std::string& reason) { hard_close(reason); }

  // Sends a close frame once everything queued is written. Strand only.
  void request_close(websocket::close_code code) {
    if (closed_) return;
    // While the upgrade response is being written the peer may already hold it and expect a WebSocket: the
    // close waits for on_accept, which sends a close frame (cutting the socket here lost the close code).
    if (!accepted_ && accepting_) return void(close_after_accept_ = code);
    if (!accepted_) return hard_close("server_stopping");
    close_requested_ = true;
    close_code_ = code;
    maybe_close();
  }

 private:
  void start_tls() {
    if (impl_.stopping) return hard_close("server_stopping");
    beast::get_lowest_layer(ws_).expires_after(
        std::chrono::milliseconds(impl_.options.tls_handshake_timeout_ms));
    ws_.next_layer().async_handshake(
        ssl::stream_base::server,
        [self = shared_from_this()](boost::system::error_code ec) { self->on_tls_handshake(ec); });
  }

  void on_tls_handshake(boost::system::error_code ec) {
    if (ec) return fail("tls_handshake", ec);
    beast::get_lowest_layer(ws_).expires_after(
        std::chrono::milliseconds(impl_.options.ws_handshake_timeout_ms));
    parser_.emplace();
    parser_->header_limit(static_cast<uint32_t>(limits::kMaxUpgradeRequestBytes));
    parser_->body_limit(limits::kMaxHttpBodyBytes);
    http::async_read(
        ws_.next_layer(), buffer_, *parser_,
        [self = shared_from_this()](boost::system::error_code ec, size_t) { self->on_upgrade_request(ec); });
  }

  void on_upgrade_request(boost::system::error_code ec) {
    if (ec == http::error::body_limit) {
      reason_ = "http_body_too_large";
      return respond(http::status::payload_too_large, "text/plain", "request body too large\n", 11);
    }
    if (ec == http::error::header_limit) {
      reason_ = "http_header_too_large";
      return respond(http::status::request_header_fields_too_large, "text/plain",
                     "request header too large\n", 11);
    }
    if (ec) return fail("upgrade_request", ec);
    http::request<http::string_body> req = parser_->release();
    parser_.reset();
    if (websocket::is_upgrade(req) && req.target() == "/sync") return start_websocket(req);
    const std::string target(req.target());
    const auto only = [&](http::verb method) {
      if (req.method() == method) return true;
      respond(http::status::method_not_allowed, "text/plain", "method not allowed\n", req.version(),
              {{http::field::allow, std::string(http::to_string(method))}});
      return false;
    };
    if (target == "/sync") {
      impl_.metrics.add(Counter::kHttpRequests, 1, "/sync");
      return respond(http::status::upgrade_required, "text/plain", "/sync is a WebSocket\n", req.version(),
                     {{http::field::upgrade, "websocket"}});
    }
    if (target == "/login" && impl_.options.login) {
      impl_.metrics.add(Counter::kHttpRequests, 1, "/login");
      if (!only(http::verb::post)) return;
      return handle_login(req);
    }
    if (target == "/metrics") {
      impl_.metrics.add(Counter::kHttpRequests, 1, "/metrics");
      if (!only(http::verb::get)) return;
      if (!metrics_allowed(req))
        return respond(http::status::forbidden, "text/plain", "metrics: loopback or bearer token only\n",
                       req.version());
      return respond(http::status::ok, "text/plain; version=0.0.4", impl_.metrics.render(), req.version());
    }
    if (target == "/healthz") {
      impl_.metrics.add(Counter::kHttpRequests, 1, "/healthz");
      if (!only(http::verb::get)) return;
      if (impl_.stopping)
        return respond(http::status::service_unavailable, "text/plain", "draining\n", req.version());
      return respond(http::status::ok, "text/plain", "ok\n", req.version());
    }
    impl_.metrics.add(Counter::kHttpRequests, 1, "other");
    reason_ = "not_found";
    respond(http::status::not_found, "text/plain", "fieldsync: the sync endpoint is a WebSocket at /sync\n",
            req.version());
  }

  bool metrics_allowed(const http::request<http::string_body>& req) const {
    const std::string& token = impl_.options.metrics_token;
    if (token.empty()) return peer_address_ && is_loopback(*peer_address_);
    auto it = req.find(http::field::authorization);
    if (it == req.end()) return false;
    const std::string expected = "Bearer " + token;
    const std::string_view got(it->value().data(), it->value().size());
    return got.size() == expected.size() && CRYPTO_memcmp(got.data(), expected.data(), got.size()) == 0;
  }

  // One plain HTTP response, then the connection closes.
  void respond(http::status status, std::string_view content_type, std::string body, unsigned version,
               std::vector<std::pair<http::field, std::string>> extra = {}) {
    auto res = std::make_shared<http::response<http::string_body>>(status, version);
    res->set(http::field::server, "fieldsync-server");
    res->set(http::field::content_type, content_type);
    res->set(http::field::cache_control, "no-store");
    for (auto& [field, value] : extra) res->set(field, value);
    res->keep_alive(false);
    res->body() = std::move(body);
    res->prepare_payload();
    beast::get_lowest_layer(ws_).expires_after(
        std::chrono::milliseconds(impl_.options.ws_handshake_timeout_ms));
    http::async_write(ws_.next_layer(), *res,
                      [self = shared_from_this(), res](boost::system::error_code, size_t) {
                        beast::get_lowest_layer(self->ws_).close();
                      });
  }

  static std::string json_error(std::string_view code, std::string_view message) {
    boost::json::object o;
    o["error"] = code;
    o["message"] = message;
    return boost::json::serialize(o) + "\n";
  }

  // POST /login: {"user": "...", "password": "...", "node": 123 or "123"}.
  void handle_login(const http::request<http::string_body>& req) {
    const unsigned version = req.version();
    const std::string address = peer_address_ ? peer_address_->to_string() : peer_;
    boost::system::error_code jec;
    boost::json::value body = boost::json::parse(req.body(), jec);
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
    if (user == nullptr || password == nullptr || node == 0) {
      impl_.metrics.add(Counter::kLogins, 1, "bad_request");
      return respond(http::status::bad_request, "application/json",
                     json_error("bad_request", "expected a JSON object with user, password and node"),
                     version);
    }
    const int64_t now = wall_ms();
    if (!impl_.login_throttle.begin(address, now)) {
      impl_.metrics.add(Counter::kLogins, 1, "rate_limited");
      impl_.log("event=login_throttled peer=" + peer_);
      return respond(http::status::too_many_requests, "application/json",
                     json_error("rate_limited", "too many failed logins from this address; try again later"),
                     version, {{http::field::retry_after, std::to_string(limits::kLoginWindowMs / 1000)}});
    }
    if (impl_.logins_queued.fetch_add(1) >= limits::kMaxLoginsQueued) {
      impl_.logins_queued.fetch_sub(1);
      impl_.login_throttle.succeeded(address, now);  // not tried: does not count
      impl_.metrics.add(Counter::kLogins, 1, "busy");
      return respond(http::status::service_unavailable, "application/json",
                     json_error("busy", "too many logins in progress; try again shortly"), version,
                     {{http::field::retry_after, "2"}});
    }
    // The KDF runs on a login thread; the answer comes back to this session's strand.
    net::post(*impl_.login_pool, [self = shared_from_this(), u = std::string(*user),
                                  pw = std::string(*password), node, version, address, now] {
      Result<LoginGrant> grant = self->impl_.options.login(u, pw, node, wall_ms());
      self->impl_.logins_queued.fetch_sub(1);
      if (grant) self->impl_.login_throttle.succeeded(address, now);
      net::post(self->strand_, [self, grant = std::move(grant), u, node, version]() mutable {
        self->finish_login(std::move(grant), u, node, version);
      });
    });
  }

  void finish_login(Result<LoginGrant> grant, const std::string& user, NodeId node, unsigned version) {
    if (grant) {
      impl_.metrics.add(Counter::kLogins, 1, "ok");
      impl_.log("event=login session=" + std::to_string(id_) + " peer=" + peer_ + " user=" + user +
                " node=" + std::to_string(node) + " outcome=ok");
      boost::json::object o;
      o["token"] = grant->token;
      o["expires_at_ms"] = grant->expires_at_ms;
      return respond(http::status::ok, "application/json", boost::json::serialize(o) + "\n", version);
    }
    impl_.metrics.add(Counter::kLogins, 1, "failed");
    impl_.log("event=login session=" + std::to_string(id_) + " peer=" + peer_ + " user=" + user +
              " node=" + std::to_string(node) + " outcome=failed");
    // Every failure reads the same and comes late: nothing tells which of user, password or device was wrong.
    delay_timer_.expires_after(std::chrono::milliseconds(impl_.options.login_failure_delay_ms));
    delay_timer_.async_wait([self = shared_from_this(), version](boost::system::error_code) {
      self->respond(http::status::unauthorized, "application/json",
                    json_error("auth_failed", "authentication failed"), version);
    });
  }

  void start_websocket(const http::request<http::string_body>& req) {
    beast::get_lowest_layer(ws_).expires_never();  // the WebSocket layer's own timeouts take over
    websocket::stream_base::timeout t;
    t.handshake_timeout = std::chrono::milliseconds(impl_.options.ws_handshake_timeout_ms);
    t.idle_timeout = std::chrono::milliseconds(impl_.options.idle_timeout_ms);
    t.keep_alive_pings = true;
    ws_.set_option(t);
    // The limit is enforced in on_read (with a typed Error), never by Beast: its cap refuses a frame whose
    // header is over it before a byte is read, with close code 1009 and no Error. Reading in pieces bounds
    // what is buffered; the rest of an oversized message is dropped within the close handshake's timeout.
    ws_.read_message_max(0);
    ws_.binary(true);
    ws_.auto_fragment(false);
    ws_.set_option(websocket::stream_base::decorator(
        [](websocket::response_type& res) { res.set(http::field::server, "fieldsync-server"); }));
    accepting_ = true;
    ws_.async_accept(req, [self = shared_from_this()](boost::system::error_code ec) { self->on_accept(ec); });
  }

  void on_accept(boost::system::error_code ec) {
    if (ec) return fail("ws_accept", ec);
    accepted_ = true;
    impl_.metrics.add(Counter::kSessionsOpened);
    impl_.log("event=session_open session=" + std::to_string(id_) + " peer=" + peer_);
    if (close_after_accept_) return request_close(*close_after_accept_);
    if (impl_.stopping) return request_close(websocket::close_code::going_away);
    registered_ = true;
    impl_.service.connect(id_, wall_ms());
    do_read();
  }

  // Messages are read in pieces so that one over the limit is noticed after at most one piece more than the
  // limit, and answered with a typed Error (kMessageTooLarge) before the close, not only a close code.
  void do_read() {
    ws_.async_read_some(
        buffer_, limits::kReadChunkBytes,
        [self = shared_from_this()](boost::system::error_code ec, size_t) { self->on_read(ec); });
  }

  void on_read(boost::system::error_code ec) {
    if (ec) {
      if (ec == websocket::error::closed) {
        if (reason_.empty()) reason_ = close_requested_ ? "closed_by_server" : "closed_by_peer";
        return;
      }
      return fail("read", ec);
    }
    if (discarding_ || buffer_.size() > limits::kReadMessageMax) {
      // The rest of an oversized message is read and dropped while the close handshake runs.
      if (!discarding_ && !close_requested_ && !closed_) {
        reason_ = "message_too_large";
        impl_.service.bad_frame(
            id_, Status(ErrorCode::kMessageTooLarge,
                        "a message may hold at most " + std::to_string(limits::kReadMessageMax) + " bytes"));
      }
      discarding_ = !ws_.is_message_done();
      buffer_.consume(buffer_.size());
      return do_read();
    }
    if (!ws_.is_message_done()) return do_read();
    if (!close_requested_ && !closed_) {
      if (!take_message_token()) {
        reason_ = "rate_limited";
        impl_.service.bad_frame(
            id_, Status(ErrorCode::kRateLimited,
                        "more than " +
                            std::to_string(static_cast<int>(impl_.options.session_messages_per_second)) +
                            " messages per second",
                        true));
      } else if (!ws_.got_binary()) {
        impl_.service.bad_frame(id_, Status(ErrorCode::kMalformedMessage, "text WebSocket message"));
      } else {
        auto data = buffer_.cdata();
        // A request the server asked for (a catch-up pull after has_more, the next bootstrap page) gets its
        // token back: a device catching up on a fast link pulls as fast as the answers come, faster than
        // the limit, which is for floods (a live head office far behind 1,000 busy reps was cut by its own
        // catch-up).
        if (impl_.service.frame(
                id_, std::span<const uint8_t>(static_cast<const uint8_t*>(data.data()), data.size()),
                wall_ms()))
          bucket_ = std::min(impl_.options.session_message_burst, bucket_ + 1.0);
      }
    }
    buffer_.consume(buffer_.size());
    do_read();  // also while closing: the read completes with `closed` when the peer answers the close frame
  }

  bool take_message_token() {
    const auto now = std::chrono::steady_clock::now();
    const double elapsed_s = std::chrono::duration<double>(now - bucket_at_).count();
    bucket_at_ = now;
    bucket_ = std::min(impl_.options.session_message_burst,
                       bucket_ + elapsed_s * impl_.options.session_messages_per_second);
    if (bucket_ < 1.0) return false;
    bucket_ -= 1.0;
    return true;
  }

  void do_write() {
    writing_ = true;
    ws_.async_write(
        net::buffer(*queue_.front()),
        [self = shared_from_this()](boost::system::error_code ec, size_t) { self->on_write(ec); });
  }

  void on_write(boost::system::error_code ec) {
    writing_ = false;
    queued_bytes_ -= queue_.front()->size();
    queue_.pop_front();
    if (ec) return fail("write", ec);
    if (closed_) return;  // cut while this frame was being written: nothing more goes out
    if (!queue_.empty()) return do_write();
    if (backlogged_) report_backlog(false);
    maybe_close();
  }

  // Tells the sync state machine that this session's queue backed up or drained, so live batches wait and
  // coalesce instead of piling up here until the queue overflows. Posted, never called from here: enqueue
  // may run inside a call of the service itself (its sink, under its lock), and posting keeps the reports in
  // order on the strand.
  void report_backlog(bool backlogged) {
    backlogged_ = backlogged;
    net::post(strand(), [self = shared_from_this(), backlogged] {
      if (self->registered_ && !self->closed_) self->impl_.service.set_backlogged(self->id_, backlogged);
    });
  }

  void maybe_close() {
    if (!close_requested_ || writing_ || !queue_.empty() || close_sent_ || closed_) return;
    close_sent_ = true;
    ws_.async_close(close_code_, [self = shared_from_this()](boost::system::error_code ec) {
      if (ec) self->fail("close", ec);
    });
  }

  void fail(const char* stage, boost::system::error_code ec) {
    if (closed_) return;
    if (ec == net::error::operation_aborted || ec == beast::error::timeout) {
      if (reason_.empty()) reason_ = std::string(stage) + "_timeout_or_aborted";
    } else if (reason_.empty()) {
      reason_ = std::string(stage) + "_error(" + ec.message() + ")";
    }
    hard_close(reason_);
  }

  void hard_close(const std::string& reason) {
    if (closed_) return;
    closed_ = true;
    if (reason_.empty()) reason_ = reason;
    drop_unsent();
    beast::get_lowest_layer(ws_).close();  // pending operations complete with errors and release the session
  }

  // The frame being written stays alive until its write completes: Beast reads from it until then.
  void drop_unsent() {
    if (writing_ && !queue_.empty()) {
      queue_.erase(queue_.begin() + 1, queue_.end());
      queued_bytes_ = queue_.front()->size();
    } else {
      queue_.clear();
      queued_bytes_ = 0;
    }
  }

  NetServer::Impl& impl_;
  Strand strand_;
  std::string peer_;
  WsStream ws_;
  SessionId id_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::optional<net::ip::address> peer_address_;
  net::steady_timer delay_timer_;  // delayed frames (refused handshakes) and failed-login answers
  bool delaying_ = false;
  std::deque<Outbound> delayed_;
  bool discarding_ = false;  // reading the rest of an oversized message
  double bucket_;            // message tokens (take_message_token), a full bucket at first
  std::chrono::steady_clock::time_point bucket_at_ = std::chrono::steady_clock::now();
  std::deque<Frame> queue_;
  size_t queued_bytes_ = 0;
  bool writing_ = false;
  bool accepted_ = false;
  bool accepting_ = false;                                   // async_accept in flight
  std::optional<websocket::close_code> close_after_accept_;  // request_close while accepting_
  bool registered_ = false;                                  // known to the SyncService
  bool backlogged_ = false;                                  // reported to the SyncService (report_backlog)
  bool close_requested_ = false;
  bool close_sent_ = false;
  bool closed_ = false;
  websocket::close_code close_code_ = websocket::close_code::normal;
  std::string reason_;
};

void NetServer::Impl::deliver(Outbound out) {
  if (io_stopped) return;
  std::shared_ptr<Session> s;
  {
    std::lock_guard lock(registry_mu);
    auto it = registry.find(out.session);
    if (it != registry.end()) s = it->second.lock();
  }
  if (!s) return;
  // The session's own answers are queued at once (the handler that produced them runs on its strand), so they
  // are sent even if a drain's close is already posted behind it; other sessions' frames are posted in the
  // order SyncServer produced them (the service releases them one thread at a time, in that order).
  if (s->strand().running_in_this_thread()) {
    s->enqueue(std::move(out));
  } else {
    Strand strand = s->strand();
    net::post(strand, [s = std::move(s), out = std::move(out)]() mutable { s->enqueue(std::move(out)); });
  }
}

void NetServer::Impl::do_accept() {
  Strand strand = net::make_strand(ioc);
  acceptor->async_accept(strand, [this, strand](boost::system::error_code ec, tcp::socket socket) {
    on_accept(strand, ec, std::move(socket));
  });
}

void NetServer::Impl::on_accept(Strand strand, boost::system::error_code ec, tcp::socket socket) {
  if (stopping || !acceptor->is_open()) return;
  if (ec) {
    log("event=accept_error error=\"" + ec.message() + "\"");
  } else if (live_sessions.load() >= options.max_sessions) {
    log("event=session_refused peer=" + endpoint_string(socket) + " reason=max_sessions");
    boost::system::error_code ignored;
    socket.close(ignored);
  } else {
    socket.set_option(tcp::no_delay(true));
    std::make_shared<Session>(*this, strand, std::move(socket), next_session.fetch_add(1))->run();
  }
  do_accept();
}

NetServer::NetServer(CentralStore& store, Authenticator& auth, NetServerOptions options)
    : impl_(std::make_unique<Impl>(store, auth, std::move(options))) {}

NetServer::~NetServer() {
  stop();
}

Result<uint16_t> NetServer::start() {
  Impl& m = *impl_;
  if (m.started) return Status(ErrorCode::kInvalidArgument, "server already started");
  boost::system::error_code ec;
  m.tls.emplace(ssl::context::tls_server);
  // TLS 1.2 minimum; OpenSSL negotiates 1.3 whenever the client offers it.
  m.tls->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                     ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 | ssl::context::single_dh_use);
  SSL_CTX_set_min_proto_version(m.tls->native_handle(), TLS1_2_VERSION);
  // TLS 1.2: AEAD suites only, Mozilla's intermediate profile without DHE (no DH parameters are loaded):
  // OpenSSL's default list still offers CBC suites (ECDHE-ECDSA-AES128-SHA and friends). TLS 1.3's suites
  // are all AEAD.
  if (SSL_CTX_set_cipher_list(m.tls->native_handle(),
                              "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                              "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                              "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305") != 1)
    return Status(ErrorCode::kInternal, "TLS: no AEAD cipher suite available");
  m.tls->use_certificate_chain(net::buffer(m.options.cert_pem), ec);
  if (ec) return Status(ErrorCode::kInvalidArgument, "TLS certificate: " + ec.message());
  m.tls->use_private_key(net::buffer(m.options.key_pem), ssl::context::pem, ec);
  if (ec) return Status(ErrorCode::kInvalidArgument, "TLS private key: " + ec.message());
  if (SSL_CTX_check_private_key(m.tls->native_handle()) != 1)
    return Status(ErrorCode::kInvalidArgument, "TLS private key does not match the certificate");

  net::ip::address addr = net::ip::make_address(m.options.address, ec);
  if (ec)
    return Status(ErrorCode::kInvalidArgument, "listen address '" + m.options.address + "': " + ec.message());
  tcp::endpoint endpoint(addr, m.options.port);
  m.acceptor.emplace(net::make_strand(m.ioc));
  auto fail = [&](const char* what) {
    return Status(ErrorCode::kInternal, std::string(what) + " " + m.options.address + ":" +
                                            std::to_string(m.options.port) + ": " + ec.message());
  };
  if (m.acceptor->open(endpoint.protocol(), ec); ec) return fail("open");
  if (m.acceptor->set_option(net::socket_base::reuse_address(true), ec); ec) return fail("reuse_address");
  if (m.acceptor->bind(endpoint, ec); ec) return fail("bind");
  if (m.acceptor->listen(limits::kListenBacklog, ec); ec) return fail("listen");
  uint16_t port = m.acceptor->local_endpoint().port();

  int n = m.options.threads > 0 ? m.options.threads : static_cast<int>(std::thread::hardware_concurrency());
  n = std::clamp(n, 1, limits::kMaxThreads);
  m.sweep_timer.emplace(m.acceptor->get_executor());
  net::dispatch(m.acceptor->get_executor(), [&m] {
    m.do_accept();
    m.schedule_sweep();
  });
  m.started = true;
  if (m.options.login) m.login_pool.emplace(limits::kLoginThreads);
  for (int i = 0; i < n; ++i) m.threads.emplace_back([&m] { m.ioc.run(); });
  m.log("event=listening address=" + m.options.address + " port=" + std::to_string(port) +
        " threads=" + std::to_string(n));
  return port;
}

void NetServer::stop() {
  Impl& m = *impl_;
  if (!m.started) return;
  m.started = false;
  m.stopping = true;
  m.log("event=draining sessions=" + std::to_string(m.live_sessions.load()));
  net::post(m.acceptor->get_executor(), [&m] {
    boost::system::error_code ignored;
    m.acceptor->close(ignored);
    m.sweep_timer->cancel();
  });
  std::vector<std::shared_ptr<Session>> sessions;
  {
    std::lock_guard lock(m.registry_mu);
    for (auto& [id, weak] : m.registry)
      if (auto s = weak.lock()) sessions.push_back(std::move(s));
  }
  for (auto& s : sessions) {
    Strand strand = s->strand();
    net::post(strand, [s] { s->request_close(websocket::close_code::going_away); });
  }
  sessions.clear();
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(m.options.drain_timeout_ms);
  while (m.live_sessions.load() > 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  size_t left = m.live_sessions.load();
  if (left > 0) {  // peers that did not finish the closing handshake in time are cut off
    {
      std::lock_guard lock(m.registry_mu);
      for (auto& [id, weak] : m.registry)
        if (auto s = weak.lock()) sessions.push_back(std::move(s));
    }
    for (auto& s : sessions) {
      Strand strand = s->strand();
      net::post(strand, [s] { s->cut("drain_timeout"); });
    }
    sessions.clear();
    auto cut_deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(200);
    while (m.live_sessions.load() > 0 && std::chrono::steady_clock::now() < cut_deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  if (m.login_pool) m.login_pool->join();  // logins in flight finish; their answers go nowhere
  m.io_stopped = true;
  m.ioc.stop();
  for (std::thread& t : m.threads) t.join();
  m.threads.clear();
  m.log("event=stopped sessions_cut=" + std::to_string(left));
}

void NetServer::set_token_expiry(std::function<std::optional<int64_t>(const std::string& token)> expiry) {
  impl_->service.set_token_expiry(std::move(expiry));
}

Metrics& NetServer::metrics() {
  return impl_->metrics;
}

size_t NetServer::session_count() const {
  return impl_->live_sessions.load();
}
uint64_t NetServer::overflow_closes() const {
  return impl_->overflow_closes.load();
}

}  // namespace fieldsync::server
