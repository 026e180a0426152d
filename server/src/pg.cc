#include "pg.h"

#include <libpq-fe.h>

#include <bit>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <type_traits>

namespace fieldsync::pg {

namespace {

// Type OIDs (PostgreSQL's catalog/pg_type.h, stable across versions); the server headers are not needed.
constexpr Oid kBool = 16, kBytea = 17, kName = 19, kInt8 = 20, kInt2 = 21, kInt4 = 23, kText = 25, kOid = 26,
              kFloat4 = 700, kFloat8 = 701, kBpchar = 1042, kVarchar = 1043;

template <typename T>
T big_endian(const char* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  if constexpr (std::endian::native == std::endian::little) {
    using U = std::make_unsigned_t<T>;
    U u = static_cast<U>(v);
    if constexpr (sizeof(T) == 8) u = __builtin_bswap64(u);
    if constexpr (sizeof(T) == 4) u = __builtin_bswap32(u);
    if constexpr (sizeof(T) == 2) u = __builtin_bswap16(u);
    v = static_cast<T>(u);
  }
  return v;
}

void ignore_notice(void*, const char*) {}

// Statements kept prepared per connection before they are all dropped and prepared again as they come.
constexpr size_t kMaxPrepared = 256;  // "relation already exists, skipping" and the like

}  // namespace

Status status_from(std::string_view sqlstate, std::string_view what, std::string_view server_message) {
  std::string msg(what);
  if (!server_message.empty()) {
    msg += ": ";
    msg += server_message;
    while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
  }
  if (sqlstate.empty()) {
    if (server_message.empty()) msg += ": connection to the PostgreSQL server lost";
    return Status(ErrorCode::kStorageIo, msg, true);
  }
  msg += " (SQLSTATE ";
  msg += sqlstate;
  msg += ")";
  auto is = [&](std::string_view s) { return sqlstate == s; };
  auto cls = [&](std::string_view c) { return sqlstate.substr(0, 2) == c; };
  if (cls("08") || is("57P01") || is("57P02") || is("57P03")) return Status(ErrorCode::kStorageIo, msg, true);
  if (is("40001") || is("40P01") || is("55P03") || is("57014")) {
    return Status(ErrorCode::kStorageLocked, msg, true);
  }
  if (is("53100")) return Status(ErrorCode::kStorageFull, msg, true);
  if (cls("53") || cls("58")) return Status(ErrorCode::kStorageIo, msg, true);
  if (is("XX001") || is("XX002")) return Status(ErrorCode::kStorageCorrupt, msg);
  if (is("25006") || is("42501")) return Status(ErrorCode::kStorageReadOnly, msg);
  return Status(ErrorCode::kInternal, msg);
}

// ---- Params

Params& Params::add(int64_t v) {
  values_.push_back(std::to_string(v));
  null_.push_back(false);
  formats_.push_back(0);
  return *this;
}
Params& Params::add(std::string_view v) {
  values_.emplace_back(v);
  null_.push_back(false);
  formats_.push_back(0);
  return *this;
}
Params& Params::add(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  values_.emplace_back(buf);
  null_.push_back(false);
  formats_.push_back(0);
  return *this;
}
Params& Params::add(bool v) {
  values_.emplace_back(v ? "t" : "f");
  null_.push_back(false);
  formats_.push_back(0);
  return *this;
}
Params& Params::add_bytes(std::span<const uint8_t> v) {
  values_.emplace_back(reinterpret_cast<const char*>(v.data()), v.size());
  null_.push_back(false);
  formats_.push_back(1);
  return *this;
}
std::string text_array(const std::vector<std::string>& values) {
  std::string out = "{";
  for (size_t i = 0; i < values.size(); ++i) {
    if (i) out += ',';
    out += '"';
    for (char c : values[i]) {
      if (c == '"' || c == '\\') out += '\\';
      out += c;
    }
    out += '"';
  }
  return out + "}";
}

Params& Params::add_null() {
  values_.emplace_back();
  null_.push_back(true);
  formats_.push_back(0);
  return *this;
}

// ---- Rows

void Rows::Free::operator()(pg_result* r) const {
  PQclear(r);
}
int Rows::size() const {
  return r_ ? PQntuples(r_.get()) : 0;
}
int Rows::columns() const {
  return r_ ? PQnfields(r_.get()) : 0;
}
bool Rows::null(int row, int col) const {
  return PQgetisnull(r_.get(), row, col) != 0;
}

void Rows::type_error(int col, const char* wanted) const {
  std::fprintf(stderr, "fieldsync::pg: column %d (%s) of type oid %u read as %s\n", col,
               PQfname(r_.get(), col), PQftype(r_.get(), col), wanted);
  std::abort();
}

int64_t Rows::i64(int row, int col) const {
  const char* p = PQgetvalue(r_.get(), row, col);
  switch (PQftype(r_.get(), col)) {
    case kInt8:
      return big_endian<int64_t>(p);
    case kInt4:
      return big_endian<int32_t>(p);
    case kOid:
      return big_endian<uint32_t>(p);
    case kInt2:
      return big_endian<int16_t>(p);
    case kBool:
      return *p != 0;
    default:
      type_error(col, "an integer");
  }
}

double Rows::f64(int row, int col) const {
  const char* p = PQgetvalue(r_.get(), row, col);
  switch (PQftype(r_.get(), col)) {
    case kFloat8:
      return std::bit_cast<double>(big_endian<uint64_t>(p));
    case kFloat4:
      return std::bit_cast<float>(big_endian<uint32_t>(p));
    default:
      type_error(col, "a float");
  }
}

std::string_view Rows::bytes(int row, int col) const {
  switch (PQftype(r_.get(), col)) {
    case kText:
    case kVarchar:
    case kBpchar:
    case kName:
    case kBytea:
      return {PQgetvalue(r_.get(), row, col), static_cast<size_t>(PQgetlength(r_.get(), row, col))};
    default:
      type_error(col, "text or bytes");
  }
}

std::span<const uint8_t> Rows::blob(int row, int col) const {
  auto b = bytes(row, col);
  return {reinterpret_cast<const uint8_t*>(b.data()), b.size()};
}

Rows::Kind Rows::kind(int col) const {
  switch (PQftype(r_.get(), col)) {
    case kInt8:
    case kInt4:
    case kInt2:
    case kOid:
    case kBool:
      return Kind::kInteger;
    case kFloat8:
    case kFloat4:
      return Kind::kFloat;
    case kText:
    case kVarchar:
    case kBpchar:
    case kName:
    case kBytea:
      return Kind::kBytes;
    default:
      return Kind::kOther;
  }
}

uint64_t Rows::affected() const {
  const char* n = r_ ? PQcmdTuples(r_.get()) : "";
  return *n ? std::strtoull(n, nullptr, 10) : 0;
}

// ---- Conn

Result<std::unique_ptr<Conn>> Conn::open(const std::string& url) {
  const char* keys[] = {"dbname", "client_encoding", "application_name", nullptr};
  const char* values[] = {url.c_str(), "UTF8", "fieldsync", nullptr};
  // expand_dbname=1: `dbname` is the URL; the keywords after it override what it says (client_encoding must
  // be UTF8: text columns hold the model's UTF-8 strings byte for byte).
  PGconn* c = PQconnectdbParams(keys, values, 1);
  if (c == nullptr) return Status(ErrorCode::kInternal, "PostgreSQL connection: out of memory", true);
  if (PQstatus(c) != CONNECTION_OK) {
    std::string why = PQerrorMessage(c);
    PQfinish(c);
    while (!why.empty() && why.back() == '\n') why.pop_back();
    // A malformed URL is the operator's to fix; everything else (refused, timed out, auth) may pass.
    if (why.find("invalid") != std::string::npos && why.find("URI") != std::string::npos) {
      return Status(ErrorCode::kInvalidArgument, "PostgreSQL connection: " + why);
    }
    return Status(ErrorCode::kStorageIo, "PostgreSQL connection: " + why, true);
  }
  PQsetNoticeProcessor(c, ignore_notice, nullptr);
  return std::unique_ptr<Conn>(new Conn(c));
}

Conn::~Conn() {
  PQfinish(conn_);
}

bool Conn::broken() const {
  return PQstatus(conn_) != CONNECTION_OK;
}

bool Conn::in_transaction() const {
  auto s = PQtransactionStatus(conn_);
  return s == PQTRANS_INTRANS || s == PQTRANS_INERROR || s == PQTRANS_ACTIVE;
}

Status Conn::check(PGresult* r, std::string_view what) {
  if (r != nullptr) {
    auto st = PQresultStatus(r);
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
      sqlstate_.clear();
      return Status::ok();
    }
    const char* code = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    const char* msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
    sqlstate_ = code ? code : "";
    if (!broken() || code != nullptr) {
      return status_from(sqlstate_, what, msg ? msg : PQresultErrorMessage(r));
    }
  }
  sqlstate_.clear();
  return status_from("", what, broken() ? "" : PQerrorMessage(conn_));
}

