// A CentralStore whose reads fail on demand: every read of the store and of its transactions first asks
// `fail_read()`, and fails with kStorageIo when it says so (a disk error; with PostgreSQL, a dropped
// connection). Writes and commits go through untouched, except that `fail_commits` makes every commit fail.
// Used by the simulator (reads failing at random while faults are on) and by store_fault_test.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "support/forwarding_store.h"

namespace fieldsync::testing_support {

class ReadFaultStore final : public ForwardingCentralStore {
 public:
  explicit ReadFaultStore(CentralStore& inner, std::function<bool()> fail_read = {})
      : ForwardingCentralStore(inner), fail_read_(std::move(fail_read)) {}

  void set_fail_read(std::function<bool()> fail_read) { fail_read_ = std::move(fail_read); }
  bool fail_commits = false;
  int fail_next_commits = 0;  // this many commits fail (then they go through again)
  uint64_t reads = 0;         // reads asked for (store and transactions)
  uint64_t failed_reads = 0;  // of them, failed
  uint64_t appended = 0;      // log entries appended by transactions, committed or not

  std::unique_ptr<CentralTxn> begin() override {
    return std::make_unique<Txn>(*this, ForwardingCentralStore::begin());
  }
  Result<uint64_t> head_seq() override {
    return guard([&] { return ForwardingCentralStore::head_seq(); });
  }
  Result<std::vector<ServerTxn>> read_log(uint64_t after, size_t max) override {
    return guard([&] { return ForwardingCentralStore::read_log(after, max); });
  }
  Result<LogSlice> read_log_for(uint64_t after, uint64_t up_to, const std::vector<ScopeKey>& scopes,
                                size_t max) override {
    return guard([&] { return ForwardingCentralStore::read_log_for(after, up_to, scopes, max); });
  }
  Result<std::vector<ConflictRecord>> read_conflicts(uint64_t after, uint64_t up_to) override {
    return guard([&] { return ForwardingCentralStore::read_conflicts(after, up_to); });
  }
  Result<std::optional<RecordState>> load(EntityId e, const RecordId& id) override {
    return guard([&] { return ForwardingCentralStore::load(e, id); });
  }
  Result<std::vector<RecordState>> scan(RecordKey after, size_t max) override {
    return guard([&] { return ForwardingCentralStore::scan(after, max); });
  }
  Result<std::vector<RecordState>> scan_in_scopes(const std::vector<ScopeKey>& scopes, RecordKey after,
                                                  size_t max) override {
    return guard([&] { return ForwardingCentralStore::scan_in_scopes(scopes, after, max); });
  }
  Result<uint64_t> count_in_scopes(const std::optional<std::vector<ScopeKey>>& scopes) override {
    return guard([&] { return ForwardingCentralStore::count_in_scopes(scopes); });
  }
  Result<std::vector<RecordKey>> keys_created_by(NodeId node) override {
    return guard([&] { return ForwardingCentralStore::keys_created_by(node); });
  }
  Result<uint64_t> record_count() override {
    return guard([&] { return ForwardingCentralStore::record_count(); });
  }
  Result<std::vector<RecordState>> scope_children(EntityId e, const RecordId& p) override {
    return guard([&] { return ForwardingCentralStore::scope_children(e, p); });
  }
  Result<Hlc> clock() override {
    return guard([&] { return ForwardingCentralStore::clock(); });
  }
  Result<NodeState> node_state(NodeId node) override {
    return guard([&] { return ForwardingCentralStore::node_state(node); });
  }

 private:
  template <typename F>
  auto guard(F read) -> decltype(read()) {
    ++reads;
    if (fail_read_ && fail_read_()) {
      ++failed_reads;
      return Status(ErrorCode::kStorageIo, "injected: read failed");
    }
    return read();
  }

  class Txn final : public CentralTxn {
   public:
    Txn(ReadFaultStore& store, std::unique_ptr<CentralTxn> inner) : store_(store), inner_(std::move(inner)) {}
    Result<std::optional<RecordState>> load(EntityId e, const RecordId& id) override {
      return store_.guard([&] { return inner_->load(e, id); });
    }
    Result<std::vector<RecordState>> events_overlapping(const UserId& owner, int64_t start_ms,
                                                        int64_t end_ms) override {
      return store_.guard([&] { return inner_->events_overlapping(owner, start_ms, end_ms); });
    }
    void save(const RecordState& record) override { inner_->save(record); }
    Result<NodeState> node_state(NodeId node) override {
      return store_.guard([&] { return inner_->node_state(node); });
    }
    void set_node_state(const NodeState& state) override { inner_->set_node_state(state); }
    void add_rejection(const StoredRejection& rejection) override { inner_->add_rejection(rejection); }
    Result<std::optional<StoredRejection>> rejection(NodeId node, uint64_t node_seq) override {
      return store_.guard([&] { return inner_->rejection(node, node_seq); });
    }
    uint64_t append_log(ServerTxn txn, std::vector<ConflictRecord> conflicts,
                        std::vector<ScopeKey> scopes) override {
      ++store_.appended;
      return inner_->append_log(std::move(txn), std::move(conflicts), std::move(scopes));
    }
    void set_clock(Hlc hlc) override { inner_->set_clock(hlc); }
    Status commit() override {
      if (store_.fail_commits) return Status(ErrorCode::kStorageFull, "injected: disk full");
      if (store_.fail_next_commits > 0) {
        --store_.fail_next_commits;
        return Status(ErrorCode::kStorageIo, "injected: commit failed");
      }
      return inner_->commit();
    }

   private:
    ReadFaultStore& store_;
    std::unique_ptr<CentralTxn> inner_;
  };

  std::function<bool()> fail_read_;
};

}  // namespace fieldsync::testing_support
