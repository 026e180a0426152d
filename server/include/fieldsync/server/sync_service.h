// Thread-safe owner of a SyncServer that speaks frames: the network sessions (any io thread) hand it received
// WebSocket messages and it hands encoded frames to a Sink for whichever sessions they are for (the sender's
// answers and live fan-out to others). SyncServer is single-threaded, so one mutex serialises every event.
//
// Group commit. When the store's commits need a sync() to be durable (CentralStore::commits_need_sync, the
// SQLite store's group_commit), nothing SyncServer produces is released at once: frames queue in order, and a
// flusher thread takes everything queued so far, makes the store durable with one sync() -- while the next
// pushes are already being applied under the mutex -- and only then hands those frames to the sink. So every
// acknowledgement, pull answer and live batch leaves after the commits it may show are on disk, and one
// flush covers every push that arrived during the previous one. If a sync() fails, durability of those
// commits is unknown: the service fails stop (Options::on_fatal, default: log and abort), sending nothing it
// held; devices re-push after the restart and dedupe makes that exactly once. Without group commit every
// commit is durable when it returns and frames go to the sink at once, under the mutex.
//
// Either way the sink is called in the order SyncServer produced the messages, by one thread at a time,
// which keeps each session's frames in order; it must only queue (never block or call back into the
// service).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "fieldsync/server/metrics.h"
#include "fieldsync/sync/server.h"
#include "fieldsync/sync/thread_annotations.h"

namespace fieldsync::server {

using Frame = std::shared_ptr<const std::vector<uint8_t>>;

// What the service hands the transport for one session.
struct Outbound {
  SessionId session = 0;
  Frame frame;               // may be null: nothing to send
  bool close_after = false;  // close once everything queued so far is sent
  int64_t delay_ms = 0;      // hold this frame (and what follows for the session) back this long
};

class SyncService {
 public:
  using Sink = std::function<void(Outbound)>;

  struct Options {
    ServerConfig sync;
    // A refused handshake (wrong or expired token, revoked device) is answered this late, to slow guessing;
    // the session's other frames wait behind it.
    int64_t auth_failure_delay_ms = 1000;
    // One structured line per handshake, push batch and error ("event=... session=... key=value"). Null:
    // none.
    std::function<void(const std::string& line)> log;
    Metrics* metrics = nullptr;  // null: not recorded
    // Group commit only: a store sync() failed. Default: log and std::abort() (fail stop).
    std::function<void(const Status&)> on_fatal;
    // Called once per release of frames that follow a commit of this server (a push or an API write that
    // applied something), after that commit is durable: where several servers on one store tell each other
    // (LogFollower::local_commit). Must only queue: it may run under the service's lock.
    std::function<void()> after_commit;
  };

  SyncService(CentralStore& store, Authenticator& auth, Options options, Sink sink);
  ~SyncService();  // releases what is held (after a last sync) and joins the flusher

  void connect(SessionId session, int64_t now_ms);
  // One received binary message. A frame that does not decode goes to SyncServer::on_bad_frame (Error,
  // close). Returns true if it was a request the server asked for (SyncServer::on_message), which the
  // transport does not charge to the session's rate limit.
  bool frame(SessionId session, std::span<const uint8_t> bytes, int64_t now_ms);
  // A message the transport refused before decoding (text message, over the size limit): Error, then close.
  void bad_frame(SessionId session, const Status& status);
  void disconnect(SessionId session);
  // The transport's write queue for `session` backed up or drained (SyncServer::set_backlogged).
  void set_backlogged(SessionId session, bool backlogged);

  // A write of the head-office API, applied exactly like a device's push (SyncServer::apply_local: the same
  // rules, log, conflict detection and live fan-out) as `who` from node `node`, which the API owns alone: its
  // next node_seq is read under the service's lock, versions are stamped from the server's clock, and each
  // set's base is the field's current version (the web user saw what the page showed). `done` is called
  // once, from whichever thread makes the commit durable (group commit: the flusher after its sync(); else
  // at once): the result, or the store's failure (nothing applied).
  using WriteDone = std::function<void(Result<protocol::TxnResult>)>;
  void write(NodeId node, const Principal& who, std::vector<Change> changes, int64_t now_ms, WriteDone done);
  // Closes every live sync session of `user` (disabled) or of device `node` (revoked) at once with an Error
  // of `code` (kAuthFailed, kDeviceRevoked), so a disabled user or a revoked phone stops syncing now, not at
  // its next handshake.
  void cut_user(const UserId& user, ErrorCode code, const std::string& message);
  void cut_node(NodeId node, ErrorCode code, const std::string& message);
  // The directory changed (a territory granted or taken, a team, a role): every user with a live session
  // gets the Principal `lookup` gives now (SyncServer::update_principal: the records of what they gained
  // reach their devices without a reconnect). Users `lookup` fails for keep theirs. `lookup` runs without
  // the service's lock.
  void refresh_principals(const std::function<Result<Principal>(const UserId&)>& lookup, int64_t now_ms);

