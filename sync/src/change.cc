#include "fieldsync/sync/change.h"

#include <algorithm>

namespace fieldsync {

namespace {
constexpr size_t kTypicalFields = 8;
}  // namespace

const FieldState* RecordState::field(uint16_t id) const {
  auto it = std::lower_bound(fields.begin(), fields.end(), id,
                             [](const FieldState& f, uint16_t fid) { return f.field < fid; });
  return it != fields.end() && it->field == id ? &*it : nullptr;
}

// GCC 12 at -O3 warns that the moved `added` "may be used uninitialized" inside std::variant's move (its
// index is set by Value's default constructor; a known false positive of that inlining): silenced here only.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
FieldState* RecordState::mutable_field(uint16_t id) {
  auto it = std::lower_bound(fields.begin(), fields.end(), id,
                             [](const FieldState& f, uint16_t fid) { return f.field < fid; });
  if (it == fields.end() || it->field != id) {
    // A record's fields arrive one by one (a create sets several): room for a typical record at the first,
    // so that the vector does not reallocate and move its fields as it grows. The new field is
    // default-initialized, not value-initialized (`FieldState{}` zeroes the whole struct first: a memset
    // call per field on 32-bit ARM).
    if (fields.capacity() == 0) {  // and so empty: `it` was its end
      fields.reserve(kTypicalFields);
      it = fields.begin();
    }
    FieldState added;
    added.field = id;
    it = fields.insert(it, std::move(added));
  }
  return &*it;
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

const Value& RecordState::get(uint16_t id) const {
  static const Value kNull;
  if (deleted) return kNull;
  const FieldState* f = field(id);
  return f ? f->value : kNull;
}

std::string_view to_string(ConflictKind kind) {
  switch (kind) {
    case ConflictKind::kConcurrentWrite:
      return "concurrent_write";
    case ConflictKind::kDeleteWins:
      return "delete_wins";
    case ConflictKind::kScheduling:
      return "scheduling";
  }
  return "unknown";
}

}  // namespace fieldsync
