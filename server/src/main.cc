// fieldsync-server: the sync server. Flags, an optional key=value config file, TLS material (or a generated
// development certificate), the central store, and the network server until SIGTERM/SIGINT drains it.
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>

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

#include "fieldsync/server/directory.h"
#include "fieldsync/server/metrics.h"
#include "fieldsync/server/net_server.h"
#include "fieldsync/server/sqlite_store.h"
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
  --data-dir DIR            where the central store (central.db) and generated dev files live (default ./fieldsync-data)
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
                            per commit (synchronous=FULL).
  --metrics-token TOKEN     GET /metrics requires `Authorization: Bearer TOKEN`; without it /metrics answers
                            loopback peers only
  --help                    this text

Endpoints (one TLS port): GET /sync (WebSocket, the sync protocol), POST /login ({"user", "password",
"node"} -> {"token", "expires_at_ms"}), GET /metrics (Prometheus text), GET /healthz.

Authentication: devices present signed tokens issued by the directory (DIR/directory.db: users, devices,
tokens; managed with fieldsync-admin), from POST /login or `fieldsync-admin login`, unless --dev-tokens. With
--dev and an empty directory, a head-office user `admin` is created with a random password, printed once and
kept in DIR/dev-admin-password (mode 0600).

Signals: SIGTERM or SIGINT drains: stop accepting, finish frames in flight and send their answers, close every
session with a close frame, exit 0.
)";

struct Config {
  std::map<std::string, std::string> values;
  bool dev = false;
  bool dev_tokens = false;
};

Status parse_config_file(const std::string& path, Config& c) {
  std::ifstream in(path);
  if (!in) return Status(ErrorCode::kInvalidArgument, "cannot read config file " + path);
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (size_t h = line.find('#'); h != std::string::npos) line.resize(h);
    auto trim = [](std::string s) {
      size_t a = s.find_first_not_of(" \t\r"), b = s.find_last_not_of(" \t\r");
      return a == std::string::npos ? std::string() : s.substr(a, b - a + 1);
    };
    line = trim(line);
    if (line.empty()) continue;
    size_t eq = line.find('=');
    if (eq == std::string::npos)
      return Status(ErrorCode::kInvalidArgument, path + ":" + std::to_string(n) + ": expected name = value");
    std::string key = trim(line.substr(0, eq)), value = trim(line.substr(eq + 1));
    bool on = value == "true" || value == "1" || value == "yes";
    if (key == "dev")
      c.dev = on;
    else if (key == "dev-tokens")
      c.dev_tokens = on;
    else
      c.values[key] = value;
  }
  return Status::ok();
}

const char* const kValueFlags[] = {"listen",
                                   "data-dir",
                                   "cert",
                                   "key",
                                   "threads",
                                   "max-sessions",
                                   "tls-timeout-ms",
                                   "ws-timeout-ms",
                                   "idle-timeout-ms",
                                   "drain-timeout-ms",
                                   "max-queue-bytes",
                                   "max-queue-frames",
                                   "group-commit",
                                   "metrics-token"};

bool known(const std::string& k) {
  for (const char* f : kValueFlags)
    if (k == f) return true;
  return false;
}

Result<int64_t> number(const Config& c, const std::string& key, int64_t fallback, int64_t min, int64_t max) {
  auto it = c.values.find(key);
  if (it == c.values.end()) return fallback;
  char* end = nullptr;
  errno = 0;
  long long v = std::strtoll(it->second.c_str(), &end, 10);
  if (errno != 0 || end == it->second.c_str() || *end != '\0' || v < min || v > max)
    return Status(ErrorCode::kInvalidArgument, "--" + key + ": expected a number in [" + std::to_string(min) +
                                                   ", " + std::to_string(max) + "], got '" + it->second +
                                                   "'");
  return static_cast<int64_t>(v);
}

