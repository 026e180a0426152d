// PostgreSQL central store. See pg_store.h for the layout, the sequence rule, and the threading and error
// rules; pg.h for the connection layer.
#include "fieldsync/server/pg_store.h"

#include <algorithm>
#include <map>
#include <set>
#include <tuple>

#include "fieldsync/schema/ddl.h"
#include "fieldsync/server/reports.h"
#include "fieldsync/sync/codec.h"
#include "fieldsync/sync/schedule.h"
#include "fieldsync/sync/scope.h"
#include "pg.h"
#include "store_common.h"
#include "wall_clock.h"

namespace fieldsync::server {

using schema::quoted;

namespace {

using namespace store_common;

// Format of the store's tables; bump on a change and migrate on open (migrate()).
//   1: the first.
//   2: head-office reports (kReportDdl): _stage_history (kept by save(), as SqliteCentralStore keeps it; the
//      migration files each opportunity's current stage), the settings _stage_probability and _case_sla, the
//      facts as views over the entity tables, fs_case_billable, and the indexes the reports' periods walk.
constexpr int64_t kFormat = 2;

// Held (transaction-scoped) while a store creates or migrates its tables: two instances starting at once
// would otherwise race on CREATE TABLE IF NOT EXISTS (which is not atomic against itself in PostgreSQL).
constexpr int64_t kSchemaLockKey = 0x6669656c6473796eLL;  // "fieldsyn"

// The key space of the advisory locks on an owner's calendar (events_overlapping), apart from other users of
// two-key advisory locks in the same database.
constexpr int32_t kCalendarLockSpace = 0x66736361;  // "fsca"

const char* const kStoreDdl[] = {
    "CREATE TABLE IF NOT EXISTS _log (server_seq BIGINT PRIMARY KEY, origin_node BIGINT NOT NULL, "
    "origin_user TEXT COLLATE \"C\" NOT NULL, origin_node_seq BIGINT NOT NULL, change_count INTEGER NOT "
    "NULL, "
    "blob BYTEA NOT NULL, recorded_at_ms BIGINT NOT NULL DEFAULT 0)",
    // keys_created_by reads one node's entries (SQLite walks the whole log for it; an index is cheap here).
    "CREATE INDEX IF NOT EXISTS idx_log_origin_node ON _log (origin_node)",
    "CREATE TABLE IF NOT EXISTS _log_scope (scope TEXT COLLATE \"C\" NOT NULL, server_seq BIGINT NOT NULL, "
    "PRIMARY KEY (scope, server_seq))",
    "CREATE TABLE IF NOT EXISTS _conflicts (id BIGSERIAL PRIMARY KEY, server_seq BIGINT NOT NULL, kind TEXT "
    "NOT "
    "NULL, entity TEXT NOT NULL, record TEXT NOT NULL, field TEXT, winner_user TEXT, loser_user TEXT, rule "
    "TEXT, "
    "blob BYTEA NOT NULL)",
    "CREATE INDEX IF NOT EXISTS idx_conflicts_seq ON _conflicts (server_seq, id)",
    "CREATE TABLE IF NOT EXISTS _nodes (node BIGINT PRIMARY KEY, last_node_seq BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS _rejections (node BIGINT NOT NULL, node_seq BIGINT NOT NULL, \"user\" TEXT "
    "NOT "
    "NULL, reason INTEGER NOT NULL, reason_name TEXT NOT NULL, message TEXT NOT NULL, recorded_at_ms BIGINT "
    "NOT "
    "NULL, PRIMARY KEY (node, node_seq))",
    "CREATE TABLE IF NOT EXISTS _head (id BOOLEAN PRIMARY KEY DEFAULT true CHECK (id), server_seq BIGINT NOT "
    "NULL, clock BIGINT NOT NULL)",
    "INSERT INTO _head (id, server_seq, clock) VALUES (true, 0, 0) ON CONFLICT (id) DO NOTHING",
    "CREATE TABLE IF NOT EXISTS _state (key TEXT PRIMARY KEY, value BIGINT NOT NULL)",
    // Scheduling conflicts look up one owner's events by time (events_overlapping).
    "CREATE INDEX IF NOT EXISTS idx_calendar_event_owner_start ON calendar_event (owner_id, start_at)",
};

// ---- Reports (format 2; server/src/reports.cc runs the same SQL on both stores, DESIGN.md "Reports on
// PostgreSQL"). SQLite keeps its facts and rollups in tables written by triggers so that no report walks a
// year of rows; here the facts are views over the entity tables with the same names and columns: PostgreSQL
// aggregates a year of the bench store's rows within the reports' budget (PERFORMANCE.md), and the write path
// -- the small-push target on this store -- pays nothing for them. The stage history cannot be a view (it
// keeps moves the row no longer shows): save() keeps it, as SqliteCentralStore does.

// A line's net amount as FieldClient computes it (the same expression as reports.cc's kLineNet).
#define PG_LINE_NET(L)                                                                                      \
  "(" L "quantity * " L "unit_price_cents - ((" L "quantity * " L "unit_price_cents) / 10000 * coalesce(" L \
  "discount_bp, 0) + ((" L "quantity * " L "unit_price_cents) % 10000 * coalesce(" L                        \
  "discount_bp, 0) + 5000) / 10000))"

std::vector<std::string> report_ddl() {
  using reports::kMatchAfterMs;
  using reports::kMatchBeforeMs;
  return {
      // An opportunity's stints per stage (sqlite_store.cc has the same table).
      "CREATE TABLE IF NOT EXISTS _stage_history (id BIGSERIAL PRIMARY KEY, opportunity_id TEXT COLLATE \"C\" "
      "NOT NULL, stage TEXT COLLATE \"C\" NOT NULL, entered_at_ms BIGINT NOT NULL, left_at_ms BIGINT, next_stage "
      "TEXT COLLATE \"C\")",
      "CREATE INDEX IF NOT EXISTS idx_stage_history_opp ON _stage_history (opportunity_id, left_at_ms, "
      "entered_at_ms)",
      "CREATE INDEX IF NOT EXISTS idx_stage_history_left ON _stage_history (left_at_ms, entered_at_ms, "
      "opportunity_id, stage, next_stage)",
      "CREATE INDEX IF NOT EXISTS idx_stage_history_entered ON _stage_history (stage, entered_at_ms, "
      "opportunity_id)",
      // Head office's settings, shared by every instance: the forecast's probabilities and the case SLA.
      "CREATE TABLE IF NOT EXISTS _stage_probability (stage TEXT COLLATE \"C\" PRIMARY KEY, probability_bp "
      "BIGINT NOT NULL)",
      "CREATE TABLE IF NOT EXISTS _case_sla (priority TEXT COLLATE \"C\" PRIMARY KEY, due_minutes BIGINT NOT "
      "NULL)",
      // The company's time zone (Options::time_zone), as SQLite's store file keeps it; no rollup here.
      "CREATE TABLE IF NOT EXISTS _report_zone (id INTEGER PRIMARY KEY CHECK (id = 1), name TEXT NOT NULL)",
      // What the periods filter by.
      "CREATE INDEX IF NOT EXISTS idx_report_order_date ON \"order\" ((coalesce(submitted_at, approved_at)))",
      "CREATE INDEX IF NOT EXISTS idx_report_visit_check_in ON visit (check_in_at)",
      "CREATE INDEX IF NOT EXISTS idx_report_visit_account ON visit (account_id, check_in_at)",
      "CREATE INDEX IF NOT EXISTS idx_report_visit_event ON visit (calendar_event_id, check_in_at)",
      "CREATE INDEX IF NOT EXISTS idx_report_event_start ON calendar_event (start_at)",
      "CREATE INDEX IF NOT EXISTS idx_report_opportunity_stage ON opportunity (stage)",
      "CREATE INDEX IF NOT EXISTS idx_report_lead_created ON lead (created_at)",
      "CREATE INDEX IF NOT EXISTS idx_report_case_opened ON service_case (opened_at)",
      // _order_fact: one row per order with its date, status, rep, account, the account's territory, currency
      // and its live lines' totals.
      "CREATE OR REPLACE VIEW _order_fact AS SELECT o.id AS order_id, coalesce(o.submitted_at, o.approved_at) "
      "AS at_ms, o.status, o._deleted AS deleted, o.rep_id, o.account_id, a.territory_id AS territory, "
      "o.currency, coalesce(t.quantity, 0) AS quantity, coalesce(t.net_cents, 0) AS net_cents FROM \"order\" o "
      "LEFT JOIN account a ON a.id = o.account_id LEFT JOIN LATERAL (SELECT CAST(sum(l.quantity) AS BIGINT) AS "
      "quantity, CAST(sum(" PG_LINE_NET("l.") ") AS BIGINT) AS net_cents FROM order_line l WHERE l.order_id = "
      "o.id AND NOT l._deleted) t ON true",
      // _order_line_fact: one row per line with its order's date, status, rep, territory and currency.
      "CREATE OR REPLACE VIEW _order_line_fact AS SELECT l.order_id, l.id AS line_id, l.product_id, l._deleted "
      "AS deleted, l.quantity, " PG_LINE_NET("l.") " AS net_cents, coalesce(o.submitted_at, o.approved_at) AS "
      "at_ms, o.status, coalesce(o._deleted, false) AS order_deleted, o.rep_id, a.territory_id AS territory, "
      "o.currency FROM order_line l LEFT JOIN \"order\" o ON o.id = l.order_id LEFT JOIN account a ON a.id = "
      "o.account_id",
      // _appointment_fact: each calendar event with the check-in of the visit that executes it (reports.h:
      // the earliest linked to it, else the owner's earliest at its account in the window around the start).
      "CREATE OR REPLACE VIEW _appointment_fact AS SELECT e.id AS event_id, e.start_at, e._deleted AS deleted, "
      "e.status, e.account_id, e.owner_id, coalesce((SELECT min(v.check_in_at) FROM visit v WHERE "
      "v.calendar_event_id = e.id AND NOT v._deleted), (SELECT min(v.check_in_at) FROM visit v WHERE "
      "v.account_id = e.account_id AND NOT v._deleted AND v.check_in_at >= e.start_at - " +
          std::to_string(kMatchBeforeMs) + " AND v.check_in_at < e.start_at + " + std::to_string(kMatchAfterMs) +
          " AND v.rep_id = e.owner_id)) AS visit_at FROM calendar_event e",
      // rules.h's case_billable (a case on an asset out of warranty, or with none, is billable; without an
      // asset it is not), as the SQLite report connection registers it in C++. Tested on both stores.
      "CREATE OR REPLACE FUNCTION fs_case_billable(has_asset boolean, warranty_end_at bigint, opened_at "
      "bigint) RETURNS integer LANGUAGE sql IMMUTABLE AS $$ SELECT CASE WHEN has_asset AND (warranty_end_at "
      "IS NULL OR warranty_end_at < coalesce(opened_at, 0)) THEN 1 ELSE 0 END $$",
  };
}

// Files a stage move of `record` (an opportunity about to be saved) in _stage_history, as
// SqliteCentralStore::record_stage does: if the stage changes (or the deal is new), the open stint ends and a
// new one begins at the stage field's version time; a move stamped before the stint it ends began ends it at
// its own start.
Status record_stage(pg::Conn& c, const RecordState& record) {
  const FieldState* stage = record.field(schema::fields::kOpportunityStage);
  if (stage == nullptr || !(stage->value.kind() == Value::Kind::kText)) return Status::ok();
  const std::string id = record.id.to_string();
  const int64_t at_ms = hlc_physical_ms(stage->version.hlc);
  auto now = c.query("SELECT stage FROM opportunity WHERE id = $1 AND NOT _deleted", pg::Params().add(id));
  if (!now) return now.status();
  if (now->size() > 0 && now->text(0, 0) == stage->value.as_text()) return Status::ok();
  if (Status s =
          c.exec("UPDATE _stage_history SET left_at_ms = greatest($1, entered_at_ms), next_stage = $2 WHERE "
                 "opportunity_id = $3 AND left_at_ms IS NULL",
                 pg::Params().add(at_ms).add(std::string_view(stage->value.as_text())).add(id));
      !s)
    return s;
  return c.exec("INSERT INTO _stage_history (opportunity_id, stage, entered_at_ms) VALUES ($1, $2, $3)",
                pg::Params().add(id).add(std::string_view(stage->value.as_text())).add(at_ms));
}

// The model's DDL in PostgreSQL dialect, without the one-column index on a scope field that the (scope field,
// id) index below serves as well (as SqliteCentralStore does: two indexes on one field cost every insert).
std::vector<std::string> model_ddl() {
  std::vector<std::string> skip;
  for (const schema::EntityDef& e : schema::entities())
    if (const schema::FieldDef* f = direct_scope_field(e))
      skip.push_back(" " + quoted("idx_" + std::string(e.name) + "_" + std::string(f->name)) + " ON ");
  std::vector<std::string> out;
  for (std::string& sql : schema::all_ddl(schema::Dialect::kPostgres)) {
    const bool superseded =
        sql.rfind("CREATE INDEX", 0) == 0 &&
        std::any_of(skip.begin(), skip.end(), [&](const std::string& n) { return sql.find(n) != sql.npos; });
    if (!superseded) out.push_back(std::move(sql));
  }
  for (std::string& sql : scan_index_ddl()) out.push_back(std::move(sql));
  return out;
}

// The projection of a field value into its typed column. The model's validation makes a value's kind match
// its field's type before anything is saved; a value that does not match anyway (a record written by a test,
// an older model) is projected as NULL rather than fail the save: `_meta` is the source of truth.
void add_value(pg::Params& p, const Value& v, schema::FieldType type) {
  using K = Value::Kind;
  using T = schema::FieldType;
  switch (type) {
    case T::kText:
    case T::kId:
    case T::kEnum:
    case T::kUserId:
      if (v.kind() == K::kText) return void(p.add(std::string_view(v.as_text())));
      break;
    case T::kInt:
    case T::kTimestamp:
      if (v.kind() == K::kInt) return void(p.add(v.as_int()));
      break;
    case T::kBool:
      if (v.kind() == K::kBool) return void(p.add(v.as_bool()));
      if (v.kind() == K::kInt) return void(p.add(v.as_int() != 0));
      break;
    case T::kReal:
      if (v.kind() == K::kReal) return void(p.add(v.as_real()));
      if (v.kind() == K::kInt) return void(p.add(static_cast<double>(v.as_int())));
      break;
  }
  p.add_null();
}

std::string build_upsert_sql(const schema::EntityDef& e) {
  std::string cols = "id", params = "$1", updates;
  int n = 1;
  for (const schema::FieldDef& f : e.fields) {
    cols += ", " + quoted(f.name);
    params += ", $" + std::to_string(++n);
    updates += quoted(f.name) + " = EXCLUDED." + quoted(f.name) + ", ";
  }
  params += ", $" + std::to_string(n + 1) + ", $" + std::to_string(n + 2);
  return "INSERT INTO " + quoted(e.name) + " (" + cols + ", _deleted, _meta) VALUES (" + params +
         ") ON CONFLICT (id) DO UPDATE SET " + updates +
         "_deleted = EXCLUDED._deleted, _meta = EXCLUDED._meta";
}

const std::string& upsert_sql(const schema::EntityDef& e) {
  static const std::map<EntityId, std::string> sql = [] {
    std::map<EntityId, std::string> m;
    for (const schema::EntityDef& def : schema::entities()) m.emplace(def.id, build_upsert_sql(def));
    return m;
  }();
  return sql.at(e.id);
}

// ---- Reads shared by a transaction and the read side (both on one connection)

Status decode_records(const pg::Rows& rows, int col, std::vector<RecordState>& out) {
  for (int i = 0; i < rows.size(); ++i) {
    Result<RecordState> r = codec::decode_record(rows.blob(i, col));
    if (!r) return corrupt("record", r.status());
    out.push_back(std::move(r.value()));
  }
  return Status::ok();
}

// `for_update`: inside a CentralTxn, the row is locked until commit (see PgCentralTxn::load).
Result<std::optional<RecordState>> read_record(pg::Conn& c, EntityId entity, const RecordId& id,
                                               bool for_update = false) {
  const schema::EntityDef* e = schema::entity(entity);
  if (e == nullptr) return std::optional<RecordState>();
  auto rows =
      c.query("SELECT _meta FROM " + quoted(e->name) + " WHERE id = $1" + (for_update ? " FOR UPDATE" : ""),
              pg::Params().add(id.to_string()));
  if (!rows) return rows.status();
  if (rows->size() == 0) return std::optional<RecordState>();
  Result<RecordState> r = codec::decode_record(rows->blob(0, 0));
  if (!r) return corrupt("record " + id.to_string(), r.status());
  return std::optional<RecordState>(std::move(r.value()));
}

Result<std::vector<RecordState>> read_events(pg::Conn& c, const UserId& owner, int64_t start_ms,
                                             int64_t end_ms) {
  auto rows = c.query(
      "SELECT _meta FROM calendar_event WHERE owner_id = $1 AND start_at < $2 AND end_at > $3 AND NOT "
      "_deleted "
      "AND status = 'scheduled' ORDER BY id",
      pg::Params().add(std::string_view(owner)).add(end_ms).add(start_ms));
  if (!rows) return rows.status();
  std::vector<RecordState> out;
  if (Status s = decode_records(*rows, 0, out); !s) return s;
  std::erase_if(out, [&](const RecordState& r) { return !scheduled_overlap(r, owner, start_ms, end_ms); });
  return out;
}

Result<NodeState> read_node_state(pg::Conn& c, NodeId node) {
  auto rows = c.query("SELECT last_node_seq FROM _nodes WHERE node = $1", pg::Params().add(as_sql(node)));
  if (!rows) return rows.status();
  if (rows->size() == 0) return NodeState{node, 0};
  return NodeState{node, from_sql(rows->i64(0, 0))};
}

Result<std::optional<StoredRejection>> read_rejection(pg::Conn& c, NodeId node, uint64_t node_seq) {
  auto rows = c.query("SELECT \"user\", reason, message FROM _rejections WHERE node = $1 AND node_seq = $2",
                      pg::Params().add(as_sql(node)).add(as_sql(node_seq)));
  if (!rows) return rows.status();
  if (rows->size() == 0) return std::optional<StoredRejection>();
  return std::optional<StoredRejection>(StoredRejection{
      node, node_seq, rows->text(0, 0), static_cast<ErrorCode>(rows->i64(0, 1)), rows->text(0, 2)});
}

Result<uint64_t> read_head_seq(pg::Conn& c) {
  auto rows = c.query("SELECT coalesce(max(server_seq), 0)::bigint FROM _log");
  if (!rows) return rows.status();
  return from_sql(rows->i64(0, 0));
}

Result<ServerTxn> decode_log_entry(const pg::Rows& rows, int row, int seq_col, int blob_col) {
  const uint64_t seq = from_sql(rows.i64(row, seq_col));
  Result<ServerTxn> t = codec::decode_server_txn(rows.blob(row, blob_col));
  if (!t) return corrupt("log entry " + std::to_string(seq), t.status());
  if (t->server_seq != seq)
    return corrupt("log entry " + std::to_string(seq),
                   Status(ErrorCode::kStorageCorrupt, "sequence mismatch"));
  return t;
}

// The SQL condition on entity `e`'s projection columns under which a row's scope may be one of the
// territories ($1, a text[]) or owners ($2), following parent links as resolve_scope does. Tombstones keep
// their scope field, so they match too.
std::string scope_condition(const schema::EntityDef& e, bool any_territory, bool any_owner, bool global,
                            int depth) {
  const schema::FieldDef* field = e.field(e.scope.field);
  switch (e.scope.kind) {
    case schema::ScopeKind::kGlobal:
      return global ? "true" : "false";
    case schema::ScopeKind::kTerritory:
      return field && any_territory ? quoted(field->name) + " = ANY($1::text[])" : "false";
    case schema::ScopeKind::kOwner:
      return field && any_owner ? quoted(field->name) + " = ANY($2::text[])" : "false";
    case schema::ScopeKind::kParent: {
      const schema::EntityDef* parent = schema::entity(e.scope.parent);
      if (field == nullptr || parent == nullptr || depth >= kMaxScopeHops)
        return "false";  // as resolve_scope
      std::string inner = scope_condition(*parent, any_territory, any_owner, global, depth + 1);
      if (inner == "false") return "false";
      return quoted(field->name) + " IN (SELECT id FROM " + quoted(parent->name) + " WHERE " + inner + ")";
    }
  }
  return "false";
}

struct ScopeLists {
  std::vector<std::string> territories, owners;
  bool global = false;
};

ScopeLists split_scopes(const std::vector<ScopeKey>& scopes) {
  ScopeLists out;
  for (const ScopeKey& k : scopes) {
    if (k.kind == ScopeKey::Kind::kTerritory) out.territories.push_back(k.value);
    if (k.kind == ScopeKey::Kind::kOwner) out.owners.push_back(k.value);
    out.global |= k.kind == ScopeKey::Kind::kGlobal;
  }
  return out;
}

}  // namespace

// ---- Connections
// ---------------------------------------------------------------------------------------------

// A pooled connection for one read-side call, or for one transaction: back to the pool when done, unless it
// broke or is still inside a transaction (then it is closed: the server rolls back whatever was open).
class PgCentralStore::Lease {
 public:
  explicit Lease(PgCentralStore& store) : store_(store) {
    auto c = store.acquire();
    if (c) {
      conn_ = std::move(c.value());
    } else {
      status_ = c.status();
    }
  }
  ~Lease() { end(); }
  Lease(const Lease&) = delete;
  Lease& operator=(const Lease&) = delete;

