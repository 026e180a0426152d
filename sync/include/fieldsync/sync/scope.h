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

struct ScopeKey {
  enum class Kind : uint8_t {
    kGlobal = 1,      // catalogue data: everyone
    kTerritory = 2,   // value: territory id
    kOwner = 3,       // value: user id
    kUnresolved = 4,  // a parent is missing or has no scope field yet: only head office
  };
  Kind kind = Kind::kUnresolved;
  std::string value;
  friend bool operator==(const ScopeKey&, const ScopeKey&) = default;
};

// Follows the entity's scope rule (through parents, at most four hops) to the key that decides visibility.
ScopeKey resolve_scope(const RecordState& record, RecordReader& reader);

bool can_see(const Principal& who, const ScopeKey& scope);

}  // namespace fieldsync
