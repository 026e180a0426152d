// Users, passwords, devices, tokens and principals (server/include/fieldsync/server/directory.h).
#include "fieldsync/server/directory.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/stat.h>

#include <atomic>
#include <filesystem>
#include <list>
#include <thread>

#include "directory_db.h"
#include "fieldsync/sync/scope.h"
#include "pg.h"
#include "support/pg_test_db.h"

namespace fieldsync::server {
namespace {

using schema::Role;

constexpr int64_t kNow = 1'760'000'000'000;
constexpr int64_t kTtl = 3'600'000;

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "fieldsync-dir-XXXXXX").string();
    path_ = mkdtemp(tmpl.data());
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string file(const std::string& name) const { return (std::filesystem::path(path_) / name).string(); }

 private:
  std::string path_;
};

// Ends every connection to the test's database (what clients see when PostgreSQL restarts or fails over).
Status drop_connections(const fieldsync::testing::PgTestDatabase& db) {
  auto c = pg::Conn::open(db.admin_url());
  if (!c) return c.status();
  return (*c)->exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
                    pg::Params().add(db.name()));
}

// Every DirectoryTest runs on both engines: a SQLite file, and a fresh PostgreSQL database.
class DirectoryTest : public ::testing::TestWithParam<std::string> {
 protected:
  DirectoryTest() {
    location = fresh_location();
    reopen();
  }
  bool postgres() const { return GetParam() == "postgresql"; }
  // A new, empty place for a directory: a file in a new temporary directory, or a new database.
  std::string fresh_location() {
    if (postgres()) {
      databases.emplace_back();
      return databases.back().url();
    }
    dirs.emplace_back();
    return dirs.back().file("directory.db");
  }
  static Directory::Options test_options() {
    Directory::Options options;
    options.pbkdf2_iterations = 1000;  // tests only; the default is 210,000
    options.token_ttl_ms = kTtl;
    return options;
  }
  static std::unique_ptr<Directory> open_at(const std::string& where) {
    auto r = Directory::open(where, test_options());
    EXPECT_TRUE(r.is_ok()) << r.status().to_string();
    return r ? std::move(r.value()) : nullptr;
  }
  void reopen() {
    dir.reset();
    dir = open_at(location);
    ASSERT_TRUE(dir != nullptr);
    ASSERT_EQ(dir->engine(), GetParam());
  }
  void seed() {
    ASSERT_TRUE(dir->add_territory({"north", "North"}).is_ok());
    ASSERT_TRUE(dir->add_territory({"south", "South"}).is_ok());
    ASSERT_TRUE(dir->add_territory({"east", "East"}).is_ok());
    ASSERT_TRUE(dir->add_user({"alice", "Alice A", Role::kRep}, "alice-password", kNow).is_ok());
    ASSERT_TRUE(dir->add_user({"bob", "Bob B", Role::kRep}, "bob-password", kNow).is_ok());
    ASSERT_TRUE(dir->add_user({"carol", "Carol C", Role::kRep}, "carol-password", kNow).is_ok());
    ASSERT_TRUE(dir->add_user({"mia", "Mia M", Role::kManager}, "mia-password", kNow).is_ok());
    ASSERT_TRUE(dir->add_user({"hq", "Head Office", Role::kHeadOffice}, "hq-password", kNow).is_ok());
    ASSERT_TRUE(dir->assign_territory("alice", "north").is_ok());
    ASSERT_TRUE(dir->assign_territory("bob", "south").is_ok());
    ASSERT_TRUE(dir->assign_territory("carol", "east").is_ok());
    ASSERT_TRUE(dir->assign_team("mia", "alice").is_ok());
    ASSERT_TRUE(dir->assign_team("mia", "bob").is_ok());
    ASSERT_TRUE(dir->register_device(1001, "alice", kNow).is_ok());
    ASSERT_TRUE(dir->register_device(1002, "bob", kNow).is_ok());
    ASSERT_TRUE(dir->register_device(1004, "mia", kNow).is_ok());
    ASSERT_TRUE(dir->register_device(1005, "hq", kNow).is_ok());
  }
  protocol::Hello hello(NodeId node, std::string token) {
    protocol::Hello h;
    h.node = node;
    h.token = std::move(token);
    return h;
  }
  // The stored salts and hashes of every user, in id order, read beside the Directory.
  void stored_salts_and_hashes(std::vector<std::vector<uint8_t>>& salts,
                               std::vector<std::vector<uint8_t>>& hashes) {
    if (postgres()) {
      auto c = pg::Conn::open(location);
      ASSERT_TRUE(c.is_ok()) << c.status().to_string();
      auto rows = (*c)->query("SELECT pw_salt, pw_hash FROM fieldsync_directory.users ORDER BY id");
      ASSERT_TRUE(rows.is_ok()) << rows.status().to_string();
      for (int i = 0; i < rows->size(); ++i) {
        auto salt = rows->blob(i, 0), hash = rows->blob(i, 1);
        salts.emplace_back(salt.begin(), salt.end());
        hashes.emplace_back(hash.begin(), hash.end());
      }
      return;
    }
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(location.c_str(), &db), SQLITE_OK);
    sqlite3_stmt* q = nullptr;
    ASSERT_EQ(sqlite3_prepare_v2(db, "SELECT pw_salt, pw_hash FROM users ORDER BY id", -1, &q, nullptr),
              SQLITE_OK);
    while (sqlite3_step(q) == SQLITE_ROW) {
      auto blob = [&](int i) {
        auto* p = static_cast<const uint8_t*>(sqlite3_column_blob(q, i));
        return std::vector<uint8_t>(p, p + sqlite3_column_bytes(q, i));
      };
      salts.push_back(blob(0));
      hashes.push_back(blob(1));
    }
    sqlite3_finalize(q);
    sqlite3_close(db);
  }

  std::list<TempDir> dirs;
  std::list<fieldsync::testing::PgTestDatabase> databases;
  std::string location;
  std::unique_ptr<Directory> dir;
};

