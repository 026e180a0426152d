// A CentralStore that forwards every call to another one: test doubles derive from it and override only what
// they watch or change (GatedStore holds sync() shut, CountingStore counts reads).
#pragma once

#include <memory>
#include <optional>
#include <vector>

#include "fieldsync/sync/store.h"

namespace fieldsync::testing_support {

class ForwardingCentralStore : public CentralStore {
 public:
  explicit ForwardingCentralStore(CentralStore& inner) : inner_(inner) {}

  std::unique_ptr<CentralTxn> begin() override { return inner_.begin(); }
  Result<uint64_t> head_seq() override { return inner_.head_seq(); }
  Result<std::vector<ServerTxn>> read_log(uint64_t after, size_t max) override {
    return inner_.read_log(after, max);
  }
  Result<LogSlice> read_log_for(uint64_t after, uint64_t up_to, const std::vector<ScopeKey>& scopes,
                                size_t max) override {
    return inner_.read_log_for(after, up_to, scopes, max);
  }
  Result<std::vector<ConflictRecord>> read_conflicts(uint64_t after, uint64_t up_to) override {
    return inner_.read_conflicts(after, up_to);
  }
  Result<std::optional<RecordState>> load(EntityId e, const RecordId& id) override {
    return inner_.load(e, id);
  }
  Result<std::vector<RecordState>> scan(RecordKey after, size_t max) override {
    return inner_.scan(after, max);
  }
  Result<std::vector<RecordState>> scan_in_scopes(const std::vector<ScopeKey>& scopes, RecordKey after,
                                                  size_t max) override {
    return inner_.scan_in_scopes(scopes, after, max);
  }
  Result<uint64_t> count_in_scopes(const std::optional<std::vector<ScopeKey>>& scopes) override {
    return inner_.count_in_scopes(scopes);
  }
  Result<std::vector<RecordKey>> keys_created_by(NodeId node) override {
    return inner_.keys_created_by(node);
  }
  Result<uint64_t> record_count() override { return inner_.record_count(); }
  Result<std::vector<RecordState>> scope_children(EntityId e, const RecordId& p) override {
    return inner_.scope_children(e, p);
  }
  Result<Hlc> clock() override { return inner_.clock(); }
  Result<NodeState> node_state(NodeId node) override { return inner_.node_state(node); }
  bool commits_need_sync() const override { return inner_.commits_need_sync(); }
  Status sync() override { return inner_.sync(); }

 private:
  CentralStore& inner_;
};

}  // namespace fieldsync::testing_support
