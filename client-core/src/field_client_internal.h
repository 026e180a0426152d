// Private to field_client*.cc: the prepared-statement cache and the queries the write path validates with.
#pragma once

#include <functional>
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
};

using Bind = std::variant<int64_t, std::string>;

Status invalid(ErrorCode code, std::string message);
Result<RecordId> parse_id(std::string_view what, const std::string& text);

// Runs one cached prepared statement with `binds` and calls `row` for each result row.
Status query(Queries& q, SqliteReplicaStore& store, const std::string& sql, const std::vector<Bind>& binds,
             const std::function<void(sqlite3_stmt*)>& row);

// kRecordNotFound unless a live (not tombstoned) record of `entity` with this id is in the replica.
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

}  // namespace detail
}  // namespace fieldsync::client