INSTANTIATE_TEST_SUITE_P(Engines, DirectoryTest, ::testing::Values("sqlite", "postgresql"),
                         [](const ::testing::TestParamInfo<std::string>& p) { return p.param; });

// What only PostgreSQL has: a connection to lose, a format number, servers migrating one database at once.
class DirectoryPgTest : public DirectoryTest {};
INSTANTIATE_TEST_SUITE_P(Engines, DirectoryPgTest, ::testing::Values("postgresql"),
                         [](const ::testing::TestParamInfo<std::string>& p) { return p.param; });

TEST(PasswordHash, SameInputSameHashAndSaltsMatter) {
  std::vector<uint8_t> salt1(16, 1), salt2(16, 2);
  auto a = hash_password("secret-1", salt1, 1000);
  EXPECT_EQ(a.size(), 32u);
  EXPECT_EQ(a, hash_password("secret-1", salt1, 1000));
  EXPECT_NE(a, hash_password("secret-2", salt1, 1000));
  EXPECT_NE(a, hash_password("secret-1", salt2, 1000));
  EXPECT_NE(a, hash_password("secret-1", salt1, 1001));
  // RFC 7914 section 11 test vector for PBKDF2-HMAC-SHA256 ("passwd", "salt", c=1), first 32 bytes.
  std::string salt = "salt";
  auto v = hash_password("passwd", std::span(reinterpret_cast<const uint8_t*>(salt.data()), salt.size()), 1);
  const uint8_t expected[] = {0x55, 0xac, 0x04, 0x6e, 0x56, 0xe3, 0x08, 0x9f, 0xec, 0x16, 0x91,
                              0xc2, 0x25, 0x44, 0xb6, 0x05, 0xf9, 0x41, 0x85, 0x21, 0x6d, 0xde,
                              0x04, 0x65, 0xe6, 0x8b, 0x9d, 0x57, 0xc2, 0x0d, 0xac, 0xbc};
  EXPECT_EQ(v, std::vector<uint8_t>(std::begin(expected), std::end(expected)));
}

TEST(Base64Url, RoundTripsAndRejectsJunk) {
  for (size_t n = 0; n < 40; ++n) {
    std::vector<uint8_t> bytes(n);
    for (size_t i = 0; i < n; ++i) bytes[i] = static_cast<uint8_t>(i * 37 + 250);
    std::string text = base64url_encode(bytes);
    EXPECT_EQ(text.find_first_of("+/="), std::string::npos);
    auto back = base64url_decode(text);
    ASSERT_TRUE(back.has_value()) << text;
    EXPECT_EQ(*back, bytes);
  }
  EXPECT_FALSE(base64url_decode("ab+c").has_value());
  EXPECT_FALSE(base64url_decode("a").has_value());   // 6 bits: not a byte
  EXPECT_FALSE(base64url_decode("AB").has_value());  // non-zero padding bits ("AA" is canonical for 0x00)
  EXPECT_TRUE(base64url_decode("AA").has_value());
}

