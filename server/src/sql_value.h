// A field value bound to a statement parameter, the one mapping of the model's value kinds onto SQLite's
// types for the server's SQL (the store's typed columns, the API's filters). Internal to server/src.
#pragma once

#include "fieldsync/io/sqlite_db.h"
#include "fieldsync/sync/value.h"

namespace fieldsync::server {

// `borrow`: a text is bound without a copy (Stmt::bind_borrowed): `v` outlives the Stmt.
inline void bind_value(sqlite::Stmt& q, int i, const Value& v, bool borrow = false) {
  switch (v.kind()) {
    case Value::Kind::kNull:
      q.bind_null(i);
      break;
    case Value::Kind::kInt:
      q.bind(i, v.as_int());
      break;
    case Value::Kind::kReal:
      q.bind_double(i, v.as_real());
      break;
    case Value::Kind::kBool:
      q.bind(i, int64_t{v.as_bool() ? 1 : 0});
      break;
    case Value::Kind::kText:
      if (borrow) {
        q.bind_borrowed(i, v.as_text());
      } else {
        q.bind(i, std::string_view(v.as_text()));
      }
      break;
  }
}

}  // namespace fieldsync::server
