// SQL derived from the entity model. The device replica and the server's SQLite store create their record
// tables from these statements, the PostgreSQL central store from their PostgreSQL dialect, so a field added
// to the model appears everywhere at once: one model, two dialects.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "fieldsync/schema/model.h"

namespace fieldsync::schema {

// Quotes an SQL identifier: model names are lowercase snake_case, but some are SQL keywords ("order"), so
// every table, column and index name in SQL built from the model is quoted (a '"' inside is doubled).
std::string quoted(std::string_view name);

// The SQL dialect a statement is written for. Quoting is the same in both (the standard's double quotes).
enum class Dialect : uint8_t {
  kSqlite,
  // PostgreSQL: text columns are COLLATE "C", so ids and scope keys sort byte by byte, as in SQLite and the
  // in-memory store (a scan pages in (entity, id) order, and a database's default collation, e.g. en_US,
  // ignores punctuation such as the dashes of a UUID at the first level); BIGINT for integers and times,
  // BOOLEAN for booleans and _deleted, DOUBLE PRECISION for reals, BYTEA for the _meta blob.
  kPostgres,
};

// SQL column type of a field in SQLite ("TEXT", "INTEGER", "REAL").
std::string_view sqlite_type(FieldType t);
// ... in the given dialect (PostgreSQL: `TEXT COLLATE "C"`, BIGINT, BOOLEAN, DOUBLE PRECISION).
std::string_view sql_type(FieldType t, Dialect d);

// CREATE TABLE IF NOT EXISTS for one entity: `id TEXT PRIMARY KEY` (UUIDv7 text), one column per field with
// its SQL type (NOT NULL is not enforced in SQL: tombstones and partially synced records keep nulls; the
// model's validation enforces it on writes), plus `_deleted INTEGER NOT NULL DEFAULT 0` and `_meta BLOB`
// (versions); in PostgreSQL `_deleted BOOLEAN NOT NULL DEFAULT false` and `_meta BYTEA`. Table name: the
// entity name, quoted.
// `version` projects the model to an older schema version (fields with a later `since` are left out): the
// tables of a device still on that version.
std::string create_table_sql(const EntityDef& e, Dialect d = Dialect::kSqlite,
                             uint32_t version = kSchemaVersion);

// Indexes every entity needs for its scope and foreign-key lookups (one per kId / kUserId / territory field).
// Index names are unique across tables (PostgreSQL keeps them per schema, SQLite per database).
std::vector<std::string> create_index_sql(const EntityDef& e, Dialect d = Dialect::kSqlite,
                                          uint32_t version = kSchemaVersion);

// All of the above for every entity of `version` (entities with a later `since` are left out), in
// dependency order. In PostgreSQL each CREATE TABLE is followed by ALTER TABLE ... ADD COLUMN IF NOT EXISTS
// for the fields added to the entity after it appeared, so the DDL also upgrades an older database in place
// (SQLite has no IF NOT EXISTS there: its stores run added_columns_ddl below at their format bump).
std::vector<std::string> all_ddl(Dialect d = Dialect::kSqlite, uint32_t version = kSchemaVersion);

// ALTER TABLE ... ADD COLUMN for every field that appeared after `from_version` on an entity that existed at
// `from_version` (up to `to_version`), so the tables of a `from_version` store match the model at
// `to_version` once all_ddl(d, to_version) has created the new tables. Run it before all_ddl: the new
// columns' indexes are in there. Such fields are always nullable (model.h), so no default is needed.
std::vector<std::string> added_columns_ddl(uint32_t from_version, Dialect d = Dialect::kSqlite,
                                           uint32_t to_version = kSchemaVersion);

}  // namespace fieldsync::schema
