// Per-frame zstd compression of protocol version 2 frames (docs/protocol.md section 3, "Compressed frames";
// docs/DESIGN.md on why it is safe). Internal to the codec.
//
// A compressed frame is an 8-byte header -- the decompressed size as a little-endian uint32, then the
// identifier "FSZ1" where an uncompressed frame has "FSY1" -- followed by exactly one zstd frame (RFC 8878)
// that declares the same content size. Every frame is compressed on its own: no dictionary and no history is
// shared between frames, messages or sessions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "fieldsync/sync/status.h"

namespace fieldsync::codec::detail {

inline constexpr size_t kCompressedHeaderBytes = 8;

// Whether `frame` carries the compressed frame identifier (nothing else is checked).
bool is_compressed_frame(std::span<const uint8_t> frame);

// The compressed form of `frame` at zstd `level`, or nothing when it would not be smaller.
std::optional<std::vector<uint8_t>> compress_frame(std::span<const uint8_t> frame, int level);

// A decompressed frame, 8-byte aligned for the FlatBuffers reader.
struct Decompressed {
  std::unique_ptr<uint64_t[]> words;
  size_t size = 0;
  std::span<const uint8_t> bytes() const { return {reinterpret_cast<const uint8_t*>(words.get()), size}; }
};

// Decompresses a frame is_compressed_frame() accepted. The declared size is checked against `max_bytes`
// (kMessageTooLarge) and against the zstd frame's own content size before anything is allocated; the output
// buffer is exactly the declared size and zstd never writes past it, so a frame cannot inflate beyond it.
// Anything else wrong (truncated, trailing bytes, a second zstd frame, corrupt data, a different actual size)
// is kMalformedMessage.
Result<Decompressed> decompress_frame(std::span<const uint8_t> frame, size_t max_bytes);

}  // namespace fieldsync::codec::detail
