// fieldsync-bench-load: the server under load, measured end to end (issue 4, docs/PERFORMANCE.md).
//
// One process drives every simulated rep on one io_context thread: asynchronous Beast TLS WebSocket streams,
// each carrying the real sans-IO SyncClient over a MemoryReplicaStore, so the load speaks the real protocol
// (Hello, bootstrap, live pulls, pushes with acks, live batches) through the real codec. The server is the
// real fieldsync-server binary in its own process (--dev --dev-tokens on a temporary data directory), so its
// memory can be read alone from /proc/PID/status.
//
// Phases (--only picks some); every server below is a fresh process:
//   baseline  the bare SQLite batched upsert (sqlite_baseline.h), the denominator of every ratio
//   ws        the bare transport: a minimal Beast TLS WebSocket ack server (this binary, --serve-ack, the
//             server's TLS and WebSocket settings) answering push-sized messages with ack-sized ones, closed
//             loop over as many connections as reps; then the same with the load's fan-out (ws.relay: each
//             message also relayed to the K-1 other connections of its territory); plus the memory of idle
//             bare sessions
//   load      N reps in territories of --territory-size (plus, with --team-size and --head-office, live
//             managers and head-office sessions that receive their scope's writes), twice: a saturating
//             closed loop (every ack answered with --txns-per-rep new transactions), then, on a fresh server,
//             paced writes at --paced-load of the saturated rate; push-to-ack and fan-out latencies;
//             convergence of every replica and of a head-office bootstrap with what was acknowledged
//   idle      --idle sessions that handshake, bootstrap, go live and stay idle: server memory per session
//   soak      (only when asked for, scripts/soak.py) the load's sessions against a server someone else
//             runs and restarts (--server-port, --ca): paced writes for --seconds, sessions that reconnect
//             whenever they are cut and a fraction that go offline at random (writing on meanwhile),
//             push-to-ack latency every --report-every seconds, then the convergence checks
//
// PostgreSQL mode (--postgres URL or --postgres-url-file FILE, issue 20): the baseline is the bare PostgreSQL
// batched upsert (bench/pg_baseline.h) on the same cluster, and the load phase runs once per --instances
// count (default 1,2): that many fieldsync-server processes with --store on a fresh database of that cluster,
// the sessions spread over them (a territory's reps on instance territory % N, a team's manager on team % N,
// so half of what a manager receives was committed on the other instance: the cross-instance fan-out,
// reported apart).
//
// Benchmarks measure; --check turns the run into a behaviour test (the smoke ctest): it fails when a push is
// not acknowledged, a replica does not converge, no live fan-out is seen, a session drops, or the server does
// not exit cleanly. Timings are never asserted.
#include <fcntl.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <boost/json.hpp>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <span>
#include <sstream>
#include <string>
#include <thread>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include "fieldsync/io/cli_options.h"
#include "fieldsync/io/tls_policy.h"
#include "fieldsync/io/tls_stream.h"
#include "fieldsync/server/tls.h"
#include "fieldsync/sync/client.h"
#include "fieldsync/sync/codec.h"
#include "fieldsync/sync/record_id.h"
#include "fieldsync/sync/tuning.h"
#include "pg_baseline.h"
#include "server_metrics.h"
#include "sqlite_baseline.h"
#include "support/memory_store.h"

extern char** environ;

namespace {

using fieldsync::bench::scrape_metrics;

namespace beast = boost::beast;
namespace websocket = beast::websocket;
namespace net = boost::asio;
namespace ssl = net::ssl;
using tcp = net::ip::tcp;
namespace http = beast::http;
using Ws = fieldsync::net::WebSocketStream;
using Bytes = std::shared_ptr<const std::vector<uint8_t>>;
using Clock = std::chrono::steady_clock;
constexpr auto kAwait = net::as_tuple(net::use_awaitable);

using fieldsync::Change;
using fieldsync::ChangeOp;
using fieldsync::ClientEvent;
using fieldsync::EntityId;
using fieldsync::NodeId;
using fieldsync::RecordId;
using fieldsync::Value;
namespace protocol = fieldsync::protocol;
namespace codec = fieldsync::codec;

double mono_s() {
  return std::chrono::duration<double>(Clock::now().time_since_epoch()).count();
}
int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// ---- Options

constexpr const char* kHelp =
    R"(fieldsync-bench-load: load generator for fieldsync-server (docs/PERFORMANCE.md)

usage: fieldsync-bench-load [options]

  --reps N              simulated reps for the load phase (default 1000)
  --shape NAME          a preset of --territory-size, --team-size and --txns-per-rep (explicit flags win):
                          org  (default) a field-sales company: each rep alone in its territory, a manager
                               per 10 territories watching them live and writing notes back, every push a
                               rep's backlog of 10 transactions
                               = --territory-size 1 --team-size 10 --txns-per-rep 10
                          team a stress shape: 10 reps share each territory, so every write fans out to 9
                               peers, every push a single transaction (the default before 2026-12-02)
                               = --territory-size 10 --team-size 0 --txns-per-rep 1
  --territory-size K    reps per territory; a write fans out to the K-1 others
  --team-size M         a manager per M territories (0: none), live, receiving every change of its team's
                        territories and writing --manager-notes
  --head-office N       live head-office sessions, each receiving every change (default 0)
  --bystanders N        live reps that write nothing, each alone in a territory nobody else writes to,
                        connected through the load phases (a company where most phones are online and
                        idle; what a session costs the fan-out when no commit concerns it) (default 0)
  --manager-notes R     during each measured window every manager appends R notes a second to accounts of
                        its team, which its reps receive (default 1)
  --idle N              idle sessions for the memory phases (default 10000)
  --seconds S           length of each measured phase (default 20)
  --txns-per-rep T      each time a rep's push is acknowledged (saturating phase) or its next write is due
                        (paced phase) it writes T new transactions, which travel together in its next push
  --changes-per-txn C   changes per transaction, >= 4: each transaction creates ceil(C/8) accounts with all
                        their fields (create, name, territory, creator, address, city, phone, email) (default 8)
  --paced-load F        paced phase: total write rate as a fraction of the saturated phase's accepted
                        transactions/s, each rep writing (pushes of --txns-per-rep) at random (Poisson)
                        times (default 0.5)
  --paced-rate R        the paced run alone, at R transactions a second (no saturated run before it)
  --idle-hold S         how long idle sessions are held before memory is read again (default 5, at most --seconds)
  --connect-concurrency N  TLS handshakes in flight at once (default 200)
  --server-bin PATH     fieldsync-server to run (default: next to this binary)
  --server-arg ARG      extra argument for fieldsync-server (repeatable), e.g. --server-arg=--group-commit=off
  --only LIST           comma-separated phases: baseline,ws,load,idle,soak (default: all but soak)
  --tmp-dir DIR         where the temporary data directories go; same file system as the baseline (default /tmp)
  --keep-tmp            keep the temporary directory (server data and logs) and print its path
  --postgres URL        PostgreSQL mode: the load runs against fieldsync-server --store on fresh databases of
                        this cluster (any database of it; scripts/pg-cluster.sh start DIR writes one to
                        DIR/url), with the bare PostgreSQL batched upsert as the baseline; default phases
                        baseline,load
  --postgres-url-file F the same, the URL read from file F (what the test command's cluster writes)
  --instances LIST      PostgreSQL mode: one load run per count, comma-separated (default 1,2), each that many
                        server instances on one database with the sessions spread over them
  --check               behaviour test: exit 1 unless every push was acknowledged, every replica converged,
                        live fan-out was seen, no session dropped and the servers exited cleanly
  --help                this text

The soak phase (--only soak; scripts/soak.py runs it), against a server it does not start:
  --server-port PORT    the fieldsync-server (--dev --dev-tokens) running on 127.0.0.1:PORT; it may be
                        restarted or killed at any time: every session reconnects until the end
  --ca FILE             the certificate to trust for it (its DIR/dev-cert.pem)
  --paced-rate R        total write rate, transactions a second (soak default 200: each rep pushes a backlog
                        of --txns-per-rep transactions every 50 s on average)
  --reconnect-fraction F  this fraction of the sessions are phones with poor signal: each goes offline at
                        random (every --reconnect-every seconds on average) for 1-10 s, writing on meanwhile
                        (default 0.1)
  --reconnect-every S   (default 60)
  --report-every S      one line of figures every S seconds: sessions open, pushes acknowledged, push-to-ack
                        p50/p99 of the acks received in the interval (default 10)

Output: progress on stderr; a table of figures and one JSON line per figure on stdout.
)";

struct Options {
  int reps = 1000;
  std::string shape = "org";
  int territory_size = 1;
  int team_size = 10;        // territories per manager; 0: no managers
  int head_office = 0;       // live head-office sessions
  int bystanders = 0;        // live reps of their own quiet territories, connected through the load phases
  double manager_notes = 1;  // notes per second per manager, in the measured windows
  int idle = 10000;
  double seconds = 20;
  int txns_per_rep = 10;
  int changes_per_txn = 8;
  double paced_load = 0.5;
  double paced_rate = 0;  // > 0: the paced run alone, at this many transactions a second
  double idle_hold_s = 5;
  int connect_concurrency = 200;
  std::string server_bin;
  std::vector<std::string> server_args;
  std::set<std::string> only;
  std::string tmp_dir = "/tmp";
  bool keep_tmp = false;
  bool check = false;
  // PostgreSQL mode: the cluster's URL, and the instance counts to run the load with
  std::string postgres;
  std::vector<int> instances{1, 2};
  // soak
  int server_port = 0;
  std::string ca_file;
  double reconnect_fraction = 0.1;
  double reconnect_every_s = 60;
  double report_every_s = 10;
  // --serve-ack (internal): this binary as the bare transport's ack server
  bool serve_ack = false;
  std::string cert_file, key_file;
  size_t ack_bytes = 64;

  bool run(const std::string& phase) const { return only.empty() ? phase != "soak" : only.count(phase) > 0; }
};

bool parse_number(const std::string& flag, const std::string& s, double lo, double hi, double& out,
                  std::string& err) {
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  if (end == s.c_str() || *end != '\0' || !(v >= lo && v <= hi)) {
    err = flag + ": expected a number in [" + std::to_string(lo) + ", " + std::to_string(hi) + "], got '" +
          s + "'";
    return false;
  }
  out = v;
  return true;
}

// --shape's presets; false if there is no such shape.
bool apply_shape(const std::string& name, Options& o) {
  if (name == "org") {
    o.territory_size = 1;
    o.team_size = 10;
    o.txns_per_rep = 10;
  } else if (name == "team") {
    o.territory_size = 10;
    o.team_size = 0;
    o.txns_per_rep = 1;
  } else {
    return false;
  }
  o.shape = name;
  return true;
}

// What the load phase ran, for the target lines.
std::string shape_description(const Options& o) {
  std::string d = "territories of " + std::to_string(o.territory_size) + " reps";
  if (o.team_size > 0) d += ", a manager per " + std::to_string(o.team_size);
  if (o.head_office > 0) d += ", " + std::to_string(o.head_office) + " live head office";
  if (o.bystanders > 0) d += ", " + std::to_string(o.bystanders) + " idle live reps";
  d += ", pushes of " + std::to_string(o.txns_per_rep) + " x " + std::to_string(o.changes_per_txn) +
       " changes";
  return d;
}

// Returns 0 to run, 1 after --help, 2 on a usage error.
int parse_options(int argc, char** argv, Options& o) {
  const std::vector<std::string> args(argv + 1, argv + argc);
  for (const std::string& a : args)
    if (a == "--help" || a == "-h") {
      std::cout << kHelp;
      return 1;
    }
  fieldsync::cli::Options cli({"reps",
                               "shape",
                               "territory-size",
                               "team-size",
                               "head-office",
                               "bystanders",
                               "manager-notes",
                               "idle",
                               "seconds",
                               "txns-per-rep",
                               "changes-per-txn",
                               "paced-load",
                               "paced-rate",
                               "idle-hold",
                               "connect-concurrency",
                               "server-bin",
                               "server-arg",
                               "tmp-dir",
                               "only",
                               "cert",
                               "key",
                               "ack-bytes",
                               "server-port",
                               "ca",
                               "reconnect-fraction",
                               "reconnect-every",
                               "report-every",
                               "postgres",
                               "postgres-url-file",
                               "instances"},
                              {"check", "keep-tmp", "serve-ack"}, fieldsync::cli::Options::Repeat::kLastWins);
  cli.allow_many("server-arg");
  if (std::string e = cli.parse(args); !e.empty()) {
    std::cerr << "fieldsync-bench-load: " << e << " (see --help)\n";
    return 2;
  }
  if (!cli.words().empty()) {
    std::cerr << "fieldsync-bench-load: unexpected argument '" << cli.words().front() << "' (see --help)\n";
    return 2;
  }
  // The preset first, so that explicit flags override it.
  if (cli.has("shape") && !apply_shape(cli.get("shape"), o)) {
    std::cerr << "fieldsync-bench-load: --shape: unknown shape '" << cli.get("shape") << "' (org, team)\n";
    return 2;
  }
  o.check = o.check || cli.on("check");
  o.keep_tmp = o.keep_tmp || cli.on("keep-tmp");
  o.serve_ack = o.serve_ack || cli.on("serve-ack");
  std::string err;
  const auto number = [&](const char* name, double lo, double hi, auto& out) {
    double v = 0;
    if (cli.has(name) && err.empty() && parse_number(std::string("--") + name, cli.get(name), lo, hi, v, err))
      out = static_cast<std::remove_reference_t<decltype(out)>>(v);
  };
  number("reps", 1, 100000, o.reps);
  number("territory-size", 1, 100000, o.territory_size);
  number("team-size", 0, 100000, o.team_size);
  number("head-office", 0, 1000, o.head_office);
  number("bystanders", 0, 100000, o.bystanders);
  number("manager-notes", 0, 1000, o.manager_notes);
  number("idle", 0, 1000000, o.idle);
  number("seconds", 0.5, 86400, o.seconds);
  number("txns-per-rep", 1, static_cast<double>(fieldsync::tuning::kMaxTxnsPerPush), o.txns_per_rep);
  number("changes-per-txn", 4, static_cast<double>(fieldsync::tuning::kMaxChangesPerTxn), o.changes_per_txn);
  number("paced-load", 0.001, 10, o.paced_load);
  number("paced-rate", 0.001, 1e7, o.paced_rate);
  number("idle-hold", 0, 3600, o.idle_hold_s);
  number("connect-concurrency", 1, 100000, o.connect_concurrency);
  number("ack-bytes", 1, static_cast<double>(fieldsync::tuning::kMaxMessageBytes), o.ack_bytes);
  number("reconnect-fraction", 0, 1, o.reconnect_fraction);
  number("reconnect-every", 1, 86400, o.reconnect_every_s);
  number("report-every", 1, 3600, o.report_every_s);
  number("server-port", 1, 65535, o.server_port);
  if (!err.empty()) {
    std::cerr << "fieldsync-bench-load: " << err << "\n";
    return 2;
  }
  o.server_bin = cli.get("server-bin", o.server_bin);
  for (const std::string& a : cli.all("server-arg")) o.server_args.push_back(a);
  o.tmp_dir = cli.get("tmp-dir", o.tmp_dir);
  o.cert_file = cli.get("cert", o.cert_file);
  o.key_file = cli.get("key", o.key_file);
  o.ca_file = cli.get("ca", o.ca_file);
  if (cli.has("only")) {
    std::stringstream ss(cli.get("only"));
    std::string p;
    while (std::getline(ss, p, ',')) {
      if (p != "baseline" && p != "ws" && p != "load" && p != "idle" && p != "soak") {
        std::cerr << "fieldsync-bench-load: --only: unknown phase '" << p
                  << "' (baseline, ws, load, idle, soak)\n";
        return 2;
      }
      o.only.insert(p);
    }
  }
  // The soak runs against a server it did not start, and only it does.
  if (o.run("soak") != (o.server_port > 0) || (o.run("soak") && (o.ca_file.empty() || o.only.size() != 1))) {
    std::cerr
        << "fieldsync-bench-load: --only soak goes alone, with --server-port PORT and --ca FILE, which no "
           "other phase takes\n";
    return 2;
  }
  if (o.run("soak") && !cli.has("paced-rate")) o.paced_rate = 200;
  o.postgres = cli.get("postgres", "");
  if (cli.has("postgres-url-file")) {
    std::ifstream in(cli.get("postgres-url-file"));
    std::getline(in, o.postgres);
    if (o.postgres.empty()) {
      std::cerr << "fieldsync-bench-load: --postgres-url-file: no URL in " << cli.get("postgres-url-file")
                << "\n";
      return 2;
    }
  }
  if (!o.postgres.empty() && o.postgres.rfind("postgres", 0) != 0) {
    std::cerr << "fieldsync-bench-load: --postgres takes a postgresql:// URL\n";
    return 2;
  }
  if (cli.has("instances")) {
    o.instances.clear();
    std::stringstream ss(cli.get("instances"));
    std::string n;
    while (std::getline(ss, n, ',')) {
      double v = 0;
      if (!parse_number("--instances", n, 1, 8, v, err)) {
        std::cerr << "fieldsync-bench-load: " << err << "\n";
        return 2;
      }
      o.instances.push_back(static_cast<int>(v));
    }
  }
  if (!o.postgres.empty()) {
    if (!cli.has("only")) o.only = {"baseline", "load"};
    if (o.run("ws") || o.run("idle") || o.run("soak")) {
      std::cerr << "fieldsync-bench-load: --postgres runs the phases baseline and load only\n";
      return 2;
    }
  }
  o.idle_hold_s = std::min(o.idle_hold_s, o.seconds);
  return 0;
}

// ---- Figures, checks and samples

struct Figure {
  std::string phase, name;
  double value;
  std::string unit, note;
};

class Report {
 public:
  void add(std::string phase, std::string name, double value, std::string unit, std::string note = "") {
    figures_.push_back(Figure{std::move(phase), std::move(name), value, std::move(unit), std::move(note)});
  }
  void print() const {
    std::printf("\n%-9s %-44s %16s  %-12s %s\n", "phase", "figure", "value", "unit", "note");
    for (const Figure& f : figures_)
      std::printf("%-9s %-44s %16s  %-12s %s\n", f.phase.c_str(), f.name.c_str(), format(f.value).c_str(),
                  f.unit.c_str(), f.note.c_str());
    std::printf("\n");
    for (const Figure& f : figures_) {
      boost::json::object j;
      j["bench"] = "load";
      j["phase"] = f.phase;
      j["figure"] = f.name;
      j["value"] = std::isfinite(f.value) ? boost::json::value(f.value) : boost::json::value(nullptr);
      j["unit"] = f.unit;
      if (!f.note.empty()) j["note"] = f.note;
      std::printf("%s\n", boost::json::serialize(j).c_str());
    }
    std::fflush(stdout);
  }

