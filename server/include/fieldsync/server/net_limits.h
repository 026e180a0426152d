// Every limit and timeout of the network server (listener, TLS, WebSocket sessions), in one place. Each says
// why it has its value. Protocol limits (message size, batch sizes) live in
// sync/include/fieldsync/sync/tuning.h.
#pragma once

#include <cstddef>
#include <cstdint>

#include "fieldsync/sync/tuning.h"

namespace fieldsync::server::limits {

// --- Connections
// Sessions served at once; a connection beyond this is closed right after accept. 20,000 is twice the 10,000
// idle sessions the server is sized for (issue 4) and keeps a burst of reconnecting phones from exhausting
// file descriptors or memory (each idle TLS WebSocket session costs ~50-70 KiB).
inline constexpr size_t kDefaultMaxSessions = 20'000;
// Pending connections in the kernel's accept queue: a fleet reconnecting after an outage arrives in bursts.
inline constexpr int kListenBacklog = 1024;

// --- Timeouts
// TCP accept to finished TLS handshake. A phone on 2G needs a few round trips of ~1 s; 15 s is generous for
// that and short enough that half-open connections (slowloris) do not pile up.
inline constexpr int64_t kTlsHandshakeTimeoutMs = 15'000;
// Finished TLS to a complete HTTP upgrade request (and the WebSocket opening and closing handshakes). The
// request is a few hundred bytes: one round trip.
inline constexpr int64_t kWsHandshakeTimeoutMs = 15'000;
// A session from which nothing (not even a pong) arrives for this long is dead and closed. Beast sends a ping
// after half of it, so a live but silent phone (waiting for live changes) stays connected and a vanished one
// (tunnel, battery) is noticed within 60 s. Mobile NATs commonly drop idle mappings after 30-120 s, so the
// 30 s ping also keeps the mapping open.
inline constexpr int64_t kIdleTimeoutMs = 60'000;
// On stop (SIGTERM) sessions get this long to receive their pending acks and answer the close frame before
// the io threads are stopped. Shorter than the 30 s systemd and Kubernetes wait before SIGKILL.
inline constexpr int64_t kDrainTimeoutMs = 10'000;

// How often sessions are checked for an expired device token. Tokens live for hours; a second of slack is
// nothing, and one timer for all sessions costs nothing either.
inline constexpr int64_t kTokenExpirySweepMs = 1000;
// The same sweep reads the directory's audit trail for changes to what users see (NetServer::Impl::
// poll_directory): at most this many new rows a second, so a server starting on a long trail reads it in
// small steps instead of all at once.
inline constexpr size_t kDirectoryPollRows = 1000;

// --- Per-session buffers
// Largest WebSocket message read; anything bigger is answered with Error kMessageTooLarge and the session is
// closed. Messages are read in pieces of kReadChunkBytes, so at most one piece more than the limit is ever
// buffered.
inline constexpr size_t kReadMessageMax = tuning::kMaxMessageBytes;
inline constexpr size_t kReadChunkBytes = 64 * 1024;
// Bounded write queue: a phone that does not read (slow link, stuck app) cannot make the server hold more
// than this for it; past either cap the session is closed and the phone resumes by pulling from its cursor
// when it reconnects. Two maximum-size messages in bytes, and enough frames for a push ack plus
// tuning::kMaxPendingLiveBatches live batches several times over.
inline constexpr size_t kMaxQueuedBytes = 2 * tuning::kMaxMessageBytes;
inline constexpr size_t kMaxQueuedFrames = 64;
// Messages a session may send: a token bucket of kSessionMessageBurst refilled at kSessionMessagesPerSecond.
// A real device has at most one push and one pull in flight and pages a bootstrap one request at a time, so
// its rate is bounded by the server's answers -- but on a fast link that is high: a head office on the LAN
// bootstrapping 140,000 records asks for ~100 pages a second (50/s closed such a session in the load
// benchmark). A peer that floods faster is answered with Error kRateLimited (retryable) and closed, and its
// device reconnects with backoff. Requests the server asked for (the pull after a batch with has_more, the
// next bootstrap page: SyncServer::on_message) get their token back, so a catch-up is never cut by its own
// pace; repeating a request does not count as one the server asked for.
inline constexpr double kSessionMessagesPerSecond = 400;
inline constexpr double kSessionMessageBurst = 800;
// HTTP upgrade request: headers only, no body. 8 KiB is what common proxies allow for headers.
inline constexpr size_t kMaxUpgradeRequestBytes = 8 * 1024;

// --- Authentication and login
// A refused sync handshake (bad or expired token, revoked device) and a failed POST /login are answered this
// late: an attacker guessing passwords or tokens gets one try per second per connection, a person who
// mistyped waits a second.
inline constexpr int64_t kAuthFailureDelayMs = 1000;
inline constexpr int64_t kLoginFailureDelayMs = 1000;
// Failed logins per client address within kLoginWindowMs before that address gets 429 until the window
// passes. Twenty covers a depot of reps behind one NAT mistyping on a Monday morning.
inline constexpr size_t kLoginFailuresPerWindow = 20;
inline constexpr int64_t kLoginWindowMs = 60'000;
// Addresses remembered by that throttle; past it the oldest are forgotten (bounded memory under a spray of
// addresses).
inline constexpr size_t kLoginThrottleAddresses = 10'000;
// PBKDF2 at 210,000 iterations costs ~0.1-0.2 s of one core: logins run on their own threads so they never
// stall sync sessions, and at most this many wait; more get 503 with Retry-After.
inline constexpr int kLoginThreads = 2;
inline constexpr size_t kMaxLoginsQueued = 64;
// A login request body ({"user","password","node"}) is tiny; anything bigger is refused.
inline constexpr size_t kMaxHttpBodyBytes = 4096;

// --- Head-office API (/api/v1/)
// Store reads and writes of the API run on their own threads (the KDF of a web sign-in on the login
// threads), never on io threads; at most this many requests wait, more get 503 with Retry-After.
inline constexpr int kApiThreads = 2;
inline constexpr size_t kMaxApiQueued = 256;
// A JSON request body: the biggest legitimate one is a bulk reassignment of a few thousand account ids.
inline constexpr size_t kMaxApiBodyBytes = 256 * 1024;
// Web sessions: a working day at most, and half an hour without a request ends one. In memory: a server
// restart signs everyone out.
inline constexpr int64_t kWebSessionTtlMs = 8LL * 60 * 60 * 1000;
inline constexpr int64_t kWebSessionIdleMs = 30LL * 60 * 1000;
inline constexpr size_t kMaxWebSessions = 10'000;  // past it the oldest session goes
// Lists: one page of at most this many items (default kApiDefaultPage).
inline constexpr size_t kApiMaxPage = 500;
inline constexpr size_t kApiDefaultPage = 50;
// A record's history reads its scope's part of the log in steps of this many changes, up to kApiMaxHistory
// entries for the record.
inline constexpr size_t kApiHistoryStep = 4000;
inline constexpr size_t kApiMaxHistory = 2000;
// Server-Sent Events: the log is polled this often while nothing is new, and a comment line keeps proxies
// from closing an idle stream.
inline constexpr int64_t kSsePollMs = 200;
inline constexpr int64_t kSseKeepAliveMs = 15'000;
// A bulk reassignment or handover is split into transactions of at most this many changes (the protocol's
// per-transaction cap is 2,000).
inline constexpr size_t kApiChangesPerTxn = 1000;

// --- Threads
// io threads when --threads is not given: one per core is what an Asio pool wants; the store serialises
// commits.
inline constexpr int kDefaultThreads = 0;  // 0: std::thread::hardware_concurrency()
inline constexpr int kMaxThreads = 256;

}  // namespace fieldsync::server::limits
