/* A QEMU TCG plugin for qemu-user (QEMU 7.2, plugin API version 1) that counts the guest instructions a
 * program executes between marker system calls (bench/guest_insns.h), per tag: how many instructions one
 * check-in, or one bare SQLite insert, takes on the emulated architecture.
 *
 * Why guest instructions: under qemu-user a system call runs at native speed while every guest instruction
 * is translated, so wall time under emulation mixes two clocks and cannot be compared with native x86-64.
 * The number of guest instructions does not depend on the emulator, the host or its load: it is what the
 * target CPU would execute (apart from the kernel's side of system calls, which no user-mode count sees).
 *
 * How: every translated block adds its instruction count to one counter when it executes (an inline add,
 * generated into the block: no callback per block). The marker is getpid() with three extra arguments the
 * kernel ignores: a magic number, 1 (begin) or 2 (end), and a tag. At a begin the plugin notes the counter;
 * at the matching end it records the difference. Both markers run the same few instructions of syscall(3),
 * so a region's count includes about two dozen of them (the bench's tag 0, an empty region, shows how many).
 * The counter is not per thread: mark regions only while one guest thread runs (the benches do).
 *
 *   cc -O2 -shared -fPIC -fvisibility=hidden -o qemu_insn_count.so bench/qemu_insn_count.c
 *   qemu-aarch64 -plugin ./qemu_insn_count.so -d plugin <program>      (scripts/guest-insns.sh does this)
 *
 * At exit it prints one line per tag: regions, total, mean, median, min and max instructions, and the
 * whole run's total. Arguments: syscall=N overrides the marker's system call number (getpid of the target);
 * symbols=on also attributes each region's instructions to where they ran: the function of the program
 * (its symbol table; the name is mangled) or, outside it, the shared object (the host's mapping of the
 * guest's file, found by the block's host address), one "guest_insns_sym tag=T insns=N where=NAME" line
 * each. That costs a callback per executed block (several times slower); the counts are exact per block.
 * objects=blocks (with symbols=on) names a shared object's blocks by file offset, "[libc.so.6]+0x5e4a0", to
 * be matched with the object's exported symbols (nm -D) where it has no symbol table. callers=on (with
 * symbols=on) adds "where=(libc+libgcc)<-CALLER" lines: the C library's and libgcc's instructions by the
 * function that called into them.
 *
 * The few declarations below are QEMU's plugin ABI (include/qemu/qemu-plugin.h of v7.2.0, API version 1),
 * written out here because Debian ships qemu-user with plugin support but not the header. */
#define _POSIX_C_SOURCE 200809L /* strdup */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXPORT __attribute__((visibility("default")))

typedef uint64_t qemu_plugin_id_t;
typedef struct {
  const char* target_name;
  struct {
    int min;
    int cur;
  } version;
  bool system_emulation;
  union {
    struct {
      int smp_vcpus;
      int max_vcpus;
    } system;
  };
} qemu_info_t;
struct qemu_plugin_tb;
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb* tb);
typedef void (*qemu_plugin_vcpu_syscall_cb_t)(qemu_plugin_id_t id, unsigned int vcpu_index, int64_t num,
                                              uint64_t a1, uint64_t a2, uint64_t a3, uint64_t a4, uint64_t a5,
                                              uint64_t a6, uint64_t a7, uint64_t a8);
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void* userdata);
void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_tb_trans_cb_t cb);
void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb* tb, enum qemu_plugin_op op, void* ptr,
                                              uint64_t imm);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb* tb);
struct qemu_plugin_insn;
enum qemu_plugin_cb_flags { QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_CB_R_REGS, QEMU_PLUGIN_CB_RW_REGS };
typedef void (*qemu_plugin_vcpu_udata_cb_t)(unsigned int vcpu_index, void* userdata);
void qemu_plugin_register_vcpu_tb_exec_cb(struct qemu_plugin_tb* tb, qemu_plugin_vcpu_udata_cb_t cb,
                                          enum qemu_plugin_cb_flags flags, void* userdata);
struct qemu_plugin_insn* qemu_plugin_tb_get_insn(const struct qemu_plugin_tb* tb, size_t idx);
void* qemu_plugin_insn_haddr(const struct qemu_plugin_insn* insn);
const char* qemu_plugin_insn_symbol(const struct qemu_plugin_insn* insn);
void qemu_plugin_register_vcpu_syscall_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_syscall_cb_t cb);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb, void* userdata);
void qemu_plugin_outs(const char* string);
char* qemu_plugin_path_to_binary(void); /* g_free()d: malloc'ed by GLib */

