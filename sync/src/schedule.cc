#include "fieldsync/sync/schedule.h"

#include "fieldsync/schema/model.h"

namespace fieldsync {

bool scheduled_overlap(const RecordState& r, const UserId& owner, int64_t start_ms, int64_t end_ms) {
  using namespace schema::fields;
  if (r.deleted || r.entity != EntityId::kCalendarEvent) return false;
  const Value& o = r.get(kEventOwner);
  const Value& st = r.get(kEventStatus);
  const Value& s = r.get(kEventStart);
  const Value& e = r.get(kEventEnd);
  return o.kind() == Value::Kind::kText && o.as_text() == owner && st.kind() == Value::Kind::kText &&
         st.as_text() == "scheduled" && s.kind() == Value::Kind::kInt && e.kind() == Value::Kind::kInt &&
         s.as_int() < end_ms && e.as_int() > start_ms;
}

}  // namespace fieldsync
