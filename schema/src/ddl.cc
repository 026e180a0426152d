#include "fieldsync/schema/ddl.h"

#include <cstdlib>
#include <string_view>

namespace fieldsync::schema {
namespace {

bool needs_index(const EntityDef& e, const FieldDef& f) {
  if (f.type == FieldType::kId || f.type == FieldType::kUserId) return true;
  return e.scope.kind == ScopeKind::kTerritory && e.scope.field == f.id;
}

// Depth-first: every entity this one refers to (kId fields, scope parent) is emitted before it. The model has
// no reference cycles; `state` guards against one anyway so a mistaken model cannot recurse forever.
enum class Visit : uint8_t { kNew, kInProgress, kDone };

std::string add_column_sql(const EntityDef& e, const FieldDef& f, Dialect d) {
  std::string sql = "ALTER TABLE ";
  sql += quoted(e.name);
  sql += d == Dialect::kPostgres ? " ADD COLUMN IF NOT EXISTS " : " ADD COLUMN ";
  sql += quoted(f.name);
  sql += ' ';
  sql += sql_type(f.type, d);
  return sql;
}

void append_entity(const EntityDef& e, std::span<const EntityDef> all, std::vector<Visit>& state,
                   std::vector<std::string>& out, Dialect d, uint32_t version) {
  const size_t index = static_cast<size_t>(&e - all.data());
  if (state[index] != Visit::kNew) return;
  state[index] = Visit::kInProgress;
  auto visit_ref = [&](EntityId ref) {
    if (ref == EntityId::kNone || ref == e.id) return;
    if (const EntityDef* r = entity(ref); r && r->since <= version)
      append_entity(*r, all, state, out, d, version);
  };
  visit_ref(e.scope.parent);
  for (const FieldDef& f : e.fields)
    if (f.since <= version) visit_ref(f.ref);
  state[index] = Visit::kDone;
  out.push_back(create_table_sql(e, d, version));
  if (d == Dialect::kPostgres)
    for (const FieldDef& f : e.fields)
      if (f.since > e.since && f.since <= version) out.push_back(add_column_sql(e, f, d));
  for (std::string& sql : create_index_sql(e, d, version)) out.push_back(std::move(sql));
}

}  // namespace

std::string quoted(std::string_view name) {
  std::string q;
  q.reserve(name.size() + 2);
  q += '"';
  for (char c : name) {
    if (c == '"') q += '"';  // SQL doubles a quote inside a quoted identifier
    q += c;
  }
  q += '"';
  return q;
}

std::string_view sqlite_type(FieldType t) {
  switch (t) {
    case FieldType::kText:
    case FieldType::kId:
    case FieldType::kEnum:
    case FieldType::kUserId:
      return "TEXT";
    case FieldType::kInt:
    case FieldType::kBool:
    case FieldType::kTimestamp:
      return "INTEGER";
    case FieldType::kReal:
      return "REAL";
  }
  std::abort();  // every FieldType is handled above
}

std::string_view sql_type(FieldType t, Dialect d) {
  if (d == Dialect::kSqlite) return sqlite_type(t);
  switch (t) {
    case FieldType::kText:
    case FieldType::kId:
    case FieldType::kEnum:
    case FieldType::kUserId:
      return "TEXT COLLATE \"C\"";
    case FieldType::kInt:
    case FieldType::kTimestamp:
      return "BIGINT";
    case FieldType::kBool:
      return "BOOLEAN";
    case FieldType::kReal:
      return "DOUBLE PRECISION";
  }
  std::abort();  // every FieldType is handled above
}

std::string create_table_sql(const EntityDef& e, Dialect d, uint32_t version) {
  const bool pg = d == Dialect::kPostgres;
  std::string sql = "CREATE TABLE IF NOT EXISTS ";
  sql += quoted(e.name);
  sql += pg ? " (id TEXT COLLATE \"C\" PRIMARY KEY" : " (id TEXT PRIMARY KEY";
  for (const FieldDef& f : e.fields) {
    if (f.since > version) continue;
    sql += ", ";
    sql += quoted(f.name);
    sql += ' ';
    sql += sql_type(f.type, d);
  }
  sql += pg ? ", _deleted BOOLEAN NOT NULL DEFAULT false, _meta BYTEA)"
            : ", _deleted INTEGER NOT NULL DEFAULT 0, _meta BLOB)";
  return sql;
}

std::vector<std::string> create_index_sql(const EntityDef& e, Dialect, uint32_t version) {
  std::vector<std::string> out;
  for (const FieldDef& f : e.fields) {
    if (f.since > version || !needs_index(e, f)) continue;
    std::string name = "idx_";
    name += e.name;
    name += '_';
    name += f.name;
    std::string sql = "CREATE INDEX IF NOT EXISTS ";
    sql += quoted(name);
    sql += " ON ";
    sql += quoted(e.name);
    sql += " (";
    sql += quoted(f.name);
    sql += ')';
    out.push_back(std::move(sql));
  }
  return out;
}

std::vector<std::string> all_ddl(Dialect d, uint32_t version) {
  const std::span<const EntityDef> all = entities();
  std::vector<Visit> state(all.size(), Visit::kNew);
  std::vector<std::string> out;
  for (const EntityDef& e : all)
    if (e.since <= version) append_entity(e, all, state, out, d, version);
  return out;
}

std::vector<std::string> added_columns_ddl(uint32_t from_version, Dialect d, uint32_t to_version) {
  std::vector<std::string> out;
  for (const EntityDef& e : entities()) {
    if (e.since > from_version) continue;  // a new table: all_ddl creates it whole
    for (const FieldDef& f : e.fields)
      if (f.since > from_version && f.since <= to_version) out.push_back(add_column_sql(e, f, d));
  }
  return out;
}

}  // namespace fieldsync::schema
