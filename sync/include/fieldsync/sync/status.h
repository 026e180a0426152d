// Typed errors shared by the device, the server and the wire.
//
// Operating errors (bad input, auth, storage, network) are values of Status or Result<T>; broken invariants
// are assertions. ErrorCode values travel on the wire (schema/fbs/fieldsync.fbs mirrors them): append only.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace fieldsync {

enum class ErrorCode : uint16_t {
  kOk = 0,
  // Protocol and framing.
  kMalformedMessage = 1,     // frame failed verification or decoding
  kUnsupportedProtocol = 2,  // protocol version not spoken by the peer
  kUnsupportedSchema = 3,    // schema version newer than the peer knows
  kMessageTooLarge = 4,
  kTooManyChanges = 5,     // a batch or transaction over the limits in tuning.h
  kUnexpectedMessage = 6,  // a message not valid in the current session state
  kSequenceGap = 7,        // a node's transactions arrived with a hole; resend from the reported sequence
  kRateLimited = 8,
  // Authentication.
  kAuthFailed = 20,  // never says whether the user, password or device was wrong
  kTokenExpired = 21,
  kDeviceRevoked = 22,  // the device must erase its local replica
  kClockSkew = 23,      // the device clock is further from the server's than kMaxClockSkewMs
  // Validation of a change or transaction; the whole transaction is rejected.
  kUnknownEntity = 40,
  kUnknownField = 41,
  kTypeMismatch = 42,
  kNullViolation = 43,
  kValueInvalid = 44,  // enum value, length, range
  kImmutableField = 45,
  kServerOwnedField = 46,
  kInvalidTransition = 47,
  kOrderLocked = 48,     // the order (or its parent order) is approved, fulfilled or cancelled
  kDuplicateId = 49,     // a create for an id that already exists
  kRecordNotFound = 50,  // an update of a record that does not exist
  kRecordDeleted = 51,   // an update of a tombstoned record by a writer who saw the delete
  kOutOfScope = 52,      // a record outside the writer's scope, or a scope move the writer may not make
  kNotDeletable = 53,
  kPermissionDenied = 54,  // the writer's role may not make this change
  kMissingField = 55,      // a create without a required field
  // Storage.
  kStorageFull = 70,
  kStorageCorrupt = 71,
  kStorageLocked = 72,
  kStorageReadOnly = 73,
  kStorageIo = 74,
  kSchemaTooNew = 75,  // a replica written by a newer library
  // Generic.
  kInvalidArgument = 90,
  kInternal = 99,
};

std::string_view to_string(ErrorCode code);

class [[nodiscard]] Status {
 public:
  // User-provided, not defaulted: `return {};` then only runs the members' initializers instead of zeroing
  // the whole object first (a memset call per returned success on 32-bit ARM, PERFORMANCE.md issue 19).
  Status() {}
  Status(ErrorCode code, std::string message, bool retryable = false)
      : code_(code), message_(std::move(message)), retryable_(retryable) {}
  static Status ok() { return {}; }

  bool is_ok() const { return code_ == ErrorCode::kOk; }
  explicit operator bool() const { return is_ok(); }
  ErrorCode code() const { return code_; }
  const std::string& message() const { return message_; }
  bool retryable() const { return retryable_; }
  std::string to_string() const;  // "code_name: message"

 private:
  ErrorCode code_ = ErrorCode::kOk;
  std::string message_;
  bool retryable_ = false;
};

// A value or the Status saying why there is none.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}
  Result(Status status) : v_(std::move(status)) {}
  bool is_ok() const { return v_.index() == 0; }
  explicit operator bool() const { return is_ok(); }
  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  // By value: `for (auto& x : store.scan(...).value())` must not iterate a temporary that is already gone.
  T value() && { return std::get<0>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() { return value(); }
  const Status& status() const {
    static const Status kOkStatus;
    return is_ok() ? kOkStatus : std::get<1>(v_);
  }

 private:
  std::variant<T, Status> v_;
};

}  // namespace fieldsync
