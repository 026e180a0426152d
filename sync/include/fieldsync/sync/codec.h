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

}  // namespace fieldsync::codec