  // What the sync state machine knows of each live device session, for the API's sync health.
  struct LiveDevice {
    SessionId session = 0;
    UserId user;
    NodeId node = 0;
    uint32_t protocol_version = 1;
    int64_t connected_at_ms = 0;
    int64_t last_push_ms = 0;
    int64_t last_pull_ms = 0;     // any frame but a push after the handshake
    uint32_t schema_version = 0;  // the Hello's
    uint64_t cursor = 0;          // the Hello's, then the to_cursor of every batch sent to it
    // The Hello's app build; empty: the app sends none (built before Hello.app_version). In memory like the
    // rest of this activity: a device says it again at every connection, so nothing is worth a disk write.
    std::string app_version;
  };
  std::vector<LiveDevice> live_devices() const;
  // Per node, since the server started: last connection, push and pull times (kept after disconnects).
  std::map<NodeId, LiveDevice> device_activity() const;

  size_t session_count() const;  // sessions known to the sync state machine
  bool group_commit() const { return group_commit_; }

  // Tokens are checked at the handshake by the Authenticator; `expiry` says when an accepted token stops
  // being valid (nullopt: never), so a session outliving its token is closed with TokenExpired by expire().
  // Directory::verify_token provides it.
  using TokenExpiry = std::function<std::optional<int64_t>(const std::string& token)>;
  void set_token_expiry(TokenExpiry expiry);
  // Closes every session whose token has expired by `now_ms` (Error TokenExpired, then close). The network
  // server calls it periodically.
  void expire(int64_t now_ms);
  // Fans out commits made by other writers of the store (SyncServer::poll_external_commits). The network
  // server calls it once a second, so an admin's catalogue change reaches live devices within a second.
  void poll_external_commits(int64_t now_ms);

 private:
  using Clock = std::chrono::steady_clock;
  struct Held {
    Outbound out;
    // Group commit: the message, encoded into out.frame by the flusher after it lets go of mu_ (encoding
    // is a tenth of the server's work under load, and pushes wait for mu_).
    std::optional<protocol::Message> message;
    uint32_t protocol_version = 1;                   // the session's, for encoding `message`
    std::optional<Clock::time_point> push_received;  // a PushAck: when its push arrived
    std::string log_line;              // a PushAck: its log line, durable_ms appended at release
    std::function<void()> on_durable;  // an API write: answered once released (nothing sent to a session)
    bool committed = false;            // follows a commit of this server (Options::after_commit)
  };
  struct SessionInfo {
    UserId user;
    NodeId node = 0;
    // The session's protocol version, as its Welcome said (frames before it are handshake frames, which
    // are the v1 form at any version); every frame after the Welcome is encoded for it.
    uint32_t protocol_version = 1;
    int64_t connected_at_ms = 0;
    // The Hello's, kept for the device's activity once the Welcome goes out: a Hello that fails
    // authentication (someone else's node id, a bad token) leaves that node's sync health alone.
    std::string app_version;
    uint32_t schema_version = 0;
    uint64_t cursor = 0;
  };

  // Encodes what SyncServer produced for an event of session `from` and releases it (or queues it for the
  // flusher). `push`: the event was this push, received at `received`. mu_ held.
  void flush_locked(SessionId from, const protocol::PushTxns* push, Clock::time_point received) REQUIRES(mu_);
  void emit_locked(Held h) REQUIRES(mu_);
  // Serves what `session` is owed of a multi-page bootstrap request (SyncServer::continue_bootstrap), one
  // page per hold of mu_.
  void continue_bootstrap(SessionId session, int64_t now_ms) EXCLUDES(mu_);
  void release(std::vector<Held>& batch);  // to the sink, in order; records latency and logs
  // Waits on held_cv_ with a std::unique_lock over mu_.native() and lets go of the lock around each sync():
  // a pattern the analysis cannot follow, so this one function is checked by review (what it touches
  // unlocked is its own `batch` and the store).
  void flusher() NO_THREAD_SAFETY_ANALYSIS;
  void log(const std::string& line) const;
  void count(Counter c, uint64_t n = 1, std::string_view label = {}) const;

  CentralStore& store_;
  Options options_;
  const bool group_commit_;
  Sink sink_;

  mutable Mutex mu_;
  SyncServer server_ GUARDED_BY(mu_);
  TokenExpiry token_expiry_ GUARDED_BY(mu_);
  std::map<SessionId, int64_t> expiry_ms_ GUARDED_BY(mu_);  // sessions whose token expires
  std::map<SessionId, SessionInfo> info_ GUARDED_BY(mu_);   // who each session is, for logs
  std::map<NodeId, LiveDevice> activity_ GUARDED_BY(mu_);   // per node: last connection, push, pull
  std::vector<Held> held_ GUARDED_BY(mu_);                  // group commit, waiting for the next sync()
  bool stopping_ GUARDED_BY(mu_) = false;
  std::condition_variable held_cv_;  // held_ gained frames, or stopping_
  std::thread flusher_;              // group commit only
};

// TEMPORARY development authenticator until the Directory (server/include/fieldsync/server/directory.h) with
// signed device tokens is wired in. Accepts tokens of the form `dev:USER:ROLE:TERRITORY[,TERRITORY...]` where
// ROLE is rep, manager or head_office; anyone who can reach the server can claim any identity. Only
// fieldsync-server --dev-tokens and the tests use it.
class DevAuthenticator final : public Authenticator {
 public:
  Result<Principal> authenticate(const protocol::Hello& hello, int64_t now_ms) override;
  static std::string token(const std::string& user, const std::string& role, const std::string& territories);
};

}  // namespace fieldsync::server
