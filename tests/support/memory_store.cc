// In-memory stores. A transaction is an overlay of its own writes over the shared committed data: reads look
// in the overlay first, commit() applies the overlay under the store's mutex, and dropping the transaction
// discards it. Nothing is copied wholesale per transaction, so merging 100k changes stays linear.
#include "support/memory_store.h"

#include "fieldsync/sync/schedule.h"
#include "fieldsync/sync/scope.h"

#include <algorithm>

namespace fieldsync {

// ---- Replica
// ------------------------------------------------------------------------------------------------

class MemoryReplicaTxn final : public ReplicaTxn {
 public:
  explicit MemoryReplicaTxn(MemoryReplicaStore& store) : store_(store) {}

  std::optional<RecordState> load(EntityId entity, const RecordId& id) override {
    const RecordKey key{entity, id};
    if (auto it = records_.find(key); it != records_.end()) return it->second;
    std::lock_guard lock(store_.mu_);
    auto it = store_.data_.records.find(key);
    if (it == store_.data_.records.end()) return std::nullopt;
    return it->second;
  }

  void save(const RecordState& record) override { records_[RecordKey{record.entity, record.id}] = record; }
  void erase(EntityId entity, const RecordId& id) override { records_[RecordKey{entity, id}] = std::nullopt; }

  void outbox_append(const ClientTxn& txn) override { outbox_[txn.node_seq] = txn; }

  std::vector<ClientTxn> outbox_peek(size_t max_txns) override { return outbox_after(0, max_txns); }

  std::vector<ClientTxn> outbox_after(uint64_t after_node_seq, size_t max_txns) override {
    std::vector<ClientTxn> out;
    std::lock_guard lock(store_.mu_);
    auto committed = store_.data_.outbox.upper_bound(after_node_seq);
    auto mine = outbox_.upper_bound(after_node_seq);
    const auto committed_end = store_.data_.outbox.end();
    // Walk both ordered maps together; an entry of this transaction replaces (or removes) the committed one.
    while (out.size() < max_txns && (committed != committed_end || mine != outbox_.end())) {
      if (mine == outbox_.end() || (committed != committed_end && committed->first < mine->first)) {
        out.push_back(committed->second);
        ++committed;
        continue;
      }
      if (committed != committed_end && committed->first == mine->first) ++committed;
      if (mine->second) out.push_back(*mine->second);
      ++mine;
    }
    return out;
  }

  std::optional<ClientTxn> outbox_get(uint64_t node_seq) override {
    if (auto it = outbox_.find(node_seq); it != outbox_.end()) return it->second;
    std::lock_guard lock(store_.mu_);
    auto it = store_.data_.outbox.find(node_seq);
    if (it == store_.data_.outbox.end()) return std::nullopt;
    return it->second;
  }

  bool outbox_remove(uint64_t node_seq) override {
    const bool present = outbox_get(node_seq).has_value();
    outbox_[node_seq] = std::nullopt;
    return present;
  }

  size_t outbox_size() override {
    std::lock_guard lock(store_.mu_);
    size_t size = store_.data_.outbox.size();
    for (const auto& [seq, txn] : outbox_) {
      bool committed = store_.data_.outbox.count(seq) != 0;
      if (committed && !txn) --size;
      if (!committed && txn) ++size;
    }
    return size;
  }

  ReplicaMeta meta() override {
    if (meta_) return *meta_;
    std::lock_guard lock(store_.mu_);
    return store_.data_.meta;
  }
  void set_meta(const ReplicaMeta& meta) override { meta_ = meta; }

  void add_conflict(const ConflictRecord& conflict) override { conflicts_.push_back(conflict); }
  void add_rejection(const Rejection& rejection) override { rejections_.push_back(rejection); }

  Status commit() override {
    std::lock_guard lock(store_.mu_);
    if (store_.fail_next_) {
      Status s = std::move(*store_.fail_next_);
      store_.fail_next_.reset();
      discard();
      return s;
    }
    MemoryReplicaStore::Data& d = store_.data_;
    for (auto& [key, rec] : records_) {
      if (rec) {
        d.records.insert_or_assign(key, std::move(*rec));
      } else {
        d.records.erase(key);
      }
    }
    for (auto& [seq, txn] : outbox_) {
      if (txn) {
        d.outbox.insert_or_assign(seq, std::move(*txn));
      } else {
        d.outbox.erase(seq);
      }
    }
    if (meta_) d.meta = *meta_;
    d.conflicts.insert(d.conflicts.end(), std::make_move_iterator(conflicts_.begin()),
                       std::make_move_iterator(conflicts_.end()));
    d.rejections.insert(d.rejections.end(), std::make_move_iterator(rejections_.begin()),
                        std::make_move_iterator(rejections_.end()));
    discard();
    return Status::ok();
  }

