// `fieldsync-admin migrate --from DIR --to postgresql://...` (issue 20, "Moving from the embedded store"):
// copies a SQLite data directory -- the central store's records, log with its sequence numbers and scope
// index, conflicts, rejections, node watermarks, clock, and the directory with its token key -- into an empty
// PostgreSQL database, in one transaction, then verifies every table by row count and checksum. Devices that
// synced with the old server continue against the new one without a resync: the same server_seq for every
// log entry (their cursors stay valid), the same per-node watermarks (a retried push is still `duplicate`)
// and the same token key (their tokens still verify). Internal to server/src.
//
// Also copied: the funnel's stage history (`_stage_history`: a deal's earlier stints exist nowhere else) and
// head office's report settings (`_stage_probability`, `_case_sla`). Not copied: the SQLite store's derived
// report tables (the facts, `_visit_day`: PostgreSQL's facts are views over the records).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "fieldsync/server/directory.h"
#include "fieldsync/sync/status.h"

namespace fieldsync::server {

struct MigrationReport {
  struct Table {
    std::string name;    // as in PostgreSQL ("account", "_log", "fieldsync_directory.users", ...)
    int64_t rows = 0;    // the same on both sides (verified)
    std::string sha256;  // of the table's rows in a canonical form, order-independent; the same on both sides
  };
  std::vector<Table> tables;
  uint64_t head_seq = 0;  // the log's last server_seq, carried over
};

// Errors: kInvalidArgument (DIR has no central store, or the database is not empty: nothing is written),
// the storage codes of either side, kStorageCorrupt when the verification finds a table that differs (the
// copy is then committed but must not be used; the message names the table).
Result<MigrationReport> migrate_to_postgresql(const std::string& data_dir, const std::string& url,
                                              const Directory::Options& directory_options);

// The verification migrate_to_postgresql ends with, on its own: every table of the data directory (one read
// snapshot of each file) against the database, by row count and checksum. For a database migrated from a
// directory nobody has written to since (the old server stopped, the new one not yet started). Errors: as
// above; kStorageCorrupt names the first table that differs, with both sides' rows and checksums.
Result<MigrationReport> verify_migration(const std::string& data_dir, const std::string& url);

}  // namespace fieldsync::server
