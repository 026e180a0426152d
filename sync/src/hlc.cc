#include "fieldsync/sync/hlc.h"

#include <cstdlib>
#include <string>

#include "fieldsync/sync/tuning.h"

namespace fieldsync {
namespace {

// The largest physical part an HLC can hold: 48 bits of milliseconds, i.e. the year 10889. A wall clock
// beyond it is broken, not merely ahead, so it is ignored rather than allowed to push the clock to the end of
// its range.
constexpr int64_t kMaxPhysicalMs = (int64_t{1} << 48) - 1;
constexpr Hlc kMaxHlc = ~Hlc{0};

}  // namespace

Hlc HybridClock::tick(int64_t wall_ms) {
  const int64_t physical = hlc_physical_ms(last_);
  // A wall clock that stepped backwards, stalled, went negative or out of range gives no new information: the
  // clock keeps its physical part and counts on in the logical part.
  if (wall_ms > physical && wall_ms <= kMaxPhysicalMs) {
    last_ = make_hlc(wall_ms, 0);
    return last_;
  }
  // Adding one carries a full logical counter into the physical part (physical + 1, logical 0), which keeps
  // ticks strictly increasing at the cost of running up to a millisecond per 65,536 ticks ahead of the wall
  // clock. Exhausting all 64 bits needs a clock (or an accepted remote) within an hour of the year 10889: a
  // broken invariant, not an operating error, and issuing a duplicate timestamp would silently corrupt
  // merges.
  if (last_ == kMaxHlc) std::abort();
  ++last_;
  return last_;
}

Status HybridClock::receive(Hlc remote, int64_t wall_ms) {
  // A wall clock outside the HLC's range (negative, or past the year 10889) cannot judge anything, so the
  // clock's own physical part stands in for it, as it does in tick(). Otherwise a broken local clock would
  // accept any remote, up to one that exhausts the clock's range.
  const int64_t now_ms = wall_ms >= 0 && wall_ms <= kMaxPhysicalMs ? wall_ms : hlc_physical_ms(last_);
  const int64_t remote_physical = hlc_physical_ms(remote);
  if (remote_physical - now_ms > tuning::kMaxClockSkewMs) {
    const int64_t ahead_ms = remote_physical - now_ms;
    return Status(ErrorCode::kClockSkew, "remote clock is " + std::to_string(ahead_ms) +
                                             " ms ahead of the local wall clock (limit " +
                                             std::to_string(tuning::kMaxClockSkewMs) + " ms)");
  }
  if (remote > last_) last_ = remote;
  return Status::ok();
}

}  // namespace fieldsync
