// The server side of the sync protocol as a sans-IO state machine over a CentralStore: sessions come and go,
// messages arrive, and it answers, applying pushes (with dedupe by node sequence), serving pulls and
// bootstraps filtered by scope, and waking live sessions whose scope a commit touched. The Beast server
// (server/) and the simulator drive it.
#pragma once

#include <algorithm>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <utility>
#include <vector>

#include "fieldsync/sync/hlc.h"
#include "fieldsync/sync/protocol.h"
#include "fieldsync/sync/store.h"

namespace fieldsync {

class Authenticator {
 public:
  virtual ~Authenticator() = default;
  // Verifies the Hello's token for its node. Errors: kAuthFailed, kTokenExpired, kDeviceRevoked.
  virtual Result<Principal> authenticate(const protocol::Hello& hello, int64_t now_ms) = 0;
};

struct ServerConfig {
  NodeId server_node = 1;  // node id used for versions the server stamps itself
  // false: every commit wakes the live sessions it concerns at once. true: commits only mark a fan-out as
  // pending and the driver calls fan_out() when it wants the live batches -- the group-commit driver does so
  // once per store flush, so many commits cost one scan and each session one batch per flush.
  bool defer_fan_out = false;
  MergeChangeFn merge_change = &fieldsync::merge_change;  // merge.h
  // false: a multi-page bootstrap request (version 2) is answered whole in on_message. true: on_message
  // answers its first page and the driver calls continue_bootstrap() for each further one, so a driver that
  // serialises every event behind one lock (SyncService) lets other sessions and its flusher in between
  // pages instead of holding them for a whole run of page reads.
  bool bootstrap_in_steps = false;
  // The newest protocol version the server answers with (from kMinProtocolVersion to kProtocolVersion):
  // every session speaks min(the device's, this). 1 holds every device to version 1, without compressed
  // frames, for a deployment that will not accept compression under TLS at all (DESIGN.md section 8).
  uint32_t max_protocol_version = protocol::kProtocolVersion;
  // true: a version-2 session of the current schema gets its rep's or manager's bootstrap pages with the
  // records as stored (BootstrapPage::stored: the codec puts the store's bytes into the page's columns, the
  // same frame as from decoded records, without a RecordState per record); for drivers that encode every
  // message (SyncService, the simulator). false: pages hold decoded records, as in-process clients read them.
  bool stored_pages = false;
};

using SessionId = uint64_t;

class SyncServer {
 public:
  SyncServer(CentralStore& store, Authenticator& auth, ServerConfig config);

  void on_connect(SessionId session, int64_t now_ms);
  // Returns true if `message` was a request this server asked for: the pull that continues from a batch it
  // sent with has_more (or from the snapshot of the bootstrap it finished), the next page of the bootstrap it
  // is serving. A device catching up sends those as fast as the answers come, which on a fast link beats any
  // fixed rate; transports do not count them against a session's rate limit.
  bool on_message(SessionId session, const protocol::Message& message, int64_t now_ms);
  // A frame that failed to decode: answers with the error and closes the session.
  void on_bad_frame(SessionId session, const Status& status);
  void on_disconnect(SessionId session);
  // ServerConfig::bootstrap_in_steps: whether `session` is owed further pages of its bootstrap request that
  // may be sent now (not while its transport reports it backlogged: they wait for set_backlogged(false), so a
  // run of pages never fills a slow session's write queue), and the next one of them.
  bool bootstrap_pages_owed(SessionId session) const {
    auto it = sessions_.find(session);
    return it != sessions_.end() && it->second.owed_pages > 0 && !it->second.backlogged;
  }
  void continue_bootstrap(SessionId session, int64_t now_ms);

  struct Outgoing {
    SessionId session;
    protocol::Message message;
  };
  std::vector<Outgoing> take_outgoing();
  // Sessions to close once their outgoing messages are sent (after an error).
  std::vector<SessionId> take_closing();

  // A write made on the server itself (admin tools, head-office API): `txn` is applied exactly like a
  // device's push from node `txn.node` (dedupe by node_seq included), committed, and live sessions are woken.
  // The result is applied, rejected (recorded) or duplicate; a Status (retryable) says the store failed --
  // a read, or the commit -- and nothing of `txn` was applied or recorded.
  Result<protocol::TxnResult> apply_local(const ClientTxn& txn, const Principal& who, int64_t now_ms);

