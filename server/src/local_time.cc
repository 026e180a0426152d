#include "local_time.h"

#include <date/tz.h>
#include <algorithm>
#include <chrono>
#include <limits>
#include <stdexcept>

namespace fieldsync::server {
namespace {

constexpr int64_t kDayMs = 24 * 60 * 60 * 1000;
// LocalTime::zone covers its period and this much either side: the reports bucket a few instants outside
// their period (a forecast's expected close, a CSV's times), never more than a year out.
constexpr int64_t kZoneSlackMs = 400 * kDayMs;

int64_t floor_div(int64_t a, int64_t b) {
  return a / b - ((a % b != 0 && a < 0) ? 1 : 0);
}

}  // namespace

Result<std::vector<ZoneSpan>> zone_spans(const std::string& name, int64_t from_ms, int64_t to_ms) {
  using std::chrono::milliseconds;
  using std::chrono::seconds;
  const date::time_zone* zone = nullptr;
  try {
    zone = date::locate_zone(name);
  } catch (const std::exception&) {
    return Status(ErrorCode::kInvalidArgument, "time zone '" + name + "' is not in the time zone database");
  }
  std::vector<ZoneSpan> out;
  date::sys_seconds at{seconds{floor_div(from_ms, 1000)}};
  for (;;) {
    const date::sys_info info = zone->get_info(at);
    const int32_t offset = static_cast<int32_t>(info.offset.count());
    if (out.empty()) {
      out.push_back({std::numeric_limits<int64_t>::min(), offset});
    } else if (out.back().offset_s != offset) {
      out.push_back(
          {std::chrono::duration_cast<milliseconds>(info.begin.time_since_epoch()).count(), offset});
    }
    const int64_t end_ms = std::chrono::duration_cast<milliseconds>(info.end.time_since_epoch()).count();
    if (end_ms >= to_ms || info.end <= at) break;
    at = info.end;
  }
  return out;
}

LocalTime LocalTime::fixed(int offset_s) {
  LocalTime t;
  t.spans_.push_back({std::numeric_limits<int64_t>::min(), offset_s});
  return t;
}

Result<LocalTime> LocalTime::zone(const std::string& name, int64_t from_ms, int64_t to_ms) {
  const int64_t lo =
      from_ms > std::numeric_limits<int64_t>::min() + kZoneSlackMs ? from_ms - kZoneSlackMs : from_ms;
  const int64_t hi =
      to_ms < std::numeric_limits<int64_t>::max() - kZoneSlackMs ? to_ms + kZoneSlackMs : to_ms;
  Result<std::vector<ZoneSpan>> spans = zone_spans(name, lo, hi);
  if (!spans) return spans.status();
  LocalTime t;
  t.name_ = name;
  t.spans_ = std::move(*spans);
  return t;
}

int32_t LocalTime::offset_s(int64_t ms) const {
  auto it = std::upper_bound(spans_.begin(), spans_.end(), ms,
                             [](int64_t v, const ZoneSpan& s) { return v < s.from_ms; });
  return std::prev(it)->offset_s;
}

int64_t LocalTime::day(int64_t ms) const {
  return floor_div(ms + int64_t{offset_s(ms)} * 1000, kDayMs);
}

int64_t LocalTime::day_start_ms(int64_t d) const {
  // Local midnight at the offset in effect then: two rounds settle it (one offset change per day at most).
  int64_t t = d * kDayMs - int64_t{offset_s(d * kDayMs)} * 1000;
  t = d * kDayMs - int64_t{offset_s(t)} * 1000;
  if (day(t) < d) {
    // Midnight fell in a gap (a transition at 00:00 that skips an hour): the day starts when it ends.
    auto it = std::upper_bound(spans_.begin(), spans_.end(), t,
                               [](int64_t v, const ZoneSpan& s) { return v < s.from_ms; });
    if (it != spans_.end()) t = it->from_ms;
  }
  return t;
}

std::string LocalTime::offset_sql(std::string_view ms_expr) const {
  if (spans_.size() == 1) return std::to_string(spans_.front().offset_s);
  std::string out = "CASE";
  for (size_t i = 1; i < spans_.size(); ++i)
    out += " WHEN (" + std::string(ms_expr) + ") < " + std::to_string(spans_[i].from_ms) + " THEN " +
           std::to_string(spans_[i - 1].offset_s);
  return out + " ELSE " + std::to_string(spans_.back().offset_s) + " END";
}

}  // namespace fieldsync::server