  const Status& status() const { return status_; }
  pg::Conn& conn() { return *conn_; }
  // One snapshot for the rest of this call (multi-statement reads).
  Status snapshot() {
    Status s = conn_->begin("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
    snapshot_ = s.is_ok();
    return s;
  }
  void end() {
    if (!conn_) return;
    if (snapshot_ && !conn_->broken()) (void)conn_->rollback();  // read only: nothing to commit
    snapshot_ = false;
    store_.release(std::move(conn_));
  }

 private:
  PgCentralStore& store_;
  std::unique_ptr<pg::Conn> conn_;
  Status status_;
  bool snapshot_ = false;
};

Result<std::unique_ptr<pg::Conn>> PgCentralStore::acquire() {
  {
    std::lock_guard lock(pool_mu_);
    if (!idle_.empty()) {
      std::unique_ptr<pg::Conn> c = std::move(idle_.back());
      idle_.pop_back();
      return c;
    }
  }
  auto c = pg::Conn::open(url_);
  if (!c) return c.status();
  // Durability is the store's, not the database default's: an acknowledgement must follow a flushed commit.
  // A stronger setting an operator chose (remote_write, remote_apply) is kept.
  if (Status s = (*c)->exec_script("SET lock_timeout = " + std::to_string(options_.lock_timeout_ms) +
                                   "; SET default_transaction_isolation = 'read committed'");
      !s)
    return s;
  auto sc = (*c)->query("SELECT current_setting('synchronous_commit')");
  if (!sc) return sc.status();
  const std::string mode = sc->text(0, 0);
  if (mode == "off" || mode == "local")
    if (Status s = (*c)->exec_script("SET synchronous_commit = on"); !s) return s;
  return c;
}

void PgCentralStore::release(std::unique_ptr<pg::Conn> conn) {
  if (!conn) return;
  std::lock_guard lock(pool_mu_);
  if (conn->broken()) {
    // The server went away (a restart, a failover): the idle connections are as dead as this one, and each
    // would fail one more call. The next calls open new ones.
    idle_.clear();
    return;
  }
  if (conn->in_transaction()) return;  // closed here: the server rolls back what was open
  if (idle_.size() < options_.max_idle_connections) idle_.push_back(std::move(conn));
}

int64_t PgCentralStore::now_ms() const {
  return options_.now_ms ? options_.now_ms() : wall_ms();
}

PgCentralStore::~PgCentralStore() = default;

// ---- Transaction
// -----------------------------------------------------------------------------------------------

class PgCentralTxn final : public CentralTxn {
 public:
  explicit PgCentralTxn(PgCentralStore& store) : store_(store) {
    auto c = store.acquire();
    if (!c) {
      error_ = c.status();
      return;
    }
    conn_ = std::move(c.value());
    // Group commit: the commit returns once its WAL record is written, not flushed; sync() flushes. One
    // round trip for both statements.
    if (Status s =
            conn_->begin(store.options_.group_commit ? "BEGIN; SET LOCAL synchronous_commit = off" : "BEGIN");
        !s) {
      error_ = s;
      return;
    }
    open_ = true;
  }