  // Commits made by another writer of the same store -- fieldsync-admin, or another server instance in front
  // of a shared store -- wake nobody by themselves. Called periodically, this wakes the live sessions when
  // the log head moved past what this server has already fanned out. Cheap when nothing changed (one head
  // read).
  void poll_external_commits(int64_t now_ms);
  // ServerConfig::defer_fan_out: produces the live batches of every commit since the last call (at most
  // tuning::kMaxChangesPerLiveScan changes of the log per session cursor; fan_out_pending() then says that
  // another call continues).
  void fan_out(int64_t now_ms);
  bool fan_out_pending() const { return fan_out_pending_; }
  // The transport's write queue for `session` is backed up (true: tuning::kMaxPendingLiveBatches frames
  // waiting) or has drained (false). A backlogged live session is sent nothing; what fan-outs find for it is
  // gathered into one batch (or, past kMaxHeldLiveChanges or across a scope move, read again from its own
  // part of the log) and sent when it drains, so a slow reader gets fewer, larger batches instead of a queue
  // that grows until the transport cuts it off.
  void set_backlogged(SessionId session, bool backlogged);

  // The directory changed what principal.user sees (a territory granted or taken, a team change): every
  // authenticated session of that user takes `principal` now, not at its next handshake. A live session is
  // sent the records of the scopes it gained, whole (with what hangs off them), and purges for those it lost,
  // in batches at its cursor (from_cursor == to_cursor), up to kMaxPendingLiveBatches pages of
  // kBootstrapPageRecords per call; the rest follows at each poll_external_commits, and a session still
  // catching up gets them once its pulls reach the head. A change to or from seeing everything (head office)
  // is left to the next bootstrap.
  void update_principal(const Principal& principal, int64_t now_ms);

  size_t session_count() const { return sessions_.size(); }
  // The protocol version of the session's exchange (the Welcome's: min(Hello's, kProtocolVersion)); 1 before
  // the handshake and for unknown sessions. The transport encodes every frame after the Welcome for it.
  uint32_t session_version(SessionId session) const {
    auto it = sessions_.find(session);
    return it == sessions_.end() ? 1 : it->second.version;
  }
  Hlc hlc() const { return clock_.last(); }

 private:
  struct Session {
    // What every fan-out checks of every session comes first (one cache line).
    bool authenticated = false;
    bool live = false;               // caught up and wants live batches
    bool backlogged = false;         // set_backlogged: live batches wait
    bool catch_up_on_drain = false;  // see held
    bool holding = false;            // see held
    uint64_t sent_cursor = 0;        // the device's cursor: highest to_cursor sent to it
    uint64_t scanned_cursor = 0;  // >= sent_cursor: the log up to here was checked and what concerned it sent
    int64_t cursor_sent_ms = 0;   // when sent_cursor last reached the device (a pull's answer, a live batch)
    Principal principal;
    NodeId node = 0;
    uint32_t version = 1;  // the session's protocol version (session_version)
    // The model version of the device (its Hello's): everything queued for it is projected to it
    // (projection.h), so a device on an older app never receives an entity or field it does not know.
    uint32_t schema = schema::kSchemaVersion;
    // Backlogged: what the live fan-outs found for it since, one batch from sent_cursor to scanned_cursor,
    // sent when it drains (hold_live) -- or, once that stopped being a plain run of transactions,
    // catch_up_on_drain: scanned_cursor went back to sent_cursor and the drain reads the log again.
    protocol::ChangeBatch held;  // holding
    size_t held_changes = 0;
    // The request this server asked the device for, if any (on_message): a pull from solicited_cursor, or
    // the bootstrap page solicited_page (its token).
    bool pull_solicited = false;
    uint64_t solicited_cursor = 0;
    std::string solicited_page;
    // bootstrap_in_steps: pages still owed for the bootstrap request owed_request (from solicited_page of
    // snapshot owed_snapshot, owed_page_size records each).
    uint32_t owed_pages = 0;
    uint64_t owed_request = 0;
    uint64_t owed_snapshot = 0;
    uint32_t owed_page_size = 0;
    // update_principal: the scopes seen before the change not yet delivered, and how far the scan of the
    // gained scopes (records) and then of the lost ones (purges) has come. Another change restarts it.
    bool scope_pending = false;
    std::optional<std::vector<ScopeKey>> scope_base;
    bool scope_lost_phase = false;
    RecordKey scope_after;
  };
  // Sends update_principal's next pages to a live session that is not backlogged.
  void continue_scope_change(SessionId id, Session& s);
  void solicit_pull(Session& s, uint64_t cursor) {
    s.pull_solicited = true;
    s.solicited_cursor = cursor;
  }

