#include "fieldsync/server/directory.h"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <set>

#include "fieldsync/io/sqlite_db.h"
#include "fieldsync/sync/tuning.h"

namespace fieldsync::server {

using sqlite::Db;
using sqlite::Stmt;

namespace {

constexpr size_t kSaltBytes = 16;
constexpr size_t kHashBytes = 32;
constexpr size_t kKeyBytes = 32;
constexpr size_t kMacBytes = 32;
constexpr uint8_t kTokenVersion = 1;
constexpr size_t kMinPasswordBytes = 8;
// Node ids below this are the server's own (1: SyncServer's default server_node, 2: fieldsync-admin).
constexpr NodeId kFirstDeviceNode = 16;

const char* const kDdl[] = {
    "CREATE TABLE IF NOT EXISTS users (id TEXT PRIMARY KEY, display_name TEXT NOT NULL, role TEXT NOT NULL, "
    "pw_salt BLOB NOT NULL, pw_hash BLOB NOT NULL, pw_iterations INTEGER NOT NULL, created_at_ms INTEGER NOT "
    "NULL)",
    "CREATE TABLE IF NOT EXISTS territories (id TEXT PRIMARY KEY, name TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS user_territories (user_id TEXT NOT NULL, territory_id TEXT NOT NULL, "
    "PRIMARY KEY (user_id, territory_id))",
    "CREATE TABLE IF NOT EXISTS teams (manager_id TEXT NOT NULL, rep_id TEXT NOT NULL, PRIMARY KEY "
    "(manager_id, "
    "rep_id))",
    "CREATE TABLE IF NOT EXISTS devices (node INTEGER PRIMARY KEY, user_id TEXT NOT NULL, registered_at_ms "
    "INTEGER NOT NULL, revoked INTEGER NOT NULL DEFAULT 0, revoked_at_ms INTEGER NOT NULL DEFAULT 0)",
    "CREATE INDEX IF NOT EXISTS idx_devices_user ON devices (user_id)",
    "CREATE TABLE IF NOT EXISTS secrets (name TEXT PRIMARY KEY, value BLOB NOT NULL)",
    "CREATE TABLE IF NOT EXISTS audit (id INTEGER PRIMARY KEY, at_ms INTEGER NOT NULL, actor TEXT NOT NULL, "
    "action TEXT NOT NULL, target TEXT NOT NULL, detail TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS conflict_resolutions (conflict_id INTEGER PRIMARY KEY, resolved_by TEXT NOT "
    "NULL, at_ms INTEGER NOT NULL, action TEXT NOT NULL, server_seq INTEGER NOT NULL)",
};

Status auth_failed() {
  return Status(ErrorCode::kAuthFailed, "authentication failed");
}

Status invalid(std::string message) {
  return Status(ErrorCode::kInvalidArgument, std::move(message));
}

// Ids travel in tokens with a one-byte length, and on the wire within kMaxIdentifierBytes.
constexpr size_t kMaxIdBytes = std::min<size_t>(255, tuning::kMaxIdentifierBytes);

bool valid_id(std::string_view id) {
  if (id.empty() || id.size() > kMaxIdBytes) return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-' || c == '@';
  });
}

std::vector<uint8_t> random_bytes(size_t n) {
  std::vector<uint8_t> out(n);
  if (RAND_bytes(out.data(), static_cast<int>(n)) != 1) std::abort();  // no entropy: nothing safe to do
  return out;
}

void put_u64(std::vector<uint8_t>& out, uint64_t v) {
  for (int i = 7; i >= 0; --i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}

uint64_t get_u64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | p[i];
  return v;
}

std::array<uint8_t, kMacBytes> mac(std::span<const uint8_t> key, std::span<const uint8_t> data) {
  std::array<uint8_t, kMacBytes> out{};
  unsigned int len = 0;
  if (HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), data.data(), data.size(), out.data(),
           &len) == nullptr ||
      len != kMacBytes)
    std::abort();  // HMAC-SHA256 with valid arguments cannot fail
  return out;
}

