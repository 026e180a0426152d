// Local time of a time zone for the head-office reports and the store's visits-per-day rollup: which UTC
// offset is in effect at an instant, as the IANA database gives it (the system's /usr/share/zoneinfo, read by
// Howard Hinnant's date library, the basis of C++20's <chrono> time zones, which GCC 12 does not have yet).
// A zone's day may be 23 or 25 hours long: days are counted in local time, not as 86,400-second steps.
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include "fieldsync/sync/status.h"

namespace fieldsync::server {

// The offset in effect from from_ms until the next span's from_ms (the first span starts at INT64_MIN).
struct ZoneSpan {
  int64_t from_ms = 0;
  int32_t offset_s = 0;
};

// The spans of zone `name` that cover [from_ms, to_ms). Errors: kInvalidArgument for a name the database does
// not know.
Result<std::vector<ZoneSpan>> zone_spans(const std::string& name, int64_t from_ms, int64_t to_ms);

// The years the store keeps the company zone's offsets for (its _tz_offset table): an instant after them
// takes the last offset in effect (the zone's standard time or its summer time, whichever came last).
inline constexpr int64_t kZoneTableFromMs = 0;                         // 1970-01-01
inline constexpr int64_t kZoneTableToMs = int64_t{4102444800} * 1000;  // 2100-01-01

// Local time at a fixed offset or in a zone over a bounded period.
class LocalTime {
 public:
  static LocalTime fixed(int offset_s);
  // Exact for instants within [from_ms, to_ms) of the spans it was made of and a year around them.
  // Errors: as zone_spans.
  static Result<LocalTime> zone(const std::string& name, int64_t from_ms, int64_t to_ms);

  // The zone's name, or empty for a fixed offset.
  const std::string& name() const { return name_; }
  int32_t offset_s(int64_t ms) const;
  // Local days since 1970-01-01 of the instant.
  int64_t day(int64_t ms) const;
  // The first instant (epoch ms) of local day `day`: its midnight, or the end of a transition that skipped
  // it.
  int64_t day_start_ms(int64_t day) const;
  // An SQL expression for the offset in seconds at the epoch-ms SQL expression `ms_expr`.
  std::string offset_sql(std::string_view ms_expr) const;

 private:
  std::string name_;
  std::vector<ZoneSpan> spans_{{std::numeric_limits<int64_t>::min(), 0}};  // never empty (default: UTC)
};

}  // namespace fieldsync::server
