// Where a server keeps its state, named by one string (fieldsync-server's and fieldsync-admin's --store):
//   * a data directory (the default, --data-dir): DIR/central.db (SqliteCentralStore) and DIR/directory.db;
//   * a PostgreSQL URL (`postgresql://USER@HOST:PORT/DB`): the central store and the directory (schema
//     fieldsync_directory) in that database, which several servers may share (docs/DESIGN.md section 11,
//     "Several instances"); nothing is kept on the server's disk.
#pragma once

#include <memory>
#include <string>

#include "fieldsync/server/directory.h"
#include "fieldsync/server/sqlite_store.h"
#include "fieldsync/sync/store.h"

namespace fieldsync::server {

class PgCentralStore;  // fieldsync/server/pg_store.h

struct OpenedStore {
  std::unique_ptr<CentralStore> store;
  SqliteCentralStore* sqlite = nullptr;  // the same object when it is the SQLite store, else null
  PgCentralStore* postgres = nullptr;    // the same object when it is the PostgreSQL store, else null
  std::unique_ptr<Directory> directory;
  std::string postgresql_url;  // empty for a data directory
};

struct StoreOpenOptions {
  SqliteCentralStore::Options sqlite;
  Directory::Options directory;
  bool open_directory = true;  // false: --dev-tokens, no directory
};

// Opens (creating and migrating) the central store and the directory at `location`: a PostgreSQL URL
// (is_postgresql_url) or a data directory, which must exist. Errors: the stores' (kStorageIo: cannot
// connect or open; kSchemaTooNew).
Result<OpenedStore> open_store(const std::string& location, const StoreOpenOptions& options);

}  // namespace fieldsync::server
