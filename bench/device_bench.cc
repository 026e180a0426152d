// fieldsync-bench-device: one device's big sync, end to end (issue 17, docs/PERFORMANCE.md "One device's big
// sync").
//
// One real device -- FieldClient over its SQLite replica (synchronous=FULL), WsClient over TLS -- against a
// real fieldsync-server process (--dev --dev-tokens, group commit on, a fresh data directory and its own dev
// certificate per run). Between the two sits a TCP proxy of this process: it counts the bytes each way (TLS
// records, WebSocket framing, everything: what a phone's data plan sees) and can shape the link (--rtt-ms:
// each direction delayed by half; --mbit: each direction serialised at that rate), in userspace.
//
// For each N of --records:
//   push       a device that synced its (empty) territory once wrote N accounts offline (one create
//              transaction each, ~262 bytes of field values), then connects: time from connect to every
//              transaction acknowledged (the outbox empty and the engine idle)
//   bootstrap  a fresh device of the same territory (the same user's new phone) pulls all N: time from
//              connect to caught up; for two layouts (--layouts):
//                one       the rep's territory is all there is (the data the push above wrote)
//                among100  the rep's territory among 99 others that hold --others-fraction x N records
//                          each; all seeded straight into the server's store through the server library
//                          (SyncServer::apply_local, 100 accounts a transaction) before the server starts
// Each device phase runs in a child process (this binary, --device ...) that reports its own peak RSS (VmHWM)
// in its result file (wait4()'s ru_maxrss only for a device client that does not).
// With --device-runner the child is another program instead: fieldsync-bench-device-client, this file built
// without the server (FIELDSYNC_DEVICE_ONLY: the device side only), cross-built for ARM and started under
// qemu-user (docs/PERFORMANCE.md "ARM builds"); the server, the proxy and the checks stay native.
// The same run also measures the two local baselines, as child processes of the benchmark binaries:
// BM_CentralApply (the server's batched apply path, bench/server_bench.cc) and BM_ReplicaBootstrapApply
// (the replica's local bootstrap apply, bench/replica_bench.cc), and prints the ratios.
//
// Convergence is checked after each phase by counting rows: the server's store (its account table, the
// rep's territory) against what was written, and the device's replica against the server. The server's own
// counters (GET /metrics) give the messages each way, duplicate transactions (re-sent pushes) and sessions
// (reconnects). Timings are never asserted; --check only fails a run that did not converge (the smoke ctest).
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/json.hpp>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "fieldsync/client/field_client.h"
#include "fieldsync/client/ws_client.h"
#include "fieldsync/io/cli_options.h"
#include "fieldsync/sync/record_id.h"
#include "fieldsync/sync/tuning.h"
#ifndef FIELDSYNC_DEVICE_ONLY
#include "fieldsync/server/sqlite_store.h"
#include "fieldsync/sync/server.h"
#include "server_metrics.h"
#endif

extern char** environ;

namespace {

#ifndef FIELDSYNC_DEVICE_ONLY
using fieldsync::bench::scrape_metrics;
#endif

namespace net = boost::asio;
using tcp = net::ip::tcp;
using Clock = std::chrono::steady_clock;
[[maybe_unused]] constexpr auto kAwait =
    net::as_tuple(net::use_awaitable);  // unused in the device-only build

using fieldsync::Change;
using fieldsync::ChangeOp;
using fieldsync::EntityId;
using fieldsync::NodeId;
using fieldsync::RecordId;
using fieldsync::Value;
namespace client = fieldsync::client;

double mono_s() {
  return std::chrono::duration<double>(Clock::now().time_since_epoch()).count();
}
int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}
// On stderr, with the seconds since this process started (how long each step took, for the docs).
void progress(const std::string& line) {
  static const double start = mono_s();
  std::cerr << "[device-bench +" << static_cast<long>(mono_s() - start) << "s] " << line << std::endl;
}
std::string fmt(double v, int decimals = 1) {
  if (!std::isfinite(v)) return "n/a";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}
// 12345678 -> "12,345,678"
[[maybe_unused]] std::string grouped(double v) {
  if (!std::isfinite(v)) return "n/a";
  const long long x = std::llround(v);
  const std::string digits = std::to_string(x < 0 ? -x : x);
  std::string out = x < 0 ? "-" : "";
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

// ---- Options

constexpr const char* kHelp =
    R"(fieldsync-bench-device: one device's big sync against a real fieldsync-server (docs/PERFORMANCE.md)

usage: fieldsync-bench-device [options]

  --records LIST          record counts N, comma-separated (default 10000,30000,100000,300000)
  --push-records LIST     the N to push (default: --records; "none" for no push). An N of --records not
                          pushed prints a "not run" row
  --bootstrap-records LIST  the N to bootstrap (default: --records; "none" for none)
  --layouts LIST          bootstrap layouts: one, among100 (default one,among100)
  --others-fraction F     among100: each of the 99 other territories holds F x N records (default 0.1)
  --bootstrap-repeat K    K fresh devices bootstrap one after another from the same server, a row each, and
                          a summary of the repeats (the issue's "no request timeout in 20 repeated 100k
                          bootstraps": --bootstrap-repeat 20) (default 1)
  --rtt-ms MS             the link's round trip: each direction delayed by MS/2 (default 0)
  --mbit R                the link's rate each way in Mbit/s (default 0: unshaped)
  --baselines on|off      BM_CentralApply and BM_ReplicaBootstrapApply in the same run (default on)
  --phase-timeout-s S     a device phase still running after S seconds is stopped and reported (default 3600)
  --stall-s S             a device phase without progress (no acknowledgement, no bootstrap page applied) for
                          S seconds is stopped and reported as stalled (default 300)
  --server-bin PATH       fieldsync-server (default: next to this binary)
  --device-runner CMD     run each device phase as CMD (space-separated words) followed by the device's
                          options, instead of this binary: e.g. "scripts/qemu-run.sh aarch64-linux-gnu
                          build-aarch64/bin/fieldsync-bench-device-client" (the device's peak RSS is then
                          CMD's: qemu's own included)
  --bench-dir DIR         where fieldsync-bench-server and fieldsync-bench-client are (default: next to this)
  --tmp-dir DIR           where the temporary directory goes (default /tmp)
  --keep-tmp              keep it (replicas, server data and logs) and print its path
  --check                 exit 1 unless every phase converged and its device reported its peak RSS (the
                          smoke ctest); timings are never checked
  --help                  this text

Output: progress on stderr; markdown tables on stdout (paste into docs/PERFORMANCE.md).
)";

struct Options {
  std::vector<size_t> records{10'000, 30'000, 100'000, 300'000};
  std::vector<size_t> push_records, bootstrap_records;
  bool push_given = false, bootstrap_given = false;
  std::vector<std::string> layouts{"one", "among100"};
  double others_fraction = 0.1;
  int bootstrap_repeat = 1;
  double rtt_ms = 0;
  double mbit = 0;
  bool baselines = true;
  double phase_timeout_s = 3600;
  double stall_s = 300;
  std::string server_bin, bench_dir, tmp_dir = "/tmp", device_runner;
  bool keep_tmp = false, check = false;
  // --device MODE (internal): this binary as the device of one phase.
  std::string device, db, url, ca, user, territory, result;
  size_t device_records = 0;
};

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string part;
  while (std::getline(ss, part, sep))
    if (!part.empty()) out.push_back(part);
  return out;
}

bool parse_double(const std::string& s, double& out) {
  char* end = nullptr;
  out = std::strtod(s.c_str(), &end);
  return !s.empty() && *end == '\0' && std::isfinite(out);
}

bool parse_counts(const std::string& s, std::vector<size_t>& out) {
  out.clear();
  if (s == "none") return true;
  for (const std::string& part : split(s, ',')) {
    double v = 0;
    if (!parse_double(part, v) || v < 1 || v > 1e8) return false;
    out.push_back(static_cast<size_t>(v));
  }
  return !out.empty();
}