EXPORT int qemu_plugin_version = 1;

/* Must match bench/guest_insns.h. */
#define MARKER_MAGIC 0x46534931u /* "FSI1": below 2^31, so a 32-bit guest's sign extension keeps it */
#define MARKER_BEGIN 1
#define MARKER_END 2
#define MAX_TAGS 64
/* Bounds memory; regions past it are counted in the total, not in the median. */
#define MAX_REGIONS_PER_TAG 100000

static uint64_t executed; /* every guest instruction of the run; the inline adds write here */
static int64_t marker_syscall = -1;

typedef struct {
  bool open;
  uint64_t at_begin;
  uint64_t regions;
  uint64_t total;
  uint64_t min;
  uint64_t max;
  uint64_t* values; /* each region's count, for the median */
  size_t n_values;
} Tag;
static Tag tags[MAX_TAGS];
static uint64_t unmatched; /* an end without its begin, a begin while open, or a tag out of range */

/* ---- symbols=on: where each region's instructions ran */

#define MAX_PLACES 32768 /* distinct functions and objects; more go to the last one, "(other)" */
#define MAX_OPEN 8

static bool by_place;
static bool object_blocks; /* objects=blocks: a shared object's blocks apart, by file offset */
static char* place_names[MAX_PLACES];
static size_t n_places;
static uint32_t place_slots[2 * MAX_PLACES]; /* open addressing by name: index + 1, 0 empty */
static uint64_t* place_counts[MAX_TAGS];     /* per tag, MAX_PLACES counters, from its first region */
static uint32_t open_tags[MAX_OPEN];         /* open regions, innermost last: it gets the instructions */
static size_t n_open;

/* callers=on: instructions in the C library and libgcc (memcmp, memset, malloc, 64-bit division) are also
 * counted against the function that called them: the last block that ran in a named function or another
 * shared object (a program's unnamed blocks are its PLT stubs, skipped). */
static bool by_caller;
static uint64_t* caller_counts[MAX_TAGS];
static uint32_t last_caller;
static const char* program_name; /* "[basename]" of the program: its unnamed blocks */
enum { BLOCK_CALLER, BLOCK_LEAF_LIBRARY, BLOCK_STUB };

typedef struct {
  uint32_t place;
  uint32_t n_insns;
  uint32_t kind;
} Block; /* one per translated block, kept for the run (qemu may run a block until exit) */

static uint32_t intern_place(const char* name) {
  uint32_t h = 2166136261u;
  for (const char* c = name; *c != '\0'; ++c) h = (h ^ (uint8_t)*c) * 16777619u;
  for (uint32_t i = h % (2 * MAX_PLACES);; i = (i + 1) % (2 * MAX_PLACES)) {
    if (place_slots[i] == 0) {
      if (n_places == MAX_PLACES - 1) break;
      place_names[n_places] = strdup(name);
      place_slots[i] = (uint32_t)++n_places;
      return (uint32_t)(n_places - 1);
    }
    if (strcmp(place_names[place_slots[i] - 1], name) == 0) return place_slots[i] - 1;
  }
  if (place_names[MAX_PLACES - 1] == NULL) place_names[MAX_PLACES - 1] = strdup("(other)");
  return MAX_PLACES - 1;
}

/* The host's file mappings: qemu-user maps a guest's shared object with the host's mmap of the same file. */
typedef struct {
  uintptr_t lo, hi, offset;
  char name[96];
} Mapping;
static Mapping* mappings;
static size_t n_mappings;

static void read_mappings(void) {
  FILE* f = fopen("/proc/self/maps", "r");
  if (f == NULL) return;
  n_mappings = 0;
  size_t cap = 0;
  char line[1024];
  while (fgets(line, sizeof line, f) != NULL) {
    unsigned long lo, hi, offset;
    int path_at = 0;
    if (sscanf(line, "%lx-%lx %*s %lx %*s %*s %n", &lo, &hi, &offset, &path_at) < 3 || path_at == 0) continue;
    char* path = line + path_at;
    path[strcspn(path, "\n")] = '\0';
    if (path[0] != '/') continue;
    if (n_mappings == cap) {
      cap = cap ? 2 * cap : 64;
      Mapping* grown = realloc(mappings, cap * sizeof(Mapping));
      if (grown == NULL) break;
      mappings = grown;
    }
    const char* base = strrchr(path, '/') + 1;
    Mapping* m = &mappings[n_mappings++];
    m->lo = lo, m->hi = hi, m->offset = offset;
    snprintf(m->name, sizeof m->name, "[%s]", base);
  }
  fclose(f);
}

