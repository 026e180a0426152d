// The sync protocol's messages as C++ values. codec.h turns them into FlatBuffers frames and back;
// docs/protocol.md describes the exchange.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "fieldsync/sync/change.h"

namespace fieldsync::protocol {

// Protocol version history (bump on any change to the exchange or to schema/fbs/fieldsync.fbs):
//   1: handshake, push/ack with per-transaction results, cursor pulls in whole-transaction batches, live
//      batches, paged bootstrap with totals, typed errors.
//   2: the session's version is negotiated (Welcome.protocol_version = min(client's, server's)); pipelined
//      pushes (up to tuning::kMaxPushesInFlight outstanding, larger pushes: kMaxTxnsPerPushV2); multi-page
//      bootstrap requests (BootstrapRequest.max_pages); compact, compressed frames after the handshake.
//      A version 1 session keeps exactly the version 1 exchange.
//   (2, unchanged) Hello.app_version appended: optional and informational (head office's sync health), so
//      older peers skip it and a device that sends none shows as unknown; no peer must understand it.
inline constexpr uint32_t kProtocolVersion = 2;
// The oldest client protocol the server still speaks.
inline constexpr uint32_t kMinProtocolVersion = 1;

// Client -> server, first message of a session.
struct Hello {
  uint32_t protocol_version = kProtocolVersion;
  uint32_t schema_version = 0;
  NodeId node = 0;
  std::string token;    // signed device token (issue 4); the simulator uses plain user tokens
  uint64_t cursor = 0;  // server_seq the device has applied up to (0: needs bootstrap)
  int64_t client_time_ms = 0;
  Hlc client_hlc = 0;
  // The app build as its maker names it ("2.4.1 (317)"); empty: not sent (an app from before the field).
  // At most tuning::kMaxAppVersionBytes, printable ASCII.
  std::string app_version;

  friend bool operator==(const Hello&, const Hello&) = default;
};

// Server -> client, the handshake succeeded.
struct Welcome {
  uint32_t protocol_version = kProtocolVersion;  // the session's version: min(Hello's, the server's)
  uint32_t schema_version = 0;
  UserId user;
  schema::Role role = schema::Role::kRep;
  uint64_t last_node_seq = 0;  // highest node_seq of this node the server has applied (dedupe watermark)
  uint64_t server_seq = 0;     // current head of the server's log
  Hlc server_hlc = 0;
  int64_t server_time_ms = 0;

  friend bool operator==(const Welcome&, const Welcome&) = default;
};

struct PushTxns {
  uint64_t request_id = 0;
  std::vector<ClientTxn> txns;  // ascending node_seq, at most tuning::kMaxTxnsPerPush

  friend bool operator==(const PushTxns&, const PushTxns&) = default;
};

enum class TxnOutcome : uint8_t {
  kApplied = 1,    // durable; conflicts (if any) are listed
  kRejected = 2,   // nothing applied; `reason` says why; `records` hold the server's state to roll back to
  kDuplicate = 3,  // already applied earlier (re-sent); durable
};

struct TxnResult {
  uint64_t node_seq = 0;
  TxnOutcome outcome = TxnOutcome::kApplied;
  uint64_t server_seq = 0;  // kApplied: the commit's sequence; kRejected: the log head `records` were read at
  ErrorCode reason = ErrorCode::kOk;
  std::string message;
  std::vector<ConflictRecord> conflicts;
  std::vector<RecordState> records;  // kRejected: server state of every touched record in scope
  std::vector<RecordKey> absent;     // kRejected: touched records the server does not have (drop locally)

  friend bool operator==(const TxnResult&, const TxnResult&) = default;
};

struct PushAck {
  uint64_t request_id = 0;
  std::vector<TxnResult> results;
  Hlc server_hlc = 0;

  friend bool operator==(const PushAck&, const PushAck&) = default;
};

struct PullRequest {
  uint64_t request_id = 0;
  uint64_t cursor = 0;
  uint32_t max_changes = 0;  // 0: server default
  bool live = true;          // after catching up, send new commits as they happen

