// FlatBuffers encoding of protocol messages. decode() runs the FlatBuffers verifier and then checks every
// field against the entity model and the limits in tuning.h before producing a value: no unverified byte is
// read.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "fieldsync/sync/protocol.h"
#include "fieldsync/sync/tuning.h"

namespace fieldsync::codec {

// Encodes a message as one frame for a session of `protocol_version` (the version its Welcome named). Never
// fails for a message the limits allow; asserts on programmer errors.
//   1: the v1 form, uncompressed: exactly what protocol version 1 peers read.
//   2 and later: PushTxns and BootstrapPage in their compact forms (the other messages as in v1), and frames
//   of
//      PushTxns, PushAck, BootstrapPage and ChangeBatch answering a pull (not live batches) zstd-compressed
//      when at least tuning::kCompressMinBytes and smaller so. Hello and Welcome are always the v1 form,
//      uncompressed: they open the session before its version is known, and Hello carries the device token.
std::vector<uint8_t> encode(const protocol::Message& message, uint32_t protocol_version = 1);

// The same with the compression settings spelled out, for measurements and tests.
struct EncodeOptions {
  uint32_t protocol_version = 1;
  int compression_level = tuning::kCompressionLevel;      // zstd level; 0: never compress
  size_t compress_min_bytes = tuning::kCompressMinBytes;  // smaller frames stay uncompressed
  // zstd level of BootstrapPage frames when compression_level is not 0 (pages are the bulk a server
  // compresses).
  int bootstrap_compression_level = tuning::kBootstrapCompressionLevel;
};
std::vector<uint8_t> encode(const protocol::Message& message, const EncodeOptions& options);

// Whether protocol version 2 and later compress a frame of `message` (above the size threshold): the messages
// that carry no secret and whose content an outsider cannot time (docs/DESIGN.md, "Compression").
bool compressible(const protocol::Message& message);

// Decodes one frame of any form: v1, the v2 compact forms, and compressed frames (a compressed frame must
// declare a size within tuning::kMaxMessageBytes and is refused before anything is allocated otherwise; what
// it holds is verified like any frame and must not be compressed again). Errors: kMessageTooLarge (over
// tuning::kMaxMessageBytes), kMalformedMessage (verifier or structural failure, unknown message type),
// kUnknownEntity / kUnknownField / kTypeMismatch / kValueInvalid / kTooManyChanges (content outside the model
// or the limits).
Result<protocol::Message> decode(std::span<const uint8_t> frame);

// The same tables as stand-alone buffers, for the stores: a record's versions and fragments (the `_meta`
// column), an outbox entry, a server log entry (with its scope moves), a conflict record. Decoding verifies
// exactly like decode() does, so a corrupt row is a typed kMalformedMessage, never undefined behaviour.
// A record as the store keeps it (encode_record's bytes) checked for a bootstrap page
// (protocol::StoredRecord): the same FlatBuffers verifier as decode_record, a known entity, value kinds the
// page's columns hold, a tombstone decoded whole. `scope` is what the server judges the record by without
// decoding it: its entity, id and scope field (all resolve_scope reads). kMalformedMessage (or the decoder's
// code) otherwise.
struct CheckedRecord {
  protocol::StoredRecord record;
  RecordState scope;
};
Result<CheckedRecord> check_stored_record(std::vector<uint8_t> bytes);
// `page` with its stored records decoded into `records` (after the ones it has).
protocol::BootstrapPage with_records(const protocol::BootstrapPage& page);

std::vector<uint8_t> encode_record(const RecordState& record);
Result<RecordState> decode_record(std::span<const uint8_t> bytes);
std::vector<uint8_t> encode_client_txn(const ClientTxn& txn);
Result<ClientTxn> decode_client_txn(std::span<const uint8_t> bytes);
std::vector<uint8_t> encode_server_txn(const ServerTxn& txn);
Result<ServerTxn> decode_server_txn(std::span<const uint8_t> bytes);
std::vector<uint8_t> encode_conflict(const ConflictRecord& conflict);
Result<ConflictRecord> decode_conflict(std::span<const uint8_t> bytes);

}  // namespace fieldsync::codec
