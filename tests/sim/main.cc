// fieldsync-sim: runs the deterministic simulator over a range of seeds, or replays one seed with a trace.
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

#include "simulator.h"

namespace {

constexpr const char* kUsage =
    "usage: fieldsync-sim [--seeds N] [--start S] [--quiet] [--verbose] [--reps N] [--steps N]\n"
    "                     [--no-scope-moves] [--sqlite] [--servers N] [--fault F]\n"
    "       fieldsync-sim --seed S [--reps N] [--steps N]   (replay one seed with a trace)\n"
    "\n"
    "  --seeds N   run seeds S .. S+N-1 (default 100)\n"
    "  --start S   first seed (default 1)\n"
    "  --seed S    run only seed S, tracing every event (implies --verbose)\n"
    "  --quiet     print only the summary and failing seeds\n"
    "  --verbose   trace every event of every run to stdout\n"
    "  --reps N    sales reps per run (default 5; 1..50)\n"
    "  --steps N   random steps per run (default 600; 1..1000000)\n"
    "  --no-scope-moves  head office never moves accounts between territories\n"
    "  --sqlite    devices keep real SQLite replica files (client-core) instead of memory\n"
    "  --servers N server instances on one central store, devices on any of them (default 1; 1..4)\n"
    "  --fault F   a deliberate merge bug, for mutation testing:\n"
    "              arrival-order-wins or drop-concurrent-append\n"
    "  --help      this text\n"
    "\n"
    "Exit status: 0 all seeds passed, 1 a seed failed, 2 bad usage.\n";

int usage_error(const std::string& message) {
  std::fprintf(stderr, "fieldsync-sim: %s\n%s", message.c_str(), kUsage);
  return 2;
}

std::optional<uint64_t> parse_u64(std::string_view text) {
  if (text.empty() || text.size() > 20) return std::nullopt;
  uint64_t v = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    uint64_t d = static_cast<uint64_t>(c - '0');
    if (v > (UINT64_MAX - d) / 10) return std::nullopt;
    v = v * 10 + d;
  }
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  uint64_t seeds = 100;
  uint64_t start = 1;
  std::optional<uint64_t> single;
  bool quiet = false;
  bool verbose = false;
  fieldsync::sim::SimOptions base;

  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    auto value = [&](uint64_t lo, uint64_t hi) -> std::optional<uint64_t> {
      if (i + 1 >= argc) return std::nullopt;
      std::optional<uint64_t> v = parse_u64(argv[++i]);
      if (!v || *v < lo || *v > hi) return std::nullopt;
      return v;
    };
    if (arg == "--help" || arg == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (arg == "--quiet") {
      quiet = true;
    } else if (arg == "--fault") {
      std::string_view f = i + 1 < argc ? std::string_view(argv[++i]) : std::string_view();
      if (f == "arrival-order-wins") {
        base.fault = fieldsync::testing_support::MergeFault::kArrivalOrderWins;
      } else if (f == "drop-concurrent-append") {
        base.fault = fieldsync::testing_support::MergeFault::kDropConcurrentAppend;
      } else {
        return usage_error("--fault needs arrival-order-wins or drop-concurrent-append");
      }
    } else if (arg == "--no-scope-moves") {
      base.scope_moves = false;
    } else if (arg == "--sqlite") {
      base.sqlite_replicas = true;
    } else if (arg == "--verbose") {
      verbose = true;
    } else if (arg == "--seeds") {
      auto v = value(1, 100'000'000);
      if (!v) return usage_error("--seeds needs a number from 1 to 100000000");
      seeds = *v;
    } else if (arg == "--start") {
      auto v = value(0, UINT64_MAX);
      if (!v) return usage_error("--start needs a non-negative number");
      start = *v;
    } else if (arg == "--seed") {
      auto v = value(0, UINT64_MAX);
      if (!v) return usage_error("--seed needs a non-negative number");
      single = *v;
    } else if (arg == "--servers") {
      auto v = value(1, 4);
      if (!v) return usage_error("--servers needs a number from 1 to 4");
      base.servers = static_cast<int>(*v);
    } else if (arg == "--reps") {
      auto v = value(1, 50);
      if (!v) return usage_error("--reps needs a number from 1 to 50");
      base.reps = static_cast<int>(*v);
    } else if (arg == "--steps") {
      auto v = value(1, 1'000'000);
      if (!v) return usage_error("--steps needs a number from 1 to 1000000");
      base.steps = static_cast<int>(*v);
    } else {
      return usage_error("unknown argument '" + std::string(arg) + "'");
    }
  }
  if (quiet && verbose) return usage_error("--quiet and --verbose exclude each other");
  if (single) {
    start = *single;
    seeds = 1;
    verbose = !quiet;
  }