bool role_is(const std::string& text, schema::Role role) {
  return schema::role_from_string(text) == role;
}

// A users row's role text and disabled flag as a User (id and display name filled by the caller).
User user_from(std::string id, std::string display_name, const std::string& role, bool disabled) {
  std::optional<User> u = user_with_role(role);
  User out = u.value_or(User{});
  out.id = std::move(id);
  out.display_name = std::move(display_name);
  out.disabled = disabled;
  return out;
}

}  // namespace

std::string_view role_name(const User& user) {
  return user.partner ? std::string_view("partner") : schema::to_string(user.role);
}

std::optional<User> user_with_role(std::string_view role) {
  User u;
  if (role == "partner") {
    u.partner = true;
    return u;
  }
  std::optional<schema::Role> r = schema::role_from_string(role);
  if (!r) return std::nullopt;
  u.role = *r;
  return u;
}

std::vector<uint8_t> hash_password(std::string_view password, std::span<const uint8_t> salt,
                                   uint32_t iterations) {
  std::vector<uint8_t> out(kHashBytes);
  if (PKCS5_PBKDF2_HMAC(password.data(), static_cast<int>(password.size()), salt.data(),
                        static_cast<int>(salt.size()), static_cast<int>(iterations), EVP_sha256(),
                        static_cast<int>(out.size()), out.data()) != 1)
    std::abort();  // only fails on allocation failure
  return out;
}

std::string base64url_encode(std::span<const uint8_t> bytes) {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  out.reserve((bytes.size() * 4 + 2) / 3);
  uint32_t acc = 0;
  int bits = 0;
  for (uint8_t b : bytes) {
    acc = (acc << 8) | b;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out += kAlphabet[(acc >> bits) & 0x3f];
    }
  }
  if (bits > 0) out += kAlphabet[(acc << (6 - bits)) & 0x3f];
  return out;
}

std::optional<std::vector<uint8_t>> base64url_decode(std::string_view text) {
  std::vector<uint8_t> out;
  out.reserve(text.size() * 3 / 4);
  uint32_t acc = 0;
  int bits = 0;
  for (char c : text) {
    int v;
    if (c >= 'A' && c <= 'Z') {
      v = c - 'A';
    } else if (c >= 'a' && c <= 'z') {
      v = c - 'a' + 26;
    } else if (c >= '0' && c <= '9') {
      v = c - '0' + 52;
    } else if (c == '-') {
      v = 62;
    } else if (c == '_') {
      v = 63;
    } else {
      return std::nullopt;
    }
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<uint8_t>(acc >> bits));
    }
  }
  // Leftover bits must be zero padding of less than a byte (one canonical text per byte string).
  if (bits >= 6 || (acc & ((1u << bits) - 1)) != 0) return std::nullopt;
  return out;
}

Directory::Directory(Options options, std::unique_ptr<Db> db) : options_(options), db_(std::move(db)) {}
Directory::~Directory() = default;

Result<std::unique_ptr<Directory>> Directory::open(const std::string& path, Options options) {
  // Create the file owner-only before SQLite opens it: it holds password hashes and the signing key. SQLite
  // gives the -wal and -shm files the same permissions.
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return Status(ErrorCode::kStorageIo, "cannot create " + path);
  const bool chmod_ok = fchmod(fd, 0600) == 0;
  ::close(fd);
  if (!chmod_ok) return Status(ErrorCode::kStorageIo, "cannot make " + path + " owner-only");

  Result<std::unique_ptr<Db>> db = Db::open(
      path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, options.busy_timeout_ms);
  if (!db) return db.status();
  Db& d = **db;
  if (Status s = d.exec("PRAGMA journal_mode = WAL"); !s) return s;
  if (Status s = d.exec("PRAGMA synchronous = FULL"); !s) return s;
  if (Status s = d.exec("BEGIN IMMEDIATE"); !s) return s;
  for (const char* sql : kDdl) {
    if (Status s = d.exec(sql); !s) {
      (void)d.exec("ROLLBACK");
      return s;
    }
  }
  {
    // Files made before the head-office API have no disabled column: added in place.
    bool has_disabled = false;
    {
      Stmt q(d, "SELECT 1 FROM pragma_table_info('users') WHERE name = 'disabled'");
      has_disabled = q.step();
    }
    if (!has_disabled) {
      if (Status s = d.exec("ALTER TABLE users ADD COLUMN disabled INTEGER NOT NULL DEFAULT 0"); !s) {
        (void)d.exec("ROLLBACK");
        return s;
      }
    }
  }
  if (Status s = d.exec("COMMIT"); !s) return s;
  std::unique_ptr<Directory> dir(new Directory(options, std::move(db.value())));
  if (Status s = dir->load_or_create_key(); !s) return s;
  return dir;
}

