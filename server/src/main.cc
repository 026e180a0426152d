// fieldsync-server: the sync server. Flags, an optional key=value config file, TLS material (or a generated
// development certificate), the central store, and the network server until SIGTERM/SIGINT drains it.
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <tuple>

#include <openssl/rand.h>
#if FIELDSYNC_TCMALLOC_STATS
#include <gperftools/malloc_extension.h>
#endif

#include "fieldsync/io/cli_options.h"
#include "fieldsync/server/directory.h"
#include "fieldsync/server/log_follower.h"
#include "fieldsync/server/metrics.h"
#include "fieldsync/server/net_server.h"
#include "fieldsync/server/sqlite_store.h"
#include "fieldsync/server/store_open.h"
#include "fieldsync/server/sync_service.h"
#include "fieldsync/server/tls.h"
#include "wall_clock.h"

namespace fs = fieldsync::server;
using fieldsync::ErrorCode;
using fieldsync::Result;
using fieldsync::Status;

namespace {

constexpr const char* kHelp =
    R"(fieldsync-server: the fieldsync sync server (TLS WebSocket endpoint wss://HOST:PORT/sync)

usage: fieldsync-server [--config FILE] [options]

Options (a config file holds the same names without the dashes, one `name = value` per line, `#` comments;
flags given on the command line override the file):
  --config FILE             read options from FILE first
  --listen ADDR:PORT        address and port to listen on (default 0.0.0.0:8443; [::]:8443 for IPv6)
  --data-dir DIR            where the central store (central.db), the directory (directory.db) and generated dev
                            files live (default ./fieldsync-data)
  --store postgresql://USER@HOST:PORT/DB
                            keep the central store and the directory in PostgreSQL instead (created and migrated
                            on start): the server keeps nothing of its own on disk, and any number of servers
                            may run against one database, each commit reaching the devices of every other
                            within milliseconds (LISTEN/NOTIFY). The whole head-office API works on it, its
                            reports, settings and CSV exports included. --data-dir then only holds --dev's
                            generated certificate.
  --cert FILE               TLS certificate chain, PEM (leaf first)
  --key FILE                TLS private key, PEM
  --dev                     development mode: without --cert/--key, generate a self-signed certificate
                            (P-256, CN=localhost, SAN localhost and 127.0.0.1) into DIR/dev-cert.pem and
                            DIR/dev-key.pem (reused on later starts) and print its SHA-256 pin
  --dev-tokens              TEMPORARY, development only: accept unsigned tokens `dev:USER:ROLE:TERRITORY[,...]`
                            (ROLE: rep, manager, head_office) from anyone instead of the directory's signed
                            device tokens. Never expose such a server.
  --threads N               io threads (default: number of cores)
  --max-sessions N          connections served at once; more are closed at accept (default 20000)
  --tls-timeout-ms MS       TCP accept to finished TLS handshake (default 15000)
  --ws-timeout-ms MS        TLS to finished WebSocket upgrade, and the closing handshake (default 15000)
  --idle-timeout-ms MS      a session silent this long (pings go out after half) is closed (default 60000)
  --drain-timeout-ms MS     on SIGTERM, how long sessions get to finish before the server exits (default 10000)
  --max-queue-bytes N       per-session write queue cap in bytes; past it the session is closed (default 8 MiB)
  --max-queue-frames N      per-session write queue cap in frames (default 64)
  --group-commit on|off     on (default): pushes from many sessions share one flush of the store; every
                            acknowledgement still leaves only after its commit is on disk. off: one fsync
                            per commit (SQLite synchronous=FULL; PostgreSQL synchronous_commit on for every
                            commit instead of one flushed commit per group).
  --max-protocol N          the newest sync protocol version sessions may speak (1 or 2; default 2). 1: every
                            device speaks version 1, so no frame is compressed (docs/DESIGN.md section 8)
  --time-zone ZONE          the company's time zone, an IANA name (Europe/Berlin): reports asked without a
                            zone (the dashboard's) are in its days, which the visits-per-day rollup counts;
                            other zones are answered from the visits, slower. Changing it recounts the rollup
                            once on start. Without it the store keeps the zone it has (UTC for a new store).
                            On PostgreSQL the zone is kept in the database for every instance (no rollup).
  --metrics-token TOKEN     GET /metrics requires `Authorization: Bearer TOKEN`; without it /metrics answers
                            loopback peers only
  --help                    this text

Endpoints (one TLS port): GET /sync (WebSocket, the sync protocol), POST /login ({"user", "password",
"node"} -> {"token", "expires_at_ms"}), GET /metrics (Prometheus text), GET /healthz, and the head-office
HTTPS JSON API under /api/v1/ (docs/API.md; not with --dev-tokens).

Authentication: devices present signed tokens issued by the directory (DIR/directory.db: users, devices,
tokens; managed with fieldsync-admin), from POST /login or `fieldsync-admin login`, unless --dev-tokens. With
--dev and an empty directory, a head-office user `admin` is created with a random password, printed once and
kept in DIR/dev-admin-password (mode 0600).

Signals: SIGTERM or SIGINT drains: stop accepting, finish frames in flight and send their answers, close every
session with a close frame, exit 0.
)";

int fail(const Status& s) {
  std::cerr << "fieldsync-server: " << s.message() << "\n";
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  const std::vector<std::string> args(argv + 1, argv + argc);
  for (const std::string& a : args)
    if (a == "--help" || a == "-h") {
      std::cout << kHelp;
      return 0;
    }
  fieldsync::cli::Options cfg(
      {"config", "listen", "data-dir", "store", "cert", "key", "threads", "max-sessions", "tls-timeout-ms",
       "ws-timeout-ms", "idle-timeout-ms", "drain-timeout-ms", "max-queue-bytes", "max-queue-frames",
       "group-commit", "metrics-token", "max-protocol", "time-zone"},
      {"dev", "dev-tokens"}, fieldsync::cli::Options::Repeat::kLastWins);
  if (std::string e = cfg.parse(args); !e.empty())
    return fail(Status(ErrorCode::kInvalidArgument, e + " (see --help)"));
  if (!cfg.words().empty())
    return fail(Status(ErrorCode::kInvalidArgument, "unexpected argument '" + cfg.words().front() + "'"));
  if (cfg.has("config"))
    if (std::string e = cfg.parse_file(cfg.get("config")); !e.empty())
      return fail(Status(ErrorCode::kInvalidArgument, e));
  const auto get = [&](const std::string& k, const std::string& d) { return cfg.get(k, d); };

  fs::NetServerOptions o;
  std::string listen = get("listen", "0.0.0.0:8443");
  size_t colon = listen.rfind(':');
  if (colon == std::string::npos)
    return fail(Status(ErrorCode::kInvalidArgument, "--listen: expected ADDR:PORT"));
  o.address = listen.substr(0, colon);
  if (o.address.size() >= 2 && o.address.front() == '[' && o.address.back() == ']')
    o.address = o.address.substr(1, o.address.size() - 2);
  std::string error;
  {
    fieldsync::cli::Options port({"port"}, {});
    (void)port.parse({"--port", listen.substr(colon + 1)});
    o.port = static_cast<uint16_t>(port.integer("port", 0, 0, 65535, error));
    if (!error.empty())
      return fail(Status(ErrorCode::kInvalidArgument, "--listen: bad port in '" + listen + "'"));
  }
  const auto number = [&](const char* key, int64_t fallback, int64_t lo, int64_t hi) {
    return cfg.integer(key, fallback, lo, hi, error);
  };
  o.threads = static_cast<int>(number("threads", 0, 0, fs::limits::kMaxThreads));
  o.max_sessions =
      static_cast<size_t>(number("max-sessions", static_cast<int64_t>(o.max_sessions), 1, 1'000'000));
  o.tls_handshake_timeout_ms = number("tls-timeout-ms", o.tls_handshake_timeout_ms, 100, 600'000);
  o.ws_handshake_timeout_ms = number("ws-timeout-ms", o.ws_handshake_timeout_ms, 100, 600'000);
  o.idle_timeout_ms = number("idle-timeout-ms", o.idle_timeout_ms, 1000, 3'600'000);
  o.drain_timeout_ms = number("drain-timeout-ms", o.drain_timeout_ms, 0, 600'000);
  o.max_queued_bytes = static_cast<size_t>(number("max-queue-bytes", static_cast<int64_t>(o.max_queued_bytes),
                                                  static_cast<int64_t>(fieldsync::tuning::kMaxMessageBytes),
                                                  int64_t{1} << 32));
  o.max_queued_frames =
      static_cast<size_t>(number("max-queue-frames", static_cast<int64_t>(o.max_queued_frames), 2, 100'000));
  o.sync.max_protocol_version = static_cast<uint32_t>(
      number("max-protocol", fieldsync::protocol::kProtocolVersion, fieldsync::protocol::kMinProtocolVersion,
             fieldsync::protocol::kProtocolVersion));
  if (!error.empty()) return fail(Status(ErrorCode::kInvalidArgument, error));

  std::string data_dir = get("data-dir", "./fieldsync-data");
  const std::string store_location = get("store", data_dir);
  const bool postgres = fs::is_postgresql_url(store_location);
  if (cfg.has("store") && !postgres)
    return fail(Status(ErrorCode::kInvalidArgument,
                       "--store takes a postgresql:// URL; a SQLite store is named by --data-dir"));
  std::error_code fec;
  if (!postgres || cfg.on("dev"))
    std::filesystem::create_directories(data_dir, fec);  // PostgreSQL: stateless
  if (fec)
    return fail(Status(ErrorCode::kStorageIo, "cannot create data dir " + data_dir + ": " + fec.message()));

  // ---- TLS material
  std::string cert_file = get("cert", ""), key_file = get("key", "");
  if (cert_file.empty() != key_file.empty())
    return fail(Status(ErrorCode::kInvalidArgument, "--cert and --key go together"));
  if (cert_file.empty()) {
    if (!cfg.on("dev"))
      return fail(Status(ErrorCode::kInvalidArgument,
                         "no TLS certificate: give --cert FILE --key FILE, or --dev for a self-signed one"));
    cert_file = data_dir + "/dev-cert.pem";
    key_file = data_dir + "/dev-key.pem";
    if (!std::filesystem::exists(cert_file) || !std::filesystem::exists(key_file)) {
      Result<fs::CertificatePem> pem = fs::make_self_signed(fs::SelfSignedOptions{});
      if (!pem) return fail(pem.status());
      if (Status s = fs::write_file(key_file, pem->key_pem, true); !s) return fail(s);
      if (Status s = fs::write_file(cert_file, pem->cert_pem, false); !s) return fail(s);
      std::cout << "fieldsync-server: DEVELOPMENT MODE: generated a self-signed certificate " << cert_file
                << " (key " << key_file << ") for CN=localhost, SAN localhost, 127.0.0.1\n";
    } else {
      std::cout << "fieldsync-server: DEVELOPMENT MODE: using the self-signed certificate " << cert_file
                << "\n";
    }
  }
  Result<std::string> cert_pem = fs::read_file(cert_file);
  if (!cert_pem) return fail(cert_pem.status());
  Result<std::string> key_pem = fs::read_file(key_file);
  if (!key_pem) return fail(key_pem.status());
  o.cert_pem = cert_pem.value();
  o.key_pem = key_pem.value();
  if (Result<std::string> pin = fs::certificate_sha256(o.cert_pem); pin)
    std::cout << "fieldsync-server: certificate SHA-256 pin " << pin.value() << "\n";

  // ---- Store and authentication: THE place where the central store and the authenticator plug in.
  fs::StoreOpenOptions store_options;
  const std::string group_commit = get("group-commit", "on");
  if (group_commit != "on" && group_commit != "off")
    return fail(Status(ErrorCode::kInvalidArgument,
                       "--group-commit: expected on or off, got '" + group_commit + "'"));
  store_options.sqlite.group_commit = group_commit == "on";
  if (cfg.has("time-zone")) store_options.sqlite.time_zone = get("time-zone", "UTC");
  store_options.open_directory = !cfg.on("dev-tokens");
  Result<fs::OpenedStore> opened = fs::open_store(store_location, store_options);
  if (!opened) return fail(opened.status());
  fieldsync::CentralStore& central = *opened->store;
  o.metrics_token = get("metrics-token", "");
  std::unique_ptr<fieldsync::Authenticator> auth;
  fs::Directory* directory = nullptr;
  if (cfg.on("dev-tokens")) {
    auth = std::make_unique<fs::DevAuthenticator>();
    std::cout << "fieldsync-server: DEVELOPMENT TOKENS: accepting dev:USER:ROLE:TERRITORIES from anyone\n";
  } else {
    directory = opened->directory.get();
    auth = std::move(opened->directory);
    if (cfg.on("dev") && directory->users().empty()) {
      // A first development start: someone must be able to log in and administer.
      unsigned char raw[12];
      if (RAND_bytes(raw, sizeof raw) != 1) return fail(Status(ErrorCode::kInternal, "no randomness"));
      const std::string password = fs::base64url_encode(raw);
      if (Status s =
              directory->add_user(fs::User{"admin", "Administrator", fieldsync::schema::Role::kHeadOffice},
                                  password, fs::wall_ms());
          !s)
        return fail(s);
      if (Status s = fs::write_file(data_dir + "/dev-admin-password", password + "\n", true); !s)
        return fail(s);
      std::cout << "fieldsync-server: DEVELOPMENT MODE: created head-office user 'admin' with password "
                << password << " (also in " << data_dir << "/dev-admin-password)\n";
    }
    // The head-office API (/api/v1/, docs/API.md) reads the central store through connections of its own.
    o.directory = directory;
    o.store_path = postgres ? store_location : data_dir + "/" + std::string(fs::kCentralStoreFileName);
    o.login = [directory](const std::string& user, const std::string& password, fieldsync::NodeId node,
                          int64_t now_ms) -> Result<fs::LoginGrant> {
      Result<std::string> token = directory->login(user, password, node, now_ms);
      if (!token) return token.status();
      std::optional<fs::TokenClaims> claims = directory->verify_token(token.value());
      return fs::LoginGrant{token.value(), claims ? claims->expiry_ms : 0};
    };
  }

  // Several servers on one PostgreSQL database: each tells the others of its commits and fans out theirs.
  std::atomic<fs::NetServer*> running{nullptr};
  std::unique_ptr<fs::LogFollower> follower;
  if (postgres) {
    auto f = fs::LogFollower::start(
        store_location,
        [&running] {
          if (fs::NetServer* s = running.load()) s->poll_external_commits();
        },
        [&running](const std::string& payload) {
          // A device revoked or a user disabled through another instance: their sessions here end now.
          if (fs::NetServer* s = running.load()) s->directory_changed(payload);
        });
    if (!f) return fail(f.status());
    follower = std::move(f.value());
    o.after_commit = [f = follower.get()] { f->local_commit(); };
  }

  // Block the stop signals in every thread (the io threads inherit the mask) and wait for them here.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);

  fs::NetServer server(central, *auth, std::move(o));
  if (directory)
    server.set_token_expiry([directory](const std::string& token) -> std::optional<int64_t> {
      if (std::optional<fs::TokenClaims> claims = directory->verify_token(token)) return claims->expiry_ms;
      return std::nullopt;
    });
  server.metrics().gauge("fieldsync_sessions", "Connections open (any stage).",
                         [&server] { return static_cast<double>(server.session_count()); });
  if (fs::SqliteCentralStore* sqlite = opened->sqlite)
    server.metrics().gauge("fieldsync_store_size_bytes", "Size of the central store's database file.",
                           [sqlite] { return static_cast<double>(sqlite->size_bytes()); });
  server.metrics().gauge(
      "fieldsync_server_seq", "Head of the central store's log (last server_seq).", [&central] {
        // NaN (Prometheus' "no value") when the store cannot be read, never a false 0.
        Result<uint64_t> head = central.head_seq();
        return head ? static_cast<double>(*head) : std::numeric_limits<double>::quiet_NaN();
      });
  server.metrics().gauge("fieldsync_group_commit", "1 when pushes share store flushes (--group-commit on).",
                         [&central] { return central.commits_need_sync() ? 1.0 : 0.0; });
#if FIELDSYNC_TCMALLOC_STATS
  // What the server holds against what tcmalloc keeps for it: RSS that stays up after a burst of
  // connections while the allocated bytes fall back is the allocator's cache, not a leak (PERFORMANCE.md).
  const auto tcmalloc_bytes = [](const char* property) {
    size_t v = 0;
    MallocExtension::instance()->GetNumericProperty(property, &v);
    return static_cast<double>(v);
  };
  server.metrics().gauge("fieldsync_heap_allocated_bytes", "Heap bytes in use by the server (tcmalloc).",
                         [tcmalloc_bytes] { return tcmalloc_bytes("generic.current_allocated_bytes"); });
  server.metrics().gauge(
      "fieldsync_heap_free_bytes",
      "Heap bytes tcmalloc holds free and mapped (page heap, central and thread caches).", [tcmalloc_bytes] {
        return tcmalloc_bytes("generic.heap_size") - tcmalloc_bytes("generic.current_allocated_bytes") -
               tcmalloc_bytes("tcmalloc.pageheap_unmapped_bytes");
      });
#endif
  Result<uint16_t> port = server.start();
  if (!port) return fail(port.status());
  running = &server;
  std::cout << "fieldsync-server: listening on wss://" << listen.substr(0, colon) << ":" << port.value()
            << "/sync, data in " << (postgres ? std::string("PostgreSQL") : data_dir) << std::endl;
  int sig = 0;
  sigwait(&set, &sig);
  std::cout << "fieldsync-server: " << (sig == SIGTERM ? "SIGTERM" : "SIGINT") << ", draining" << std::endl;
  running = nullptr;
  server.stop();
  follower.reset();
  return 0;
}
