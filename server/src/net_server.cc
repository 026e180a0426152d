#include "fieldsync/server/net_server.h"

#include <openssl/ssl.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <chrono>
#include <deque>
#include <iostream>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "fieldsync/server/sync_service.h"

namespace fieldsync::server {

namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace net = boost::asio;
namespace ssl = net::ssl;
using tcp = net::ip::tcp;
using Strand = net::strand<net::io_context::executor_type>;
using WsStream = websocket::stream<beast::ssl_stream<beast::tcp_stream>>;

namespace {

int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string endpoint_string(const tcp::socket& s) {
  boost::system::error_code ec;
  tcp::endpoint ep = s.remote_endpoint(ec);
  if (ec) return "?";
  return ep.address().to_string() + ":" + std::to_string(ep.port());
}

}  // namespace

class Session;

struct NetServer::Impl {
  Impl(CentralStore& store, Authenticator& auth, NetServerOptions o)
      : options(std::move(o)), service(store, auth, options.sync, [this](SessionId s, Frame f, bool close) {
          deliver(s, std::move(f), close);
        }) {}

  void log(const std::string& line) {
    if (options.log) return options.log(line);
    std::lock_guard lock(log_mu);
    std::cerr << "fieldsync-server " << line << "\n";
  }
  void deliver(SessionId id, Frame frame, bool close_after);
  void do_accept();
  void schedule_sweep();
  void on_accept(Strand strand, boost::system::error_code ec, tcp::socket socket);

  NetServerOptions options;
  SyncService service;
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
    service.expire(wall_ms());
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
        id_(id) {
    impl_.live_sessions.fetch_add(1);
  }
  ~Session() {
    if (registered_) impl_.service.disconnect(id_);
    {
      std::lock_guard lock(impl_.registry_mu);
      impl_.registry.erase(id_);
    }
    impl_.live_sessions.fetch_sub(1);
    impl_.log("event=session_close session=" + std::to_string(id_) + " peer=" + peer_ +
              " reason=" + (reason_.empty() ? "closed" : reason_));
  }

  Strand& strand() { return strand_; }

  void run() {
    {
      std::lock_guard lock(impl_.registry_mu);
      impl_.registry[id_] = weak_from_this();
    }
    net::dispatch(strand_, [self = shared_from_this()] { self->start_tls(); });
  }

  // Queues a frame (or, with close_after, a close once the queue is sent). Strand only.
  void enqueue(Frame frame, bool close_after) {
    if (closed_ || close_requested_) return;
    if (close_after || !frame) {
      if (close_after) request_close(websocket::close_code::policy_error);
      return;
    }
    if (queue_.size() >= impl_.options.max_queued_frames ||
        queued_bytes_ + frame->size() > impl_.options.max_queued_bytes) {
      impl_.overflow_closes.fetch_add(1);
      hard_close("write_queue_overflow");
      return;
    }
    queued_bytes_ += frame->size();
    queue_.push_back(std::move(frame));
    if (!writing_) do_write();
  }

  // Closes the socket at once. Strand only.
  void cut(const std::string& reason) { hard_close(reason); }

  // Sends a close frame once everything queued is written. Strand only.
  void request_close(websocket::close_code code) {
    if (closed_) return;
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
    parser_->body_limit(0);
    http::async_read(
        ws_.next_layer(), buffer_, *parser_,
        [self = shared_from_this()](boost::system::error_code ec, size_t) { self->on_upgrade_request(ec); });
  }

  void on_upgrade_request(boost::system::error_code ec) {
    if (ec) return fail("upgrade_request", ec);
    http::request<http::empty_body> req = parser_->release();
    parser_.reset();
    if (!websocket::is_upgrade(req) || req.target() != "/sync") {
      auto res = std::make_shared<http::response<http::string_body>>(http::status::not_found, req.version());
      res->set(http::field::content_type, "text/plain");
      res->keep_alive(false);
      res->body() = "fieldsync: the sync endpoint is a WebSocket at /sync\n";
      res->prepare_payload();
      reason_ = "not_found";
      http::async_write(ws_.next_layer(), *res,
                        [self = shared_from_this(), res](boost::system::error_code, size_t) {
                          beast::get_lowest_layer(self->ws_).close();
                        });
      return;
    }
    beast::get_lowest_layer(ws_).expires_never();  // the WebSocket layer's own timeouts take over
    websocket::stream_base::timeout t;
    t.handshake_timeout = std::chrono::milliseconds(impl_.options.ws_handshake_timeout_ms);
    t.idle_timeout = std::chrono::milliseconds(impl_.options.idle_timeout_ms);
    t.keep_alive_pings = true;
    ws_.set_option(t);
    ws_.read_message_max(limits::kReadMessageMax);
    ws_.binary(true);
    ws_.auto_fragment(false);
    ws_.set_option(websocket::stream_base::decorator(
        [](websocket::response_type& res) { res.set(http::field::server, "fieldsync-server"); }));
    ws_.async_accept(req, [self = shared_from_this()](boost::system::error_code ec) { self->on_accept(ec); });
  }

