// Users, territories, assignments, devices and signed device tokens: who may connect and what they may see.
//
// Stored in its own SQLite file (`directory.db` in the server's data directory, created mode 0600 because it
// holds password hashes and the token signing key), or in PostgreSQL (the schema `fieldsync_directory` of the
// database the central store uses) when several servers share one database. The same tables either way:
//   users            id PRIMARY KEY, display_name, role ("rep", "manager", "head_office", "partner"), pw_salt
//                    (16 random bytes), pw_hash (32 bytes of PBKDF2-HMAC-SHA256), pw_iterations,
//                    created_at_ms, disabled (0/1, added in place to older files)
//   territories      id PRIMARY KEY, name
//   user_territories (user_id, territory_id): a rep's territories, a manager's own, or a partner's grants
//   teams            (manager_id, rep_id): a manager's reps; the manager sees their territories and calendars
//   devices          node PRIMARY KEY (unique across users), user_id, registered_at_ms, revoked,
//                    revoked_at_ms
//   secrets          name PRIMARY KEY, value: the token signing key, 32 random bytes made on first use
//   audit            id INTEGER PRIMARY KEY, at_ms, actor, action, target, detail: who changed people and
//                    devices, when, what (the head-office API writes it; fieldsync-admin's own commands do
//                    not)
//   conflict_resolutions  conflict_id PRIMARY KEY, resolved_by, at_ms, action, server_seq: the conflict
//   inbox's
//                    "resolved" marks (the conflict log itself lives in the central store)
//
// Tokens: base64url (no padding) of  version(1) | expiry_ms(8, big-endian) | node(8) | user_len(1) | user |
// HMAC-SHA256(key, everything before it)(32). They bind a user to one registered device until expiry.
//
// Nothing of it is cached but the signing key: every handshake reads the device and the user, so with
// several servers on one PostgreSQL database a revocation or a disabled user made through any of them holds
// on all at the next handshake, and every server accepts every device's token (one key, in `secrets`).
//
// Thread-safe: every method may be called from any thread. Password hashing runs outside the lock, so
// concurrent logins do not queue behind each other.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "fieldsync/sync/server.h"
#include "fieldsync/sync/thread_annotations.h"

namespace fieldsync::server::dirdb {
class Db;  // server/src/directory_db.h: the storage seam (SQLite or PostgreSQL)
}

namespace fieldsync::server {

inline constexpr std::string_view kDirectoryFileName = "directory.db";

// True for a PostgreSQL connection URL (`postgresql://...` or `postgres://...`): where fieldsync-server's and
// fieldsync-admin's --store point when the central store and the directory live in PostgreSQL.
bool is_postgresql_url(std::string_view location);

struct User {
  UserId id;
  std::string display_name;
  schema::Role role = schema::Role::kRep;
  // A partner (a dealer or distributor) signs in with a browser only: no device may be registered to them.
  // Their writes are judged by the sync rules as a rep's (role stays kRep) within the territories granted to
  // them (user_territories); the head-office API narrows what they may read and write further.
  bool partner = false;
  bool disabled = false;  // no login, no device token, no web session
};

// The role name the API and the directory file use: "rep", "manager", "head_office" or "partner".
std::string_view role_name(const User& user);
// The inverse; nullopt for anything else.
std::optional<User> user_with_role(std::string_view role);

// One line of the people-and-devices audit trail.
struct AuditRecord {
  int64_t id = 0;
  int64_t at_ms = 0;
  UserId actor;
  std::string action;  // "user.create", "user.disable", "device.revoke", ...
  std::string target;
  std::string detail;  // JSON text or empty
};

struct ConflictResolution {
  int64_t conflict_id = 0;
  UserId resolved_by;
  int64_t at_ms = 0;
  std::string action;       // "accept" or "restore"
  uint64_t server_seq = 0;  // restore: the log entry of the new change; 0 for accept
};

// A head-office API sign-in (api.cc), kept in the directory so that every server instance on the same
// database knows it: a cookie or bearer token issued by one works on all, and a sign-out or a disabled user
// ends it on all. Found by `key`, a digest of the token (the token itself is never stored).
struct WebSession {
  std::string key;
  UserId user;
  std::string csrf;
  bool bearer = false;
  int64_t created_ms = 0;
  int64_t last_used_ms = 0;
  int64_t expires_at_ms = 0;
};

struct Territory {
  std::string id;
  std::string name;
};

struct Device {
  NodeId node = 0;
  UserId user;
  int64_t registered_at_ms = 0;
  bool revoked = false;
  int64_t revoked_at_ms = 0;
};

// What a token says, once its signature checked out.
struct TokenClaims {
  UserId user;
  NodeId node = 0;
  int64_t expiry_ms = 0;
};

class Directory final : public Authenticator {
 public:
  struct Options {
    // PBKDF2 work factor for new passwords (OWASP 2023: >= 210,000 for HMAC-SHA256). Stored per user, so
    // raising it later applies to passwords set afterwards. Tests lower it; nothing else should.
    uint32_t pbkdf2_iterations = 210'000;
    int64_t token_ttl_ms = 12LL * 60 * 60 * 1000;  // one working day; the app logs in again after it
    int busy_timeout_ms = 5000;
  };