 private:
  static std::string format(double v) {
    if (!std::isfinite(v)) return "n/a";
    char buf[64];
    if (v != 0 && std::fabs(v) < 10)
      std::snprintf(buf, sizeof buf, "%.3f", v);
    else if (std::fabs(v) < 1000)
      std::snprintf(buf, sizeof buf, "%.1f", v);
    else
      std::snprintf(buf, sizeof buf, "%.0f", v);
    return buf;
  }
  std::vector<Figure> figures_;
};

class Checks {
 public:
  void expect(bool ok, const std::string& what) {
    if (!ok) failures_.push_back(what);
  }
  const std::vector<std::string>& failures() const { return failures_; }

 private:
  std::vector<std::string> failures_;
};

struct Samples {
  std::vector<double> v;
  void add(double x) { v.push_back(x); }
  size_t size() const { return v.size(); }
  // Nearest-rank percentile; NaN without samples.
  double pct(double p) {
    if (v.empty()) return std::nan("");
    std::sort(v.begin(), v.end());
    size_t rank = static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(v.size())));
    return v[std::clamp<size_t>(rank, 1, v.size()) - 1];
  }
};

void progress(const std::string& line) {
  std::cerr << "[load-bench] " << line << std::endl;
}

std::string fmt(double v, int decimals = 1) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

// ---- /proc

// A "Key:   123 kB" line of /proc/PID/status, in KiB; -1 if unreadable.
long proc_status_kib(pid_t pid, const std::string& key) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(key + ":", 0) == 0) return std::strtol(line.c_str() + key.size() + 1, nullptr, 10);
  return -1;
}

// User + system CPU seconds of a process so far.
double proc_cpu_s(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  size_t paren = all.rfind(')');
  if (paren == std::string::npos) return std::nan("");
  std::istringstream ss(all.substr(paren + 2));
  std::string field;
  double utime = 0, stime = 0;
  for (int i = 3; ss >> field; ++i) {  // field 3 is the state, 14 utime, 15 stime
    if (i == 14) utime = std::strtod(field.c_str(), nullptr);
    if (i == 15) {
      stime = std::strtod(field.c_str(), nullptr);
      break;
    }
  }
  return (utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

// User + system CPU seconds of this process so far.
double self_cpu_s() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

// ---- Child processes (fieldsync-server, the ack server)

class ChildProcess {
 public:
  ChildProcess() = default;
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;
  ~ChildProcess() {
    if (pid_ > 0 && alive()) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }

  // Starts `argv` with stdout and stderr in DIR/NAME.out and DIR/NAME.log and waits for the line
  // "listening on wss://ADDR:PORT/sync" on its stdout (both servers print it once they accept).
  bool start(const std::vector<std::string>& argv, const std::string& dir, const std::string& name,
             std::string& err) {
    out_path_ = dir + "/" + name + ".out";
    log_path_ = dir + "/" + name + ".log";
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, out_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&fa, 2, log_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    int rc = posix_spawn(&pid_, argv[0].c_str(), &fa, nullptr, args.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) {
      err = "cannot start " + argv[0] + ": " + std::strerror(rc);
      pid_ = -1;
      return false;
    }
    const double deadline = mono_s() + 60;
    while (mono_s() < deadline) {
      std::ifstream in(out_path_);
      std::string line;
      while (std::getline(in, line)) {
        size_t at = line.find("listening on wss://");
        size_t sync = line.find("/sync", at == std::string::npos ? 0 : at);
        if (at == std::string::npos || sync == std::string::npos) continue;
        size_t colon = line.rfind(':', sync);
        port_ = static_cast<uint16_t>(std::strtoul(line.c_str() + colon + 1, nullptr, 10));
        return true;
      }
      if (!alive()) {
        err =
            name + " exited before listening (" + exit_description() + "); " + log_path_ + ": " + log_tail();
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    err = name + " did not print its port within 60 s";
    return false;
  }

  pid_t pid() const { return pid_; }
  uint16_t port() const { return port_; }
  const std::string& log_path() const { return log_path_; }

  bool alive() {
    if (pid_ <= 0 || exited_) return false;
    int status = 0;
    pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      exited_ = true;
      status_ = status;
      return false;
    }
    return true;
  }

  // SIGTERM, then waits up to `timeout_s` (the server drains sessions for up to 10 s) before SIGKILL.
  // Returns how it ended, e.g. "exit 0" or "killed by signal 11".
  std::string stop(double timeout_s = 30) {
    if (pid_ <= 0) return "not started";
    if (alive()) {
      kill(pid_, SIGTERM);
      const double deadline = mono_s() + timeout_s;
      while (alive() && mono_s() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(10));
      if (alive()) {
        kill(pid_, SIGKILL);
        waitpid(pid_, &status_, 0);
        exited_ = true;
        return "did not exit within " + fmt(timeout_s, 0) + " s of SIGTERM: killed";
      }
    }
    return exit_description();
  }
  bool exited_cleanly() const { return exited_ && WIFEXITED(status_) && WEXITSTATUS(status_) == 0; }

  std::string exit_description() const {
    if (!exited_) return "running";
    if (WIFEXITED(status_)) return "exit " + std::to_string(WEXITSTATUS(status_));
    if (WIFSIGNALED(status_)) return "killed by signal " + std::to_string(WTERMSIG(status_));
    return "status " + std::to_string(status_);
  }

  std::string log_tail(size_t bytes = 600) const {
    std::ifstream in(log_path_);
    std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    return all.size() > bytes ? all.substr(all.size() - bytes) : all;
  }

  // Counts of `reason=` in the server's session_close log lines.
  std::map<std::string, int> close_reasons() const {
    std::map<std::string, int> out;
    std::ifstream in(log_path_);
    std::string line;
    while (std::getline(in, line)) {
      if (line.find("event=session_close") == std::string::npos) continue;
      size_t r = line.find("reason=");
      if (r != std::string::npos) out[line.substr(r + 7)]++;
    }
    return out;
  }

 private:
  pid_t pid_ = -1;
  uint16_t port_ = 0;
  bool exited_ = false;
  int status_ = 0;
  std::string out_path_, log_path_;
};

uint64_t total(const std::map<std::string, int>& m) {
  uint64_t n = 0;
  for (const auto& [k, v] : m) n += static_cast<uint64_t>(v);
  return n;
}

std::string describe(const std::map<std::string, int>& m) {
  std::string s;
  for (const auto& [k, v] : m) s += (s.empty() ? "" : ", ") + k + " x" + std::to_string(v);
  return s.empty() ? "none" : s;
}

// ---- TLS settings, the same as fieldsync-server's and the device's (the policy is io/tls_policy.h)

void server_tls(ssl::context& ctx, const std::string& cert_pem, const std::string& key_pem) {
  ctx.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                  ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 | ssl::context::single_dh_use);
  fieldsync::net::apply_tls_policy(ctx.native_handle());
  ctx.use_certificate_chain(net::buffer(cert_pem));
  ctx.use_private_key(net::buffer(key_pem), ssl::context::pem);
}

std::unique_ptr<ssl::context> client_tls(const std::string& ca_file) {
  auto ctx = std::make_unique<ssl::context>(ssl::context::tls_client);
  ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                   ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
  fieldsync::net::apply_tls_policy(ctx->native_handle());
  ctx->load_verify_file(ca_file);
  return ctx;
}

// ---- The workload: one transaction

struct TxnShape {
  int changes = 0;
  int accounts = 0;      // accounts it creates
  int territory = -1;    // where it writes
  bool manager = false;  // a manager's note (its team's reps receive it) rather than a rep's accounts
};

int accounts_per_txn(int changes) {
  return (changes + 7) / 8;
}

// `changes` changes creating ceil(changes/8) accounts in `territory`: create, name, territory, creator, then
// up to four optional fields (~200 bytes of values per account, like the baseline's rows).
std::vector<Change> make_txn(fieldsync::RecordIdGenerator& ids, const std::string& territory,
                             const std::string& user, int changes, uint64_t serial) {
  constexpr uint16_t kName = 1, kTerritory = 2, kAddress = 3, kCity = 4, kPhone = 5, kEmail = 6,
                     kCreatedBy = 10;
  const int accounts = accounts_per_txn(changes);
  std::vector<Change> out;
  out.reserve(static_cast<size_t>(changes));
  int left = changes;
  for (int a = 0; a < accounts; ++a) {
    const int here = std::min(8, left - 4 * (accounts - a - 1));  // every later account keeps its 4
    left -= here;
    const RecordId id = ids.next(wall_ms());
    Change create;
    create.op = ChangeOp::kCreate;
    create.entity = EntityId::kAccount;
    create.record = id;
    out.push_back(create);
    auto set = [&](uint16_t field, std::string value) {
      Change c;
      c.op = ChangeOp::kSet;
      c.entity = EntityId::kAccount;
      c.record = id;
      c.field = field;
      c.value = Value::text(std::move(value));
      out.push_back(std::move(c));
    };
    set(kName, "Bakerei Nord GmbH " + std::to_string(serial) + "/" + std::to_string(a));
    set(kTerritory, territory);
    set(kCreatedBy, user);
    const std::pair<uint16_t, const char*> extras[] = {{kAddress, "Grosse Elbstrasse 145, 22767 Hamburg"},
                                                       {kCity, "Hamburg"},
                                                       {kPhone, "+49 40 1234567"},
                                                       {kEmail, "einkauf@baeckerei-nord.example"}};
    for (int i = 0; i < here - 4; ++i) set(extras[i].first, extras[i].second);
  }
  return out;
}

// A manager's note on one of its team's accounts (append-only notes: concurrent notes are all kept), the
// kind of write that flows back to the rep: "approved, deliver Tuesday".
std::vector<Change> make_note(const RecordId& account, const std::string& manager, uint64_t serial) {
  constexpr uint16_t kNotes = 9;
  Change c;
  c.op = ChangeOp::kAppend;
  c.entity = EntityId::kAccount;
  c.record = account;
  c.field = kNotes;
  c.value = Value::text(manager + ": spring order approved, deliver Tuesday before 10 (" +
                        std::to_string(serial) + ")");
  return {std::move(c)};
}

// The frames the ws phase sends and answers: a real push of --txns-per-rep transactions of the load's shape
// (versions filled in as SyncClient would) and the PushAck the server would send for it.
std::pair<Bytes, Bytes> representative_frames(const Options& o) {
  fieldsync::RecordIdGenerator ids(42);
  std::mt19937_64 rng(42);
  protocol::PushTxns push;
  push.request_id = 1234;
  protocol::PushAck ack;
  ack.request_id = push.request_id;
  const NodeId node = rng();
  fieldsync::Hlc hlc = static_cast<fieldsync::Hlc>(wall_ms()) << 16;
  for (int t = 0; t < o.txns_per_rep; ++t) {
    fieldsync::ClientTxn txn;
    txn.node = node;
    txn.node_seq = 1000 + static_cast<uint64_t>(t);
    txn.created_at_ms = wall_ms();
    txn.changes = make_txn(ids, "t0042", "rep00420", o.changes_per_txn, static_cast<uint64_t>(t));
    for (Change& c : txn.changes) c.version = fieldsync::Version{++hlc, node};
    protocol::TxnResult r;
    r.node_seq = txn.node_seq;
    r.outcome = protocol::TxnOutcome::kApplied;
    r.server_seq = 100000 + static_cast<uint64_t>(t);
    ack.results.push_back(r);
    push.txns.push_back(std::move(txn));
  }
  ack.server_hlc = hlc + 1;
  return {std::make_shared<const std::vector<uint8_t>>(codec::encode(push)),
          std::make_shared<const std::vector<uint8_t>>(codec::encode(ack))};
}

// ---- One client TLS WebSocket connection

class Conn : public std::enable_shared_from_this<Conn> {
 public:
  Conn(net::io_context& ioc, ssl::context& tls) : ws(ioc, tls) {}

  // TCP connect, TLS handshake verifying the server's certificate for 127.0.0.1 (as WsClient does), WebSocket
  // upgrade on `target`. Returns "" or "stage: error".
  net::awaitable<std::string> open(tcp::endpoint ep, std::string target) {
    beast::tcp_stream& s = beast::get_lowest_layer(ws);
    s.expires_after(std::chrono::seconds(60));
    auto [cec] = co_await s.async_connect(ep, kAwait);
    if (cec) co_return "connect: " + cec.message();
    beast::error_code ignored;
    s.socket().set_option(tcp::no_delay(true), ignored);
    ws.next_layer().next_layer().set_verify_mode(ssl::verify_peer);
    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ws.next_layer().next_layer().native_handle()), "127.0.0.1");
    auto [hec] = co_await ws.next_layer().async_handshake(ssl::stream_base::client, kAwait);
    if (hec) co_return "tls_handshake: " + hec.message();
    s.expires_never();
    websocket::stream_base::timeout t = websocket::stream_base::timeout::suggested(beast::role_type::client);
    t.handshake_timeout = std::chrono::seconds(60);
    ws.set_option(t);
    ws.read_message_max(fieldsync::tuning::kMaxMessageBytes);
    ws.binary(true);
    const std::string host = "127.0.0.1:" + std::to_string(ep.port());
    auto [wec] = co_await ws.async_handshake(host, target, kAwait);
    if (wec) co_return "ws_upgrade: " + wec.message();
    co_return "";
  }

  // Queues a binary message; one write in flight at a time.
  void send(Bytes frame) {
    if (closed) return;
    queue_.push_back(std::move(frame));
    if (!writing_) write_next();
  }

  // Closes the socket at once: pending operations complete with errors (the frame being written stays alive
  // until its handler runs).
  void close() {
    if (closed) return;
    closed = true;
    queue_.clear();
    beast::get_lowest_layer(ws).close();
  }

  Ws ws;
  beast::flat_buffer buffer;
  bool closed = false;

 private:
  void write_next() {
    writing_ = true;
    inflight_ = std::move(queue_.front());
    queue_.pop_front();
    ws.async_write(net::buffer(*inflight_), [self = shared_from_this()](beast::error_code ec, size_t) {
      self->writing_ = false;
      self->inflight_.reset();
      if (ec) return self->close();
      if (!self->queue_.empty()) self->write_next();
    });
  }

  std::deque<Bytes> queue_;
  Bytes inflight_;
  bool writing_ = false;
};

