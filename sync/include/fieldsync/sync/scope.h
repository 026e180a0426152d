// Who may see and write a record, derived from the entity model's scope rules.
#pragma once

#include <optional>
#include <string>

#include "fieldsync/sync/change.h"

namespace fieldsync {

// Read access to current record states, for following parent links (a line's order's account's territory).
class RecordReader {
 public:
  virtual ~RecordReader() = default;
  virtual std::optional<RecordState> load(EntityId entity, const RecordId& id) = 0;
};

// Follows the entity's scope rule (through parents, at most four hops) to the key that decides visibility.
ScopeKey resolve_scope(const RecordState& record, RecordReader& reader);

bool can_see(const Principal& who, const ScopeKey& scope);

}  // namespace fieldsync
