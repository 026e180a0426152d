// The listener and the server's lifetime: TLS context, acceptor, io threads, the registry of connections,
// the sweep timer and the drain. Each accepted connection starts as an HttpSession (http_session.cc).
#include <openssl/ssl.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <cerrno>
#include <charconv>
#include <chrono>

#include "fieldsync/io/tls_policy.h"
#include "fieldsync/server/directory.h"
#include "http_session.h"
#include "wall_clock.h"

namespace fieldsync::server {

namespace ssl = asio::ssl;

std::string endpoint_string(const tcp::socket& s) {
  boost::system::error_code ec;
  tcp::endpoint ep = s.remote_endpoint(ec);
  if (ec) return "?";
  return ep.address().to_string() + ":" + std::to_string(ep.port());
}

bool is_loopback(const asio::ip::address& a) {
  if (a.is_loopback()) return true;
  return a.is_v6() && a.to_v6().is_v4_mapped() &&
         asio::ip::make_address_v4(asio::ip::v4_mapped, a.to_v6()).is_loopback();
}

ConnectionSlot::ConnectionSlot(NetServer::Impl& i, SessionId session, std::string peer_name)
    : impl(i), id(session), peer(std::move(peer_name)) {
  impl.live_sessions.fetch_add(1);
}

ConnectionSlot::~ConnectionSlot() {
  {
    MutexLock lock(impl.registry_mu);
    impl.registry.erase(id);
  }
  impl.live_sessions.fetch_sub(1);
  const std::string r = reason.empty() ? "closed" : reason;
  // The metric's label is the part of the reason that names it ("read_error(Connection reset by peer)" ->
  // "read_error"), so its label set stays small.
  if (websocket) impl.metrics.add(Counter::kSessionsClosed, 1, r.substr(0, r.find('(')));
  impl.log("event=session_close session=" + std::to_string(id) + " peer=" + peer + " reason=" + r);
}

void ConnectionSlot::attach(std::weak_ptr<Connection> c) {
  MutexLock lock(impl.registry_mu);
  impl.registry[id] = std::move(c);
}

bool LoginThrottle::begin(const std::string& address, int64_t now_ms) {
  const auto prune = [now_ms](std::deque<int64_t>& times) {
    while (!times.empty() && now_ms - times.front() >= limits::kLoginWindowMs) times.pop_front();
  };
  MutexLock lock(mu_);
  auto it = failures_.find(address);
  if (it != failures_.end()) {
    prune(it->second);
    if (it->second.size() >= limits::kLoginFailuresPerWindow) return false;
  } else if (failures_.size() >= limits::kLoginThrottleAddresses) {
    // Forget the address whose latest attempt is oldest.
    auto oldest = failures_.begin();
    for (auto i = failures_.begin(); i != failures_.end(); ++i)
      if (i->second.empty() || (!oldest->second.empty() && i->second.back() < oldest->second.back()))
        oldest = i;
    failures_.erase(oldest);
  }
  std::deque<int64_t>& times = failures_[address];
  prune(times);
  times.push_back(now_ms);
  return true;
}

void LoginThrottle::succeeded(const std::string& address, int64_t began_ms) {
  MutexLock lock(mu_);
  auto it = failures_.find(address);
  if (it == failures_.end()) return;
  auto t = std::find(it->second.begin(), it->second.end(), began_ms);
  if (t != it->second.end()) it->second.erase(t);
}

NetServer::Impl::Impl(CentralStore& store, Authenticator& auth, NetServerOptions o)
    : store(store),
      options(std::move(o)),
      service(
          store, auth,
          [this] {
            SyncService::Options so;
            so.sync = options.sync;
            so.auth_failure_delay_ms = options.auth_failure_delay_ms;
            so.log = [this](const std::string& line) { log(line); };
            so.metrics = &metrics;
            so.on_fatal = options.on_fatal;
            so.after_commit = options.after_commit;
            return so;
          }(),
          [this](Outbound out) { deliver(std::move(out)); }) {
  add_routes(*this, routes);
}

void NetServer::Impl::log(const std::string& line) {
  if (options.log) return options.log(line);
  // One write(2) per line: std::cerr is unbuffered, so each << was a system call of its own (three per
  // line; at thousands of pushes a second, one log line each, that was 4% of the server's samples).
  std::string out;
  out.reserve(line.size() + 18);
  out.append("fieldsync-server ").append(line).push_back('\n');
  MutexLock lock(log_mu);
  for (size_t done = 0; done < out.size();) {
    const ssize_t n = ::write(STDERR_FILENO, out.data() + done, out.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // nowhere to log to: the line is dropped, the server goes on
    done += static_cast<size_t>(n);
  }
}

std::vector<std::shared_ptr<Connection>> NetServer::Impl::connections() {
  std::vector<std::shared_ptr<Connection>> out;
  MutexLock lock(registry_mu);
  for (auto& [id, weak] : registry)
    if (auto c = weak.lock()) out.push_back(std::move(c));
  return out;
}

void NetServer::Impl::schedule_sweep() {
  sweep_timer->expires_after(std::chrono::milliseconds(limits::kTokenExpirySweepMs));
  sweep_timer->async_wait([this](boost::system::error_code ec) {
    if (ec || stopping) return;
    const int64_t now = wall_ms();
    service.expire(now);
    service.poll_external_commits(now);
    poll_directory(now);
    metrics.tick(now);
    schedule_sweep();
  });
}

void NetServer::Impl::poll_directory(int64_t now_ms) {
  Directory* dir = options.directory;
  if (dir == nullptr || !api_pool || directory_poll_queued.exchange(true)) return;
  asio::post(*api_pool, [this, dir, now_ms] {
    // A changed password or a registered device changes nobody's scope; anything else may (user.update,
    // user.handover, territory and partner changes).
    bool relevant = false;
    Result<std::vector<AuditRecord>> rows =
        dir->audit_trail(directory_audit_seen.load(), limits::kDirectoryPollRows);
    if (rows) {
      for (const AuditRecord& a : *rows) {
        directory_audit_seen = std::max(directory_audit_seen.load(), a.id);
        relevant = relevant || (a.action != "user.password" && a.action.rfind("device.", 0) != 0);
      }
    }
    if (relevant) service.refresh_principals([dir](const UserId& u) { return dir->principal(u); }, now_ms);
    directory_poll_queued = false;
  });
}

void NetServer::Impl::deliver(Outbound out) {
  if (io_stopped) return;
  std::shared_ptr<Connection> s;
  {
    MutexLock lock(registry_mu);
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
    asio::post(strand, [s = std::move(s), out = std::move(out)]() mutable { s->enqueue(std::move(out)); });
  }
}

void NetServer::Impl::do_accept() {
  Strand strand = asio::make_strand(ioc);
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
    std::make_shared<HttpSession>(*this, strand, std::move(socket), next_session.fetch_add(1))->run();
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
  m.tls->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                     ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 | ssl::context::single_dh_use);
  // TLS 1.2 minimum, AEAD suites only, no renegotiation: the policy the device shares (tls_policy.h).
  if (!fieldsync::net::apply_tls_policy(m.tls->native_handle()))
    return Status(ErrorCode::kInternal, "TLS: no AEAD cipher suite available");
  m.tls->use_certificate_chain(asio::buffer(m.options.cert_pem), ec);
  if (ec) return Status(ErrorCode::kInvalidArgument, "TLS certificate: " + ec.message());
  m.tls->use_private_key(asio::buffer(m.options.key_pem), ssl::context::pem, ec);
  if (ec) return Status(ErrorCode::kInvalidArgument, "TLS private key: " + ec.message());
  if (SSL_CTX_check_private_key(m.tls->native_handle()) != 1)
    return Status(ErrorCode::kInvalidArgument, "TLS private key does not match the certificate");

  asio::ip::address addr = asio::ip::make_address(m.options.address, ec);
  if (ec)
    return Status(ErrorCode::kInvalidArgument, "listen address '" + m.options.address + "': " + ec.message());
  tcp::endpoint endpoint(addr, m.options.port);
  m.acceptor.emplace(asio::make_strand(m.ioc));
  auto fail = [&](const char* what) {
    return Status(ErrorCode::kInternal, std::string(what) + " " + m.options.address + ":" +
                                            std::to_string(m.options.port) + ": " + ec.message());
  };
  if (m.acceptor->open(endpoint.protocol(), ec); ec) return fail("open");
  if (m.acceptor->set_option(asio::socket_base::reuse_address(true), ec); ec) return fail("reuse_address");
  if (m.acceptor->bind(endpoint, ec); ec) return fail("bind");
  if (m.acceptor->listen(limits::kListenBacklog, ec); ec) return fail("listen");
  uint16_t port = m.acceptor->local_endpoint().port();

  int n = m.options.threads > 0 ? m.options.threads : static_cast<int>(std::thread::hardware_concurrency());
  n = std::clamp(n, 1, limits::kMaxThreads);
  m.sweep_timer.emplace(m.acceptor->get_executor());
  asio::dispatch(m.acceptor->get_executor(), [&m] {
    m.do_accept();
    m.schedule_sweep();
  });
  m.started = true;
  if (m.options.login || m.options.directory) m.login_pool.emplace(limits::kLoginThreads);
  if (m.options.directory) m.api_pool.emplace(limits::kApiThreads);
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
  asio::post(m.acceptor->get_executor(), [&m] {
    boost::system::error_code ignored;
    m.acceptor->close(ignored);
    m.sweep_timer->cancel();
  });
  for (auto& s : m.connections()) {
    Strand strand = s->strand();
    asio::post(strand, [s] { s->request_close(); });
  }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(m.options.drain_timeout_ms);
  while (m.live_sessions.load() > 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  size_t left = m.live_sessions.load();
  if (left > 0) {  // peers that did not finish the closing handshake in time are cut off
    for (auto& s : m.connections()) {
      Strand strand = s->strand();
      asio::post(strand, [s] { s->cut("drain_timeout"); });
    }
    auto cut_deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(200);
    while (m.live_sessions.load() > 0 && std::chrono::steady_clock::now() < cut_deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  if (m.login_pool) m.login_pool->join();  // logins in flight finish; their answers go nowhere
  if (m.api_pool) m.api_pool->join();      // so do API requests
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

void NetServer::poll_external_commits() {
  impl_->service.poll_external_commits(wall_ms());
}

void NetServer::directory_changed(const std::string& payload) {
  Directory* dir = impl_->options.directory;
  if (dir == nullptr) return;
  SyncService& service = impl_->service;
  // The directory's word, not the payload's: only what is really revoked or disabled is cut.
  const auto check_node = [&](NodeId node) {
    Result<Device> d = dir->device(node);
    if (d && d->revoked)
      service.cut_node(node, ErrorCode::kDeviceRevoked, "this device was revoked; erase its local data");
  };
  const auto check_user = [&](const UserId& user) {
    Result<User> u = dir->user(user);
    if (u && u->disabled) service.cut_user(user, ErrorCode::kAuthFailed, "this user was disabled");
  };
  if (payload.rfind("device:", 0) == 0) {
    uint64_t node = 0;
    const char* first = payload.data() + 7;
    auto [end, ec] = std::from_chars(first, payload.data() + payload.size(), node);
    if (ec == std::errc() && end == payload.data() + payload.size() && end != first) check_node(node);
  } else if (payload.rfind("user:", 0) == 0) {
    check_user(payload.substr(5));
  } else {
    for (const SyncService::LiveDevice& d : service.live_devices()) {
      check_node(d.node);
      check_user(d.user);
    }
  }
}

size_t NetServer::session_count() const {
  return impl_->live_sessions.load();
}
uint64_t NetServer::overflow_closes() const {
  return impl_->overflow_closes.load();
}

}  // namespace fieldsync::server