  ~PgCentralTxn() override {
    if (open_ && !conn_->broken()) (void)conn_->rollback();
    store_.release(std::move(conn_));
  }

  Result<std::optional<RecordState>> load(EntityId entity, const RecordId& id) override {
    if (!open_) return store_.load(entity, id);
    return keep(read_record(*conn_, entity, id, /*for_update=*/true));
  }

  // The overlay order of MemoryCentralTxn: committed events first, then the ones this transaction saved, each
  // group by id. The rows already reflect this transaction's writes.
  Result<std::vector<RecordState>> events_overlapping(const UserId& owner, int64_t start_ms,
                                                      int64_t end_ms) override {
    if (!open_) {
      PgCentralStore::Lease lease(store_);
      if (!lease.status()) return lease.status();
      return read_events(lease.conn(), owner, start_ms, end_ms);
    }
    // The owner's calendar, locked until commit: two instances each booking an overlapping event for the same
    // owner would otherwise both find the slot free (a predicate no row lock covers).
    if (Status s = conn_->exec("SELECT pg_advisory_xact_lock($1, hashtext($2))",
                               pg::Params().add(int64_t{kCalendarLockSpace}).add(std::string_view(owner)));
        !s) {
      fail(s);
      return s;
    }
    Result<std::vector<RecordState>> out = keep(read_events(*conn_, owner, start_ms, end_ms));
    if (!out) return out;
    std::stable_partition(out->begin(), out->end(), [&](const RecordState& r) {
      return saved_events_.count(RecordKey{r.entity, r.id}) == 0;
    });
    return out;
  }

