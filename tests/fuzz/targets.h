// The bodies of the fuzz targets, one function per target, shared by the libFuzzer executables
// (fuzz_main.cc, with clang) and the corpus replay test (replay_corpus.cc, every build). Each takes any byte
// string and must return without crashing, reading out of bounds (ASan) or undefined behaviour (UBSan); a
// broken invariant aborts.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace fieldsync::fuzz {

// codec::decode (the WebSocket frame: verifier, then the model and the limits, every message type, every
// form); a decoded message re-encodes in the v1 and the v2 forms, decodes again and re-encodes to the same
// bytes.
int codec_frame(const uint8_t* data, size_t size);
// Compressed frames (protocol version 2): the input as a frame, and the input zstd-compressed into a frame
// declaring its size (so mutations of a plain frame reach the decoder through decompression), each with the
// round trip of codec_frame in the compressed form. The decoder must refuse any declared size over the limit
// before allocating, and whatever it decodes must be a valid message.
int compressed_frame(const uint8_t* data, size_t size);
// The stored blobs: decode_record, decode_client_txn, decode_server_txn, decode_conflict, each with the same
// round trip.
int stored_blob(const uint8_t* data, size_t size);
// The body of POST /login (server/src/login_body.h, what routes.cc runs).
int login_body(const uint8_t* data, size_t size);

struct Target {
  std::string_view name;  // also the corpus directory: tests/fuzz/corpus/<name>
  int (*run)(const uint8_t*, size_t);
};
inline constexpr Target kTargets[] = {
    {"codec_fuzz", codec_frame},
    {"compressed_fuzz", compressed_frame},
    {"blob_fuzz", stored_blob},
    {"login_fuzz", login_body},
};

}  // namespace fieldsync::fuzz
