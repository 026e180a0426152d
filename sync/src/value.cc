#include "fieldsync/sync/value.h"

#include <cstdio>

namespace fieldsync {

std::string Value::debug_string() const {
  switch (kind()) {
    case Kind::kNull:
      return "null";
    case Kind::kInt:
      return std::to_string(as_int());
    case Kind::kReal: {
      char buf[32];
      std::snprintf(buf, sizeof buf, "%.17g", as_real());
      return buf;
    }
    case Kind::kBool:
      return as_bool() ? "true" : "false";
    case Kind::kText:
      return "\"" + as_text() + "\"";
  }
  return "?";
}

Value::Kind storage_kind(schema::FieldType t) {
  using schema::FieldType;
  switch (t) {
    case FieldType::kInt:
    case FieldType::kTimestamp:
      return Value::Kind::kInt;
    case FieldType::kReal:
      return Value::Kind::kReal;
    case FieldType::kBool:
      return Value::Kind::kBool;
    case FieldType::kText:
    case FieldType::kId:
    case FieldType::kEnum:
    case FieldType::kUserId:
      return Value::Kind::kText;
  }
  return Value::Kind::kNull;
}

}  // namespace fieldsync
