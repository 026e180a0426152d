// The sync server's network side: a TLS WebSocket listener on an Asio thread pool, one session per connection
// with its own strand and bounded write queue, driving a SyncService (the thread-safe SyncServer owner).
//
// Endpoints on the one TLS port:
//   GET /sync      WebSocket upgrade: the sync protocol (docs/protocol.md).
//   POST /login    {"user", "password", "node"} -> 200 {"token", "expires_at_ms"}; 401 {"error":
//                  "auth_failed"} after a delay; 429 when one address failed too often; 503 when busy.
//   GET /metrics   Prometheus text format (metrics.h); loopback only unless metrics_token is set.
//   GET /healthz   200 "ok", or 503 "draining" once stop() began (for load balancers).
// Every path answers only its methods (405 with Allow otherwise, 404 for an unknown path).
// Shape of Beast's chat-multi example (server/src/net_impl.h has the map): a listener (listener.cc), an HTTP
// session per connection that dispatches through a route table (http_session.cc, routes.cc), a WebSocket
// session for /sync (ws_session.cc), shared state (the session registry). No Asio types in this header.
//
// Threads: `threads` io threads run one io_context. Each session's handlers run on its strand, so a session
// is single-threaded; different sessions run in parallel up to the SyncService mutex, which serialises the
// sync state machine and the store. Frames for a session produced on another session's thread (live fan-out)
// are posted to its strand; the registry holds weak_ptrs and its lock is held only to find the session.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "fieldsync/server/net_limits.h"
#include "fieldsync/sync/server.h"

namespace fieldsync::server {

// What POST /login answers on success.
struct LoginGrant {
  std::string token;
  int64_t expires_at_ms = 0;
};
// Checks a password for a registered device and issues a token (Directory::login). Every failure is one
// kAuthFailed; the server answers it after limits::kLoginFailureDelayMs. Runs on a login thread, never on an
// io thread (a slow KDF would stall every session on it).
using LoginHandler = std::function<Result<LoginGrant>(const std::string& user, const std::string& password,
                                                      NodeId node, int64_t now_ms)>;

class Directory;

struct NetServerOptions {
  std::string address = "0.0.0.0";  // IPv4 or IPv6 literal to listen on
  uint16_t port = 8443;             // 0: an ephemeral port (tests); start() returns the one bound
  int threads = 0;                  // io threads; 0: hardware concurrency
  std::string cert_pem;             // certificate chain, PEM (leaf first)
  std::string key_pem;              // its private key, PEM
  size_t max_sessions = limits::kDefaultMaxSessions;
  int64_t tls_handshake_timeout_ms = limits::kTlsHandshakeTimeoutMs;
  int64_t ws_handshake_timeout_ms = limits::kWsHandshakeTimeoutMs;
  int64_t idle_timeout_ms = limits::kIdleTimeoutMs;
  int64_t drain_timeout_ms = limits::kDrainTimeoutMs;
  size_t max_queued_bytes = limits::kMaxQueuedBytes;
  size_t max_queued_frames = limits::kMaxQueuedFrames;
  double session_messages_per_second = limits::kSessionMessagesPerSecond;  // token bucket per session
  double session_message_burst = limits::kSessionMessageBurst;
  ServerConfig sync;
  // One structured line per connection event, handshake, push batch and error ("event=... session=...
  // key=value"). Null: stderr.
  std::function<void(const std::string& line)> log;
  // POST /login; null: no login endpoint (404).
  LoginHandler login;
  // GET /metrics: with a token, any peer presenting `Authorization: Bearer <token>`; without, loopback only.
  std::string metrics_token;
  int64_t auth_failure_delay_ms = limits::kAuthFailureDelayMs;
  int64_t login_failure_delay_ms = limits::kLoginFailureDelayMs;
  // The head-office API under /api/v1/ (docs/API.md): web sessions, the directory's users and devices, reads
  // of the central store at `store_path` (its own read-only connections: the SQLite file, or a postgresql://
  // URL) and writes through the service like a device's. Null: no API (404). The reports, their settings and
  // the CSV exports run on either engine (reports.h over sql_reader.h).
  Directory* directory = nullptr;
  std::string store_path;
  int64_t web_session_ttl_ms = limits::kWebSessionTtlMs;
  int64_t web_session_idle_ms = limits::kWebSessionIdleMs;
  // Group commit only: a store sync() failed. Default: log and abort (SyncService::Options::on_fatal).
  std::function<void(const Status&)> on_fatal;
  // After this server's commits are durable (SyncService::Options::after_commit): several servers on one
  // PostgreSQL store tell each other through it (LogFollower). Must only queue.
  std::function<void()> after_commit;
};

class Metrics;

class NetServer {
 public:
  NetServer(CentralStore& store, Authenticator& auth, NetServerOptions options);
  ~NetServer();  // stop()s if still running
  NetServer(const NetServer&) = delete;
  NetServer& operator=(const NetServer&) = delete;

  // Loads the TLS material, binds, listens and starts the io threads. Returns the bound port.
  // Errors: kInvalidArgument (bad certificate, key or address), kInternal (bind/listen failed: message says).
  Result<uint16_t> start();
  // Graceful drain: stops accepting, lets frames being processed finish and their answers be sent, closes
  // every session with a close frame (going away), waits up to drain_timeout_ms, then stops the threads.
  void stop();

  // Closes sessions whose device token expires (checked every limits::kTokenExpirySweepMs). Before start().
  void set_token_expiry(std::function<std::optional<int64_t>(const std::string& token)> expiry);

  // The server's metrics (GET /metrics): register gauges of other objects (store size) before start().
  Metrics& metrics();

  // Fans out commits another writer of the store made (SyncService::poll_external_commits): a LogFollower's
  // notification. Also runs once a second by itself. Any thread, after start().
  void poll_external_commits();
  // A LogFollower's directory notification (log_follower.h kDirectoryChannel) from another instance:
  // "device:<node>" or "user:<id>" -- a live session of a device the directory now says is revoked, or of a
  // user it says is disabled, is closed at once, as if the change had been made here; "*" checks every live
  // session. Any thread, after start().
  void directory_changed(const std::string& payload);

  size_t session_count() const;  // connections currently open (any stage)
  // Cumulative count of sessions closed because their write queue overflowed (a peer that does not read).
  uint64_t overflow_closes() const;

  struct Impl;  // opaque (server/src/net_impl.h)

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace fieldsync::server