 private:
  void discard() {
    records_.clear();
    outbox_.clear();
    meta_.reset();
    conflicts_.clear();
    rejections_.clear();
  }

  MemoryReplicaStore& store_;
  std::map<RecordKey, std::optional<RecordState>> records_;  // nullopt: erased
  std::map<uint64_t, std::optional<ClientTxn>> outbox_;      // nullopt: removed
  std::optional<ReplicaMeta> meta_;
  std::vector<ConflictRecord> conflicts_;
  std::vector<Rejection> rejections_;
};

MemoryReplicaStore::MemoryReplicaStore(NodeId node) {
  data_.meta.node = node;
}

std::unique_ptr<ReplicaTxn> MemoryReplicaStore::begin() {
  return std::make_unique<MemoryReplicaTxn>(*this);
}

std::map<RecordKey, RecordState> MemoryReplicaStore::records() const {
  std::lock_guard lock(mu_);
  return data_.records;
}

size_t MemoryReplicaStore::record_count() const {
  std::lock_guard lock(mu_);
  return data_.records.size();
}

std::vector<ClientTxn> MemoryReplicaStore::outbox() const {
  std::lock_guard lock(mu_);
  std::vector<ClientTxn> out;
  out.reserve(data_.outbox.size());
  for (const auto& [seq, txn] : data_.outbox) out.push_back(txn);
  return out;
}

ReplicaMeta MemoryReplicaStore::meta() const {
  std::lock_guard lock(mu_);
  return data_.meta;
}

std::vector<ConflictRecord> MemoryReplicaStore::conflicts() const {
  std::lock_guard lock(mu_);
  return data_.conflicts;
}

std::vector<Rejection> MemoryReplicaStore::rejections() const {
  std::lock_guard lock(mu_);
  return data_.rejections;
}

void MemoryReplicaStore::fail_next_commit(Status status) {
  std::lock_guard lock(mu_);
  fail_next_ = std::move(status);
}

// ---- Central
// ------------------------------------------------------------------------------------------------

class MemoryCentralTxn final : public CentralTxn {
 public:
  explicit MemoryCentralTxn(MemoryCentralStore& store) : store_(store) {}

  Result<std::optional<RecordState>> load(EntityId entity, const RecordId& id) override {
    const RecordKey key{entity, id};
    if (auto it = records_.find(key); it != records_.end()) return std::optional<RecordState>(it->second);
    std::lock_guard lock(store_.mu_);
    auto it = store_.data_.records.find(key);
    if (it == store_.data_.records.end()) return std::optional<RecordState>();
    return std::optional<RecordState>(it->second);
  }

  Result<std::vector<RecordState>> events_overlapping(const UserId& owner, int64_t start_ms,
                                                      int64_t end_ms) override {
    std::vector<RecordState> out;
    const RecordKey first{EntityId::kCalendarEvent, RecordId{}};
    auto in_range = [](const RecordKey& k) { return k.entity == EntityId::kCalendarEvent; };
    {
      std::lock_guard lock(store_.mu_);
      const auto& recs = store_.data_.records;
      for (auto it = recs.lower_bound(first); it != recs.end() && in_range(it->first); ++it) {
        if (records_.count(it->first) != 0) continue;  // this transaction's version is judged below
        if (scheduled_overlap(it->second, owner, start_ms, end_ms)) out.push_back(it->second);
      }
    }
    for (auto it = records_.lower_bound(first); it != records_.end() && in_range(it->first); ++it) {
      if (scheduled_overlap(it->second, owner, start_ms, end_ms)) out.push_back(it->second);
    }
    return out;
  }

  void save(const RecordState& record) override { records_[RecordKey{record.entity, record.id}] = record; }

  Result<NodeState> node_state(NodeId node) override {
    if (auto it = nodes_.find(node); it != nodes_.end()) return it->second;
    std::lock_guard lock(store_.mu_);
    auto it = store_.data_.nodes.find(node);
    return it != store_.data_.nodes.end() ? it->second : NodeState{node, 0};
  }
  void set_node_state(const NodeState& state) override { nodes_[state.node] = state; }

  void add_rejection(const StoredRejection& rejection) override {
    rejections_[{rejection.node, rejection.node_seq}] = rejection;
  }
  Result<std::optional<StoredRejection>> rejection(NodeId node, uint64_t node_seq) override {
    if (auto it = rejections_.find({node, node_seq}); it != rejections_.end())
      return std::optional<StoredRejection>(it->second);
    std::lock_guard lock(store_.mu_);
    auto it = store_.data_.rejections.find({node, node_seq});
    if (it == store_.data_.rejections.end()) return std::optional<StoredRejection>();
    return std::optional<StoredRejection>(it->second);
  }