  void on_accept(boost::system::error_code ec) {
    if (ec) return fail("ws_accept", ec);
    accepted_ = true;
    impl_.log("event=session_open session=" + std::to_string(id_) + " peer=" + peer_);
    if (impl_.stopping) return request_close(websocket::close_code::going_away);
    registered_ = true;
    impl_.service.connect(id_, wall_ms());
    do_read();
  }

  void do_read() {
    ws_.async_read(buffer_,
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
    if (!close_requested_ && !closed_) {
      if (!ws_.got_binary()) {
        impl_.service.bad_frame(id_, Status(ErrorCode::kMalformedMessage, "text WebSocket message"));
      } else {
        auto data = buffer_.cdata();
        impl_.service.frame(
            id_, std::span<const uint8_t>(static_cast<const uint8_t*>(data.data()), data.size()), wall_ms());
      }
    }
    buffer_.consume(buffer_.size());
    do_read();  // also while closing: the read completes with `closed` when the peer answers the close frame
  }

  void do_write() {
    writing_ = true;
    ws_.async_write(
        net::buffer(*queue_.front()),
        [self = shared_from_this()](boost::system::error_code ec, size_t) { self->on_write(ec); });
  }

  void on_write(boost::system::error_code ec) {
    writing_ = false;
    if (ec) return fail("write", ec);
    queued_bytes_ -= queue_.front()->size();
    queue_.pop_front();
    if (!queue_.empty()) return do_write();
    maybe_close();
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
    queue_.clear();
    queued_bytes_ = 0;
    beast::get_lowest_layer(ws_).close();  // pending operations complete with errors and release the session
  }

  NetServer::Impl& impl_;
  Strand strand_;
  std::string peer_;
  WsStream ws_;
  SessionId id_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::empty_body>> parser_;
  std::deque<Frame> queue_;
  size_t queued_bytes_ = 0;
  bool writing_ = false;
  bool accepted_ = false;
  bool registered_ = false;  // known to the SyncService
  bool close_requested_ = false;
  bool close_sent_ = false;
  bool closed_ = false;
  websocket::close_code close_code_ = websocket::close_code::normal;
  std::string reason_;
};

void NetServer::Impl::deliver(SessionId id, Frame frame, bool close_after) {
  if (io_stopped) return;
  std::shared_ptr<Session> s;
  {
    std::lock_guard lock(registry_mu);
    auto it = registry.find(id);
    if (it != registry.end()) s = it->second.lock();
  }
  if (!s) return;
  // The session's own answers are queued at once (the handler that produced them runs on its strand), so they
  // are sent even if a drain's close is already posted behind it; other sessions' frames are posted in the
  // order SyncServer produced them (the service lock is held).
  if (s->strand().running_in_this_thread()) {
    s->enqueue(std::move(frame), close_after);
  } else {
    Strand strand = s->strand();
    net::post(strand, [s = std::move(s), frame = std::move(frame), close_after]() mutable {
      s->enqueue(std::move(frame), close_after);
    });
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
  m.io_stopped = true;
  m.ioc.stop();
  for (std::thread& t : m.threads) t.join();
  m.threads.clear();
  m.log("event=stopped sessions_cut=" + std::to_string(left));
}

void NetServer::set_token_expiry(std::function<std::optional<int64_t>(const std::string& token)> expiry) {
  impl_->service.set_token_expiry(std::move(expiry));
}

size_t NetServer::session_count() const {
  return impl_->live_sessions.load();
}
uint64_t NetServer::overflow_closes() const {
  return impl_->overflow_closes.load();
}

}  // namespace fieldsync::server
