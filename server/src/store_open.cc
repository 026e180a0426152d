#include "fieldsync/server/store_open.h"

#include <filesystem>

#include "fieldsync/server/pg_store.h"
#include "local_time.h"

namespace fieldsync::server {

Result<OpenedStore> open_store(const std::string& location, const StoreOpenOptions& options) {
  OpenedStore out;
  if (is_postgresql_url(location)) {
    out.postgresql_url = location;
    if (options.open_directory) {
      auto dir = Directory::open(location, options.directory);
      if (!dir) return dir.status();
      out.directory = std::move(dir.value());
    }
    PgCentralStore::Options pg_options;
    // --group-commit means the same on both stores: pushes share the store's flushes.
    pg_options.group_commit = options.sqlite.group_commit;
    pg_options.time_zone = options.sqlite.time_zone;
    if (pg_options.time_zone)  // (SQLite's store checks its zone as it builds the rollup's offsets)
      if (Result<std::vector<ZoneSpan>> known = zone_spans(*pg_options.time_zone, 0, 1); !known)
        return Status(ErrorCode::kInvalidArgument, "time zone: " + known.status().message());
    auto store = PgCentralStore::open(location, pg_options);
    if (!store) return store.status();
    out.postgres = store.value().get();
    out.store = std::move(store.value());
    return out;
  }
  const std::filesystem::path dir(location);
  auto store = SqliteCentralStore::open((dir / kCentralStoreFileName).string(), options.sqlite);
  if (!store) return store.status();
  out.sqlite = store.value().get();
  out.store = std::move(store.value());
  if (options.open_directory) {
    auto directory = Directory::open((dir / kDirectoryFileName).string(), options.directory);
    if (!directory) return directory.status();
    out.directory = std::move(directory.value());
  }
  return out;
}

}  // namespace fieldsync::server