/* "[name]", or with objects=blocks "[name]+0xOFFSET" (the block's offset in the file, for nm -D). */
static const char* object_at(uintptr_t a) {
  static char place[128];
  for (int attempt = 0; attempt < 2; ++attempt) {
    for (size_t i = 0; i < n_mappings; ++i) {
      const Mapping* m = &mappings[i];
      if (a < m->lo || a >= m->hi) continue;
      if (!object_blocks) return m->name;
      snprintf(place, sizeof place, "%s+0x%lx", m->name, (unsigned long)(a - m->lo + m->offset));
      return place;
    }
    read_mappings(); /* mapped since the last read */
  }
  return "[unknown]";
}

static void on_block(unsigned int vcpu, void* userdata) {
  (void)vcpu;
  if (n_open == 0) return;
  const Block* b = userdata;
  const uint32_t tag = open_tags[n_open - 1];
  uint64_t* counts = place_counts[tag];
  if (counts != NULL) counts[b->place] += b->n_insns;
  if (b->kind == BLOCK_CALLER) {
    last_caller = b->place;
  } else if (b->kind == BLOCK_LEAF_LIBRARY && caller_counts[tag] != NULL) {
    caller_counts[tag][last_caller] += b->n_insns;
  }
}

static void open_region(uint32_t tag) {
  if (!by_place) return;
  if (place_counts[tag] == NULL) place_counts[tag] = calloc(MAX_PLACES, sizeof(uint64_t));
  if (by_caller && caller_counts[tag] == NULL) caller_counts[tag] = calloc(MAX_PLACES, sizeof(uint64_t));
  if (n_open < MAX_OPEN) open_tags[n_open++] = tag;
}

static void close_region(uint32_t tag) {
  if (!by_place) return;
  for (size_t i = n_open; i-- > 0;) {
    if (open_tags[i] != tag) continue;
    memmove(&open_tags[i], &open_tags[i + 1], (n_open - i - 1) * sizeof open_tags[0]);
    n_open--;
    return;
  }
}

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb* tb) {
  (void)id;
  const size_t n = qemu_plugin_tb_n_insns(tb);
  qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &executed, n);
  if (!by_place || n == 0) return;
  if (by_caller && program_name == NULL) { /* known once the program runs, not at install */
    static char name[128];
    char* path = qemu_plugin_path_to_binary();
    const char* slash = path != NULL ? strrchr(path, '/') : NULL;
    snprintf(name, sizeof name, "[%s]", slash != NULL ? slash + 1 : path != NULL ? path : "?");
    free(path);
    program_name = name;
  }
  Block* b = malloc(sizeof(Block));
  if (b == NULL) return;
  const struct qemu_plugin_insn* first = qemu_plugin_tb_get_insn(tb, 0);
  const char* symbol = qemu_plugin_insn_symbol(first);
  const char* object = symbol != NULL ? NULL : object_at((uintptr_t)qemu_plugin_insn_haddr(first));
  b->place = intern_place(symbol != NULL ? symbol : object);
  b->n_insns = (uint32_t)n;
  b->kind = BLOCK_CALLER;
  if (object != NULL && (strncmp(object, "[libc.", 6) == 0 || strncmp(object, "[libgcc_s.", 10) == 0))
    b->kind = BLOCK_LEAF_LIBRARY;
  else if (object != NULL && program_name != NULL && strncmp(object, program_name, strlen(program_name)) == 0)
    b->kind = BLOCK_STUB;
  qemu_plugin_register_vcpu_tb_exec_cb(tb, on_block, QEMU_PLUGIN_CB_NO_REGS, b);
}

static void on_syscall(qemu_plugin_id_t id, unsigned int vcpu, int64_t num, uint64_t a1, uint64_t a2,
                       uint64_t a3, uint64_t a4, uint64_t a5, uint64_t a6, uint64_t a7, uint64_t a8) {
  (void)id, (void)vcpu, (void)a4, (void)a5, (void)a6, (void)a7, (void)a8;
  if (num != marker_syscall || (uint32_t)a1 != MARKER_MAGIC) return;
  const uint32_t op = (uint32_t)a2, tag = (uint32_t)a3;
  if (tag >= MAX_TAGS) {
    unmatched++;
    return;
  }
  Tag* t = &tags[tag];
  if (op == MARKER_BEGIN) {
    if (t->open) unmatched++;
    t->open = true;
    t->at_begin = executed;
    open_region(tag);
  } else if (op == MARKER_END && t->open) {
    const uint64_t n = executed - t->at_begin;
    t->open = false;
    close_region(tag);
    if (t->regions == 0 || n < t->min) t->min = n;
    if (n > t->max) t->max = n;
    t->regions++;
    t->total += n;
    if (t->values == NULL) t->values = calloc(MAX_REGIONS_PER_TAG, sizeof(uint64_t));
    if (t->values != NULL && t->n_values < MAX_REGIONS_PER_TAG) t->values[t->n_values++] = n;
  } else {
    unmatched++;
  }
}

