// Hybrid logical clock (Kulkarni et al.): physical milliseconds in the high 48 bits, a logical counter in the
// low
// 16. Ticks are monotonic even when the wall clock steps backwards, and they stay within kMaxClockSkewMs of
// real time as long as no node's clock is further off than that, which receive() enforces.
#pragma once

#include <cstdint>

#include "fieldsync/sync/status.h"

namespace fieldsync {

using Hlc = uint64_t;

inline constexpr int64_t hlc_physical_ms(Hlc h) {
  return static_cast<int64_t>(h >> 16);
}
inline constexpr uint16_t hlc_logical(Hlc h) {
  return static_cast<uint16_t>(h & 0xffff);
}
inline constexpr Hlc make_hlc(int64_t physical_ms, uint16_t logical) {
  return (static_cast<uint64_t>(physical_ms) << 16) | logical;
}

class HybridClock {
 public:
  explicit HybridClock(Hlc last = 0) : last_(last) {}

  // A new timestamp greater than every timestamp this clock has issued or received.
  Hlc tick(int64_t wall_ms);

  // Merge a timestamp seen from another node. Refuses (kClockSkew) and leaves the clock unchanged if `remote`
  // is more than tuning::kMaxClockSkewMs ahead of `wall_ms`.
  Status receive(Hlc remote, int64_t wall_ms);

  // Merge a timestamp from a trusted source without the skew bound: a device observing versions the server
  // already accepted (the server bounded them), so that its next tick is above every version it has seen.
  void observe(Hlc remote) {
    if (remote > last_) last_ = remote;
  }

  Hlc last() const { return last_; }

 private:
  Hlc last_;
};

}  // namespace fieldsync