Status Directory::load_or_create_key() {
  MutexLock lock(mu_);
  // INSERT OR IGNORE then SELECT: two processes opening a new directory at once agree on one key.
  {
    Stmt q(*db_, "INSERT OR IGNORE INTO secrets (name, value) VALUES ('token_key', ?)");
    q.bind_blob(1, random_bytes(kKeyBytes));
    if (Status s = q.run(); !s) return s;
  }
  Stmt q(*db_, "SELECT value FROM secrets WHERE name = 'token_key'");
  if (!q.step()) return q.ok() ? Status(ErrorCode::kStorageCorrupt, "token key missing") : q.status();
  std::span<const uint8_t> key = q.col_blob(0);
  if (key.size() != kKeyBytes) return Status(ErrorCode::kStorageCorrupt, "token key has the wrong size");
  key_.assign(key.begin(), key.end());
  return q.status();
}

// ---- Users and territories

Status Directory::add_user(const User& user, std::string_view password, int64_t now_ms) {
  if (!valid_id(user.id)) return invalid("user id must be 1-255 characters of A-Z a-z 0-9 . _ - @");
  if (user.display_name.empty()) return invalid("user " + user.id + " needs a display name");
  if (password.size() < kMinPasswordBytes)
    return invalid("password must be at least " + std::to_string(kMinPasswordBytes) + " characters");
  std::vector<uint8_t> salt = random_bytes(kSaltBytes);
  std::vector<uint8_t> hash = hash_password(password, salt, options_.pbkdf2_iterations);
  MutexLock lock(mu_);
  Stmt q(
      *db_,
      "INSERT INTO users (id, display_name, role, pw_salt, pw_hash, pw_iterations, created_at_ms) VALUES (?, "
      "?, ?, ?, ?, ?, ?)");
  q.bind(1, std::string_view(user.id))
      .bind(2, std::string_view(user.display_name))
      .bind(3, role_name(user))
      .bind_blob(4, salt)
      .bind_blob(5, hash)
      .bind(6, int64_t{options_.pbkdf2_iterations})
      .bind(7, now_ms);
  Status s = q.run();
  if ((sqlite3_extended_errcode(db_->raw()) & 0xff) == SQLITE_CONSTRAINT && !s)
    return invalid("user " + user.id + " already exists");
  return s;
}

Status Directory::set_password(const UserId& user, std::string_view password) {
  if (password.size() < kMinPasswordBytes)
    return invalid("password must be at least " + std::to_string(kMinPasswordBytes) + " characters");
  std::vector<uint8_t> salt = random_bytes(kSaltBytes);
  std::vector<uint8_t> hash = hash_password(password, salt, options_.pbkdf2_iterations);
  MutexLock lock(mu_);
  Stmt q(*db_, "UPDATE users SET pw_salt = ?, pw_hash = ?, pw_iterations = ? WHERE id = ?");
  q.bind_blob(1, salt).bind_blob(2, hash).bind(3, int64_t{options_.pbkdf2_iterations}).bind(4, user);
  if (Status s = q.run(); !s) return s;
  if (sqlite3_changes(db_->raw()) == 0) return invalid("no user " + user);
  return Status::ok();
}

