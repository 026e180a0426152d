// A libpq result -> typed Status for the server's own raw libpq calls (the directory's typed text results,
// the log follower's LISTEN connection), through pg.h's status_from: one SQLSTATE mapping for every
// PostgreSQL connection fieldsync keeps.
#pragma once

#include <libpq-fe.h>

#include <string>

#include "pg.h"

namespace fieldsync::server::pg_raw {

// libpq's connection messages run over several lines ("...failed: Connection refused\n\tIs the server
// running..."): one line for logs and command-line errors.
inline std::string one_line(const char* text) {
  std::string out;
  for (const char* p = text ? text : ""; *p; ++p) {
    const char c = (*p == '\n' || *p == '\t') ? ' ' : *p;
    if (c == ' ' && (out.empty() || out.back() == ' ')) continue;
    out += c;
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

inline Status status_of(const PGresult* r, PGconn* conn, const std::string& what) {
  if (r != nullptr) {
    const ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) return Status::ok();
  }
  const char* state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : nullptr;
  // No SQLSTATE, or a connection that broke under the statement: lost (retryable kStorageIo).
  if (PQstatus(conn) != CONNECTION_OK) state = nullptr;
  return pg::status_from(state ? state : "", what,
                         one_line(r ? PQresultErrorMessage(r) : PQerrorMessage(conn)));
}

}  // namespace fieldsync::server::pg_raw
