#include "targets.h"

#include <cstdlib>
#include <span>
#include <string>
#include <vector>

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

}  // namespace

int codec_frame(const uint8_t* data, size_t size) {
  const std::span<const uint8_t> bytes(data, size);
  round_trip(
      codec::decode(bytes), [](const protocol::Message& m) { return codec::encode(m); },
      [](std::span<const uint8_t> b) { return codec::decode(b); });
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