  // The sequence is the log position at commit. Commits are serialised by the store's mutex; the value
  // returned here is that position as long as no other transaction commits in between (true of the
  // single-threaded simulator and tests that use this store).
  uint64_t append_log(ServerTxn txn, std::vector<ConflictRecord> conflicts,
                      std::vector<ScopeKey> scopes) override {
    uint64_t seq;
    {
      std::lock_guard lock(store_.mu_);
      seq = store_.data_.log.size() + log_.size() + 1;
    }
    txn.server_seq = seq;
    for (ConflictRecord& c : conflicts) c.server_seq = seq;
    log_.push_back(LogEntry{std::move(txn), std::move(conflicts), std::move(scopes)});
    return seq;
  }

  void set_clock(Hlc hlc) override { clock_ = std::max(clock_, hlc); }

  Status commit() override {
    std::lock_guard lock(store_.mu_);
    MemoryCentralStore::Data& d = store_.data_;
    d.clock = std::max(d.clock, clock_);
    for (auto& [key, rec] : records_) d.records.insert_or_assign(key, std::move(rec));
    for (auto& [node, state] : nodes_) d.nodes.insert_or_assign(node, state);
    for (auto& [key, rej] : rejections_) d.rejections.insert_or_assign(key, std::move(rej));
    for (LogEntry& entry : log_) {
      const uint64_t seq = d.log.size() + 1;
      entry.txn.server_seq = seq;
      d.log.push_back(std::move(entry.txn));
      std::sort(entry.scopes.begin(), entry.scopes.end());
      entry.scopes.erase(std::unique(entry.scopes.begin(), entry.scopes.end()), entry.scopes.end());
      for (const ScopeKey& k : entry.scopes) d.log_index[k].push_back(seq);
      for (ConflictRecord& c : entry.conflicts) {
        c.server_seq = seq;
        d.conflicts.push_back(std::move(c));
      }
    }
    records_.clear();
    nodes_.clear();
    rejections_.clear();
    log_.clear();
    return Status::ok();
  }

 private:
  struct LogEntry {
    ServerTxn txn;
    std::vector<ConflictRecord> conflicts;
    std::vector<ScopeKey> scopes;
  };