Result<User> Directory::user(const UserId& id) {
  MutexLock lock(mu_);
  Stmt q(*db_, "SELECT display_name, role, disabled FROM users WHERE id = ?");
  q.bind(1, id);
  if (!q.step()) return q.ok() ? invalid("no user " + id) : q.status();
  return user_from(id, q.col_text(0), q.col_text(1), q.col_int(2) != 0);
}

std::vector<User> Directory::users() {
  MutexLock lock(mu_);
  std::vector<User> out;
  Stmt q(*db_, "SELECT id, display_name, role, disabled FROM users ORDER BY id");
  while (q.step()) out.push_back(user_from(q.col_text(0), q.col_text(1), q.col_text(2), q.col_int(3) != 0));
  return out;
}

Status Directory::set_role(const UserId& user, const User& role) {
  MutexLock lock(mu_);
  Stmt q(*db_, "UPDATE users SET role = ? WHERE id = ?");
  q.bind(1, role_name(role)).bind(2, user);
  if (Status s = q.run(); !s) return s;
  if (sqlite3_changes(db_->raw()) == 0) return invalid("no user " + user);
  // What the old role implied goes: a head-office user has no territories, a manager's team is theirs only.
  if (!role.partner && role.role == schema::Role::kHeadOffice) {
    Stmt d(*db_, "DELETE FROM user_territories WHERE user_id = ?");
    d.bind(1, user);
    if (Status s = d.run(); !s) return s;
  }
  if (role.partner || role.role != schema::Role::kManager) {
    Stmt d(*db_, "DELETE FROM teams WHERE manager_id = ?");
    d.bind(1, user);
    if (Status s = d.run(); !s) return s;
  }
  if (role.partner || role.role != schema::Role::kRep) {
    Stmt d(*db_, "DELETE FROM teams WHERE rep_id = ?");
    d.bind(1, user);
    if (Status s = d.run(); !s) return s;
  }
  return Status::ok();
}

Status Directory::set_display_name(const UserId& user, const std::string& display_name) {
  if (display_name.empty()) return invalid("a display name may not be empty");
  MutexLock lock(mu_);
  Stmt q(*db_, "UPDATE users SET display_name = ? WHERE id = ?");
  q.bind(1, display_name).bind(2, user);
  if (Status s = q.run(); !s) return s;
  if (sqlite3_changes(db_->raw()) == 0) return invalid("no user " + user);
  return Status::ok();
}

Status Directory::set_disabled(const UserId& user, bool disabled) {
  MutexLock lock(mu_);
  Stmt q(*db_, "UPDATE users SET disabled = ? WHERE id = ?");
  q.bind(1, int64_t{disabled ? 1 : 0}).bind(2, user);
  if (Status s = q.run(); !s) return s;
  if (sqlite3_changes(db_->raw()) == 0) return invalid("no user " + user);
  return Status::ok();
}

Result<std::vector<std::string>> Directory::user_territories(const UserId& user) {
  MutexLock lock(mu_);
  std::vector<std::string> out;
  Stmt q(*db_, "SELECT territory_id FROM user_territories WHERE user_id = ? ORDER BY territory_id");
  q.bind(1, user);
  while (q.step()) out.push_back(q.col_text(0));
  if (!q.ok()) return q.status();
  return out;
}

Status Directory::unassign_territory(const UserId& user, const std::string& territory) {
  MutexLock lock(mu_);
  Stmt q(*db_, "DELETE FROM user_territories WHERE user_id = ? AND territory_id = ?");
  q.bind(1, user).bind(2, territory);
  return q.run();
}

Result<std::vector<UserId>> Directory::team(const UserId& manager) {
  MutexLock lock(mu_);
  std::vector<UserId> out;
  Stmt q(*db_, "SELECT rep_id FROM teams WHERE manager_id = ? ORDER BY rep_id");
  q.bind(1, manager);
  while (q.step()) out.push_back(q.col_text(0));
  if (!q.ok()) return q.status();
  return out;
}

