// In-memory implementations of the store interfaces, for the simulator and tests. "Durable" here means:
// survives the destruction of the SyncClient / SyncServer that used it (the simulator's crash), not the
// process.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "fieldsync/sync/store.h"

namespace fieldsync {

class MemoryReplicaStore final : public ReplicaStore {
 public:
  explicit MemoryReplicaStore(NodeId node);
  std::unique_ptr<ReplicaTxn> begin() override;

  // Inspection for tests and the simulator's checker (committed state only).
  std::map<RecordKey, RecordState> records() const;
  size_t record_count() const;  // records().size() without the copy
  std::vector<ClientTxn> outbox() const;
  ReplicaMeta meta() const;
  std::vector<ConflictRecord> conflicts() const;
  std::vector<Rejection> rejections() const;
  // Makes the next commit() fail with `status` (fault injection: disk full, I/O error).
  void fail_next_commit(Status status);

  struct Data {
    std::map<RecordKey, RecordState> records;
    std::map<uint64_t, ClientTxn> outbox;
    ReplicaMeta meta;
    std::vector<ConflictRecord> conflicts;
    std::vector<Rejection> rejections;
  };

 private:
  friend class MemoryReplicaTxn;
  mutable std::mutex mu_;
  Data data_;
  std::optional<Status> fail_next_;
};

class MemoryCentralStore final : public CentralStore {
 public:
  MemoryCentralStore();
  std::unique_ptr<CentralTxn> begin() override;
  Result<uint64_t> head_seq() override;
  Result<std::vector<ServerTxn>> read_log(uint64_t after, size_t max_changes) override;
  Result<LogSlice> read_log_for(uint64_t after, uint64_t up_to, const std::vector<ScopeKey>& scopes,
                                size_t max_changes) override;
  Result<std::vector<ConflictRecord>> read_conflicts(uint64_t after, uint64_t up_to) override;
  Result<std::optional<RecordState>> load(EntityId entity, const RecordId& id) override;
  Result<std::vector<RecordState>> scan(RecordKey after, size_t max_records) override;
  Result<std::vector<RecordState>> scan_in_scopes(const std::vector<ScopeKey>& scopes, RecordKey after,
                                                  size_t max_records) override;
  Result<uint64_t> count_in_scopes(const std::optional<std::vector<ScopeKey>>& scopes) override;
  Result<std::vector<RecordKey>> keys_created_by(NodeId node) override;
  Result<uint64_t> record_count() override;
  Result<std::vector<RecordState>> scope_children(EntityId parent_entity, const RecordId& parent) override;
  Result<Hlc> clock() override;
  Result<NodeState> node_state(NodeId node) override;

  // Inspection for tests and the simulator's checker.
  std::map<RecordKey, RecordState> records() const;
  std::vector<ServerTxn> log() const;
  std::vector<ConflictRecord> conflicts() const;
  std::vector<StoredRejection> rejections() const;
  std::map<NodeId, NodeState> node_states() const;

  struct Data {
    std::map<RecordKey, RecordState> records;
    std::vector<ServerTxn> log;                           // index i holds server_seq i+1
    std::map<ScopeKey, std::vector<uint64_t>> log_index;  // read_log_for: server_seqs filed under each key
    std::vector<ConflictRecord> conflicts;
    std::map<NodeId, NodeState> nodes;
    std::map<std::pair<NodeId, uint64_t>, StoredRejection> rejections;
    Hlc clock = 0;
  };

 private:
  friend class MemoryCentralTxn;
  mutable std::mutex mu_;
  Data data_;
};

}  // namespace fieldsync