  void handle_hello(SessionId id, Session& s, const protocol::Hello& m, int64_t now_ms);
  void handle_push(SessionId id, Session& s, const protocol::PushTxns& m, int64_t now_ms);
  // Both return whether the request was solicited (on_message).
  bool handle_pull(SessionId id, Session& s, const protocol::PullRequest& m);
  // `continued`: a continuation of a request in steps (continue_bootstrap), not a request of the device.
  bool handle_bootstrap(SessionId id, Session& s, const protocol::BootstrapRequest& m,
                        bool continued = false);
  // The log after a cursor with the current scope of every record it touches resolved once: live fan-out
  // shares one per distinct cursor among all sessions instead of reading and resolving per session.
  struct ResolvedRange {
    uint64_t from = 0;
    uint64_t to = 0;
    bool has_more = false;
    std::vector<ServerTxn> txns;  // scope moves included
    std::vector<ConflictRecord> conflicts;
    std::map<RecordKey, ScopeKey> scopes;  // touched records that exist (others are visible to nobody)
    // Positions in txns: by the scope of each record they change, and those with scope moves. batch_for
    // looks only at its session's scopes' transactions: a flush of live batches for every session would
    // otherwise cost (sessions x transactions) record lookups.
    std::map<ScopeKey, std::vector<size_t>> txns_by_scope;
    std::vector<size_t> txns_with_moves;
  };
  // only_for: read just the transactions the log indexed under the principal's scopes (a pull's catch-up);
  // nullptr: the whole log (live fan-out, shared by every session at that cursor).
  // A failed store read fails the whole range (nothing of it may be sent). `head`: the log head the caller
  // has just read (fan-out reads it once for all its ranges), or nullopt to read it here.
  Result<ResolvedRange> resolve_range(uint64_t from, size_t max_changes, const Principal* only_for,
                                      std::optional<uint64_t> head = std::nullopt);
  // Sessions that may find something in `range`: those indexed under the current scope of a record it
  // touches or the scope a move took a record from, the users named in its conflicts, head office. A
  // superset of the sessions batch_for would give a non-empty batch, found without looking at the others.
  std::set<SessionId> interested_in(const ResolvedRange& range) const;
  void index_session(SessionId id, const Session& s, bool add);
  Result<protocol::ChangeBatch> batch_for(const Session& s, const ResolvedRange& range, uint64_t request_id);
  Result<protocol::ChangeBatch> build_batch(const Session& s, uint64_t from, size_t max_changes,
                                            uint64_t request_id);
  // false: a store read failed; the sessions it concerns stay where they were and fan_out_retry_ is set.
  // `head`: the log head just read by the caller (poll_external_commits), or nullopt to read it here.
  bool wake_live_sessions(SessionId except, std::optional<uint64_t> head = std::nullopt);
  // Queues `batch` (built from the session's scanned_cursor) for a live session, or only moves its cursor
  // when the batch is empty.
  void send_live(SessionId id, Session& s, protocol::ChangeBatch batch);
  // The same for a backlogged session (`batch` never has_more): appended to what is held for it, or, when it
  // cannot be (scope moves, past kMaxHeldLiveChanges), everything held dropped for a catch-up read at the
  // drain.
  void hold_live(Session& s, protocol::ChangeBatch batch);
  void drop_held(Session& s);
  void request_fan_out();  // after a commit: wake now, or mark pending (defer_fan_out)
  void send_error(SessionId id, Status status, uint64_t request_id = 0, bool close = true);
  // Queues `m` for the session, projected to its schema version.
  void queue(SessionId id, const Session& s, protocol::Message m);
  // Every input carries the driver's time; the newest seen is "now" for what has none of its own (a
  // session's backlog draining).
  void observe_time(int64_t now_ms) { now_ms_ = std::max(now_ms_, now_ms); }