// ---- The load process's event loop: one io_context on this thread, connections started at a bounded rate

class Loop {
 public:
  Loop(const std::string& ca_file, uint16_t port, int connect_concurrency, ChildProcess* server)
      : Loop(ca_file, std::vector<uint16_t>{port}, connect_concurrency,
             server ? std::vector<ChildProcess*>{server} : std::vector<ChildProcess*>{}) {}
  // Several server instances (PostgreSQL mode), one certificate: a session connects to the one its rep names.
  Loop(const std::string& ca_file, const std::vector<uint16_t>& ports, int connect_concurrency,
       std::vector<ChildProcess*> servers)
      : tls_(client_tls(ca_file)),
        work_(net::make_work_guard(ioc_)),
        concurrency_(connect_concurrency),
        servers_(std::move(servers)) {
    for (uint16_t port : ports) endpoints_.emplace_back(net::ip::make_address("127.0.0.1"), port);
  }

  net::io_context& ioc() { return ioc_; }
  ssl::context& tls() { return *tls_; }
  const tcp::endpoint& endpoint(int instance = 0) const {
    return endpoints_.at(static_cast<size_t>(instance) % endpoints_.size());
  }
  int instances() const { return static_cast<int>(endpoints_.size()); }

  // `start` is called when a handshake slot is free; the connection calls connect_done() once open or failed.
  void queue_connect(std::function<void()> start) { pending_.push_back(std::move(start)); }
  void connect_done() { --connecting_; }
  size_t connects_pending() const { return pending_.size() + static_cast<size_t>(connecting_); }

  // Coroutines still running (each reports its own end).
  int running = 0;

  // Runs the loop until `done()` or `timeout_s`, calling `every` between slices. False on timeout or when
  // the server process died (server_died() says which).
  bool run_until(const std::function<bool()>& done, double timeout_s,
                 const std::function<void()>& every = nullptr) {
    const double deadline = mono_s() + timeout_s;
    for (;;) {
      while (!pending_.empty() && connecting_ < concurrency_) {
        ++connecting_;
        std::function<void()> start = std::move(pending_.front());
        pending_.pop_front();
        start();
      }
      if (done()) return true;
      if (mono_s() >= deadline) return false;
      for (ChildProcess* server : servers_)
        if (!server->alive()) {
          died_ = true;
          return false;
        }
      ioc_.run_for(std::chrono::milliseconds(2));
      if (every) every();
    }
  }
  bool server_died() const { return died_; }

  void spawn(net::awaitable<void> coroutine) {
    ++running;
    net::co_spawn(ioc_, std::move(coroutine), net::detached);
  }

 private:
  std::unique_ptr<ssl::context> tls_;  // outlives every stream of ioc_
  net::io_context ioc_{1};
  std::vector<tcp::endpoint> endpoints_;
  net::executor_work_guard<net::io_context::executor_type> work_;
  std::deque<std::function<void()>> pending_;
  int connecting_ = 0;
  int concurrency_;
  std::vector<ChildProcess*> servers_;
  bool died_ = false;
};

// ---- A simulated rep: SyncClient over a MemoryReplicaStore on one connection

struct PhaseStats {
  bool window = false;
  double t0 = 0, t1 = 0;
  uint64_t pushes_sent = 0, push_bytes = 0;
  uint64_t pushes_acked = 0;     // acks received inside the window (the rate)
  uint64_t pushes_answered = 0;  // pushes sent inside the window and answered by the end of the drain
  uint64_t txns_applied = 0, changes_applied = 0, records_applied = 0;
  Samples push_ack_ms;
  Samples fanout_ack_ms;   // writer's PushAck received -> a peer's live batch with the commit received
  Samples fanout_push_ms;  // writer's push sent -> the same
  // The same two for deliveries to a session on another server instance than the writer's (PostgreSQL
  // mode with several instances): the commit travels through the database and the other instance's follower.
  Samples fanout_cross_ack_ms, fanout_cross_push_ms;
  uint64_t fanout_expected = 0, fanout_live = 0, fanout_pull = 0;
  double seconds() const { return t1 - t0; }
};

struct Rep {
  // kWriter: a load rep (writes in its territory, receives its peers' writes); kManager: receives every write
  // of its team's territories; kHeadOffice: receives every write; kQuiet: neither (idle sessions, the final
  // head-office bootstrap). Receipts of the three receiving kinds count as fan-out deliveries.
  enum class Kind : uint8_t { kWriter, kManager, kHeadOffice, kQuiet };

  Rep(int index_, int territory_, std::string user_, std::string token, NodeId node_, Kind kind_)
      : index(index_),
        territory(territory_),
        user(std::move(user_)),
        node(node_),
        kind(kind_),
        writer(kind_ == Kind::kWriter),
        store(node_),
        client(store, fieldsync::ClientConfig{user, std::move(token)}),
        ids(node_) {}

  bool receiver() const { return kind != Kind::kQuiet; }

  int index;
  int territory;     // kWriter: its territory; kManager: its team; otherwise -1
  int instance = 0;  // the server instance it connects to (Loop::endpoint)
  std::string territory_id;
  std::string user;
  NodeId node;
  Kind kind;
  bool writer;
  fieldsync::MemoryReplicaStore store;
  fieldsync::SyncClient client;
  uint32_t wire_version =
      1;  // the connection's protocol version, from its Welcome (frames are encoded for it)
  fieldsync::RecordIdGenerator ids;
  std::shared_ptr<Conn> conn;
  enum class Link : uint8_t { kQueued, kOpen, kClosed } link = Link::kQueued;
  std::string close_reason;
  // Reconnecting sessions (the soak): when to connect again, and for a phone with poor signal (`flaky`)
  // when it next goes offline; `offline` while it is, by its own doing rather than the server's.
  double reconnect_at_s = 0;
  int failed_connects = 0;  // in a row: the backoff grows with them
  bool flaky = false, offline = false;
  double next_offline_s = 0;
  struct SentPush {
    double sent_s;      // when the PushTxns was queued to the socket
    PhaseStats* stats;  // the window it was sent in (its latency counts there, whenever it is answered)
  };
  std::unordered_map<uint64_t, SentPush> push_sent;  // request_id -> SentPush
  std::unordered_map<uint64_t, TxnShape> written;    // node_seq -> shape, until acknowledged
  uint64_t serial = 0, txns_written = 0, txns_applied = 0, txns_duplicate = 0, txns_rejected = 0;
  uint64_t max_seq_pushed = 0, pushes_resent = 0;
  uint64_t records_applied = 0;
  double next_write_s = 0;  // paced phase; managers' notes
  // kManager: accounts of its team it has received (a ring), what its notes go to.
  std::vector<std::pair<RecordId, int>> team_accounts;
  size_t team_accounts_next = 0;
};

class RepDriver {
 public:
  enum class Mode : uint8_t { kQuiet, kSaturate, kPaced };

  RepDriver(Loop& loop, const Options& o) : loop_(loop), o_(o) {}

  Rep& add(int territory, std::string user, std::string token, Rep::Kind kind) {
    reps_.push_back(std::make_unique<Rep>(static_cast<int>(reps_.size()), territory, std::move(user),
                                          std::move(token), rng_(), kind));
    Rep& r = *reps_.back();
    r.territory_id = "t" + std::to_string(territory);
    return r;
  }
  std::vector<std::unique_ptr<Rep>>& reps() { return reps_; }

  void connect(Rep& r) {
    loop_.queue_connect([this, &r] { loop_.spawn(run(r)); });
  }

  void begin(PhaseStats& stats, Mode mode, double paced_txns_per_s = 0) {
    stats_ = &stats;
    mode_ = mode;
    stats.window = true;
    stats.t0 = mono_s();
    if (mode == Mode::kSaturate) {
      for (auto& r : reps_)
        if (r->writer && r->link == Rep::Link::kOpen) write_txns(*r, o_.txns_per_rep);
    } else if (mode == Mode::kPaced) {
      size_t writers = 0;
      for (auto& r : reps_) writers += r->writer && r->link == Rep::Link::kOpen;
      // Each paced write is a push of the saturated phase's shape (--txns-per-rep transactions), so the
      // server sees the same pushes at a lower rate.
      paced_mean_s_ =
          paced_txns_per_s > 0 ? static_cast<double>(writers) * o_.txns_per_rep / paced_txns_per_s : 1e9;
      for (auto& r : reps_) r->next_write_s = stats.t0 + exponential(paced_mean_s_);
    }
    for (auto& r : reps_)
      if (r->kind == Rep::Kind::kManager && o_.manager_notes > 0)
        r->next_write_s = stats.t0;  // the first note as soon as it knows an account of its team
  }
  void end() {
    stats_->window = false;
    stats_->t1 = mono_s();
    mode_ = Mode::kQuiet;
  }

  // Between loop slices: client timers once a second, paced writes when due.
  void every() {
    const double now = mono_s();
    if (now >= next_tick_s_) {
      next_tick_s_ = now + 1.0;
      const int64_t w = wall_ms();
      for (auto& r : reps_) {
        if (r->link != Rep::Link::kOpen) continue;
        r->client.on_tick(w);
        pump(*r);
      }
    }
    if (mode_ != Mode::kQuiet && o_.manager_notes > 0) {
      for (auto& r : reps_) {
        if (r->kind != Rep::Kind::kManager || r->link != Rep::Link::kOpen) continue;
        while (r->next_write_s <= now && !r->team_accounts.empty()) {
          write_note(*r);
          r->next_write_s += exponential(1.0 / o_.manager_notes);
        }
      }
    }
    if (reconnect_ && !closing_) reconnect_due(now);
    if (mode_ == Mode::kPaced) {
      for (auto& r : reps_) {
        if (!r->writer || (r->link != Rep::Link::kOpen && !reconnect_)) continue;
        while (r->next_write_s <= now) {
          write_txns(*r, o_.txns_per_rep);
          r->next_write_s += exponential(paced_mean_s_);
        }
      }
    }
  }

  // Sessions reconnect whenever they are cut or cannot connect (the server restarting), and `flaky_fraction`
  // of them also go offline at random, every `offline_every_s` on average, for 1-10 s. Writers keep writing
  // while offline (into their outbox, pushed once back), like the offline-first app.
  void keep_reconnecting(double flaky_fraction, double offline_every_s) {
    reconnect_ = true;
    offline_every_s_ = offline_every_s;
    for (auto& r : reps_) r->flaky = std::uniform_real_distribution<double>(0, 1)(rng_) < flaky_fraction;
  }
  // Every session connected and caught up, nothing left to push.
  bool all_synced() const {
    for (const auto& r : reps_)
      if (r->link != Rep::Link::kOpen || !r->client.idle()) return false;
    return true;
  }
  // Push-to-ack latencies (ms) of the acks received since the last call (reconnecting mode only).
  Samples take_interval_acks() { return std::exchange(interval_ack_ms_, Samples{}); }
  uint64_t reconnects = 0, offline_drops = 0;

