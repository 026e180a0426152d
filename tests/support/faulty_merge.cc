#include "support/faulty_merge.h"

namespace fieldsync::testing_support {
namespace {

// A tombstone's writes and every other op keep the real merge; only a live record's kSet is broken.
bool arrival_order_wins(RecordState& rec, const Change& change, const UserId& user,
                        std::vector<ConflictRecord>* conflicts) {
  if (change.op != ChangeOp::kSet || rec.deleted) return merge_change(rec, change, user, conflicts);
  FieldState* f = rec.mutable_field(change.field);
  bool changed = f->value != change.value || f->version != change.version || f->user != user;
  f->value = change.value;
  f->version = change.version;
  f->user = user;
  return changed;
}

// kAppend on a live record keeps the arriving fragment only.
bool drop_concurrent_append(RecordState& rec, const Change& change, const UserId& user,
                            std::vector<ConflictRecord>* conflicts) {
  if (change.op != ChangeOp::kAppend || rec.deleted) return merge_change(rec, change, user, conflicts);
  Fragment fragment{change.version, user, change.value.is_null() ? std::string() : change.value.as_text()};
  FieldState* f = rec.mutable_field(change.field);
  if (f->fragments.size() == 1 && f->fragments.front() == fragment) return false;
  f->fragments.assign(1, std::move(fragment));
  f->value = Value::text(join_fragments(f->fragments));
  f->version = f->fragments.back().version;
  f->user = f->fragments.back().user;
  return true;
}

}  // namespace

MergeChangeFn merge_with(MergeFault fault) {
  switch (fault) {
    case MergeFault::kArrivalOrderWins:
      return &arrival_order_wins;
    case MergeFault::kDropConcurrentAppend:
      return &drop_concurrent_append;
    case MergeFault::kNone:
      break;
  }
  return &merge_change;
}

}  // namespace fieldsync::testing_support