  void save(const RecordState& record) override {
    if (!usable()) return;
    const schema::EntityDef* e = schema::entity(record.entity);
    if (e == nullptr)
      return fail(Status(ErrorCode::kInvalidArgument, "save of a record of an unknown entity"));
    pg::Params p;
    p.add(record.id.to_string());
    for (const schema::FieldDef& f : e->fields) {
      // The raw value, also for tombstones: they keep their scope field, which scope_children follows.
      const FieldState* fs = record.field(f.id);
      add_value(p, fs ? fs->value : Value::null(), f.type);
    }
    p.add(record.deleted);
    const std::vector<uint8_t> meta = codec::encode_record(record);
    p.add_bytes(meta);
    if (record.entity == EntityId::kOpportunity)
      if (Status s = record_stage(*conn_, record); !s) return fail(s);
    if (Status s = conn_->exec(upsert_sql(*e), p); !s) return fail(s);
    if (record.entity == EntityId::kCalendarEvent) saved_events_.insert(RecordKey{record.entity, record.id});
  }

  // Locks the node's watermark row until commit (created at 0 if the node is new), so another instance
  // applying the same node's transaction waits for this one and then sees its watermark: dedupe holds
  // across instances.
  // One round trip: the no-op DO UPDATE takes the row lock (waiting for another holder's commit, then
  // returning the committed value, as SELECT ... FOR UPDATE would) and creates the row if it is absent.
  Result<NodeState> node_state(NodeId node) override {
    if (!open_) return store_.node_state(node);
    auto rows = conn_->query(
        "INSERT INTO _nodes (node, last_node_seq) VALUES ($1, 0) ON CONFLICT (node) DO UPDATE SET "
        "last_node_seq = _nodes.last_node_seq RETURNING last_node_seq",
        pg::Params().add(as_sql(node)));
    if (!rows) {
      fail(rows.status());
      return rows.status();
    }
    if (auto set = nodes_.find(node); set != nodes_.end())
      return NodeState{node, set->second};  // not sent yet
    if (rows->size() == 0) return NodeState{node, 0};
    return NodeState{node, from_sql(rows->i64(0, 0))};
  }

