#include "compression.h"

#include <cstring>
#include <string>

#include <zstd.h>

namespace fieldsync::codec::detail {
namespace {

constexpr uint8_t kIdentifier[4] = {'F', 'S', 'Z', '1'};

Status malformed(std::string message) {
  return Status(ErrorCode::kMalformedMessage, std::move(message));
}

// One context per thread, for its memory only: every frame resets it (history and parameters), so nothing of
// one frame is visible to the next.
struct ContextDeleter {
  void operator()(ZSTD_CCtx* c) const { ZSTD_freeCCtx(c); }
  void operator()(ZSTD_DCtx* d) const { ZSTD_freeDCtx(d); }
};

ZSTD_CCtx* compression_context() {
  thread_local std::unique_ptr<ZSTD_CCtx, ContextDeleter> context(ZSTD_createCCtx());
  return context.get();
}

ZSTD_DCtx* decompression_context() {
  thread_local std::unique_ptr<ZSTD_DCtx, ContextDeleter> context(ZSTD_createDCtx());
  return context.get();
}

}  // namespace

bool is_compressed_frame(std::span<const uint8_t> frame) {
  return frame.size() >= kCompressedHeaderBytes && std::memcmp(frame.data() + 4, kIdentifier, 4) == 0;
}

std::optional<std::vector<uint8_t>> compress_frame(std::span<const uint8_t> frame, int level) {
  ZSTD_CCtx* c = compression_context();
  if (c == nullptr || frame.size() > UINT32_MAX) return std::nullopt;
  ZSTD_CCtx_reset(c, ZSTD_reset_session_and_parameters);
  ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, level);
  ZSTD_CCtx_setParameter(c, ZSTD_c_contentSizeFlag, 1);  // the receiver checks it against the header
  std::vector<uint8_t> out(kCompressedHeaderBytes + ZSTD_compressBound(frame.size()));
  const size_t n = ZSTD_compress2(c, out.data() + kCompressedHeaderBytes, out.size() - kCompressedHeaderBytes,
                                  frame.data(), frame.size());
  if (ZSTD_isError(n) || kCompressedHeaderBytes + n >= frame.size()) return std::nullopt;
  out.resize(kCompressedHeaderBytes + n);
  const uint32_t size = static_cast<uint32_t>(frame.size());
  for (int i = 0; i < 4; ++i) out[static_cast<size_t>(i)] = static_cast<uint8_t>(size >> (8 * i));
  std::memcpy(out.data() + 4, kIdentifier, 4);
  return out;
}

Result<Decompressed> decompress_frame(std::span<const uint8_t> frame, size_t max_bytes) {
  uint32_t declared = 0;
  for (int i = 0; i < 4; ++i) declared |= static_cast<uint32_t>(frame[static_cast<size_t>(i)]) << (8 * i);
  if (declared > max_bytes) {
    return Status(ErrorCode::kMessageTooLarge, "compressed frame declares " + std::to_string(declared) +
                                                   " bytes, over the limit of " + std::to_string(max_bytes));
  }
  const std::span<const uint8_t> z = frame.subspan(kCompressedHeaderBytes);
  // Exactly one zstd frame, all of the rest, declaring the same size (frames without a content size,
  // skippable frames and concatenations are refused).
  const unsigned long long content = ZSTD_getFrameContentSize(z.data(), z.size());
  if (content == ZSTD_CONTENTSIZE_ERROR || content == ZSTD_CONTENTSIZE_UNKNOWN)
    return malformed("compressed frame without a valid zstd frame header");
  if (content != declared) {
    return malformed("compressed frame declares " + std::to_string(declared) + " bytes, its zstd frame " +
                     std::to_string(content));
  }
  const size_t compressed = ZSTD_findFrameCompressedSize(z.data(), z.size());
  if (ZSTD_isError(compressed) || compressed != z.size())
    return malformed("compressed frame is truncated or has trailing bytes");
  ZSTD_DCtx* d = decompression_context();
  if (d == nullptr) return Status(ErrorCode::kInternal, "no zstd decompression context", /*retryable=*/true);
  Decompressed out;
  out.size = declared;
  out.words.reset(new uint64_t[(declared + sizeof(uint64_t) - 1) / sizeof(uint64_t) + 1]);
  ZSTD_DCtx_reset(d, ZSTD_reset_session_and_parameters);
  const size_t n = ZSTD_decompressDCtx(d, out.words.get(), declared, z.data(), z.size());
  if (ZSTD_isError(n)) return malformed(std::string("compressed frame: ") + ZSTD_getErrorName(n));
  if (n != declared) {
    return malformed("compressed frame declares " + std::to_string(declared) + " bytes and holds " +
                     std::to_string(n));
  }
  return out;
}

}  // namespace fieldsync::codec::detail