static int compare_u64(const void* a, const void* b) {
  const uint64_t x = *(const uint64_t*)a, y = *(const uint64_t*)b;
  return x < y ? -1 : x > y;
}

static const uint64_t* sorting_counts;
static int by_count_descending(const void* a, const void* b) {
  const uint64_t x = sorting_counts[*(const uint32_t*)a], y = sorting_counts[*(const uint32_t*)b];
  return x > y ? -1 : x < y;
}

static void report_places(int tag, const uint64_t* counts, const char* prefix) {
  uint32_t* order = malloc(MAX_PLACES * sizeof(uint32_t));
  if (counts == NULL || order == NULL) {
    free(order);
    return;
  }
  size_t n = 0;
  for (uint32_t i = 0; i < MAX_PLACES; ++i)
    if (counts[i] != 0) order[n++] = i;
  sorting_counts = counts;
  qsort(order, n, sizeof(uint32_t), by_count_descending);
  char line[1200];
  for (size_t i = 0; i < n; ++i) {
    snprintf(line, sizeof line, "guest_insns_sym tag=%d insns=%llu where=%s%s\n", tag,
             (unsigned long long)counts[order[i]], prefix, place_names[order[i]]);
    qemu_plugin_outs(line);
  }
  free(order);
}

static void report_at_exit(qemu_plugin_id_t id, void* userdata) {
  (void)id, (void)userdata;
  char line[256];
  for (int i = 0; i < MAX_TAGS; ++i) {
    report_places(i, place_counts[i], "");
    report_places(i, caller_counts[i], "(libc+libgcc)<-");
  }
  for (int i = 0; i < MAX_TAGS; ++i) {
    Tag* t = &tags[i];
    if (t->regions == 0) continue;
    uint64_t median = 0;
    if (t->n_values > 0) {
      qsort(t->values, t->n_values, sizeof(uint64_t), compare_u64);
      median = t->values[t->n_values / 2];
    }
    snprintf(line, sizeof line,
             "guest_insns tag=%d regions=%llu total=%llu mean=%.1f median=%llu min=%llu max=%llu\n", i,
             (unsigned long long)t->regions, (unsigned long long)t->total, (double)t->total / t->regions,
             (unsigned long long)median, (unsigned long long)t->min, (unsigned long long)t->max);
    qemu_plugin_outs(line);
  }
  snprintf(line, sizeof line, "guest_insns run_total=%llu unmatched_markers=%llu\n",
           (unsigned long long)executed, (unsigned long long)unmatched);
  qemu_plugin_outs(line);
}

/* getpid()'s number on the targets we cross-build for. */
static int64_t getpid_number(const char* target) {
  if (strcmp(target, "x86_64") == 0) return 39;
  if (strcmp(target, "aarch64") == 0) return 172;
  if (strcmp(target, "arm") == 0 || strcmp(target, "i386") == 0) return 20;
  return -1;
}

EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t* info, int argc, char** argv) {
  if (info->system_emulation) {
    fprintf(stderr, "qemu_insn_count: for qemu-user only\n");
    return -1;
  }
  marker_syscall = getpid_number(info->target_name);
  for (int i = 0; i < argc; ++i) {
    if (strncmp(argv[i], "syscall=", 8) == 0) {
      marker_syscall = strtoll(argv[i] + 8, NULL, 10);
    } else if (strcmp(argv[i], "symbols=on") == 0) {
      by_place = true;
    } else if (strcmp(argv[i], "objects=blocks") == 0) {
      object_blocks = true;
    } else if (strcmp(argv[i], "callers=on") == 0) {
      by_caller = true;
    } else {
      fprintf(stderr, "qemu_insn_count: unknown argument %s\n", argv[i]);
      return -1;
    }
  }
  if (marker_syscall < 0) {
    fprintf(stderr, "qemu_insn_count: no getpid number known for %s; pass syscall=N\n", info->target_name);
    return -1;
  }
  qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
  qemu_plugin_register_vcpu_syscall_cb(id, on_syscall);
  qemu_plugin_register_atexit_cb(id, report_at_exit, NULL);
  return 0;
}
