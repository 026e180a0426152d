#include "fieldsync/sync/record_id.h"

#include <cstdlib>

namespace fieldsync {
namespace {

// UUIDv7 layout (RFC 9562 section 5.7): hi = unix_ts_ms:48 | ver:4 | rand_a:12, lo = var:2 | rand_b:62.
constexpr int64_t kMaxUnixMs = (int64_t{1} << 48) - 1;  // the year 10889; a clock beyond it is broken
constexpr uint64_t kVersion7 = uint64_t{7} << 12;
constexpr uint16_t kCounterMax = 0xfff;
// A new millisecond starts the counter at a random value below half its range (RFC 9562 section 6.2, method
// 1): the random start hides how many ids a node makes, the low half leaves at least 2,048 ids before an
// overflow.
constexpr uint16_t kCounterStartMask = 0x7ff;
constexpr uint64_t kVariantRfc = uint64_t{0b10} << 62;
constexpr uint64_t kRandBMask = (uint64_t{1} << 62) - 1;

// Hyphens sit before these character offsets of the canonical text: 8-4-4-4-12.
constexpr bool is_hyphen_position(size_t i) {
  return i == 8 || i == 13 || i == 18 || i == 23;
}
constexpr size_t kTextLength = 36;

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

std::string RecordId::to_string() const {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string text(kTextLength, '-');
  int nibble = 0;  // 0..31 over hi then lo, most significant first
  for (size_t i = 0; i < kTextLength; ++i) {
    if (is_hyphen_position(i)) continue;
    const uint64_t word = nibble < 16 ? hi : lo;
    const int shift = 60 - 4 * (nibble % 16);
    text[i] = kDigits[(word >> shift) & 0xf];
    ++nibble;
  }
  return text;
}

std::optional<RecordId> RecordId::parse(std::string_view text) {
  if (text.size() != kTextLength) return std::nullopt;
  RecordId id;
  int nibble = 0;
  for (size_t i = 0; i < kTextLength; ++i) {
    if (is_hyphen_position(i)) {
      if (text[i] != '-') return std::nullopt;
      continue;
    }
    const int v = hex_value(text[i]);
    if (v < 0) return std::nullopt;
    uint64_t& word = nibble < 16 ? id.hi : id.lo;
    word = (word << 4) | static_cast<uint64_t>(v);
    ++nibble;
  }
  return id;
}

// last_ms_ starts below every valid time so that the first id takes the clock's millisecond, even 0.
RecordIdGenerator::RecordIdGenerator(uint64_t seed) : rng_(seed), last_ms_(-1) {}

RecordId RecordIdGenerator::next(int64_t unix_ms) {
  const bool clock_valid = unix_ms >= 0 && unix_ms <= kMaxUnixMs;
  if (clock_valid && unix_ms > last_ms_) {
    last_ms_ = unix_ms;
    counter_ = static_cast<uint16_t>(rng_() & kCounterStartMask);
  } else if (last_ms_ < 0) {
    // The very first id, from a clock that is out of range: start at the epoch.
    last_ms_ = 0;
    counter_ = static_cast<uint16_t>(rng_() & kCounterStartMask);
  } else if (counter_ < kCounterMax) {
    // Same millisecond, or the clock went backwards: keep the last millisecond so ids keep increasing.
    ++counter_;
  } else {
    // Counter exhausted within one millisecond: borrow the next one. The clock catches up within milliseconds
    // (4,096 ids per ms is far beyond what a device creates). Running out of 48 bits is a broken invariant.
    if (last_ms_ >= kMaxUnixMs) std::abort();
    ++last_ms_;
    counter_ = static_cast<uint16_t>(rng_() & kCounterStartMask);
  }
  RecordId id;
  id.hi = (static_cast<uint64_t>(last_ms_) << 16) | kVersion7 | counter_;
  id.lo = kVariantRfc | (rng_() & kRandBMask);
  return id;
}

}  // namespace fieldsync
