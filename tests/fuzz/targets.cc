#include "targets.h"

#include <cstdlib>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include <zstd.h>

#include "fieldsync/sync/codec.h"
#include "login_body.h"

// The fuzz build compiles Boost.JSON's parser here, instrumented like our libraries, instead of linking the
// prebuilt (uninstrumented) libboost_json: otherwise login_fuzz is blind inside the parse.
#ifdef FIELDSYNC_FUZZ_BOOST_JSON_SRC
#include <boost/json/src.hpp>
#endif

namespace fieldsync::fuzz {
namespace {

// Bytes, not values: a NaN coordinate is not equal to itself.
template <typename T, typename Encode, typename Decode>
void round_trip(const Result<T>& first, Encode encode, Decode decode) {
  if (!first.is_ok()) return;
  const std::vector<uint8_t> again = encode(first.value());
  const Result<T> second = decode(std::span<const uint8_t>(again));
  if (!second.is_ok() || encode(second.value()) != again) std::abort();
}

// A decoded message round-trips in the v1 form and in the v2 forms (compact, and compressed whatever its
// size).
void frame_round_trips(const Result<protocol::Message>& decoded) {
  codec::EncodeOptions v2_plain, v2_compressed;
  v2_plain.protocol_version = v2_compressed.protocol_version = 2;
  v2_plain.compression_level = 0;
  v2_compressed.compress_min_bytes = 0;
  const auto decode = [](std::span<const uint8_t> b) { return codec::decode(b); };
  round_trip(
      decoded, [](const protocol::Message& m) { return codec::encode(m); }, decode);
  for (const codec::EncodeOptions* o : {&v2_plain, &v2_compressed})
    round_trip(
        decoded, [o](const protocol::Message& m) { return codec::encode(m, *o); }, decode);
}

}  // namespace

int codec_frame(const uint8_t* data, size_t size) {
  frame_round_trips(codec::decode(std::span<const uint8_t>(data, size)));
  return 0;
}

int compressed_frame(const uint8_t* data, size_t size) {
  frame_round_trips(codec::decode(std::span<const uint8_t>(data, size)));
  // The input as the content of a compressed frame (header: its size, "FSZ1").
  std::vector<uint8_t> wrapped(8 + ZSTD_compressBound(size));
  const size_t n = ZSTD_compress(wrapped.data() + 8, wrapped.size() - 8, data, size, 1);
  if (ZSTD_isError(n)) std::abort();
  wrapped.resize(8 + n);
  for (int i = 0; i < 4; ++i) wrapped[static_cast<size_t>(i)] = static_cast<uint8_t>(size >> (8 * i));
  std::memcpy(wrapped.data() + 4, "FSZ1", 4);
  const Result<protocol::Message> inner = codec::decode(wrapped);
  // What decodes compressed decodes plain too (unless it is itself compressed or a handshake message).
  if (inner.is_ok() && !codec::decode(std::span<const uint8_t>(data, size)).is_ok()) std::abort();
  frame_round_trips(inner);
  return 0;
}

int stored_blob(const uint8_t* data, size_t size) {
  const std::span<const uint8_t> bytes(data, size);
  round_trip(
      codec::decode_record(bytes), [](const RecordState& r) { return codec::encode_record(r); },
      [](std::span<const uint8_t> b) { return codec::decode_record(b); });
  round_trip(
      codec::decode_client_txn(bytes), [](const ClientTxn& t) { return codec::encode_client_txn(t); },
      [](std::span<const uint8_t> b) { return codec::decode_client_txn(b); });
  round_trip(
      codec::decode_server_txn(bytes), [](const ServerTxn& t) { return codec::encode_server_txn(t); },
      [](std::span<const uint8_t> b) { return codec::decode_server_txn(b); });
  round_trip(
      codec::decode_conflict(bytes), [](const ConflictRecord& c) { return codec::encode_conflict(c); },
      [](std::span<const uint8_t> b) { return codec::decode_conflict(b); });
  return 0;
}

int login_body(const uint8_t* data, size_t size) {
  const std::optional<server::LoginBody> body =
      server::parse_login_body(std::string_view(reinterpret_cast<const char*>(data), size));
  if (body && body->node == 0) std::abort();  // the route relies on it: node 0 is refused
  return 0;
}

}  // namespace fieldsync::fuzz
