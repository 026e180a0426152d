// FlatBuffers encoding of protocol messages. decode() runs the FlatBuffers verifier and then checks every
// field against the entity model and the limits in tuning.h before producing a value: no unverified byte is
// read.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "fieldsync/sync/protocol.h"

namespace fieldsync::codec {

// Encodes a message as one frame. Never fails for a message the limits allow; asserts on programmer errors.
std::vector<uint8_t> encode(const protocol::Message& message);

// Decodes one frame. Errors: kMessageTooLarge (over tuning::kMaxMessageBytes), kMalformedMessage (verifier or
// structural failure, unknown message type), kUnknownEntity / kUnknownField / kTypeMismatch / kValueInvalid /
// kTooManyChanges (content outside the model or the limits).
Result<protocol::Message> decode(std::span<const uint8_t> frame);

// The same tables as stand-alone buffers, for the stores: a record's versions and fragments (the `_meta`
// column), an outbox entry, a server log entry (with its scope moves), a conflict record. Decoding verifies
// exactly like decode() does, so a corrupt row is a typed kMalformedMessage, never undefined behaviour.
std::vector<uint8_t> encode_record(const RecordState& record);
Result<RecordState> decode_record(std::span<const uint8_t> bytes);
std::vector<uint8_t> encode_client_txn(const ClientTxn& txn);
Result<ClientTxn> decode_client_txn(std::span<const uint8_t> bytes);
std::vector<uint8_t> encode_server_txn(const ServerTxn& txn);
Result<ServerTxn> decode_server_txn(std::span<const uint8_t> bytes);
std::vector<uint8_t> encode_conflict(const ConflictRecord& conflict);
Result<ConflictRecord> decode_conflict(std::span<const uint8_t> bytes);

}  // namespace fieldsync::codec
