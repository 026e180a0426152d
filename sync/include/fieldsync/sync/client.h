// The device side of the sync protocol as a sans-IO state machine: it takes decoded messages, local writes
// and the time, and produces messages to send and events for the app. The transport (Beast WebSocket in
// client-core, the simulator's network in tests) and the store are supplied by the caller.
//
// Durability contract: write() commits the local change and its outbox entry in one store transaction; an
// outbox entry is removed only when a PushAck says the server applied, rejected or already had it; the cursor
// advances only in the same store transaction that applied the batch.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <vector>

#include "fieldsync/sync/hlc.h"
#include "fieldsync/sync/merge.h"
#include "fieldsync/sync/protocol.h"
#include "fieldsync/sync/store.h"

namespace fieldsync {

struct ClientConfig {
  UserId user;  // the signed-in user; stamped on local writes exactly as the server will stamp them
  std::string token;
  uint32_t pull_max_changes = 0;     // 0: server default
  uint32_t bootstrap_page_size = 0;  // 0: server default
  // The protocol version the device offers in its Hello (protocol.h); the session's is what the Welcome
  // answers. Only tests set less than the newest, to drive the exchange an old device speaks.
  uint32_t protocol_version = protocol::kProtocolVersion;
  // Transactions per push, at most the session's limit (0: the limit). The simulator pushes small ones so
  // that several are in flight with its few hundred records.
  uint32_t push_max_txns = 0;
  // Sent in every Hello for head office's sync health ("2.4.1 (317)"); empty: none. At most
  // tuning::kMaxAppVersionBytes of printable ASCII, else the server refuses the handshake.
  std::string app_version;
  // The signed-in user's role, for the domain rules write() checks before storing (check_domain_rules: a rep
  // takes only an unassigned case); the server judges with the role it knows.
  schema::Role role = schema::Role::kRep;
  MergeChangeFn merge_change = &fieldsync::merge_change;  // merge.h
  // The model version this library speaks (projection.h): the newest, or an older one to behave exactly as
  // that version's app -- its Hello, its writes (nothing newer), what it accepts from the server. Tests and
  // the simulator use it for devices still on an old app. A replica synced at an older version is
  // backfilled with what the newer one added at the next sync (ReplicaMeta::schema_version).
  uint32_t schema_version = schema::kSchemaVersion;
};

// Something the app may want to know about; client-core turns these into observer callbacks.
struct ClientEvent {
  enum class Kind : uint8_t {
    kRecordsChanged = 1,     // records: keys changed by sync (not by the app's own writes)
    kConflict = 2,           // conflict concerns this user
    kRejected = 3,           // one of this device's transactions was rolled back; rejection says why
    kBootstrapProgress = 4,  // done / total records
    kSynced = 5,             // outbox empty and caught up with the server
    kError = 6,              // session error from the server or local storage; status says which
    kMustErase = 7,          // device revoked: the app must erase the replica
    // Outbox entries acknowledged (done) of those pending when the current push run started plus those
    // written since (total); a run ends when the outbox empties.
    kPushProgress = 8,
  };
  Kind kind;
  std::vector<RecordKey> records;
  std::optional<ConflictRecord> conflict;
  std::optional<Rejection> rejection;
  uint64_t done = 0;
  uint64_t total = 0;
  Status status;
};

class SyncClient {
 public:
  enum class State : uint8_t {
    kDisconnected = 0,
    kHandshaking = 1,    // Hello sent, waiting for Welcome
    kBootstrapping = 2,  // paging the initial snapshot
    kSyncing = 3,        // pushing and pulling; live once caught up
    kStopped = 4,        // a non-retryable error (auth, revoked, protocol); reconnecting will not help
  };

  // Opens the state machine over an existing replica (the node id and HLC come from the store's meta).
  SyncClient(ReplicaStore& store, ClientConfig config);

  // A local write: `changes` carry op, entity, record, field and value; write() fills in node, versions,
  // bases and the delete's seen list, validates each change against the model, applies them to the replica
  // and appends the transaction to the outbox, all in one store transaction. Returns the transaction's
  // node_seq.
  Result<uint64_t> write(std::vector<Change> changes, int64_t now_ms);

  void on_connected(int64_t now_ms);
  void on_disconnected(int64_t now_ms);
  void on_message(const protocol::Message& message, int64_t now_ms);
  // Timers: re-sends a push or pull whose answer is overdue, and pulls periodically while idle.
  void on_tick(int64_t now_ms);

  std::vector<protocol::Message> take_outgoing();
  std::vector<ClientEvent> take_events();

  State state() const { return state_; }
  bool connected() const { return state_ != State::kDisconnected && state_ != State::kStopped; }
  const Status& stop_reason() const { return stop_reason_; }
  Hlc hlc() const { return clock_.last(); }
  NodeId node() const { return node_; }
  // True when the outbox is empty, nothing is in flight and the last pull said there was nothing more.
  bool idle() const;
  // The session's protocol version (the Welcome's); until a Welcome arrives, the one the Hello offers. The
  // transport encodes every frame after the handshake for it.
  uint32_t protocol_version() const { return session_version_; }
  // The server refused this device's schema version (kUnsupportedSchema: the app is newer than the server,
  // during a server upgrade). The device keeps working offline; the transport should not connect again
  // before this time (tuning::kServerTooOldRetryMs after the refusal), 0 if no such wait. Cleared by a
  // Welcome.
  int64_t reconnect_not_before_ms() const { return reconnect_not_before_ms_; }
  // A backfill (the replica was synced at an older schema version) is running or due at the next sync.
  bool backfilling() const { return backfill_from_ != 0; }
  // Pushes sent and not yet answered (at most tuning::kMaxPushesInFlight, 1 in a version 1 session).
  size_t pushes_in_flight() const { return pushes_.size(); }