  CentralStore& store_;
  Authenticator& auth_;
  ServerConfig config_;
  HybridClock clock_;
  std::map<SessionId, Session> sessions_;
  // sessions_ as a flat list for fan-out, which visits every session at every flush (a walk of the map was
  // 4% of the server's samples at 1,000 sessions); rebuilt when sessions come or go.
  std::vector<std::pair<SessionId, Session*>> session_list_;
  std::vector<Outgoing> outgoing_;
  std::set<SessionId> closing_;
  // Authenticated sessions by what they see, for fan-out (visible_scopes: can_see's rules, inverted).
  std::map<ScopeKey, std::set<SessionId>> by_scope_;
  std::map<UserId, std::set<SessionId>> by_user_;  // the session's own user (conflicts name users)
  std::set<SessionId> sees_all_;                   // head office
  uint64_t fanned_out_head_ = 0;                   // log head at the last wake_live_sessions
  // The current scope of records, so fan-out and catch-up do not load each touched record again: filled
  // by this server's commits (the rules resolve every touched record anyway), by the log ranges fan-out
  // reads (a record whose territory or owner a transaction sets has that scope from then on) and by
  // resolve_range's loads. Every commit up to scope_cache_head_ has been applied to it: a commit changes the
  // scope of the records it touches (their entries from before it are dropped), of the descendants of a
  // record it moves (any move empties the cache), and nothing else. Each entry holds the log position from
  // which it is known (valid_at): an entry is used only while no commit after that position is unseen
  // (valid_at or scope_cache_head_ at the head), so a commit by another writer -- another instance on the
  // same database, fieldsync-admin -- never leaves a stale scope in use, and no longer empties the cache
  // either: the fan-out that reads its range applies it (advance_scope_cache). kUnresolved is never cached
  // (a parent created later resolves it).
  struct CachedScope {
    ScopeKey scope;
    uint64_t valid_at = 0;
  };
  std::map<RecordKey, CachedScope> scope_cache_;
  uint64_t scope_cache_head_ = 0;
  void remember_scope(const RecordKey& key, const ScopeKey& scope, uint64_t valid_at);
  // The cached scope of `key` if it holds for a store whose log ends at `head`, else nullptr.
  const ScopeKey* cached_scope(const RecordKey& key, uint64_t head) const;
  // Applies a run of consecutive log entries read from the store (or the log tail) after position `from`:
  // what lies between scope_cache_head_ and `from` was never seen, so the cache starts over at `from` then.
  void advance_scope_cache(uint64_t from, const std::vector<ServerTxn>& txns);
  // The newest log entries this server committed, as it committed them (with the scope keys the store
  // filed them under and their conflicts), so live fan-out and catch-ups read them from memory instead of
  // reading and decoding the store's log again: a run of consecutive entries, used only while it ends at
  // the head (another writer's commit moves the head past it: it is then emptied at the next own commit),
  // at most kMaxLogTailChanges changes.
  struct TailEntry {
    ServerTxn txn;
    std::vector<ScopeKey> scopes;
    std::vector<ConflictRecord> conflicts;
  };
  std::deque<TailEntry> log_tail_;
  size_t log_tail_changes_ = 0;
  void remember_log_entry(TailEntry entry);
  // A run of one node's transactions applied in one store transaction (CentralTxn): up to
  // tuning::kMaxTxnsPerStoreTxn consecutive transactions of a push, or apply_local's one. Each transaction is
  // still judged alone -- applied, rejected (recorded) or a duplicate, whatever its neighbours are -- on
  // the state the run's earlier transactions left, and nothing of the run is answered before it commits;
  // the store failing (a read, or the commit) drops the whole run, none of it acknowledged, and the device
  // sends it again. What a store transaction pays once -- the savepoint and its copies of the hot pages,
  // the node's watermark and the clock rows, the log head -- is then paid once per run instead of once per
  // transaction (PERFORMANCE.md, "Push: the server's apply path").
  struct AppliedInRun {  // what an applied transaction leaves in memory once its run commits
    TailEntry entry;
    std::vector<std::pair<RecordKey, ScopeKey>> scopes;
    bool moves = false;
  };
  struct ApplyRun {
    std::unique_ptr<CentralTxn> ctx;
    NodeState node;         // the node's watermark as the run leaves it
    HybridClock clock{0};   // clock_ advanced by the run's transactions: clock_ takes it at the commit
    bool wrote = false;     // something to commit (a run of duplicates writes nothing)
    uint64_t last_seq = 0;  // the last log position this run appended
    std::vector<protocol::TxnResult> results;
    std::vector<AppliedInRun> applied;
  };
  // Opens a run for `node` (reads its watermark in the run's store transaction).
  Status begin_run(ApplyRun& run, NodeId node);
  // Judges and applies `txn` in the run: its result is appended to run.results. A Status (retryable): a
  // store read failed, and the run must be dropped (nothing of it committed or answered).
  Status apply_in_run(ApplyRun& run, const Session& s, const ClientTxn& txn, int64_t now_ms);
  // Writes the watermark and the clock, commits, and only then takes the run's effects into memory (clock,
  // scope cache, log tail): its results, or a retryable Status and nothing of the run applied.
  Result<std::vector<protocol::TxnResult>> commit_run(ApplyRun& run);
  // Whether the log tail holds every entry in (from, head].
  bool tail_covers(uint64_t from, uint64_t head) const;
  bool fan_out_pending_ = false;  // defer_fan_out: a commit since the last fan_out()
  // A fan-out stopped at a failed store read: the next poll_external_commits (or commit) tries again. Not
  // fan_out_pending_, which the group-commit driver runs at once (a failing store would spin it).
  bool fan_out_retry_ = false;
  // The store's persisted HLC, read at construction or, if that read failed, before the first message.
  Status load_clock();
  bool clock_loaded_ = false;
  int64_t now_ms_ = 0;  // observe_time
};

}  // namespace fieldsync
