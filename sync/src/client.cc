#include "fieldsync/sync/client.h"

#include <algorithm>
#include <map>
#include <set>

#include "fieldsync/sync/merge.h"
#include "fieldsync/sync/projection.h"
#include "fieldsync/sync/rules.h"
#include "fieldsync/sync/tuning.h"

namespace fieldsync {

using protocol::Message;

namespace {

RecordState fresh_record(EntityId entity, const RecordId& id) {
  RecordState r;
  r.entity = entity;
  r.id = id;
  return r;
}

bool record_exists(const RecordState& r) {
  return !r.created.is_zero() || !r.fields.empty() || r.deleted;
}

}  // namespace

SyncClient::SyncClient(ReplicaStore& store, ClientConfig config) : store_(store), config_(std::move(config)) {
  auto txn = store_.begin();
  ReplicaMeta meta = txn->meta();
  node_ = meta.node;
  clock_ = HybridClock(meta.hlc);
  cursor_ = meta.cursor;
  last_written_seq_ = meta.next_node_seq - 1;
  outbox_count_ = txn->outbox_size();
  offered_version_ = session_version_ = config_.protocol_version;
  if (meta.bootstrap_done && meta.schema_version != 0 && meta.schema_version < config_.schema_version)
    backfill_from_ = meta.schema_version;
}

bool SyncClient::idle() const {
  return state_ == State::kSyncing && pushes_.empty() && pull_request_id_ == 0 && outbox_count_ == 0 &&
         caught_up_ && !repull_;
}

void SyncClient::save_clock(ReplicaTxn& txn) {
  ReplicaMeta meta = txn.meta();
  if (meta.hlc != clock_.last()) {
    meta.hlc = clock_.last();
    txn.set_meta(meta);
  }
}

// ---- Local writes
// ----------------------------------------------------------------------------------------------

Result<uint64_t> SyncClient::write(std::vector<Change> changes, int64_t now_ms) {
  if (state_ == State::kStopped && stop_reason_.code() == ErrorCode::kDeviceRevoked)
    return Status(ErrorCode::kDeviceRevoked, "this device was revoked; its replica must be erased");
  if (changes.empty()) return Status(ErrorCode::kInvalidArgument, "a transaction needs at least one change");
  if (changes.size() > tuning::kMaxChangesPerTxn)
    return Status(ErrorCode::kTooManyChanges,
                  "a transaction holds at most " + std::to_string(tuning::kMaxChangesPerTxn) + " changes");

  auto txn = store_.begin();
  ReplicaMeta meta = txn->meta();
  HybridClock clock = clock_;  // adopted only if the write commits

  ClientTxn ct;
  ct.node = node_;
  ct.node_seq = meta.next_node_seq;
  ct.created_at_ms = now_ms;

  std::map<RecordKey, RecordState> working;
  std::set<RecordKey> created_here;
  for (Change& c : changes) {
    RecordKey key{c.entity, c.record};
    auto it = working.find(key);
    if (it == working.end()) {
      std::optional<RecordState> loaded =
          schema::entity(c.entity) ? txn->load(c.entity, c.record) : std::optional<RecordState>{};
      it = working.emplace(key, loaded ? std::move(*loaded) : fresh_record(c.entity, c.record)).first;
      // A new record gets its fields one change at a time: one allocation instead of a growing vector's.
      if (!loaded) it->second.fields.reserve(changes.size());
    }
    RecordState& rec = it->second;

    c.version = Version{clock.tick(now_ms), node_};
    c.base = Version{};
    c.seen.clear();
    if (c.op == ChangeOp::kSet) {
      if (const FieldState* f = rec.field(c.field)) c.base = f->version;
    } else if (c.op == ChangeOp::kDelete) {
      for (const FieldState& f : rec.fields) c.seen.push_back(FieldVersion{f.field, f.version});
    }
    if (Status s = validate_change(c); !s) return s;
    // This library projected to an older version writes only what that version's app could.
    if (!projection::knows(c.entity, config_.schema_version))
      return Status(ErrorCode::kUnknownEntity,
                    "unknown entity " + std::string(schema::entity_ref(c.entity).name) + " (schema " +
                        std::to_string(config_.schema_version) + ")");
    if (!projection::knows(c.entity, c.field, config_.schema_version))
      return Status(ErrorCode::kUnknownField, "unknown field " + std::to_string(c.field) + " of " +
                                                  std::string(schema::entity_ref(c.entity).name) +
                                                  " (schema " + std::to_string(config_.schema_version) + ")");

    if (c.op == ChangeOp::kCreate) {
      if (record_exists(rec))
        return Status(ErrorCode::kDuplicateId, "record " + c.record.to_string() + " already exists");
      created_here.insert(key);
    } else if (!record_exists(rec) && !created_here.count(key)) {
      return Status(ErrorCode::kRecordNotFound, "no record " + c.record.to_string() + " in " +
                                                    std::string(schema::entity_ref(c.entity).name));
    } else if (rec.deleted) {
      return Status(ErrorCode::kRecordDeleted, "record " + c.record.to_string() + " was deleted");
    }
    config_.merge_change(rec, c, config_.user, nullptr);
    ct.changes.push_back(std::move(c));
  }
  if (Status s = validate_txn(ct); !s) return s;
  // The server's domain rules on the replica as it was before this write (nothing is saved yet).
  if (Status s = check_domain_rules(ct.changes, Principal{config_.user, config_.role, {}, {}}, *txn); !s)
    return s;

  for (const auto& [key, rec] : working) txn->save(rec);
  txn->outbox_append(ct);
  meta.next_node_seq++;
  meta.hlc = clock.last();
  txn->set_meta(meta);
  Status s = txn->commit();
  txn.reset();  // maybe_push below opens its own store transaction
  if (!s) return s;

  clock_ = clock;
  outbox_count_++;
  last_written_seq_ = ct.node_seq;
  if (push_run_total_ != 0) push_run_total_++;  // a run in progress: this entry joins it
  maybe_push(now_ms);
  return ct.node_seq;
}

// ---- Connection lifecycle
// --------------------------------------------------------------------------------------

void SyncClient::on_connected(int64_t now_ms) {
  if (state_ == State::kStopped) return;
  state_ = State::kHandshaking;
  drop_pushes();
  pull_request_id_ = 0;
  boot_runs_.clear();
  caught_up_ = repull_ = false;
  session_version_ = offered_version_;
  protocol::Hello hello;
  hello.protocol_version = offered_version_;
  hello.schema_version = config_.schema_version;
  hello.node = node_;
  hello.token = config_.token;
  hello.cursor = cursor_;
  hello.client_time_ms = now_ms;
  hello.client_hlc = clock_.last();
  hello.app_version = config_.app_version;
  send(std::move(hello));
}

void SyncClient::on_disconnected(int64_t) {
  if (state_ != State::kStopped) state_ = State::kDisconnected;
  drop_pushes();
  pull_request_id_ = 0;
  boot_runs_.clear();
  caught_up_ = repull_ = false;
}

void SyncClient::stop(Status reason) {
  stop_reason_ = reason;
  state_ = State::kStopped;
  drop_pushes();
  pull_request_id_ = 0;
  boot_runs_.clear();
  ClientEvent e{ClientEvent::Kind::kError};
  e.status = std::move(reason);
  events_.push_back(std::move(e));
}

void SyncClient::fail_storage(const Status& s, Retry retry, int64_t now_ms) {
  // The local file refused a write (disk full, I/O error). Nothing was half-applied: the store transaction is
  // discarded and the cursor and outbox are unchanged. A request id that no answer carries makes on_tick send
  // the request again once it times out.
  constexpr uint64_t kAwaitingRetry = UINT64_MAX;
  ClientEvent e{ClientEvent::Kind::kError};
  e.status = s;
  events_.push_back(std::move(e));
  if (retry == Retry::kPull) {
    pull_request_id_ = kAwaitingRetry;
    pull_sent_ms_ = now_ms;
    boot_runs_.clear();  // pages still arriving for those requests are not applied
  } else if (retry == Retry::kPush) {
    drop_pushes();
    push_hold_until_ms_ = now_ms + tuning::kRequestTimeoutMs;
  }
}

void SyncClient::on_message(const Message& message, int64_t now_ms) {
  if (state_ == State::kStopped || state_ == State::kDisconnected) return;
  if (config_.schema_version < schema::kSchemaVersion) {
    // What an app of that version would do with an entity or field it does not know: fail to decode it.
    // The server projects every message to the session's version, so this never happens with a correct one.
    Message projected = message;
    projection::project(projected, config_.schema_version);
    if (!(projected == message)) {
      stop(Status(ErrorCode::kMalformedMessage, std::string(protocol::message_name(message)) +
                                                    " holds an entity or field newer than schema " +
                                                    std::to_string(config_.schema_version)));
      return;
    }
  }
  std::visit(
      [&](const auto& m) {
        using T = std::decay_t<decltype(m)>;
        if constexpr (std::is_same_v<T, protocol::Welcome> || std::is_same_v<T, protocol::PushAck> ||
                      std::is_same_v<T, protocol::ChangeBatch> ||
                      std::is_same_v<T, protocol::BootstrapPage> || std::is_same_v<T, protocol::Error>) {
          handle(m, now_ms);
        }
        // Client-to-server messages arriving here are ignored: a confused or malicious peer cannot make the
        // device do anything with them.
      },
      message);
}

void SyncClient::on_tick(int64_t now_ms) {
  if (state_ != State::kBootstrapping && state_ != State::kSyncing) return;
  // The oldest push unanswered for too long: everything after it is unanswered too (answers come in order).
  if (!pushes_.empty() && now_ms - pushes_.front().sent_ms >= tuning::kRequestTimeoutMs) drop_pushes();
  if (pull_request_id_ != 0 && now_ms - pull_sent_ms_ >= tuning::kRequestTimeoutMs) {
    pull_request_id_ = 0;
    boot_runs_.clear();
    if (state_ == State::kBootstrapping) {
      send_bootstrap_request(now_ms);
    } else {
      send_pull(now_ms);
    }
  }
  if (state_ == State::kSyncing && pull_request_id_ == 0 &&
      now_ms - last_pull_done_ms_ >= tuning::kIdlePullIntervalMs) {
    send_pull(now_ms);
  }
  maybe_push(now_ms);
}

std::vector<Message> SyncClient::take_outgoing() {
  return std::exchange(outgoing_, {});
}
std::vector<ClientEvent> SyncClient::take_events() {
  return std::exchange(events_, {});
}

// ---- Requests
// --------------------------------------------------------------------------------------------------

void SyncClient::maybe_push(int64_t now_ms) {
  if (state_ != State::kBootstrapping && state_ != State::kSyncing) return;
  if (now_ms < push_hold_until_ms_) return;
  const bool v2 = session_version_ >= 2;
  const size_t window = v2 ? tuning::kMaxPushesInFlight : 1;
  size_t max_txns = v2 ? tuning::kMaxTxnsPerPushV2 : tuning::kMaxTxnsPerPush;
  if (config_.push_max_txns != 0) max_txns = std::min<size_t>(max_txns, config_.push_max_txns);
  const size_t max_changes = v2 ? tuning::kMaxChangesPerPushV2 : tuning::kMaxChangesPerPush;
  // Only what is about to be sent is read: entries after the last one in flight. Without this a backlog's
  // push read the whole outbox for every push, quadratic in the backlog.
  std::unique_ptr<ReplicaTxn> txn;
  while (pushes_.size() < window && outbox_count_ > 0 && push_sent_through_ < last_written_seq_) {
    if (!txn) txn = store_.begin();
    std::vector<ClientTxn> pending = txn->outbox_after(push_sent_through_, max_txns);
    if (pending.empty()) {
      push_sent_through_ = last_written_seq_;  // everything written is in flight or acknowledged
      break;
    }
    size_t changes = 0;
    size_t keep = 0;
    for (; keep < pending.size(); ++keep) {
      changes += pending[keep].changes.size();
      if (keep > 0 && changes > max_changes) break;
    }
    pending.resize(keep);
    if (push_run_total_ == 0) {
      push_run_total_ = outbox_count_;
      push_run_done_ = 0;
    }
    protocol::PushTxns push;
    push.request_id = next_request_id_++;
    push_sent_through_ = pending.back().node_seq;
    pushes_.push_back(InFlightPush{push.request_id, push_sent_through_, now_ms});
    push.txns = std::move(pending);
    send(std::move(push));
  }
}

void SyncClient::drop_pushes() {
  pushes_.clear();
  push_sent_through_ = 0;
}

void SyncClient::send_pull(int64_t now_ms) {
  if (state_ != State::kSyncing || pull_request_id_ != 0) return;
  protocol::PullRequest pull;
  pull.request_id = next_request_id_++;
  pull.cursor = cursor_;
  pull.max_changes = config_.pull_max_changes;
  pull.live = true;
  pull_request_id_ = pull.request_id;
  pull_sent_ms_ = now_ms;
  repull_ = false;
  send(pull);
}

void SyncClient::send_bootstrap_request(int64_t now_ms, const protocol::BootstrapPage* after) {
  if (state_ != State::kBootstrapping) return;
  if (after == nullptr && pull_request_id_ != 0) return;
  protocol::BootstrapRequest req;
  req.request_id = next_request_id_++;
  if (after != nullptr) {
    req.snapshot_seq = after->snapshot_seq;
    req.page_token = after->next_page_token;
  } else {
    ReplicaMeta meta = store_.begin()->meta();
    req.snapshot_seq = meta.bootstrap_snapshot_seq;
    req.page_token = meta.bootstrap_page_token;
  }
  req.page_size = config_.bootstrap_page_size;
  req.from_schema = backfill_from_;
  // Version 1 sessions ask for one page (the field stays at its default, so the frame is version 1's).
  if (session_version_ >= 2) req.max_pages = static_cast<uint32_t>(tuning::kMaxBootstrapPagesPerRequest);
  boot_runs_.push_back(BootstrapRun{req.request_id, std::max<uint32_t>(req.max_pages, 1)});
  pull_request_id_ = req.request_id;
  pull_sent_ms_ = now_ms;
  send(std::move(req));
}

// ---- Server messages
// -------------------------------------------------------------------------------------------

void SyncClient::handle(const protocol::Welcome& m, int64_t now_ms) {
  if (state_ != State::kHandshaking) return;
  if (m.server_time_ms - now_ms > tuning::kMaxClockSkewMs) {
    stop(Status(ErrorCode::kClockSkew, "the device clock is more than " +
                                           std::to_string(tuning::kMaxClockSkewMs / 60000) +
                                           " minutes behind the server; correct the date and time"));
    return;
  }
  // The session speaks the older of the two versions; a server naming one the Hello did not offer is held
  // to what was offered.
  session_version_ = std::clamp<uint32_t>(m.protocol_version, 1, offered_version_);
  const HybridClock before = clock_;
  clock_.observe(m.server_hlc);
  reconnect_not_before_ms_ = 0;
  auto txn = store_.begin();
  save_clock(*txn);
  ReplicaMeta meta = txn->meta();
  {
    ReplicaMeta changed = meta;
    // The version a (first) bootstrap runs at; one started by an older app is backfilled after it.
    if (!meta.bootstrap_done && meta.schema_version == 0) changed.schema_version = config_.schema_version;
    if (meta.bootstrap_done && meta.schema_version == 0) changed.schema_version = config_.schema_version;
    // A backfill starts its own paging (a finished bootstrap leaves its last position behind).
    if (backfill_from_ != 0 && meta.bootstrap_page_token.empty()) {
      changed.bootstrap_snapshot_seq = changed.bootstrap_total = changed.bootstrap_received = 0;
    }
    if (!(changed == meta)) {
      txn->set_meta(changed);
      meta = changed;
    }
  }
  // Release the store before a follow-up request (push, bootstrap page) opens its own transaction: the SQLite
  // replica refuses nested transactions on one thread.
  Status s = txn->commit();
  txn.reset();
  if (!s) {
    // Only the observed server clock was to be saved: forget it (the clock must not run ahead of what is
    // durable) and carry on; the first batch brings it again.
    clock_ = before;
    fail_storage(s, Retry::kNothing, now_ms);
  }
  last_pull_done_ms_ = now_ms;
  if (!meta.bootstrap_done || backfill_from_ != 0) {
    state_ = State::kBootstrapping;  // a backfill pages like a bootstrap
    send_bootstrap_request(now_ms);
  } else {
    state_ = State::kSyncing;
    send_pull(now_ms);
  }
  maybe_push(now_ms);
}

void SyncClient::handle(const protocol::BootstrapPage& m, int64_t now_ms) {
  // Pages come in order, each run after the previous one (one connection): only the oldest outstanding
  // request's pages are expected. Those of a request given up on (a timeout, a failed commit) are not.
  if (state_ != State::kBootstrapping || boot_runs_.empty() || m.request_id != boot_runs_.front().request_id)
    return;
  auto txn = store_.begin();
  ReplicaMeta meta = txn->meta();
  // A page continues from the last one applied (records_before: what the snapshot's earlier pages held). A
  // transport that lost or repeated a page breaks that: a repeat is ignored, and after a loss the request
  // is made again from what this replica holds.
  const uint64_t applied = meta.bootstrap_snapshot_seq == m.snapshot_seq ? meta.bootstrap_received : 0;
  if (m.records_before < applied) return;
  if (m.records_before > applied) {
    txn.reset();
    boot_runs_.clear();
    pull_request_id_ = 0;
    send_bootstrap_request(now_ms);
    return;
  }
  const bool run_over = --boot_runs_.front().pages_left == 0 || m.done;
  if (run_over) boot_runs_.pop_front();
  pull_sent_ms_ = now_ms;  // the request timeout counts from the last page that came
  if (m.done) {
    boot_runs_.clear();
    pull_request_id_ = 0;
  } else if (run_over && boot_runs_.empty()) {
    if (session_version_ >= 2) {
      // The next run is asked for before this page is applied: the server reads it while the device writes.
      send_bootstrap_request(now_ms, &m);
    } else {
      pull_request_id_ = 0;  // version 1: asked for once this page is applied, as version 1 devices do
    }
  }
  const HybridClock clock_before = clock_;
  if (meta.bootstrap_snapshot_seq != 0 && meta.bootstrap_snapshot_seq != m.snapshot_seq) {
    // The server started a new snapshot (ours expired): counting starts over; records already applied merge
    // idempotently.
    meta.bootstrap_received = 0;
  }
  ClientEvent changed{ClientEvent::Kind::kRecordsChanged};
  for (const RecordState& remote : m.records) {
    std::optional<RecordState> local = txn->load(remote.entity, remote.id);
    if (!local) {
      txn->save(remote);
    } else if (merge_record(*local, remote)) {
      txn->save(*local);
    }
    for (const FieldState& f : remote.fields) clock_.observe(f.version.hlc);
    changed.records.push_back(RecordKey{remote.entity, remote.id});
  }
  for (const ConflictRecord& c : m.conflicts) txn->add_conflict(c);
  for (const RecordKey& key : m.purges) {
    txn->erase(key.entity, key.id);
    changed.records.push_back(key);
  }
  meta.bootstrap_snapshot_seq = m.snapshot_seq;
  meta.bootstrap_page_token = m.next_page_token;
  meta.bootstrap_total = m.total_records;
  meta.bootstrap_received = m.records_before + m.records.size();
  // Whether a backfill follows the bootstrap that ends here (it was started by an older app).
  bool backfill_next = false;
  if (m.done && backfill_from_ != 0) {
    // The backfill is complete: the replica now holds what this version knows. The cursor stays: the pulls
    // from it bring everything after it, at this version.
    meta.schema_version = config_.schema_version;
    meta.bootstrap_page_token.clear();
  } else if (m.done) {
    meta.bootstrap_done = true;
    meta.cursor = m.snapshot_seq;
    meta.bootstrap_page_token.clear();
    if (meta.schema_version == 0) meta.schema_version = config_.schema_version;
    if (meta.schema_version < config_.schema_version) {
      backfill_next = true;
      meta.bootstrap_snapshot_seq = meta.bootstrap_total = meta.bootstrap_received = 0;
    }
  }
  meta.hlc = clock_.last();
  txn->set_meta(meta);
  // Release the store before a follow-up request (push, bootstrap page) opens its own transaction: the SQLite
  // replica refuses nested transactions on one thread.
  Status s = txn->commit();
  txn.reset();
  if (!s) {
    clock_ = clock_before;  // nothing observed in this message is durable
    fail_storage(s, Retry::kPull, now_ms);
    return;
  }
  cursor_ = meta.cursor;
  if (!changed.records.empty()) events_.push_back(std::move(changed));
  ClientEvent progress{ClientEvent::Kind::kBootstrapProgress};
  progress.done = meta.bootstrap_received;
  progress.total = std::max(meta.bootstrap_total, meta.bootstrap_received);
  events_.push_back(std::move(progress));
  for (const ConflictRecord& c : m.conflicts) {
    ClientEvent e{ClientEvent::Kind::kConflict};
    e.conflict = c;
    events_.push_back(std::move(e));
  }
  if (m.done && backfill_from_ != 0) backfill_from_ = 0;
  if (backfill_next) {
    backfill_from_ = meta.schema_version;
    send_bootstrap_request(now_ms);
  } else if (m.done) {
    state_ = State::kSyncing;
    send_pull(now_ms);
  } else if (boot_runs_.empty()) {
    send_bootstrap_request(now_ms);
  }
}

void SyncClient::handle(const protocol::ChangeBatch& m, int64_t now_ms) {
  if (state_ != State::kSyncing) return;
  const bool answers_pull = m.request_id != 0 && m.request_id == pull_request_id_;
  if (answers_pull) pull_request_id_ = 0;
  if (m.from_cursor != cursor_) {
    // A stale or out-of-order batch (a duplicate, or a live batch that overtook the answer to our pull).
    // Applying it would skip or repeat server transactions; ask again from where we are instead.
    caught_up_ = false;
    if (pull_request_id_ == 0) {
      send_pull(now_ms);
    } else {
      repull_ = true;
    }
    return;
  }

  const HybridClock clock_before = clock_;
  auto txn = store_.begin();
  ClientEvent changed{ClientEvent::Kind::kRecordsChanged};
  std::set<RecordKey> touched;
  {
    // Each record is loaded once and saved once for the whole batch, not once per change: a transaction
    // usually sets several fields of one record (8 changes for a new account), and a replica's load and save
    // are a query and a row write each.
    std::map<RecordKey, RecordState> working;
    for (const ServerTxn& st : m.txns) {
      for (const Change& c : st.changes) {
        RecordKey key{c.entity, c.record};
        auto it = working.find(key);
        if (it == working.end()) {
          std::optional<RecordState> rec = txn->load(c.entity, c.record);
          it = working.emplace(key, rec ? std::move(*rec) : fresh_record(c.entity, c.record)).first;
        }
        clock_.observe(c.version.hlc);
        if (config_.merge_change(it->second, c, st.origin_user, nullptr)) touched.insert(key);
      }
    }
    for (const RecordKey& key : touched) txn->save(working.at(key));
  }
  // Records entering this user's scope arrive whole. One may have been purged here while this device still
  // had writes to it in the outbox (it left scope and came back): replay those, as the server will apply
  // them.
  std::map<RecordKey, RecordState> entering;
  for (const RecordState& remote : m.records) {
    std::optional<RecordState> local = txn->load(remote.entity, remote.id);
    RecordState& r = entering[RecordKey{remote.entity, remote.id}];
    r = local ? std::move(*local) : fresh_record(remote.entity, remote.id);
    merge_record(r, remote);
    for (const FieldState& f : remote.fields) clock_.observe(f.version.hlc);
    touched.insert(RecordKey{remote.entity, remote.id});
  }
  if (!entering.empty()) {
    replay_pending(*txn, entering);
    for (const auto& [key, rec] : entering) txn->save(rec);
  }
  for (const RecordKey& key : m.purges) {
    txn->erase(key.entity, key.id);
    touched.insert(key);
  }
  for (const ConflictRecord& c : m.conflicts) txn->add_conflict(c);
  clock_.observe(m.server_hlc);
  ReplicaMeta meta = txn->meta();
  meta.cursor = m.to_cursor;
  meta.hlc = clock_.last();
  // Fully synced once this commits: record when, for the app's "last synced" (it must survive a restart).
  if (!m.has_more && !repull_ && (answers_pull || m.request_id == 0) && pull_request_id_ == 0 &&
      pushes_.empty() && outbox_count_ == 0)
    meta.last_synced_ms = now_ms;
  txn->set_meta(meta);
  // Release the store before a follow-up request (push, bootstrap page) opens its own transaction: the SQLite
  // replica refuses nested transactions on one thread.
  Status s = txn->commit();
  txn.reset();
  if (!s) {
    clock_ = clock_before;  // nothing observed in this message is durable
    fail_storage(s, Retry::kPull, now_ms);
    return;
  }
  cursor_ = m.to_cursor;
  changed.records.assign(touched.begin(), touched.end());
  if (!changed.records.empty()) events_.push_back(std::move(changed));
  for (const ConflictRecord& c : m.conflicts) {
    ClientEvent e{ClientEvent::Kind::kConflict};
    e.conflict = c;
    events_.push_back(std::move(e));
  }

  if (m.has_more || repull_) {
    caught_up_ = false;
    if (pull_request_id_ == 0) send_pull(now_ms);
  } else if (answers_pull || m.request_id == 0) {
    caught_up_ = true;
    last_pull_done_ms_ = now_ms;
  }
  if (idle()) events_.push_back(ClientEvent{ClientEvent::Kind::kSynced});
}

void SyncClient::replay_pending(ReplicaTxn& txn, std::map<RecordKey, RecordState>& records) {
  for (const ClientTxn& pending : txn.outbox_peek(SIZE_MAX)) {
    for (const Change& c : pending.changes) {
      auto it = records.find(RecordKey{c.entity, c.record});
      // An update replayed onto a record this replica no longer has (purged, or never created) would leave a
      // partial record behind; the server answers that transaction for itself.
      if (it == records.end() || (c.op != ChangeOp::kCreate && !record_exists(it->second))) continue;
      config_.merge_change(it->second, c, config_.user, nullptr);
    }
  }
}

// `local` without anything the rejected transaction wrote (its versions are unique to it).
static RecordState without_versions(const RecordState& local, const std::set<Version>& rejected) {
  RecordState out;
  out.entity = local.entity;
  out.id = local.id;
  if (!rejected.count(local.created)) out.created = local.created;
  if (local.deleted && !rejected.count(local.deleted_version)) {
    out.deleted = true;
    out.deleted_version = local.deleted_version;
    out.deleted_by = local.deleted_by;
    out.delete_seen = local.delete_seen;
  }
  for (const FieldState& f : local.fields) {
    FieldState kept = f;
    if (!f.fragments.empty()) {
      std::erase_if(kept.fragments, [&](const Fragment& fr) { return rejected.count(fr.version) > 0; });
      if (kept.fragments.empty()) continue;
      kept.value = Value::text(join_fragments(kept.fragments));
      kept.version = kept.fragments.back().version;
      kept.user = kept.fragments.back().user;
    } else if (rejected.count(f.version)) {
      continue;
    }
    out.fields.push_back(std::move(kept));
  }
  return out;
}

void SyncClient::rebase(ReplicaTxn& txn, const ClientTxn& rejected, const protocol::TxnResult& result) {
  std::set<Version> versions;
  std::set<RecordKey> created_by_rejected;
  for (const Change& c : rejected.changes) {
    versions.insert(c.version);
    if (c.op == ChangeOp::kCreate) created_by_rejected.insert(RecordKey{c.entity, c.record});
  }
  // The ack's states were read at log position result.server_seq. If this replica has applied the log that
  // far, it knows at least as much as the ack about every record: an "absent" then only means "not yours to
  // see at that moment", and what the replica holds (less the rejected writes) stands. Otherwise the ack is
  // the newer truth, and the pulls from the cursor bring anything that came back into scope.
  const bool replica_is_newer = txn.meta().cursor >= result.server_seq;
  std::map<RecordKey, RecordState> reset;
  std::set<RecordKey> absent(result.absent.begin(), result.absent.end());
  for (const RecordState& r : result.records) reset[RecordKey{r.entity, r.id}] = r;
  for (const RecordKey& k : result.absent) reset[k] = fresh_record(k.entity, k.id);
  for (auto& [key, rec] : reset) {
    // A record the rejected transaction created never existed for the server.
    if (created_by_rejected.count(key)) continue;
    if (absent.count(key) && !replica_is_newer) continue;
    // Everything else keeps what the replica learned independently of the rejected transaction: a late ack
    // may carry an older state than a pull already applied.
    if (std::optional<RecordState> local = txn.load(key.entity, key.id))
      merge_record(rec, without_versions(*local, versions));
  }
  replay_pending(txn, reset);
  for (auto& [key, rec] : reset) {
    if (record_exists(rec)) {
      txn.save(rec);
    } else {
      txn.erase(key.entity, key.id);
    }
  }
}

void SyncClient::handle(const protocol::PushAck& m, int64_t now_ms) {
  if (state_ != State::kBootstrapping && state_ != State::kSyncing) return;
  const HybridClock clock_before = clock_;
  auto txn = store_.begin();
  // Each result costs its own entry (a removal by node_seq; a rejection also reads the entry), never a read
  // of the rest of the outbox.
  size_t removed = 0;
  std::vector<ClientEvent> events;
  for (const protocol::TxnResult& r : m.results) {
    if (r.outcome != protocol::TxnOutcome::kRejected) {
      // A duplicate or late ack for an entry already dropped removes nothing: its effects were taken when it
      // first arrived.
      if (txn->outbox_remove(r.node_seq)) removed++;
      continue;
    }
    std::optional<ClientTxn> rejected = txn->outbox_get(r.node_seq);
    if (!rejected) continue;
    txn->outbox_remove(r.node_seq);
    removed++;
    Rejection rej{r.node_seq, r.reason, r.message, rejected->changes};
    txn->add_rejection(rej);
    // The server's states of the records, as any received record: their versions are observed. The ack's
    // server_hlc need not cover them: with several server instances one may answer with a clock behind a
    // version another instance committed (and this device had not received yet).
    for (const RecordState& remote : r.records)
      for (const FieldState& f : remote.fields) clock_.observe(f.version.hlc);
    rebase(*txn, *rejected, r);
    ClientEvent e{ClientEvent::Kind::kRejected};
    e.rejection = std::move(rej);
    e.status = Status(r.reason, r.message);
    for (const Change& c : e.rejection->changes) e.records.push_back(RecordKey{c.entity, c.record});
    events.push_back(std::move(e));
    // r.conflicts are not recorded here: every conflict concerning this user also arrives, exactly once and
    // in server order, with the pull that covers its server_seq (even when this ack is lost and the re-send
    // is answered kDuplicate).
  }
  const size_t remaining = outbox_count_ - std::min(outbox_count_, removed);
  clock_.observe(m.server_hlc);
  save_clock(*txn);
  if (state_ == State::kSyncing && remaining == 0 && caught_up_ && !repull_ && pull_request_id_ == 0) {
    ReplicaMeta meta = txn->meta();
    meta.last_synced_ms = now_ms;  // the outbox just emptied while caught up: fully synced
    txn->set_meta(meta);
  }
  // Release the store before a follow-up request (push, bootstrap page) opens its own transaction: the SQLite
  // replica refuses nested transactions on one thread.
  Status s = txn->commit();
  txn.reset();
  if (!s) {
    clock_ = clock_before;  // nothing observed in this message is durable
    fail_storage(s, Retry::kPush, now_ms);
    return;
  }
  outbox_count_ = remaining;
  for (ClientEvent& e : events) events_.push_back(std::move(e));
  if (auto it = std::find_if(pushes_.begin(), pushes_.end(),
                             [&](const InFlightPush& p) { return p.request_id == m.request_id; });
      it != pushes_.end()) {
    const bool whole = !m.results.empty() && m.results.back().node_seq >= it->last_seq;
    if (whole && it == pushes_.begin()) {
      pushes_.pop_front();
    } else {
      // Answered in part (the server stopped at a failed store read or a gap: an Error follows, and the
      // pushes behind this one meet a gap) or out of order: send again from the oldest entry left.
      drop_pushes();
    }
  }
  if (push_run_total_ != 0 && removed != 0) {
    push_run_done_ += removed;
    ClientEvent progress{ClientEvent::Kind::kPushProgress};
    progress.done = push_run_done_;
    progress.total = std::max(push_run_total_, push_run_done_);
    events_.push_back(std::move(progress));
  }
  if (outbox_count_ == 0) push_run_total_ = push_run_done_ = 0;  // the run is over
  maybe_push(now_ms);
  if (idle()) events_.push_back(ClientEvent{ClientEvent::Kind::kSynced});
}

void SyncClient::handle(const protocol::Error& m, int64_t now_ms) {
  switch (m.code) {
    case ErrorCode::kDeviceRevoked: {
      stop(Status(m.code, m.message));
      events_.push_back(ClientEvent{ClientEvent::Kind::kMustErase});
      return;
    }
    case ErrorCode::kUnsupportedProtocol:
      if (state_ == State::kHandshaking && offered_version_ > protocol::kMinProtocolVersion) {
        // A server older than this device refuses the newest version: the next connection offers the one
        // before it (the server closes this one).
        offered_version_--;
        ClientEvent e{ClientEvent::Kind::kError};
        e.status = Status(m.code, m.message, true);
        events_.push_back(std::move(e));
        return;
      }
      stop(Status(m.code, m.message));
      return;
    case ErrorCode::kUnsupportedSchema: {
      // The server is older than this app (a server upgrade under way): not a reason to stop for good, nor
      // to ask again every few seconds. The device keeps working offline, its outbox waits, and the
      // transport tries again after a long wait (reconnect_not_before_ms); the server closes this session.
      reconnect_not_before_ms_ = now_ms + tuning::kServerTooOldRetryMs;
      ClientEvent e{ClientEvent::Kind::kError};
      e.status = Status(m.code, m.message);
      events_.push_back(std::move(e));
      return;
    }
    case ErrorCode::kAuthFailed:
    case ErrorCode::kTokenExpired:
    case ErrorCode::kClockSkew:
      stop(Status(m.code, m.message));
      return;
    case ErrorCode::kSequenceGap:
      // The server is missing earlier transactions of ours; the outbox still has them, oldest first. With
      // several pushes in flight every one behind the gap answers so: only the first one still in flight is
      // acted on (the others belong to pushes already dropped).
      if (std::any_of(pushes_.begin(), pushes_.end(),
                      [&](const InFlightPush& p) { return p.request_id == m.request_id; })) {
        drop_pushes();
        maybe_push(now_ms);
      }
      return;
    default: {
      ClientEvent e{ClientEvent::Kind::kError};
      e.status = Status(m.code, m.message, m.retryable);
      events_.push_back(std::move(e));
      // Whatever was in flight is asked for again by on_tick (or after the reconnect that follows a close).
      if (m.request_id != 0 && std::any_of(pushes_.begin(), pushes_.end(), [&](const InFlightPush& p) {
            return p.request_id == m.request_id;
          }))
        drop_pushes();
      if (m.request_id != 0 && (m.request_id == pull_request_id_ ||
                                std::any_of(boot_runs_.begin(), boot_runs_.end(), [&](const BootstrapRun& r) {
                                  return r.request_id == m.request_id;
                                }))) {
        pull_request_id_ = 0;
        boot_runs_.clear();
      }
      return;
    }
  }
}

// ---- Backoff
// ---------------------------------------------------------------------------------------------------

int64_t Backoff::next_delay_ms() {
  int64_t cap = tuning::kReconnectBaseMs;
  for (int i = 0; i < attempt_ && cap < tuning::kReconnectCapMs; ++i) cap *= 2;
  cap = std::min(cap, tuning::kReconnectCapMs);
  if (attempt_ < 30) attempt_++;
  std::uniform_int_distribution<int64_t> dist(tuning::kReconnectBaseMs / 2, cap);
  return dist(rng_);
}

}  // namespace fieldsync