Status Directory::unassign_team(const UserId& manager, const UserId& rep) {
  MutexLock lock(mu_);
  Stmt q(*db_, "DELETE FROM teams WHERE manager_id = ? AND rep_id = ?");
  q.bind(1, manager).bind(2, rep);
  return q.run();
}

Status Directory::audit(const AuditRecord& r) {
  MutexLock lock(mu_);
  Stmt q(*db_, "INSERT INTO audit (at_ms, actor, action, target, detail) VALUES (?, ?, ?, ?, ?)");
  q.bind(1, r.at_ms).bind(2, r.actor).bind(3, r.action).bind(4, r.target).bind(5, r.detail);
  return q.run();
}

Result<std::vector<AuditRecord>> Directory::audit_trail(int64_t after_id, size_t limit) {
  MutexLock lock(mu_);
  std::vector<AuditRecord> out;
  Stmt q(*db_, "SELECT id, at_ms, actor, action, target, detail FROM audit WHERE id > ? ORDER BY id LIMIT ?");
  q.bind(1, after_id).bind(2, static_cast<int64_t>(limit));
  while (q.step())
    out.push_back(
        AuditRecord{q.col_int(0), q.col_int(1), q.col_text(2), q.col_text(3), q.col_text(4), q.col_text(5)});
  if (!q.ok()) return q.status();
  return out;
}

Status Directory::set_resolution(const ConflictResolution& r) {
  MutexLock lock(mu_);
  Stmt q(
      *db_,
      "INSERT INTO conflict_resolutions (conflict_id, resolved_by, at_ms, action, server_seq) VALUES (?, ?, "
      "?, ?, ?)");
  q.bind(1, r.conflict_id)
      .bind(2, r.resolved_by)
      .bind(3, r.at_ms)
      .bind(4, r.action)
      .bind(5, static_cast<int64_t>(r.server_seq));
  Status s = q.run();
  if (!s && (sqlite3_extended_errcode(db_->raw()) & 0xff) == SQLITE_CONSTRAINT)
    return invalid("conflict " + std::to_string(r.conflict_id) + " is already resolved");
  return s;
}

namespace {
ConflictResolution resolution_row(Stmt& q) {
  return ConflictResolution{q.col_int(0), q.col_text(1), q.col_int(2), q.col_text(3),
                            static_cast<uint64_t>(q.col_int(4))};
}
}  // namespace

Result<std::optional<ConflictResolution>> Directory::resolution(int64_t conflict_id) {
  MutexLock lock(mu_);
  Stmt q(*db_,
         "SELECT conflict_id, resolved_by, at_ms, action, server_seq FROM conflict_resolutions WHERE "
         "conflict_id = ?");
  q.bind(1, conflict_id);
  if (q.step()) return std::optional<ConflictResolution>(resolution_row(q));
  if (!q.ok()) return q.status();
  return std::optional<ConflictResolution>();
}

Result<std::vector<ConflictResolution>> Directory::resolutions() {
  MutexLock lock(mu_);
  std::vector<ConflictResolution> out;
  Stmt q(*db_, "SELECT conflict_id, resolved_by, at_ms, action, server_seq FROM conflict_resolutions");
  while (q.step()) out.push_back(resolution_row(q));
  if (!q.ok()) return q.status();
  return out;
}

Status Directory::add_territory(const Territory& t) {
  if (!valid_id(t.id) || t.id.size() > 64)
    return invalid("territory id must be 1-64 characters of A-Z a-z 0-9 . _ - @");
  MutexLock lock(mu_);
  Stmt q(*db_, "INSERT INTO territories (id, name) VALUES (?, ?)");
  q.bind(1, t.id).bind(2, t.name.empty() ? t.id : t.name);
  Status s = q.run();
  if (!s && (sqlite3_extended_errcode(db_->raw()) & 0xff) == SQLITE_CONSTRAINT)
    return invalid("territory " + t.id + " already exists");
  return s;
}

