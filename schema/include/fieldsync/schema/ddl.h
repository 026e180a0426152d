// SQL derived from the entity model. Both the device replica and the server's SQLite store create their
// record tables from these statements, so a field added to the model appears everywhere at once.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "fieldsync/schema/model.h"

namespace fieldsync::schema {

// Quotes an SQL identifier: model names are lowercase snake_case, but some are SQL keywords ("order"), so
// every table, column and index name in SQL built from the model is quoted (a '"' inside is doubled).
std::string quoted(std::string_view name);

// SQL column type of a field in SQLite ("TEXT", "INTEGER", "REAL").
std::string_view sqlite_type(FieldType t);

// CREATE TABLE IF NOT EXISTS for one entity: `id TEXT PRIMARY KEY` (UUIDv7 text), one column per field with
// its SQLite type (NOT NULL is not enforced in SQL: tombstones and partially synced records keep nulls; the
// model's validation enforces it on writes), plus `_deleted INTEGER NOT NULL DEFAULT 0` and `_meta BLOB`
// (versions). Table name: the entity name, quoted.
std::string create_table_sql(const EntityDef& e);

// Indexes every entity needs for its scope and foreign-key lookups (one per kId / kUserId / territory field).
std::vector<std::string> create_index_sql(const EntityDef& e);

// All of the above for every entity, in dependency order.
std::vector<std::string> all_ddl();

}  // namespace fieldsync::schema
