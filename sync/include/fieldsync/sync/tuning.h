// Every limit and tuning constant of the sync core, in one place. Each says why it has the value it has.
#pragma once

#include <cstddef>
#include <cstdint>

namespace fieldsync::tuning {

// --- Clocks
// ------------------------------------------------------------------------------------------------- A remote
// HLC (or a device clock at handshake) more than this far ahead of the receiver's wall clock is refused with
// kClockSkew. An hour tolerates phones on a wrong time zone setting and handhelds that drift for weeks
// without NTP, while keeping a broken clock from pushing every other writer's last-writer-wins edits into the
// past for days.
inline constexpr int64_t kMaxClockSkewMs = 60 * 60 * 1000;

// --- Messages and batches
// ----------------------------------------------------------------------------------- Largest frame either
// side accepts. A 200-change transaction of 200-byte values is ~60 KiB; 4 MiB leaves room for bootstrap pages
// and is small enough that a hostile client cannot make the server buffer much per session.
inline constexpr size_t kMaxMessageBytes = 4 * 1024 * 1024;
// Protocol version 2: frames of the compressible messages (codec.h) at least this large are zstd-compressed
// when that makes them smaller. Measured (PERFORMANCE.md, "Bytes on the wire"): a push of one field edit, 344
// bytes, compresses to 224; an ack of one result, 112 bytes, only to 92, and below that the zstd frame header
// and the 8-byte envelope eat what is saved.
inline constexpr size_t kCompressMinBytes = 256;
// zstd level of compressed frames, chosen by measurement (docs/PERFORMANCE.md, "Bytes on the wire"): the
// smallest level whose size is within a few percent of the higher levels' at a fraction of their CPU.
inline constexpr int kCompressionLevel = 3;
// zstd level of bootstrap pages: the server compresses every page of every fresh device's bootstrap (~8 MB of
// frames per 100k records), where zstd was 13% of its CPU; level 1 is 4-6% larger than 3 for ~10% less time
// ("Bytes on the wire"), and a page is still ~55 bytes a record against the target of 150.
inline constexpr int kBootstrapCompressionLevel = 1;
// Changes in one client transaction: an order with its lines is ~10-200 changes; 2,000 fits a 150-line order
// with every field set and still bounds the server's per-transaction work.
inline constexpr size_t kMaxChangesPerTxn = 2000;
// Client transactions per push message. Pushing many small transactions together amortises round trips after
// a long offline period; 64 keeps one push under ~1 MiB for typical edits.
inline constexpr size_t kMaxTxnsPerPush = 64;
// Changes per push message (at least one transaction is always sent): with kMaxTxnsPerPush this keeps a push
// well under kMaxMessageBytes even when transactions are large.
inline constexpr size_t kMaxChangesPerPush = 4000;
// Version 2 sessions (protocol.h): the device acknowledges each push in one local transaction, and at
// synchronous=FULL that commit's fsync, not the server, bounded a big backlog's push at 64 transactions a
// push. 512 small transactions (an account of ~10 fields is ~1 KiB in the version 1 encoding, far less
// compressed) is a ~0.5 MiB frame, an eighth of kMaxMessageBytes; the changes cap keeps a push of large
// transactions at the same size.
inline constexpr size_t kMaxTxnsPerPushV2 = 512;
inline constexpr size_t kMaxChangesPerPushV2 = 8000;
// A push's transactions the server applies in one store transaction (SyncServer::ApplyRun). Each store
// transaction pays a savepoint with copies of the pages it dirties, the node's watermark and clock rows and a
// log head read: a third of a one-account transaction's instructions when paid per transaction. 64 pays them
// once per 64 (a few percent each), bounds what a store failure makes the device send again to 64
// transactions, and holds the store's writer for ~1-2 ms at a time, short beside a live batch's flush.
inline constexpr size_t kMaxTxnsPerStoreTxn = 64;
// Pushes a version 2 device keeps outstanding. One in flight costs a round trip per push: on a 150 ms phone
// link that is most of the time. Four keep the link busy while the server applies and flushes the previous
// ones, and bound what a reconnect or a SequenceGap re-sends (at most 4 pushes, every one deduplicated by
// the server's node_seq watermark).
inline constexpr size_t kMaxPushesInFlight = 4;
// Changes per pull batch (a batch always holds whole transactions, so it may exceed this by one transaction).
// 500 keeps a batch ~100 KiB: a few seconds on 2G, and one SQLite transaction on the device.
inline constexpr size_t kMaxChangesPerPull = 500;
// Log changes one pull may read past when none of them is for the device (its own pushed transactions, other
// territories' work) before it answers with an empty batch: a device that pushed a 100k backlog otherwise
// pulled past its own commits in 2,000 empty batches, each a round trip and a commit on the device.
inline constexpr size_t kPullScanBudget = 40 * kMaxChangesPerPull;
// Changes one live fan-out reads from the log per session cursor (normally: everything committed since the
// previous flush). The read and the scope resolution are shared by every live session at that cursor and each
// session is sent only its own part, so this can be far larger than a pull: a busy flush (many reps pushing
// large orders at once) still reaches every session live instead of sending all of them to pull one by one.
// 8,000 changes is a few hundred KiB for a session that sees everything (head office), one SQLite
// transaction on its device.
inline constexpr size_t kMaxChangesPerLiveScan = 8000;
// Records whose resolved scope the server keeps in memory (SyncServer's scope cache, ~100 bytes each); past
// this the cache starts over.
inline constexpr size_t kMaxCachedScopes = 250000;
// Changes of the newest log entries SyncServer keeps in memory for fan-out and catch-ups (its log tail):
// twice the live scan window, so a session a few flushes behind is still served from memory.
inline constexpr size_t kMaxLogTailChanges = 2 * kMaxChangesPerLiveScan;
// Records per bootstrap page; the device commits each page in one transaction before asking for the next.
inline constexpr size_t kBootstrapPageRecords = 500;
// Version 2: pages the server sends for one BootstrapRequest (BootstrapRequest.max_pages is capped here).
// The device asks for the next run as soon as the last page of the current one has arrived, so with 8 pages
// (~4,000 records, ~1-3 MiB) per run the link idles at most one round trip per run; the cap bounds what one
// request makes the server read and queue for a session (8 x 500 records).
inline constexpr size_t kMaxBootstrapPagesPerRequest = 8;
// Largest text value in bytes unless the model says less (notes, addresses). 64 KiB is pages of notes.
inline constexpr size_t kMaxTextBytes = 64 * 1024;
// Largest user id, token or other identifier string accepted from the wire.
inline constexpr size_t kMaxIdentifierBytes = 256;
inline constexpr size_t kMaxTokenBytes = 4096;
// Hello.app_version: a build name for head office's sync health ("2.4.1 (317)"), not a place for data.
inline constexpr size_t kMaxAppVersionBytes = 64;
// Conflict records, purges or record states in one message.
inline constexpr size_t kMaxRecordsPerMessage = 5000;

// --- Client retry and timers
// ---------------------------------------------------------------------------------- A push or pull without
// an answer for this long is sent again (the server deduplicates by node sequence).
inline constexpr int64_t kRequestTimeoutMs = 15'000;
// While connected and idle the client pulls at least this often, in case a live notification was lost.
inline constexpr int64_t kIdlePullIntervalMs = 60'000;
// Reconnect backoff: doubles from the base to the cap, with full jitter, so a fleet coming back after an
// outage does not reconnect in lockstep.
inline constexpr int64_t kReconnectBaseMs = 500;
inline constexpr int64_t kReconnectCapMs = 60'000;
// A server that refused the device's schema version (the app is newer: a server upgrade is under way) is
// asked again only after this long, not at the reconnect cap: a fleet of upgraded phones must not hammer a
// server that cannot serve them until it is upgraded itself. The device works offline meanwhile.
inline constexpr int64_t kServerTooOldRetryMs = 15 * 60 * 1000;

// --- Server
// ----------------------------------------------------------------------------------------------------
// Rejected-transaction results are kept so a re-sent rejected transaction gets the same answer; applied
// results are implied by the node's sequence watermark and need no storage.
// Frames waiting in a session's write queue at which the transport reports it backlogged
// (SyncServer::set_backlogged): live batches for it then wait and are sent as one when the queue has drained,
// so a reader slower than the commit rate gets fewer, larger batches instead of a queue that overflows.
inline constexpr size_t kMaxPendingLiveBatches = 4;
// Changes the server gathers for a backlogged live session before it gives up gathering and reads the log
// again when the session drains: ~300 KiB, well under the transport's per-session queue limit, and one
// SQLite transaction on the device.
inline constexpr size_t kMaxHeldLiveChanges = 2000;
// A live session whose scope a run of commits did not touch is sent an empty batch that moves its cursor
// forward (so a reconnect does not start ever further back) once the run exceeds this many server
// transactions and its cursor was last sent this long ago: at most one such frame per half minute, never
// one every few commits of a busy company.
inline constexpr uint64_t kLiveSkipAdvance = 64;
inline constexpr int64_t kLiveSkipAdvanceMs = 30'000;
// Records a bootstrap page may scan past (out of the user's scope) before it returns a short page.
inline constexpr size_t kBootstrapScanBudget = 20 * kBootstrapPageRecords;
// A scheduling conflict is only looked for among this many of an owner's events around the changed one.
inline constexpr size_t kMaxOverlapScan = 1000;

}  // namespace fieldsync::tuning