  void close_all() {
    closing_ = true;
    for (auto& r : reps_)
      if (r->conn) r->conn->close();
  }

  // Counters over all reps.
  uint64_t decode_errors = 0, stale_live_batches = 0, write_errors = 0, notes_acked = 0;
  std::map<std::string, int> connect_failures, unexpected_closes, client_errors;
  std::string first_write_error;

  size_t open_count() const {
    size_t n = 0;
    for (const auto& r : reps_) n += r->link == Rep::Link::kOpen;
    return n;
  }
  bool all_settled() const {  // every rep connected and synced, or failed
    for (const auto& r : reps_)
      if (r->link == Rep::Link::kQueued || (r->link == Rep::Link::kOpen && !r->client.idle())) return false;
    return true;
  }
  uint64_t territory_records(int territory) const {
    auto it = territory_records_.find(territory);
    return it == territory_records_.end() ? 0 : it->second;
  }
  uint64_t total_records() const {
    uint64_t n = 0;
    for (const auto& [t, c] : territory_records_) n += c;
    return n;
  }
  // The acknowledged records a receiving session must hold once converged.
  uint64_t expected_records(const Rep& r) const {
    switch (r.kind) {
      case Rep::Kind::kWriter:
        return territory_records(r.territory);
      case Rep::Kind::kManager: {
        uint64_t n = 0;
        for (const auto& [t, c] : territory_records_) n += team_of(t) == r.territory ? c : 0;
        return n;
      }
      case Rep::Kind::kHeadOffice:
        return total_records();
      case Rep::Kind::kQuiet:
        break;
    }
    return 0;
  }
  int team_of(int territory) const { return o_.team_size > 0 ? territory / o_.team_size : -1; }

 private:
  struct FanoutEntry {
    double ack_s = -1;  // < 0: the writer's ack has not arrived yet
    double sent_s = 0;
    int instance = 0;             // the writer's server instance
    PhaseStats* stats = nullptr;  // the phase the write was acknowledged in (null: outside a window)
    std::vector<std::pair<double, int>> early_live;  // live receipts (time, receiver's instance) before the
                                                     // writer's ack was processed
    uint64_t early_pull = 0;
  };

  double exponential(double mean) { return std::exponential_distribution<double>(1.0 / mean)(rng_); }
  double uniform(double lo, double hi) { return std::uniform_real_distribution<double>(lo, hi)(rng_); }

  // Reconnecting mode, between loop slices: sessions whose pause is over connect again; flaky ones whose time
  // has come go offline (only while writes are on, so the drain at the end is not disturbed).
  void reconnect_due(double now) {
    for (auto& r : reps_) {
      if (r->link == Rep::Link::kClosed && now >= r->reconnect_at_s) {
        r->link = Rep::Link::kQueued;
        r->offline = false;
        reconnects++;
        connect(*r);
      } else if (r->flaky && r->link == Rep::Link::kOpen && mode_ != Mode::kQuiet &&
                 now >= r->next_offline_s) {
        r->offline = true;
        r->reconnect_at_s = now + uniform(1, 10);
        offline_drops++;
        r->conn->close();
      }
    }
  }
  // After a failed connect or a lost session: when to try again. A restarting server is back within seconds;
  // the spread keeps a thousand sessions from all knocking at the same moment.
  void schedule_reconnect(Rep& r, double now) {
    const double backoff = std::min(8.0, 0.5 * static_cast<double>(1 << std::min(r.failed_connects, 4)));
    r.reconnect_at_s = std::max(r.reconnect_at_s, now + uniform(0.5 * backoff, backoff));
  }

  net::awaitable<void> run(Rep& r) {
    r.conn = std::make_shared<Conn>(loop_.ioc(), loop_.tls());
    std::shared_ptr<Conn> c = r.conn;
    std::string err = co_await c->open(loop_.endpoint(r.instance), "/sync");
    loop_.connect_done();
    if (!err.empty()) {
      r.link = Rep::Link::kClosed;
      r.close_reason = err;
      connect_failures[err]++;
      if (reconnect_) {
        r.failed_connects++;
        schedule_reconnect(r, mono_s());
      }
      --loop_.running;
      co_return;
    }
    r.link = Rep::Link::kOpen;
    r.failed_connects = 0;
    if (r.flaky) r.next_offline_s = mono_s() + exponential(offline_every_s_);
    count_open(r, +1);
    r.wire_version = 1;  // Hello is the v1 form; the Welcome names the connection's version
    r.client.on_connected(wall_ms());
    pump(r);
    for (;;) {
      auto [ec, n] = co_await c->ws.async_read(c->buffer, kAwait);
      if (ec) {
        r.close_reason = "read: " + ec.message();
        if (!closing_ && !r.offline) unexpected_closes[r.close_reason]++;
        break;
      }
      auto data = c->buffer.cdata();
      on_frame(r, std::span<const uint8_t>(static_cast<const uint8_t*>(data.data()), data.size()));
      c->buffer.consume(c->buffer.size());
    }
    r.link = Rep::Link::kClosed;
    count_open(r, -1);
    r.client.on_disconnected(wall_ms());
    c->close();
    if (reconnect_) {
      r.push_sent.clear();  // lost with the session: the client pushes them again, under new request ids
      schedule_reconnect(r, mono_s());
    }
    --loop_.running;
  }

  // Open receivers by what they receive, for the deliveries each commit is owed.
  void count_open(const Rep& r, int delta) {
    if (r.kind == Rep::Kind::kWriter) territory_open_[r.territory] += delta;
    if (r.kind == Rep::Kind::kManager) team_open_[r.territory] += delta;
    if (r.kind == Rep::Kind::kHeadOffice) head_office_open_ += delta;
  }
  // Sessions other than the writer that must receive its commit.
  int receivers_of(const TxnShape& shape) {
    const int team = team_of(shape.territory);
    const int managers = team >= 0 ? team_open_[team] : 0;
    const int reps = territory_open_[shape.territory];
    return shape.manager ? reps + std::max(0, managers - 1) + head_office_open_
                         : std::max(0, reps - 1) + managers + head_office_open_;
  }

  void pump(Rep& r) {
    for (protocol::Message& m : r.client.take_outgoing()) {
      auto frame = std::make_shared<const std::vector<uint8_t>>(codec::encode(m, r.wire_version));
      if (const auto* p = std::get_if<protocol::PushTxns>(&m)) {
        r.push_sent[p->request_id] = Rep::SentPush{mono_s(), stats_ && stats_->window ? stats_ : nullptr};
        if (!p->txns.empty() && p->txns.front().node_seq <= r.max_seq_pushed) r.pushes_resent++;
        if (!p->txns.empty()) r.max_seq_pushed = std::max(r.max_seq_pushed, p->txns.back().node_seq);
        if (stats_ && stats_->window) {
          stats_->pushes_sent++;
          stats_->push_bytes += frame->size();
        }
      }
      if (r.conn && r.link == Rep::Link::kOpen) r.conn->send(std::move(frame));
    }
    for (const ClientEvent& e : r.client.take_events())
      if (e.kind == ClientEvent::Kind::kError) client_errors[e.status.to_string()]++;
  }

  void write_txns(Rep& r, int n) {
    for (int i = 0; i < n; ++i) {
      std::vector<Change> changes = make_txn(r.ids, r.territory_id, r.user, o_.changes_per_txn, r.serial++);
      fieldsync::Result<uint64_t> seq = r.client.write(std::move(changes), wall_ms());
      if (!seq) {
        if (write_errors++ == 0) first_write_error = seq.status().to_string();
        continue;
      }
      r.written[seq.value()] =
          TxnShape{o_.changes_per_txn, accounts_per_txn(o_.changes_per_txn), r.territory, false};
      r.txns_written++;
    }
    pump(r);
  }

  void write_note(Rep& r) {
    const auto& [account, territory] = r.team_accounts[rng_() % r.team_accounts.size()];
    fieldsync::Result<uint64_t> seq = r.client.write(make_note(account, r.user, r.serial++), wall_ms());
    if (!seq) {
      if (write_errors++ == 0) first_write_error = seq.status().to_string();
      return;
    }
    r.written[seq.value()] = TxnShape{1, 0, territory, true};
    r.txns_written++;
    pump(r);
  }

  // A manager remembers accounts of its team as they arrive, for its notes.
  void remember_accounts(Rep& r, const protocol::ChangeBatch& b) {
    constexpr size_t kRemembered = 256;
    constexpr uint16_t kTerritory = 2;
    for (const fieldsync::ServerTxn& st : b.txns) {
      for (const Change& c : st.changes) {
        if (c.entity != EntityId::kAccount || c.op != ChangeOp::kSet || c.field != kTerritory) continue;
        const std::string& t = c.value.as_text();  // "tN"
        std::pair<RecordId, int> entry{c.record, std::atoi(t.c_str() + 1)};
        if (r.team_accounts.size() < kRemembered) {
          r.team_accounts.push_back(std::move(entry));
        } else {
          r.team_accounts[r.team_accounts_next++ % kRemembered] = std::move(entry);
        }
      }
    }
  }

  void on_frame(Rep& r, std::span<const uint8_t> bytes) {
    fieldsync::Result<protocol::Message> m = codec::decode(bytes);
    if (!m) {
      decode_errors++;
      return;
    }
    const double now = mono_s();
    if (const auto* w = std::get_if<protocol::Welcome>(&m.value()))
      r.wire_version = std::min(w->protocol_version, protocol::kProtocolVersion);
    const bool ack = std::holds_alternative<protocol::PushAck>(m.value());
    if (ack) {
      on_ack(r, std::get<protocol::PushAck>(m.value()), now);
    } else if (const auto* b = std::get_if<protocol::ChangeBatch>(&m.value())) {
      if (r.receiver()) on_batch(r, *b, now);
    }
    r.client.on_message(m.value(), wall_ms());
    pump(r);
    if (ack && mode_ == Mode::kSaturate && r.writer) write_txns(r, o_.txns_per_rep);
  }

  void on_ack(Rep& r, const protocol::PushAck& a, double now) {
    const bool window = stats_ && stats_->window;
    double sent = now;
    if (window) stats_->pushes_acked++;
    if (auto it = r.push_sent.find(a.request_id); it != r.push_sent.end()) {
      sent = it->second.sent_s;
      if (PhaseStats* at = it->second.stats) {
        at->pushes_answered++;
        at->push_ack_ms.add((now - sent) * 1000);
      }
      r.push_sent.erase(it);
      if (reconnect_) interval_ack_ms_.add((now - sent) * 1000);
    }
    for (const protocol::TxnResult& res : a.results) {
      auto w = r.written.find(res.node_seq);
      if (w == r.written.end()) continue;  // answered before (a re-sent push)
      const TxnShape shape = w->second;
      r.written.erase(w);
      if (res.outcome == protocol::TxnOutcome::kRejected) {
        r.txns_rejected++;
        continue;
      }
      r.txns_applied++;
      notes_acked += shape.manager;
      r.records_applied += static_cast<uint64_t>(shape.accounts);
      territory_records_[shape.territory] += static_cast<uint64_t>(shape.accounts);
      if (res.outcome == protocol::TxnOutcome::kDuplicate) {
        r.txns_duplicate++;  // applied, but its first ack was lost: no commit sequence to follow
        continue;
      }
      if (window) {
        stats_->txns_applied++;
        stats_->changes_applied += static_cast<uint64_t>(shape.changes);
        stats_->records_applied += static_cast<uint64_t>(shape.accounts);
      }
      FanoutEntry& e = fanout_[res.server_seq];
      e.ack_s = now;
      e.sent_s = sent;
      e.instance = r.instance;
      e.stats = window ? stats_ : nullptr;
      if (e.stats) {
        e.stats->fanout_expected += static_cast<uint64_t>(receivers_of(shape));
        for (const auto& [t, instance] : e.early_live) live_delivery(e, t, instance);
        e.stats->fanout_pull += e.early_pull;
      }
      e.early_live.clear();
    }
  }

  // A receipt at `t` by a session on `instance` of the acknowledged commit `e`.
  static void live_delivery(const FanoutEntry& e, double t, int instance) {
    PhaseStats& st = *e.stats;
    st.fanout_live++;
    const double ack_ms = std::max(0.0, t - e.ack_s) * 1000, push_ms = (t - e.sent_s) * 1000;
    st.fanout_ack_ms.add(ack_ms);
    st.fanout_push_ms.add(push_ms);
    if (instance != e.instance) {
      st.fanout_cross_ack_ms.add(ack_ms);
      st.fanout_cross_push_ms.add(push_ms);
    }
  }

  void on_batch(Rep& r, const protocol::ChangeBatch& b, double now) {
    const bool live = b.request_id == 0;
    if (b.from_cursor != r.store.meta().cursor) {  // SyncClient ignores it (and pulls): not a delivery
      if (live) stale_live_batches++;
      return;
    }
    if (r.kind == Rep::Kind::kManager) remember_accounts(r, b);
    for (const fieldsync::ServerTxn& st : b.txns) {
      FanoutEntry& e = fanout_[st.server_seq];
      if (e.ack_s < 0) {
        if (live)
          e.early_live.emplace_back(now, r.instance);
        else
          e.early_pull++;
        continue;
      }
      if (!e.stats) continue;
      if (live) {
        live_delivery(e, now, r.instance);
      } else {
        e.stats->fanout_pull++;
      }
    }
  }

  Loop& loop_;
  const Options& o_;
  std::mt19937_64 rng_{std::random_device{}()};
  std::vector<std::unique_ptr<Rep>> reps_;
  Mode mode_ = Mode::kQuiet;
  PhaseStats* stats_ = nullptr;
  double paced_mean_s_ = 1;
  double next_tick_s_ = 0;
  bool closing_ = false;
  bool reconnect_ = false;
  double offline_every_s_ = 60;
  Samples interval_ack_ms_;
  std::unordered_map<uint64_t, FanoutEntry> fanout_;
  std::unordered_map<int, int> territory_open_;  // open writers per territory
  std::unordered_map<int, int> team_open_;       // open managers per team
  int head_office_open_ = 0;                     // open live head-office sessions
  std::unordered_map<int, uint64_t> territory_records_;
};

// ---- The bare transport: --serve-ack (child process) and its closed-loop client

// A bare session of the ack server. On /sync it answers every message with an ack; on /relay/<group> it also
// forwards each message to every other session of its group, as the server fans a commit out to the writer's
// territory (one frame per receiver, no coalescing, no storage). One write in flight, the rest queued, like
// the server's sessions; everything on the session's strand.
class AckSession : public std::enable_shared_from_this<AckSession> {
 public:
  struct Hub {
    std::mutex mu;
    std::map<std::string, std::vector<std::weak_ptr<AckSession>>> groups;
  };

