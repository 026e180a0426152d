// The network server's shared state (NetServer::Impl) and what its three parts hand each other. Internal to
// server/src. The parts, in Beast's chat-multi shape:
//   listener.cc      NetServer: TLS context, acceptor, io threads, the session registry, drain (stop()).
//   http_session.cc  HttpSession: TLS handshake, reads one request, dispatches it through the RouteTable.
//   routes.cc        RouteTable and the routes: POST /login, GET /metrics, GET /healthz, GET /sync (upgrade).
//   api*.cc          the head-office API under /api/v1/ (api.h): web sessions, reads, writes, feed.
//   ws_session.cc    WsSession: the WebSocket on /sync, its bounded write queue, rate limit, close.
// Only ws_session.cc instantiates Beast's WebSocket templates and only http_session.cc its HTTP reads and
// writes; both run over fieldsync::net::TlsStream, whose TLS machinery is compiled once (DESIGN.md §13).
#pragma once

#include <atomic>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "fieldsync/server/metrics.h"
#include "fieldsync/server/net_server.h"
#include "fieldsync/server/sync_service.h"
#include "fieldsync/sync/thread_annotations.h"
#include "routes.h"

namespace fieldsync::server {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using Strand = asio::strand<asio::io_context::executor_type>;

std::string endpoint_string(const tcp::socket& s);
bool is_loopback(const asio::ip::address& a);

// One connection in the registry, at whatever stage (HTTP or WebSocket): what the listener's drain and the
// service's sink need of it. Every call but strand() runs on that strand.
class Connection {
 public:
  virtual ~Connection() = default;
  virtual Strand& strand() = 0;
  virtual void enqueue(Outbound out) = 0;  // a frame of the sync protocol (HTTP stage: dropped)
  virtual void request_close() = 0;        // drain: a close frame (going away) once the queue is sent
  virtual void cut(const std::string& reason) = 0;  // closes the socket at once
};

// A connection's place in the server from accept to the last session serving it: counted in
// session_count(), found in the registry, logged (and, once it was a WebSocket, counted) when it goes. The
// HTTP session hands it to the WebSocket session on upgrade.
class ConnectionSlot {
 public:
  ConnectionSlot(NetServer::Impl& impl, SessionId id, std::string peer);
  ~ConnectionSlot();
  ConnectionSlot(const ConnectionSlot&) = delete;
  ConnectionSlot& operator=(const ConnectionSlot&) = delete;
  void attach(std::weak_ptr<Connection> c);  // the registry finds `c` under this id

  NetServer::Impl& impl;
  const SessionId id;
  const std::string peer;
  std::string reason;      // why it closed (first reason wins)
  bool websocket = false;  // the WebSocket opening handshake finished
};

// Logins that failed per client address in a sliding window (limits::kLoginFailuresPerWindow per
// kLoginWindowMs). An attempt counts as a failure from the moment it arrives (begin) and is taken back only
// when it succeeds: counted when answered, thirty wrong passwords sent at once all reached the password
// check, since none had failed yet when the next arrived.
class LoginThrottle {
 public:
  bool begin(const std::string& address, int64_t now_ms);  // false (nothing recorded): over the limit
  void succeeded(const std::string& address, int64_t began_ms);

 private:
  Mutex mu_;
  std::map<std::string, std::deque<int64_t>> failures_ GUARDED_BY(mu_);
};

struct ApiState;  // api.cc

struct NetServer::Impl {
  Impl(CentralStore& store, Authenticator& auth, NetServerOptions o);

  void log(const std::string& line);
  void deliver(Outbound out);
  void do_accept();
  void schedule_sweep();
  // Every sweep: new rows in the directory's audit trail (the API's and fieldsync-admin's changes, from any
  // process) make the live sessions' principals be looked up again (SyncService::refresh_principals), on an
  // API worker thread.
  void poll_directory(int64_t now_ms);
  std::atomic<int64_t> directory_audit_seen{0};
  std::atomic<bool> directory_poll_queued{false};
  void on_accept(Strand strand, boost::system::error_code ec, tcp::socket socket);
  std::vector<std::shared_ptr<Connection>> connections();

  CentralStore& store;
  NetServerOptions options;
  Metrics metrics;
  Mutex log_mu;  // one log line at a time
  RouteTable routes;

  Mutex registry_mu;  // never held while calling into a session
  std::map<SessionId, std::weak_ptr<Connection>> registry GUARDED_BY(registry_mu);
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
  std::optional<asio::thread_pool> login_pool;

  // The head-office API (options.directory set): its state, and the threads its store work runs on.
  std::shared_ptr<ApiState> api;
  std::atomic<size_t> api_queued{0};
  std::optional<asio::thread_pool> api_pool;

  // Declared last: destroyed first, so handlers it still holds (and the sessions they own) are destroyed
  // while the service and the registry are alive.
  std::optional<asio::ssl::context> tls;
  asio::io_context ioc;
  std::optional<tcp::acceptor> acceptor;
  std::optional<asio::steady_timer> sweep_timer;  // runs on the acceptor's strand
};

}  // namespace fieldsync::server
