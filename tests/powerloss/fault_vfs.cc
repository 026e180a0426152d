#include "fault_vfs.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <map>
#include <mutex>
#include <new>
#include <random>
#include <sstream>
#include <vector>

namespace fieldsync::powerloss {
namespace {

// A write or a truncation that no sync has made durable yet.
struct Op {
  bool truncate = false;
  int64_t offset = 0;  // truncate: the new size
  std::string data;
};

struct FileState {
  std::string durable;      // the contents as of the last successful sync
  std::vector<Op> pending;  // since then, in order
};

void apply(std::string& image, const Op& op, size_t bytes) {
  if (op.truncate) {
    image.resize(static_cast<size_t>(op.offset));
    return;
  }
  const size_t end = static_cast<size_t>(op.offset) + bytes;
  if (image.size() < end) image.resize(end, '\0');
  std::memcpy(image.data() + op.offset, op.data.data(), bytes);
}

std::string read_whole(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

struct State {
  std::mutex mu;
  sqlite3_vfs* root = nullptr;
  std::map<std::string, FileState> files;
  std::string domain;  // empty: no file is in the domain
  uint64_t ops = 0, writes = 0, syncs = 0;
  uint64_t cut_at = 0;  // 0: no cut armed
  bool power_off = false;
  uint64_t full_from = 0;  // 0: the disk has room
  uint64_t fail_sync_at = 0;

  bool in_domain(const std::string& path) const {
    return !domain.empty() && path.compare(0, domain.size(), domain) == 0;
  }
  FileState& file(const std::string& path) {
    auto it = files.find(path);
    if (it == files.end()) it = files.emplace(path, FileState{read_whole(path), {}}).first;
    return it->second;
  }
  // Counts a mutating call in the domain; true when the power is (now) off.
  bool count_op_and_check_power() {
    if (power_off) return true;
    ++ops;
    if (cut_at != 0 && ops >= cut_at) power_off = true;
    return power_off;
  }
};

State& state() {
  static State* s = new State;  // never destroyed: connections may close during static destruction
  return *s;
}

struct FaultFile {
  sqlite3_file base;
  std::string* path;  // nullptr: a temporary file, not tracked
  bool in_domain;
  sqlite3_file* real() {
    return reinterpret_cast<sqlite3_file*>(reinterpret_cast<char*>(this) + kRealOffset);
  }
  static const size_t kRealOffset;
};
const size_t FaultFile::kRealOffset = (sizeof(FaultFile) + 15) / 16 * 16;

FaultFile* ff(sqlite3_file* f) {
  return reinterpret_cast<FaultFile*>(f);
}

int x_close(sqlite3_file* f) {
  FaultFile* p = ff(f);
  int rc = p->real()->pMethods ? p->real()->pMethods->xClose(p->real()) : SQLITE_OK;
  delete p->path;
  p->path = nullptr;
  return rc;
}

bool off_for(FaultFile* p) {
  State& s = state();
  return p->in_domain && s.power_off;
}

int x_read(sqlite3_file* f, void* buf, int amt, sqlite3_int64 off) {
  FaultFile* p = ff(f);
  {
    std::lock_guard lock(state().mu);
    if (off_for(p)) return SQLITE_IOERR_READ;
  }
  return p->real()->pMethods->xRead(p->real(), buf, amt, off);
}

int x_write(sqlite3_file* f, const void* buf, int amt, sqlite3_int64 off) {
  FaultFile* p = ff(f);
  State& s = state();
  std::lock_guard lock(s.mu);
  if (p->in_domain) {
    if (s.count_op_and_check_power()) return SQLITE_IOERR_WRITE;
    ++s.writes;
    if (s.full_from != 0 && s.writes >= s.full_from) return SQLITE_FULL;
  }
  int rc = p->real()->pMethods->xWrite(p->real(), buf, amt, off);
  if (rc == SQLITE_OK && p->path)
    s.file(*p->path).pending.push_back(Op{false, off, std::string(static_cast<const char*>(buf), amt)});
  return rc;
}

int x_truncate(sqlite3_file* f, sqlite3_int64 size) {
  FaultFile* p = ff(f);
  State& s = state();
  std::lock_guard lock(s.mu);
  if (p->in_domain && s.count_op_and_check_power()) return SQLITE_IOERR_TRUNCATE;
  int rc = p->real()->pMethods->xTruncate(p->real(), size);
  if (rc == SQLITE_OK && p->path) s.file(*p->path).pending.push_back(Op{true, size, {}});
  return rc;
}

int x_sync(sqlite3_file* f, int /*flags*/) {
  FaultFile* p = ff(f);
  State& s = state();
  std::lock_guard lock(s.mu);
  if (p->in_domain) {
    if (s.count_op_and_check_power()) return SQLITE_IOERR_FSYNC;
    ++s.syncs;
    if (s.fail_sync_at != 0 && s.syncs == s.fail_sync_at) {
      if (p->path) s.file(*p->path).pending.clear();  // what it was to flush never reaches the disk
      return SQLITE_IOERR_FSYNC;
    }
  }
  // The real fsync is not needed: the durable image is the model of the disk.
  if (p->path) {
    FileState& fs = s.file(*p->path);
    for (const Op& op : fs.pending) apply(fs.durable, op, op.data.size());
    fs.pending.clear();
  }
  return SQLITE_OK;
}

int x_file_size(sqlite3_file* f, sqlite3_int64* size) {
  FaultFile* p = ff(f);
  {
    std::lock_guard lock(state().mu);
    if (off_for(p)) return SQLITE_IOERR_FSTAT;
  }
  return p->real()->pMethods->xFileSize(p->real(), size);
}

int x_lock(sqlite3_file* f, int level) {
  return ff(f)->real()->pMethods->xLock(ff(f)->real(), level);
}
int x_unlock(sqlite3_file* f, int level) {
  return ff(f)->real()->pMethods->xUnlock(ff(f)->real(), level);
}
int x_check_reserved(sqlite3_file* f, int* out) {
  return ff(f)->real()->pMethods->xCheckReservedLock(ff(f)->real(), out);
}
int x_file_control(sqlite3_file* f, int op, void* arg) {
  return ff(f)->real()->pMethods->xFileControl(ff(f)->real(), op, arg);
}
int x_sector_size(sqlite3_file* f) {
  return ff(f)->real()->pMethods->xSectorSize(ff(f)->real());
}
int x_device_characteristics(sqlite3_file* f) {
  return ff(f)->real()->pMethods->xDeviceCharacteristics(ff(f)->real());
}
int x_shm_map(sqlite3_file* f, int pg, int pgsz, int extend, void volatile** pp) {
  return ff(f)->real()->pMethods->xShmMap(ff(f)->real(), pg, pgsz, extend, pp);
}
int x_shm_lock(sqlite3_file* f, int offset, int n, int flags) {
  return ff(f)->real()->pMethods->xShmLock(ff(f)->real(), offset, n, flags);
}
void x_shm_barrier(sqlite3_file* f) {
  ff(f)->real()->pMethods->xShmBarrier(ff(f)->real());
}
int x_shm_unmap(sqlite3_file* f, int delete_flag) {
  return ff(f)->real()->pMethods->xShmUnmap(ff(f)->real(), delete_flag);
}
// No memory-mapped reads: every read goes through x_read (SQLite falls back to it).
int x_fetch(sqlite3_file*, sqlite3_int64, int, void** pp) {
  *pp = nullptr;
  return SQLITE_OK;
}
int x_unfetch(sqlite3_file*, sqlite3_int64, void*) {
  return SQLITE_OK;
}

const sqlite3_io_methods kMethods = {
    3,
    x_close,
    x_read,
    x_write,
    x_truncate,
    x_sync,
    x_file_size,
    x_lock,
    x_unlock,
    x_check_reserved,
    x_file_control,
    x_sector_size,
    x_device_characteristics,
    x_shm_map,
    x_shm_lock,
    x_shm_barrier,
    x_shm_unmap,
    x_fetch,
    x_unfetch,
};

int v_open(sqlite3_vfs*, sqlite3_filename name, sqlite3_file* f, int flags, int* out_flags) {
  State& s = state();
  FaultFile* p = ff(f);
  p->base.pMethods = nullptr;
  p->path = nullptr;
  p->in_domain = false;
  std::string path = name ? std::string(name) : std::string();
  {
    std::lock_guard lock(s.mu);
    p->in_domain = name && s.in_domain(path);
    if (p->in_domain && s.power_off) return SQLITE_CANTOPEN;
  }
  sqlite3_file* real = p->real();
  std::memset(real, 0, static_cast<size_t>(s.root->szOsFile));
  int rc = s.root->xOpen(s.root, name, real, flags, out_flags);
  if (rc != SQLITE_OK) return rc;
  if (name && !(flags & SQLITE_OPEN_DELETEONCLOSE)) {
    p->path = new std::string(path);
    std::lock_guard lock(s.mu);
    (void)s.file(path);  // what is there already counts as durable
  }
  p->base.pMethods = &kMethods;
  return SQLITE_OK;
}

int v_delete(sqlite3_vfs*, const char* name, int sync_dir) {
  State& s = state();
  {
    std::lock_guard lock(s.mu);
    if (s.in_domain(name) && s.power_off) return SQLITE_IOERR_DELETE;
    s.files.erase(name);  // a delete is durable at once (no directory sync is modelled)
  }
  (void)sync_dir;  // durable at once in the model: no real directory fsync needed
  return s.root->xDelete(s.root, name, 0);
}

int v_access(sqlite3_vfs*, const char* name, int flags, int* out) {
  return state().root->xAccess(state().root, name, flags, out);
}
int v_full_pathname(sqlite3_vfs*, const char* name, int n, char* out) {
  return state().root->xFullPathname(state().root, name, n, out);
}
void* v_dlopen(sqlite3_vfs*, const char* name) {
  return state().root->xDlOpen(state().root, name);
}
void v_dlerror(sqlite3_vfs*, int n, char* out) {
  state().root->xDlError(state().root, n, out);
}
void (*v_dlsym(sqlite3_vfs*, void* h, const char* sym))(void) {
  return state().root->xDlSym(state().root, h, sym);
}
void v_dlclose(sqlite3_vfs*, void* h) {
  state().root->xDlClose(state().root, h);
}
// Seeds SQLite's PRNG (WAL salts, temporary names) with fixed bytes, so runs repeat exactly.
int v_randomness(sqlite3_vfs*, int n, char* out) {
  std::mt19937 rng(22);
  for (int i = 0; i < n; ++i) out[i] = static_cast<char>(rng());
  return n;
}
int v_sleep(sqlite3_vfs*, int us) {
  return state().root->xSleep(state().root, us);
}
int v_current_time(sqlite3_vfs*, double* t) {
  return state().root->xCurrentTime(state().root, t);
}
int v_last_error(sqlite3_vfs*, int n, char* out) {
  return state().root->xGetLastError(state().root, n, out);
}
int v_current_time64(sqlite3_vfs*, sqlite3_int64* t) {
  return state().root->xCurrentTimeInt64(state().root, t);
}

// Rewrites `path` to `image` with plain POSIX calls (the power is back; SQLite is not involved).
bool write_file(const std::string& path, const std::string& image) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return false;
  size_t done = 0;
  while (done < image.size()) {
    ssize_t n = ::write(fd, image.data() + done, image.size() - done);
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  ::close(fd);
  return done == image.size();
}

}  // namespace

const char* cut_mode_name(CutMode mode) {
  switch (mode) {
    case CutMode::kDropAll:
      return "drop_all";
    case CutMode::kPrefix:
      return "prefix";
    case CutMode::kTornPage:
      return "torn_page";
    case CutMode::kReorder:
      return "reorder";
  }
  return "?";
}

FaultVfs& FaultVfs::install() {
  static FaultVfs* vfs = [] {
    State& s = state();
    s.root = sqlite3_vfs_find(nullptr);
    static sqlite3_vfs v{};
    v.iVersion = 2;
    v.szOsFile = static_cast<int>(FaultFile::kRealOffset) + s.root->szOsFile;
    v.mxPathname = s.root->mxPathname;
    v.zName = "fieldsync-fault";
    v.xOpen = v_open;
    v.xDelete = v_delete;
    v.xAccess = v_access;
    v.xFullPathname = v_full_pathname;
    v.xDlOpen = v_dlopen;
    v.xDlError = v_dlerror;
    v.xDlSym = v_dlsym;
    v.xDlClose = v_dlclose;
    v.xRandomness = v_randomness;
    v.xSleep = v_sleep;
    v.xCurrentTime = v_current_time;
    v.xGetLastError = v_last_error;
    v.xCurrentTimeInt64 = v_current_time64;
    sqlite3_vfs_register(&v, /*makeDflt=*/1);
    return new FaultVfs;
  }();
  return *vfs;
}

void FaultVfs::reset() {
  State& s = state();
  std::lock_guard lock(s.mu);
  s.files.clear();
  s.domain.clear();
  s.ops = s.writes = s.syncs = 0;
  s.cut_at = s.full_from = s.fail_sync_at = 0;
  s.power_off = false;
}

void FaultVfs::set_domain(const std::string& prefix) {
  State& s = state();
  std::lock_guard lock(s.mu);
  s.domain = prefix;
  s.ops = s.writes = s.syncs = 0;
}

uint64_t FaultVfs::ops() const {
  std::lock_guard lock(state().mu);
  return state().ops;
}
uint64_t FaultVfs::writes() const {
  std::lock_guard lock(state().mu);
  return state().writes;
}
uint64_t FaultVfs::syncs() const {
  std::lock_guard lock(state().mu);
  return state().syncs;
}

void FaultVfs::arm_power_cut(uint64_t op) {
  std::lock_guard lock(state().mu);
  state().cut_at = op;
}

bool FaultVfs::power_is_off() const {
  std::lock_guard lock(state().mu);
  return state().power_off;
}

FaultVfs::CutReport FaultVfs::restore_power(CutMode mode, uint64_t seed) {
  State& s = state();
  std::lock_guard lock(s.mu);
  std::mt19937_64 rng(seed);
  CutReport report;
  for (auto& [path, fs] : s.files) {  // std::map: a fixed order, so the same seed gives the same files
    if (!s.in_domain(path)) continue;
    std::string image = fs.durable;
    const size_t n = fs.pending.size();
    report.pending += n;
    switch (mode) {
      case CutMode::kDropAll:
        break;
      case CutMode::kPrefix: {
        const size_t k = n == 0 ? 0 : rng() % (n + 1);
        for (size_t i = 0; i < k; ++i) apply(image, fs.pending[i], fs.pending[i].data.size());
        report.kept += k;
        break;
      }
      case CutMode::kTornPage: {
        if (n == 0) break;
        const size_t k = rng() % n;
        for (size_t i = 0; i < k; ++i) apply(image, fs.pending[i], fs.pending[i].data.size());
        report.kept += k;
        const Op& torn = fs.pending[k];
        if (!torn.truncate && torn.data.size() > 1) {
          // Whole sectors of it when it spans several, else a random part of the bytes.
          const size_t size = torn.data.size();
          size_t keep = size > 512 ? (1 + rng() % ((size - 1) / 512)) * 512 : 1 + rng() % (size - 1);
          apply(image, torn, std::min(keep, size - 1));
          ++report.torn;
        }
        break;
      }
      case CutMode::kReorder:
        for (size_t i = 0; i < n; ++i) {
          if (rng() & 1) {
            apply(image, fs.pending[i], fs.pending[i].data.size());
            ++report.kept;
          }
        }
        break;
    }
    (void)write_file(path, image);
    ::unlink((path + "-shm").c_str());
  }
  // The -shm of a database whose file was never tracked (only its WAL was): drop it too.
  for (auto& [path, fs] : s.files) {
    if (s.in_domain(path) && path.size() > 4 && path.compare(path.size() - 4, 4, "-wal") == 0)
      ::unlink((path.substr(0, path.size() - 4) + "-shm").c_str());
  }
  s.files.clear();
  s.power_off = false;
  s.cut_at = s.full_from = s.fail_sync_at = 0;
  s.ops = s.writes = s.syncs = 0;
  return report;
}

void FaultVfs::fail_writes_from(uint64_t write) {
  std::lock_guard lock(state().mu);
  state().full_from = write;
}

void FaultVfs::fail_sync(uint64_t sync) {
  std::lock_guard lock(state().mu);
  state().fail_sync_at = sync;
}

void FaultVfs::clear_faults() {
  std::lock_guard lock(state().mu);
  state().full_from = state().fail_sync_at = 0;
}

}  // namespace fieldsync::powerloss
