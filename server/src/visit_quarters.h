// The store's zone-independent visits rollup (SQLite store format 9), shared by the triggers that keep it
// (sqlite_store.cc) and the activity report that reads it (reports.cc).
//
// _visit_quarter_day holds one row per UTC day, rep and outcome: `visits` (the day's visits) and, for K in
// 1..95, first_qK (those checked in during the day's first K quarter-hours, [00:00Z, K x 15 min)). Every
// zone's offset is a multiple of 15 minutes (India +5:30, Nepal +5:45), so a local day of any zone is a UTC
// interval that starts and ends on a quarter-hour: its visits are a difference of two of these running counts
// on each UTC day it touches (a suffix of one day and a prefix of the next, at the offset of that day), one
// row per (UTC day, rep, outcome) read -- as many as the company zone's _visit_day -- instead of one per
// visit. Running counts rather than per-quarter counts: a read takes one or two columns of a row instead of
// summing up to 95, and a write rewrites the whole row either way.
#pragma once

#include <cstdint>
#include <string>

namespace fieldsync::server {

inline constexpr int64_t kQuarterHourMs = 15 * 60 * 1000;
inline constexpr int kQuartersPerDay = 96;

// The column of the visits in the first `quarters` quarter-hours of the UTC day, 1..kQuartersPerDay-1 (0 is
// none of them and kQuartersPerDay is `visits`, the whole day).
inline std::string visit_quarter_column(int quarters) {
  return "first_q" + std::to_string(quarters);
}

}  // namespace fieldsync::server