  friend bool operator==(const PullRequest&, const PullRequest&) = default;
};

// A run of whole server transactions after `from_cursor`, filtered by the receiver's scope.
struct ChangeBatch {
  uint64_t request_id = 0;  // 0 for live batches
  uint64_t from_cursor = 0;
  uint64_t to_cursor = 0;  // the cursor to store once this batch is applied
  bool has_more = false;
  std::vector<ServerTxn> txns;
  std::vector<ConflictRecord> conflicts;  // conflicts concerning the receiver, committed in (from, to]
  std::vector<RecordState> records;       // records that entered the receiver's scope: full state
  std::vector<RecordKey> purges;          // records that left the receiver's scope: drop locally
  Hlc server_hlc = 0;

  friend bool operator==(const ChangeBatch&, const ChangeBatch&) = default;
};

struct BootstrapRequest {
  uint64_t request_id = 0;
  uint64_t snapshot_seq = 0;  // 0: start a new bootstrap
  std::string page_token;     // empty: first page
  uint32_t page_size = 0;     // 0: server default
  // Version 2: the server answers with up to this many consecutive pages (each its own BootstrapPage with
  // the same request_id and its own next_page_token), at most tuning::kMaxBootstrapPagesPerRequest. 0 or 1:
  // one page (what version 1 sessions get).
  uint32_t max_pages = 0;
  // A backfill instead of a bootstrap (a device whose app went from schema `from_schema` to the session's):
  // pages hold only the entities and fields that appeared after from_schema, in the device's scope; the
  // device keeps its cursor. 0: a bootstrap. Older servers never receive one (they refuse the newer schema
  // at the Hello).
  uint32_t from_schema = 0;

  friend bool operator==(const BootstrapRequest&, const BootstrapRequest&) = default;
};

// A record as the central store keeps it (codec::encode_record's bytes), passed by the FlatBuffers verifier:
// only codec::check_stored_record makes one. A version-2 page's records go from the store into the page's
// columns without a RecordState in between (the frame is the same as from `BootstrapPage::records`).
class StoredRecord {
 public:
  const std::vector<uint8_t>& bytes() const { return bytes_; }
  friend bool operator==(const StoredRecord&, const StoredRecord&) = default;

 private:
  friend class StoredRecordMaker;
  explicit StoredRecord(std::vector<uint8_t> bytes) : bytes_(std::move(bytes)) {}
  std::vector<uint8_t> bytes_;
};

struct BootstrapPage {
  uint64_t request_id = 0;
  uint64_t snapshot_seq = 0;  // pull from here once the last page is applied
  uint64_t total_records = 0;
  uint64_t records_before = 0;  // records sent in earlier pages, for progress
  std::vector<RecordState> records;
  // ServerConfig::stored_pages: the page's records as stored, after `records` (the server fills one or the
  // other). The codec encodes them as if decoded into `records`; projection and the version-1 form decode
  // them first.
  std::vector<StoredRecord> stored;
  std::string next_page_token;
  bool done = false;
  std::vector<ConflictRecord> conflicts;  // open conflicts concerning the user
  // Last page only: records this device created (possibly offline, before this bootstrap) that are outside
  // its scope at the snapshot (moved away, or deleted and not visible): the device drops them.
  std::vector<RecordKey> purges;

  friend bool operator==(const BootstrapPage&, const BootstrapPage&) = default;
};

struct Error {
  ErrorCode code = ErrorCode::kInternal;
  std::string message;
  bool retryable = false;
  uint64_t request_id = 0;
  uint64_t resume_node_seq = 0;  // kSequenceGap: resend from here

  friend bool operator==(const Error&, const Error&) = default;
};

using Message = std::variant<Hello, Welcome, PushTxns, PushAck, PullRequest, ChangeBatch, BootstrapRequest,
                             BootstrapPage, Error>;

const char* message_name(const Message& m);

}  // namespace fieldsync::protocol