std::vector<Territory> Directory::territories() {
  MutexLock lock(mu_);
  std::vector<Territory> out;
  Stmt q(*db_, "SELECT id, name FROM territories ORDER BY id");
  while (q.step()) out.push_back(Territory{q.col_text(0), q.col_text(1)});
  return out;
}

Status Directory::assign_territory(const UserId& user, const std::string& territory) {
  MutexLock lock(mu_);
  {
    Stmt q(*db_, "SELECT role FROM users WHERE id = ?");
    q.bind(1, user);
    if (!q.step()) return q.ok() ? invalid("no user " + user) : q.status();
    if (role_is(q.col_text(0), schema::Role::kHeadOffice))
      return invalid(user + " is head office and sees every territory already");
  }
  {
    Stmt q(*db_, "SELECT 1 FROM territories WHERE id = ?");
    q.bind(1, territory);
    if (!q.step()) return q.ok() ? invalid("no territory " + territory) : q.status();
  }
  Stmt q(*db_, "INSERT OR IGNORE INTO user_territories (user_id, territory_id) VALUES (?, ?)");
  q.bind(1, user).bind(2, territory);
  return q.run();
}

Status Directory::assign_team(const UserId& manager, const UserId& rep) {
  MutexLock lock(mu_);
  auto role_of = [&](const UserId& id) -> Result<std::string> {
    mu_.assert_held();  // called below, under the lock; the analysis does not follow lambdas
    Stmt q(*db_, "SELECT role FROM users WHERE id = ?");
    q.bind(1, id);
    if (!q.step()) return q.ok() ? invalid("no user " + id) : q.status();
    return q.col_text(0);
  };
  Result<std::string> m = role_of(manager);
  if (!m) return m.status();
  if (!role_is(*m, schema::Role::kManager)) return invalid(manager + " is not a manager");
  Result<std::string> r = role_of(rep);
  if (!r) return r.status();
  if (!role_is(*r, schema::Role::kRep)) return invalid(rep + " is not a rep");
  Stmt q(*db_, "INSERT OR IGNORE INTO teams (manager_id, rep_id) VALUES (?, ?)");
  q.bind(1, manager).bind(2, rep);
  return q.run();
}

// ---- Devices

Status Directory::register_device(NodeId node, const UserId& user, int64_t now_ms) {
  if (node < kFirstDeviceNode) return invalid("node ids below 16 are reserved for the server");
  MutexLock lock(mu_);
  {
    Stmt q(*db_, "SELECT role FROM users WHERE id = ?");
    q.bind(1, user);
    if (!q.step()) return q.ok() ? invalid("no user " + user) : q.status();
    if (q.col_text(0) == "partner")
      return invalid(user + " is a partner: partners sign in with a browser only");
  }
  Stmt q(*db_, "INSERT INTO devices (node, user_id, registered_at_ms) VALUES (?, ?, ?)");
  q.bind(1, static_cast<int64_t>(node)).bind(2, user).bind(3, now_ms);
  Status s = q.run();
  if (!s && (sqlite3_extended_errcode(db_->raw()) & 0xff) == SQLITE_CONSTRAINT)
    return invalid("node " + std::to_string(node) + " is already registered");
  return s;
}

Status Directory::revoke_device(NodeId node, int64_t now_ms) {
  MutexLock lock(mu_);
  Stmt q(*db_, "UPDATE devices SET revoked = 1, revoked_at_ms = ? WHERE node = ? AND revoked = 0");
  q.bind(1, now_ms).bind(2, static_cast<int64_t>(node));
  if (Status s = q.run(); !s) return s;
  if (sqlite3_changes(db_->raw()) == 0) {
    Stmt e(*db_, "SELECT 1 FROM devices WHERE node = ?");
    e.bind(1, static_cast<int64_t>(node));
    if (!e.step()) return e.ok() ? invalid("no device " + std::to_string(node)) : e.status();
  }
  return Status::ok();  // revoking twice is not an error
}

