// Users, passwords, devices, tokens and principals (server/include/fieldsync/server/directory.h).
#include "fieldsync/server/directory.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/stat.h>

#include <filesystem>

#include "fieldsync/sync/scope.h"

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

class DirectoryTest : public testing::Test {
 protected:
  DirectoryTest() { reopen(); }
  void reopen() {
    dir.reset();
    Directory::Options options;
    options.pbkdf2_iterations = 1000;  // tests only; the default is 210,000
    options.token_ttl_ms = kTtl;
    auto r = Directory::open(tmp.file("directory.db"), options);
    ASSERT_TRUE(r.is_ok()) << r.status().to_string();
    dir = std::move(r.value());
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

  TempDir tmp;
  std::unique_ptr<Directory> dir;
};

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

TEST_F(DirectoryTest, DefaultWorkFactorIsHigh) {
  EXPECT_GE(Directory::Options{}.pbkdf2_iterations, 210'000u);
}

TEST_F(DirectoryTest, FileIsOwnerOnly) {
  struct stat st {};
  ASSERT_EQ(stat(tmp.file("directory.db").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600);
}

TEST_F(DirectoryTest, UsersAndValidation) {
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

TEST_F(DirectoryTest, LoginRightAndWrongPasswordSameError) {
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

TEST_F(DirectoryTest, SaltsDifferForTheSamePassword) {
  ASSERT_TRUE(dir->add_user({"u1", "U1", Role::kRep}, "same-password", kNow).is_ok());
  ASSERT_TRUE(dir->add_user({"u2", "U2", Role::kRep}, "same-password", kNow).is_ok());
  ASSERT_TRUE(dir->register_device(100, "u1", kNow).is_ok());
  ASSERT_TRUE(dir->register_device(200, "u2", kNow).is_ok());
  // Both log in with the same password, yet the stored hashes differ: read them through a second connection.
  EXPECT_TRUE(dir->login("u1", "same-password", 100, kNow).is_ok());
  EXPECT_TRUE(dir->login("u2", "same-password", 200, kNow).is_ok());
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(tmp.file("directory.db").c_str(), &db), SQLITE_OK);
  sqlite3_stmt* q = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "SELECT pw_salt, pw_hash FROM users ORDER BY id", -1, &q, nullptr),
            SQLITE_OK);
  std::vector<std::vector<uint8_t>> salts, hashes;
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
  ASSERT_EQ(salts.size(), 2u);
  EXPECT_EQ(salts[0].size(), 16u);
  EXPECT_NE(salts[0], salts[1]);
  EXPECT_NE(hashes[0], hashes[1]);
}

TEST_F(DirectoryTest, TokenAuthenticatesAndBuildsThePrincipal) {
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

TEST_F(DirectoryTest, TamperedTokenFails) {
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
  TempDir other_tmp;
  Directory::Options o;
  o.pbkdf2_iterations = 1000;
  auto other = std::move(*Directory::open(other_tmp.file("d.db"), o));
  ASSERT_TRUE(other->add_user({"alice", "Alice", Role::kRep}, "alice-password", kNow).is_ok());
  ASSERT_TRUE(other->register_device(1001, "alice", kNow).is_ok());
  std::string foreign = *other->login("alice", "alice-password", 1001, kNow);
  EXPECT_EQ(dir->authenticate(hello(1001, foreign), kNow).status().code(), ErrorCode::kAuthFailed);
}

TEST_F(DirectoryTest, ExpiredToken) {
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

TEST_F(DirectoryTest, TokenOfAnotherNodeFails) {
  seed();
  std::string token = *dir->login("alice", "alice-password", 1001, kNow);
  EXPECT_EQ(dir->authenticate(hello(1002, token), kNow).status().code(), ErrorCode::kAuthFailed);
}

TEST_F(DirectoryTest, RevokedDeviceIsRefusedEvenWithAnExpiredToken) {
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

TEST_F(DirectoryTest, NodeIdsAreUniqueAndServerIdsReserved) {
  seed();
  EXPECT_EQ(dir->register_device(1001, "bob", kNow).code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(dir->register_device(1, "bob", kNow).code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(dir->register_device(5000, "nobody", kNow).code(), ErrorCode::kInvalidArgument);
  EXPECT_TRUE(dir->register_device(0xfedcba9876543210ULL, "bob", kNow).is_ok());
  EXPECT_EQ(dir->device(0xfedcba9876543210ULL)->user, "bob");
  EXPECT_EQ(dir->devices().size(), 5u);
}

TEST_F(DirectoryTest, PrincipalForEachRole) {
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

}  // namespace
}  // namespace fieldsync::server