Result<Rows> Conn::run(const std::string& sql, const Params& params) {
  if (broken()) return status_from("", "PostgreSQL statement", "");
  auto it = prepared_.find(sql);
  if (it == prepared_.end()) {
    if (prepared_.size() >= kMaxPrepared) {
      // The API builds its listings' SQL per request (filters, scope lists): a long-lived connection must not
      // keep every text it ever saw prepared on the server.
      if (Status s = exec_script("DEALLOCATE ALL"); !s) return s;
      prepared_.clear();
    }
    std::string name = "fs" + std::to_string(prepared_.size() + 1);
    PGresult* r = PQprepare(conn_, name.c_str(), sql.c_str(), 0, nullptr);
    Status s = check(r, "preparing a statement");
    PQclear(r);
    if (!s) return s;
    it = prepared_.emplace(sql, std::move(name)).first;
  }
  const size_t n = params.values_.size();
  std::vector<const char*> values(n);
  std::vector<int> lengths(n);
  for (size_t i = 0; i < n; ++i) {
    values[i] = params.null_[i] ? nullptr : params.values_[i].data();
    lengths[i] = static_cast<int>(params.values_[i].size());
  }
  PGresult* r = PQexecPrepared(conn_, it->second.c_str(), static_cast<int>(n), values.data(), lengths.data(),
                               params.formats_.data(), /*resultFormat=*/1);
  Status s = check(r, "PostgreSQL statement");
  if (!s) {
    PQclear(r);
    return s;
  }
  return Rows(r);
}