  AckSession(tcp::socket socket, ssl::context& tls, Bytes ack, Hub& hub)
      : ws_(std::move(socket), tls), ack_(std::move(ack)), hub_(hub) {}

  net::awaitable<void> run() {
    auto self = shared_from_this();
    beast::get_lowest_layer(ws_).expires_after(std::chrono::seconds(15));
    auto [hec] = co_await ws_.next_layer().async_handshake(ssl::stream_base::server, kAwait);
    if (hec) co_return;
    beast::flat_buffer buffer;
    http::request<http::empty_body> req;
    auto [qec, qn] = co_await http::async_read(ws_.next_layer(), buffer, req, kAwait);
    if (qec) co_return;
    beast::get_lowest_layer(ws_).expires_never();
    // The server's WebSocket settings (ws_session.cc): idle timeout with keep-alive pings, binary,
    // unfragmented.
    websocket::stream_base::timeout t;
    t.handshake_timeout = std::chrono::seconds(15);
    t.idle_timeout = std::chrono::seconds(60);
    t.keep_alive_pings = true;
    ws_.set_option(t);
    ws_.read_message_max(fieldsync::tuning::kMaxMessageBytes);
    ws_.binary(true);
    ws_.auto_fragment(false);
    auto [aec] = co_await ws_.async_accept(req, kAwait);
    if (aec) co_return;
    const std::string target(req.target());
    if (target.rfind("/relay/", 0) == 0) {
      group_ = target.substr(7);
      std::lock_guard lock(hub_.mu);
      hub_.groups[group_].push_back(weak_from_this());
    }
    for (;;) {
      auto [rec, n] = co_await ws_.async_read(buffer, kAwait);
      if (rec) break;
      if (!group_.empty()) {
        auto data = buffer.cdata();
        auto message = std::make_shared<const std::vector<uint8_t>>(
            static_cast<const uint8_t*>(data.data()), static_cast<const uint8_t*>(data.data()) + data.size());
        std::vector<std::shared_ptr<AckSession>> peers;
        {
          std::lock_guard lock(hub_.mu);
          for (const auto& w : hub_.groups[group_])
            if (auto peer = w.lock(); peer && peer != self) peers.push_back(std::move(peer));
        }
        for (auto& peer : peers)
          net::post(peer->ws_.get_executor(), [peer, message] { peer->send(message); });
      }
      buffer.consume(n);
      send(ack_);
    }
    // The frame being written, if any, stays queued until its handler runs: the write still reads it.
    closed_ = true;
    if (!writing_) queue_.clear();
  }

 private:
  void send(Bytes frame) {
    if (closed_) return;
    queue_.push_back(std::move(frame));
    if (!writing_) write_next();
  }

  void write_next() {
    writing_ = true;
    ws_.async_write(net::buffer(*queue_.front()), [self = shared_from_this()](beast::error_code ec, size_t) {
      self->writing_ = false;
      self->queue_.pop_front();
      if (ec) self->closed_ = true;
      if (self->closed_) return self->queue_.clear();
      if (!self->queue_.empty()) self->write_next();
    });
  }

  Ws ws_;
  Bytes ack_;
  Hub& hub_;
  std::string group_;
  std::deque<Bytes> queue_;
  bool writing_ = false, closed_ = false;
};

net::awaitable<void> ack_accept_loop(net::io_context& ioc, tcp::acceptor& acceptor, ssl::context& tls,
                                     Bytes ack, AckSession::Hub& hub) {
  for (;;) {
    // Each session on its own strand, like the server's.
    auto [ec, socket] = co_await acceptor.async_accept(net::any_io_executor(net::make_strand(ioc)), kAwait);
    if (ec) {
      if (!acceptor.is_open()) co_return;
      continue;
    }
    beast::error_code ignored;
    socket.set_option(tcp::no_delay(true), ignored);
    auto ex = socket.get_executor();
    auto session = std::make_shared<AckSession>(std::move(socket), tls, ack, hub);
    net::co_spawn(ex, session->run(), net::detached);
  }
}

int serve_ack(const Options& o) {
  fieldsync::Result<std::string> cert = fieldsync::server::read_file(o.cert_file);
  fieldsync::Result<std::string> key = fieldsync::server::read_file(o.key_file);
  if (!cert || !key) {
    std::cerr << "fieldsync-bench-load --serve-ack: needs --cert and --key files\n";
    return 2;
  }
  ssl::context tls(ssl::context::tls_server);
  server_tls(tls, cert.value(), key.value());
  net::io_context ioc;
  tcp::acceptor acceptor(ioc);
  tcp::endpoint ep(net::ip::make_address("127.0.0.1"), 0);
  acceptor.open(ep.protocol());
  acceptor.set_option(net::socket_base::reuse_address(true));
  acceptor.bind(ep);
  acceptor.listen(1024);  // the server's kListenBacklog
  std::cout << "ack server listening on wss://127.0.0.1:" << acceptor.local_endpoint().port() << "/sync"
            << std::endl;
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  AckSession::Hub hub;
  net::co_spawn(
      ioc,
      ack_accept_loop(ioc, acceptor, tls,
                      std::make_shared<const std::vector<uint8_t>>(o.ack_bytes, uint8_t{0x5a}), hub),
      net::detached);
  std::vector<std::thread> threads;  // as many io threads as the server's default: one per core
  for (unsigned i = 0; i < std::max(1u, std::thread::hardware_concurrency()); ++i)
    threads.emplace_back([&ioc] { ioc.run(); });
  int sig = 0;
  sigwait(&set, &sig);
  ioc.stop();
  for (std::thread& t : threads) t.join();
  return 0;
}

struct WsStats {
  bool window = false, stop = false;
  uint64_t messages = 0, bytes = 0, forwarded = 0;
  Samples rtt_ms;
  int opened = 0, failed = 0;
};

// Opens one bare-transport connection and counts it; a failed one also leaves the loop's running count.
net::awaitable<bool> open_counted(Loop& loop, Conn& c, WsStats& st, std::string target) {
  std::string err = co_await c.open(loop.endpoint(), target);
  loop.connect_done();
  if (!err.empty()) {
    st.failed++;
    --loop.running;
    co_return false;
  }
  st.opened++;
  co_return true;
}

// One message in flight per connection: write, then read until the ack. On a relay connection (`group` set)
// the peers' forwarded messages arrive in between and are counted; the ack is told apart by its size.
net::awaitable<void> ws_closed_loop(Loop& loop, WsStats& st, Bytes message, size_t ack_bytes,
                                    std::string group) {
  auto c = std::make_shared<Conn>(loop.ioc(), loop.tls());
  std::string target = group.empty() ? std::string("/sync") : "/relay/" + group;
  if (!co_await open_counted(loop, *c, st, target)) co_return;
  while (!st.stop) {
    const double t = mono_s();
    auto [wec, wn] = co_await c->ws.async_write(net::buffer(*message), kAwait);
    if (wec) break;
    bool acked = false;
    while (!acked) {
      auto [rec, rn] = co_await c->ws.async_read(c->buffer, kAwait);
      if (rec) break;
      c->buffer.consume(rn);
      acked = rn == ack_bytes;
      if (!acked && st.window) st.forwarded++;
    }
    if (!acked) break;
    if (st.window) {
      st.messages++;
      st.bytes += message->size();
      st.rtt_ms.add((mono_s() - t) * 1000);
    }
  }
  c->close();
  --loop.running;
}

net::awaitable<void> ws_idle(Loop& loop, std::vector<std::shared_ptr<Conn>>& conns, WsStats& st) {
  auto c = std::make_shared<Conn>(loop.ioc(), loop.tls());
  conns.push_back(c);
  if (!co_await open_counted(loop, *c, st, "/sync")) co_return;
  for (;;) {  // the reads answer the server's pings
    auto [ec, n] = co_await c->ws.async_read(c->buffer, kAwait);
    if (ec) break;
    c->buffer.consume(n);
  }
  c->close();
  --loop.running;
}

// ---- Phases

struct Env {
  Options o;
  std::string tmp;  // this run's temporary directory
  Report report;
  Checks checks;
  double baseline_rows_s = std::nan("");
  double ws_msgs_s = std::nan(""), ws_relay_msgs_s = std::nan("");
  double ws_relay_changes_s = std::nan("");  // the relay's messages/s as pushes of the load's shape
  // For the targets.
  double sat_fanout_ack_p99 = std::nan(""), paced_fanout_ack_p99 = std::nan("");
  double sat_changes_s = std::nan(""), sat_txns_s = std::nan(""), paced_fanout_p99 = std::nan(""),
         sat_fanout_p99 = std::nan("");
  size_t load_reps_live = 0;
  double idle_rss_total_mib = std::nan(""), idle_rss_base_mib = std::nan("");
  size_t idle_sessions = 0;
  // PostgreSQL mode, by instance count: saturated accepted changes/s, paced cross-instance fan-out.
  int pg_instances = 0;  // of the load run under way (0: SQLite)
  std::map<int, double> pg_sat_changes_s, pg_cross_p50, pg_cross_p99;
  std::map<int, uint64_t> pg_cross_samples;
  int pg_runs = 0;  // databases made so far (each run has a fresh one)
};

void phase_baseline(Env& env) {
  const double seconds = std::clamp(env.o.seconds / 4, 1.0, 5.0);
  if (!env.o.postgres.empty()) {
    progress("baseline: bare PostgreSQL batched upsert for " + fmt(seconds) + " s");
    fieldsync::bench::PgBatchedUpsertBaseline b(env.o.postgres);
    env.baseline_rows_s = b.measure_rows_per_s(seconds);
    env.report.add("baseline", "pg_batched_upsert", env.baseline_rows_s, "rows/s",
                   "wall time; INSERT ... ON CONFLICT DO UPDATE, a statement per row, 1,000 rows/txn, "
                   "synchronous_commit on (BM_BaselinePgBatchedUpsert)");
    env.checks.expect(env.baseline_rows_s > 0, "baseline measured no rows");
    return;
  }
  progress("baseline: bare SQLite batched upsert for " + fmt(seconds) + " s");
  fieldsync::bench::BatchedUpsertBaseline b(env.tmp);
  env.baseline_rows_s = b.measure_rows_per_s(seconds);
  env.report.add("baseline", "sqlite_batched_upsert", env.baseline_rows_s, "rows/s",
                 "wall time; 1,000 rows/txn, WAL, synchronous=NORMAL (BM_BaselineSqliteBatchedUpsert)");
  env.checks.expect(env.baseline_rows_s > 0, "baseline measured no rows");
}

// Waits (the loop running) for a freshly started process to settle, then reads its RSS.
long settled_rss(Loop& loop, ChildProcess& p, double seconds) {
  loop.run_until([] { return false; }, seconds);
  return proc_status_kib(p.pid(), "VmRSS");
}

void phase_ws(Env& env) {
  const Options& o = env.o;
  // Not a structured binding: clang 14 cannot capture one in a lambda (C++20's P1091 came in clang 16).
  const std::pair<Bytes, Bytes> frames = representative_frames(o);
  const Bytes& push = frames.first;
  const Bytes& ack = frames.second;
  progress("ws: bare Beast TLS WebSocket ack server, " + std::to_string(o.reps) + " connections, " +
           std::to_string(push->size()) + "-byte messages answered with " + std::to_string(ack->size()) +
           " bytes");
  fieldsync::Result<fieldsync::server::CertificatePem> pem =
      fieldsync::server::make_self_signed(fieldsync::server::SelfSignedOptions{});
  const std::string cert = env.tmp + "/ack-cert.pem", key = env.tmp + "/ack-key.pem";
  if (!pem || !fieldsync::server::write_file(cert, pem->cert_pem, false) ||
      !fieldsync::server::write_file(key, pem->key_pem, true)) {
    env.checks.expect(false, "ws: cannot write the ack server's certificate");
    return;
  }
  ChildProcess server;
  std::string err;
  const std::string self = std::filesystem::read_symlink("/proc/self/exe").string();
  if (!server.start(
          {self, "--serve-ack", "--cert", cert, "--key", key, "--ack-bytes", std::to_string(ack->size())},
          env.tmp, "ack-server", err)) {
    env.checks.expect(false, "ws: " + err);
    return;
  }
  Loop loop(cert, server.port(), o.connect_concurrency, &server);
  // One closed-loop window over o.reps fresh connections: plain acks, or relayed in territories like the
  // load's.
  struct Window {
    WsStats st;
    double secs = 0, server_cpu = 0, load_cpu = 0;
  };
  auto window = [&](bool relay) {
    Window w;
    WsStats& st = w.st;
    for (int i = 0; i < o.reps; ++i) {
      std::string group = relay ? std::to_string(i / o.territory_size) : "";
      loop.queue_connect([&loop, &st, msg = push, ack_bytes = ack->size(), group] {
        loop.spawn(ws_closed_loop(loop, st, msg, ack_bytes, group));
      });
    }
    loop.run_until([&] { return st.opened + st.failed == o.reps; }, 120);
    const double cpu0 = proc_cpu_s(server.pid()), lcpu0 = self_cpu_s();
    st.window = true;
    const double t0 = mono_s();
    loop.run_until([] { return false; }, o.seconds);
    st.window = false;
    w.secs = mono_s() - t0;
    w.server_cpu = (proc_cpu_s(server.pid()) - cpu0) / w.secs;
    w.load_cpu = (self_cpu_s() - lcpu0) / w.secs;
    st.stop = true;
    loop.run_until([&] { return loop.running == 0; }, 30);
    env.checks.expect(st.failed == 0 && st.opened == o.reps,
                      "ws: " + std::to_string(st.failed) + " connections to the ack server failed");
    env.checks.expect(st.messages > 0, "ws: no message answered");
    return w;
  };

  Window plain = window(false);
  env.ws_msgs_s = static_cast<double>(plain.st.messages) / plain.secs;
  env.report.add("ws", "connections", plain.st.opened, "conns", std::to_string(plain.st.failed) + " failed");
  env.report.add("ws", "message_bytes", static_cast<double>(push->size()), "bytes",
                 "a real PushTxns of the load's shape; answer " + std::to_string(ack->size()) + " bytes");
  env.report.add("ws", "messages_per_s", env.ws_msgs_s, "msgs/s",
                 "closed loop, one in flight per connection");
  env.report.add("ws", "mb_per_s", static_cast<double>(plain.st.bytes) / plain.secs / 1e6, "MB/s",
                 "request bytes");
  env.report.add("ws", "rtt_p50", plain.st.rtt_ms.pct(50), "ms");
  env.report.add("ws", "rtt_p99", plain.st.rtt_ms.pct(99), "ms");
  env.report.add("ws", "server_cpu", plain.server_cpu, "cores");
  env.report.add("ws", "load_process_cpu", plain.load_cpu, "cores",
                 "1.0 = the generator's one thread is saturated");

  // The same with the load's fan-out: what the transport alone allows for one push answered and relayed to
  // the writer's K-1 peers, one frame each, with no storage or merge. A reference, not a strict bound: the
  // load's server may coalesce several commits into one live frame, the relay never does.
  if (o.territory_size > 1) {
    progress("ws: the same, each message also relayed to the " + std::to_string(o.territory_size - 1) +
             " other connections of its territory");
    Window relay = window(true);
    env.checks.expect(relay.st.forwarded > 0, "ws.relay: no message relayed to a peer");
    env.ws_relay_msgs_s = static_cast<double>(relay.st.messages) / relay.secs;
    env.ws_relay_changes_s = env.ws_relay_msgs_s * o.txns_per_rep * o.changes_per_txn;
    const double changes_s = env.ws_relay_changes_s;
    env.report.add(
        "ws.relay", "messages_per_s", env.ws_relay_msgs_s, "msgs/s",
        "closed loop; each answered and relayed to " + std::to_string(o.territory_size - 1) + " peers");
    env.report.add("ws.relay", "relayed_per_s", static_cast<double>(relay.st.forwarded) / relay.secs,
                   "msgs/s", "peers' messages received");
    env.report.add("ws.relay", "rtt_p50", relay.st.rtt_ms.pct(50), "ms");
    env.report.add("ws.relay", "rtt_p99", relay.st.rtt_ms.pct(99), "ms");
    env.report.add("ws.relay", "server_cpu", relay.server_cpu, "cores");
    env.report.add("ws.relay", "load_process_cpu", relay.load_cpu, "cores",
                   "1.0 = the generator's one thread is saturated");
    if (std::isfinite(env.baseline_rows_s))
      env.report.add(
          "ws.relay", "ceiling_changes_vs_baseline", changes_s / env.baseline_rows_s, "x baseline",
          fmt(changes_s, 0) + " changes/s if every relayed message were a push of the load's shape");
  }

  if (o.idle > 0) {
    progress("ws: " + std::to_string(o.idle) + " idle bare TLS WebSocket sessions");
    const long rss0 = settled_rss(loop, server, 0.5);
    WsStats idle;
    std::vector<std::shared_ptr<Conn>> conns;
    conns.reserve(static_cast<size_t>(o.idle));
    for (int i = 0; i < o.idle; ++i)
      loop.queue_connect([&loop, &conns, &idle] { loop.spawn(ws_idle(loop, conns, idle)); });
    const double c0 = mono_s();
    loop.run_until([&] { return idle.opened + idle.failed == o.idle; }, 300);
    const double connect_s = mono_s() - c0;
    const long rss1 = settled_rss(loop, server, 1);
    env.report.add("ws", "idle_sessions", idle.opened, "sessions",
                   std::to_string(idle.failed) + " failed; connected in " + fmt(connect_s) + " s");
    if (idle.opened > 0)
      env.report.add("ws", "idle_rss_per_session", static_cast<double>(rss1 - rss0) / idle.opened, "KiB",
                     "ack server VmRSS " + fmt(rss0 / 1024.0) + " -> " + fmt(rss1 / 1024.0) + " MiB");
    env.checks.expect(idle.failed == 0, "ws: " + std::to_string(idle.failed) + " idle sessions failed");
    for (auto& c : conns) c->close();
    loop.run_until([&] { return loop.running == 0; }, 60);
  }
  std::string end = server.stop();
  env.checks.expect(server.exited_cleanly(), "ws: ack server " + end);
}

