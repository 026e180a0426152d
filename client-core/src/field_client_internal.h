// Private to field_client*.cc: the prepared-statement cache and the queries the write path validates with.
#pragma once

#include <cstdlib>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <unordered_map>
#include <variant>
#include <vector>

#include "fieldsync/client/field_client.h"

struct sqlite3_stmt;

namespace fieldsync::client {
namespace detail {

// Statements prepared once per connection; used only inside SqliteReplicaStore::read(), which serialises
// them.
struct Queries {
  std::unordered_map<std::string, sqlite3_stmt*> cache;
  // require_live's statement per entity (also in `cache`, which owns it): found without hashing its text.
  std::map<schema::EntityId, sqlite3_stmt*> live;
  void finalize_all();  // on the store's connection, before it closes
};

using Bind = std::variant<int64_t, std::string>;

Status invalid(ErrorCode code, std::string message);
Result<RecordId> parse_id(std::string_view what, const std::string& text);

// Runs one cached prepared statement with `binds` and calls `row` for each result row.
Status query(Queries& q, SqliteReplicaStore& store, const std::string& sql, const std::vector<Bind>& binds,
             const std::function<void(sqlite3_stmt*)>& row);

// kRecordNotFound unless a live (not tombstoned) record of `entity` with this id is in the replica.
// Column readers: NULL reads as empty text / nullopt.
std::string text(sqlite3_stmt* s, int col);
std::optional<int64_t> opt_int(sqlite3_stmt* s, int col);
std::optional<double> opt_real(sqlite3_stmt* s, int col);
std::string table(schema::EntityId e);  // the entity's quoted table name
Status not_found(std::string_view what, const std::string& id);

template <typename T>
Result<std::vector<T>> select(Queries& q, SqliteReplicaStore& store, const std::string& sql,
                              const std::vector<Bind>& binds, T (*row)(sqlite3_stmt*)) {
  std::vector<T> out;
  Status s = query(q, store, sql, binds, [&](sqlite3_stmt* st) { out.push_back(row(st)); });
  if (!s) return s;
  return out;
}

template <typename T>
Result<T> select_one(Queries& q, SqliteReplicaStore& store, schema::EntityId e, const std::string& cols,
                     const std::string& id, T (*row)(sqlite3_stmt*), std::string_view what) {
  auto rows = select(q, store, "SELECT " + cols + " FROM " + table(e) + " WHERE id = ?1 AND _deleted = 0",
                     {Bind{id}}, row);
  if (!rows) return rows.status();
  if (rows->empty()) return not_found(what, id);
  return std::move(rows->front());
}

Status require_live(Queries& q, SqliteReplicaStore& store, schema::EntityId entity, const std::string& id);

Result<Visit> load_visit(Queries& q, SqliteReplicaStore& store, const std::string& id);
Result<Order> load_order_head(Queries& q, SqliteReplicaStore& store, const std::string& id);  // no lines
Result<Order> load_order(Queries& q, SqliteReplicaStore& store, const std::string& id);       // lines, totals
Result<std::string> line_order(Queries& q, SqliteReplicaStore& store, const std::string& line_id);
Result<bool> product_active(Queries& q, SqliteReplicaStore& store, const std::string& product_id);
// The unit price of a product in `currency` valid at `now_ms`; `price_list` preferred when not empty.
Result<int64_t> list_price(Queries& q, SqliteReplicaStore& store, const std::string& product_id,
                           const std::string& currency, const std::string& price_list, int64_t now_ms);
Result<Event> load_event(Queries& q, SqliteReplicaStore& store, const std::string& id);
Result<Opportunity> load_opportunity(Queries& q, SqliteReplicaStore& store, const std::string& id);

// The model's transition table, checked locally for an early, clear error (the server checks it again).
Status check_transition(schema::EntityId entity, const std::string& from, const std::string& to,
                        schema::Role role);

// A field's id by its model name (names here come from the model: a missing one is a programmer error).
inline uint16_t fid(schema::EntityId e, std::string_view name) {
  const schema::FieldDef* f = schema::entity_ref(e).field(name);
  if (f == nullptr) std::abort();
  return f->id;
}

}  // namespace detail

// The changes of one API call. Records are created with every field the caller gives; nulls are not sent.
struct FieldClient::Batch {
  std::vector<Change> changes;  // transact() reserves room for a typical call's changes
  RecordId create(EntityId e, RecordId id) {
    add(ChangeOp::kCreate, e, id);
    return id;
  }
  void set(EntityId e, const RecordId& id, std::string_view field, Value v) {
    Change& c = add(ChangeOp::kSet, e, id);
    c.field = detail::fid(e, field);
    c.value = std::move(v);
  }
  void set_text(EntityId e, const RecordId& id, std::string_view field, const std::optional<std::string>& v) {
    if (v) set(e, id, field, v->empty() ? Value::null() : Value::text(*v));
  }
  void append(EntityId e, const RecordId& id, std::string_view field, const std::string& text) {
    Change& c = add(ChangeOp::kAppend, e, id);
    c.field = detail::fid(e, field);
    c.value = Value::text(text);
  }
  void erase(EntityId e, const RecordId& id) { add(ChangeOp::kDelete, e, id); }
  // Built in place: no temporary Change to zero, move and destroy per field.
  Change& add(ChangeOp op, EntityId e, const RecordId& id) {
    Change& c = changes.emplace_back();
    c.op = op;
    c.entity = e;
    c.record = id;
    return c;
  }
  std::function<RecordId()> next_id;
  int64_t now_ms = 0;  // the clock when the call began
};

}  // namespace fieldsync::client
