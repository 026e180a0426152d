#include "fieldsync/server/directory.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <algorithm>
#include <array>
#include <set>

#include "directory_db.h"
#include "fieldsync/sync/tuning.h"

namespace fieldsync::server {

using dirdb::Answer;
using dirdb::Blob;

namespace {

constexpr size_t kSaltBytes = 16;
constexpr size_t kHashBytes = 32;
constexpr size_t kKeyBytes = 32;
constexpr size_t kMacBytes = 32;
constexpr uint8_t kTokenVersion = 1;
constexpr size_t kMinPasswordBytes = 8;
// Node ids below this are the server's own (1: SyncServer's default server_node, 2: fieldsync-admin).
constexpr NodeId kFirstDeviceNode = 16;

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

Directory::Directory(Options options, std::unique_ptr<dirdb::Db> db)
    : options_(options), engine_(db->engine()), db_(std::move(db)) {}
Directory::~Directory() = default;

Result<std::unique_ptr<Directory>> Directory::open(const std::string& location, Options options) {
  Result<std::unique_ptr<dirdb::Db>> db = is_postgresql_url(location)
                                              ? dirdb::open_postgresql(location)
                                              : dirdb::open_sqlite(location, options.busy_timeout_ms);
  if (!db) return db.status();
  std::unique_ptr<Directory> dir(new Directory(options, std::move(db.value())));
  if (Status s = dir->load_or_create_key(); !s) return s;
  return dir;
}

bool is_postgresql_url(std::string_view location) {
  return location.rfind("postgresql://", 0) == 0 || location.rfind("postgres://", 0) == 0;
}

std::string_view Directory::engine() const {
  return engine_;
}

Status Directory::load_or_create_key() {
  MutexLock lock(mu_);
  // Insert-if-absent then read: two servers opening a new directory at once agree on one key, and every
  // instance in front of one PostgreSQL database signs and checks tokens with it.
  const std::vector<uint8_t> fresh = random_bytes(kKeyBytes);
  Answer ins = db_->run("INSERT INTO secrets (name, value) VALUES ('token_key', ?) ON CONFLICT DO NOTHING",
                        {Blob{fresh}});
  if (!ins.ok()) return ins.status;
  Answer q = db_->run("SELECT value FROM secrets WHERE name = 'token_key'");
  if (!q.ok()) return q.status;
  if (q.rows.empty()) return Status(ErrorCode::kStorageCorrupt, "token key missing");
  std::span<const uint8_t> key = q.rows[0][0].as_blob();
  if (key.size() != kKeyBytes) return Status(ErrorCode::kStorageCorrupt, "token key has the wrong size");
  key_.assign(key.begin(), key.end());
  return Status::ok();
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
  Answer a = db_->run(
      "INSERT INTO users (id, display_name, role, pw_salt, pw_hash, pw_iterations, created_at_ms, disabled) "
      "VALUES (?, ?, ?, ?, ?, ?, ?, 0)",
      {user.id, user.display_name, role_name(user), Blob{salt}, Blob{hash},
       int64_t{options_.pbkdf2_iterations}, now_ms});
  if (a.constraint) return invalid("user " + user.id + " already exists");
  return a.status;
}

Status Directory::set_password(const UserId& user, std::string_view password) {
  if (password.size() < kMinPasswordBytes)
    return invalid("password must be at least " + std::to_string(kMinPasswordBytes) + " characters");
  std::vector<uint8_t> salt = random_bytes(kSaltBytes);
  std::vector<uint8_t> hash = hash_password(password, salt, options_.pbkdf2_iterations);
  MutexLock lock(mu_);
  Answer a = db_->run("UPDATE users SET pw_salt = ?, pw_hash = ?, pw_iterations = ? WHERE id = ?",
                      {Blob{salt}, Blob{hash}, int64_t{options_.pbkdf2_iterations}, user});
  if (!a.ok()) return a.status;
  if (a.changes == 0) return invalid("no user " + user);
  return Status::ok();
}

Result<User> Directory::user(const UserId& id) {
  MutexLock lock(mu_);
  Answer a = db_->run("SELECT display_name, role, disabled FROM users WHERE id = ?", {id});
  if (!a.ok()) return a.status;
  if (a.rows.empty()) return invalid("no user " + id);
  const dirdb::Row& r = a.rows[0];
  return user_from(id, r[0].as_text(), r[1].as_text(), r[2].as_int() != 0);
}

std::vector<User> Directory::users() {
  MutexLock lock(mu_);
  std::vector<User> out;
  Answer a = db_->run("SELECT id, display_name, role, disabled FROM users ORDER BY id");
  for (const dirdb::Row& r : a.rows)
    out.push_back(user_from(r[0].as_text(), r[1].as_text(), r[2].as_text(), r[3].as_int() != 0));
  return out;
}

Status Directory::set_role(const UserId& user, const User& role) {
  MutexLock lock(mu_);
  // One transaction: with several servers on one database, nobody sees the new role with the old role's
  // territories or team.
  if (Status s = db_->begin(); !s) return s;
  Status s = set_role_locked(user, role);
  if (!s) {
    db_->rollback();
    return s;
  }
  return db_->commit();
}

Status Directory::set_role_locked(const UserId& user, const User& role) {
  Answer a = db_->run("UPDATE users SET role = ? WHERE id = ?", {role_name(role), user});
  if (!a.ok()) return a.status;
  if (a.changes == 0) return invalid("no user " + user);
  // What the old role implied goes: a head-office user has no territories, a manager's team is theirs only.
  if (!role.partner && role.role == schema::Role::kHeadOffice) {
    if (Answer d = db_->run("DELETE FROM user_territories WHERE user_id = ?", {user}); !d.ok())
      return d.status;
  }
  if (role.partner || role.role != schema::Role::kManager) {
    if (Answer d = db_->run("DELETE FROM teams WHERE manager_id = ?", {user}); !d.ok()) return d.status;
  }
  if (role.partner || role.role != schema::Role::kRep) {
    if (Answer d = db_->run("DELETE FROM teams WHERE rep_id = ?", {user}); !d.ok()) return d.status;
  }
  return Status::ok();
}

Status Directory::set_display_name(const UserId& user, const std::string& display_name) {
  if (display_name.empty()) return invalid("a display name may not be empty");
  MutexLock lock(mu_);
  Answer a = db_->run("UPDATE users SET display_name = ? WHERE id = ?", {display_name, user});
  if (!a.ok()) return a.status;
  if (a.changes == 0) return invalid("no user " + user);
  return Status::ok();
}

Status Directory::set_disabled(const UserId& user, bool disabled) {
  MutexLock lock(mu_);
  Answer a = db_->run("UPDATE users SET disabled = ? WHERE id = ?", {int64_t{disabled ? 1 : 0}, user});
  if (!a.ok()) return a.status;
  if (a.changes == 0) return invalid("no user " + user);
  if (disabled) db_->notify("user:" + user);
  return Status::ok();
}

namespace {
// The first column of every row, as text.
std::vector<std::string> texts(const Answer& a) {
  std::vector<std::string> out;
  for (const dirdb::Row& r : a.rows) out.push_back(r[0].as_text());
  return out;
}
}  // namespace

Result<std::vector<std::string>> Directory::user_territories(const UserId& user) {
  MutexLock lock(mu_);
  Answer a =
      db_->run("SELECT territory_id FROM user_territories WHERE user_id = ? ORDER BY territory_id", {user});
  if (!a.ok()) return a.status;
  return texts(a);
}

Status Directory::unassign_territory(const UserId& user, const std::string& territory) {
  MutexLock lock(mu_);
  return db_->run("DELETE FROM user_territories WHERE user_id = ? AND territory_id = ?", {user, territory})
      .status;
}

Result<std::vector<UserId>> Directory::team(const UserId& manager) {
  MutexLock lock(mu_);
  Answer a = db_->run("SELECT rep_id FROM teams WHERE manager_id = ? ORDER BY rep_id", {manager});
  if (!a.ok()) return a.status;
  return texts(a);
}

Status Directory::unassign_team(const UserId& manager, const UserId& rep) {
  MutexLock lock(mu_);
  return db_->run("DELETE FROM teams WHERE manager_id = ? AND rep_id = ?", {manager, rep}).status;
}

Status Directory::audit(const AuditRecord& r) {
  MutexLock lock(mu_);
  // On PostgreSQL the id comes from audit_head's row, locked until this statement's transaction commits
  // (directory_pg.cc): ids commit in order across instances. SQLite has one writer: its rowid does.
  if (db_->engine() == "postgresql")
    return db_->run(dirdb::kPgAuditInsert, {r.at_ms, r.actor, r.action, r.target, r.detail}).status;
  return db_
      ->run("INSERT INTO audit (at_ms, actor, action, target, detail) VALUES (?, ?, ?, ?, ?)",
            {r.at_ms, r.actor, r.action, r.target, r.detail})
      .status;
}

Result<std::vector<AuditRecord>> Directory::audit_trail(int64_t after_id, size_t limit) {
  MutexLock lock(mu_);
  Answer a =
      db_->run("SELECT id, at_ms, actor, action, target, detail FROM audit WHERE id > ? ORDER BY id LIMIT ?",
               {after_id, static_cast<int64_t>(limit)});
  if (!a.ok()) return a.status;
  std::vector<AuditRecord> out;
  for (const dirdb::Row& r : a.rows)
    out.push_back(AuditRecord{r[0].as_int(), r[1].as_int(), r[2].as_text(), r[3].as_text(), r[4].as_text(),
                              r[5].as_text()});
  return out;
}

Status Directory::set_resolution(const ConflictResolution& r) {
  MutexLock lock(mu_);
  Answer a = db_->run(
      "INSERT INTO conflict_resolutions (conflict_id, resolved_by, at_ms, action, server_seq) VALUES (?, ?, "
      "?, "
      "?, ?)",
      {r.conflict_id, r.resolved_by, r.at_ms, r.action, static_cast<int64_t>(r.server_seq)});
  if (a.constraint) return invalid("conflict " + std::to_string(r.conflict_id) + " is already resolved");
  return a.status;
}

namespace {
constexpr const char* kResolutionColumns =
    "SELECT conflict_id, resolved_by, at_ms, action, server_seq FROM conflict_resolutions";
ConflictResolution resolution_row(const dirdb::Row& r) {
  return ConflictResolution{r[0].as_int(), r[1].as_text(), r[2].as_int(), r[3].as_text(),
                            static_cast<uint64_t>(r[4].as_int())};
}
}  // namespace

Result<std::optional<ConflictResolution>> Directory::resolution(int64_t conflict_id) {
  MutexLock lock(mu_);
  Answer a = db_->run(std::string(kResolutionColumns) + " WHERE conflict_id = ?", {conflict_id});
  if (!a.ok()) return a.status;
  if (a.rows.empty()) return std::optional<ConflictResolution>();
  return std::optional<ConflictResolution>(resolution_row(a.rows[0]));
}

Result<std::vector<ConflictResolution>> Directory::resolutions() {
  MutexLock lock(mu_);
  Answer a = db_->run(kResolutionColumns);
  if (!a.ok()) return a.status;
  std::vector<ConflictResolution> out;
  for (const dirdb::Row& r : a.rows) out.push_back(resolution_row(r));
  return out;
}

Status Directory::add_web_session(const WebSession& s, size_t max_sessions, int64_t idle_ms) {
  MutexLock lock(mu_);
  Answer a = db_->run("DELETE FROM web_sessions WHERE expires_at_ms <= ? OR last_used_ms <= ?",
                      {s.created_ms, s.created_ms - idle_ms});
  if (!a.ok()) return a.status;
  a = db_->run("SELECT COUNT(*) FROM web_sessions");
  if (!a.ok()) return a.status;
  if (!a.rows.empty() && a.rows[0][0].as_int() >= static_cast<int64_t>(max_sessions)) {
    a = db_->run(
        "DELETE FROM web_sessions WHERE key IN (SELECT key FROM web_sessions ORDER BY last_used_ms, key "
        "LIMIT "
        "?)",
        {a.rows[0][0].as_int() - static_cast<int64_t>(max_sessions) + 1});
    if (!a.ok()) return a.status;
  }
  return db_
      ->run(
          "INSERT INTO web_sessions (key, user_id, csrf, bearer, created_ms, last_used_ms, expires_at_ms) "
          "VALUES (?, ?, ?, ?, ?, ?, ?)",
          {s.key, s.user, s.csrf, int64_t{s.bearer ? 1 : 0}, s.created_ms, s.last_used_ms, s.expires_at_ms})
      .status;
}

Result<std::optional<WebSession>> Directory::web_session(const std::string& key) {
  MutexLock lock(mu_);
  Answer a = db_->run(
      "SELECT key, user_id, csrf, bearer, created_ms, last_used_ms, expires_at_ms FROM web_sessions WHERE "
      "key "
      "= ?",
      {key});
  if (!a.ok()) return a.status;
  if (a.rows.empty()) return std::optional<WebSession>();
  const dirdb::Row& r = a.rows[0];
  return std::optional<WebSession>(WebSession{r[0].as_text(), r[1].as_text(), r[2].as_text(),
                                              r[3].as_int() != 0, r[4].as_int(), r[5].as_int(),
                                              r[6].as_int()});
}

Status Directory::touch_web_session(const std::string& key, int64_t now_ms) {
  MutexLock lock(mu_);
  return db_
      ->run("UPDATE web_sessions SET last_used_ms = ? WHERE key = ? AND last_used_ms < ?",
            {now_ms, key, now_ms})
      .status;
}

Status Directory::remove_web_session(const std::string& key) {
  MutexLock lock(mu_);
  return db_->run("DELETE FROM web_sessions WHERE key = ?", {key}).status;
}

Status Directory::remove_web_sessions_of(const UserId& user) {
  MutexLock lock(mu_);
  return db_->run("DELETE FROM web_sessions WHERE user_id = ?", {user}).status;
}

Status Directory::add_territory(const Territory& t) {
  if (!valid_id(t.id) || t.id.size() > 64)
    return invalid("territory id must be 1-64 characters of A-Z a-z 0-9 . _ - @");
  MutexLock lock(mu_);
  Answer a =
      db_->run("INSERT INTO territories (id, name) VALUES (?, ?)", {t.id, t.name.empty() ? t.id : t.name});
  if (a.constraint) return invalid("territory " + t.id + " already exists");
  return a.status;
}

std::vector<Territory> Directory::territories() {
  MutexLock lock(mu_);
  std::vector<Territory> out;
  Answer a = db_->run("SELECT id, name FROM territories ORDER BY id");
  for (const dirdb::Row& r : a.rows) out.push_back(Territory{r[0].as_text(), r[1].as_text()});
  return out;
}

Result<std::string> Directory::role_of_locked(const UserId& user) {
  Answer a = db_->run("SELECT role FROM users WHERE id = ?", {user});
  if (!a.ok()) return a.status;
  if (a.rows.empty()) return invalid("no user " + user);
  return a.rows[0][0].as_text();
}

Status Directory::assign_territory(const UserId& user, const std::string& territory) {
  MutexLock lock(mu_);
  Result<std::string> role = role_of_locked(user);
  if (!role) return role.status();
  if (role_is(*role, schema::Role::kHeadOffice))
    return invalid(user + " is head office and sees every territory already");
  Answer t = db_->run("SELECT 1 FROM territories WHERE id = ?", {territory});
  if (!t.ok()) return t.status;
  if (t.rows.empty()) return invalid("no territory " + territory);
  return db_
      ->run("INSERT INTO user_territories (user_id, territory_id) VALUES (?, ?) ON CONFLICT DO NOTHING",
            {user, territory})
      .status;
}

Status Directory::assign_team(const UserId& manager, const UserId& rep) {
  MutexLock lock(mu_);
  Result<std::string> m = role_of_locked(manager);
  if (!m) return m.status();
  if (!role_is(*m, schema::Role::kManager)) return invalid(manager + " is not a manager");
  Result<std::string> r = role_of_locked(rep);
  if (!r) return r.status();
  if (!role_is(*r, schema::Role::kRep)) return invalid(rep + " is not a rep");
  return db_
      ->run("INSERT INTO teams (manager_id, rep_id) VALUES (?, ?) ON CONFLICT DO NOTHING", {manager, rep})
      .status;
}

// ---- Devices

Status Directory::register_device(NodeId node, const UserId& user, int64_t now_ms) {
  if (node < kFirstDeviceNode) return invalid("node ids below 16 are reserved for the server");
  MutexLock lock(mu_);
  Result<std::string> role = role_of_locked(user);
  if (!role) return role.status();
  if (*role == "partner") return invalid(user + " is a partner: partners sign in with a browser only");
  Answer a = db_->run(
      "INSERT INTO devices (node, user_id, registered_at_ms, revoked, revoked_at_ms) VALUES (?, ?, ?, 0, 0)",
      {static_cast<int64_t>(node), user, now_ms});
  if (a.constraint) return invalid("node " + std::to_string(node) + " is already registered");
  return a.status;
}

Status Directory::revoke_device(NodeId node, int64_t now_ms) {
  MutexLock lock(mu_);
  Answer a = db_->run("UPDATE devices SET revoked = 1, revoked_at_ms = ? WHERE node = ? AND revoked = 0",
                      {now_ms, static_cast<int64_t>(node)});
  if (!a.ok()) return a.status;
  if (a.changes == 0) {
    Answer e = db_->run("SELECT 1 FROM devices WHERE node = ?", {static_cast<int64_t>(node)});
    if (!e.ok()) return e.status;
    if (e.rows.empty()) return invalid("no device " + std::to_string(node));
  }
  db_->notify("device:" + std::to_string(node));
  return Status::ok();  // revoking twice is not an error
}

namespace {
constexpr const char* kDeviceColumns =
    "SELECT node, user_id, registered_at_ms, revoked, revoked_at_ms FROM devices";
Device device_row(const dirdb::Row& r) {
  return Device{static_cast<NodeId>(r[0].as_int()), r[1].as_text(), r[2].as_int(), r[3].as_int() != 0,
                r[4].as_int()};
}
}  // namespace

Result<Device> Directory::device(NodeId node) {
  MutexLock lock(mu_);
  Answer a = db_->run(std::string(kDeviceColumns) + " WHERE node = ?", {static_cast<int64_t>(node)});
  if (!a.ok()) return a.status;
  if (a.rows.empty()) return invalid("no device " + std::to_string(node));
  return device_row(a.rows[0]);
}

std::vector<Device> Directory::devices() {
  MutexLock lock(mu_);
  std::vector<Device> out;
  Answer a = db_->run(std::string(kDeviceColumns) + " ORDER BY user_id, registered_at_ms, node");
  for (const dirdb::Row& r : a.rows) out.push_back(device_row(r));
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

Result<std::optional<Directory::Stored>> Directory::credentials(const UserId& user) {
  MutexLock lock(mu_);
  Answer a = db_->run(
      "SELECT pw_salt, pw_hash, pw_iterations, disabled, display_name, role FROM users WHERE id = ?", {user});
  if (!a.ok()) return a.status;
  if (a.rows.empty()) return std::optional<Stored>();
  const dirdb::Row& r = a.rows[0];
  Stored s;
  std::span<const uint8_t> salt = r[0].as_blob(), hash = r[1].as_blob();
  s.salt.assign(salt.begin(), salt.end());
  s.hash.assign(hash.begin(), hash.end());
  s.iterations = static_cast<uint32_t>(r[2].as_int());
  s.user = user_from(user, r[4].as_text(), r[5].as_text(), r[3].as_int() != 0);
  return std::optional<Stored>(std::move(s));
}

Result<User> Directory::check_password(const UserId& user, std::string_view password) {
  Result<std::optional<Stored>> stored = credentials(user);
  if (!stored) return stored.status();
  const std::optional<Stored>& found = *stored;
  // An unknown user costs the same work as a real check: no user oracle.
  const std::vector<uint8_t> salt = found ? found->salt : std::vector<uint8_t>(kSaltBytes, 0);
  const uint32_t iterations = found ? found->iterations : options_.pbkdf2_iterations;
  std::vector<uint8_t> computed = hash_password(password, salt, iterations);
  const bool match = found && found->hash.size() == computed.size() &&
                     CRYPTO_memcmp(found->hash.data(), computed.data(), computed.size()) == 0;
  if (!match || found->user.disabled)
    return auth_failed();  // a disabled user costs the same and fails the same
  return found->user;
}

Result<std::string> Directory::login(const UserId& user, std::string_view password, NodeId node,
                                     int64_t now_ms) {
  Result<User> checked = check_password(user, password);
  if (!checked) return checked.status();
  if (user.size() > 255) return auth_failed();
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

  // Read from the database at every handshake, never cached: a revocation or a disabled user made through
  // any server (or fieldsync-admin) holds on the next handshake everywhere.
  Result<Device> d = device(node);
  if (!d && d.status().code() != ErrorCode::kInvalidArgument) return d.status();  // the store failed
  if (!d || d->user != user) return auth_failed();
  if (d->revoked) return Status(ErrorCode::kDeviceRevoked, "this device was revoked; erase its local data");
  if (now_ms >= expiry_ms)
    return Status(ErrorCode::kTokenExpired, "the session token expired; sign in again");
  MutexLock lock(mu_);
  return principal_locked(user);
}

Result<Principal> Directory::principal(const UserId& user) {
  MutexLock lock(mu_);
  return principal_locked(user);
}

Result<Principal> Directory::principal_locked(const UserId& user) {
  Principal p;
  p.user = user;
  {
    Answer a = db_->run("SELECT role, disabled FROM users WHERE id = ?", {user});
    if (!a.ok()) return a.status;
    if (a.rows.empty()) return auth_failed();
    if (a.rows[0][1].as_int() != 0) return auth_failed();  // disabled: every token and session stops here
    std::optional<User> role = user_with_role(a.rows[0][0].as_text());
    if (!role) return Status(ErrorCode::kStorageCorrupt, "user " + user + " has an unknown role");
    p.role = role->role;  // a partner writes with a rep's rights within their grants
  }
  if (p.role == schema::Role::kHeadOffice) return p;  // sees everything: can_see never looks at the lists
  std::set<std::string> territories;
  {
    Answer a = db_->run("SELECT territory_id FROM user_territories WHERE user_id = ?", {user});
    if (!a.ok()) return a.status;
    for (const dirdb::Row& r : a.rows) territories.insert(r[0].as_text());
  }
  if (p.role == schema::Role::kManager) {
    Answer a = db_->run(
        "SELECT t.rep_id, ut.territory_id FROM teams t LEFT JOIN user_territories ut ON ut.user_id = "
        "t.rep_id "
        "WHERE t.manager_id = ? ORDER BY t.rep_id",
        {user});
    if (!a.ok()) return a.status;
    for (const dirdb::Row& r : a.rows) {
      const std::string& rep = r[0].as_text();
      if (p.team.empty() || p.team.back() != rep) p.team.push_back(rep);
      if (!r[1].null()) territories.insert(r[1].as_text());
    }
  }
  p.territories.assign(territories.begin(), territories.end());
  return p;
}

}  // namespace fieldsync::server