struct ServerRun {
  ChildProcess proc;
  std::string data_dir;
  bool ok = false;
};

// `store_url`: --store (PostgreSQL mode); `cert_from`: another instance's data directory whose --dev
// certificate this one reuses, so that one CA file serves every instance.
bool start_server(Env& env, const std::string& name, ServerRun& run, const std::string& store_url = "",
                  const std::string& cert_from = "") {
  const Options& o = env.o;
  run.data_dir = env.tmp + "/" + name + "-data";
  std::vector<std::string> argv = {o.server_bin, "--dev",    "--dev-tokens", "--data-dir",
                                   run.data_dir, "--listen", "127.0.0.1:0"};
  if (!store_url.empty()) {
    argv.push_back("--store");
    argv.push_back(store_url);
  }
  if (!cert_from.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(run.data_dir, ec);
    for (const char* f : {"/dev-cert.pem", "/dev-key.pem"})
      std::filesystem::copy_file(cert_from + f, run.data_dir + f,
                                 std::filesystem::copy_options::overwrite_existing, ec);
  }
  for (const std::string& a : o.server_args) argv.push_back(a);
  std::string err;
  if (!run.proc.start(argv, env.tmp, name + "-server", err)) {
    env.checks.expect(false, name + ": " + err);
    progress(name + ": " + err);
    return false;
  }
  return run.ok = true;
}

// Ends a server run: its exit and what its log says about closed sessions.
void stop_server(Env& env, const std::string& phase, ServerRun& run, bool died) {
  if (died) {
    std::string what =
        "the server died during the phase (" + run.proc.stop() + "); last log lines: " + run.proc.log_tail();
    env.checks.expect(false, phase + ": " + what);
    env.report.add(phase, "server_died", 1, "", what);
    return;
  }
  std::string end = run.proc.stop();
  progress(phase + ": server " + end +
           "; session_close reasons in its log: " + describe(run.proc.close_reasons()));
  env.checks.expect(run.proc.exited_cleanly(), phase + ": fieldsync-server " + end + " on SIGTERM");
  // Its store goes now (its log stays): a saturated run leaves a GiB or more of dirty pages, and the next
  // phase's fdatasyncs should not queue behind the kernel writing back files nobody will read.
  if (run.proc.exited_cleanly() && !env.o.keep_tmp) {
    std::error_code ec;
    std::filesystem::remove_all(run.data_dir, ec);
  }
}

std::string server_args_note(const Options& o) {
  std::string s;
  for (const std::string& a : o.server_args) s += " " + a;
  return s.empty() ? "" : "server args:" + s;
}

// Frames and flushes per second over a window, from two scrapes.
void report_server_counters(Env& env, const std::string& phase, const std::map<std::string, double>& m0,
                            const std::map<std::string, double>& m1, double secs, double txns_s) {
  auto rate = [&](const char* name) -> std::optional<double> {
    auto a = m0.find(name), b = m1.find(name);
    if (a == m0.end() || b == m1.end() || secs <= 0) return std::nullopt;
    return (b->second - a->second) / secs;
  };
  if (auto v = rate("fieldsync_frames_sent_total"))
    env.report.add(phase, "server_frames_sent_per_s", *v, "frames/s", "acks, live batches and answers");
  if (auto v = rate("fieldsync_live_batches_total"))
    env.report.add(phase, "server_live_batches_per_txn", txns_s > 0 ? *v / txns_s : std::nan(""), "batches",
                   "live frames per accepted transaction (" + fmt(*v, 0) + "/s)");
  if (auto v = rate("fieldsync_store_syncs_total"))
    env.report.add(phase, "server_flushes_per_s", *v, "flushes/s", "group commits (one fdatasync each)");
  // The server's own push-to-durable time over the window, from its histogram: the bucket bound the quantile
  // falls under. What the reps see beyond it is queueing before the server reads the push, and transport.
  auto quantile_bound = [&](const std::string& name, double q) -> std::optional<double> {
    std::vector<std::pair<double, double>> cumulative;  // (le, count in the window)
    const std::string prefix = name + "_bucket{le=\"";
    for (const auto& [key, v1] : m1) {
      if (key.rfind(prefix, 0) != 0) continue;
      auto v0 = m0.find(key);
      const std::string le = key.substr(prefix.size(), key.size() - prefix.size() - 2);
      cumulative.emplace_back(le == "+Inf" ? INFINITY : std::atof(le.c_str()),
                              v1 - (v0 == m0.end() ? 0 : v0->second));
    }
    std::sort(cumulative.begin(), cumulative.end());
    if (cumulative.empty() || cumulative.back().second <= 0) return std::nullopt;
    for (const auto& [le, count] : cumulative)
      if (count >= q * cumulative.back().second) return le;
    return std::nullopt;
  };
  for (const auto& [q, figure] :
       {std::pair{0.5, "server_push_durable_p50_le"}, {0.99, "server_push_durable_p99_le"}})
    if (auto le = quantile_bound("fieldsync_push_durable_seconds", q))
      env.report.add(phase, figure, *le * 1000, "ms",
                     "the server's push received -> ack sent, from its histogram's buckets (an upper bound)");
  if (auto le = quantile_bound("fieldsync_store_sync_seconds", 0.99))
    env.report.add(phase, "server_flush_p99_le", *le * 1000, "ms",
                   "one group commit (COMMIT and fdatasync), from its histogram's buckets (an upper bound)");
}

// Returns accepted changes/s.
double report_push_phase(Env& env, const std::string& phase, PhaseStats& s, double server_cpu,
                         double load_cpu) {
  const double secs = s.seconds();
  const double changes_s = static_cast<double>(s.changes_applied) / secs;
  env.report.add(phase, "accepted_changes_per_s", changes_s, "changes/s", server_args_note(env.o));
  env.report.add(phase, "accepted_txns_per_s", static_cast<double>(s.txns_applied) / secs, "txns/s");
  env.report.add(phase, "accepted_records_per_s", static_cast<double>(s.records_applied) / secs, "records/s");
  env.report.add(
      phase, "pushes_acked_per_s", static_cast<double>(s.pushes_acked) / secs, "pushes/s",
      s.pushes_sent ? "avg push " + fmt(static_cast<double>(s.push_bytes) / s.pushes_sent, 0) + " B" : "");
  const uint64_t unanswered = s.pushes_sent - s.pushes_answered;
  env.report.add(phase, "push_to_ack_p50", s.push_ack_ms.pct(50), "ms",
                 "pushes sent in the window, answered by the end of the drain");
  env.report.add(phase, "push_to_ack_p99", s.push_ack_ms.pct(99), "ms",
                 unanswered == 0 ? "every push sent in the window was answered"
                                 : std::to_string(unanswered) + " of " + std::to_string(s.pushes_sent) +
                                       " pushes sent in the window never answered: a lower bound");
  env.report.add(phase, "fanout_ack_to_live_p50", s.fanout_ack_ms.pct(50), "ms",
                 "writer's ack received -> peer's live batch received");
  env.report.add(phase, "fanout_ack_to_live_p99", s.fanout_ack_ms.pct(99), "ms");
  env.report.add(phase, "fanout_push_to_live_p50", s.fanout_push_ms.pct(50), "ms",
                 "writer's push sent -> peer's live batch received");
  env.report.add(phase, "fanout_push_to_live_p99", s.fanout_push_ms.pct(99), "ms");
  env.report.add(phase, "fanout_live_fraction",
                 s.fanout_expected ? static_cast<double>(s.fanout_live) / s.fanout_expected : std::nan(""),
                 "",
                 std::to_string(s.fanout_live) + " live + " + std::to_string(s.fanout_pull) + " by pull of " +
                     std::to_string(s.fanout_expected) + " expected deliveries");
  env.report.add(phase, "server_cpu", server_cpu, "cores");
  env.report.add(phase, "load_process_cpu", load_cpu, "cores",
                 "1.0 = the generator's one thread is saturated");
  if (std::isfinite(env.baseline_rows_s))
    env.report.add(phase, "accepted_changes_vs_baseline", changes_s / env.baseline_rows_s, "x baseline",
                   "accepted changes/s / bare upsert rows/s");
  if (std::isfinite(env.ws_msgs_s))
    env.report.add(phase, "pushes_vs_transport", static_cast<double>(s.pushes_acked) / secs / env.ws_msgs_s,
                   "x ws", "acked pushes/s / bare transport msgs/s");
  if (std::isfinite(env.ws_relay_msgs_s))
    env.report.add(phase, "pushes_vs_relay", static_cast<double>(s.pushes_acked) / secs / env.ws_relay_msgs_s,
                   "x ws.relay", "acked pushes/s / bare relay msgs/s (same fan-out)");
  return changes_s;
}

// The load's sessions, queued to connect: --reps writers in territories of --territory-size, a manager per
// --team-size territories, --head-office live head offices, --bystanders. Returns the number of managers.
// With several server instances a territory's reps connect to instance territory % N and a team's manager
// to team % N: a manager then receives half its team's writes from the other instance.
int add_load_sessions(RepDriver& d, const Options& o, int instances = 1) {
  const auto on = [instances](Rep& r, int instance) -> Rep& {
    r.instance = instance % instances;
    return r;
  };
  const int territories = (o.reps + o.territory_size - 1) / o.territory_size;
  for (int i = 0; i < o.reps; ++i) {
    const int t = i / o.territory_size;
    char user[32];
    std::snprintf(user, sizeof user, "rep%05d", i);
    d.connect(
        on(d.add(t, user, "dev:" + std::string(user) + ":rep:t" + std::to_string(t), Rep::Kind::kWriter), t));
  }
  const int teams = o.team_size > 0 ? (territories + o.team_size - 1) / o.team_size : 0;
  for (int m = 0; m < teams; ++m) {
    char user[32];
    std::snprintf(user, sizeof user, "mgr%04d", m);
    std::string token = "dev:" + std::string(user) + ":manager:";
    for (int t = m * o.team_size; t < std::min(territories, (m + 1) * o.team_size); ++t)
      token += (t == m * o.team_size ? "t" : ",t") + std::to_string(t);
    d.connect(on(d.add(m, user, token, Rep::Kind::kManager), m));
  }
  for (int h = 0; h < o.head_office; ++h) {
    const std::string user = "office" + std::to_string(h);
    d.connect(on(d.add(-1, user, "dev:" + user + ":head_office:", Rep::Kind::kHeadOffice), h));
  }
  for (int b = 0; b < o.bystanders; ++b) {  // territories after the writers' and their managers' ones
    const int t = territories + b;
    char user[32];
    std::snprintf(user, sizeof user, "idle%05d", b);
    d.connect(
        on(d.add(t, user, "dev:" + std::string(user) + ":rep:t" + std::to_string(t), Rep::Kind::kQuiet), t));
  }
  return teams;
}