Result<Rows> Conn::query(const std::string& sql, const Params& params) {
  return run(sql, params);
}

Status Conn::exec(const std::string& sql, const Params& params) {
  auto r = run(sql, params);
  return r ? Status::ok() : r.status();
}

Status Conn::for_each_row(const std::string& sql, const std::function<Status(const Rows&)>& row) {
  if (broken()) return status_from("", "PostgreSQL query", "");
  if (PQsendQueryParams(conn_, sql.c_str(), 0, nullptr, nullptr, nullptr, nullptr, 1) != 1)
    return check(nullptr, "PostgreSQL query");
  Status out;
  if (PQsetSingleRowMode(conn_) != 1) out = Status(ErrorCode::kInternal, "libpq refused single-row mode");
  while (PGresult* r = PQgetResult(conn_)) {
    if (PQresultStatus(r) == PGRES_SINGLE_TUPLE) {
      Rows one(r);  // owns r
      if (out) out = row(one);
      continue;
    }
    Status s = check(r, "PostgreSQL query");  // the end (TUPLES_OK, no rows) or the error
    PQclear(r);
    if (out) out = s;
  }
  return out;
}

Status Conn::exec_script(const std::string& sql) {
  if (broken()) return status_from("", "PostgreSQL script", "");
  PGresult* r = PQexec(conn_, sql.c_str());
  Status s = check(r, "PostgreSQL script");
  PQclear(r);
  return s;
}

Status Conn::begin(std::string_view how) {
  return exec_script(std::string(how));
}

Status Conn::commit(std::string_view before) {
  if (broken()) return status_from("", "COMMIT", "");
  const std::string sql = std::string(before) + "COMMIT";
  PGresult* r = PQexec(conn_, sql.c_str());
  Status s = check(r, "COMMIT");
  if (s && std::strcmp(PQcmdStatus(r), "COMMIT") != 0) {
    // The server ended a failed transaction with ROLLBACK: nothing of it was written.
    s = Status(ErrorCode::kInternal, "COMMIT rolled back: the transaction had failed");
  }
  PQclear(r);
  return s;
}

Status Conn::rollback() {
  return exec_script("ROLLBACK");
}

}  // namespace fieldsync::pg