  // Opens or creates the directory: a SQLite file at `location`, or, for a postgresql:// URL, the schema
  // fieldsync_directory of that database (created and migrated on open, under an advisory lock so servers
  // starting together agree). Errors: the storage codes of status.h (kStorageIo: cannot connect;
  // kSchemaTooNew: written by a newer server).
  static Result<std::unique_ptr<Directory>> open(const std::string& location, Options options);
  ~Directory() override;
  std::string_view engine() const;  // "sqlite" or "postgresql"

  // Users. Ids are 1..255 bytes of [A-Za-z0-9._@-]; passwords at least 8 bytes.
  // Errors: kInvalidArgument (bad id, short password, already exists), storage codes.
  Status add_user(const User& user, std::string_view password, int64_t now_ms);
  Status set_password(const UserId& user, std::string_view password);
  Result<User> user(const UserId& id);
  std::vector<User> users();
  // Head-office API. Errors: kInvalidArgument (no such user, a change the role does not allow), storage.
  Status set_role(const UserId& user, const User& role);  // role and partner of `role` are taken
  Status set_display_name(const UserId& user, const std::string& display_name);
  // A disabled user's logins, device tokens and web sessions fail at once (authenticate checks it on every
  // handshake; the server cuts their live sessions when the API disables them).
  Status set_disabled(const UserId& user, bool disabled);
  Result<std::vector<std::string>> user_territories(const UserId& user);
  Status unassign_territory(const UserId& user, const std::string& territory);
  Result<std::vector<UserId>> team(const UserId& manager);
  Status unassign_team(const UserId& manager, const UserId& rep);
  // The password check of a web sign-in (no device): the user if it matches and the user is enabled. Every
  // failure is kAuthFailed and costs the same hashing time. Runs the KDF outside the lock.
  Result<User> check_password(const UserId& user, std::string_view password);

  // The audit trail, oldest first after `after_id`, at most `limit`.
  Status audit(const AuditRecord& record);
  Result<std::vector<AuditRecord>> audit_trail(int64_t after_id, size_t limit);

  Status set_resolution(const ConflictResolution& r);  // kInvalidArgument when already resolved
  Result<std::optional<ConflictResolution>> resolution(int64_t conflict_id);
  Result<std::vector<ConflictResolution>> resolutions();

  // Web sessions (WebSession). add_web_session first drops sessions that expired or sat idle `idle_ms` by
  // `s.created_ms`, then, past `max_sessions`, the least recently used. touch records a use (the API calls it
  // at most every few minutes per session, not per request).
  Status add_web_session(const WebSession& s, size_t max_sessions, int64_t idle_ms);
  Result<std::optional<WebSession>> web_session(const std::string& key);
  Status touch_web_session(const std::string& key, int64_t now_ms);
  Status remove_web_session(const std::string& key);
  Status remove_web_sessions_of(const UserId& user);