TEST_P(DirectoryTest, DefaultWorkFactorIsHigh) {
  EXPECT_GE(Directory::Options{}.pbkdf2_iterations, 210'000u);
}

TEST(DirectoryFile, IsOwnerOnly) {
  TempDir tmp;
  ASSERT_TRUE(Directory::open(tmp.file("directory.db"), Directory::Options{}).is_ok());
  struct stat st {};
  ASSERT_EQ(stat(tmp.file("directory.db").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600);
}

TEST_P(DirectoryTest, UsersAndValidation) {
  seed();
  auto u = dir->user("mia");
  ASSERT_TRUE(u.is_ok());
  EXPECT_EQ(u->display_name, "Mia M");
  EXPECT_EQ(u->role, Role::kManager);
  EXPECT_EQ(dir->users().size(), 5u);
  EXPECT_EQ(dir->add_user({"alice", "Again", Role::kRep}, "another-password", kNow).code(),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(dir->add_user({"dave", "Dave", Role::kRep}, "short", kNow).code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(dir->add_user({"bad id", "X", Role::kRep}, "long-enough", kNow).code(),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(dir->add_user({std::string(256, 'u'), "X", Role::kRep}, "long-enough", kNow).code(),
            ErrorCode::kInvalidArgument);
  // The longest id still fits a token (one-byte length).
  EXPECT_TRUE(dir->add_user({std::string(255, 'u'), "Long", Role::kRep}, "long-enough", kNow).is_ok());
  ASSERT_TRUE(dir->register_device(4000, std::string(255, 'u'), kNow).is_ok());
  auto long_token = dir->login(std::string(255, 'u'), "long-enough", 4000, kNow);
  ASSERT_TRUE(long_token.is_ok());
  EXPECT_EQ(dir->authenticate(hello(4000, *long_token), kNow)->user, std::string(255, 'u'));
  EXPECT_EQ(dir->assign_territory("alice", "nowhere").code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(dir->assign_territory("hq", "north").code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(dir->assign_team("alice", "bob").code(), ErrorCode::kInvalidArgument) << "alice is no manager";
  EXPECT_EQ(dir->assign_team("mia", "hq").code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(dir->add_territory({"north", "Again"}).code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(dir->territories().size(), 3u);
}

TEST_P(DirectoryTest, LoginRightAndWrongPasswordSameError) {
  seed();
  auto token = dir->login("alice", "alice-password", 1001, kNow);
  ASSERT_TRUE(token.is_ok()) << token.status().to_string();
  auto wrong = dir->login("alice", "bob-password", 1001, kNow);
  auto nobody = dir->login("zed", "alice-password", 1001, kNow);
  auto other_device = dir->login("alice", "alice-password", 1002, kNow);
  auto unknown_device = dir->login("alice", "alice-password", 9999, kNow);
  for (const auto* r : {&wrong, &nobody, &other_device, &unknown_device}) {
    ASSERT_FALSE(r->is_ok());
    EXPECT_EQ(r->status().code(), ErrorCode::kAuthFailed);
    EXPECT_EQ(r->status().message(), "authentication failed") << "never says what was wrong";
  }
  ASSERT_TRUE(dir->set_password("alice", "new-alice-password").is_ok());
  EXPECT_FALSE(dir->login("alice", "alice-password", 1001, kNow).is_ok());
  EXPECT_TRUE(dir->login("alice", "new-alice-password", 1001, kNow).is_ok());
}

TEST_P(DirectoryTest, SaltsDifferForTheSamePassword) {
  ASSERT_TRUE(dir->add_user({"u1", "U1", Role::kRep}, "same-password", kNow).is_ok());
  ASSERT_TRUE(dir->add_user({"u2", "U2", Role::kRep}, "same-password", kNow).is_ok());
  ASSERT_TRUE(dir->register_device(100, "u1", kNow).is_ok());
  ASSERT_TRUE(dir->register_device(200, "u2", kNow).is_ok());
  // Both log in with the same password, yet the stored hashes differ: read them through a second connection.
  EXPECT_TRUE(dir->login("u1", "same-password", 100, kNow).is_ok());
  EXPECT_TRUE(dir->login("u2", "same-password", 200, kNow).is_ok());
  std::vector<std::vector<uint8_t>> salts, hashes;
  stored_salts_and_hashes(salts, hashes);
  ASSERT_EQ(salts.size(), 2u);
  EXPECT_EQ(salts[0].size(), 16u);
  EXPECT_NE(salts[0], salts[1]);
  EXPECT_NE(hashes[0], hashes[1]);
}

TEST_P(DirectoryTest, TokenAuthenticatesAndBuildsThePrincipal) {
  seed();
  auto token = dir->login("alice", "alice-password", 1001, kNow);
  ASSERT_TRUE(token.is_ok());
  auto p = dir->authenticate(hello(1001, *token), kNow + 1000);
  ASSERT_TRUE(p.is_ok()) << p.status().to_string();
  EXPECT_EQ(p->user, "alice");
  EXPECT_EQ(p->role, Role::kRep);
  EXPECT_EQ(p->territories, std::vector<std::string>{"north"});
  EXPECT_TRUE(p->team.empty());
  // Tokens survive a restart: the key is stored.
  reopen();
  EXPECT_TRUE(dir->authenticate(hello(1001, *token), kNow + 1000).is_ok());
}

TEST_P(DirectoryTest, TamperedTokenFails) {
  seed();
  std::string token = *dir->login("alice", "alice-password", 1001, kNow);
  auto raw = *base64url_decode(token);
  for (size_t i = 0; i < raw.size(); ++i) {
    auto bad = raw;
    bad[i] ^= 0x01;
    auto r = dir->authenticate(hello(1001, base64url_encode(bad)), kNow);
    ASSERT_FALSE(r.is_ok()) << "flipped byte " << i;
    // A flipped user-length byte changes the layout, everything else breaks the signature: all auth failed.
    EXPECT_EQ(r.status().code(), ErrorCode::kAuthFailed) << i;
  }
  EXPECT_EQ(dir->authenticate(hello(1001, token.substr(0, token.size() - 2)), kNow).status().code(),
            ErrorCode::kAuthFailed);
  EXPECT_EQ(dir->authenticate(hello(1001, ""), kNow).status().code(), ErrorCode::kAuthFailed);
  EXPECT_EQ(dir->authenticate(hello(1001, "not base64!"), kNow).status().code(), ErrorCode::kAuthFailed);
  // A token signed with another directory's key.
  auto other = open_at(fresh_location());
  ASSERT_TRUE(other != nullptr);
  ASSERT_TRUE(other->add_user({"alice", "Alice", Role::kRep}, "alice-password", kNow).is_ok());
  ASSERT_TRUE(other->register_device(1001, "alice", kNow).is_ok());
  std::string foreign = *other->login("alice", "alice-password", 1001, kNow);
  EXPECT_EQ(dir->authenticate(hello(1001, foreign), kNow).status().code(), ErrorCode::kAuthFailed);
}

TEST_P(DirectoryTest, ExpiredToken) {
  seed();
  std::string token = *dir->login("alice", "alice-password", 1001, kNow);
  EXPECT_TRUE(dir->authenticate(hello(1001, token), kNow + kTtl - 1).is_ok());
  std::optional<TokenClaims> claims = dir->verify_token(token);
  ASSERT_TRUE(claims.has_value());
  EXPECT_EQ(claims->user, "alice");
  EXPECT_EQ(claims->node, 1001u);
  EXPECT_EQ(claims->expiry_ms, kNow + kTtl) << "for closing a session when its token runs out";
  EXPECT_FALSE(dir->verify_token(token.substr(1)).has_value());
  EXPECT_EQ(dir->authenticate(hello(1001, token), kNow + kTtl).status().code(), ErrorCode::kTokenExpired);
}

TEST_P(DirectoryTest, TokenOfAnotherNodeFails) {
  seed();
  std::string token = *dir->login("alice", "alice-password", 1001, kNow);
  EXPECT_EQ(dir->authenticate(hello(1002, token), kNow).status().code(), ErrorCode::kAuthFailed);
}

TEST_P(DirectoryTest, RevokedDeviceIsRefusedEvenWithAnExpiredToken) {
  seed();
  std::string token = *dir->login("alice", "alice-password", 1001, kNow);
  ASSERT_TRUE(dir->revoke_device(1001, kNow + 5).is_ok());
  EXPECT_TRUE(dir->revoke_device(1001, kNow + 6).is_ok()) << "twice is fine";
  EXPECT_EQ(dir->revoke_device(4242, kNow).code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(dir->authenticate(hello(1001, token), kNow).status().code(), ErrorCode::kDeviceRevoked);
  EXPECT_EQ(dir->authenticate(hello(1001, token), kNow + kTtl * 2).status().code(),
            ErrorCode::kDeviceRevoked);
  EXPECT_EQ(dir->login("alice", "alice-password", 1001, kNow).status().code(), ErrorCode::kAuthFailed);
  auto d = dir->device(1001);
  ASSERT_TRUE(d.is_ok());
  EXPECT_TRUE(d->revoked);
  EXPECT_EQ(d->revoked_at_ms, kNow + 5);
  // A new phone gets a new node id.
  ASSERT_TRUE(dir->register_device(1011, "alice", kNow).is_ok());
  EXPECT_TRUE(dir->login("alice", "alice-password", 1011, kNow).is_ok());
}

TEST_P(DirectoryTest, NodeIdsAreUniqueAndServerIdsReserved) {
  seed();
  EXPECT_EQ(dir->register_device(1001, "bob", kNow).code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(dir->register_device(1, "bob", kNow).code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(dir->register_device(5000, "nobody", kNow).code(), ErrorCode::kInvalidArgument);
  EXPECT_TRUE(dir->register_device(0xfedcba9876543210ULL, "bob", kNow).is_ok());
  EXPECT_EQ(dir->device(0xfedcba9876543210ULL)->user, "bob");
  EXPECT_EQ(dir->devices().size(), 5u);
}

TEST_P(DirectoryTest, PrincipalForEachRole) {
  seed();
  ASSERT_TRUE(dir->assign_territory("mia", "east").is_ok());  // a manager's own territory
  auto rep = dir->principal("bob");
  ASSERT_TRUE(rep.is_ok());
  EXPECT_EQ(rep->role, Role::kRep);
  EXPECT_EQ(rep->territories, std::vector<std::string>{"south"});

  auto mgr = dir->principal("mia");
  ASSERT_TRUE(mgr.is_ok());
  EXPECT_EQ(mgr->role, Role::kManager);
  EXPECT_EQ(mgr->territories, (std::vector<std::string>{"east", "north", "south"}));
  EXPECT_EQ(mgr->team, (std::vector<std::string>{"alice", "bob"}));
  EXPECT_TRUE(can_see(*mgr, ScopeKey{ScopeKey::Kind::kOwner, "alice"}));
  EXPECT_FALSE(can_see(*mgr, ScopeKey{ScopeKey::Kind::kOwner, "carol"}));

  auto hq = dir->principal("hq");
  ASSERT_TRUE(hq.is_ok());
  EXPECT_EQ(hq->role, Role::kHeadOffice);
  EXPECT_TRUE(can_see(*hq, ScopeKey{ScopeKey::Kind::kTerritory, "anywhere"}));

  EXPECT_EQ(dir->principal("zed").status().code(), ErrorCode::kAuthFailed);

  // Through the token, as the server sees it.
  std::string token = *dir->login("mia", "mia-password", 1004, kNow);
  auto via_token = dir->authenticate(hello(1004, token), kNow);
  ASSERT_TRUE(via_token.is_ok());
  EXPECT_EQ(via_token->team, mgr->team);
  EXPECT_EQ(via_token->territories, mgr->territories);
}

TEST_P(DirectoryTest, RolesDisablingAuditAndResolutions) {
  seed();
  // A rep made head office loses their territories and team place, in one step.
  ASSERT_TRUE(dir->set_role("alice", User{"", "", Role::kHeadOffice}).is_ok());
  EXPECT_TRUE(dir->user_territories("alice")->empty());
  EXPECT_EQ(*dir->team("mia"), std::vector<UserId>{"bob"});
  EXPECT_EQ(dir->set_role("nobody", User{"", "", Role::kRep}).code(), ErrorCode::kInvalidArgument);
  User partner;
  partner.partner = true;
  ASSERT_TRUE(dir->set_role("carol", partner).is_ok());
  EXPECT_TRUE(dir->user("carol")->partner);
  EXPECT_EQ(dir->register_device(3003, "carol", kNow).code(), ErrorCode::kInvalidArgument);
  ASSERT_TRUE(dir->set_display_name("bob", "Robert").is_ok());
  EXPECT_EQ(dir->user("bob")->display_name, "Robert");
  ASSERT_TRUE(dir->set_disabled("bob", true).is_ok());
  EXPECT_TRUE(dir->user("bob")->disabled);
  EXPECT_EQ(dir->check_password("bob", "bob-password").status().code(), ErrorCode::kAuthFailed);
  EXPECT_EQ(dir->principal("bob").status().code(), ErrorCode::kAuthFailed);
  EXPECT_EQ(dir->set_disabled("nobody", true).code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(dir->check_password("hq", "hq-password")->role, Role::kHeadOffice);

  ASSERT_TRUE(dir->audit({0, kNow, "hq", "user.disable", "bob", R"({"why":"left"})"}).is_ok());
  ASSERT_TRUE(dir->audit({0, kNow + 1, "hq", "device.revoke", "1002", ""}).is_ok());
  auto trail = dir->audit_trail(0, 10);
  ASSERT_TRUE(trail.is_ok());
  ASSERT_EQ(trail->size(), 2u);
  EXPECT_EQ((*trail)[0].action, "user.disable");
  EXPECT_EQ((*trail)[0].detail, R"({"why":"left"})");
  EXPECT_LT((*trail)[0].id, (*trail)[1].id);
  EXPECT_EQ(dir->audit_trail((*trail)[0].id, 10)->size(), 1u);
  EXPECT_EQ(dir->audit_trail(0, 1)->size(), 1u);

  ASSERT_TRUE(dir->set_resolution({7, "hq", kNow, "restore", 42}).is_ok());
  EXPECT_EQ(dir->set_resolution({7, "hq", kNow, "accept", 0}).code(), ErrorCode::kInvalidArgument);
  auto r = dir->resolution(7);
  ASSERT_TRUE(r.is_ok() && r->has_value());
  EXPECT_EQ((*r)->server_seq, 42u);
  EXPECT_EQ((*r)->action, "restore");
  EXPECT_FALSE(dir->resolution(8)->has_value());
  EXPECT_EQ(dir->resolutions()->size(), 1u);
  ASSERT_TRUE(dir->unassign_territory("bob", "south").is_ok());
  EXPECT_TRUE(dir->user_territories("bob")->empty());
  ASSERT_TRUE(dir->unassign_team("mia", "bob").is_ok());
  EXPECT_TRUE(dir->team("mia")->empty());
}

// Two servers in front of one database (issue 20, "Several instances"): each has its own Directory on the
// same store. A token issued by one is accepted by the other (one signing key), and a revocation, a
// disabled user or a new territory made through one holds on the other at its next handshake.
TEST_P(DirectoryTest, TwoServersOnOneDatabaseShareTokensAndRevocations) {
  seed();
  std::unique_ptr<Directory> other = open_at(location);
  ASSERT_TRUE(other != nullptr);
  const std::string from_a = *dir->login("alice", "alice-password", 1001, kNow);
  const std::string from_b = *other->login("bob", "bob-password", 1002, kNow);
  EXPECT_EQ(other->authenticate(hello(1001, from_a), kNow)->user, "alice");
  EXPECT_EQ(dir->authenticate(hello(1002, from_b), kNow)->user, "bob");

  ASSERT_TRUE(dir->assign_territory("alice", "east").is_ok());
  EXPECT_EQ(other->authenticate(hello(1001, from_a), kNow)->territories,
            (std::vector<std::string>{"east", "north"}));

  ASSERT_TRUE(dir->revoke_device(1002, kNow).is_ok());
  EXPECT_EQ(other->authenticate(hello(1002, from_b), kNow).status().code(), ErrorCode::kDeviceRevoked);
  EXPECT_EQ(other->login("bob", "bob-password", 1002, kNow).status().code(), ErrorCode::kAuthFailed);

  ASSERT_TRUE(other->set_disabled("alice", true).is_ok());
  EXPECT_EQ(dir->authenticate(hello(1001, from_a), kNow).status().code(), ErrorCode::kAuthFailed);
  EXPECT_EQ(dir->login("alice", "alice-password", 1001, kNow).status().code(), ErrorCode::kAuthFailed);
  ASSERT_TRUE(dir->set_disabled("alice", false).is_ok());
  EXPECT_TRUE(other->authenticate(hello(1001, from_a), kNow).is_ok());

  // Users and devices made through either are there for both.
  ASSERT_TRUE(other->add_user({"dan", "Dan", Role::kRep}, "dan-password", kNow).is_ok());
  ASSERT_TRUE(dir->register_device(1006, "dan", kNow).is_ok());
  EXPECT_EQ(dir->add_user({"dan", "Dan again", Role::kRep}, "dan-password", kNow).code(),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(other->register_device(1006, "dan", kNow).code(), ErrorCode::kInvalidArgument);
  EXPECT_TRUE(other->authenticate(hello(1006, *dir->login("dan", "dan-password", 1006, kNow)), kNow).is_ok());
}

// Web sessions (the head-office API's sign-ins) are the database's: one made through one directory object is
// found, touched and ended through another (two servers); past the cap the least recently used goes, and
// expired or idle ones are dropped when a new one is made.
TEST_P(DirectoryTest, WebSessionsAreSharedCappedAndPurged) {
  seed();
  std::unique_ptr<Directory> other = open_at(location);
  ASSERT_TRUE(other != nullptr);
  const int64_t idle = 1000;
  auto session = [](std::string key, std::string user, int64_t at) {
    return WebSession{std::move(key), std::move(user), "csrf-" + std::to_string(at), false, at, at,
                      at + 10'000};
  };
  ASSERT_TRUE(dir->add_web_session(session("k1", "alice", kNow), 3, idle).is_ok());
  auto found = other->web_session("k1");
  ASSERT_TRUE(found.is_ok()) << found.status().to_string();
  ASSERT_TRUE(found->has_value());
  EXPECT_EQ((*found)->user, "alice");
  EXPECT_EQ((*found)->csrf, "csrf-" + std::to_string(kNow));
  EXPECT_FALSE((*found)->bearer);
  EXPECT_EQ((*found)->expires_at_ms, kNow + 10'000);
  EXPECT_FALSE(other->web_session("k-unknown")->has_value());

  // A touch moves last use forward only.
  ASSERT_TRUE(other->touch_web_session("k1", kNow + 500).is_ok());
  ASSERT_TRUE(dir->touch_web_session("k1", kNow + 100).is_ok());
  EXPECT_EQ((*dir->web_session("k1"))->last_used_ms, kNow + 500);

  // The cap: a fourth session at a cap of 3 evicts the least recently used (k2, never touched).
  ASSERT_TRUE(dir->add_web_session(session("k2", "bob", kNow + 1), 3, idle).is_ok());
  ASSERT_TRUE(dir->add_web_session(session("k3", "bob", kNow + 2), 3, idle).is_ok());
  ASSERT_TRUE(dir->touch_web_session("k3", kNow + 600).is_ok());
  ASSERT_TRUE(other->add_web_session(session("k4", "carol", kNow + 700), 3, idle).is_ok());
  EXPECT_TRUE(dir->web_session("k1")->has_value());
  EXPECT_FALSE(dir->web_session("k2")->has_value());
  EXPECT_TRUE(dir->web_session("k3")->has_value());
  EXPECT_TRUE(dir->web_session("k4")->has_value());

  // Sign-out through one ends it for the other; a user's sessions end together.
  ASSERT_TRUE(other->remove_web_session("k4").is_ok());
  EXPECT_FALSE(dir->web_session("k4")->has_value());
  ASSERT_TRUE(dir->add_web_session(session("k5", "bob", kNow + 800), 3, idle).is_ok());
  ASSERT_TRUE(other->remove_web_sessions_of("bob").is_ok());
  EXPECT_FALSE(dir->web_session("k3")->has_value());
  EXPECT_FALSE(dir->web_session("k5")->has_value());
  EXPECT_TRUE(dir->web_session("k1")->has_value());

  // Idle past `idle` (k1 last used at kNow + 500) is dropped when the next session is made.
  ASSERT_TRUE(dir->add_web_session(session("k6", "carol", kNow + 1600), 3, idle).is_ok());
  EXPECT_FALSE(other->web_session("k1")->has_value());
  EXPECT_TRUE(other->web_session("k6")->has_value());
}

// PostgreSQL only: the connection can drop under a running server (a database restart, a failover). The
// statement that finds it broken fails with a retryable storage error -- never an authentication failure,
// which would make a phone stop syncing -- and the next call connects again.
// /audit pages by id (api.cc, audit_trail(after, limit)): on PostgreSQL two instances add rows at once, so an
// id must never commit after a higher one. A writer holds its audit insert open (another instance's, in
// flight); a second one waits for it rather than commit a higher id first, and a reader paging by id in
// between never passes the late row.
TEST_P(DirectoryPgTest, AnAuditRowThatCommitsLateIsNeverPassedByAReaderPagingById) {
  ASSERT_TRUE(dir->audit({0, kNow, "hq", "first", "x", ""}).is_ok());
  auto reader = open_at(location);  // another instance's directory, paging /audit
  auto slow = pg::Conn::open(location);
  ASSERT_TRUE(slow.is_ok()) << slow.status().to_string();
  pg::Conn& c = **slow;
  ASSERT_TRUE(c.exec_script("SET search_path = fieldsync_directory").is_ok());
  ASSERT_TRUE(c.begin().is_ok());
  std::string sql = dirdb::kPgAuditInsert;
  for (int n = 1; sql.find('?') != std::string::npos; ++n)
    sql.replace(sql.find('?'), 1, "$" + std::to_string(n));
  ASSERT_TRUE(c.exec(sql, pg::Params().add(kNow).add("hq").add("late").add("x").add("")).is_ok());

  std::atomic<bool> second_done{false};
  std::thread second([&] {
    EXPECT_TRUE(dir->audit({0, kNow, "hq", "second", "x", ""}).is_ok());
    second_done = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_FALSE(second_done.load()) << "a higher audit id committed before a lower one in flight";
  auto page = reader->audit_trail(0, 10);
  ASSERT_TRUE(page.is_ok());
  ASSERT_EQ(page->size(), 1u) << "only the committed prefix";
  const int64_t cursor = page->back().id;
  ASSERT_TRUE(c.commit().is_ok());  // the late commit
  second.join();
  auto next = reader->audit_trail(cursor, 10);
  ASSERT_TRUE(next.is_ok());
  ASSERT_EQ(next->size(), 2u);
  EXPECT_EQ((*next)[0].action, "late") << "the late row is on the next page, not skipped";
  EXPECT_EQ((*next)[1].action, "second");
  EXPECT_LT((*next)[0].id, (*next)[1].id);
}

TEST_P(DirectoryPgTest, ALostConnectionIsRetryableAndReconnects) {
  seed();
  const std::string token = *dir->login("alice", "alice-password", 1001, kNow);
  ASSERT_TRUE(dir->authenticate(hello(1001, token), kNow).is_ok());
  ASSERT_TRUE(drop_connections(databases.back()).is_ok());
  Result<Principal> during = dir->authenticate(hello(1001, token), kNow);
  ASSERT_FALSE(during.is_ok());
  EXPECT_EQ(during.status().code(), ErrorCode::kStorageIo) << during.status().to_string();
  EXPECT_TRUE(during.status().retryable());
  Result<Principal> after = dir->authenticate(hello(1001, token), kNow);
  ASSERT_TRUE(after.is_ok()) << after.status().to_string();
  EXPECT_EQ(after->territories, std::vector<std::string>{"north"});
}

TEST_P(DirectoryPgTest, ADirectoryOfANewerServerIsRefused) {
  dir.reset();
  {
    auto c = pg::Conn::open(location);
    ASSERT_TRUE(c.is_ok()) << c.status().to_string();
    ASSERT_TRUE((*c)->exec("UPDATE fieldsync_directory.format SET version = 99").is_ok());
  }
  auto r = Directory::open(location, test_options());
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), ErrorCode::kSchemaTooNew) << r.status().to_string();
}

// PostgreSQL only: servers starting together create and migrate the schema one after the other (an
// advisory lock), and agree on one signing key.
TEST_P(DirectoryPgTest, ServersStartingTogetherAgreeOnOneSchemaAndKey) {
  const std::string fresh = fresh_location();
  std::vector<std::unique_ptr<Directory>> opened(4);
  std::vector<std::thread> threads;
  for (size_t i = 0; i < opened.size(); ++i) threads.emplace_back([&, i] { opened[i] = open_at(fresh); });
  for (std::thread& t : threads) t.join();
  for (const auto& d : opened) ASSERT_TRUE(d != nullptr);
  ASSERT_TRUE(opened[0]->add_user({"zoe", "Zoe", Role::kRep}, "zoe-password", kNow).is_ok());
  ASSERT_TRUE(opened[1]->register_device(2001, "zoe", kNow).is_ok());
  const std::string token = *opened[2]->login("zoe", "zoe-password", 2001, kNow);
  for (const auto& d : opened) EXPECT_TRUE(d->authenticate(hello(2001, token), kNow).is_ok());
}

}  // namespace
}  // namespace fieldsync::server
