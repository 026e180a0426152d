#include "fieldsync/sync/status.h"

namespace fieldsync {

std::string_view to_string(ErrorCode code) {
  switch (code) {
    case ErrorCode::kOk:
      return "ok";
    case ErrorCode::kMalformedMessage:
      return "malformed_message";
    case ErrorCode::kUnsupportedProtocol:
      return "unsupported_protocol";
    case ErrorCode::kUnsupportedSchema:
      return "unsupported_schema";
    case ErrorCode::kMessageTooLarge:
      return "message_too_large";
    case ErrorCode::kTooManyChanges:
      return "too_many_changes";
    case ErrorCode::kUnexpectedMessage:
      return "unexpected_message";
    case ErrorCode::kSequenceGap:
      return "sequence_gap";
    case ErrorCode::kRateLimited:
      return "rate_limited";
    case ErrorCode::kAuthFailed:
      return "auth_failed";
    case ErrorCode::kTokenExpired:
      return "token_expired";
    case ErrorCode::kDeviceRevoked:
      return "device_revoked";
    case ErrorCode::kClockSkew:
      return "clock_skew";
    case ErrorCode::kUnknownEntity:
      return "unknown_entity";
    case ErrorCode::kUnknownField:
      return "unknown_field";
    case ErrorCode::kTypeMismatch:
      return "type_mismatch";
    case ErrorCode::kNullViolation:
      return "null_violation";
    case ErrorCode::kValueInvalid:
      return "value_invalid";
    case ErrorCode::kImmutableField:
      return "immutable_field";
    case ErrorCode::kServerOwnedField:
      return "server_owned_field";
    case ErrorCode::kInvalidTransition:
      return "invalid_transition";
    case ErrorCode::kOrderLocked:
      return "order_locked";
    case ErrorCode::kDuplicateId:
      return "duplicate_id";
    case ErrorCode::kRecordNotFound:
      return "record_not_found";
    case ErrorCode::kRecordDeleted:
      return "record_deleted";
    case ErrorCode::kOutOfScope:
      return "out_of_scope";
    case ErrorCode::kNotDeletable:
      return "not_deletable";
    case ErrorCode::kPermissionDenied:
      return "permission_denied";
    case ErrorCode::kMissingField:
      return "missing_field";
    case ErrorCode::kStorageFull:
      return "storage_full";
    case ErrorCode::kStorageCorrupt:
      return "storage_corrupt";
    case ErrorCode::kStorageLocked:
      return "storage_locked";
    case ErrorCode::kStorageReadOnly:
      return "storage_read_only";
    case ErrorCode::kStorageIo:
      return "storage_io";
    case ErrorCode::kSchemaTooNew:
      return "schema_too_new";
    case ErrorCode::kInvalidArgument:
      return "invalid_argument";
    case ErrorCode::kInternal:
      return "internal";
  }
  return "unknown_error";
}

std::string Status::to_string() const {
  std::string s(fieldsync::to_string(code_));
  if (!message_.empty()) {
    s += ": ";
    s += message_;
  }
  return s;
}

}  // namespace fieldsync