// After the writes: every written transaction answered, every receiving replica holding exactly the
// acknowledged records of its scope (waiting up to 60 s for the last live batches), no undecodable frame and
// no client or local write error.
void check_replicas(Env& env, const std::string& P, RepDriver& d, Loop& loop, bool drained,
                    const std::function<void()>& every) {
  uint64_t written = 0, applied = 0, rejected = 0, duplicates = 0, pending = 0, resent = 0;
  for (auto& r : d.reps()) {
    written += r->txns_written;
    applied += r->txns_applied;
    rejected += r->txns_rejected;
    duplicates += r->txns_duplicate;
    pending += r->written.size();
    resent += r->pushes_resent;
  }
  auto diverged = [&] {
    size_t n = 0;
    for (auto& r : d.reps())  // a rep that lost its session cannot have converged
      if (r->receiver() ? r->link != Rep::Link::kOpen || r->store.record_count() != d.expected_records(*r)
                        : r->store.record_count() != 0)  // a bystander sees none of the others' records
        ++n;
    return n;
  };
  double next_check = 0;
  const bool converged = drained && loop.run_until(
                                        [&] {
                                          if (mono_s() < next_check) return false;
                                          next_check = mono_s() + 0.25;
                                          return diverged() == 0;
                                        },
                                        60, every);
  const size_t diverged_reps = diverged();
  env.report.add(P, "txns_written", static_cast<double>(written), "txns",
                 std::to_string(applied) + " applied (" + std::to_string(duplicates) +
                     " answered duplicate), " + std::to_string(rejected) + " rejected, " +
                     std::to_string(pending) + " unanswered; " + std::to_string(resent) +
                     " pushes re-sent (after the 15 s request timeout or a reconnect)");
  env.report.add(P, "replicas_converged", static_cast<double>(d.reps().size() - diverged_reps), "reps",
                 std::to_string(diverged_reps) + " differ from the acknowledged records of their scope");
  env.checks.expect(written > 0, P + ": nothing was written");
  env.checks.expect(drained, P + ": not drained: the server did not answer every push and pull in time");
  env.checks.expect(applied == written && pending == 0 && rejected == 0,
                    P + ": " + std::to_string(written) + " txns written, " + std::to_string(applied) +
                        " applied, " + std::to_string(rejected) + " rejected, " + std::to_string(pending) +
                        " unanswered");
  env.checks.expect(converged && diverged_reps == 0,
                    P + ": " + std::to_string(diverged_reps) + " replicas did not converge");
  env.checks.expect(d.decode_errors == 0 && d.write_errors == 0 && d.client_errors.empty(),
                    P + ": " + std::to_string(d.decode_errors) + " undecodable frames, " +
                        std::to_string(d.write_errors) + " local write errors (" + d.first_write_error +
                        "), client errors: " + describe(d.client_errors));
}

// What head office sees: a full bootstrap from the same server holds every acknowledged record.
void check_head_office(Env& env, const std::string& P, RepDriver& d, Loop& loop,
                       const std::function<void()>& every, double timeout_s = 120) {
  Rep& hq = d.add(-1, "hq", "dev:hq:head_office:", Rep::Kind::kQuiet);
  d.connect(hq);
  loop.run_until(
      [&] { return hq.link == Rep::Link::kClosed || (hq.link == Rep::Link::kOpen && hq.client.idle()); },
      timeout_s, every);
  const size_t hq_records = hq.store.record_count();
  env.report.add(P, "head_office_records", static_cast<double>(hq_records), "records",
                 std::to_string(d.total_records()) + " acknowledged");
  env.checks.expect(hq_records == d.total_records(),
                    P + ": head office bootstrap holds " + std::to_string(hq_records) + " records, " +
                        std::to_string(d.total_records()) + " were acknowledged");
}

// One push run: a fresh server, --reps fresh reps connected and live, one window of saturating or paced
// writes, a bounded drain, then the convergence checks (every written transaction acknowledged, every replica
// holding its territory's acknowledged records, a head-office bootstrap holding all of them). Each run has
// its own server so the paced run does not start behind the saturated run's backlog.
void load_run(Env& env, const std::string& P, RepDriver::Mode mode, double paced_rate, PhaseStats& stats) {
  const Options& o = env.o;
  // PostgreSQL mode: a fresh database for this run and env.pg_instances servers on it.
  std::unique_ptr<fieldsync::bench::ScratchDatabase> db;
  if (env.pg_instances > 0)
    db = std::make_unique<fieldsync::bench::ScratchDatabase>(
        o.postgres, "fs_load_" + std::to_string(::getpid()) + "_" + std::to_string(env.pg_runs++));
  const int instances = std::max(1, env.pg_instances);
  std::vector<std::unique_ptr<ServerRun>> servers;
  std::vector<uint16_t> ports;
  std::vector<ChildProcess*> procs;
  for (int i = 0; i < instances; ++i) {
    servers.push_back(std::make_unique<ServerRun>());
    const std::string name = instances > 1 ? P + "-" + std::to_string(i) : P;
    if (!start_server(env, name, *servers.back(), db ? db->url() : "", i > 0 ? servers[0]->data_dir : "")) {
      for (auto& s : servers)
        if (s->ok) stop_server(env, P, *s, false);
      return;
    }
    ports.push_back(servers.back()->proc.port());
    procs.push_back(&servers.back()->proc);
  }
  ServerRun& srv = *servers[0];
  Loop loop(srv.data_dir + "/dev-cert.pem", ports, o.connect_concurrency, procs);
  RepDriver d(loop, o);
  auto every = [&d] { d.every(); };
  auto server_cpu_s = [&] {
    double t = 0;
    for (ChildProcess* p : procs) t += proc_cpu_s(p->pid());
    return t;
  };
  // Counters of every instance, summed (histogram buckets too: they are counts).
  auto scrape_all = [&] {
    std::map<std::string, double> sum;
    for (uint16_t port : ports)
      for (const auto& [k, v] : scrape_metrics(port)) sum[k] += v;
    return sum;
  };
  const long rss0 = settled_rss(loop, srv.proc, 0.5);
  const int territories = (o.reps + o.territory_size - 1) / o.territory_size;
  progress(P + ": " + std::to_string(o.reps) + " reps in " + std::to_string(territories) +
           " territories connecting, bootstrapping and going live" +
           (instances > 1 ? ", spread over " + std::to_string(instances) + " instances" : ""));
  const int teams = add_load_sessions(d, o, instances);
  const double c0 = mono_s();
  bool ok = loop.run_until([&] { return d.all_settled(); }, 300, every);
  const double connect_s = mono_s() - c0;
  const long rss1 = proc_status_kib(srv.proc.pid(), "VmRSS");
  const size_t live = d.open_count();
  const size_t sessions = static_cast<size_t>(o.reps + teams + o.head_office + o.bystanders);
  env.report.add(P, "reps_live", static_cast<double>(live), "sessions",
                 std::to_string(territories) + " territories of " + std::to_string(o.territory_size) +
                     (teams > 0 ? ", " + std::to_string(teams) + " managers of " +
                                      std::to_string(o.team_size) + " territories each"
                                : "") +
                     (o.head_office > 0 ? ", " + std::to_string(o.head_office) + " live head office" : "") +
                     (o.bystanders > 0 ? ", " + std::to_string(o.bystanders) + " idle live reps" : "") +
                     (instances > 1 ? ", over " + std::to_string(instances) + " server instances" : "") +
                     "; connected and synced in " + fmt(connect_s) +
                     " s; failures: " + describe(d.connect_failures));
  env.report.add(
      P, "server_rss_per_live_rep",
      static_cast<double>(rss1 - rss0) / std::max<size_t>(live / static_cast<size_t>(instances), 1), "KiB",
      "VmRSS " + fmt(rss0 / 1024.0) + " -> " + fmt(rss1 / 1024.0) + " MiB" +
          (instances > 1 ? " (instance 0, over its share of the sessions)" : ""));
  env.load_reps_live = live;
  env.checks.expect(ok && live == sessions,
                    P + ": only " + std::to_string(live) + " of " + std::to_string(sessions) +
                        " sessions connected and synced (failures: " + describe(d.connect_failures) + ")");

  bool drained = false;
  if (!loop.server_died()) {
    if (mode == RepDriver::Mode::kSaturate)
      progress(P + ": saturating pushes for " + fmt(o.seconds) + " s (each ack answered with " +
               std::to_string(o.txns_per_rep) + " txn(s) of " + std::to_string(o.changes_per_txn) +
               " changes)");
    else
      progress(P + ": paced writes at " + fmt(paced_rate, 2) + " txns/s for " + fmt(o.seconds) + " s");
    const std::map<std::string, double> m0 = scrape_all();
    const double scpu0 = server_cpu_s(), lcpu0 = self_cpu_s();
    double load0[3] = {0, 0, 0};
    if (getloadavg(load0, 3) < 1) load0[0] = std::nan("");
    d.begin(stats, mode, paced_rate);
    loop.run_until([] { return false; }, o.seconds, every);
    d.end();
    const double scpu1 = server_cpu_s(), lcpu1 = self_cpu_s();
    double load1[3] = {0, 0, 0};
    if (getloadavg(load1, 3) < 1) load1[0] = std::nan("");
    const std::map<std::string, double> m1 = scrape_all();
    env.report.add(P, "load_average_1min", load1[0], "",
                   "at the window's end (" + fmt(load0[0], 2) + " at its start); 2 cores");
    const double drain_s = std::max(30.0, 3 * o.seconds);
    progress(P + ": draining (at most " + fmt(drain_s, 0) + " s)");
    const double d0 = mono_s();
    // Drained: every rep answered and caught up, none of them cut off and the server still alive.
    drained = loop.run_until([&] { return d.all_settled(); }, drain_s, every) && !loop.server_died() &&
              d.unexpected_closes.empty();
    if (mode == RepDriver::Mode::kPaced)
      env.report.add(P, "offered_txns_per_s", paced_rate, "txns/s",
                     o.paced_rate > 0
                         ? std::string("--paced-rate, Poisson per rep")
                         : fmt(o.paced_load, 2) + " x the saturated run's accepted rate, Poisson per rep");
    // Reported after the drain: live batches for commits acknowledged inside the window still count.
    const double changes_s = report_push_phase(env, P, stats, (scpu1 - scpu0) / stats.seconds(),
                                               (lcpu1 - lcpu0) / stats.seconds());
    report_server_counters(env, P, m0, m1, stats.seconds(),
                           static_cast<double>(stats.txns_applied) / stats.seconds());
    if (instances > 1) {
      env.report.add(P, "fanout_cross_instance_push_to_live_p50", stats.fanout_cross_push_ms.pct(50), "ms",
                     std::to_string(stats.fanout_cross_push_ms.size()) +
                         " live deliveries to a session on another instance than the writer's");
      env.report.add(P, "fanout_cross_instance_push_to_live_p99", stats.fanout_cross_push_ms.pct(99), "ms");
      env.report.add(P, "fanout_cross_instance_ack_to_live_p99", stats.fanout_cross_ack_ms.pct(99), "ms",
                     "writer's ack received -> the other instance's session's live batch received");
    }
    if (mode == RepDriver::Mode::kSaturate) {
      env.sat_changes_s = changes_s;
      env.sat_txns_s = static_cast<double>(stats.txns_applied) / stats.seconds();
      env.sat_fanout_p99 = stats.fanout_push_ms.pct(99);
      env.sat_fanout_ack_p99 = stats.fanout_ack_ms.pct(99);
      if (env.pg_instances > 0) env.pg_sat_changes_s[env.pg_instances] = changes_s;
    } else {
      env.paced_fanout_p99 = stats.fanout_push_ms.pct(99);
      env.paced_fanout_ack_p99 = stats.fanout_ack_ms.pct(99);
      if (env.pg_instances > 1) {
        env.pg_cross_p50[env.pg_instances] = stats.fanout_cross_push_ms.pct(50);
        env.pg_cross_p99[env.pg_instances] = stats.fanout_cross_push_ms.pct(99);
        env.pg_cross_samples[env.pg_instances] = stats.fanout_cross_push_ms.size();
      }
    }
    env.report.add(P, "drain", drained ? mono_s() - d0 : std::nan(""), "s",
                   drained ? "every rep acknowledged and caught up after the window"
                   : loop.server_died() || !d.unexpected_closes.empty()
                       ? "NOT drained: sessions were cut off or the server died (see below)"
                       : "NOT drained within " + fmt(drain_s, 0) + " s: the server is still behind");
  }

  check_replicas(env, P, d, loop, drained, every);
  env.checks.expect(stats.fanout_live > 0, P + ": no live fan-out observed");
  // Several instances: a commit on one reached live sessions on another (through the database's
  // notification and that instance's log follower), not only by their pulls.
  // Checked on the saturated run, which has plenty of them; a short paced run may have drawn none.
  if (instances > 1 && teams > 0 && mode == RepDriver::Mode::kSaturate)
    env.checks.expect(stats.fanout_cross_push_ms.size() > 0, P + ": no live cross-instance fan-out observed");
  if (teams > 0 && o.manager_notes > 0)  // their reps' receipts are part of the deliveries checked below
    env.checks.expect(d.notes_acked > 0, P + ": no manager's note was acknowledged");
  env.checks.expect(!drained || stats.fanout_live + stats.fanout_pull == stats.fanout_expected,
                    P + ": fan-out deliveries (live + pull) " +
                        std::to_string(stats.fanout_live + stats.fanout_pull) + " of " +
                        std::to_string(stats.fanout_expected) + " expected");
  env.checks.expect(d.unexpected_closes.empty(), P + ": sessions dropped: " + describe(d.unexpected_closes));
  if (!d.unexpected_closes.empty())
    env.report.add(P, "sessions_dropped", 0, "", describe(d.unexpected_closes));

  if (drained && !loop.server_died()) check_head_office(env, P, d, loop, every);
  bool died = loop.server_died();
  for (ChildProcess* p : procs) died = died || !p->alive();
  if (!died) env.report.add(P, "server_rss_after", proc_status_kib(srv.proc.pid(), "VmRSS") / 1024.0, "MiB");
  d.close_all();
  loop.run_until([&] { return loop.running == 0; }, 60);
  for (auto& s : servers) stop_server(env, P, *s, died && !s->proc.alive());
}

