// Lock discipline that the compiler checks.
//
// Members shared between threads say which mutex guards them (GUARDED_BY), and functions that expect a lock
// to be held say so (REQUIRES); clang's -Wthread-safety then proves every access holds the right lock. The
// test command builds the whole tree with clang and -Werror (scripts/test.sh, "clang build"), so a member
// read without its lock fails CI. Under gcc the macros expand to nothing.
//
// libstdc++'s std::mutex carries no capability attributes, so the analysis needs a mutex type of its own:
// `Mutex` is std::mutex with the attributes, `MutexLock` its scoped guard, and `Mutex::native()` hands the
// std::mutex to a std::condition_variable (the wait releases and retakes it, which the analysis cannot see
// and does not need to: the caller holds the lock before and after the wait). The names follow clang's
// documentation (https://clang.llvm.org/docs/ThreadSafetyAnalysis.html) and Abseil's.
#pragma once

#include <mutex>

#if defined(__clang__)
#define FIELDSYNC_THREAD_ANNOTATION(x) __attribute__((x))
#else
#define FIELDSYNC_THREAD_ANNOTATION(x)
#endif

#define CAPABILITY(x) FIELDSYNC_THREAD_ANNOTATION(capability(x))
#define SCOPED_CAPABILITY FIELDSYNC_THREAD_ANNOTATION(scoped_lockable)
#define GUARDED_BY(x) FIELDSYNC_THREAD_ANNOTATION(guarded_by(x))
#define PT_GUARDED_BY(x) FIELDSYNC_THREAD_ANNOTATION(pt_guarded_by(x))
#define REQUIRES(...) FIELDSYNC_THREAD_ANNOTATION(requires_capability(__VA_ARGS__))
#define EXCLUDES(...) FIELDSYNC_THREAD_ANNOTATION(locks_excluded(__VA_ARGS__))
#define ACQUIRE(...) FIELDSYNC_THREAD_ANNOTATION(acquire_capability(__VA_ARGS__))
#define RELEASE(...) FIELDSYNC_THREAD_ANNOTATION(release_capability(__VA_ARGS__))
#define TRY_ACQUIRE(...) FIELDSYNC_THREAD_ANNOTATION(try_acquire_capability(__VA_ARGS__))
#define ASSERT_CAPABILITY(x) FIELDSYNC_THREAD_ANNOTATION(assert_capability(x))
#define RETURN_CAPABILITY(x) FIELDSYNC_THREAD_ANNOTATION(lock_returned(x))
#define NO_THREAD_SAFETY_ANALYSIS FIELDSYNC_THREAD_ANNOTATION(no_thread_safety_analysis)

namespace fieldsync {

class CAPABILITY("mutex") Mutex {
 public:
  Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  void lock() ACQUIRE() { mu_.lock(); }
  void unlock() RELEASE() { mu_.unlock(); }
  bool try_lock() TRY_ACQUIRE(true) { return mu_.try_lock(); }
  // Tells the analysis the caller holds this mutex where it cannot follow (a lock taken through native()).
  void assert_held() const ASSERT_CAPABILITY(this) {}

  // For std::condition_variable and std::unique_lock: the analysis does not follow locks taken this way, so
  // a function doing so states what it holds with assert_held().
  std::mutex& native() RETURN_CAPABILITY(this) { return mu_; }

 private:
  std::mutex mu_;
};

// Holds a Mutex for its scope (std::lock_guard with the attributes).
class SCOPED_CAPABILITY MutexLock {
 public:
  explicit MutexLock(Mutex& mu) ACQUIRE(mu) : mu_(mu) { mu_.lock(); }
  ~MutexLock() RELEASE() { mu_.unlock(); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  Mutex& mu_;
};

}  // namespace fieldsync
