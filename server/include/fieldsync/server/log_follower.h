// Cross-instance fan-out on PostgreSQL (issue 20, "Several instances"): several fieldsync-server processes
// share one database, and a commit made through one must reach the live devices connected to the others.
//
// Each server holds one extra PostgreSQL connection that LISTENs on the channel `fieldsync_log`. After its
// own commits are durable (SyncService::Options::after_commit), the server sends one NOTIFY on that channel
// -- coalesced: however many commits happened since the last one, one NOTIFY, sent from the follower's
// thread, never from a thread the pushes wait on. fieldsync-admin sends one after each of its writes. A
// NOTIFY from anyone else wakes `on_commit` (the server calls SyncService::poll_external_commits), which
// reads the log from the last sequence that server fanned out up to the store's head_seq() and sends each
// live session its part. Because it only ever reads up to head_seq(), it obeys the store's sequence rule:
// a transaction that commits late with a lower server_seq is below the head the next time, never skipped.
//
// A notification is only a hint: the server also polls the head every second (kTokenExpirySweepMs), so a
// NOTIFY lost with a dropped connection delays a fan-out by at most that; after a reconnect on_commit runs
// once at once, for whatever was missed while the connection was down.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "fieldsync/sync/status.h"

namespace fieldsync::server {

inline constexpr const char* kLogChannel = "fieldsync_log";
// Directory changes that must reach live sessions on every instance (directory_db.h notify): the payload is
// "device:<node>" (revoked) or "user:<id>" (disabled).
inline constexpr const char* kDirectoryChannel = "fieldsync_directory";

class LogFollower {
 public:
  // Connects to `url` and LISTENs. `on_commit` runs on the follower's own thread; so does `on_directory`,
  // with each kDirectoryChannel payload (any sender: the instance that made the change also hears it, and
  // cutting a session twice is harmless), and with "*" after a reconnect (a revocation may have been missed:
  // check every live session). Errors: kStorageIo.
  static Result<std::unique_ptr<LogFollower>> start(
      const std::string& url, std::function<void()> on_commit,
      std::function<void(const std::string& payload)> on_directory = {});
  ~LogFollower();  // stops and joins the thread
  LogFollower(const LogFollower&) = delete;
  LogFollower& operator=(const LogFollower&) = delete;

  // This server committed: tell the others (one NOTIFY for every call since the last one). Any thread; never
  // blocks.
  void local_commit();

  // Notifications from other writers so far, and reconnects (for tests and metrics).
  uint64_t notifications() const { return notifications_.load(); }
  uint64_t reconnects() const { return reconnects_.load(); }

  struct Impl;

 private:
  explicit LogFollower(std::unique_ptr<Impl> impl);
  void take_notifications();  // the follower's thread: reads what libpq holds, wakes on_commit once
  std::unique_ptr<Impl> impl_;
  std::atomic<uint64_t> notifications_{0};
  std::atomic<uint64_t> reconnects_{0};
};

// One NOTIFY on kLogChannel from a short-lived connection (fieldsync-admin after a write).
Status notify_log(const std::string& url);

}  // namespace fieldsync::server