 private:
  void send(protocol::Message m) { outgoing_.push_back(std::move(m)); }
  void maybe_push(int64_t now_ms);
  // Forgets every push in flight: the next maybe_push sends again from the oldest outbox entry (after a
  // timeout, a SequenceGap, a push answered only in part, a reconnect). Answers to them that still arrive
  // are applied for what they acknowledge and otherwise ignored.
  void drop_pushes();
  void send_pull(int64_t now_ms);
  // The next run of bootstrap pages: from the replica's durable position, or (`after`, version 2) from the
  // page that just arrived, before it is applied.
  void send_bootstrap_request(int64_t now_ms, const protocol::BootstrapPage* after = nullptr);
  void handle(const protocol::Welcome& m, int64_t now_ms);
  void handle(const protocol::PushAck& m, int64_t now_ms);
  void handle(const protocol::ChangeBatch& m, int64_t now_ms);
  void handle(const protocol::BootstrapPage& m, int64_t now_ms);
  void handle(const protocol::Error& m, int64_t now_ms);
  // The replica refused a commit. Nothing was applied; the request whose answer could not be stored is asked
  // for again after kRequestTimeoutMs (not at once: a full disk would make that a tight loop).
  enum class Retry : uint8_t { kNothing, kPull, kPush };
  void fail_storage(const Status& s, Retry retry, int64_t now_ms);
  void stop(Status reason);
  // Undoes a rejected transaction: each record it touched becomes the server's state (from the ack) merged
  // with whatever the replica knows that did not come from the rejected transaction (the replica may already
  // be newer than the ack's snapshot), then the transactions still in the outbox are replayed on top.
  void rebase(ReplicaTxn& txn, const ClientTxn& rejected, const protocol::TxnResult& result);
  void save_clock(ReplicaTxn& txn);
  // Re-applies the outbox's pending changes to `records` (server state being installed), oldest first.
  void replay_pending(ReplicaTxn& txn, std::map<RecordKey, RecordState>& records);

  ReplicaStore& store_;
  ClientConfig config_;
  NodeId node_ = 0;
  HybridClock clock_;
  State state_ = State::kDisconnected;
  Status stop_reason_;
  std::vector<protocol::Message> outgoing_;
  std::vector<ClientEvent> events_;

  uint64_t next_request_id_ = 1;
  uint32_t session_version_ = protocol::kProtocolVersion;
  // The version the Hello offers: config_.protocol_version, one less after each UnsupportedProtocol at the
  // handshake (a server older than the device), down to kMinProtocolVersion.
  uint32_t offered_version_ = protocol::kProtocolVersion;
  // Pushes in flight, oldest first: consecutive runs of the outbox from its oldest entry, each answered in
  // order by the server (one connection). A version 1 session keeps at most one.
  struct InFlightPush {
    uint64_t request_id = 0;
    uint64_t last_seq = 0;  // highest node_seq in it
    int64_t sent_ms = 0;
  };
  std::deque<InFlightPush> pushes_;
  uint64_t push_sent_through_ = 0;  // highest node_seq sent since the last drop_pushes (0: none)
  uint64_t last_written_seq_ = 0;   // highest node_seq ever written (ReplicaMeta::next_node_seq - 1)
  int64_t push_hold_until_ms_ = 0;  // after a refused local commit: no push before then
  uint64_t push_run_total_ = 0;     // kPushProgress: entries pending at the run's start plus written since
  uint64_t push_run_done_ = 0;      // ...and acknowledged so far
  // Bootstrap requests outstanding, oldest first (at most two: the run being received and the next one),
  // with the pages each may still bring.
  struct BootstrapRun {
    uint64_t request_id = 0;
    uint32_t pages_left = 1;
  };
  std::deque<BootstrapRun> boot_runs_;
  uint64_t pull_request_id_ = 0;  // a pull, or while bootstrapping the newest bootstrap request
  int64_t pull_sent_ms_ = 0;
  int64_t last_pull_done_ms_ = 0;
  bool caught_up_ = false;
  bool repull_ = false;  // a live batch was skipped while a pull was in flight: pull again after it
  uint64_t cursor_ = 0;  // cached ReplicaMeta::cursor
  // The schema version a backfill runs from (ReplicaMeta::schema_version < config_.schema_version), 0: none.
  uint32_t backfill_from_ = 0;
  int64_t reconnect_not_before_ms_ = 0;
  size_t outbox_count_ = 0;  // cached outbox size
};

// Reconnect delays: exponential from tuning::kReconnectBaseMs to kReconnectCapMs with full jitter.
class Backoff {
 public:
  explicit Backoff(uint64_t seed) : rng_(seed) {}
  int64_t next_delay_ms();
  void reset() { attempt_ = 0; }

 private:
  std::mt19937_64 rng_;
  int attempt_ = 0;
};

}  // namespace fieldsync
