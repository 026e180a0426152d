// Deliberately broken merges, for the mutation tests only (merge_test, merge_property_test, the simulator):
// they prove the checkers can fail. Passed where the real merge_change would be (ServerConfig, ClientConfig,
// apply_client_txn: merge.h's MergeChangeFn), so nothing in the shipped library can switch them on.
#pragma once

#include <cstdint>

#include "fieldsync/sync/merge.h"

namespace fieldsync::testing_support {

enum class MergeFault : uint8_t {
  kNone = 0,
  kArrivalOrderWins = 1,      // kSet ignores versions: whatever arrives last wins (diverges across replicas)
  kDropConcurrentAppend = 2,  // kAppend keeps only the newest fragment (loses notes)
};

// The merge with `fault`: merge_change itself for kNone.
MergeChangeFn merge_with(MergeFault fault);

}  // namespace fieldsync::testing_support
