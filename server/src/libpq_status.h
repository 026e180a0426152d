// libpq results -> typed Status, for the server's own PostgreSQL connections (the directory, the log
// follower). The central store's wrapper maps the same way (pgstore).
//   PGRES_COMMAND_OK, TUPLES_OK     ok
//   a broken connection, 08xxx,     kStorageIo, retryable (the connection is opened again before the next
//   57P01-57P03 (shutdown)          statement)
//   40001, 40P01                    kStorageLocked, retryable (serialization failure, deadlock)
//   53100 (disk full)               kStorageFull, retryable; other 53xxx (out of memory, connections)
//                                   kInternal, retryable
//   25006, 42501                    kStorageReadOnly (a read-only transaction or no privilege)
//   XX001, XX002                    kStorageCorrupt
//   anything else                   kInternal: SQL fieldsync wrote is wrong
#pragma once

#include <libpq-fe.h>

#include <string>
#include <string_view>

#include "fieldsync/sync/status.h"

namespace fieldsync::server::pg {

inline Status status_of(const PGresult* r, PGconn* conn, const std::string& what) {
  if (r != nullptr) {
    const ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) return Status::ok();
  }
  std::string message = r ? PQresultErrorMessage(r) : PQerrorMessage(conn);
  while (!message.empty() && (message.back() == '\n' || message.back() == ' ')) message.pop_back();
  const char* raw_state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : nullptr;
  const std::string_view state = raw_state ? raw_state : "";
  message = what + ": " + message + (state.empty() ? "" : " (SQLSTATE " + std::string(state) + ")");
  if (PQstatus(conn) != CONNECTION_OK || state.empty() || state.substr(0, 2) == "08" || state == "57P01" ||
      state == "57P02" || state == "57P03")
    return Status(ErrorCode::kStorageIo, message, true);
  if (state == "40001" || state == "40P01") return Status(ErrorCode::kStorageLocked, message, true);
  if (state == "53100") return Status(ErrorCode::kStorageFull, message, true);
  if (state.substr(0, 2) == "53") return Status(ErrorCode::kInternal, message, true);
  if (state == "25006" || state == "42501") return Status(ErrorCode::kStorageReadOnly, message);
  if (state == "XX001" || state == "XX002") return Status(ErrorCode::kStorageCorrupt, message);
  return Status(ErrorCode::kInternal, message);
}

}  // namespace fieldsync::server::pg