// Returns 0 to run, 1 after --help, 2 on a usage error.
int parse_options(int argc, char** argv, Options& o) {
  fieldsync::cli::Options a({"records",
                             "push-records",
                             "bootstrap-records",
                             "layouts",
                             "others-fraction",
                             "rtt-ms",
                             "mbit",
                             "baselines",
                             "phase-timeout-s",
                             "stall-s",
                             "bootstrap-repeat",
                             "server-bin",
                             "device-runner",
                             "bench-dir",
                             "tmp-dir",
                             "device",
                             "db",
                             "url",
                             "ca",
                             "user",
                             "territory",
                             "device-records",
                             "result"},
                            {"keep-tmp", "check", "help"}, fieldsync::cli::Options::Repeat::kLastWins);
  std::string err = a.parse(std::vector<std::string>(argv + 1, argv + argc));
  auto bad = [](const std::string& what) {
    std::cerr << "fieldsync-bench-device: " << what << " (see --help)\n";
    return 2;
  };
  if (!err.empty()) return bad(err);
  if (a.on("help")) {
    std::cout << kHelp;
    return 1;
  }
  if (!a.words().empty()) return bad("unexpected argument " + a.words().front());
  if (a.has("records") && !parse_counts(a.get("records"), o.records))
    return bad("--records: a list of counts");
  o.push_given = a.has("push-records");
  o.bootstrap_given = a.has("bootstrap-records");
  if (o.push_given && !parse_counts(a.get("push-records"), o.push_records)) return bad("--push-records");
  if (o.bootstrap_given && !parse_counts(a.get("bootstrap-records"), o.bootstrap_records))
    return bad("--bootstrap-records");
  if (!o.push_given) o.push_records = o.records;
  if (!o.bootstrap_given) o.bootstrap_records = o.records;
  // Without --records, the rows are just the counts asked for (no "not run" rows for the defaults).
  if (!a.has("records") && (o.push_given || o.bootstrap_given)) o.records.clear();
  if (a.has("layouts")) {
    o.layouts = split(a.get("layouts"), ',');
    for (const std::string& l : o.layouts)
      if (l != "one" && l != "among100") return bad("--layouts: one, among100");
  }
  for (auto [name, field, lo, hi] :
       {std::tuple{"others-fraction", &o.others_fraction, 0.0, 100.0},
        std::tuple{"rtt-ms", &o.rtt_ms, 0.0, 10'000.0}, std::tuple{"mbit", &o.mbit, 0.0, 100'000.0},
        std::tuple{"phase-timeout-s", &o.phase_timeout_s, 1.0, 86'400.0},
        std::tuple{"stall-s", &o.stall_s, 1.0, 86'400.0}}) {
    if (!a.has(name)) continue;
    if (!parse_double(a.get(name), *field) || *field < lo || *field > hi)
      return bad(std::string("--") + name + ": a number in [" + fmt(lo, 0) + ", " + fmt(hi, 0) + "]");
  }
  std::string repeat_error;
  o.bootstrap_repeat = static_cast<int>(a.integer("bootstrap-repeat", 1, 1, 1000, repeat_error));
  if (!repeat_error.empty()) return bad(repeat_error);
  const std::string baselines = a.get("baselines", "on");
  if (baselines != "on" && baselines != "off") return bad("--baselines: on or off");
  o.baselines = baselines == "on";
  o.server_bin = a.get("server-bin");
  o.device_runner = a.get("device-runner");
  o.bench_dir = a.get("bench-dir");
  o.tmp_dir = a.get("tmp-dir", o.tmp_dir);
  o.keep_tmp = a.on("keep-tmp");
  o.check = a.on("check");
  o.device = a.get("device");
  o.db = a.get("db");
  o.url = a.get("url");
  o.ca = a.get("ca");
  o.user = a.get("user");
  o.territory = a.get("territory");
  o.result = a.get("result");
  o.device_records = static_cast<size_t>(std::strtoull(a.get("device-records", "0").c_str(), nullptr, 10));
  return 0;
}

// ---- The workload: an account of ~262 bytes of realistic field values, deterministic in its index

uint64_t mix(uint64_t x) {  // splitmix64
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

struct AccountValues {
  std::string name, address, city, phone, email, segment, notes;
  size_t bytes() const {
    return name.size() + address.size() + city.size() + phone.size() + email.size() + segment.size() +
           notes.size();
  }
};

AccountValues account_values(uint64_t i) {
  static const char* kTrades[] = {"Baeckerei",  "Cafe",    "Metzgerei", "Getraenkemarkt", "Hotel",
                                  "Restaurant", "Kantine", "Feinkost",  "Konditorei",     "Bistro"};
  static const char* kNames[] = {"Hoffmann", "Schneider", "Fischer", "Weber",   "Meyer",
                                 "Wagner",   "Becker",    "Schulz",  "Koch",    "Richter",
                                 "Klein",    "Wolf",      "Neumann", "Braun",   "Zimmermann",
                                 "Krueger",  "Hartmann",  "Lange",   "Schmitt", "Werner"};
  static const char* kLegal[] = {"GmbH", "GmbH & Co. KG", "e.K.", "OHG", "KG"};
  static const char* kStreets[] = {"Hauptstrasse",    "Bahnhofstrasse", "Lindenallee",      "Am Markt",
                                   "Schillerstrasse", "Gartenweg",      "Industriestrasse", "Hafenstrasse"};
  struct City {
    const char* name;
    const char* zip;
    const char* area;
  };
  static const City kCities[] = {{"Hamburg", "22767", "40"},    {"Bremen", "28195", "421"},
                                 {"Hannover", "30159", "511"},  {"Kiel", "24103", "431"},
                                 {"Luebeck", "23552", "451"},   {"Rostock", "18055", "381"},
                                 {"Oldenburg", "26122", "441"}, {"Osnabrueck", "49074", "541"}};
  static const char* kNotes[] = {
      "Delivery only Mon-Fri before 9:00 via the rear entrance; call the day before. Pays by direct debit, "
      "30 days net, 2 % discount within 10 days.",
      "Owner asked for a tasting of the new oat milk range; decision after the summer season. Prefers visits "
      "on Tuesdays, never at lunchtime.",
      "Second branch opening in spring; wants one price list for both shops. Purchasing contact is the "
      "deputy manager, Frau Lindqvist.",
      "Complained about late deliveries in March, credit note issued. Keep an eye on the next three orders "
      "personally; the driver must ring twice."};
  const uint64_t h = mix(i);
  const char* trade = kTrades[h % std::size(kTrades)];
  const char* who = kNames[(h >> 8) % std::size(kNames)];
  const City& city = kCities[(h >> 16) % std::size(kCities)];
  AccountValues v;
  v.name = std::string(trade) + " " + who + " " + kLegal[(h >> 24) % std::size(kLegal)] + " " +
           std::to_string(i % 1000);
  v.address = std::string(kStreets[(h >> 28) % std::size(kStreets)]) + " " +
              std::to_string(1 + (h >> 32) % 180) + ", " + city.zip + " " + city.name;
  v.city = city.name;
  v.phone = "+49 " + std::string(city.area) + " " + std::to_string(1'000'000 + (h >> 36) % 9'000'000);
  std::string domain = std::string(trade) + "-" + who;
  std::transform(domain.begin(), domain.end(), domain.begin(),
                 [](char c) { return static_cast<char>(std::tolower(c)); });
  v.email = std::string((h >> 40) % 2 ? "einkauf" : "info") + "@" + domain + "-" + std::to_string(i % 997) +
            ".example.de";
  v.segment = std::string(1, static_cast<char>('a' + (h >> 44) % 3));
  v.notes = kNotes[(h >> 48) % std::size(kNotes)];
  return v;
}

namespace fields {
constexpr uint16_t kName = 1, kTerritory = 2, kAddress = 3, kCity = 4, kPhone = 5, kEmail = 6, kSegment = 7,
                   kNotes = 9, kCreatedBy = 10;
}

// The changes creating account `i` (versions left to the writer: SyncClient fills them on a device).
std::vector<Change> account_changes(const RecordId& id, uint64_t i, const std::string& territory,
                                    const std::string& user) {
  AccountValues v = account_values(i);
  std::vector<Change> out;
  out.reserve(10);
  Change create;
  create.op = ChangeOp::kCreate;
  create.entity = EntityId::kAccount;
  create.record = id;
  out.push_back(create);
  auto add = [&](ChangeOp op, uint16_t field, std::string value) {
    Change c;
    c.op = op;
    c.entity = EntityId::kAccount;
    c.record = id;
    c.field = field;
    c.value = Value::text(std::move(value));
    out.push_back(std::move(c));
  };
  add(ChangeOp::kSet, fields::kName, std::move(v.name));
  add(ChangeOp::kSet, fields::kTerritory, territory);
  add(ChangeOp::kSet, fields::kAddress, std::move(v.address));
  add(ChangeOp::kSet, fields::kCity, std::move(v.city));
  add(ChangeOp::kSet, fields::kPhone, std::move(v.phone));
  add(ChangeOp::kSet, fields::kEmail, std::move(v.email));
  add(ChangeOp::kSet, fields::kSegment, std::move(v.segment));
  add(ChangeOp::kSet, fields::kCreatedBy, user);
  add(ChangeOp::kAppend, fields::kNotes, std::move(v.notes));
  return out;
}

// Mean bytes of field values per account over the first `n` (name, territory, address, city, phone, email,
// segment, creator, notes), for the report.
[[maybe_unused]] double mean_value_bytes(const std::string& territory, const std::string& user, size_t n) {
  double sum = 0;
  n = std::max<size_t>(1, std::min<size_t>(n, 10'000));
  for (size_t i = 0; i < n; ++i)
    sum += static_cast<double>(account_values(i).bytes() + territory.size() + user.size());
  return sum / static_cast<double>(n);
}

std::string dev_token(const std::string& user, const std::string& territory) {
  return "dev:" + user + ":rep:" + territory;
}

// ---- The device side (child processes). [[maybe_unused]]: what only the bench side calls, unused in
// fieldsync-bench-device-client (FIELDSYNC_DEVICE_ONLY).

struct DeviceResult {
  bool done = false;
  double elapsed_s = 0;
  size_t pending_before = 0, pending_after = 0;
  uint64_t progress_done = 0, progress_total = 0;
  // The device process's own peak resident set (VmHWM, KiB; -1 if unknown). Not wait4()'s ru_maxrss: on this
  // kernel that also carries the spawning bench's high-water mark (after seeding a million records, ~48 MiB
  // whatever the device used; measured 2026-12-06: VmHWM 16.5 MiB where ru_maxrss said 47.8).
  long peak_rss_kib = -1;
  std::string error;
};

// This process's peak resident set from /proc/self/status (VmHWM, KiB), -1 where there is none.
[[maybe_unused]] long own_peak_rss_kib() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::strtol(line.c_str() + 6, nullptr, 10);
  }
  return -1;
}

void write_result(const std::string& path, const DeviceResult& r) {
  boost::json::object j;
  j["done"] = r.done;
  j["elapsed_s"] = r.elapsed_s;
  j["pending_before"] = r.pending_before;
  j["pending_after"] = r.pending_after;
  j["progress_done"] = r.progress_done;
  j["progress_total"] = r.progress_total;
  j["peak_rss_kib"] = r.peak_rss_kib;
  j["error"] = r.error;
  std::ofstream(path) << boost::json::serialize(j) << "\n";
}

[[maybe_unused]] std::optional<DeviceResult> read_result(const std::string& path) {
  std::ifstream in(path);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  boost::system::error_code ec;
  boost::json::value v = boost::json::parse(text, ec);
  if (ec || !v.is_object()) return std::nullopt;
  const boost::json::object& j = v.as_object();
  DeviceResult r;
  r.done = j.at("done").as_bool();
  r.elapsed_s = j.at("elapsed_s").to_number<double>();
  r.pending_before = j.at("pending_before").to_number<size_t>();
  r.pending_after = j.at("pending_after").to_number<size_t>();
  r.progress_done = j.at("progress_done").to_number<uint64_t>();
  r.progress_total = j.at("progress_total").to_number<uint64_t>();
  // A device client built before the field existed leaves it out: wait4()'s figure is used then.
  if (const boost::json::value* rss = j.if_contains("peak_rss_kib")) r.peak_rss_kib = rss->to_number<long>();
  r.error = std::string(j.at("error").as_string());
  return r;
}

// Connects and waits until the engine is idle (outbox empty, caught up), at most `timeout_s`, and gives up
// after `stall_s` without progress (no transaction acknowledged, no bootstrap page applied); a progress line
// on stderr every 10 s.
DeviceResult run_session(client::FieldClient& c, const Options& o, double timeout_s, double stall_s) {
  DeviceResult r;
  std::atomic<uint64_t> done{0}, total{0};
  c.add_observer({.sync_progress = [&](uint64_t d, uint64_t t) {
    done = d;
    total = t;
  }});
  client::WsClientOptions w;
  w.url = o.url;
  w.ca_file = o.ca;
  w.after_frame = [&c] { c.dispatch_events(); };
  client::WsClient ws(c.engine(), w);
  auto hopeless = [&] {
    const client::WsError e = ws.last_error().code;
    return c.engine().stopped() || e == client::WsError::kCertificate || e == client::WsError::kPinMismatch;
  };
  const double t0 = mono_s();
  if (client::WsStatus s = ws.start(); !s.ok()) {
    r.error = s.to_string();
    return r;
  }
  size_t last_pending = SIZE_MAX;
  uint64_t last_done = 0;
  double last_progress = t0;
  bool stalled = false;
  while (mono_s() - t0 < timeout_s) {
    if (ws.wait_until([&] { return hopeless() || c.engine().idle(); }, std::chrono::seconds(10))) break;
    auto pending = c.pending_count();
    if ((pending && *pending != last_pending) || done != last_done) last_progress = mono_s();
    if (pending) last_pending = *pending;
    last_done = done;
    if (mono_s() - last_progress > stall_s) {
      stalled = true;
      break;
    }
    progress("  device " + o.device + ": " + fmt(mono_s() - t0, 0) + " s, pending " +
             (pending ? std::to_string(*pending) : "?") + ", bootstrap " + std::to_string(done.load()) + "/" +
             std::to_string(total.load()));
  }
  r.elapsed_s = mono_s() - t0;
  r.done = !hopeless() && c.engine().idle();
  if (!r.done) {
    r.error = c.engine().stopped()
                  ? c.engine().stop_reason().to_string()
                  : (hopeless() ? ws.last_error().to_string()
                                : (stalled ? "stalled: no progress for " + fmt(stall_s, 0) + " s"
                                           : "not idle within the timeout"));
  }
  ws.stop();
  c.dispatch_events();
  r.progress_done = done;
  r.progress_total = total;
  return r;
}

int run_device(const Options& o) {
  client::FieldClient::Options fo;
  fo.user = o.user;
  fo.token = dev_token(o.user, o.territory);
  fo.role = fieldsync::schema::Role::kRep;
  // Writing the backlog is not measured: the offline writes go in with synchronous=NORMAL to keep the run
  // short. Every measured phase opens the replica with synchronous=FULL, the device's default.
  fo.synchronous_full = o.device != "write";
  auto opened = client::FieldClient::open(o.db, fo);
  DeviceResult r;
  if (!opened) {
    r.error = opened.status().to_string();
    write_result(o.result, r);
    return 1;
  }
  client::FieldClient& c = *opened.value();
  if (auto p = c.pending_count()) r.pending_before = *p;
  if (o.device == "write") {
    // A device that synced its (empty) territory once, then went offline and wrote the backlog.
    r = run_session(c, o, 120, 120);
    if (r.done) {
      fieldsync::RecordIdGenerator ids(c.node());
      for (size_t i = 0; i < o.device_records; ++i) {
        const int64_t now = wall_ms();
        auto written = c.engine().write(account_changes(ids.next(now), i, o.territory, o.user), now);
        if (!written) {
          r.done = false;
          r.error = "write " + std::to_string(i) + ": " + written.status().to_string();
          break;
        }
      }
    }
  } else {
    r = run_session(c, o, o.phase_timeout_s, o.stall_s);
  }
  if (auto p = c.pending_count()) r.pending_after = *p;
  r.peak_rss_kib = own_peak_rss_kib();
  write_result(o.result, r);
  return r.done ? 0 : 1;
}

#ifndef FIELDSYNC_DEVICE_ONLY
// ---- Child processes

struct Exit {
  int status = 0;
  long maxrss_kib = -1;
  double cpu_s = std::nan("");  // user + system
  bool clean() const { return WIFEXITED(status) && WEXITSTATUS(status) == 0; }
  std::string describe() const {
    if (WIFEXITED(status)) return "exit " + std::to_string(WEXITSTATUS(status));
    if (WIFSIGNALED(status)) return "killed by signal " + std::to_string(WTERMSIG(status));
    return "status " + std::to_string(status);
  }
};

pid_t spawn(const std::vector<std::string>& argv, const std::string& out, const std::string& log) {
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  if (!out.empty()) posix_spawn_file_actions_addopen(&fa, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (!log.empty()) posix_spawn_file_actions_addopen(&fa, 2, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = -1;
  int rc = posix_spawn(&pid, argv[0].c_str(), &fa, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) {
    progress("cannot start " + argv[0] + ": " + std::strerror(rc));
    return -1;
  }
  return pid;
}

// Waits for a child; its peak RSS from the kernel's accounting (ru_maxrss, KiB on Linux).
Exit wait_child(pid_t pid) {
  Exit e;
  rusage ru{};
  if (wait4(pid, &e.status, 0, &ru) == pid) {
    e.maxrss_kib = ru.ru_maxrss;
    e.cpu_s = static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
              static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
  }
  return e;
}

class Server {
 public:
  ~Server() { stop(); }
  bool start(const Options& o, const std::string& dir) {
    data_dir_ = dir + "/data";
    log_ = dir + "/server.log";
    const std::string out = dir + "/server.out";
    std::filesystem::create_directories(data_dir_);
    pid_ = spawn({o.server_bin, "--dev", "--dev-tokens", "--data-dir", data_dir_, "--listen", "127.0.0.1:0",
                  "--threads", "2"},
                 out, log_);
    if (pid_ <= 0) return false;
    const double deadline = mono_s() + 120;  // opening a seeded store of millions of rows takes a moment
    while (mono_s() < deadline) {
      std::ifstream in(out);
      std::string line;
      while (std::getline(in, line)) {
        const size_t at = line.find("listening on wss://");
        const size_t sync = line.find("/sync", at == std::string::npos ? 0 : at);
        if (at == std::string::npos || sync == std::string::npos) continue;
        port_ = static_cast<uint16_t>(std::strtoul(line.c_str() + line.rfind(':', sync) + 1, nullptr, 10));
        return true;
      }
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        progress("fieldsync-server exited before listening; " + log_);
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    progress("fieldsync-server did not listen within 120 s");
    return false;
  }
  // SIGTERM (the server drains), then SIGKILL after 60 s.
  std::string stop() {
    if (pid_ <= 0) return "not running";
    kill(pid_, SIGTERM);
    const double deadline = mono_s() + 60;
    int status = 0;
    while (mono_s() < deadline) {
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return Exit{status}.describe();
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    kill(pid_, SIGKILL);
    waitpid(pid_, &status, 0);
    pid_ = -1;
    return "killed after 60 s";
  }
  uint16_t port() const { return port_; }
  // CPU seconds (user + system) the server process has used so far, from /proc/<pid>/stat: what a phase
  // cost the server, comparable when the machine is shared and wall times are not.
  double cpu_s() const {
    std::ifstream in("/proc/" + std::to_string(pid_) + "/stat");
    std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const size_t close = stat.rfind(')');
    if (close == std::string::npos) return std::nan("");
    std::istringstream fields(stat.substr(close + 2));
    std::string f;
    double ticks = 0;
    for (int i = 3; i <= 15 && fields >> f; ++i)  // utime and stime are fields 14 and 15
      if (i >= 14) ticks += std::strtod(f.c_str(), nullptr);
    return ticks / static_cast<double>(sysconf(_SC_CLK_TCK));
  }
  const std::string& data_dir() const { return data_dir_; }
  std::string ca() const { return data_dir_ + "/dev-cert.pem"; }

 private:
  pid_t pid_ = -1;
  uint16_t port_ = 0;
  std::string data_dir_, log_;
};

double delta(const std::map<std::string, double>& a, const std::map<std::string, double>& b,
             const std::string& k) {
  auto get = [&](const std::map<std::string, double>& m) {
    auto it = m.find(k);
    return it == m.end() ? 0.0 : it->second;
  };
  if (a.empty() || b.empty()) return std::nan("");
  return get(b) - get(a);
}

// Live accounts of `territory` in a SQLite file (the server's store or a device's replica); -1 on error.
long long count_accounts(const std::string& path, const std::string& territory) {
  sqlite3* db = nullptr;
  long long n = -1;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db, "SELECT count(*) FROM account WHERE _deleted = 0 AND territory_id = ?", -1,
                           &st, nullptr) == SQLITE_OK) {
      sqlite3_bind_text(st, 1, territory.c_str(), -1, SQLITE_TRANSIENT);
      if (sqlite3_step(st) == SQLITE_ROW) n = sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
  }
  sqlite3_close(db);
  return n;
}

// ---- The proxy: counts the bytes each way, optionally shapes the link

class Proxy {
 public:
  Proxy(uint16_t target_port, double rtt_ms, double mbit)
      : target_port_(target_port),
        one_way_(std::chrono::microseconds(static_cast<int64_t>(rtt_ms * 500))),
        bits_per_s_(mbit * 1e6),
        acceptor_(ioc_, tcp::endpoint(net::ip::make_address("127.0.0.1"), 0)) {
    net::co_spawn(ioc_, accept_loop(), net::detached);
    thread_ = std::thread([this] { ioc_.run(); });
  }
  ~Proxy() {
    ioc_.stop();
    thread_.join();
  }
  uint16_t port() const { return acceptor_.local_endpoint().port(); }
  uint64_t up() const { return up_; }      // device -> server
  uint64_t down() const { return down_; }  // server -> device

 private:
  struct Chunk {
    Clock::time_point deliver_at;
    std::vector<uint8_t> bytes;
  };
  // One direction of one connection: a reader stamps each chunk with the time its last byte reaches the far
  // end (serialised after the chunks before it at the link's rate, then the one-way delay), a writer
  // releases it then. The queue is bounded (a phone link's buffers are), so a fast sender is held back.
  struct Direction {
    explicit Direction(net::io_context& ioc) : wake(ioc) {}
    std::deque<Chunk> queue;
    size_t queued = 0;
    bool eof = false;
    Clock::time_point link_free{};
    net::steady_timer wake;
  };

  net::awaitable<void> accept_loop() {
    for (;;) {
      auto [ec, device] = co_await acceptor_.async_accept(kAwait);
      if (ec) co_return;
      auto server = std::make_shared<tcp::socket>(ioc_);
      auto [cec] = co_await server->async_connect(
          tcp::endpoint(net::ip::make_address("127.0.0.1"), target_port_), kAwait);
      if (cec) continue;
      auto dev = std::make_shared<tcp::socket>(std::move(device));
      dev->set_option(tcp::no_delay(true));
      server->set_option(tcp::no_delay(true));
      auto d1 = std::make_shared<Direction>(ioc_);
      auto d2 = std::make_shared<Direction>(ioc_);
      net::co_spawn(ioc_, reader(dev, d1, up_), net::detached);
      net::co_spawn(ioc_, writer(server, d1), net::detached);
      net::co_spawn(ioc_, reader(server, d2, down_), net::detached);
      net::co_spawn(ioc_, writer(dev, d2), net::detached);
    }
  }

  size_t queue_cap() const {
    // Twice the bandwidth-delay product, at least 64 KiB; unshaped: 1 MiB.
    if (bits_per_s_ <= 0) return 1 << 20;
    const double bdp = bits_per_s_ / 8 * std::max(0.05, 2 * std::chrono::duration<double>(one_way_).count());
    return std::max<size_t>(64 << 10, static_cast<size_t>(2 * bdp));
  }

  net::awaitable<void> reader(std::shared_ptr<tcp::socket> from, std::shared_ptr<Direction> d,
                              std::atomic<uint64_t>& counter) {
    std::vector<uint8_t> buf(16 << 10);
    net::steady_timer pause(ioc_);
    for (;;) {
      while (d->queued >= queue_cap()) {
        pause.expires_after(std::chrono::milliseconds(1));
        co_await pause.async_wait(kAwait);
      }
      auto [ec, n] = co_await from->async_read_some(net::buffer(buf), kAwait);
      if (ec) break;
      counter += n;
      const Clock::time_point now = Clock::now();
      Clock::time_point deliver = now;
      if (bits_per_s_ > 0) {
        const Clock::time_point start = std::max(now, d->link_free);
        d->link_free = start + std::chrono::nanoseconds(
                                   static_cast<int64_t>(static_cast<double>(n) * 8e9 / bits_per_s_));
        deliver = d->link_free;
      }
      deliver += one_way_;
      d->queue.push_back(
          Chunk{deliver, std::vector<uint8_t>(buf.begin(), buf.begin() + static_cast<ptrdiff_t>(n))});
      d->queued += n;
      d->wake.cancel();
    }
    d->eof = true;
    d->wake.cancel();
  }

  net::awaitable<void> writer(std::shared_ptr<tcp::socket> to, std::shared_ptr<Direction> d) {
    for (;;) {
      if (d->queue.empty()) {
        if (d->eof) break;
        d->wake.expires_at(Clock::time_point::max());
        co_await d->wake.async_wait(kAwait);
        continue;
      }
      if (Clock::now() < d->queue.front().deliver_at) {
        net::steady_timer t(ioc_);
        t.expires_at(d->queue.front().deliver_at);
        co_await t.async_wait(kAwait);
      }
      Chunk chunk = std::move(d->queue.front());
      d->queue.pop_front();
      d->queued -= chunk.bytes.size();
      auto [ec, n] = co_await net::async_write(*to, net::buffer(chunk.bytes), kAwait);
      if (ec) break;
    }
    boost::system::error_code ignored;
    to->shutdown(tcp::socket::shutdown_send, ignored);
  }

  const uint16_t target_port_;
  const Clock::duration one_way_;
  const double bits_per_s_;
  net::io_context ioc_;
  tcp::acceptor acceptor_;
  std::thread thread_;
  std::atomic<uint64_t> up_{0}, down_{0};
};

// ---- Seeding a store through the server library (before its server starts)

class NoAuth final : public fieldsync::Authenticator {
 public:
  fieldsync::Result<fieldsync::Principal> authenticate(const fieldsync::protocol::Hello&, int64_t) override {
    return fieldsync::Status(fieldsync::ErrorCode::kAuthFailed, "no sessions while seeding");
  }
};

// `plan`: (territory, accounts) pairs. Each territory's accounts are written by a rep of its own, 100
// accounts a transaction, as SyncServer::apply_local does for a push (rules, merge, log, scope index).
bool seed_store(const std::string& data_dir, const std::vector<std::pair<std::string, size_t>>& plan) {
  std::filesystem::create_directories(data_dir);
  fieldsync::server::SqliteCentralStore::Options so;
  so.group_commit = true;
  auto opened = fieldsync::server::SqliteCentralStore::open(data_dir + "/central.db", so);
  if (!opened) {
    progress("seed: " + opened.status().to_string());
    return false;
  }
  auto& store = *opened.value();
  NoAuth auth;
  fieldsync::SyncServer server(store, auth, fieldsync::ServerConfig{});
  fieldsync::Hlc hlc = 0;
  uint64_t txns = 0;
  for (size_t t = 0; t < plan.size(); ++t) {
    const auto& [territory, count] = plan[t];
    const std::string user = "seed-" + territory;
    const fieldsync::Principal who{user, fieldsync::schema::Role::kRep, {territory}, {}};
    const NodeId node = mix(t + 1000);
    fieldsync::RecordIdGenerator ids(node);
    uint64_t node_seq = 0;
    for (size_t first = 0; first < count; first += 100) {
      const int64_t now = wall_ms();
      fieldsync::ClientTxn txn;
      txn.node = node;
      txn.node_seq = ++node_seq;
      txn.created_at_ms = now;
      for (size_t i = first; i < std::min(count, first + 100); ++i) {
        for (Change& c : account_changes(ids.next(now), i, territory, user)) {
          hlc = std::max(hlc + 1, fieldsync::make_hlc(now, 0));
          c.version = fieldsync::Version{hlc, node};
          txn.changes.push_back(std::move(c));
        }
      }
      auto applied = server.apply_local(txn, who, now);
      if (!applied || applied->outcome != fieldsync::protocol::TxnOutcome::kApplied) {
        progress("seed: " + (applied ? applied->message : applied.status().to_string()));
        return false;
      }
      if (++txns % 16 == 0 && !store.sync().is_ok()) return false;
    }
  }
  if (!store.sync().is_ok()) return false;
  // The seed wrote hundreds of MB (1.1 GB for among100 at 30k) that the kernel would otherwise write back
  // during the first device phase, where the device's WAL writes and fsyncs then wait behind it: a real
  // server's store was on disk long before a new phone bootstraps. Flushed here, outside every timing.
  ::sync();
  return true;
}

// ---- Baselines: the benchmark binaries as children, their JSON read back

// items_per_second of each benchmark whose name matches `filter`, by name; empty on failure.
std::map<std::string, double> run_google_benchmark(const std::string& bin, const std::string& filter,
                                                   const std::string& tmp) {
  std::map<std::string, double> out;
  const std::string json = tmp + "/baseline.json";
  pid_t pid =
      spawn({bin, "--benchmark_filter=" + filter, "--benchmark_out=" + json, "--benchmark_out_format=json"},
            tmp + "/baseline.out", tmp + "/baseline.log");
  if (pid <= 0 || !wait_child(pid).clean()) {
    progress("baseline " + bin + " failed; see " + tmp + "/baseline.log");
    return out;
  }
  std::ifstream in(json);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  boost::system::error_code ec;
  boost::json::value v = boost::json::parse(text, ec);
  if (ec || !v.is_object()) return out;
  for (const boost::json::value& b : v.as_object().at("benchmarks").as_array()) {
    const boost::json::object& o = b.as_object();
    if (o.contains("items_per_second"))
      out[std::string(o.at("name").as_string())] = o.at("items_per_second").to_number<double>();
  }
  return out;
}

// ---- The run

struct Row {
  std::string phase, layout;
  size_t n = 0;
  bool run = false;
  std::string note;
  DeviceResult r;
  double up_bytes = 0, down_bytes = 0;
  long rss_kib = -1;
  double device_cpu_s = std::nan(""), server_cpu_s = std::nan("");
  double frames_in = std::nan(""), frames_out = std::nan(""), dup_txns = std::nan(""),
         sessions = std::nan("");
  double msg_bytes_in = std::nan(""), msg_bytes_out = std::nan("");
  long long server_count = -1, device_count = -1;
  bool converged = false;
  double rate() const {
    return run && r.done && r.elapsed_s > 0 ? static_cast<double>(n) / r.elapsed_s : std::nan("");
  }
};

struct Env {
  Options o;
  std::string tmp, self;
  std::vector<Row> rows;
  double central_8 = std::nan(""), central_96 = std::nan(""), replica_full = std::nan("");
  double replica_accounts = std::nan("");  // BM_ReplicaBootstrapApplyAccounts: this bench's own accounts
  bool failed = false;
};

// One row of the main table.
std::string row_line(const Row& r) {
  char buf[1024];
  if (!r.run) {
    std::snprintf(buf, sizeof buf, "| %s | %s | %s | not run | | | | | | | | | %s |", r.phase.c_str(),
                  r.layout.c_str(), grouped(static_cast<double>(r.n)).c_str(), r.note.c_str());
    return buf;
  }
  const double n = static_cast<double>(r.n);
  std::string conv = r.converged ? "yes" : "NO";
  if (r.phase == "push")
    conv +=
        " (server " + std::to_string(r.server_count) + ", pending " + std::to_string(r.r.pending_after) + ")";
  else
    conv += " (server " + std::to_string(r.server_count) + ", device " + std::to_string(r.device_count) + ")";
  if (!r.r.done) conv += "; " + r.r.error;
  if (!r.note.empty()) conv += "; " + r.note;
  std::snprintf(buf, sizeof buf, "| %s | %s | %s | %s | %s | %s | %s | %s | %s/%s | %s/%s | %s | %s | %s |",
                r.phase.c_str(), r.layout.c_str(), grouped(n).c_str(),
                fmt(r.r.elapsed_s, r.r.elapsed_s < 10 ? 2 : 1).c_str(), grouped(r.rate()).c_str(),
                fmt(r.up_bytes / n, 0).c_str(), fmt(r.down_bytes / n, 0).c_str(),
                fmt(static_cast<double>(r.rss_kib) / 1024, 1).c_str(), fmt(r.msg_bytes_in / n, 0).c_str(),
                fmt(r.msg_bytes_out / n, 0).c_str(), grouped(r.frames_in).c_str(),
                grouped(r.frames_out).c_str(), fmt(r.dup_txns, 0).c_str(), fmt(r.sessions, 0).c_str(),
                conv.c_str());
  return buf;
}

// Keeps a finished row and shows it at once on stderr (a run stopped half-way still leaves its figures).
void add_row(Env& env, Row row) {
  progress("row: " + row_line(row));
  env.rows.push_back(std::move(row));
}

// One device phase in a child process through a fresh proxy to `server`.
Row device_phase(Env& env, Server& server, const std::string& mode, const std::string& layout, size_t n,
                 const std::string& db, const std::string& territory, const std::string& user,
                 bool through_proxy) {
  Row row;
  row.phase = mode;
  row.layout = layout;
  row.n = n;
  row.run = true;
  std::optional<Proxy> proxy;
  if (through_proxy) proxy.emplace(server.port(), env.o.rtt_ms, env.o.mbit);
  const uint16_t port = proxy ? proxy->port() : server.port();
  const std::string result = db + "." + mode + ".json";
  const auto m0 = scrape_metrics(server.port());
  std::vector<std::string> argv = split(env.o.device_runner, ' ');
  if (argv.empty()) argv.push_back(env.self);
  for (const std::string& a : {std::string("--device"),
                               mode,
                               std::string("--db"),
                               db,
                               std::string("--url"),
                               "wss://127.0.0.1:" + std::to_string(port) + "/sync",
                               std::string("--ca"),
                               server.ca(),
                               std::string("--user"),
                               user,
                               std::string("--territory"),
                               territory,
                               std::string("--device-records"),
                               std::to_string(n),
                               std::string("--phase-timeout-s"),
                               fmt(env.o.phase_timeout_s, 0),
                               std::string("--stall-s"),
                               fmt(env.o.stall_s, 0),
                               std::string("--result"),
                               result})
    argv.push_back(a);
  const double server_cpu0 = server.cpu_s();
  pid_t pid = spawn(argv, "", "");
  const Exit e = pid > 0 ? wait_child(pid) : Exit{1 << 8};
  row.server_cpu_s = server.cpu_s() - server_cpu0;
  const auto m1 = scrape_metrics(server.port());
  row.rss_kib = e.maxrss_kib;
  row.device_cpu_s = e.cpu_s;
  if (proxy) {
    row.up_bytes = static_cast<double>(proxy->up());
    row.down_bytes = static_cast<double>(proxy->down());
  }
  row.frames_in = delta(m0, m1, "fieldsync_frames_received_total");
  row.frames_out = delta(m0, m1, "fieldsync_frames_sent_total");
  row.msg_bytes_in = delta(m0, m1, "fieldsync_bytes_received_total");
  row.msg_bytes_out = delta(m0, m1, "fieldsync_bytes_sent_total");
  row.dup_txns = delta(m0, m1, "fieldsync_txns_total{outcome=\"duplicate\"}");
  row.sessions = delta(m0, m1, "fieldsync_sessions_opened_total");
  if (auto r = read_result(result)) {
    row.r = *r;
    if (r->peak_rss_kib > 0) row.rss_kib = r->peak_rss_kib;
  } else {
    row.r.error = "the device process left no result (" + e.describe() + ")";
  }
  if (!row.r.done) progress(mode + " " + std::to_string(n) + ": " + row.r.error);
  return row;
}

std::string new_dir(const std::string& parent, const std::string& name) {
  const std::string d = parent + "/" + name;
  std::filesystem::create_directories(d);
  return d;
}

// `--bootstrap-repeat` fresh devices bootstrap one after another from `server`, which is then stopped; a row
// each. The replicas of repeats after the first are deleted once counted (a 100k replica is ~100 MB).
std::vector<Row> bootstraps(Env& env, Server& server, const std::string& layout, size_t n,
                            const std::string& dir, const std::string& territory, const std::string& user,
                            const std::string& note) {
  std::vector<Row> rows;
  const int repeat = env.o.bootstrap_repeat;
  for (int k = 1; k <= repeat; ++k) {
    progress("bootstrap " + grouped(static_cast<double>(n)) + " (" + layout + "): a fresh device" +
             (repeat > 1 ? ", run " + std::to_string(k) + "/" + std::to_string(repeat) : ""));
    const std::string db = dir + (k == 1 ? "/fresh.db" : "/fresh-" + std::to_string(k) + ".db");
    Row b = device_phase(env, server, "bootstrap", layout, n, db, territory, user, true);
    b.device_count = count_accounts(db, territory);
    b.note = note;
    if (repeat > 1)
      b.note +=
          (note.empty() ? "" : "; ") + std::string("run ") + std::to_string(k) + "/" + std::to_string(repeat);
    if (k > 1 && !env.o.keep_tmp)
      for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(db + suffix);
    rows.push_back(std::move(b));
  }
  progress("server: " + server.stop());
  const long long on_server = count_accounts(server.data_dir() + "/central.db", territory);
  for (Row& b : rows) {
    b.server_count = on_server;
    b.converged = b.r.done && on_server == static_cast<long long>(n) && b.device_count == on_server;
  }
  return rows;
}

// push(N) on a fresh, empty server; then, if asked, bootstrap(N, one) from what it pushed.
void run_one(Env& env, size_t n, bool push, bool bootstrap) {
  const std::string dir = new_dir(env.tmp, "one-" + std::to_string(n));
  const std::string territory = "t000", user = "rep000";
  Server server;
  if (push) {
    if (!server.start(env.o, dir)) {
      env.failed = true;
      return;
    }
    progress("push " + grouped(static_cast<double>(n)) + ": writing the backlog offline");
    Row w = device_phase(env, server, "write", "one", n, dir + "/pusher.db", territory, user, false);
    if (!w.r.done || w.r.pending_after != n) {
      progress("push: the offline writes failed: " + w.r.error);
      env.failed = true;
      return;
    }
    progress("push " + grouped(static_cast<double>(n)) + ": device connects and pushes");
    Row p = device_phase(env, server, "push", "one", n, dir + "/pusher.db", territory, user, true);
    p.device_count = static_cast<long long>(p.r.pending_after);  // what is left unacknowledged
    if (bootstrap) {
      std::vector<Row> rows = bootstraps(env, server, "one", n, dir, territory, user, "");
      p.server_count = rows.front().server_count;
      p.converged = p.r.done && p.r.pending_after == 0 && p.server_count == static_cast<long long>(n);
      add_row(env, p);
      for (Row& b : rows) add_row(env, std::move(b));
    } else {
      progress("server: " + server.stop());
      p.server_count = count_accounts(server.data_dir() + "/central.db", territory);
      p.converged = p.r.done && p.r.pending_after == 0 && p.server_count == static_cast<long long>(n);
      add_row(env, p);
    }
    return;
  }
  if (!bootstrap) return;
  // No push of this N: the territory is seeded straight into the store.
  progress("bootstrap " + grouped(static_cast<double>(n)) + " (one territory): seeding the store");
  if (!seed_store(dir + "/data", {{territory, n}}) || !server.start(env.o, dir)) {
    env.failed = true;
    return;
  }
  for (Row& b : bootstraps(env, server, "one", n, dir, territory, user, "")) add_row(env, std::move(b));
}

void run_among100(Env& env, size_t n) {
  const std::string dir = new_dir(env.tmp, "among100-" + std::to_string(n));
  const size_t others = static_cast<size_t>(std::llround(env.o.others_fraction * static_cast<double>(n)));
  std::vector<std::pair<std::string, size_t>> plan;
  char name[16];
  for (int t = 0; t < 100; ++t) {
    std::snprintf(name, sizeof name, "t%03d", t);
    plan.emplace_back(name, t == 42 ? n : others);
  }
  const std::string territory = "t042", user = "rep042";
  progress("bootstrap " + grouped(static_cast<double>(n)) + " (among 100): seeding " +
           grouped(static_cast<double>(n + 99 * others)) + " accounts into the store");
  const double t0 = mono_s();
  Server server;
  if (!seed_store(dir + "/data", plan) || !server.start(env.o, dir)) {
    env.failed = true;
    return;
  }
  progress("  seeded in " + fmt(mono_s() - t0) + " s; fresh devices of t042 bootstrap");
  for (Row& b : bootstraps(env, server, "among100", n, dir, territory, user,
                           "99 others x " + grouped(static_cast<double>(others))))
    add_row(env, std::move(b));
}

void run_baselines(Env& env) {
  const std::string dir = new_dir(env.tmp, "baselines");
  progress("baseline: BM_CentralApply (fieldsync-bench-server)");
  auto central = run_google_benchmark(env.o.bench_dir + "/fieldsync-bench-server",
                                      "BM_CentralApply/changes:(8|96)/writers:1/", dir);
  for (const auto& [name, v] : central) {
    if (name.find("changes:8/") != std::string::npos) env.central_8 = v / 8;  // accounts of 8 changes
    if (name.find("changes:96/") != std::string::npos) env.central_96 = v / 8;
  }
  progress("baseline: BM_ReplicaBootstrapApply(Accounts)/sync_full:1 (fieldsync-bench-client)");
  auto replica = run_google_benchmark(env.o.bench_dir + "/fieldsync-bench-client",
                                      "BM_ReplicaBootstrapApply(Accounts)?/sync_full:1/", dir);
  for (const auto& [name, v] : replica) {
    if (name.rfind("BM_ReplicaBootstrapApplyAccounts/", 0) == 0) {
      env.replica_accounts = v;
    } else {
      env.replica_full = v;
    }
  }
  if (!std::isfinite(env.central_8) || !std::isfinite(env.replica_full)) env.failed = true;
}

void print_report(const Env& env, double run_s) {
  const Options& o = env.o;
  std::string link = "loopback, unshaped";
  if (o.rtt_ms > 0 || o.mbit > 0)
    link = "shaped: " + fmt(o.rtt_ms, 0) + " ms round trip, " +
           (o.mbit > 0 ? fmt(o.mbit, 2) + " Mbit/s each way" : "unlimited rate");
  std::printf("\n### fieldsync-bench-device (%s)\n\n", link.c_str());
  std::printf(
      "Device: FieldClient + WsClient over TLS, replica synchronous=FULL; server: fieldsync-server "
      "--dev --dev-tokens --threads 2, group commit on. %s bytes of field values per account (mean). "
      "B/record: TLS bytes at the proxy (records, WebSocket framing, handshake); payload: the sync messages' "
      "bytes as the server counts them. Whole run: %s s.\n\n",
      fmt(mean_value_bytes("t000", "rep000", 10'000), 0).c_str(), fmt(run_s, 0).c_str());
  std::printf(
      "| phase | layout | N | seconds | records/s | B/record up | B/record down | device peak RSS MiB | "
      "payload B/record up/down | msgs up/down | dup txns | sessions | converged |\n");
  std::printf("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n");
  for (const Row& r : env.rows) std::printf("%s\n", row_line(r).c_str());
  if (o.bootstrap_repeat > 1) {
    std::printf(
        "\nRepeated bootstraps: each run a fresh device; sessions beyond one a run are reconnects, "
        "messages beyond a run's minimum are re-sent requests.\n\n");
    std::printf(
        "| layout | N | runs | converged | records/s min / median / max | sessions | msgs up min / max | "
        "stalled or failed |\n|---|---:|---:|---:|---:|---:|---:|---:|\n");
    std::map<std::pair<std::string, size_t>, std::vector<const Row*>> groups;
    for (const Row& r : env.rows)
      if (r.run && r.phase == "bootstrap") groups[{r.layout, r.n}].push_back(&r);
    for (const auto& [key, rows] : groups) {
      std::vector<double> rates;
      double sessions = 0, up_min = INFINITY, up_max = 0;
      int converged = 0, failed = 0;
      for (const Row* r : rows) {
        if (std::isfinite(r->rate())) rates.push_back(r->rate());
        if (std::isfinite(r->sessions)) sessions += r->sessions;
        if (std::isfinite(r->frames_in)) {
          up_min = std::min(up_min, r->frames_in);
          up_max = std::max(up_max, r->frames_in);
        }
        converged += r->converged ? 1 : 0;
        failed += r->r.done ? 0 : 1;
      }
      std::sort(rates.begin(), rates.end());
      const auto at = [&](size_t i) { return rates.empty() ? std::nan("") : rates[i]; };
      std::printf("| %s | %s | %zu | %d | %s / %s / %s | %s | %s / %s | %d |\n", key.first.c_str(),
                  grouped(static_cast<double>(key.second)).c_str(), rows.size(), converged,
                  grouped(at(0)).c_str(), grouped(at(rates.size() / 2)).c_str(),
                  grouped(at(rates.size() - 1)).c_str(), fmt(sessions, 0).c_str(), grouped(up_min).c_str(),
                  grouped(up_max).c_str(), failed);
    }
  }
  if (o.mbit > 0) {
    std::printf(
        "\nAgainst the link's rate: the time the phase's bytes need at %s Mbit/s (the busier direction).\n\n",
        fmt(o.mbit, 2).c_str());
    std::printf(
        "| phase | layout | N | seconds | bytes up | bytes down | seconds at link rate | ratio (target <= "
        "1.3) |\n");
    std::printf("|---|---|---:|---:|---:|---:|---:|---:|\n");
    for (const Row& r : env.rows) {
      if (!r.run) continue;
      const double need = std::max(r.up_bytes, r.down_bytes) * 8 / (o.mbit * 1e6);
      std::printf("| %s | %s | %s | %s | %s | %s | %s | %s |\n", r.phase.c_str(), r.layout.c_str(),
                  grouped(static_cast<double>(r.n)).c_str(), fmt(r.r.elapsed_s, 1).c_str(),
                  grouped(r.up_bytes).c_str(), grouped(r.down_bytes).c_str(), fmt(need, 1).c_str(),
                  fmt(r.r.elapsed_s / need, 2).c_str());
    }
  }
  std::printf(
      "\nCPU seconds of the phase (user + system): the device's process (wait4) and the server's (/proc, "
      "before and after); on a shared machine these compare where wall times do not.\n\n");
  std::printf(
      "| phase | layout | N | seconds | device CPU s | server CPU s | records per CPU second (both) |\n");
  std::printf("|---|---|---:|---:|---:|---:|---:|\n");
  for (const Row& r : env.rows) {
    if (!r.run || r.phase == "write") continue;
    std::printf("| %s | %s | %s | %s | %s | %s | %s |\n", r.phase.c_str(), r.layout.c_str(),
                grouped(static_cast<double>(r.n)).c_str(), fmt(r.r.elapsed_s, 2).c_str(),
                fmt(r.device_cpu_s, 2).c_str(), fmt(r.server_cpu_s, 2).c_str(),
                grouped(static_cast<double>(r.n) / (r.device_cpu_s + r.server_cpu_s)).c_str());
  }
  if (o.baselines) {
    std::printf(
        "\nSame-run baselines: BM_CentralApply/changes:C/writers:1 (the server's batched apply path, "
        "accounts of 8 changes, as accounts/s), BM_ReplicaBootstrapApply/sync_full:1 (the replica's "
        "local bootstrap apply, records/s: five fields, ~50 bytes of values) and "
        "BM_ReplicaBootstrapApplyAccounts/sync_full:1 (the same with this bench's accounts, like for "
        "like).\n\n");
    std::printf("| baseline | records/s |\n|---|---:|\n");
    std::printf("| BM_CentralApply/changes:8 (1 account a txn) | %s |\n", grouped(env.central_8).c_str());
    std::printf("| BM_CentralApply/changes:96 (12 accounts a txn) | %s |\n", grouped(env.central_96).c_str());
    std::printf("| BM_ReplicaBootstrapApply/sync_full:1 | %s |\n", grouped(env.replica_full).c_str());
    std::printf("| BM_ReplicaBootstrapApplyAccounts/sync_full:1 | %s |\n\n",
                grouped(env.replica_accounts).c_str());
    std::printf(
        "| phase | layout | N | records/s | x CentralApply/8 | x CentralApply/96 | x ReplicaBootstrapApply "
        "| x ReplicaBootstrapApplyAccounts |\n");
    std::printf("|---|---|---:|---:|---:|---:|---:|---:|\n");
    for (const Row& r : env.rows) {
      if (!r.run) continue;
      const bool push = r.phase == "push";
      std::printf("| %s | %s | %s | %s | %s | %s | %s | %s |\n", r.phase.c_str(), r.layout.c_str(),
                  grouped(static_cast<double>(r.n)).c_str(), grouped(r.rate()).c_str(),
                  push ? fmt(r.rate() / env.central_8, 3).c_str() : "",
                  push ? fmt(r.rate() / env.central_96, 3).c_str() : "",
                  push ? "" : fmt(r.rate() / env.replica_full, 3).c_str(),
                  push ? "" : fmt(r.rate() / env.replica_accounts, 3).c_str());
    }
  }
  std::printf("\n");
  std::fflush(stdout);
}

int run_bench(Env& env) {
  Options& o = env.o;
  env.self = std::filesystem::read_symlink("/proc/self/exe").string();
  const std::filesystem::path here = std::filesystem::path(env.self).parent_path();
  if (o.server_bin.empty()) o.server_bin = (here / "fieldsync-server").string();
  if (o.bench_dir.empty()) o.bench_dir = here.string();
  std::string tmpl = o.tmp_dir + "/fieldsync-device-XXXXXX";
  if (mkdtemp(tmpl.data()) == nullptr) {
    std::cerr << "fieldsync-bench-device: cannot create a directory under " << o.tmp_dir << "\n";
    return 2;
  }
  env.tmp = tmpl;
  const double t0 = mono_s();
  if (o.baselines) run_baselines(env);
  auto has = [](const std::vector<size_t>& v, size_t n) {
    return std::find(v.begin(), v.end(), n) != v.end();
  };
  std::vector<size_t> all = o.records;
  for (size_t n : o.push_records)
    if (!has(all, n)) all.push_back(n);
  for (size_t n : o.bootstrap_records)
    if (!has(all, n)) all.push_back(n);
  std::sort(all.begin(), all.end());
  for (size_t n : all) {
    const bool push = has(o.push_records, n);
    const bool boot_one = has(o.bootstrap_records, n) &&
                          std::find(o.layouts.begin(), o.layouts.end(), "one") != o.layouts.end();
    auto not_run = [&](const std::string& phase, const std::string& layout, const std::string& why) {
      Row r;
      r.phase = phase;
      r.layout = layout;
      r.n = n;
      r.note = "not run (" + why + ")";
      add_row(env, r);
    };
    if (!push && has(o.records, n)) not_run("push", "one", "--push-records");
    if (push || boot_one) run_one(env, n, push, boot_one);
    const bool among = std::find(o.layouts.begin(), o.layouts.end(), "among100") != o.layouts.end();
    if (has(o.bootstrap_records, n) && among) run_among100(env, n);
    if (!has(o.bootstrap_records, n) && has(o.records, n))
      for (const std::string& layout : o.layouts) not_run("bootstrap", layout, "--bootstrap-records");
  }
  for (const Row& r : env.rows) {
    if (r.run && !r.converged) env.failed = true;
    // This binary as the device always reports its own peak RSS (a runner's client may predate the field).
    if (r.run && o.device_runner.empty() && r.r.peak_rss_kib <= 0) {
      progress(r.phase + " " + r.layout + ": the device reported no peak RSS");
      env.failed = true;
    }
  }
  print_report(env, mono_s() - t0);
  if (o.keep_tmp || env.failed) {
    std::cerr << "fieldsync-bench-device: replicas, server data and logs kept in " << env.tmp << "\n";
  } else {
    std::error_code ec;
    std::filesystem::remove_all(env.tmp, ec);
  }
  if (env.failed) std::cerr << "fieldsync-bench-device: a phase failed or did not converge\n";
  return o.check && env.failed ? 1 : 0;
}

#endif  // FIELDSYNC_DEVICE_ONLY

}  // namespace

int main(int argc, char** argv) {
#ifdef FIELDSYNC_DEVICE_ONLY
  Options o;
  if (int rc = parse_options(argc, argv, o); rc != 0) return rc == 1 ? 0 : 2;
  signal(SIGPIPE, SIG_IGN);
  if (o.device.empty()) {
    std::cerr
        << "fieldsync-bench-device-client: the device side only: fieldsync-bench-device --device-runner "
           "starts it with --device\n";
    return 2;
  }
  return run_device(o);
#else
  Env env;
  if (int rc = parse_options(argc, argv, env.o); rc != 0) return rc == 1 ? 0 : 2;
  signal(SIGPIPE, SIG_IGN);
  if (!env.o.device.empty()) return run_device(env.o);
  return run_bench(env);
#endif
}
