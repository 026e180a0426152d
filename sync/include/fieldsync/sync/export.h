// Canonical JSON export of record states: the same bytes for the same data on every device and on the server,
// so a replica and the server's view of that user can be compared with `cmp` (fieldsync-rep export, the admin
// export, the simulator).
//
// Format: {"<entity>": [ {"id": "...", "<field>": value, ...}, ... ], ...} with entities in model order
// (all of them, possibly empty), records sorted by id, every model field present (null when unset) and keys
// in model order after "id". Only live records: tombstones are sync bookkeeping, not data. Append-only fields
// export their joined text. Two-space indentation, one record per line, trailing newline.
#pragma once

#include <boost/json/value.hpp>
#include <string>
#include <vector>

#include "fieldsync/sync/change.h"

namespace fieldsync {

std::string canonical_json(const std::vector<RecordState>& records);

// One field value as JSON (null, integer, number, boolean or string): the export's, the head-office API's and
// the C ABI's form of a value.
boost::json::value value_to_json(const Value& v);

}  // namespace fieldsync