namespace {
Device device_row(Stmt& q) {
  return Device{static_cast<NodeId>(q.col_int(0)), q.col_text(1), q.col_int(2), q.col_int(3) != 0,
                q.col_int(4)};
}
}  // namespace

Result<Device> Directory::device(NodeId node) {
  MutexLock lock(mu_);
  Stmt q(*db_, "SELECT node, user_id, registered_at_ms, revoked, revoked_at_ms FROM devices WHERE node = ?");
  q.bind(1, static_cast<int64_t>(node));
  if (!q.step()) return q.ok() ? invalid("no device " + std::to_string(node)) : q.status();
  return device_row(q);
}

std::vector<Device> Directory::devices() {
  MutexLock lock(mu_);
  std::vector<Device> out;
  Stmt q(*db_,
         "SELECT node, user_id, registered_at_ms, revoked, revoked_at_ms FROM devices ORDER BY user_id, "
         "registered_at_ms, node");
  while (q.step()) out.push_back(device_row(q));
  return out;
}

// ---- Login and tokens

std::string Directory::sign(const UserId& user, NodeId node, int64_t expiry_ms) {
  std::vector<uint8_t> body;
  body.push_back(kTokenVersion);
  put_u64(body, static_cast<uint64_t>(expiry_ms));
  put_u64(body, node);
  body.push_back(static_cast<uint8_t>(user.size()));
  body.insert(body.end(), user.begin(), user.end());
  std::array<uint8_t, kMacBytes> m = mac(key_, body);
  body.insert(body.end(), m.begin(), m.end());
  return base64url_encode(body);
}

Result<std::string> Directory::login(const UserId& user, std::string_view password, NodeId node,
                                     int64_t now_ms) {
  std::vector<uint8_t> salt, hash;
  uint32_t iterations = options_.pbkdf2_iterations;
  bool known = false;
  {
    MutexLock lock(mu_);
    Stmt q(*db_, "SELECT pw_salt, pw_hash, pw_iterations, disabled FROM users WHERE id = ?");
    q.bind(1, user);
    if (q.step()) {
      known = q.col_int(3) == 0;  // a disabled user costs the same work and fails the same way
      std::span<const uint8_t> s = q.col_blob(0), h = q.col_blob(1);
      salt.assign(s.begin(), s.end());
      hash.assign(h.begin(), h.end());
      iterations = static_cast<uint32_t>(q.col_int(2));
    } else if (!q.ok()) {
      return q.status();
    }
  }
  if (!known) salt = std::vector<uint8_t>(kSaltBytes, 0);  // same work as a real check: no user oracle
  std::vector<uint8_t> computed = hash_password(password, salt, iterations);
  bool match = known && hash.size() == computed.size() &&
               CRYPTO_memcmp(hash.data(), computed.data(), hash.size()) == 0;
  if (!match || user.size() > 255) return auth_failed();
  Result<Device> d = device(node);
  if (!d || d->user != user || d->revoked) return auth_failed();
  return sign(user, node, now_ms + options_.token_ttl_ms);
}

std::optional<TokenClaims> Directory::verify_token(std::string_view token) const {
  std::optional<std::vector<uint8_t>> raw = base64url_decode(token);
  constexpr size_t kFixed = 1 + 8 + 8 + 1;
  if (!raw || raw->size() < kFixed + kMacBytes || (*raw)[0] != kTokenVersion) return std::nullopt;
  const size_t user_len = (*raw)[17];
  if (raw->size() != kFixed + user_len + kMacBytes) return std::nullopt;
  std::span<const uint8_t> body(raw->data(), kFixed + user_len);
  std::array<uint8_t, kMacBytes> expected = mac(key_, body);
  if (CRYPTO_memcmp(expected.data(), raw->data() + body.size(), kMacBytes) != 0) return std::nullopt;
  return TokenClaims{UserId(reinterpret_cast<const char*>(raw->data() + kFixed), user_len),
                     get_u64(raw->data() + 9), static_cast<int64_t>(get_u64(raw->data() + 1))};
}

