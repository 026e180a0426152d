// The end of a simulated run: healing, settling, and the checker (convergence, no acknowledged write lost,
// exactly-once, rejections delivered) and the report.
#include "fieldsync/sync/projection.h"
#include "simulation.h"

namespace fieldsync::sim::detail {

bool Simulation::quiescent() const {
  if (!in_flight_.empty()) return false;
  for (const auto& n : nodes_) {
    if (!n->client || n->session == 0 || n->closing) return false;
    if (n->client->state() != SyncClient::State::kSyncing || !n->client->idle()) return false;
  }
  return true;
}

bool Simulation::settle_rounds(int max_rounds) {
  for (int round = 0; round < max_rounds; ++round) {
    if (quiescent()) return true;
    advance_to(now_ + kSettleRoundMs);
    check_clocks();
  }
  return quiescent();
}

void Simulation::settle() {
  faults_on_ = false;
  while (!backlogged_.empty()) drain(*backlogged_.begin());
  trace("--- heal: faults off, everyone reconnects ---");
  for (auto& np : nodes_) {
    Node& n = *np;
    (void)n.store->begin()->commit();  // spends a storage failure still armed
    n.partition_until = -1;
    n.next_partition_at = -1;
    if (!n.client || n.client->state() == SyncClient::State::kStopped || n.restart_at >= 0) {
      n.restart_at = -1;
      restart_client(n, "heal");
    }
    n.reconnect_at = now_;
  }
  process_timers();
  bool ok = settle_rounds(kMaxSettleRounds);
  if (ok) {
    // One more explicit round: every client's idle pull comes due, so a lost live notification cannot hide.
    trace("--- quiescent; final pull round ---");
    const int64_t until = now_ + tuning::kIdlePullIntervalMs + 1;
    while (now_ < until) advance_to(std::min(until, now_ + 1'000));
    ok = settle_rounds(kMaxSettleRounds);
  }
  if (!ok) {
    std::string why = cat("not quiescent after ", kMaxSettleRounds, " rounds of ", kSettleRoundMs,
                          "ms: frames in flight ", in_flight_.size());
    for (const auto& n : nodes_) {
      if (!n->client) {
        why += cat("; ", n->name, " has no client");
        continue;
      }
      bool good = n->session != 0 && n->client->state() == SyncClient::State::kSyncing && n->client->idle();
      if (!good)
        why +=
            cat("; ", n->name, " state=", state_name(n->client->state()), n->session ? "" : " disconnected",
                " idle=", n->client->idle(), " outbox=", n->store->outbox().size(),
                " cursor=", n->store->meta().cursor, " stop=", n->client->stop_reason().to_string());
    }
    why += cat("; server head ", central_->head_seq().value());
    fail(why);
  }
  settled_ = ok;
}

std::string Simulation::field_diff(const RecordState& client, const RecordState& server) const {
  std::string out;
  if (client.created != server.created)
    out += cat(" created client=", vstr(client.created), " server=", vstr(server.created), ";");
  std::set<uint16_t> ids;
  for (const auto& f : client.fields) ids.insert(f.field);
  for (const auto& f : server.fields) ids.insert(f.field);
  int shown = 0;
  for (uint16_t id : ids) {
    const FieldState* c = client.field(id);
    const FieldState* s = server.field(id);
    if (c && s && *c == *s) continue;
    if (++shown > 4) {
      out += " ...";
      break;
    }
    auto side = [this](const FieldState* f) {
      if (!f) return std::string("absent");
      std::string s = cat(f->value.debug_string(), " ", vstr(f->version), " by '", f->user, "'");
      if (!f->fragments.empty()) s += cat(" fragments=", f->fragments.size());
      return s;
    };
    out += cat(" field ", field_name(server.entity, id), ": client ", side(c), " / server ", side(s), ";");
  }
  if (out.empty()) out = " (states differ outside the fields: delete bookkeeping)";
  return out;
}

void Simulation::check_end_state() {
  // Read through CentralStore, so the same checks hold whichever store the server ran on. The checker's own
  // reads are never failed on purpose (it reads central_, not server_stores_); a failed one is a broken
  // store.
  std::map<RecordKey, RecordState> server_records;
  for (RecordKey after;;) {
    Result<std::vector<RecordState>> page = central_->scan(after, 1000);
    if (!page) return fail(cat("checker: the server store's scan failed: ", page.status().to_string()));
    if (page->empty()) break;
    after = RecordKey{page->back().entity, page->back().id};
    for (RecordState& r : *page) server_records.emplace(RecordKey{r.entity, r.id}, std::move(r));
  }
  Result<std::vector<ServerTxn>> log_read = central_->read_log(0, SIZE_MAX);
  Result<uint64_t> head = central_->head_seq();
  Result<std::vector<ConflictRecord>> conflicts_read =
      head ? central_->read_conflicts(0, *head) : Result<std::vector<ConflictRecord>>(head.status());
  if (!log_read || !conflicts_read)
    return fail(cat("checker: the server store's log could not be read: ",
                    (log_read ? conflicts_read.status() : log_read.status()).to_string()));
  const std::vector<ServerTxn> log = std::move(log_read).value();
  const std::vector<ConflictRecord> conflicts = std::move(conflicts_read).value();
  std::vector<StoredRejection> rejections;
  if (auto* memory = dynamic_cast<MemoryCentralStore*>(central_.get())) {
    rejections = memory->rejections();
  } else if (opt_.central_rejections) {
    rejections = opt_.central_rejections(*central_);
  } else {
    return fail("checker: no way to list the server store's rejections (SimOptions::central_rejections)");
  }

  // 1. Convergence: every replica holds exactly the server's live records its user may see.
  MapRecordReader reader(server_records);  // a snapshot of the server's records, for the checker
  std::vector<std::pair<const RecordState*, ScopeKey>> live;
  for (const auto& [key, rec] : server_records)
    if (!rec.deleted) live.emplace_back(&rec, resolve_scope(rec, reader));
  for (const auto& np : nodes_) {
    const Node& n = *np;
    const std::map<RecordKey, RecordState> local = n.store->records();
    std::set<RecordKey> expected;
    // Per schema version: a device on an older app holds the server's state projected to its version.
    const uint32_t version = n.config.schema_version;
    for (const auto& [rec, scope] : live) {
      if (!can_see(n.principal, scope)) continue;
      RecordState want = *rec;
      if (!projection::project(want, version)) continue;
      RecordKey key{rec->entity, rec->id};
      expected.insert(key);
      auto it = local.find(key);
      if (it == local.end()) {
        fail(cat("convergence: ", n.name, " lacks ", rec_str(key.entity, key.id), " (live on the server)"));
      } else if (it->second.deleted) {
        fail(cat("convergence: ", n.name, " has ", rec_str(key.entity, key.id),
                 " deleted but it is live on the server"));
      } else if (!(it->second == want)) {
        fail(cat("convergence: ", n.name, " (schema ", version, ") ", rec_str(key.entity, key.id),
                 " differs:", field_diff(it->second, want)));
      }
    }
    for (const auto& [key, rec] : local) {
      if (rec.deleted || expected.count(key)) continue;
      auto it = server_records.find(key);
      std::string server_side = it == server_records.end() ? "absent"
                                : it->second.deleted       ? "deleted"
                                                           : "out of the user's scope";
      fail(cat("convergence: ", n.name, " has ", rec_str(key.entity, key.id), " live; on the server it is ",
               server_side));
    }
  }

  // 3. Exactly once: no client transaction twice in the log.
  std::map<std::pair<NodeId, uint64_t>, uint64_t> in_log;  // -> server_seq
  for (const ServerTxn& t : log) {
    if (t.origin_node == kServerNode) continue;
    auto [it, inserted] = in_log.emplace(std::make_pair(t.origin_node, t.origin_node_seq), t.server_seq);
    if (!inserted)
      fail(cat("exactly once: txn #", t.origin_node_seq, " of ", node_name(t.origin_node),
               " is in the server log twice (seq ", it->second, " and ", t.server_seq, ")"));
  }
  // 3b. Per-node order: a node's transactions enter the log in node_seq order (several pushes in flight
  // included).
  std::map<NodeId, uint64_t> last_in_log;
  for (const ServerTxn& t : log) {
    if (t.origin_node == kServerNode) continue;
    uint64_t& last = last_in_log[t.origin_node];
    if (t.origin_node_seq <= last)
      fail(cat("order: txn #", t.origin_node_seq, " of ", node_name(t.origin_node),
               " entered the log after #", last));
    last = t.origin_node_seq;
  }
  std::map<std::pair<NodeId, uint64_t>, const StoredRejection*> rejected;
  for (const StoredRejection& r : rejections) rejected[{r.node, r.node_seq}] = &r;
  for (const auto& np : nodes_) {
    const Node& n = *np;
    const ReplicaMeta meta = n.store->meta();
    for (uint64_t seq = 1; seq < meta.next_node_seq; ++seq) {
      bool applied = in_log.count({n.node, seq}) > 0;
      bool refused = rejected.count({n.node, seq}) > 0;
      if (applied && refused)
        fail(cat("exactly once: txn #", seq, " of ", n.name, " is both applied and rejected"));
      if (!applied && !refused)
        fail(cat("acknowledged write lost: txn #", seq, " of ", n.name, " is neither applied nor rejected"));
    }
  }

  // 2. No acknowledged write lost.
  for (const auto& [id, server_seq] : acked_) {
    auto it = in_log.find(id);
    if (it == in_log.end())
      fail(cat("acknowledged write lost: txn #", id.second, " of ", node_name(id.first),
               " was acknowledged (seq ", server_seq, ") but is not in the server log"));
    else if (server_seq != 0 && it->second != server_seq)
      fail(cat("ack: txn #", id.second, " of ", node_name(id.first), " was acknowledged as seq ", server_seq,
               " but is seq ", it->second, " in the log"));
  }
  std::set<std::tuple<RecordKey, uint16_t, Version>> losers;
  for (const ConflictRecord& c : conflicts)
    losers.insert({RecordKey{c.entity, c.record}, c.field, c.loser.version});
  std::set<std::tuple<RecordKey, uint16_t, Version>> superseded;
  // A device always sees its own earlier writes, so a later accepted write of the same field by the same
  // node replaced an earlier one knowingly even when its base is a version the server never had (a rejected
  // txn).
  std::map<std::tuple<RecordKey, uint16_t, NodeId>, Version> latest_by_node;
  for (const ServerTxn& t : log)
    for (const Change& c : t.changes) {
      if (c.op != ChangeOp::kSet) continue;
      RecordKey key{c.entity, c.record};
      superseded.insert({key, c.field, c.base});
      Version& latest = latest_by_node[{key, c.field, c.version.node}];
      latest = std::max(latest, c.version);
    }
  for (const auto& [id, server_seq] : in_log) {
    auto pushed = pushed_.find(id);
    if (pushed == pushed_.end()) {
      fail(cat("server log seq ", server_seq, " holds txn #", id.second, " of ", node_name(id.first),
               " that was never pushed"));
      continue;
    }
    check_txn_survived(pushed->second, server_records, losers, superseded, latest_by_node);
  }

  // 4. Rejections reach their writer with the same reason; every outbox drained.
  for (const StoredRejection& r : rejections) {
    auto owner = node_index_.find(r.node);
    if (owner == node_index_.end()) {
      fail(cat("rejection of txn #", r.node_seq, " for unknown node ", r.node));
      continue;
    }
    const Node& n = *nodes_[static_cast<size_t>(owner->second)];
    if (in_log.count({r.node, r.node_seq}))
      fail(cat("rejection: txn #", r.node_seq, " of ", n.name, " is rejected but also in the log"));
    bool found = false;
    for (const Rejection& local : n.store->rejections()) {
      if (local.node_seq != r.node_seq) continue;
      found = true;
      if (local.reason != r.reason)
        fail(cat("rejection: txn #", r.node_seq, " of ", n.name, " rejected by the server for ",
                 to_string(r.reason), " but the client recorded ", to_string(local.reason)));
    }
    if (!found)
      fail(cat("rejection: txn #", r.node_seq, " of ", n.name, " rejected by the server (",
               to_string(r.reason), ": ", r.message, ") but the client never recorded it"));
  }
  for (const auto& np : nodes_) {
    const Node& n = *np;
    for (const Rejection& local : n.store->rejections())
      if (!rejected.count({n.node, local.node_seq}))
        fail(cat("rejection: ", n.name, " recorded txn #", local.node_seq, " as rejected (",
                 to_string(local.reason), ") but the server has no such rejection"));
    size_t outbox = n.store->outbox().size();
    if (outbox != 0) fail(cat("outbox: ", n.name, " still holds ", outbox, " txns at the end"));
  }

  // 6. Conflicts reach every device they concern, exactly once: those committed after its bootstrap
  // snapshot come with the pulls that cover them (protocol.md section 7).
  using ConflictKey = std::tuple<uint64_t, ConflictKind, RecordKey, uint16_t, Version, Version, RecordId>;
  auto conflict_key = [](const ConflictRecord& c) {
    return ConflictKey{c.server_seq,  c.kind,           RecordKey{c.entity, c.record},
                       c.field,       c.winner.version, c.loser.version,
                       c.other_record};
  };
  std::set<RecordId> moved_accounts;  // accounts head office moved to another territory after creating them
  for (const ServerTxn& t : log)
    for (const Change& c : t.changes)
      if (c.op == ChangeOp::kSet && c.entity == EntityId::kAccount &&
          c.field == fid(EntityId::kAccount, "territory_id") &&
          std::none_of(t.changes.begin(), t.changes.end(), [&c](const Change& other) {
            return other.op == ChangeOp::kCreate && other.record == c.record;
          }))
        moved_accounts.insert(c.record);
  std::map<ConflictKey, const ConflictRecord*> logged;
  for (const ConflictRecord& c : conflicts) logged[conflict_key(c)] = &c;
  for (const auto& np : nodes_) {
    const Node& n = *np;
    const uint64_t snapshot = n.store->meta().bootstrap_snapshot_seq;
    std::map<ConflictKey, int> local;
    for (const ConflictRecord& c : n.store->conflicts()) ++local[conflict_key(c)];
    trace(n.name, ": ", local.size(), " conflicts held, bootstrap snapshot ", snapshot);
    for (const auto& [key, count] : local) {
      auto it = logged.find(key);
      if (it == logged.end()) {
        fail(cat("conflicts: ", n.name, " holds a conflict on ",
                 rec_str(std::get<2>(key).entity, std::get<2>(key).id), " (seq ", std::get<0>(key),
                 ") that the server never logged"));
      } else if (count > 1) {
        fail(cat("conflicts: ", n.name, " received the conflict on ",
                 rec_str(it->second->entity, it->second->record), " field ",
                 field_name(it->second->entity, it->second->field), " (seq ", std::get<0>(key), ") ", count,
                 " times"));
      }
    }
    for (const auto& [key, c] : logged) {
      if (c->server_seq <= snapshot || local.count(key)) continue;
      bool concerns = c->winner.user == n.name || c->loser.user == n.name;
      if (!concerns) {
        auto rec = server_records.find(RecordKey{c->entity, c->record});
        // Visibility is judged when the batch is built; a record that came into scope later (its account
        // moved) brings no past conflicts with it.
        concerns = rec != server_records.end() && can_see(n.principal, resolve_scope(rec->second, reader)) &&
                   !moved_accounts.count(account_of(rec->second, server_records));
      }
      if (concerns)
        fail(cat("conflicts: ", n.name, " never received the ", c->rule, " conflict on ",
                 rec_str(c->entity, c->record), " field ", field_name(c->entity, c->field), " (seq ",
                 c->server_seq, ", loser ", c->loser.value.debug_string(), " by '", c->loser.user, "')"));
    }
  }

  report_.txns_applied = in_log.size();
  report_.txns_rejected = rejections.size();
  report_.conflicts = conflicts.size();
  if (opt_.verbose) {
    std::map<std::string, int> kinds;
    for (const ConflictRecord& c : conflicts) ++kinds[c.rule];
    for (const auto& [rule, count] : kinds) trace("conflicts ", rule, ": ", count);
    std::map<std::string, int> reasons;
    for (const StoredRejection& r : rejections) ++reasons[std::string(to_string(r.reason))];
    for (const auto& [reason, count] : reasons) trace("rejections ", reason, ": ", count);
  }
}

RecordId Simulation::account_of(const RecordState& rec, const std::map<RecordKey, RecordState>& records) {
  if (rec.entity == EntityId::kAccount) return rec.id;
  if (rec.entity == EntityId::kOrderLine) {
    auto order = records.find(
        RecordKey{EntityId::kOrder, RecordId::parse(link_of(rec, "order_id")).value_or(RecordId{})});
    return order == records.end() ? RecordId{} : account_of(order->second, records);
  }
  const schema::EntityDef& def = schema::entity_ref(rec.entity);
  if (def.scope.kind != schema::ScopeKind::kParent || def.scope.parent != EntityId::kAccount)
    return RecordId{};
  return RecordId::parse(link_of(rec, "account_id")).value_or(RecordId{});
}

void Simulation::check_txn_survived(
    const ClientTxn& txn, const std::map<RecordKey, RecordState>& server_records,
    const std::set<std::tuple<RecordKey, uint16_t, Version>>& losers,
    const std::set<std::tuple<RecordKey, uint16_t, Version>>& superseded,
    const std::map<std::tuple<RecordKey, uint16_t, NodeId>, Version>& latest_by_node) {
  const std::string who = node_name(txn.node);
  for (const Change& c : txn.changes) {
    RecordKey key{c.entity, c.record};
    auto it = server_records.find(key);
    const std::string where = cat("txn #", txn.node_seq, " of ", who, " ");
    if (it == server_records.end()) {
      fail(cat("acknowledged write lost: ", where, "touched ", rec_str(c.entity, c.record),
               " which the server does not have"));
      continue;
    }
    const RecordState& rec = it->second;
    switch (c.op) {
      case ChangeOp::kCreate:
        if (rec.created != c.version)
          fail(cat("acknowledged write lost: ", where, "created ", rec_str(c.entity, c.record), " at ",
                   vstr(c.version), " but the server's record says created ", vstr(rec.created)));
        break;
      case ChangeOp::kDelete:
        if (!rec.deleted)
          fail(cat("acknowledged write lost: ", where, "deleted ", rec_str(c.entity, c.record),
                   " but it is live on the server"));
        break;
      case ChangeOp::kAppend: {
        if (rec.deleted) break;
        const FieldState* f = rec.field(c.field);
        bool present = f && std::any_of(f->fragments.begin(), f->fragments.end(),
                                        [&c](const Fragment& fr) { return fr.version == c.version; });
        if (!present)
          fail(cat("acknowledged write lost: ", where, "appended ", c.value.debug_string(), " ",
                   vstr(c.version), " to ", field_name(c.entity, c.field), " of ",
                   rec_str(c.entity, c.record), "; the server's fragments: ", f ? f->fragments.size() : 0));
        break;
      }
      case ChangeOp::kSet: {
        if (rec.deleted) break;
        const FieldState* f = rec.field(c.field);
        if (f && f->version == c.version) break;
        if (losers.count({key, c.field, c.version}) || superseded.count({key, c.field, c.version})) break;
        auto own = latest_by_node.find({key, c.field, c.version.node});
        if (own != latest_by_node.end() && own->second > c.version) break;
        fail(cat("acknowledged write lost: ", where, "set ", field_name(c.entity, c.field), " of ",
                 rec_str(c.entity, c.record), " to ", c.value.debug_string(), " ", vstr(c.version), " (base ",
                 vstr(c.base), "); the server has ", f ? f->value.debug_string() : "nothing", " ",
                 f ? vstr(f->version) : "", " and no conflict record or later writer accounts for it"));
        break;
      }
    }
  }
}

bool Simulation::fail_server_read() {
  if (!faults_on_) return false;
  return read_chance(now_ < read_outage_until_ ? kReadOutageFailP : kServerReadFaultP);
}

void Simulation::finish_report() {
  report_.server_read_faults = 0;
  for (const auto& s : server_stores_) report_.server_read_faults += s->failed_reads;
  if (failure_count_ > report_.failures.size())
    report_.failures.push_back(cat("... and ", failure_count_ - report_.failures.size(), " more failures"));
  report_.ok = failure_count_ == 0;
  report_.sim_time_ms = now_ - start_ms_;
  trace("done: ", report_.ok ? "ok" : "FAILED", ", ", report_.txns_written, " txns written, ",
        report_.txns_applied, " applied, ", report_.txns_rejected, " rejected, ", report_.conflicts,
        " conflicts, client conflict events ", client_conflict_events_);
}

TempDir& Simulation::replica_dir() {
  if (!replica_dir_) replica_dir_ = std::make_unique<TempDir>();
  return *replica_dir_;
}

}  // namespace fieldsync::sim::detail