  // Sent with COMMIT (see commit()).
  void set_node_state(const NodeState& state) override {
    if (!usable()) return;
    nodes_[state.node] = state.last_node_seq;
  }

  void add_rejection(const StoredRejection& r) override {
    if (!usable()) return;
    if (Status s = conn_->exec(
            "INSERT INTO _rejections (node, node_seq, \"user\", reason, reason_name, message, "
            "recorded_at_ms) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (node, node_seq) DO UPDATE SET \"user\" = "
            "EXCLUDED.\"user\", reason = EXCLUDED.reason, reason_name = EXCLUDED.reason_name, message = "
            "EXCLUDED.message, recorded_at_ms = EXCLUDED.recorded_at_ms",
            pg::Params()
                .add(as_sql(r.node))
                .add(as_sql(r.node_seq))
                .add(std::string_view(r.user))
                .add(int64_t{static_cast<uint16_t>(r.reason)})
                .add(to_string(r.reason))
                .add(std::string_view(r.message))
                .add(store_.now_ms()));
        !s)
      fail(s);
  }

  Result<std::optional<StoredRejection>> rejection(NodeId node, uint64_t node_seq) override {
    if (!open_) {
      PgCentralStore::Lease lease(store_);
      if (!lease.status()) return lease.status();
      return read_rejection(lease.conn(), node, node_seq);
    }
    return keep(read_rejection(*conn_, node, node_seq));
  }