Result<Principal> Directory::authenticate(const protocol::Hello& hello, int64_t now_ms) {
  std::optional<TokenClaims> claims = verify_token(hello.token);
  if (!claims) return auth_failed();
  const UserId& user = claims->user;
  const NodeId node = claims->node;
  const int64_t expiry_ms = claims->expiry_ms;
  if (node != hello.node) return auth_failed();  // a token stolen from another device

  Result<Device> d = device(node);
  if (!d || d->user != user) return auth_failed();
  if (d->revoked) return Status(ErrorCode::kDeviceRevoked, "this device was revoked; erase its local data");
  if (now_ms >= expiry_ms)
    return Status(ErrorCode::kTokenExpired, "the session token expired; sign in again");
  MutexLock lock(mu_);
  return principal_locked(user);
}

Result<User> Directory::check_password(const UserId& user, std::string_view password) {
  std::vector<uint8_t> salt, hash;
  uint32_t iterations = options_.pbkdf2_iterations;
  std::optional<User> found;
  {
    MutexLock lock(mu_);
    Stmt q(*db_,
           "SELECT pw_salt, pw_hash, pw_iterations, disabled, display_name, role FROM users WHERE id = ?");
    q.bind(1, user);
    if (q.step()) {
      std::span<const uint8_t> s = q.col_blob(0), h = q.col_blob(1);
      salt.assign(s.begin(), s.end());
      hash.assign(h.begin(), h.end());
      iterations = static_cast<uint32_t>(q.col_int(2));
      found = user_from(user, q.col_text(4), q.col_text(5), q.col_int(3) != 0);
    } else if (!q.ok()) {
      return q.status();
    }
  }
  if (!found) salt = std::vector<uint8_t>(kSaltBytes, 0);  // same work as a real check: no user oracle
  std::vector<uint8_t> computed = hash_password(password, salt, iterations);
  const bool match = found && hash.size() == computed.size() &&
                     CRYPTO_memcmp(hash.data(), computed.data(), hash.size()) == 0;
  if (!match || found->disabled) return auth_failed();
  return *found;
}

Result<Principal> Directory::principal(const UserId& user) {
  MutexLock lock(mu_);
  return principal_locked(user);
}

Result<Principal> Directory::principal_locked(const UserId& user) {
  Principal p;
  p.user = user;
  {
    Stmt q(*db_, "SELECT role, disabled FROM users WHERE id = ?");
    q.bind(1, user);
    if (!q.step()) return q.ok() ? auth_failed() : q.status();
    if (q.col_int(1) != 0) return auth_failed();  // disabled: every token and session stops here
    std::optional<User> role = user_with_role(q.col_text(0));
    if (!role) return Status(ErrorCode::kStorageCorrupt, "user " + user + " has an unknown role");
    p.role = role->role;  // a partner writes with a rep's rights within their grants
  }
  if (p.role == schema::Role::kHeadOffice) return p;  // sees everything: can_see never looks at the lists
  std::set<std::string> territories;
  {
    Stmt q(*db_, "SELECT territory_id FROM user_territories WHERE user_id = ?");
    q.bind(1, user);
    while (q.step()) territories.insert(q.col_text(0));
    if (!q.ok()) return q.status();
  }
  if (p.role == schema::Role::kManager) {
    Stmt q(*db_,
           "SELECT t.rep_id, ut.territory_id FROM teams t LEFT JOIN user_territories ut ON ut.user_id = "
           "t.rep_id "
           "WHERE t.manager_id = ? ORDER BY t.rep_id");
    q.bind(1, user);
    while (q.step()) {
      std::string rep = q.col_text(0);
      if (p.team.empty() || p.team.back() != rep) p.team.push_back(rep);
      if (!q.col_null(1)) territories.insert(q.col_text(1));
    }
    if (!q.ok()) return q.status();
  }
  p.territories.assign(territories.begin(), territories.end());
  return p;
}

}  // namespace fieldsync::server
