// The TLS WebSocket transport of a device: drives a SyncEngine over wss://host:port/sync on its own thread,
// reconnecting by itself with exponential backoff and jitter until stopped or until the engine stops (a
// non-retryable error: auth, revoked device, protocol). No Asio types here; see ws_client.cc.
//
// Trust: the server certificate is verified by default against the system CA store (or `ca_file`), with host
// name (or IP) verification; TLS 1.2 is the minimum. `pin_sha256` pins the server certificate itself: its
// SHA-256 must match, and chain verification is then skipped unless `ca_file` is also given (a pinned
// self-signed server certificate is what many field apps ship with).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "fieldsync/client/sync_engine.h"

namespace fieldsync::client {

// Transport-level outcomes, apart from the protocol's ErrorCode (which the SyncEngine reports as events).
enum class WsError : uint8_t {
  kNone = 0,
  kBadUrl = 1,        // not wss://host[:port][/path] (url or one of fallback_urls)
  kResolve = 2,       // host name lookup failed
  kConnect = 3,       // TCP connect failed (refused, unreachable)
  kTlsHandshake = 4,  // TLS failed for a reason other than the certificate (version, cipher, reset)
  kCertificate = 5,   // the server certificate did not verify (chain, expiry, host name); message says why
  kPinMismatch = 6,   // the server certificate's SHA-256 is not the pinned one
  kUpgrade = 7,       // the WebSocket upgrade was refused (wrong path, not a fieldsync server)
  kTimeout = 8,       // a connection stage or sync_once() ran out of time
  kClosed = 9,        // the connection closed or broke after it was established
  kStopped = 10,      // the SyncEngine stopped (non-retryable protocol error, see SyncEngine::stop_reason)
  kInvalidArgument = 11,
};
std::string_view to_string(WsError e);

struct WsStatus {
  WsError code = WsError::kNone;
  std::string message;
  uint16_t close_code = 0;  // kClosed: the WebSocket close code the server sent, if any
  bool ok() const { return code == WsError::kNone; }
  std::string to_string() const;
};

struct WsClientOptions {
  std::string url;  // wss://host[:port]/sync (port 443 by default)
  // Other instances of the same service (several fieldsync-server processes on one PostgreSQL database):
  // when a connection fails or an established one ends, the next attempt goes to the next URL in the list
  // url, fallback_urls[0], ... (round robin), after the usual backoff. Every instance accepts the same token
  // and ca_file / pin_sha256 apply to all; the device resumes from its cursor and re-sends its unacknowledged
  // transactions, which the instances' shared dedupe answers exactly once. login() uses `url` only.
  std::vector<std::string> fallback_urls;
  std::string ca_file;                  // PEM bundle to trust instead of the system store
  std::string pin_sha256;               // hex SHA-256 of the server certificate (DER); ':' separators allowed
  int64_t tick_interval_ms = 1000;      // SyncEngine::tick period (re-sends, idle pulls)
  int64_t connect_timeout_ms = 15'000;  // resolve + TCP + TLS + upgrade, and the closing handshake
  int64_t idle_timeout_ms = 60'000;     // nothing heard for this long (pings go out after half): reconnect
  int64_t reconnect_cap_ms = 0;         // caps fieldsync::Backoff's delay (tests); 0: Backoff's own cap
  uint64_t backoff_seed = 0;            // 0: random
  // Called on the transport thread after each received frame was handed to the engine and when the
  // connection opens or closes: where FieldClient::dispatch_events() goes, so observers see sync progress.
  // Must not call back into the WsClient (stop(), sync_once()).
  std::function<void()> after_frame;
  std::function<void(bool connected)> on_connection;
};

// What a WsClient has carried since it was made, over every connection: sync protocol messages and their
// bytes (WebSocket message payloads; TLS and WebSocket framing not included). For progress displays.
struct WsCounters {
  uint64_t messages_sent = 0;
  uint64_t bytes_sent = 0;
  uint64_t messages_received = 0;
  uint64_t bytes_received = 0;
};

class WsClient {
 public:
  // `engine` must outlive the client.
  WsClient(SyncEngine& engine, WsClientOptions options);
  ~WsClient();  // stop()s
  WsClient(const WsClient&) = delete;
  WsClient& operator=(const WsClient&) = delete;

  // Starts the transport thread: connect, sync, stay connected for live changes, reconnect with backoff.
  // Errors: kBadUrl, kInvalidArgument (unreadable CA file, bad pin) — nothing started.
  WsStatus start();
  // Closes the connection with a close frame (bounded by connect_timeout_ms) and joins the thread.
  void stop();
  bool running() const;
  bool connected() const;       // WebSocket open (the handshake may still be in progress)
  WsStatus last_error() const;  // the latest transport error, kept until the next one
  // The URL of the connection being made or open (url or one of fallback_urls). Any thread.
  std::string current_url() const;
  WsCounters counters() const;  // any thread

  // For CLIs and tests: connects, waits until the engine is idle (outbox pushed, caught up) or `timeout`, and
  // disconnects. Gives up early on certificate errors and when the engine stops. Must not be running.
  WsStatus sync_once(std::chrono::milliseconds timeout);

  // Waits until `done()` holds (checked after every transport event and frame) or `timeout`. True if it held.
  bool wait_until(const std::function<bool()>& done, std::chrono::milliseconds timeout);

  struct Impl;  // opaque (ws_client.cc)

 private:
  std::unique_ptr<Impl> impl_;
};

// POST /login on the sync server: exchanges a user's password for a token bound to this device (`node`,
// registered by head office). Same host, port and trust options (ca_file, pin_sha256) as the sync URL in
// `options.url`. Blocking, bounded by connect_timeout_ms for the connection and again for the answer.
struct LoginReply {
  WsStatus transport;  // not ok: no HTTP answer came (connect, TLS, certificate, pin, timeout)
  // The server's answer: ok; kAuthFailed (user, password or device wrong: the server never says which);
  // kRateLimited (retryable: too many failures from this address, or the server is busy; see
  // retry_after_s); kInvalidArgument (the server refused the request's form); kInternal (anything else).
  Status status;
  std::string token;
  int64_t expires_at_ms = 0;
  int64_t retry_after_s = 0;
  bool ok() const { return transport.ok() && status.is_ok(); }
  std::string to_string() const;
};
LoginReply login(const WsClientOptions& options, const std::string& user, const std::string& password,
                 NodeId node);

// A bare TLS WebSocket peer with no SyncEngine behind it: sends hand-made (even broken) binary messages and
// reads what comes back. For tests and for poking at a server while debugging. Blocking, every call bounded.
class WsRawPeer {
 public:
  explicit WsRawPeer(WsClientOptions options);  // url, ca_file, pin_sha256, connect_timeout_ms
  ~WsRawPeer();
  WsRawPeer(const WsRawPeer&) = delete;
  WsRawPeer& operator=(const WsRawPeer&) = delete;

  WsStatus connect();
  WsStatus send(std::span<const uint8_t> message, std::chrono::milliseconds timeout, bool binary = true);
  // One message, or kClosed (with close_code) when the server closed the connection, or kTimeout.
  WsStatus receive(std::vector<uint8_t>& message, std::chrono::milliseconds timeout);

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace fieldsync::client
