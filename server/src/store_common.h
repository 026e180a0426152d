// What the two central stores (sqlite_store.cc, pg_store.cc) share beyond the CentralStore contract: how a
// record's scope maps to an index, how unsigned ids are stored in signed SQL integers, and the names and
// texts both write into their tables and messages. Kept in one place so the two layouts cannot drift apart
// (a migration from SQLite to PostgreSQL copies `_log_scope` rows as they are).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "fieldsync/schema/ddl.h"
#include "fieldsync/schema/model.h"
#include "fieldsync/sync/scope.h"
#include "fieldsync/sync/status.h"

namespace fieldsync::server::store_common {

// The field a territory- or owner-scoped entity's scope is read from (nullptr: another kind of scope).
inline const schema::FieldDef* direct_scope_field(const schema::EntityDef& e) {
  if (e.scope.kind != schema::ScopeKind::kTerritory && e.scope.kind != schema::ScopeKind::kOwner)
    return nullptr;
  return e.field(e.scope.field);
}

// (scope field, id) for every territory- or owner-scoped entity: a bootstrap page of one scope key is then a
// range of one index in page order (scan_in_scopes), where the scope field's own index gave the whole
// territory to sort for every page. The same statement in both dialects.
inline std::vector<std::string> scan_index_ddl() {
  std::vector<std::string> out;
  for (const schema::EntityDef& e : schema::entities()) {
    const schema::FieldDef* f = direct_scope_field(e);
    if (f == nullptr) continue;
    out.push_back("CREATE INDEX IF NOT EXISTS " + schema::quoted("idx_scan_" + std::string(e.name)) + " ON " +
                  schema::quoted(e.name) + " (" + schema::quoted(f->name) + ", id)");
  }
  return out;
}

// Node ids and HLCs are unsigned 64-bit; SQL integers are signed. The bit pattern round-trips.
inline int64_t as_sql(uint64_t v) {
  return static_cast<int64_t>(v);
}
inline uint64_t from_sql(int64_t v) {
  return static_cast<uint64_t>(v);
}

// The model's names for an entity and a field, or their numbers when the model does not know them (a row
// written by a newer server).
inline std::string field_name(EntityId entity, uint16_t field) {
  const schema::EntityDef* e = schema::entity(entity);
  const schema::FieldDef* f = e ? e->field(field) : nullptr;
  return f ? std::string(f->name) : std::to_string(field);
}
inline std::string entity_name(EntityId entity) {
  const schema::EntityDef* e = schema::entity(entity);
  return e ? std::string(e->name) : std::to_string(static_cast<unsigned>(entity));
}

// A stored row that fails to decode: the store is damaged, not the request.
inline Status corrupt(std::string_view what, const Status& why) {
  return Status(ErrorCode::kStorageCorrupt, std::string(what) + ": " + why.message());
}

// `_log_scope`'s text form of a scope key: "<kind number>:<value>", the same in both stores.
inline std::string scope_text(const ScopeKey& k) {
  return std::to_string(static_cast<unsigned>(k.kind)) + ":" + k.value;
}

}  // namespace fieldsync::server::store_common
