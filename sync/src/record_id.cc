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

// The canonical text: 8-4-4-4-12 hex digits, hyphens at offsets 8, 13, 18 and 23.
constexpr size_t kTextLength = 36;

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Writes the `digits` low nibbles of `word` in hex, most significant first; returns the end.
char* put_hex(char* out, uint32_t word, int digits) {
  static constexpr char kDigits[] = "0123456789abcdef";
  for (int shift = 4 * (digits - 1); shift >= 0; shift -= 4) *out++ = kDigits[(word >> shift) & 0xf];
  return out;
}

// Shifts `digits` hex digits from `in` into `word`; false at a character that is not one.
bool get_hex(const char* in, int digits, uint32_t& word) {
  for (int i = 0; i < digits; ++i) {
    const int v = hex_value(in[i]);
    if (v < 0) return false;
    word = (word << 4) | static_cast<uint32_t>(v);
  }
  return true;
}

}  // namespace

// Text and words go through 32-bit halves: on a 32-bit CPU (armhf) every shift of a 64-bit word is several
// instructions, and the write path formats and parses ids several times per call.
std::string RecordId::to_string() const {
  char text[kTextLength];
  char* out = text;
  const uint32_t hi_hi = static_cast<uint32_t>(hi >> 32), hi_lo = static_cast<uint32_t>(hi);
  const uint32_t lo_hi = static_cast<uint32_t>(lo >> 32), lo_lo = static_cast<uint32_t>(lo);
  out = put_hex(out, hi_hi, 8);
  *out++ = '-';
  out = put_hex(out, hi_lo >> 16, 4);
  *out++ = '-';
  out = put_hex(out, hi_lo, 4);
  *out++ = '-';
  out = put_hex(out, lo_hi >> 16, 4);
  *out++ = '-';
  out = put_hex(out, lo_hi, 4);
  put_hex(out, lo_lo, 8);
  return std::string(text, kTextLength);
}

std::optional<RecordId> RecordId::parse(std::string_view text) {
  if (text.size() != kTextLength) return std::nullopt;
  for (size_t i : {size_t{8}, size_t{13}, size_t{18}, size_t{23}})
    if (text[i] != '-') return std::nullopt;
  const char* in = text.data();
  uint32_t hi_hi = 0, hi_lo = 0, lo_hi = 0, lo_lo = 0;
  if (!get_hex(in, 8, hi_hi) || !get_hex(in + 9, 4, hi_lo) || !get_hex(in + 14, 4, hi_lo) ||
      !get_hex(in + 19, 4, lo_hi) || !get_hex(in + 24, 4, lo_hi) || !get_hex(in + 28, 8, lo_lo))
    return std::nullopt;
  RecordId id;
  id.hi = (uint64_t{hi_hi} << 32) | hi_lo;
  id.lo = (uint64_t{lo_hi} << 32) | lo_lo;
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