  // The sequence rule (pg_store.h): the counter row's lock, held to the end of this transaction, orders the
  // commits of every writer by their sequence.
  uint64_t append_log(ServerTxn txn, std::vector<ConflictRecord> conflicts,
                      std::vector<ScopeKey> scopes) override {
    if (!usable()) return 0;  // never committed: commit() reports the error
    // The first entry of the transaction takes the head's row lock and the next sequence; while the lock is
    // held nobody else can take one, so the later entries count on from it here and commit() writes the
    // last one to the head (with COMMIT, one round trip).
    uint64_t seq = 0;
    if (last_seq_ == 0) {
      auto head = conn_->query("UPDATE _head SET server_seq = server_seq + 1 RETURNING server_seq");
      if (!head) {
        fail(head.status());
        return 0;
      }
      seq = from_sql(head->i64(0, 0));
    } else {
      seq = last_seq_ + 1;
      head_dirty_ = true;
    }
    last_seq_ = seq;
    txn.server_seq = seq;
    const std::vector<uint8_t> blob = codec::encode_server_txn(txn);
    std::vector<std::string> keys;
    for (const ScopeKey& k : scopes) keys.push_back(scope_text(k));
    // The entry and its scope index rows in one statement (one round trip).
    if (Status s = conn_->exec(
            "WITH entry AS (INSERT INTO _log (server_seq, origin_node, origin_user, origin_node_seq, "
            "change_count, blob, recorded_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7)) INSERT INTO _log_scope "
            "(scope, server_seq) SELECT DISTINCT k, $1::bigint FROM unnest($8::text[]) AS k ON CONFLICT DO "
            "NOTHING",
            pg::Params()
                .add(as_sql(seq))
                .add(as_sql(txn.origin_node))
                .add(std::string_view(txn.origin_user))
                .add(as_sql(txn.origin_node_seq))
                .add(static_cast<int64_t>(txn.changes.size()))
                .add_bytes(blob)
                .add(store_.now_ms())
                .add(pg::text_array(keys)));
        !s) {
      fail(s);
      return seq;
    }
    for (ConflictRecord& c : conflicts) {
      c.server_seq = seq;
      pg::Params p;
      p.add(as_sql(seq)).add(to_string(c.kind)).add(entity_name(c.entity)).add(c.record.to_string());
      if (c.field != 0) {
        p.add(field_name(c.entity, c.field));
      } else {
        p.add_null();
      }
      const std::vector<uint8_t> cblob = codec::encode_conflict(c);
      p.add(std::string_view(c.winner.user))
          .add(std::string_view(c.loser.user))
          .add(std::string_view(c.rule))
          .add_bytes(cblob);
      if (Status s =
              conn_->exec("INSERT INTO _conflicts (server_seq, kind, entity, record, field, winner_user, "
                          "loser_user, rule, blob) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                          p);
          !s) {
        fail(s);
        return seq;
      }
    }
    return seq;
  }

  // Sent with COMMIT (see commit()).
  void set_clock(Hlc hlc) override {
    if (!usable()) return;
    clock_ = std::max(clock_.value_or(0), hlc);
  }

  Status commit() override {
    if (!open_) return error_;  // begin failed (kept its error), or committed already (see below)
    Status result = error_;
    if (result) result = conn_->commit(deferred_sql());
    if (!result && !conn_->broken() && conn_->in_transaction()) (void)conn_->rollback();
    open_ = false;
    error_ = result ? Status(ErrorCode::kInternal, "central store transaction committed twice") : result;
    return result;
  }

 private:
  bool usable() const { return open_ && error_.is_ok(); }
  // The writes commit() sends ahead of COMMIT in the same round trip: watermarks, the clock and the log head.
  // Integers only (formatted here, never text from outside), so a simple-protocol script is safe.
  std::string deferred_sql() const {
    std::string sql;
    for (const auto& [node, seq] : nodes_)
      sql += "INSERT INTO _nodes (node, last_node_seq) VALUES (" + std::to_string(as_sql(node)) + ", " +
             std::to_string(as_sql(seq)) +
             ") ON CONFLICT (node) DO UPDATE SET last_node_seq = " + "EXCLUDED.last_node_seq; ";
    if (clock_ || head_dirty_) {
      sql += "UPDATE _head SET ";
      if (clock_) sql += "clock = greatest(clock, " + std::to_string(as_sql(*clock_)) + ")";
      if (head_dirty_)
        sql += std::string(clock_ ? ", " : "") + "server_seq = " + std::to_string(as_sql(last_seq_));
      sql += "; ";
    }
    return sql;
  }
  void fail(const Status& s) {
    if (error_) error_ = s;
  }
  template <typename T>
  Result<T> keep(Result<T> r) {
    if (!r) fail(r.status());
    return r;
  }

  PgCentralStore& store_;
  std::unique_ptr<pg::Conn> conn_;
  bool open_ = false;
  Status error_;
  std::set<RecordKey> saved_events_;  // calendar events saved here (ordering of events_overlapping)
  // Written at commit (deferred_sql).
  std::map<NodeId, uint64_t> nodes_;
  std::optional<Hlc> clock_;
  uint64_t last_seq_ = 0;    // the last sequence this transaction took (0: none yet, the head not locked)
  bool head_dirty_ = false;  // sequences after the first one taken: the head row must be set at commit
};

// ---- Store
// -----------------------------------------------------------------------------------------------------

namespace {

// Brings a database of an older format up to kFormat, inside open()'s transaction (the tables of kFormat
// exist already), oldest step first.
// Reports: each opportunity's current stage as its open stint, from its stage field's version (the moves
// before were not kept), as SqliteCentralStore's format 5 -- for a database of format 1, and for one whose
// opportunities came without their history (`fieldsync-admin migrate` copies the records, not SQLite's
// derived _stage_history): without it the funnel and stalled deals would not see those deals at all.
Status file_current_stages(pg::Conn& conn) {
  {
    auto rows = conn.query("SELECT _meta FROM opportunity WHERE NOT _deleted");
    if (!rows) return rows.status();
    std::vector<RecordState> opps;
    if (Status s = decode_records(*rows, 0, opps); !s) return s;
    for (const RecordState& r : opps) {
      const FieldState* stage = r.field(schema::fields::kOpportunityStage);
      if (stage == nullptr || !(stage->value.kind() == Value::Kind::kText)) continue;
      if (Status s = conn.exec(
              "INSERT INTO _stage_history (opportunity_id, stage, entered_at_ms) VALUES ($1, $2, $3)",
              pg::Params()
                  .add(r.id.to_string())
                  .add(std::string_view(stage->value.as_text()))
                  .add(hlc_physical_ms(stage->version.hlc)));
          !s)
        return s;
    }
  }
  return Status::ok();
}

Status migrate(pg::Conn&, int64_t from) {
  (void)from;  // format 1 -> 2: the stints (file_current_stages, run by open() whenever they are missing)
  return Status::ok();
}

}  // namespace

PgCentralStore::PgCentralStore(Options options) : options_(std::move(options)) {}

Result<std::unique_ptr<PgCentralStore>> PgCentralStore::open(const std::string& url, Options options) {
  std::unique_ptr<PgCentralStore> store(new PgCentralStore(std::move(options)));
  store->url_ = url;
  auto c = store->acquire();
  if (!c) return c.status();
  pg::Conn& conn = **c;
  if (Status s = conn.begin("BEGIN"); !s) return s;
  auto fail = [&](Status s) {
    if (!conn.broken()) (void)conn.rollback();
    return s;
  };
  if (Status s = conn.exec("SELECT pg_advisory_xact_lock($1)", pg::Params().add(kSchemaLockKey)); !s)
    return fail(s);
  // The format is read before anything is created: a newer database is left untouched.
  auto has_state = conn.query("SELECT to_regclass('_state') IS NOT NULL");
  if (!has_state) return fail(has_state.status());
  int64_t format = kFormat;  // a new database
  if (has_state->i64(0, 0)) {
    auto rows = conn.query("SELECT value FROM _state WHERE key = 'format'");
    if (!rows) return fail(rows.status());
    if (rows->size() > 0) format = rows->i64(0, 0);
    if (format > kFormat)
      return fail(Status(ErrorCode::kSchemaTooNew,
                         "the PostgreSQL central store was written by a newer fieldsync (format " +
                             std::to_string(format) + ", this one knows " + std::to_string(kFormat) + ")"));
  }
  for (const std::string& sql : model_ddl())
    if (Status s = conn.exec_script(sql); !s) return fail(s);
  for (const char* sql : kStoreDdl)
    if (Status s = conn.exec_script(sql); !s) return fail(s);
  for (const std::string& sql : report_ddl())
    if (Status s = conn.exec_script(sql); !s) return fail(s);
  if (format < kFormat)
    if (Status s = migrate(conn, format); !s) return fail(s);
  auto no_stints =
      conn.query("SELECT NOT EXISTS (SELECT 1 FROM _stage_history) AND EXISTS (SELECT 1 FROM opportunity)");
  if (!no_stints) return fail(no_stints.status());
  if (no_stints->i64(0, 0))
    if (Status s = file_current_stages(conn); !s) return fail(s);
  if (const std::optional<std::string>& zone = store->options_.time_zone) {
    if (Status s =
            conn.exec("INSERT INTO _report_zone (id, name) VALUES (1, $1) ON CONFLICT (id) DO UPDATE SET "
                      "name = EXCLUDED.name",
                      pg::Params().add(std::string_view(*zone)));
        !s)
      return fail(s);
  }
  if (Status s =
          conn.exec("INSERT INTO _state (key, value) VALUES ('format', $1) ON CONFLICT (key) DO UPDATE SET "
                    "value = EXCLUDED.value",
                    pg::Params().add(kFormat));
      !s)
    return fail(s);
  if (Status s = conn.commit(); !s) return fail(s);
  store->release(std::move(c.value()));
  return store;
}

// Every commit made with synchronous_commit off before this call returns is durable after it: the message's
// commit record is written to the WAL after theirs (the WAL is one ordered stream), and with
// synchronous_commit on its commit flushes the WAL up to itself (and waits for synchronous standbys, where an
// operator has them). A transactional logical message is the smallest write that gets a commit record
// without touching a table; everyone may call pg_logical_emit_message, at any wal_level. One round trip.
Status PgCentralStore::sync() {
  if (!options_.group_commit) return Status::ok();
  Lease lease(*this);
  if (!lease.status()) return lease.status();
  return lease.conn().exec("SELECT pg_logical_emit_message(true, 'fieldsync', '')");
}

std::unique_ptr<CentralTxn> PgCentralStore::begin() {
  return std::make_unique<PgCentralTxn>(*this);
}

Result<uint64_t> PgCentralStore::head_seq() {
  Lease lease(*this);
  if (!lease.status()) return lease.status();
  return read_head_seq(lease.conn());
}

Result<std::vector<ServerTxn>> PgCentralStore::read_log(uint64_t after, size_t max_changes) {
  // A chunk of entries at a time until max_changes: the rule of pg_store.h makes every chunk a prefix of the
  // committed log, so chunks need no common snapshot.
  constexpr int64_t kChunk = 256;
  Lease lease(*this);
  if (!lease.status()) return lease.status();
  std::vector<ServerTxn> out;
  size_t changes = 0;
  uint64_t pos = after;
  for (;;) {
    auto rows = lease.conn().query(
        "SELECT server_seq, blob FROM _log WHERE server_seq > $1 ORDER BY server_seq LIMIT $2",
        pg::Params().add(as_sql(pos)).add(kChunk));
    if (!rows) return rows.status();
    for (int i = 0; i < rows->size(); ++i) {
      Result<ServerTxn> t = decode_log_entry(*rows, i, 0, 1);
      if (!t) return t.status();
      changes += t->changes.size();
      pos = t->server_seq;
      out.push_back(std::move(t.value()));
      if (changes >= max_changes) return out;
    }
    if (rows->size() < kChunk) return out;
  }
}

Result<CentralStore::LogSlice> PgCentralStore::read_log_for(uint64_t after, uint64_t up_to,
                                                            const std::vector<ScopeKey>& scopes,
                                                            size_t max_changes) {
  // Each key's entries come from its own index range, a chunk at a time. Merged, they are complete up to the
  // lowest last entry among the keys whose chunk came back full; past that another key may still hold one.
  // One snapshot, capped at its head (as MemoryCentralStore caps at the log's end): every key is read over
  // the same log.
  constexpr int64_t kChunk = 256;
  Lease lease(*this);
  if (!lease.status()) return lease.status();
  if (Status s = lease.snapshot(); !s) return s;
  pg::Conn& c = lease.conn();
  Result<uint64_t> head = read_head_seq(c);
  if (!head) return head.status();
  up_to = std::min(up_to, *head);
  LogSlice out;
  out.searched_to = after;
  size_t changes = 0;
  std::vector<std::string> keys;
  for (const ScopeKey& k : scopes) keys.push_back(scope_text(k));
  uint64_t pos = after;
  while (pos < up_to) {
    uint64_t complete_to = up_to;
    std::vector<uint64_t> seqs;
    for (const std::string& key : keys) {
      auto rows = c.query(
          "SELECT server_seq FROM _log_scope WHERE scope = $1 AND server_seq > $2 AND server_seq <= $3 ORDER "
          "BY "
          "server_seq LIMIT $4",
          pg::Params().add(std::string_view(key)).add(as_sql(pos)).add(as_sql(up_to)).add(kChunk));
      if (!rows) return rows.status();
      for (int i = 0; i < rows->size(); ++i) seqs.push_back(from_sql(rows->i64(i, 0)));
      if (rows->size() == kChunk) complete_to = std::min(complete_to, from_sql(rows->i64(kChunk - 1, 0)));
    }
    std::sort(seqs.begin(), seqs.end());
    seqs.erase(std::unique(seqs.begin(), seqs.end()), seqs.end());
    std::erase_if(seqs, [&](uint64_t s) { return s > complete_to; });
    if (!seqs.empty()) {
      std::vector<std::string> wanted;
      for (uint64_t s : seqs) wanted.push_back(std::to_string(as_sql(s)));
      auto rows = c.query(
          "SELECT server_seq, blob FROM _log WHERE server_seq = ANY($1::bigint[]) ORDER BY server_seq",
          pg::Params().add(pg::text_array(wanted)));
      if (!rows) return rows.status();
      if (static_cast<size_t>(rows->size()) != seqs.size())
        return corrupt("log index", Status(ErrorCode::kStorageCorrupt, "an indexed entry is missing"));
      for (int i = 0; i < rows->size(); ++i) {
        Result<ServerTxn> t = decode_log_entry(*rows, i, 0, 1);
        if (!t) return t.status();
        changes += t->changes.size();
        out.searched_to = t->server_seq;
        out.txns.push_back(std::move(t.value()));
        if (changes >= max_changes) return out;
      }
    }
    pos = complete_to;
  }
  out.searched_to = std::max(after, up_to);
  return out;
}

Result<std::vector<ConflictRecord>> PgCentralStore::read_conflicts(uint64_t after, uint64_t up_to) {
  Lease lease(*this);
  if (!lease.status()) return lease.status();
  auto rows = lease.conn().query(
      "SELECT blob FROM _conflicts WHERE server_seq > $1 AND server_seq <= $2 ORDER BY server_seq, id",
      pg::Params().add(as_sql(after)).add(as_sql(up_to)));
  if (!rows) return rows.status();
  std::vector<ConflictRecord> out;
  for (int i = 0; i < rows->size(); ++i) {
    Result<ConflictRecord> cr = codec::decode_conflict(rows->blob(i, 0));
    if (!cr) return corrupt("conflict", cr.status());
    out.push_back(std::move(cr.value()));
  }
  return out;
}

Result<std::optional<RecordState>> PgCentralStore::load(EntityId entity, const RecordId& id) {
  Lease lease(*this);
  if (!lease.status()) return lease.status();
  return read_record(lease.conn(), entity, id);
}

Result<std::vector<RecordState>> PgCentralStore::scan(RecordKey after, size_t max_records) {
  Lease lease(*this);
  if (!lease.status()) return lease.status();
  if (Status s = lease.snapshot(); !s) return s;  // every table from the same snapshot
  std::vector<RecordState> out;
  for (const schema::EntityDef& e : schema::entities()) {
    if (out.size() >= max_records) break;
    if (e.id < after.entity) continue;
    const std::string after_id = e.id == after.entity ? after.id.to_string() : std::string();
    auto rows =
        lease.conn().query("SELECT _meta FROM " + quoted(e.name) + " WHERE id > $1 ORDER BY id LIMIT $2",
                           pg::Params().add(after_id).add(static_cast<int64_t>(max_records - out.size())));
    if (!rows) return rows.status();
    if (Status s = decode_records(*rows, 0, out); !s) return s;
  }
  return out;
}

Result<std::vector<RecordState>> PgCentralStore::scan_in_scopes(const std::vector<ScopeKey>& scopes,
                                                                RecordKey after, size_t max_records) {
  const ScopeLists lists = split_scopes(scopes);
  const std::string territories = pg::text_array(lists.territories), owners = pg::text_array(lists.owners);
  Lease lease(*this);
  if (!lease.status()) return lease.status();
  if (Status s = lease.snapshot(); !s) return s;
  pg::Conn& c = lease.conn();
  std::vector<RecordState> out;
  for (const schema::EntityDef& e : schema::entities()) {
    if (out.size() >= max_records) break;
    if (e.id < after.entity) continue;
    const int64_t want = static_cast<int64_t>(max_records - out.size());
    const std::string after_id = e.id == after.entity ? after.id.to_string() : std::string();
    if (const schema::FieldDef* f = direct_scope_field(e)) {
      // One range of idx_scan_<entity> in id order for all of the scope's keys ("" sorts before every id).
      const bool territory = e.scope.kind == schema::ScopeKind::kTerritory;
      if ((territory ? lists.territories : lists.owners).empty()) continue;
      auto rows = c.query("SELECT _meta FROM " + quoted(e.name) + " WHERE " + quoted(f->name) +
                              " = ANY($1::text[]) AND id > $2 ORDER BY id LIMIT $3",
                          pg::Params().add(territory ? territories : owners).add(after_id).add(want));
      if (!rows) return rows.status();
      if (Status s = decode_records(*rows, 0, out); !s) return s;
      continue;
    }
    // Global and parent-scoped entities: in id order, the scope checked per row (a parent through its own
    // scope field, as resolve_scope follows it). Both lists are always bound, and named in the statement even
    // where the condition does not use them: PostgreSQL must be able to type every parameter.
    const std::string condition =
        scope_condition(e, !lists.territories.empty(), !lists.owners.empty(), lists.global, 0);
    if (condition == "false") continue;
    auto rows = c.query("SELECT _meta FROM " + quoted(e.name) + " WHERE id > $3 AND (" + condition +
                            ") AND $1::text[] IS NOT NULL AND $2::text[] IS NOT NULL ORDER BY id LIMIT $4",
                        pg::Params().add(territories).add(owners).add(after_id).add(want));
    if (!rows) return rows.status();
    if (Status s = decode_records(*rows, 0, out); !s) return s;
  }
  return out;
}

Result<uint64_t> PgCentralStore::count_in_scopes(const std::optional<std::vector<ScopeKey>>& scopes) {
  ScopeLists lists;
  if (scopes) {
    lists = split_scopes(*scopes);
  } else {
    lists.global = true;
  }
  const std::string territories = pg::text_array(lists.territories), owners = pg::text_array(lists.owners);
  Lease lease(*this);
  if (!lease.status()) return lease.status();
  if (Status s = lease.snapshot(); !s) return s;
  uint64_t n = 0;
  for (const schema::EntityDef& e : schema::entities()) {
    const std::string condition =
        scopes ? scope_condition(e, !lists.territories.empty(), !lists.owners.empty(), lists.global, 0)
               : "true";
    if (condition == "false") continue;
    auto rows = lease.conn().query("SELECT count(*) FROM " + quoted(e.name) + " WHERE (" + condition +
                                       ") AND $1::text[] IS NOT NULL AND $2::text[] IS NOT NULL",
                                   pg::Params().add(territories).add(owners));
    if (!rows) return rows.status();
    n += from_sql(rows->i64(0, 0));
  }
  return n;
}

Result<std::vector<RecordKey>> PgCentralStore::keys_created_by(NodeId node) {
  Lease lease(*this);
  if (!lease.status()) return lease.status();
  auto rows =
      lease.conn().query("SELECT server_seq, blob FROM _log WHERE origin_node = $1 ORDER BY server_seq",
                         pg::Params().add(as_sql(node)));
  if (!rows) return rows.status();
  std::vector<RecordKey> out;
  for (int i = 0; i < rows->size(); ++i) {
    Result<ServerTxn> t = decode_log_entry(*rows, i, 0, 1);
    if (!t) return t.status();
    for (const Change& ch : t->changes)
      if (ch.op == ChangeOp::kCreate) out.push_back(RecordKey{ch.entity, ch.record});
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

Result<uint64_t> PgCentralStore::record_count() {
  Lease lease(*this);
  if (!lease.status()) return lease.status();
  if (Status s = lease.snapshot(); !s) return s;
  uint64_t n = 0;
  for (const schema::EntityDef& e : schema::entities()) {
    auto rows = lease.conn().query("SELECT count(*) FROM " + quoted(e.name) + " WHERE NOT _deleted");
    if (!rows) return rows.status();
    n += from_sql(rows->i64(0, 0));
  }
  return n;
}

Result<std::vector<RecordState>> PgCentralStore::scope_children(EntityId parent_entity,
                                                                const RecordId& parent) {
  Lease lease(*this);
  if (!lease.status()) return lease.status();
  if (Status s = lease.snapshot(); !s) return s;
  std::vector<RecordState> out;
  const std::string parent_text = parent.to_string();
  for (const schema::EntityDef& e : schema::entities()) {
    if (e.scope.kind != schema::ScopeKind::kParent || e.scope.parent != parent_entity) continue;
    const schema::FieldDef* f = e.field(e.scope.field);
    if (f == nullptr) continue;
    auto rows = lease.conn().query(
        "SELECT _meta FROM " + quoted(e.name) + " WHERE " + quoted(f->name) + " = $1 ORDER BY id",
        pg::Params().add(parent_text));
    if (!rows) return rows.status();
    if (Status s = decode_records(*rows, 0, out); !s) return s;
  }
  return out;
}

Result<Hlc> PgCentralStore::clock() {
  Lease lease(*this);
  if (!lease.status()) return lease.status();
  auto rows = lease.conn().query("SELECT clock FROM _head");
  if (!rows) return rows.status();
  if (rows->size() == 0) return Hlc{0};
  return Hlc{from_sql(rows->i64(0, 0))};
}

Result<NodeState> PgCentralStore::node_state(NodeId node) {
  Lease lease(*this);
  if (!lease.status()) return lease.status();
  return read_node_state(lease.conn(), node);
}

Result<std::vector<StoredRejection>> PgCentralStore::rejections() {
  Lease lease(*this);
  if (!lease.status()) return lease.status();
  auto rows = lease.conn().query(
      "SELECT node, node_seq, \"user\", reason, message FROM _rejections ORDER BY node, node_seq");
  if (!rows) return rows.status();
  std::vector<StoredRejection> out;
  for (int i = 0; i < rows->size(); ++i)
    out.push_back(StoredRejection{from_sql(rows->i64(i, 0)), from_sql(rows->i64(i, 1)), rows->text(i, 2),
                                  static_cast<ErrorCode>(rows->i64(i, 3)), rows->text(i, 4)});
  return out;
}

Result<std::map<NodeId, NodeState>> PgCentralStore::node_states() {
  Lease lease(*this);
  if (!lease.status()) return lease.status();
  // A row at 0 is a node whose first transaction is being (or was, then rolled back) applied: as absent.
  auto rows = lease.conn().query("SELECT node, last_node_seq FROM _nodes WHERE last_node_seq > 0");
  if (!rows) return rows.status();
  std::map<NodeId, NodeState> out;
  for (int i = 0; i < rows->size(); ++i) {
    NodeId node = from_sql(rows->i64(i, 0));
    out[node] = NodeState{node, from_sql(rows->i64(i, 1))};
  }
  return out;
}

}  // namespace fieldsync::server
