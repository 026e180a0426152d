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

// The C ABI (mobile-glue): the JSON texts and id/text arguments of the fs_* functions, through the public
// header, on one offline replica (cabi_target.cc). Input: a selector byte (which function), then "<a>\0<b>".
int c_abi(const uint8_t* data, size_t size);

// The head-office API's pure parsers (server/src/api.h; api_targets.cc, built only with the server). Input: a
// selector byte, then the request target ("/path?query") or the JSON body.
// api_query: parse_query, then parse_list_query (an entity and a caller from the selector; whatever it
// accepts must prepare against the store's tables with one parameter per value), parse_report_query
// (reports::parse_filter) and parse_export.
int api_query(const uint8_t* data, size_t size);
// api_body: parse_sign_in, parse_json_body, then create_changes / patch_changes (through validate_change,
// the model's checks) or the reject, handover, resolve, reassign bodies.
int api_body(const uint8_t* data, size_t size);

struct Target {
  std::string_view name;  // also the corpus directory: tests/fuzz/corpus/<name>
  int (*run)(const uint8_t*, size_t);
};
inline constexpr Target kTargets[] = {
    {"codec_fuzz", codec_frame}, {"compressed_fuzz", compressed_frame},
    {"blob_fuzz", stored_blob},  {"login_fuzz", login_body},
    {"cabi_fuzz", c_abi},
};
// Only where the server is built (not in the client-only cross builds): replay_corpus adds them when
// FIELDSYNC_FUZZ_API is defined.
inline constexpr Target kApiTargets[] = {
    {"api_query_fuzz", api_query},
    {"api_body_fuzz", api_body},
};

}  // namespace fieldsync::fuzz
