// Marks a region of a bench for the instruction-counting qemu plugin (bench/qemu_insn_count.c,
// scripts/guest-insns.sh): under qemu-user it reports how many guest instructions each tagged region
// executed. The marks are system calls, so they are issued only when FIELDSYNC_GUEST_INSNS is set in the
// environment; otherwise a region costs one predictable branch and timings are unaffected.
#pragma once

#include <sys/syscall.h>
#include <unistd.h>

#include <cstdlib>

namespace fieldsync::bench {

// Must match bench/qemu_insn_count.c.
inline constexpr long kGuestInsnMagic = 0x46534931;  // "FSI1"
inline constexpr long kGuestInsnBegin = 1;
inline constexpr long kGuestInsnEnd = 2;

inline bool guest_insn_marks_on() {
  static const bool on = std::getenv("FIELDSYNC_GUEST_INSNS") != nullptr;
  return on;
}

// getpid() ignores its arguments; the plugin reads them from the system call's registers.
inline void guest_insn_mark(long op, long tag) {
  if (guest_insn_marks_on()) (void)syscall(SYS_getpid, kGuestInsnMagic, op, tag);
}

// Runs f as region `tag` (0..63; 0 is kept for an empty region, the marks' own cost).
template <typename F>
void guest_insn_region(long tag, F&& f) {
  guest_insn_mark(kGuestInsnBegin, tag);
  f();
  guest_insn_mark(kGuestInsnEnd, tag);
}

}  // namespace fieldsync::bench