  fieldsync::sim::SimReport total;
  uint64_t failed = 0;
  const auto t0 = std::chrono::steady_clock::now();
  for (uint64_t k = 0; k < seeds; ++k) {
    fieldsync::sim::SimOptions opt = base;
    opt.seed = start + k;
    opt.verbose = verbose;
    const auto s0 = std::chrono::steady_clock::now();
    fieldsync::sim::SimReport r = fieldsync::sim::run_simulation(opt);
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - s0).count();
    total.txns_written += r.txns_written;
    total.txns_local_errors += r.txns_local_errors;
    total.txns_applied += r.txns_applied;
    total.txns_rejected += r.txns_rejected;
    total.conflicts += r.conflicts;
    total.messages_sent += r.messages_sent;
    total.messages_dropped += r.messages_dropped;
    total.messages_duplicated += r.messages_duplicated;
    total.messages_reordered += r.messages_reordered;
    total.frames_corrupted += r.frames_corrupted;
    total.client_crashes += r.client_crashes;
    total.server_crashes += r.server_crashes;
    total.app_upgrades += r.app_upgrades;
    total.partitions += r.partitions;
    total.connection_resets += r.connection_resets;
    total.backlogs += r.backlogs;
    total.client_stops += r.client_stops;
    total.storage_faults += r.storage_faults;
    total.server_read_faults += r.server_read_faults;
    total.handshake_timeouts += r.handshake_timeouts;
    total.pipelined_pushes += r.pipelined_pushes;
    total.multi_page_requests += r.multi_page_requests;
    total.v1_sessions += r.v1_sessions;
    total.sim_time_ms += r.sim_time_ms;
    if (!r.ok) {
      ++failed;
      std::printf("seed %llu FAILED (%zu failures):\n", static_cast<unsigned long long>(opt.seed),
                  r.failures.size());
      size_t shown = 0;
      for (const std::string& f : r.failures) {
        if (++shown > 8) {
          std::printf("  ...\n");
          break;
        }
        std::printf("  %s\n", f.c_str());
      }
      std::printf("  reproduce: build/bin/fieldsync-sim --seed %llu",
                  static_cast<unsigned long long>(opt.seed));
      if (base.reps != fieldsync::sim::SimOptions{}.reps) std::printf(" --reps %d", base.reps);
      if (base.steps != fieldsync::sim::SimOptions{}.steps) std::printf(" --steps %d", base.steps);
      if (!base.scope_moves) std::printf(" --no-scope-moves");
      if (base.sqlite_replicas) std::printf(" --sqlite");
      if (base.fault == fieldsync::testing_support::MergeFault::kArrivalOrderWins)
        std::printf(" --fault arrival-order-wins");
      if (base.fault == fieldsync::testing_support::MergeFault::kDropConcurrentAppend)
        std::printf(" --fault drop-concurrent-append");
      std::printf("\n");
    } else if (!quiet) {
      std::printf("seed %llu ok: %llu txns, %llu applied, %llu rejected, %llu conflicts, %.1f ms\n",
                  static_cast<unsigned long long>(opt.seed), static_cast<unsigned long long>(r.txns_written),
                  static_cast<unsigned long long>(r.txns_applied),
                  static_cast<unsigned long long>(r.txns_rejected),
                  static_cast<unsigned long long>(r.conflicts), ms);
    }
    std::fflush(stdout);
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  auto u = [](uint64_t v) { return static_cast<unsigned long long>(v); };
  std::printf(
      "fieldsync-sim: %llu seeds from %llu, %llu failed, %.2f s (%.1f ms/seed)\n"
      "  txns: %llu written, %llu refused locally, %llu applied, %llu rejected by the server, %llu "
      "conflicts\n"
      "  network: %llu messages, %llu dropped, %llu duplicated, %llu reordered, %llu corrupted\n"
      "  faults: %llu partitions, %llu resets, %llu backlogs, %llu client crashes, %llu server crashes, "
      "%llu storage faults, %llu server read faults\n"
      "  client: %llu stops, %llu handshake timeouts\n"
      "  protocol: %llu pushes sent with others in flight, %llu multi-page bootstrap requests, %llu version "
      "1 "
      "sessions\n"
      "  simulated time: %.1f h\n",
      u(seeds), u(start), u(failed), secs, secs * 1000.0 / static_cast<double>(seeds), u(total.txns_written),
      u(total.txns_local_errors), u(total.txns_applied), u(total.txns_rejected), u(total.conflicts),
      u(total.messages_sent), u(total.messages_dropped), u(total.messages_duplicated),
      u(total.messages_reordered), u(total.frames_corrupted), u(total.partitions), u(total.connection_resets),
      u(total.backlogs), u(total.client_crashes), u(total.server_crashes), u(total.storage_faults),
      u(total.server_read_faults), u(total.client_stops), u(total.handshake_timeouts),
      u(total.pipelined_pushes), u(total.multi_page_requests), u(total.v1_sessions),
      static_cast<double>(total.sim_time_ms) / 3'600'000.0);
  return failed == 0 ? 0 : 1;
}
