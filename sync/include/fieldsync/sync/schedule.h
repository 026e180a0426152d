// The scheduling rule shared by the rules and every central store: which calendar events overlap.
#pragma once

#include <cstdint>

#include "fieldsync/sync/change.h"

namespace fieldsync {

// True when `event` is a live calendar event of `owner`, status "scheduled", whose [start, end) overlaps
// [start_ms, end_ms). CentralTxn::events_overlapping returns exactly these; a store may narrow its search by
// projection columns, and then decides on this predicate over the decoded record.
bool scheduled_overlap(const RecordState& event, const UserId& owner, int64_t start_ms, int64_t end_ms);

}  // namespace fieldsync