  Status add_territory(const Territory& territory);
  std::vector<Territory> territories();
  // A rep's (or a manager's own) territory, or a partner's grant. Errors: kInvalidArgument for an unknown
  // user or territory, or a head-office user (who sees everything anyway).
  Status assign_territory(const UserId& user, const std::string& territory);
  // A rep in a manager's team. Errors: kInvalidArgument unless `manager` is a manager and `rep` a rep.
  Status assign_team(const UserId& manager, const UserId& rep);

  // Devices (never for a partner). Node ids are unique: registering one that exists fails with
  // kInvalidArgument (a device moving to another user is revoked and registers a new node id, so no old token
  // can come back to life).
  Status register_device(NodeId node, const UserId& user, int64_t now_ms);
  Status revoke_device(NodeId node, int64_t now_ms);
  Result<Device> device(NodeId node);
  std::vector<Device> devices();

  // Checks the password and the device and returns a signed token valid for token_ttl_ms. Every failure --
  // unknown user, wrong password, unknown device, device of another user, revoked device -- is the same
  // kAuthFailed "authentication failed", and an unknown user costs the same hashing time as a known one. The
  // caller (the server's login endpoint) adds a delay before answering a failure, to slow guessing.
  Result<std::string> login(const UserId& user, std::string_view password, NodeId node, int64_t now_ms);

  // Authenticator: verifies the Hello's token (signature, the node it was issued for), then that the device
  // is registered to that user and not revoked (kDeviceRevoked: told even with an expired token, so a lost
  // phone erases its replica), then expiry (kTokenExpired), and builds the Principal.
  Result<Principal> authenticate(const protocol::Hello& hello, int64_t now_ms) override;

  // The token's claims if its signature is valid (nothing else is checked). The session layer uses expiry_ms
  // to close a session whose token runs out while it is connected.
  std::optional<TokenClaims> verify_token(std::string_view token) const;

  // What `user` may see: a rep their territories; a manager their own and their team's territories and their
  // team; head office everything (no lists needed). Errors: kAuthFailed for an unknown user.
  Result<Principal> principal(const UserId& user);

 private:
  // What a password check needs of a users row.
  struct Stored {
    std::vector<uint8_t> salt, hash;
    uint32_t iterations = 0;
    User user;
  };
  Directory(Options options, std::unique_ptr<dirdb::Db> db);
  Status load_or_create_key() EXCLUDES(mu_);
  Result<Principal> principal_locked(const UserId& user) REQUIRES(mu_);
  Result<std::string> role_of_locked(const UserId& user) REQUIRES(mu_);  // kInvalidArgument: no such user
  Status set_role_locked(const UserId& user, const User& role) REQUIRES(mu_);
  Result<std::optional<Stored>> credentials(const UserId& user) EXCLUDES(mu_);
  std::string sign(const UserId& user, NodeId node, int64_t expiry_ms);

  Options options_;
  std::string_view engine_;  // the backend's name, a literal: immutable, read without the lock
  Mutex mu_;
  std::unique_ptr<dirdb::Db> db_ PT_GUARDED_BY(mu_);
  std::vector<uint8_t> key_;  // token signing key, immutable after open
};

// Password hashing, exposed for tests: PBKDF2-HMAC-SHA256 with the given salt and iterations, 32 bytes.
std::vector<uint8_t> hash_password(std::string_view password, std::span<const uint8_t> salt,
                                   uint32_t iterations);

// base64url without padding, as used in tokens.
std::string base64url_encode(std::span<const uint8_t> bytes);
std::optional<std::vector<uint8_t>> base64url_decode(std::string_view text);

}  // namespace fieldsync::server