void phase_load(Env& env) {
  if (!env.o.postgres.empty()) {
    // PostgreSQL mode: the saturated and the paced run once per instance count, each on a fresh database.
    for (int n : env.o.instances) {
      env.pg_instances = n;
      const std::string P = "load.pg" + std::to_string(n);
      PhaseStats sat, paced;
      if (env.o.paced_rate > 0) {
        load_run(env, P + ".paced", RepDriver::Mode::kPaced, env.o.paced_rate, paced);
        continue;
      }
      load_run(env, P + ".sat", RepDriver::Mode::kSaturate, 0, sat);
      if (!std::isfinite(env.sat_txns_s) || env.sat_txns_s <= 0) {
        env.checks.expect(false, P + ".paced: skipped, the saturated run accepted nothing");
        continue;
      }
      load_run(env, P + ".paced", RepDriver::Mode::kPaced, env.o.paced_load * env.sat_txns_s, paced);
      env.sat_txns_s = std::nan("");
    }
    env.pg_instances = 0;
    return;
  }
  PhaseStats sat, paced;
  if (env.o.paced_rate > 0) {
    load_run(env, "load.paced", RepDriver::Mode::kPaced, env.o.paced_rate, paced);
    return;
  }
  load_run(env, "load.sat", RepDriver::Mode::kSaturate, 0, sat);
  if (!std::isfinite(env.sat_txns_s) || env.sat_txns_s <= 0) {
    env.checks.expect(false, "load.paced: skipped, the saturated run accepted nothing");
    return;
  }
  load_run(env, "load.paced", RepDriver::Mode::kPaced, env.o.paced_load * env.sat_txns_s, paced);
}

// The soak (scripts/soak.py, docs/PERFORMANCE.md "Soak"): the load's sessions against a server the script
// runs and restarts. Writes paced at --paced-rate for --seconds; every session reconnects whenever it is cut,
// and
// --reconnect-fraction of them also go offline at random; one line of figures every --report-every seconds
// ({"soak_interval": {...}} on stdout); then every session back and caught up, and the convergence checks.
// The server's memory, descriptors and files are the script's to read.
void phase_soak(Env& env) {
  const Options& o = env.o;
  const std::string P = "soak";
  Loop loop(o.ca_file, static_cast<uint16_t>(o.server_port), o.connect_concurrency, nullptr);
  RepDriver d(loop, o);
  auto every = [&d] { d.every(); };
  const int teams = add_load_sessions(d, o);
  d.keep_reconnecting(o.reconnect_fraction, o.reconnect_every_s);
  size_t flaky = 0;
  for (auto& r : d.reps()) flaky += r->flaky;
  progress(P + ": " + std::to_string(d.reps().size()) + " sessions (" + std::to_string(o.reps) + " reps, " +
           std::to_string(teams) + " managers; " + std::to_string(flaky) +
           " going offline at random) connecting to 127.0.0.1:" + std::to_string(o.server_port));
  const double c0 = mono_s();
  const bool synced = loop.run_until([&] { return d.all_synced(); }, 300, every);
  env.report.add(P, "sessions", static_cast<double>(d.open_count()), "sessions",
                 shape_description(o) + "; " + std::to_string(flaky) + " going offline every " +
                     fmt(o.reconnect_every_s, 0) + " s on average; connected and synced in " +
                     fmt(mono_s() - c0) + " s");
  env.checks.expect(synced, P + ": the sessions did not all connect and sync within 300 s");

  progress(P + ": paced writes at " + fmt(o.paced_rate, 1) + " txns/s for " + fmt(o.seconds, 0) + " s");
  PhaseStats stats;
  d.begin(stats, RepDriver::Mode::kPaced, o.paced_rate);
  const double end = stats.t0 + o.seconds;
  uint64_t txns_before = 0;
  while (mono_s() < end) {
    loop.run_until([] { return false; }, std::min(o.report_every_s, end - mono_s()), every);
    Samples acks = d.take_interval_acks();
    const uint64_t cut = total(d.unexpected_closes), refused = total(d.connect_failures);
    const auto number = [](double v) { return std::isfinite(v) ? boost::json::value(v) : nullptr; };
    boost::json::object j;
    j["t_s"] = mono_s() - stats.t0;
    j["sessions_open"] = d.open_count();
    j["pushes_acked"] = acks.size();
    j["txns_applied"] = stats.txns_applied - txns_before;
    j["push_ack_p50_ms"] = number(acks.pct(50));
    j["push_ack_p99_ms"] = number(acks.pct(99));
    j["push_ack_max_ms"] = number(acks.pct(100));
    j["reconnects"] = d.reconnects;
    j["offline_drops"] = d.offline_drops;
    j["sessions_cut"] = cut;
    j["connect_failures"] = refused;
    txns_before = stats.txns_applied;
    std::printf("%s\n", boost::json::serialize(boost::json::object{{"soak_interval", j}}).c_str());
    std::fflush(stdout);
  }
  d.end();

  progress(P + ": writes stopped; waiting for every session to reconnect and catch up");
  const double d0 = mono_s();
  const bool drained = loop.run_until([&] { return d.all_synced(); }, 600, every);
  env.report.add(P, "drain", drained ? mono_s() - d0 : std::nan(""), "s",
                 drained ? "every session connected, acknowledged and caught up after the writes"
                         : "NOT drained within 600 s");
  env.report.add(P, "push_to_ack_p50", stats.push_ack_ms.pct(50), "ms",
                 "pushes answered on the session that sent them");
  env.report.add(P, "push_to_ack_p99", stats.push_ack_ms.pct(99), "ms");
  env.report.add(P, "reconnects", static_cast<double>(d.reconnects), "",
                 std::to_string(d.offline_drops) + " sessions went offline of their own accord");
  env.report.add(P, "sessions_cut", static_cast<double>(total(d.unexpected_closes)), "",
                 "by the server: " + describe(d.unexpected_closes));
  env.report.add(P, "connect_failures", static_cast<double>(total(d.connect_failures)), "",
                 describe(d.connect_failures));
  check_replicas(env, P, d, loop, drained, every);
  // Every acknowledged record from a bootstrap (an hour's writes: a long bootstrap).
  if (drained) check_head_office(env, P, d, loop, every, 600);
  d.close_all();
  loop.run_until([&] { return loop.running == 0; }, 60);
}

void phase_idle(Env& env) {
  const Options& o = env.o;
  const std::string P = "idle";
  if (o.idle == 0) return;
  ServerRun srv;
  if (!start_server(env, "idle", srv)) return;
  Loop loop(srv.data_dir + "/dev-cert.pem", srv.proc.port(), o.connect_concurrency, &srv.proc);
  RepDriver d(loop, o);
  auto every = [&d] { d.every(); };
  const long rss0 = settled_rss(loop, srv.proc, 0.5);
  progress(P + ": " + std::to_string(o.idle) + " sessions: TLS, Hello, bootstrap, live pull, then idle");
  for (int i = 0; i < o.idle; ++i) {
    const int t = i / o.territory_size;
    char user[32];
    std::snprintf(user, sizeof user, "idle%05d", i);
    d.connect(d.add(t, user, "dev:" + std::string(user) + ":rep:t" + std::to_string(t), Rep::Kind::kQuiet));
  }
  const double c0 = mono_s();
  loop.run_until([&] { return d.all_settled(); }, 600, every);
  const double connect_s = mono_s() - c0;
  const size_t open1 = d.open_count();
  const long rss1 = settled_rss(loop, srv.proc, 1);
  loop.run_until([] { return false; }, o.idle_hold_s, every);
  const size_t open2 = d.open_count();
  const long rss2 = proc_status_kib(srv.proc.pid(), "VmRSS");
  const long hwm = proc_status_kib(srv.proc.pid(), "VmHWM");
  const double per_session = static_cast<double>(std::max(rss1, rss2) - rss0) / std::max<size_t>(open1, 1);
  env.report.add(P, "idle_sessions", static_cast<double>(open1), "sessions",
                 "of " + std::to_string(o.idle) + "; connected and synced in " + fmt(connect_s) +
                     " s; failures: " + describe(d.connect_failures));
  env.report.add(P, "idle_sessions_after_hold", static_cast<double>(open2), "sessions",
                 "after " + fmt(o.idle_hold_s) + " s idle");
  env.report.add(P, "server_rss_per_session", per_session, "KiB",
                 "VmRSS " + fmt(rss0 / 1024.0) + " -> " + fmt(rss1 / 1024.0) + " MiB, " + fmt(rss2 / 1024.0) +
                     " MiB after the hold (VmHWM " + fmt(hwm / 1024.0) + " MiB)");
  env.report.add(P, "server_rss_total", std::max(rss1, rss2) / 1024.0, "MiB");
  env.checks.expect(open1 == static_cast<size_t>(o.idle),
                    P + ": " + std::to_string(open1) + " of " + std::to_string(o.idle) +
                        " idle sessions synced (failures: " + describe(d.connect_failures) + ")");
  env.checks.expect(open2 == open1, P + ": " + std::to_string(open1 - open2) +
                                        " idle sessions dropped: " + describe(d.unexpected_closes));
  env.checks.expect(d.client_errors.empty(), P + ": client errors: " + describe(d.client_errors));
  env.idle_rss_total_mib = std::max(rss1, rss2) / 1024.0;
  env.idle_rss_base_mib = rss0 / 1024.0;
  env.idle_sessions = open1;
  const bool died = loop.server_died() || !srv.proc.alive();
  d.close_all();
  loop.run_until([&] { return loop.running == 0; }, 60);
  stop_server(env, P, srv, died);
}

}  // namespace

int main(int argc, char** argv) {
  Env env;
  if (int rc = parse_options(argc, argv, env.o); rc != 0) return rc == 1 ? 0 : 2;
  if (env.o.serve_ack) return serve_ack(env.o);
  Options& o = env.o;

  // 10,000 sessions need 10,000 descriptors here and in the server (which inherits this limit).
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  const uint64_t need = static_cast<uint64_t>(std::max(o.reps, o.idle)) + 100;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < need) {
    std::cerr << "fieldsync-bench-load: RLIMIT_NOFILE is " << rl.rlim_cur << ", " << need
              << " needed; lower --idle/--reps or raise the limit\n";
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  if (o.server_bin.empty())
    o.server_bin =
        (std::filesystem::read_symlink("/proc/self/exe").parent_path() / "fieldsync-server").string();
  std::string tmpl = o.tmp_dir + "/fieldsync-load-XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (!mkdtemp(buf.data())) {
    std::cerr << "fieldsync-bench-load: cannot create a directory under " << o.tmp_dir << "\n";
    return 2;
  }
  env.tmp = buf.data();

  if (o.run("baseline")) phase_baseline(env);
  if (o.run("ws")) phase_ws(env);
  if (o.run("load")) phase_load(env);
  if (o.run("idle")) phase_idle(env);
  if (o.run("soak")) phase_soak(env);

  // Targets (issue 4), reported whether met or not.
  auto verdict = [](bool met) { return std::string(met ? "met" : "MISSED"); };
  // Issue 20's, in PostgreSQL mode: >= 0.3 x the PostgreSQL baseline with one instance, not lower with two;
  // cross-instance fan-out p99 < 250 ms at the paced load with every session connected.
  if (!o.postgres.empty()) {
    std::optional<double> one;
    for (const auto& [n, changes_s] : env.pg_sat_changes_s) {
      if (!std::isfinite(env.baseline_rows_s)) break;
      const double r = changes_s / env.baseline_rows_s;
      if (n == 1) {
        one = r;
        env.report.add("target", "pg1_accepted_changes_ge_0.30_baseline", r, "x baseline",
                       verdict(r >= 0.30) + "; shape " + o.shape + " (" + shape_description(o) + ")");
      } else {
        env.report.add("target", "pg" + std::to_string(n) + "_accepted_changes_not_lower_than_pg1", r,
                       "x baseline",
                       one ? verdict(r >= *one) + " (one instance: " + fmt(*one, 3) + " x)"
                           : std::string("no one-instance run to compare with"));
      }
    }
    for (const auto& [n, p99] : env.pg_cross_p99)
      env.report.add("target", "pg" + std::to_string(n) + "_cross_instance_fanout_p99_lt_250ms", p99, "ms",
                     verdict(p99 < 250) + " (push->live p99, an upper bound; p50 " +
                         fmt(env.pg_cross_p50[n]) + " ms; " + std::to_string(env.pg_cross_samples[n]) +
                         " deliveries) at " + std::to_string(env.load_reps_live) +
                         " connected sessions, paced load");
  }
  if (o.postgres.empty() && std::isfinite(env.sat_changes_s) && std::isfinite(env.baseline_rows_s)) {
    const double r = env.sat_changes_s / env.baseline_rows_s;
    std::string note = verdict(r >= 0.30) + "; shape " + o.shape + " (" + shape_description(o) + ")";
    if (std::isfinite(env.ws_relay_changes_s))  // what the bare transport allows with the same fan-out
      note += "; the bare relay's ceiling " + fmt(env.ws_relay_changes_s / env.baseline_rows_s, 3) + " x";
    env.report.add("target", "accepted_changes_ge_0.30_baseline", r, "x baseline", note);
  }
  // Fan-out is judged on push sent -> peer's live batch: the commit lies between the push and its ack, and
  // the ack alone is no proxy (the server sends it together with the live batches, after building them).
  auto fanout_target = [&](const char* name, double p99, double ack_p99, const char* load) {
    if (!std::isfinite(p99)) return;
    env.report.add("target", name, p99, "ms",
                   verdict(p99 < 100) + " (push->live p99, an upper bound; ack->live p99 " + fmt(ack_p99) +
                       " ms) at " + std::to_string(env.load_reps_live) + " connected sessions, " + load);
  };
  if (o.postgres.empty()) {
    fanout_target("fanout_p99_lt_100ms_paced", env.paced_fanout_p99, env.paced_fanout_ack_p99, "paced load");
    fanout_target("fanout_p99_lt_100ms_saturated", env.sat_fanout_p99, env.sat_fanout_ack_p99, "saturated");
  }
  if (std::isfinite(env.idle_rss_total_mib) && env.idle_sessions >= 10000) {
    env.report.add("target", "idle_10k_sessions_lt_1GiB", env.idle_rss_total_mib, "MiB",
                   verdict(env.idle_rss_total_mib < 1024) + " (" + std::to_string(env.idle_sessions) +
                       " sessions, server VmRSS)");
  } else if (std::isfinite(env.idle_rss_total_mib) && env.idle_sessions > 0) {
    // Fewer sessions than the target's 10,000: the same per-session cost, extrapolated (labelled so).
    const double projected = env.idle_rss_base_mib + (env.idle_rss_total_mib - env.idle_rss_base_mib) /
                                                         static_cast<double>(env.idle_sessions) * 10000;
    env.report.add(
        "target", "idle_10k_sessions_lt_1GiB", projected, "MiB",
        "PROJECTED from " + std::to_string(env.idle_sessions) + " sessions, not measured at 10,000");
  }
  env.report.print();
  for (const std::string& f : env.checks.failures()) std::cerr << "CHECK FAILED: " << f << "\n";
  if (o.keep_tmp || !env.checks.failures().empty()) {
    std::cerr << "fieldsync-bench-load: data and server logs kept in " << env.tmp << "\n";
  } else {
    std::error_code ec;
    std::filesystem::remove_all(env.tmp, ec);
  }
  if (o.check && !env.checks.failures().empty()) return 1;
  return 0;
}
