// A fault-injecting SQLite VFS for power-loss tests (issue 22 section 3), after SQLite's test_journal.c and
// LevelDB's fault_injection_test: it wraps the default (unix) VFS and keeps, per file, the file's "durable
// image" (its contents as of its last xSync) and the writes and truncations since. A simulated power cut
// turns the power off at a chosen mutating call (xWrite, xSync, xTruncate: that call and every later I/O on
// the affected files fail with SQLITE_IOERR and change nothing), the test then closes its stores, and
// restore_power() rewrites each file to its durable image plus what the chosen mode keeps of the unsynced
// writes: none, a prefix, a prefix and a torn (partially written) next write, or a random subset (reordered
// writeback). -shm files are deleted (shared memory does not survive a power cut).
//
// Simplifications, stated: deleting a file is durable at once (no directory sync is modelled), and so is
// creating one (a new file survives, empty if nothing of it was synced). Since the durable image is the
// model, xSync never reaches the disk (a test does thousands of them).
//
// Only files whose path starts with the armed prefix are affected (one "machine": the device's directory or
// the server's); other files pass through with their syncs still tracked. Thread-safe (one mutex).
// Deterministic: the same operations, cut point, mode and seed give the same files.
#pragma once

#include <cstdint>
#include <string>

namespace fieldsync::powerloss {

enum class CutMode {
  kDropAll,   // every write since the file's last sync is lost
  kPrefix,    // a random prefix of them reached the disk
  kTornPage,  // a random prefix, then part of the next write (whole 512-byte sectors of it)
  kReorder,   // a random subset of them, in any combination
};
const char* cut_mode_name(CutMode mode);
inline constexpr CutMode kAllCutModes[] = {CutMode::kDropAll, CutMode::kPrefix, CutMode::kTornPage,
                                           CutMode::kReorder};

class FaultVfs {
 public:
  // Registers the VFS as the process's default (once) and returns it.
  static FaultVfs& install();

  // Forgets every file, count and fault (files as they are on disk now count as durable).
  void reset();
  // Files under `prefix` are the ones counted, cut and failed from now on; resets the counters.
  void set_domain(const std::string& prefix);
  // Mutating calls (xWrite + xSync + xTruncate) and syncs in the domain since set_domain().
  uint64_t ops() const;
  uint64_t writes() const;
  uint64_t syncs() const;

  // The power goes off at the domain's mutating call number `op` (counted from set_domain, 1-based).
  void arm_power_cut(uint64_t op);
  bool power_is_off() const;
  // Call with every connection to the domain's files closed: rewrites them as a power cut leaves them (see
  // above), deletes their -shm files, turns the power on and forgets every file (all durable again).
  // Returns what the cut did: unsynced writes (and truncations) it found, kept whole, and tore.
  struct CutReport {
    size_t pending = 0, kept = 0, torn = 0;
  };
  CutReport restore_power(CutMode mode, uint64_t seed);

  // Disk full: from the domain's write number `write` on, xWrite fails with SQLITE_FULL and writes nothing,
  // until clear_faults().
  void fail_writes_from(uint64_t write);
  // The domain's sync number `sync` fails with SQLITE_IOERR_FSYNC, once; like Linux after EIO, what that
  // sync was to flush is lost for good (a later sync that succeeds does not bring it back), though reads
  // still see it until the power goes.
  void fail_sync(uint64_t sync);
  void clear_faults();
};

}  // namespace fieldsync::powerloss
