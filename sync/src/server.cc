#include "fieldsync/sync/server.h"

#include <algorithm>
#include <charconv>
#include <iterator>

#include "fieldsync/sync/codec.h"
#include "fieldsync/sync/projection.h"
#include "fieldsync/sync/scope.h"
#include "fieldsync/sync/tuning.h"

namespace fieldsync {

using protocol::Message;

namespace {

// A store read failed (I/O, a corrupt row, a dropped connection): the device is answered with this,
// retryable, and nothing of what the read would have decided is applied or sent.
Status retry_later(const Status& why) {
  return Status(why.code(), "the server could not read its store: " + why.message(), true);
}

bool visible(const Principal& who, const RecordState& record, RecordReader& reader) {
  return can_see(who, resolve_scope(record, reader));
}

// Bootstrap page tokens: "<total>:<sent so far>:<entity>:<last id>" (opaque to clients).
struct PageToken {
  uint64_t total = 0;
  uint64_t sent = 0;
  RecordKey after;
};

std::string encode_token(const PageToken& t) {
  return std::to_string(t.total) + ":" + std::to_string(t.sent) + ":" +
         std::to_string(static_cast<unsigned>(t.after.entity)) + ":" + t.after.id.to_string();
}

std::optional<PageToken> decode_token(std::string_view s) {
  PageToken t;
  uint64_t parts[3];
  for (uint64_t& p : parts) {
    size_t colon = s.find(':');
    if (colon == std::string_view::npos) return std::nullopt;
    auto [ptr, ec] = std::from_chars(s.data(), s.data() + colon, p);
    if (ec != std::errc() || ptr != s.data() + colon) return std::nullopt;
    s.remove_prefix(colon + 1);
  }
  std::optional<RecordId> id = RecordId::parse(s);
  if (!id || parts[2] > 0xffff) return std::nullopt;
  t.total = parts[0];
  t.sent = parts[1];
  t.after = RecordKey{static_cast<EntityId>(parts[2]), *id};
  return t;
}

}  // namespace

SyncServer::SyncServer(CentralStore& store, Authenticator& auth, ServerConfig config)
    : store_(store), auth_(auth), config_(config) {
  (void)load_clock();  // or at the first message or local write (on_message, apply_local)
}

Status SyncServer::load_clock() {
  if (clock_loaded_) return Status::ok();
  Result<Hlc> persisted = store_.clock();
  if (!persisted) return persisted.status();
  clock_ = HybridClock(std::max(clock_.last(), *persisted));
  clock_loaded_ = true;
  return Status::ok();
}

void SyncServer::on_connect(SessionId session, int64_t now_ms) {
  observe_time(now_ms);
  sessions_[session] = Session{};
  session_list_.clear();
}

void SyncServer::on_disconnect(SessionId session) {
  if (auto it = sessions_.find(session); it != sessions_.end() && it->second.authenticated)
    index_session(session, it->second, false);
  sessions_.erase(session);
  closing_.erase(session);
  session_list_.clear();
}

void SyncServer::index_session(SessionId id, const Session& s, bool add) {
  auto update = [&](std::set<SessionId>& set) {
    if (add) {
      set.insert(id);
    } else {
      set.erase(id);
    }
  };
  const Principal& p = s.principal;
  std::optional<std::vector<ScopeKey>> scopes = visible_scopes(p);
  if (!scopes) return update(sees_all_);
  for (const ScopeKey& k : *scopes) {
    update(by_scope_[k]);
    if (!add && by_scope_[k].empty()) by_scope_.erase(k);  // keep the map from growing with every user
  }
  update(by_user_[p.user]);
  if (!add && by_user_[p.user].empty()) by_user_.erase(p.user);
}

std::set<SessionId> SyncServer::interested_in(const ResolvedRange& range) const {
  std::set<SessionId> out = sees_all_;
  auto add = [&](const auto& index, const auto& key) {
    if (auto it = index.find(key); it != index.end()) out.insert(it->second.begin(), it->second.end());
  };
  // Current scopes of the touched records (a moved record's new scope among them); kUnresolved is indexed
  // by nobody: head office only.
  for (const auto& [key, scope] : range.scopes) add(by_scope_, scope);
  for (const ServerTxn& t : range.txns)
    for (const ScopeMove& mv : t.moves) add(by_scope_, mv.from);  // those who could see it before the move
  for (const ConflictRecord& c : range.conflicts) {
    add(by_user_, c.winner.user);
    add(by_user_, c.loser.user);
  }
  return out;
}

std::vector<SyncServer::Outgoing> SyncServer::take_outgoing() {
  return std::exchange(outgoing_, {});
}

std::vector<SessionId> SyncServer::take_closing() {
  std::vector<SessionId> out(closing_.begin(), closing_.end());
  closing_.clear();
  return out;
}

void SyncServer::queue(SessionId id, const Session& s, protocol::Message m) {
  if (s.schema < schema::kSchemaVersion) {
    // Projection reads records decoded (handle_bootstrap sends stored ones to current-schema sessions only).
    if (auto* page = std::get_if<protocol::BootstrapPage>(&m); page && !page->stored.empty())
      *page = codec::with_records(*page);
    projection::project(m, s.schema);
  }
  outgoing_.push_back(Outgoing{id, std::move(m)});
}

void SyncServer::send_error(SessionId id, Status status, uint64_t request_id, bool close) {
  protocol::Error e;
  e.code = status.code();
  e.message = status.message();
  e.retryable = status.retryable();
  e.request_id = request_id;
  outgoing_.push_back(Outgoing{id, std::move(e)});
  if (close) closing_.insert(id);
}

void SyncServer::on_bad_frame(SessionId session, const Status& status) {
  if (!sessions_.count(session)) return;
  send_error(session, status);
}

bool SyncServer::on_message(SessionId id, const Message& message, int64_t now_ms) {
  observe_time(now_ms);
  auto it = sessions_.find(id);
  if (it == sessions_.end() || closing_.count(id)) return false;
  Session& s = it->second;
  if (Status loaded = load_clock(); !loaded) {
    // Nothing can be answered before the server's clock is known; the device reconnects later.
    send_error(id, retry_later(loaded));
    return false;
  }
  if (const auto* hello = std::get_if<protocol::Hello>(&message)) {
    handle_hello(id, s, *hello, now_ms);
    return false;
  }
  if (!s.authenticated) {
    send_error(id, Status(ErrorCode::kUnexpectedMessage,
                          std::string("expected Hello, got ") + protocol::message_name(message)));
    return false;
  }
  if (const auto* push = std::get_if<protocol::PushTxns>(&message)) {
    handle_push(id, s, *push, now_ms);
  } else if (const auto* pull = std::get_if<protocol::PullRequest>(&message)) {
    return handle_pull(id, s, *pull);
  } else if (const auto* boot = std::get_if<protocol::BootstrapRequest>(&message)) {
    return handle_bootstrap(id, s, *boot);
  } else {
    send_error(id, Status(ErrorCode::kUnexpectedMessage,
                          std::string(protocol::message_name(message)) + " is not a client message"));
  }
  return false;
}

// ---- Handshake
// -------------------------------------------------------------------------------------------------

void SyncServer::handle_hello(SessionId id, Session& s, const protocol::Hello& m, int64_t now_ms) {
  if (s.authenticated) {
    send_error(id, Status(ErrorCode::kUnexpectedMessage, "Hello sent twice in one session"));
    return;
  }
  if (m.protocol_version < protocol::kMinProtocolVersion || m.protocol_version > protocol::kProtocolVersion) {
    send_error(
        id, Status(ErrorCode::kUnsupportedProtocol, "protocol version " + std::to_string(m.protocol_version) +
                                                        " is not supported; this " + "server speaks " +
                                                        std::to_string(protocol::kMinProtocolVersion) +
                                                        " to " + std::to_string(protocol::kProtocolVersion)));
    return;
  }
  if (m.schema_version == 0 || m.schema_version > schema::kSchemaVersion) {
    send_error(id, Status(ErrorCode::kUnsupportedSchema,
                          "schema version " + std::to_string(m.schema_version) + " is not supported; this " +
                              "server knows up to " + std::to_string(schema::kSchemaVersion)));
    return;
  }
  if (m.node == 0 || m.node == config_.server_node) {
    send_error(id, Status(ErrorCode::kAuthFailed, "authentication failed"));
    return;
  }
  Result<Principal> who = auth_.authenticate(m, now_ms);
  if (!who) {
    send_error(id, who.status());
    return;
  }
  if (m.client_time_ms - now_ms > tuning::kMaxClockSkewMs) {
    send_error(id, Status(ErrorCode::kClockSkew,
                          "the device clock is more than " + std::to_string(tuning::kMaxClockSkewMs / 60000) +
                              " minutes ahead of the server; correct the date and time"));
    return;
  }
  if (hlc_physical_ms(m.client_hlc) - now_ms > tuning::kMaxClockSkewMs) {
    // The clock itself only advances with commits (commit_run), where it is persisted: it never goes back.
    send_error(id,
               Status(ErrorCode::kClockSkew, "the device's timestamps are more than " +
                                                 std::to_string(tuning::kMaxClockSkewMs / 60000) +
                                                 " minutes ahead of the server; correct the date and time"));
    return;
  }
  Result<NodeState> node = store_.node_state(m.node);
  Result<uint64_t> head = node ? store_.head_seq() : Result<uint64_t>(node.status());
  if (!head) {
    send_error(id, retry_later(head.status()));  // and close: the device reconnects later
    return;
  }
  s.authenticated = true;
  s.principal = std::move(who.value());
  s.node = m.node;
  s.version = std::min({m.protocol_version, protocol::kProtocolVersion,
                        std::max(config_.max_protocol_version, protocol::kMinProtocolVersion)});
  s.schema = m.schema_version;
  s.live = false;
  drop_held(s);
  s.sent_cursor = s.scanned_cursor = m.cursor;
  index_session(id, s, true);

  protocol::Welcome w;
  w.protocol_version = s.version;
  w.schema_version = schema::kSchemaVersion;
  w.user = s.principal.user;
  w.role = s.principal.role;
  w.last_node_seq = node->last_node_seq;
  w.server_seq = *head;
  w.server_hlc = clock_.last();
  w.server_time_ms = now_ms;
  outgoing_.push_back(Outgoing{id, std::move(w)});
}

// ---- Push
// ------------------------------------------------------------------------------------------------------

void SyncServer::handle_push(SessionId id, Session& s, const protocol::PushTxns& m, int64_t now_ms) {
  // The codec admits the largest push of any version; a version 1 session is held to version 1's limits.
  const size_t max_txns = s.version >= 2 ? tuning::kMaxTxnsPerPushV2 : tuning::kMaxTxnsPerPush;
  const size_t max_changes = s.version >= 2 ? tuning::kMaxChangesPerPushV2 : tuning::kMaxChangesPerPush;
  size_t changes = 0;
  for (const ClientTxn& t : m.txns) changes += t.changes.size();
  if (m.txns.size() > max_txns || changes > max_changes) {
    send_error(id, Status(ErrorCode::kTooManyChanges, "a push holds at most " + std::to_string(max_txns) +
                                                          " transactions and " + std::to_string(max_changes) +
                                                          " changes"));
    return;
  }
  protocol::PushAck ack;
  ack.request_id = m.request_id;
  bool any_committed = false;
  // A store that failed (a read, or the commit): what was committed so far is answered, the rest of the push
  // is neither applied nor acknowledged, and the device sends it again after the retryable error.
  auto store_failed = [&](const Status& why) {
    if (!ack.results.empty()) queue(id, s, ack);
    send_error(id, why, m.request_id, false);
    if (any_committed) request_fan_out();
  };
  // The push's transactions go in runs (ApplyRun), each one store transaction. A run the store fails (a
  // read, or the commit) is dropped and its transactions are applied again one store transaction each, up to
  // the one that fails: what went before a failure is committed and answered exactly as if every
  // transaction had been its own store transaction, and the rest is neither applied nor acknowledged.
  ApplyRun run;
  size_t run_first = 0;  // the push's index of the run's first transaction
  auto take_results = [&](std::vector<protocol::TxnResult>& results) {
    for (protocol::TxnResult& r : results) {
      any_committed |= r.outcome == protocol::TxnOutcome::kApplied;
      ack.results.push_back(std::move(r));
    }
  };
  // Transactions [from, to) one store transaction each; false: the store failed (answered).
  auto apply_alone = [&](size_t from, size_t to) -> bool {
    for (size_t j = from; j < to; ++j) {
      ApplyRun one;
      Status st = begin_run(one, s.node);
      if (st) st = apply_in_run(one, s, m.txns[j], now_ms);
      Result<std::vector<protocol::TxnResult>> done =
          st ? commit_run(one) : Result<std::vector<protocol::TxnResult>>(st);
      if (!done) {
        store_failed(done.status());
        return false;
      }
      take_results(*done);
    }
    return true;
  };
  // Commits the open run and answers its transactions; false: the store failed (answered).
  auto finish_run = [&]() -> bool {
    if (!run.ctx) return true;
    const size_t txns = run.results.size();
    Result<std::vector<protocol::TxnResult>> done = commit_run(run);
    if (done) {
      take_results(*done);
      return true;
    }
    if (txns == 1) {
      store_failed(done.status());
      return false;
    }
    return apply_alone(run_first, run_first + txns);
  };
  for (size_t i = 0; i < m.txns.size(); ++i) {
    const ClientTxn& txn = m.txns[i];
    if (txn.node != s.node) {
      if (!finish_run()) return;
      send_error(id,
                 Status(ErrorCode::kPermissionDenied, "a session may only push its own node's transactions"),
                 m.request_id);
      return;
    }
    if (run.ctx && run.results.size() >= tuning::kMaxTxnsPerStoreTxn && !finish_run()) return;
    if (!run.ctx) {
      if (Status begun = begin_run(run, s.node); !begun) return store_failed(begun);
      run_first = i;
    }
    // The run's watermark: after each transaction answered it is at least that transaction's node_seq.
    const uint64_t last = run.node.last_node_seq;
    if (txn.node_seq > last + 1) {
      if (!finish_run()) return;
      // Answer what was done so far, then say where to resume; the session stays open.
      if (!ack.results.empty()) queue(id, s, ack);
      protocol::Error gap;
      gap.code = ErrorCode::kSequenceGap;
      gap.message =
          "expected transaction " + std::to_string(last + 1) + ", got " + std::to_string(txn.node_seq);
      gap.retryable = true;
      gap.request_id = m.request_id;
      gap.resume_node_seq = last + 1;
      outgoing_.push_back(Outgoing{id, std::move(gap)});
      if (any_committed) request_fan_out();
      return;
    }
    if (Status applied = apply_in_run(run, s, txn, now_ms); !applied) {
      const size_t before = run.results.size();  // the run's transactions before this one
      run = ApplyRun{};                          // rolled back
      if (!apply_alone(run_first, run_first + before)) return;
      // This transaction is not applied again: the device sends it again after the retryable error.
      return store_failed(applied);
    }
  }
  if (!finish_run()) return;
  ack.server_hlc = clock_.last();
  queue(id, s, std::move(ack));
  if (any_committed) request_fan_out();
}

Status SyncServer::begin_run(ApplyRun& run, NodeId node) {
  run = ApplyRun{};
  run.ctx = store_.begin();
  run.clock = clock_;
  Result<NodeState> ns = run.ctx->node_state(node);
  if (!ns) {
    run = ApplyRun{};
    return retry_later(ns.status());
  }
  run.node = *ns;
  run.node.node = node;
  return Status::ok();
}

Status SyncServer::apply_in_run(ApplyRun& run, const Session& s, const ClientTxn& txn, int64_t now_ms) {
  CentralTxn& ctx = *run.ctx;
  protocol::TxnResult result;
  result.node_seq = txn.node_seq;
  // The rules and scope resolution read through this; whatever they decide after a failed read is dropped.
  CheckedTxnReader reader(ctx);

  auto fill_rollback = [&]() -> Status {
    // The run's own log entries are not committed yet: a store's head may not count them.
    Result<uint64_t> head = store_.head_seq();
    if (!head) return head.status();
    result.server_seq = std::max(*head, run.last_seq);
    std::vector<RecordKey> keys;
    for (const Change& c : txn.changes) keys.push_back(RecordKey{c.entity, c.record});
    std::sort(keys.begin(), keys.end());
    keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
    for (const RecordKey& k : keys) {
      std::optional<RecordState> rec = schema::entity(k.entity) ? reader.load(k.entity, k.id) : std::nullopt;
      if (rec && visible(s.principal, *rec, reader)) {
        result.records.push_back(std::move(*rec));
      } else {
        result.absent.push_back(k);
      }
    }
    return reader.status();
  };

  if (txn.node_seq <= run.node.last_node_seq) {
    Result<std::optional<StoredRejection>> rej = ctx.rejection(txn.node, txn.node_seq);
    if (!rej) return retry_later(rej.status());
    if (*rej) {
      result.outcome = protocol::TxnOutcome::kRejected;
      result.reason = (*rej)->reason;
      result.message = (*rej)->message;
      if (Status read = fill_rollback(); !read) return retry_later(read);
    } else {
      result.outcome = protocol::TxnOutcome::kDuplicate;
    }
    run.results.push_back(std::move(result));
    return Status::ok();
  }

  // The clock moves on with the commit only: a run that fails leaves no trace, not even a timestamp it
  // observed (the server could hand it out in a Welcome or a batch and then forget it in a restart).
  HybridClock& clock = run.clock;
  Status verdict;
  for (const Change& c : txn.changes) {
    verdict = clock.receive(c.version.hlc, now_ms);
    if (!verdict) break;
  }
  Result<TxnApplication> applied = verdict ? apply_client_txn(txn, s.principal, reader, config_.merge_change)
                                           : Result<TxnApplication>(verdict);
  // A rejection (or an application) decided on a read that failed is no verdict at all.
  if (!reader.status()) return retry_later(reader.status());

  run.node.last_node_seq = txn.node_seq;
  run.wrote = true;
  if (!applied) {
    const Status& why = applied.status();
    result.outcome = protocol::TxnOutcome::kRejected;
    result.reason = why.code();
    result.message = why.message();
    if (Status read = fill_rollback(); !read) return retry_later(read);
    ctx.add_rejection(StoredRejection{txn.node, txn.node_seq, s.principal.user, why.code(), why.message()});
    run.results.push_back(std::move(result));
    return Status::ok();
  }

  TxnApplication& app = applied.value();
  for (const RecordState& rec : app.records) ctx.save(rec);
  ServerTxn st;
  st.origin_node = txn.node;
  st.origin_user = s.principal.user;
  st.origin_node_seq = txn.node_seq;
  st.changes = std::move(app.effective);
  st.moves = std::move(app.moves);
  result.conflicts = app.conflicts;
  std::vector<ScopeKey> scopes = log_scopes(st, app.conflicts, reader, app.scopes);  // the state it leaves
  if (!reader.status()) return retry_later(reader.status());
  const bool moves = !st.moves.empty();
  TailEntry entry{st, scopes, app.conflicts};  // the store takes its own copy
  const uint64_t seq = ctx.append_log(std::move(st), std::move(app.conflicts), std::move(scopes));
  run.last_seq = seq;
  entry.txn.server_seq = seq;
  for (ConflictRecord& c : entry.conflicts) c.server_seq = seq;
  run.applied.push_back(AppliedInRun{std::move(entry), std::move(app.scopes), moves});
  result.outcome = protocol::TxnOutcome::kApplied;
  result.server_seq = seq;
  for (ConflictRecord& c : result.conflicts) c.server_seq = seq;
  run.results.push_back(std::move(result));
  return Status::ok();
}

Result<std::vector<protocol::TxnResult>> SyncServer::commit_run(ApplyRun& run) {
  ApplyRun done = std::move(run);
  run = ApplyRun{};
  if (!done.wrote) return std::move(done.results);  // duplicates only: nothing to commit
  done.ctx->set_node_state(done.node);
  done.ctx->set_clock(done.clock.last());
  // The store refused the commit (disk full, I/O): nothing of the run is recorded and nothing acknowledged.
  if (Status cs = done.ctx->commit(); !cs) return Status(cs.code(), cs.message(), true);
  clock_ = done.clock;
  for (AppliedInRun& a : done.applied) {
    const uint64_t seq = a.entry.txn.server_seq;
    // The scopes the rules resolved hold from seq on (every record they read was locked by the run, so no
    // commit below seq changed them afterwards). Commits of other writers between scope_cache_head_ and seq
    // are applied when a fan-out reads them; those entries stay until then, and are not used meanwhile.
    if (a.moves) {
      scope_cache_.clear();
      scope_cache_head_ = std::max(scope_cache_head_, seq);
    } else if (seq == scope_cache_head_ + 1) {
      scope_cache_head_ = seq;
    }
    for (const auto& [key, scope] : a.scopes) remember_scope(key, scope, seq);
    remember_log_entry(std::move(a.entry));
  }
  return std::move(done.results);
}

Result<protocol::TxnResult> SyncServer::apply_local(const ClientTxn& txn, const Principal& who,
                                                    int64_t now_ms) {
  observe_time(now_ms);
  if (Status loaded = load_clock(); !loaded) return retry_later(loaded);
  Session local;
  local.authenticated = true;
  local.principal = who;
  local.node = txn.node;
  ApplyRun run;
  if (Status begun = begin_run(run, txn.node); !begun) return begun;
  if (Status applied = apply_in_run(run, local, txn, now_ms); !applied) return applied;
  Result<std::vector<protocol::TxnResult>> done = commit_run(run);
  if (!done) return done.status();
  protocol::TxnResult r = std::move(done->front());
  if (r.outcome == protocol::TxnOutcome::kApplied) request_fan_out();
  return r;
}

// ---- Pull and live
// ---------------------------------------------------------------------------------------------

Result<SyncServer::ResolvedRange> SyncServer::resolve_range(uint64_t from, size_t max_changes,
                                                            const Principal* only_for,
                                                            std::optional<uint64_t> known_head) {
  CheckedStoreReader reader(store_);
  ResolvedRange range;
  range.from = from;
  range.to = from;
  Result<uint64_t> head_read = known_head ? Result<uint64_t>(*known_head) : store_.head_seq();
  if (!head_read) return head_read.status();
  const uint64_t head = *head_read;
  std::optional<std::vector<ScopeKey>> scopes;
  if (only_for != nullptr) scopes = visible_scopes(*only_for);
  const bool from_tail = tail_covers(from, head);
  if (from_tail) {
    // What the store's read_log / read_log_for and read_conflicts would return, from memory.
    auto first = std::upper_bound(log_tail_.begin(), log_tail_.end(), from,
                                  [](uint64_t seq, const TailEntry& e) { return seq < e.txn.server_seq; });
    size_t changes = 0;
    range.to = head;
    for (auto it = first; it != log_tail_.end(); ++it) {
      if (scopes) {
        bool filed = false;  // under one of the principal's keys (both lists sorted)
        for (auto a = it->scopes.begin(), b = scopes->begin(); a != it->scopes.end() && b != scopes->end();) {
          if (*a == *b) {
            filed = true;
            break;
          }
          if (*a < *b) {
            ++a;
          } else {
            ++b;
          }
        }
        if (!filed) continue;
      }
      range.txns.push_back(it->txn);
      range.conflicts.insert(range.conflicts.end(), it->conflicts.begin(), it->conflicts.end());
      changes += it->txn.changes.size();
      if (changes >= max_changes) {
        range.to = it->txn.server_seq;
        break;
      }
    }
  } else if (scopes) {
    // What lies between two returned transactions holds nothing for this principal: the range reaches the
    // head unless the read stopped at max_changes.
    Result<CentralStore::LogSlice> slice = store_.read_log_for(from, head, *scopes, max_changes);
    if (!slice) return slice.status();
    range.txns = std::move(slice->txns);
    range.to = std::max(from, slice->searched_to);
  } else {
    Result<std::vector<ServerTxn>> txns = store_.read_log(from, max_changes);
    if (!txns) return txns.status();
    range.txns = std::move(txns.value());
  }
  if (!scopes) {
    // Every entry after `from` up to where the read stopped: what they did to records' scopes is known now.
    if (!from_tail && !range.txns.empty()) range.to = range.txns.back().server_seq;
    advance_scope_cache(from, range.txns);
  }
  // A record loaded now has at least the state of every commit up to here.
  const uint64_t loaded_at = std::max(head, range.to);
  auto resolve = [&](EntityId entity, const RecordId& id) {
    RecordKey key{entity, id};
    if (range.scopes.count(key)) return;
    if (const ScopeKey* cached = cached_scope(key, head)) {
      range.scopes.emplace(key, *cached);
      return;
    }
    // Scope is judged on current state, so a record that moved away is not sent to its old scope.
    if (std::optional<RecordState> rec = reader.load(entity, id)) {
      ScopeKey scope = resolve_scope(*rec, reader);
      if (!reader.status()) return;  // the range is dropped below; nothing read through a failure is kept
      remember_scope(key, scope, loaded_at);
      range.scopes.emplace(key, std::move(scope));
    }
  };
  for (const ServerTxn& txn : range.txns)
    for (const Change& c : txn.changes) resolve(c.entity, c.record);
  if (from_tail) {
    // conflicts came with the entries
  } else if (scopes) {
    // Every conflict that can concern the principal belongs to a transaction read above: its record's
    // scope, or the user it names, filed that transaction under the principal's keys (log_scopes).
    for (const ServerTxn& txn : range.txns) {
      Result<std::vector<ConflictRecord>> cs = store_.read_conflicts(txn.server_seq - 1, txn.server_seq);
      if (!cs) return cs.status();
      range.conflicts.insert(range.conflicts.end(), std::make_move_iterator(cs->begin()),
                             std::make_move_iterator(cs->end()));
    }
  } else {
    Result<std::vector<ConflictRecord>> cs = store_.read_conflicts(from, range.to);
    if (!cs) return cs.status();
    range.conflicts = std::move(cs.value());
  }
  for (const ConflictRecord& c : range.conflicts) resolve(c.entity, c.record);
  if (!reader.status()) return reader.status();
  for (size_t i = 0; i < range.txns.size(); ++i) {
    const ServerTxn& txn = range.txns[i];
    if (!txn.moves.empty()) range.txns_with_moves.push_back(i);
    for (const Change& c : txn.changes) {
      auto it = range.scopes.find(RecordKey{c.entity, c.record});
      if (it == range.scopes.end()) continue;
      std::vector<size_t>& at = range.txns_by_scope[it->second];
      if (at.empty() || at.back() != i) at.push_back(i);
    }
  }
  range.has_more = range.to < head;
  return range;
}

void SyncServer::remember_log_entry(TailEntry entry) {
  if (!log_tail_.empty() && log_tail_.back().txn.server_seq + 1 != entry.txn.server_seq) {
    log_tail_.clear();  // another writer committed in between: the run starts over here
    log_tail_changes_ = 0;
  }
  log_tail_changes_ += entry.txn.changes.size();
  log_tail_.push_back(std::move(entry));
  while (log_tail_changes_ > tuning::kMaxLogTailChanges && log_tail_.size() > 1) {
    log_tail_changes_ -= log_tail_.front().txn.changes.size();
    log_tail_.pop_front();
  }
}

bool SyncServer::tail_covers(uint64_t from, uint64_t head) const {
  return from <= head && !log_tail_.empty() && log_tail_.back().txn.server_seq == head &&
         log_tail_.front().txn.server_seq <= from + 1;
}

void SyncServer::remember_scope(const RecordKey& key, const ScopeKey& scope, uint64_t valid_at) {
  if (scope.kind == ScopeKey::Kind::kUnresolved) {
    scope_cache_.erase(key);
    return;
  }
  auto it = scope_cache_.find(key);
  if (it == scope_cache_.end()) {
    if (scope_cache_.size() >= tuning::kMaxCachedScopes) scope_cache_.clear();
    scope_cache_.emplace(key, CachedScope{scope, valid_at});
  } else if (it->second.valid_at <= valid_at) {  // never replaced by what was known earlier
    it->second = CachedScope{scope, valid_at};
  }
}

const ScopeKey* SyncServer::cached_scope(const RecordKey& key, uint64_t head) const {
  auto it = scope_cache_.find(key);
  if (it == scope_cache_.end()) return nullptr;
  // Known at the head itself, or every commit up to the head applied since (none touched it).
  if (it->second.valid_at < head && scope_cache_head_ < head) return nullptr;
  return &it->second.scope;
}

namespace {

// The scope a transaction of the log leaves `key` in, if the transaction itself says it: a record of a
// territory- or owner-scoped entity whose scope field the transaction set (its last effective set wins).
// nullopt: the transaction does not say (a record under a parent, or one whose scope field it did not set).
std::optional<ScopeKey> scope_set_by(const ServerTxn& txn, const RecordKey& key) {
  const schema::EntityDef* e = schema::entity(key.entity);
  if (e == nullptr) return std::nullopt;
  ScopeKey::Kind kind = ScopeKey::Kind::kUnresolved;
  switch (e->scope.kind) {
    case schema::ScopeKind::kTerritory:
      kind = ScopeKey::Kind::kTerritory;
      break;
    case schema::ScopeKind::kOwner:
      kind = ScopeKey::Kind::kOwner;
      break;
    default:
      return std::nullopt;
  }
  std::optional<ScopeKey> out;
  for (const Change& c : txn.changes) {
    if (c.entity != key.entity || c.record != key.id || c.field != e->scope.field) continue;
    if (c.op != ChangeOp::kSet) {  // an append to the scope field: not a value the transaction states
      out.reset();
      continue;
    }
    // What resolve_scope makes of the value (an empty or non-text scope field resolves nowhere).
    if (c.value.kind() == Value::Kind::kText && !c.value.as_text().empty()) {
      out = ScopeKey{kind, c.value.as_text()};
    } else {
      out = ScopeKey{ScopeKey::Kind::kUnresolved, {}};
    }
  }
  return out;
}

}  // namespace

void SyncServer::advance_scope_cache(uint64_t from, const std::vector<ServerTxn>& txns) {
  if (from > scope_cache_head_) {  // (scope_cache_head_, from] was never seen here
    scope_cache_.clear();
    scope_cache_head_ = from;
  }
  for (const ServerTxn& txn : txns) {
    const uint64_t seq = txn.server_seq;
    if (seq <= scope_cache_head_) continue;  // applied already
    if (seq != scope_cache_head_ + 1 || !txn.moves.empty()) {
      scope_cache_.clear();  // a gap in what was read (never in a store's log), or a move
    } else {
      for (const Change& c : txn.changes) {
        auto it = scope_cache_.find(RecordKey{c.entity, c.record});
        if (it != scope_cache_.end() && it->second.valid_at < seq) scope_cache_.erase(it);
      }
    }
    scope_cache_head_ = seq;
    RecordKey last;  // a transaction's changes come record by record
    for (const Change& c : txn.changes) {
      RecordKey key{c.entity, c.record};
      if (key == last) continue;
      last = key;
      if (std::optional<ScopeKey> scope = scope_set_by(txn, key)) remember_scope(key, *scope, seq);
    }
  }
}

Result<protocol::ChangeBatch> SyncServer::batch_for(const Session& s, const ResolvedRange& range,
                                                    uint64_t request_id) {
  CheckedStoreReader reader(store_);
  auto sees = [&](EntityId entity, const RecordId& id) {
    auto it = range.scopes.find(RecordKey{entity, id});
    return it != range.scopes.end() && can_see(s.principal, it->second);
  };
  protocol::ChangeBatch batch;
  batch.request_id = request_id;
  batch.from_cursor = range.from;
  batch.to_cursor = range.to;
  // Scope moves in this range: for each moved record, whether the receiver could see it before the first
  // move.
  std::map<RecordKey, bool> moved_was_visible;
  for (size_t i : range.txns_with_moves)
    for (const ScopeMove& mv : range.txns[i].moves)
      moved_was_visible.emplace(RecordKey{mv.entity, mv.record}, can_see(s.principal, mv.from));
  // The transactions that change a record in one of the receiver's scopes (all of them for head office),
  // in log order.
  std::vector<size_t> candidates;
  if (const std::optional<std::vector<ScopeKey>> mine = visible_scopes(s.principal)) {
    for (const ScopeKey& k : *mine)
      if (auto it = range.txns_by_scope.find(k); it != range.txns_by_scope.end())
        candidates.insert(candidates.end(), it->second.begin(), it->second.end());
    std::sort(candidates.begin(), candidates.end());
    candidates.erase(std::unique(candidates.begin(), candidates.end()), candidates.end());
  } else {
    for (size_t i = 0; i < range.txns.size(); ++i) candidates.push_back(i);
  }
  for (size_t i : candidates) {
    const ServerTxn& txn = range.txns[i];
    // A device already has its own changes; everything else is sent if the record is in the receiver's scope.
    if (txn.origin_node == s.node) continue;
    std::vector<Change> kept;
    for (const Change& c : txn.changes)
      if (sees(c.entity, c.record)) kept.push_back(c);
    if (kept.empty()) continue;
    ServerTxn out;
    out.server_seq = txn.server_seq;
    out.origin_node = txn.origin_node;
    out.origin_user = txn.origin_user;
    out.origin_node_seq = txn.origin_node_seq;
    out.changes = std::move(kept);
    batch.txns.push_back(std::move(out));
  }
  // A record that entered the receiver's scope arrives whole, with everything that hangs off it; one that
  // left is purged with its dependents. Neither needs a resync of anything else.
  for (const auto& [key, was] : moved_was_visible) {
    std::optional<RecordState> root = reader.load(key.entity, key.id);
    bool now = root && visible(s.principal, *root, reader);
    // Visible at both ends may still have been out of scope in between (moved away and back): the device may
    // have dropped it meanwhile, so it gets the record again; merging it is idempotent.
    if ((!was && !now) || !root) continue;
    std::vector<RecordState> family{std::move(*root)};
    for (size_t i = 0; i < family.size(); ++i) {
      for (RecordState& child : reader.keep(store_.scope_children(family[i].entity, family[i].id)))
        family.push_back(std::move(child));
    }
    for (RecordState& r : family) {
      if (now) {
        // Back after a move away: what was deleted meanwhile goes too (as its tombstone). The delete was
        // filed under the scope it had then, so a catch-up reading this scope's part of the log never saw it.
        if (!r.deleted || was) batch.records.push_back(std::move(r));
      } else {
        batch.purges.push_back(RecordKey{r.entity, r.id});
      }
    }
  }
  for (const ConflictRecord& c : range.conflicts) {
    if (c.winner.user == s.principal.user || c.loser.user == s.principal.user || sees(c.entity, c.record))
      batch.conflicts.push_back(c);
  }
  if (!reader.status()) return reader.status();
  batch.has_more = range.has_more;
  batch.server_hlc = clock_.last();
  return batch;
}

Result<protocol::ChangeBatch> SyncServer::build_batch(const Session& s, uint64_t from, size_t max_changes,
                                                      uint64_t request_id) {
  Result<ResolvedRange> range = resolve_range(from, max_changes, &s.principal);
  if (!range) return range.status();
  return batch_for(s, *range, request_id);
}

bool SyncServer::handle_pull(SessionId id, Session& s, const protocol::PullRequest& m) {
  const bool solicited = s.pull_solicited && m.cursor == s.solicited_cursor;
  Result<uint64_t> head_read = store_.head_seq();
  if (!head_read) {
    send_error(id, retry_later(head_read.status()), m.request_id, false);  // the device pulls again later
    return false;
  }
  s.pull_solicited = false;
  const uint64_t head = *head_read;
  if (m.cursor > head) {
    // The device claims to be ahead of this server (restored from an older backup): refuse rather than skip.
    send_error(id,
               Status(ErrorCode::kInvalidArgument, "cursor " + std::to_string(m.cursor) +
                                                       " is ahead of the server's log (" +
                                                       std::to_string(head) + ")"),
               m.request_id);
    return false;
  }
  size_t max_changes = m.max_changes == 0 ? tuning::kMaxChangesPerPull
                                          : std::min<size_t>(m.max_changes, tuning::kMaxChangesPerPull);
  Result<protocol::ChangeBatch> built = build_batch(s, m.cursor, max_changes, m.request_id);
  if (!built) {
    send_error(id, retry_later(built.status()), m.request_id, false);
    return false;
  }
  protocol::ChangeBatch& batch = built.value();
  // A stretch of the log with nothing for this device (above all its own transactions: a device that pushed
  // a backlog pulls past every one of them) is read on, up to kPullScanBudget changes, instead of answered
  // with an empty batch per kMaxChangesPerPull (each a round trip and a commit on the device).
  for (size_t scanned = max_changes; batch.has_more && scanned < tuning::kPullScanBudget;
       scanned += max_changes) {
    if (!batch.txns.empty() || !batch.conflicts.empty() || !batch.records.empty() || !batch.purges.empty())
      break;
    Result<protocol::ChangeBatch> next = build_batch(s, batch.to_cursor, max_changes, m.request_id);
    if (!next) {
      send_error(id, retry_later(next.status()), m.request_id, false);
      return false;
    }
    next->from_cursor = batch.from_cursor;
    batch = std::move(next.value());
  }
  drop_held(s);  // this answer covers what was held
  s.sent_cursor = s.scanned_cursor = batch.to_cursor;
  s.cursor_sent_ms = now_ms_;
  s.live = m.live && !batch.has_more;
  if (batch.has_more) solicit_pull(s, batch.to_cursor);
  queue(id, s, std::move(batch));
  continue_scope_change(id, s);  // a principal change that came while it caught up
  return solicited;
}

void SyncServer::update_principal(const Principal& principal, int64_t now_ms) {
  observe_time(now_ms);
  for (auto& [id, s] : sessions_) {
    if (!s.authenticated || s.principal.user != principal.user || closing_.count(id)) continue;
    if (s.principal.role == principal.role && s.principal.territories == principal.territories &&
        s.principal.team == principal.team)
      continue;
    if (!s.scope_pending) s.scope_base = visible_scopes(s.principal);
    s.scope_pending = true;
    s.scope_lost_phase = false;
    s.scope_after = RecordKey{};
    index_session(id, s, false);
    s.principal = principal;
    index_session(id, s, true);
    continue_scope_change(id, s);
  }
}

void SyncServer::continue_scope_change(SessionId id, Session& s) {
  if (!s.scope_pending || !s.live || s.backlogged || closing_.count(id)) return;
  const std::optional<std::vector<ScopeKey>> now = visible_scopes(s.principal);
  if (!s.scope_base || !now) {  // to or from head office: the next bootstrap
    s.scope_pending = false;
    return;
  }
  auto minus = [](const std::vector<ScopeKey>& a, const std::vector<ScopeKey>& b) {
    std::vector<ScopeKey> out;
    for (const ScopeKey& k : a)
      if (std::find(b.begin(), b.end(), k) == b.end()) out.push_back(k);
    return out;
  };
  const std::vector<ScopeKey> gained = minus(*now, *s.scope_base), lost = minus(*s.scope_base, *now);
  CheckedStoreReader reader(store_);
  for (size_t pages = 0; pages < tuning::kMaxPendingLiveBatches;) {
    const std::vector<ScopeKey>& scopes = s.scope_lost_phase ? lost : gained;
    Result<std::vector<RecordState>> chunk =
        scopes.empty() ? Result<std::vector<RecordState>>(std::vector<RecordState>{})
                       : store_.scan_in_scopes(scopes, s.scope_after, tuning::kBootstrapPageRecords);
    if (!chunk) return;  // the next poll tries again from here
    if (chunk->empty()) {
      if (s.scope_lost_phase) {
        s.scope_pending = false;
        return;
      }
      s.scope_lost_phase = true;
      s.scope_after = RecordKey{};
      continue;
    }
    const RecordKey next{chunk->back().entity, chunk->back().id};
    protocol::ChangeBatch batch;
    batch.from_cursor = batch.to_cursor = s.sent_cursor;  // no log range: the device's cursor stays
    for (RecordState& r : *chunk) {
      const bool sees = visible(s.principal, r, reader);
      if (!s.scope_lost_phase && sees && !r.deleted) {
        batch.records.push_back(std::move(r));
      } else if (s.scope_lost_phase && !sees) {
        batch.purges.push_back(RecordKey{r.entity, r.id});
      }
    }
    if (!reader.status()) return;
    s.scope_after = next;
    if (batch.records.empty() && batch.purges.empty()) continue;
    batch.server_hlc = clock_.last();
    queue(id, s, std::move(batch));
    ++pages;
  }
}

void SyncServer::poll_external_commits(int64_t now_ms) {
  observe_time(now_ms);
  for (auto& [id, s] : sessions_)
    if (s.scope_pending) continue_scope_change(id, s);
  Result<uint64_t> head = store_.head_seq();
  if (!head) return;  // the next poll tries again
  if (*head <= fanned_out_head_ && !fan_out_pending_ && !fan_out_retry_) return;
  // The head just read serves the first round (one round trip less per notification from another instance).
  std::optional<uint64_t> known = *head;
  while (wake_live_sessions(0, std::exchange(known, std::nullopt)) && fan_out_pending_ &&
         !config_.defer_fan_out) {
  }  // deferred: the driver's next fan_out() continues
}

bool SyncServer::wake_live_sessions(SessionId, std::optional<uint64_t> known_head) {
  fan_out_pending_ = false;
  Result<uint64_t> head_read = known_head ? Result<uint64_t>(*known_head) : store_.head_seq();
  if (!head_read) {
    fan_out_retry_ = true;
    return false;
  }
  fan_out_retry_ = false;
  const uint64_t head = *head_read;
  fanned_out_head_ = head;
  // Every live session has checked the log up to some scanned_cursor, normally the previous head: one log
  // read and one scope resolution per touched record serve all sessions at that position, and each session
  // then only filters by its principal. A session the new commits do not concern just moves its
  // scanned_cursor, so it never reads them again.
  std::map<uint64_t, std::pair<ResolvedRange, std::set<SessionId>>> ranges;
  std::set<uint64_t> failed_cursors;
  if (session_list_.size() != sessions_.size()) {
    session_list_.clear();
    for (auto& [id, s] : sessions_) session_list_.emplace_back(id, &s);
  }
  for (auto [id, sp] : session_list_) {
    Session& s = *sp;
    if (!s.authenticated || !s.live || s.catch_up_on_drain || s.scanned_cursor >= head ||
        (!closing_.empty() && closing_.count(id)))
      continue;
    // A failed read leaves the sessions it concerns where they are (their scanned_cursor): the next fan-out,
    // the next poll_external_commits or their own idle pull brings them the rest.
    if (failed_cursors.count(s.scanned_cursor)) continue;
    auto it = ranges.find(s.scanned_cursor);
    if (it == ranges.end()) {
      Result<ResolvedRange> range =
          resolve_range(s.scanned_cursor, tuning::kMaxChangesPerLiveScan, nullptr, head);
      if (!range) {
        failed_cursors.insert(s.scanned_cursor);
        fan_out_retry_ = true;
        continue;
      }
      std::set<SessionId> who = interested_in(*range);
      it = ranges.emplace(s.scanned_cursor, std::make_pair(std::move(range.value()), std::move(who))).first;
    }
    const auto& [range, who] = it->second;
    protocol::ChangeBatch batch;
    if (who.count(id)) {
      Result<protocol::ChangeBatch> built = batch_for(s, range, 0);
      if (!built) {
        fan_out_retry_ = true;
        continue;
      }
      batch = std::move(built.value());
    } else {  // nothing in the range for this session: what batch_for would find, without looking
      batch.from_cursor = range.from;
      batch.to_cursor = range.to;
      batch.has_more = range.has_more;
      batch.server_hlc = clock_.last();
    }
    if (batch.has_more) {
      // A flush bigger than one live scan (many large orders at once): the session stays live and the next
      // fan-out continues from where this batch ends. Telling the device "more" would send all of them to
      // pull the rest a kMaxChangesPerPull at a time (in the large-order load shape, 90% of deliveries).
      batch.has_more = false;
      fan_out_pending_ = true;
    }
    if (s.backlogged) {
      hold_live(s, std::move(batch));
    } else {
      send_live(id, s, std::move(batch));
    }
  }
  return !fan_out_retry_;
}

void SyncServer::hold_live(Session& s, protocol::ChangeBatch batch) {
  const bool empty =
      batch.txns.empty() && batch.conflicts.empty() && batch.records.empty() && batch.purges.empty();
  if (empty) {
    s.scanned_cursor = batch.to_cursor;
    if (s.holding) s.held.to_cursor = batch.to_cursor, s.held.server_hlc = batch.server_hlc;
    return;
  }
  size_t changes = 0;
  for (const ServerTxn& t : batch.txns) changes += t.changes.size();
  // Two batches concatenate only when they are plain runs of transactions (wake_live_sessions never hands
  // over one cut short): records entering or leaving the scope are left to the catch-up read at the drain.
  if (!batch.records.empty() || !batch.purges.empty() ||
      s.held_changes + changes > tuning::kMaxHeldLiveChanges) {
    drop_held(s);
    s.scanned_cursor = s.sent_cursor;
    s.catch_up_on_drain = true;
    return;
  }
  s.scanned_cursor = batch.to_cursor;
  s.held_changes += changes;
  if (!s.holding) {
    s.held = std::move(batch);
    s.holding = true;
    return;
  }
  s.held.to_cursor = batch.to_cursor;
  s.held.server_hlc = batch.server_hlc;
  std::move(batch.txns.begin(), batch.txns.end(), std::back_inserter(s.held.txns));
  std::move(batch.conflicts.begin(), batch.conflicts.end(), std::back_inserter(s.held.conflicts));
}

void SyncServer::drop_held(Session& s) {
  s.held = {};
  s.holding = false;
  s.held_changes = 0;
  s.catch_up_on_drain = false;
}

void SyncServer::send_live(SessionId id, Session& s, protocol::ChangeBatch batch) {
  const bool empty =
      batch.txns.empty() && batch.conflicts.empty() && batch.records.empty() && batch.purges.empty();
  if (empty && !batch.has_more) {
    s.scanned_cursor = batch.to_cursor;
    // Only now and then does an empty batch move the device's own cursor forward: a rep whose territory is
    // quiet while the rest of the company is busy would otherwise get a frame every few commits of others
    // (a radio wake-up on a phone each time; at a thousand busy reps, most of the server's frames).
    if (s.scanned_cursor - s.sent_cursor < tuning::kLiveSkipAdvance ||
        now_ms_ - s.cursor_sent_ms < tuning::kLiveSkipAdvanceMs)
      return;
  }
  // The batch starts where the device is: what lies between it and scanned_cursor held nothing for it.
  batch.from_cursor = s.sent_cursor;
  s.sent_cursor = s.scanned_cursor = batch.to_cursor;
  s.cursor_sent_ms = now_ms_;
  if (batch.has_more) {  // the device pulls the rest itself
    s.live = false;
    solicit_pull(s, batch.to_cursor);
  }
  queue(id, s, std::move(batch));
}

void SyncServer::set_backlogged(SessionId id, bool backlogged) {
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return;
  Session& s = it->second;
  s.backlogged = backlogged;
  if (backlogged || !s.authenticated || !s.live || closing_.count(id)) return;
  if (s.holding) {
    protocol::ChangeBatch held = std::move(s.held);
    drop_held(s);
    send_live(id, s, std::move(held));
    return;
  }
  const bool catch_up = std::exchange(s.catch_up_on_drain, false);
  if (!catch_up) return;
  // Its own part of the log only: sessions drain at different moments, so there is no range to share. A
  // failed read leaves it at its scanned_cursor, where the next fan-out (or poll) continues.
  Result<protocol::ChangeBatch> batch = build_batch(s, s.scanned_cursor, tuning::kMaxChangesPerLiveScan, 0);
  if (!batch) {
    fan_out_retry_ = true;
    return;
  }
  if (batch->to_cursor <= s.scanned_cursor && !batch->has_more) return;  // nothing new
  send_live(id, s, std::move(batch.value()));
}

void SyncServer::request_fan_out() {
  fan_out_pending_ = true;
  if (config_.defer_fan_out) return;
  // Until every live session has been sent everything, or a store read failed (then retried later).
  while (fan_out_pending_ && wake_live_sessions(0)) {
  }
}

void SyncServer::fan_out(int64_t now_ms) {
  observe_time(now_ms);
  if (fan_out_pending_) (void)wake_live_sessions(0);
}

// ---- Bootstrap
// -------------------------------------------------------------------------------------------------

void SyncServer::continue_bootstrap(SessionId id, int64_t now_ms) {
  observe_time(now_ms);
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return;
  Session& s = it->second;
  if (closing_.count(id)) s.owed_pages = 0;  // nothing more is sent on a closing session
  if (s.owed_pages == 0) return;
  protocol::BootstrapRequest next;
  next.request_id = s.owed_request;
  next.snapshot_seq = s.owed_snapshot;
  next.page_token = s.solicited_page;
  next.page_size = s.owed_page_size;
  next.max_pages = s.owed_pages;
  (void)handle_bootstrap(id, s, next, true);
}

Result<std::vector<std::vector<uint8_t>>> CentralStore::scan_stored_in_scopes(
    const std::vector<ScopeKey>& scopes, RecordKey after, size_t max_records) {
  Result<std::vector<RecordState>> records = scan_in_scopes(scopes, after, max_records);
  if (!records) return records.status();
  std::vector<std::vector<uint8_t>> out;
  out.reserve(records->size());
  for (const RecordState& r : *records) out.push_back(codec::encode_record(r));
  return out;
}

bool SyncServer::handle_bootstrap(SessionId id, Session& s, const protocol::BootstrapRequest& m,
                                  bool continued) {
  const bool solicited = !continued && !s.solicited_page.empty() && m.page_token == s.solicited_page;
  s.owed_pages = 0;  // a new request replaces what was owed for an older one
  // Every read goes through `reader`: after a failure no page of the request is sent. The device is told to
  // retry and the session closes (a bootstrapping device asks again after it reconnects, from the page it
  // has).
  CheckedStoreReader reader(store_);
  auto failed = [&] {
    send_error(id, retry_later(reader.status()), m.request_id);
    return false;
  };
  // A rep's or manager's pages come from its own scopes (the store narrows through its scope columns);
  // head office's from everything. Every record is still judged by `visible`.
  const std::optional<std::vector<ScopeKey>> scopes = visible_scopes(s.principal);
  auto scan = [&](RecordKey after, size_t max) {
    return reader.keep(scopes ? store_.scan_in_scopes(*scopes, after, max) : store_.scan(after, max));
  };
  const uint64_t head = reader.keep(store_.head_seq());
  if (!reader.status()) return failed();
  s.solicited_page.clear();
  PageToken token;
  uint64_t snapshot = m.snapshot_seq;
  bool restart = m.snapshot_seq == 0 || m.snapshot_seq > head;
  if (!restart && !m.page_token.empty()) {
    std::optional<PageToken> t = decode_token(m.page_token);
    if (!t) {
      send_error(id, Status(ErrorCode::kInvalidArgument, "bad bootstrap page token"), m.request_id);
      return false;
    }
    token = *t;
  } else if (!restart) {
    restart = true;  // a snapshot without a page position: start over
  }
  if (restart) {
    // The snapshot is "every live record now"; changes committed after `snapshot` may already be in the
    // pages, and the pulls from `snapshot` re-apply them idempotently. The total is for progress only: the
    // store counts what its scan would return (an index count, no record read), which may exceed what is
    // visible (the device shows the larger of total and received).
    snapshot = head;
    token = PageToken{};
    token.total = reader.keep(store_.count_in_scopes(scopes));
    if (!reader.status()) return failed();
  }

  // A backfill (from_schema != 0): only the entities and fields that appeared after the device's old schema
  // version, up to the session's. Entities with nothing new are skipped without being read.
  const uint32_t backfill_from = m.from_schema != 0 && m.from_schema < s.schema ? m.from_schema : 0;
  const bool backfill = m.from_schema != 0;
  // The first key at or after `after`'s entity that a backfill has to look at (nullopt: none left).
  auto backfill_skip = [&](RecordKey after) -> std::optional<RecordKey> {
    if (!backfill) return after;
    for (const schema::EntityDef& e : schema::entities()) {
      if (e.id < after.entity || !projection::entity_has_newer_parts(e, backfill_from, s.schema)) continue;
      if (backfill_from == 0) return std::nullopt;
      return e.id == after.entity ? after : RecordKey{e.id, RecordId{}};
    }
    return std::nullopt;
  };
  if (restart && backfill) token.total = 0;  // counted as the pages go: the store counts whole scopes

  const size_t page_size = m.page_size == 0 ? tuning::kBootstrapPageRecords
                                            : std::min<size_t>(m.page_size, tuning::kBootstrapPageRecords);
  // Version 2: up to max_pages consecutive pages for this one request (version 1: one).
  const size_t asked =
      s.version >= 2 ? std::clamp<size_t>(m.max_pages, 1, tuning::kMaxBootstrapPagesPerRequest) : 1;
  const size_t max_pages = config_.bootstrap_in_steps ? 1 : asked;
  // Records as stored, for a session whose frames are the version-2 columns of the current schema: nothing
  // to project, no backfill, and scopes to narrow by (head office's scan keeps decoded records).
  const bool stored =
      config_.stored_pages && scopes && s.version >= 2 && s.schema >= schema::kSchemaVersion && !backfill;
  auto page_records = [](const protocol::BootstrapPage& p) { return p.records.size() + p.stored.size(); };
  std::vector<protocol::BootstrapPage> pages;
  bool end = false;
  while (!end && pages.size() < max_pages) {
    protocol::BootstrapPage& page = pages.emplace_back();
    page.request_id = m.request_id;
    page.snapshot_seq = snapshot;
    page.total_records = token.total;
    page.records_before = token.sent;
    size_t scanned = 0;
    RecordKey after = token.after;
    while (page_records(page) < page_size && scanned < tuning::kBootstrapScanBudget) {
      const std::optional<RecordKey> from = backfill_skip(after);
      if (!from) {
        end = true;
        break;
      }
      after = *from;
      if (stored) {
        std::vector<std::vector<uint8_t>> chunk =
            reader.keep(store_.scan_stored_in_scopes(*scopes, after, page_size - page_records(page)));
        if (chunk.empty()) {
          end = true;
          break;
        }
        scanned += chunk.size();
        for (std::vector<uint8_t>& bytes : chunk) {
          Result<codec::CheckedRecord> r = codec::check_stored_record(std::move(bytes));
          if (!r) {
            (void)reader.keep(Result<bool>(
                Status(ErrorCode::kInternal, "corrupt stored record: " + r.status().to_string())));
            return failed();
          }
          after = RecordKey{r->scope.entity, r->scope.id};
          // Judged like a decoded record: resolve_scope reads the entity and the scope field only.
          if (visible(s.principal, r->scope, reader)) page.stored.push_back(std::move(r->record));
        }
        continue;
      }
      std::vector<RecordState> chunk = scan(after, page_size - page.records.size());
      if (chunk.empty()) {
        end = true;
        break;
      }
      scanned += chunk.size();
      after = RecordKey{chunk.back().entity, chunk.back().id};
      for (RecordState& r : chunk) {
        if (!visible(s.principal, r, reader)) continue;  // judged on the whole record (its scope fields)
        if (backfill && !projection::newer_part(r, backfill_from, s.schema)) continue;
        page.records.push_back(std::move(r));
      }
    }
    if (!end) {
      const std::optional<RecordKey> from = backfill_skip(after);
      if (!from || scan(*from, 1).empty()) end = true;
    }
    if (backfill) page.total_records = token.total = std::max(token.total, token.sent + page.records.size());
    if (!reader.status()) return failed();
    token.sent += page_records(page);
    token.after = after;
    page.done = end;
    if (!end) page.next_page_token = encode_token(token);
  }
  protocol::BootstrapPage& last = pages.back();
  // A device that wrote offline before its first sync may hold records it created that left its scope before
  // this snapshot; nothing else would ever tell it. (Records it can see are in the pages; tombstones too.) A
  // node with no transaction applied or rejected created nothing here: a fresh device skips this. Otherwise
  // the store lists what the node created (its own writes, not the store).
  if (end && !backfill && reader.keep(store_.node_state(s.node)).last_node_seq > 0) {
    for (const RecordKey& key : reader.keep(store_.keys_created_by(s.node))) {
      if (last.purges.size() >= tuning::kMaxRecordsPerMessage) break;
      std::optional<RecordState> r = reader.keep(store_.load(key.entity, key.id));
      if (r && r->created.node == s.node && !visible(s.principal, *r, reader)) last.purges.push_back(key);
    }
  }
  if (!reader.status()) return failed();
  if (!end) {
    s.solicited_page = last.next_page_token;
    if (asked > pages.size()) {  // bootstrap_in_steps: the rest comes from continue_bootstrap
      s.owed_pages = static_cast<uint32_t>(asked - pages.size());
      s.owed_request = m.request_id;
      s.owed_snapshot = snapshot;
      s.owed_page_size = static_cast<uint32_t>(page_size);
    }
  } else {
    solicit_pull(s, snapshot);  // the device pulls from the snapshot next
  }
  for (protocol::BootstrapPage& page : pages) queue(id, s, std::move(page));
  return solicited;
}

}  // namespace fieldsync