int fail(const Status& s) {
  std::cerr << "fieldsync-server: " << s.message() << "\n";
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  Config cfg;
  Config flags;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      std::cout << kHelp;
      return 0;
    }
    if (a == "--dev") {
      flags.dev = true;
      continue;
    }
    if (a == "--dev-tokens") {
      flags.dev_tokens = true;
      continue;
    }
    if (a.rfind("--", 0) != 0)
      return fail(Status(ErrorCode::kInvalidArgument, "unexpected argument '" + a + "'"));
    std::string key = a.substr(2), value;
    if (size_t eq = key.find('='); eq != std::string::npos) {
      value = key.substr(eq + 1);
      key.resize(eq);
    } else {
      if (i + 1 >= argc) return fail(Status(ErrorCode::kInvalidArgument, a + " needs a value"));
      value = argv[++i];
    }
    if (key == "config") {
      if (Status s = parse_config_file(value, cfg); !s) return fail(s);
      continue;
    }
    if (!known(key))
      return fail(Status(ErrorCode::kInvalidArgument, "unknown option --" + key + " (see --help)"));
    flags.values[key] = value;
  }
  for (auto& [k, v] : cfg.values)
    if (!known(k))
      return fail(Status(ErrorCode::kInvalidArgument, "config file: unknown option '" + k + "'"));
  for (auto& [k, v] : flags.values) cfg.values[k] = v;
  cfg.dev = cfg.dev || flags.dev;
  cfg.dev_tokens = cfg.dev_tokens || flags.dev_tokens;
  auto get = [&](const std::string& k, const std::string& d) {
    auto it = cfg.values.find(k);
    return it == cfg.values.end() ? d : it->second;
  };

  fs::NetServerOptions o;
  std::string listen = get("listen", "0.0.0.0:8443");
  size_t colon = listen.rfind(':');
  if (colon == std::string::npos)
    return fail(Status(ErrorCode::kInvalidArgument, "--listen: expected ADDR:PORT"));
  o.address = listen.substr(0, colon);
  if (o.address.size() >= 2 && o.address.front() == '[' && o.address.back() == ']')
    o.address = o.address.substr(1, o.address.size() - 2);
  {
    Config port_cfg;
    port_cfg.values["listen"] = listen.substr(colon + 1);
    Result<int64_t> port = number(port_cfg, "listen", 0, 0, 65535);
    if (!port) return fail(Status(ErrorCode::kInvalidArgument, "--listen: bad port in '" + listen + "'"));
    o.port = static_cast<uint16_t>(port.value());
  }
  int64_t max_sessions = static_cast<int64_t>(o.max_sessions),
          qbytes = static_cast<int64_t>(o.max_queued_bytes),
          qframes = static_cast<int64_t>(o.max_queued_frames), threads = 0;
  for (auto [key, out, lo, hi] :
       {std::tuple{"threads", &threads, int64_t{0}, int64_t{fs::limits::kMaxThreads}},
        std::tuple{"max-sessions", &max_sessions, int64_t{1}, int64_t{1'000'000}},
        std::tuple{"tls-timeout-ms", &o.tls_handshake_timeout_ms, int64_t{100}, int64_t{600'000}},
        std::tuple{"ws-timeout-ms", &o.ws_handshake_timeout_ms, int64_t{100}, int64_t{600'000}},
        std::tuple{"idle-timeout-ms", &o.idle_timeout_ms, int64_t{1000}, int64_t{3'600'000}},
        std::tuple{"drain-timeout-ms", &o.drain_timeout_ms, int64_t{0}, int64_t{600'000}},
        std::tuple{"max-queue-bytes", &qbytes, static_cast<int64_t>(fieldsync::tuning::kMaxMessageBytes),
                   int64_t{1} << 32},
        std::tuple{"max-queue-frames", &qframes, int64_t{2}, int64_t{100'000}}}) {
    Result<int64_t> v = number(cfg, key, *out, lo, hi);
    if (!v) return fail(v.status());
    *out = v.value();
  }
  o.threads = static_cast<int>(threads);
  o.max_sessions = static_cast<size_t>(max_sessions);
  o.max_queued_bytes = static_cast<size_t>(qbytes);
  o.max_queued_frames = static_cast<size_t>(qframes);

  std::string data_dir = get("data-dir", "./fieldsync-data");
  std::error_code fec;
  std::filesystem::create_directories(data_dir, fec);
  if (fec)
    return fail(Status(ErrorCode::kStorageIo, "cannot create data dir " + data_dir + ": " + fec.message()));

  // ---- TLS material
  std::string cert_file = get("cert", ""), key_file = get("key", "");
  if (cert_file.empty() != key_file.empty())
    return fail(Status(ErrorCode::kInvalidArgument, "--cert and --key go together"));
  if (cert_file.empty()) {
    if (!cfg.dev)
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
  fs::SqliteCentralStore::Options store_options;
  const std::string group_commit = get("group-commit", "on");
  if (group_commit != "on" && group_commit != "off")
    return fail(Status(ErrorCode::kInvalidArgument,
                       "--group-commit: expected on or off, got '" + group_commit + "'"));
  store_options.group_commit = group_commit == "on";
  auto store = fs::SqliteCentralStore::open(data_dir + "/central.db", store_options);
  if (!store) return fail(store.status());
  o.metrics_token = get("metrics-token", "");
  std::unique_ptr<fieldsync::Authenticator> auth;
  fs::Directory* directory = nullptr;
  if (cfg.dev_tokens) {
    auth = std::make_unique<fs::DevAuthenticator>();
    std::cout << "fieldsync-server: DEVELOPMENT TOKENS: accepting dev:USER:ROLE:TERRITORIES from anyone\n";
  } else {
    auto dir =
        fs::Directory::open(data_dir + "/" + std::string(fs::kDirectoryFileName), fs::Directory::Options{});
    if (!dir) return fail(dir.status());
    directory = dir.value().get();
    auth = std::move(dir.value());
    if (cfg.dev && directory->users().empty()) {
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
    o.login = [directory](const std::string& user, const std::string& password, fieldsync::NodeId node,
                          int64_t now_ms) -> Result<fs::LoginGrant> {
      Result<std::string> token = directory->login(user, password, node, now_ms);
      if (!token) return token.status();
      std::optional<fs::TokenClaims> claims = directory->verify_token(token.value());
      return fs::LoginGrant{token.value(), claims ? claims->expiry_ms : 0};
    };
  }

  // Block the stop signals in every thread (the io threads inherit the mask) and wait for them here.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);

  fs::NetServer server(*store.value(), *auth, std::move(o));
  if (directory)
    server.set_token_expiry([directory](const std::string& token) -> std::optional<int64_t> {
      if (std::optional<fs::TokenClaims> claims = directory->verify_token(token)) return claims->expiry_ms;
      return std::nullopt;
    });
  fs::SqliteCentralStore& central = *store.value();
  server.metrics().gauge("fieldsync_sessions", "Connections open (any stage).",
                         [&server] { return static_cast<double>(server.session_count()); });
  server.metrics().gauge("fieldsync_store_size_bytes", "Size of the central store's database file.",
                         [&central] { return static_cast<double>(central.size_bytes()); });
  server.metrics().gauge(
      "fieldsync_server_seq", "Head of the central store's log (last server_seq).", [&central] {
        // NaN (Prometheus' "no value") when the store cannot be read, never a false 0.
        Result<uint64_t> head = central.head_seq();
        return head ? static_cast<double>(*head) : std::numeric_limits<double>::quiet_NaN();
      });
  server.metrics().gauge("fieldsync_group_commit", "1 when pushes share store flushes (--group-commit on).",
                         [&central] { return central.commits_need_sync() ? 1.0 : 0.0; });
  Result<uint16_t> port = server.start();
  if (!port) return fail(port.status());
  std::cout << "fieldsync-server: listening on wss://" << listen.substr(0, colon) << ":" << port.value()
            << "/sync, data in " << data_dir << std::endl;
  int sig = 0;
  sigwait(&set, &sig);
  std::cout << "fieldsync-server: " << (sig == SIGTERM ? "SIGTERM" : "SIGINT") << ", draining" << std::endl;
  server.stop();
  return 0;
}