  MemoryCentralStore& store_;
  std::map<RecordKey, RecordState> records_;
  std::map<NodeId, NodeState> nodes_;
  std::map<std::pair<NodeId, uint64_t>, StoredRejection> rejections_;
  std::vector<LogEntry> log_;
  Hlc clock_ = 0;
};

MemoryCentralStore::MemoryCentralStore() = default;

std::unique_ptr<CentralTxn> MemoryCentralStore::begin() {
  return std::make_unique<MemoryCentralTxn>(*this);
}

Result<std::vector<RecordState>> MemoryCentralStore::scope_children(EntityId parent_entity,
                                                                    const RecordId& parent) {
  const std::string parent_text = parent.to_string();
  std::vector<RecordState> out;
  std::lock_guard lock(mu_);
  for (const schema::EntityDef& e : schema::entities()) {
    if (e.scope.kind != schema::ScopeKind::kParent || e.scope.parent != parent_entity) continue;
    auto it = data_.records.lower_bound(RecordKey{e.id, RecordId{}});
    for (; it != data_.records.end() && it->first.entity == e.id; ++it) {
      const FieldState* f = it->second.field(e.scope.field);
      if (f && f->value.kind() == Value::Kind::kText && f->value.as_text() == parent_text)
        out.push_back(it->second);
    }
  }
  return out;
}

Result<Hlc> MemoryCentralStore::clock() {
  std::lock_guard lock(mu_);
  return data_.clock;
}

Result<uint64_t> MemoryCentralStore::head_seq() {
  std::lock_guard lock(mu_);
  return uint64_t{data_.log.size()};
}

Result<std::vector<ServerTxn>> MemoryCentralStore::read_log(uint64_t after, size_t max_changes) {
  std::lock_guard lock(mu_);
  std::vector<ServerTxn> out;
  size_t changes = 0;
  for (uint64_t i = after; i < data_.log.size(); ++i) {
    out.push_back(data_.log[i]);
    changes += data_.log[i].changes.size();
    if (changes >= max_changes) break;
  }
  return out;
}

Result<CentralStore::LogSlice> MemoryCentralStore::read_log_for(uint64_t after, uint64_t up_to,
                                                                const std::vector<ScopeKey>& scopes,
                                                                size_t max_changes) {
  std::lock_guard lock(mu_);
  up_to = std::min<uint64_t>(up_to, data_.log.size());
  std::vector<uint64_t> seqs;
  for (const ScopeKey& k : scopes) {
    auto it = data_.log_index.find(k);
    if (it == data_.log_index.end()) continue;
    const std::vector<uint64_t>& list = it->second;  // ascending: appended at commit
    auto first = std::upper_bound(list.begin(), list.end(), after);
    auto last = std::upper_bound(first, list.end(), up_to);
    seqs.insert(seqs.end(), first, last);
  }
  std::sort(seqs.begin(), seqs.end());
  seqs.erase(std::unique(seqs.begin(), seqs.end()), seqs.end());
  LogSlice out;
  out.searched_to = std::max(after, up_to);
  size_t changes = 0;
  for (uint64_t seq : seqs) {
    out.txns.push_back(data_.log[seq - 1]);
    changes += out.txns.back().changes.size();
    if (changes >= max_changes) {
      out.searched_to = seq;
      break;
    }
  }
  return out;
}

Result<std::vector<ConflictRecord>> MemoryCentralStore::read_conflicts(uint64_t after, uint64_t up_to) {
  std::lock_guard lock(mu_);
  // Conflicts are appended at commit, so they are ordered by server_seq.
  const auto& all = data_.conflicts;
  auto first =
      std::partition_point(all.begin(), all.end(), [after](const auto& c) { return c.server_seq <= after; });
  auto last =
      std::partition_point(first, all.end(), [up_to](const auto& c) { return c.server_seq <= up_to; });
  return std::vector<ConflictRecord>(first, last);
}

Result<std::optional<RecordState>> MemoryCentralStore::load(EntityId entity, const RecordId& id) {
  std::lock_guard lock(mu_);
  auto it = data_.records.find(RecordKey{entity, id});
  if (it == data_.records.end()) return std::optional<RecordState>();
  return std::optional<RecordState>(it->second);
}

Result<std::vector<RecordState>> MemoryCentralStore::scan(RecordKey after, size_t max_records) {
  std::lock_guard lock(mu_);
  std::vector<RecordState> out;
  for (auto it = data_.records.upper_bound(after); it != data_.records.end() && out.size() < max_records;
       ++it) {
    out.push_back(it->second);
  }
  return out;
}

Result<std::vector<RecordState>> MemoryCentralStore::scan_in_scopes(const std::vector<ScopeKey>& scopes,
                                                                    RecordKey after, size_t max_records) {
  // Exact: each record's scope resolved on the committed records.
  std::lock_guard lock(mu_);
  MapRecordReader reader(data_.records);
  std::vector<RecordState> out;
  for (auto it = data_.records.upper_bound(after); it != data_.records.end() && out.size() < max_records;
       ++it) {
    const ScopeKey scope = resolve_scope(it->second, reader);
    if (std::find(scopes.begin(), scopes.end(), scope) != scopes.end()) out.push_back(it->second);
  }
  return out;
}

Result<uint64_t> MemoryCentralStore::count_in_scopes(const std::optional<std::vector<ScopeKey>>& scopes) {
  std::lock_guard lock(mu_);
  if (!scopes) return static_cast<uint64_t>(data_.records.size());
  MapRecordReader reader(data_.records);
  uint64_t n = 0;
  for (const auto& [key, record] : data_.records) {
    const ScopeKey scope = resolve_scope(record, reader);
    n += std::find(scopes->begin(), scopes->end(), scope) != scopes->end() ? 1 : 0;
  }
  return n;
}

Result<std::vector<RecordKey>> MemoryCentralStore::keys_created_by(NodeId node) {
  std::lock_guard lock(mu_);
  std::vector<RecordKey> out;
  for (const auto& [key, record] : data_.records)
    if (record.created.node == node) out.push_back(key);
  return out;
}

Result<uint64_t> MemoryCentralStore::record_count() {
  std::lock_guard lock(mu_);
  return static_cast<uint64_t>(std::count_if(data_.records.begin(), data_.records.end(),
                                             [](const auto& kv) { return !kv.second.deleted; }));
}

std::map<RecordKey, RecordState> MemoryCentralStore::records() const {
  std::lock_guard lock(mu_);
  return data_.records;
}

std::vector<ServerTxn> MemoryCentralStore::log() const {
  std::lock_guard lock(mu_);
  return data_.log;
}

std::vector<ConflictRecord> MemoryCentralStore::conflicts() const {
  std::lock_guard lock(mu_);
  return data_.conflicts;
}

std::vector<StoredRejection> MemoryCentralStore::rejections() const {
  std::lock_guard lock(mu_);
  std::vector<StoredRejection> out;
  out.reserve(data_.rejections.size());
  for (const auto& [key, rej] : data_.rejections) out.push_back(rej);
  return out;
}

Result<NodeState> MemoryCentralStore::node_state(NodeId node) {
  std::lock_guard lock(mu_);
  auto it = data_.nodes.find(node);
  return it != data_.nodes.end() ? it->second : NodeState{node, 0};
}

std::map<NodeId, NodeState> MemoryCentralStore::node_states() const {
  std::lock_guard lock(mu_);
  return data_.nodes;
}

}  // namespace fieldsync
