#include "fieldsync/sync/change.h"

#include <algorithm>

namespace fieldsync {

const FieldState* RecordState::field(uint16_t id) const {
  auto it = std::lower_bound(fields.begin(), fields.end(), id,
                             [](const FieldState& f, uint16_t fid) { return f.field < fid; });
  return it != fields.end() && it->field == id ? &*it : nullptr;
}

FieldState* RecordState::mutable_field(uint16_t id) {
  auto it = std::lower_bound(fields.begin(), fields.end(), id,
                             [](const FieldState& f, uint16_t fid) { return f.field < fid; });
  if (it == fields.end() || it->field != id) {
    it = fields.insert(it, FieldState{});
    it->field = id;
  }
  return &*it;
}

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
