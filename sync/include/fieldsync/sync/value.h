// A field value: null, integer, real, bool or text. Ids, user ids, enums and timestamps use text or integer
// storage as the model's FieldType says (see storage_kind()).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <variant>

#include "fieldsync/schema/model.h"

namespace fieldsync {

class Value {
 public:
  enum class Kind : uint8_t { kNull = 0, kInt = 1, kReal = 2, kBool = 3, kText = 4 };

  Value() = default;
  static Value null() { return {}; }
  static Value integer(int64_t v) { return Value(Storage(std::in_place_index<1>, v)); }
  static Value real(double v) { return Value(Storage(std::in_place_index<2>, v)); }
  static Value boolean(bool v) { return Value(Storage(std::in_place_index<3>, v)); }
  static Value text(std::string v) { return Value(Storage(std::in_place_index<4>, std::move(v))); }

  Kind kind() const { return static_cast<Kind>(v_.index()); }
  bool is_null() const { return kind() == Kind::kNull; }
  int64_t as_int() const { return std::get<1>(v_); }
  double as_real() const { return std::get<2>(v_); }
  bool as_bool() const { return std::get<3>(v_); }
  const std::string& as_text() const { return std::get<4>(v_); }

  // Human-readable form for logs and conflict reports ("null", "42", "\"text\"").
  std::string debug_string() const;

  friend bool operator==(const Value&, const Value&) = default;

 private:
  using Storage = std::variant<std::monostate, int64_t, double, bool, std::string>;
  explicit Value(Storage s) : v_(std::move(s)) {}
  Storage v_;
};

// The Value kind a field of this type is stored as.
Value::Kind storage_kind(schema::FieldType t);

}  // namespace fieldsync
