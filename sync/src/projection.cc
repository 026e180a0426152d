#include "fieldsync/sync/projection.h"

#include <algorithm>
#include <type_traits>

namespace fieldsync::projection {

bool knows(schema::EntityId entity, uint32_t version) {
  const schema::EntityDef* e = schema::entity(entity);
  return e != nullptr && e->since <= version;
}

bool knows(schema::EntityId entity, uint16_t field, uint32_t version) {
  const schema::EntityDef* e = schema::entity(entity);
  if (e == nullptr || e->since > version) return false;
  if (field == 0) return true;
  const schema::FieldDef* f = e->field(field);
  return f != nullptr && f->since <= version;
}

namespace {

bool project_change(Change& c, uint32_t version) {
  if (!knows(c.entity, c.field, version)) return false;
  std::erase_if(c.seen, [&](const FieldVersion& fv) { return !knows(c.entity, fv.field, version); });
  return true;
}

void project_conflicts(std::vector<ConflictRecord>& conflicts, uint32_t version) {
  std::erase_if(conflicts, [&](const ConflictRecord& c) { return !knows(c.entity, c.field, version); });
}

void project_records(std::vector<RecordState>& records, uint32_t version) {
  std::erase_if(records, [&](RecordState& r) { return !project(r, version); });
}

void project_keys(std::vector<RecordKey>& keys, uint32_t version) {
  std::erase_if(keys, [&](const RecordKey& k) { return !knows(k.entity, version); });
}

}  // namespace

bool project(RecordState& record, uint32_t version) {
  if (!knows(record.entity, version)) return false;
  std::erase_if(record.fields, [&](const FieldState& f) { return !knows(record.entity, f.field, version); });
  std::erase_if(record.delete_seen,
                [&](const FieldVersion& fv) { return !knows(record.entity, fv.field, version); });
  return true;
}

void project(ServerTxn& txn, uint32_t version) {
  std::erase_if(txn.changes, [&](Change& c) { return !project_change(c, version); });
  std::erase_if(txn.moves, [&](const ScopeMove& m) { return !knows(m.entity, version); });
}

void project(protocol::Message& message, uint32_t version) {
  if (version >= schema::kSchemaVersion) return;
  std::visit(
      [&](auto& m) {
        using T = std::decay_t<decltype(m)>;
        if constexpr (std::is_same_v<T, protocol::ChangeBatch>) {
          for (ServerTxn& t : m.txns) project(t, version);
          std::erase_if(m.txns, [](const ServerTxn& t) { return t.changes.empty() && t.moves.empty(); });
          project_conflicts(m.conflicts, version);
          project_records(m.records, version);
          project_keys(m.purges, version);
        } else if constexpr (std::is_same_v<T, protocol::BootstrapPage>) {
          project_records(m.records, version);
          project_conflicts(m.conflicts, version);
          project_keys(m.purges, version);
        } else if constexpr (std::is_same_v<T, protocol::PushAck>) {
          for (protocol::TxnResult& r : m.results) {
            project_conflicts(r.conflicts, version);
            project_records(r.records, version);
            project_keys(r.absent, version);
          }
        }
      },
      message);
}

bool entity_has_newer_parts(const schema::EntityDef& e, uint32_t from_version, uint32_t to_version) {
  if (e.since > to_version) return false;
  if (e.since > from_version) return true;
  return std::any_of(e.fields.begin(), e.fields.end(), [&](const schema::FieldDef& f) {
    return f.since > from_version && f.since <= to_version;
  });
}

bool newer_part(RecordState& record, uint32_t from_version, uint32_t to_version) {
  if (!project(record, to_version)) return false;
  const schema::EntityDef& e = schema::entity_ref(record.entity);
  if (e.since > from_version) return true;
  std::erase_if(record.fields,
                [&](const FieldState& f) { return knows(record.entity, f.field, from_version); });
  return !record.fields.empty();
}

}  // namespace fieldsync::projection
