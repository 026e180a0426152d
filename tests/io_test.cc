// io/: the one mapping of SQLite result codes to typed errors (both the device replica and the server's
// stores use it), the Db/Stmt wrapper on real files, identifier quoting and certificate fingerprints.
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <sqlite3.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "fieldsync/io/certificate.h"
#include "fieldsync/io/sqlite_db.h"

namespace fieldsync {
namespace {

namespace fs = std::filesystem;

struct Mapped {
  int rc;
  ErrorCode code;
  bool retryable;
};

// Every decision in sqlite_db.h's table, primary and extended codes alike.
TEST(SqliteStatus, MapsEveryResultCodeTheWayTheHeaderSays) {
  const Mapped cases[] = {
      {SQLITE_FULL, ErrorCode::kStorageFull, true},
      {SQLITE_CORRUPT, ErrorCode::kStorageCorrupt, false},
      {SQLITE_CORRUPT_INDEX, ErrorCode::kStorageCorrupt, false},
      {SQLITE_NOTADB, ErrorCode::kStorageCorrupt, false},
      {SQLITE_BUSY, ErrorCode::kStorageLocked, true},
      {SQLITE_BUSY_SNAPSHOT, ErrorCode::kStorageLocked, true},
      {SQLITE_LOCKED, ErrorCode::kStorageLocked, true},
      {SQLITE_READONLY, ErrorCode::kStorageReadOnly, false},
      {SQLITE_READONLY_DBMOVED, ErrorCode::kStorageReadOnly, false},
      {SQLITE_PERM, ErrorCode::kStorageReadOnly, false},
      {SQLITE_AUTH, ErrorCode::kStorageReadOnly, false},
      {SQLITE_IOERR, ErrorCode::kStorageIo, true},
      {SQLITE_IOERR_FSYNC, ErrorCode::kStorageIo, true},
      {SQLITE_IOERR_NOMEM, ErrorCode::kInternal, true},
      {SQLITE_CANTOPEN, ErrorCode::kStorageIo, true},
      {SQLITE_PROTOCOL, ErrorCode::kStorageIo, true},
      {SQLITE_NOMEM, ErrorCode::kInternal, true},
      {SQLITE_ERROR, ErrorCode::kInternal, false},
      {SQLITE_CONSTRAINT, ErrorCode::kInternal, false},
      {SQLITE_CONSTRAINT_PRIMARYKEY, ErrorCode::kInternal, false},
      {SQLITE_MISUSE, ErrorCode::kInternal, false},
      {SQLITE_RANGE, ErrorCode::kInternal, false},
      {SQLITE_TOOBIG, ErrorCode::kInternal, false},
      {SQLITE_MISMATCH, ErrorCode::kInternal, false},
  };
  for (const Mapped& m : cases) {
    SCOPED_TRACE(sqlite3_errstr(m.rc));
    Status s = sqlite::status_from(m.rc, "doing it", nullptr);
    EXPECT_EQ(s.code(), m.code);
    EXPECT_EQ(s.retryable(), m.retryable);
    // What was being done, SQLite's words for it and the number (extended codes tell more than their text).
    EXPECT_EQ(s.message().rfind("doing it: ", 0), 0u) << s.message();
    EXPECT_NE(s.message().find(sqlite3_errstr(m.rc)), std::string::npos) << s.message();
    EXPECT_NE(s.message().find("(sqlite " + std::to_string(m.rc) + ")"), std::string::npos) << s.message();
  }
}

TEST(SqliteStatus, SuccessCodesAreOk) {
  EXPECT_TRUE(sqlite::status_from(SQLITE_OK, "x", nullptr));
  EXPECT_TRUE(sqlite::status_from(SQLITE_ROW, "x", nullptr));
  EXPECT_TRUE(sqlite::status_from(SQLITE_DONE, "x", nullptr));
}

class TempDir {
 public:
  TempDir() {
    std::string t = (fs::temp_directory_path() / "fieldsync-io-XXXXXX").string();
    path_ = mkdtemp(t.data());
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string file(const std::string& name) const { return (fs::path(path_) / name).string(); }

 private:
  std::string path_;
};

constexpr int kCreate = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;

// The connection's own message is used when it is about this error, and the error comes through Stmt.
TEST(SqliteDb, ErrorsOnRealFilesAreTyped) {
  TempDir dir;
  {
    std::ofstream(dir.file("junk.db")) << std::string(4096, 'j');
    auto db = sqlite::Db::open(dir.file("junk.db"), kCreate, 0);
    ASSERT_TRUE(db) << db.status().to_string();  // SQLite reads the header lazily
    Status s = (*db)->exec("SELECT count(*) FROM sqlite_schema");
    EXPECT_EQ(s.code(), ErrorCode::kStorageCorrupt) << s.to_string();
    EXPECT_NE(s.message().find("not a database"), std::string::npos) << s.message();
  }
  {
    auto db = sqlite::Db::open(dir.file("a.db"), kCreate, 0);
    ASSERT_TRUE(db);
    ASSERT_TRUE((*db)->exec("CREATE TABLE t (id INTEGER PRIMARY KEY)"));
    ASSERT_TRUE(sqlite::Stmt(**db, "INSERT INTO t VALUES (?)").bind(1, int64_t{1}).run());
    Status dup = sqlite::Stmt(**db, "INSERT INTO t VALUES (?)").bind(1, int64_t{1}).run();
    EXPECT_EQ(dup.code(), ErrorCode::kInternal);  // a constraint our own SQL broke: a bug, not the disk
    EXPECT_FALSE(dup.retryable());
    EXPECT_NE(dup.message().find("UNIQUE"), std::string::npos) << dup.message();
  }
  {
    auto ro = sqlite::Db::open(dir.file("a.db"), SQLITE_OPEN_READONLY, 0);
    ASSERT_TRUE(ro);
    Status s = sqlite::Stmt(**ro, "INSERT INTO t VALUES (2)").run();
    EXPECT_EQ(s.code(), ErrorCode::kStorageReadOnly) << s.to_string();
  }
  {
    auto missing = sqlite::Db::open(dir.file("no/such/dir.db"), kCreate, 0);
    ASSERT_FALSE(missing);
    EXPECT_EQ(missing.status().code(), ErrorCode::kStorageIo);
    EXPECT_TRUE(missing.status().retryable());
  }
}

// Another connection's write lock outlasting busy_timeout_ms is kStorageLocked, retryable; once it is
// released, the same statement goes through.
TEST(SqliteDb, AWriteLockHeldTooLongIsLockedAndRetryable) {
  TempDir dir;
  auto a = sqlite::Db::open(dir.file("l.db"), kCreate, 0);
  auto b = sqlite::Db::open(dir.file("l.db"), kCreate, 20);
  ASSERT_TRUE(a && b);
  ASSERT_TRUE((*a)->exec("CREATE TABLE t (id INTEGER PRIMARY KEY)"));
  ASSERT_TRUE((*a)->exec("BEGIN IMMEDIATE"));
  Status s = (*b)->exec("INSERT INTO t VALUES (1)");
  EXPECT_EQ(s.code(), ErrorCode::kStorageLocked) << s.to_string();
  EXPECT_TRUE(s.retryable());
  ASSERT_TRUE((*a)->exec("COMMIT"));
  EXPECT_TRUE((*b)->exec("INSERT INTO t VALUES (1)"));
}

// SQL built per request (an IN list's length, a report's filters) must not keep a prepared statement per
// variant for the connection's life: Stmt's statements live in a bounded cache, least recently used out
// first, never one a Stmt still holds; prepare()'s statements (callers keep the pointer) are never evicted.
TEST(SqliteDb, StatementsBuiltPerRequestStayBoundedAndHeldOnesSurvive) {
  TempDir dir;
  auto db = sqlite::Db::open(dir.file("c.db"), kCreate, 0);
  ASSERT_TRUE(db);
  sqlite::Db& d = **db;
  ASSERT_TRUE(d.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)"));
  ASSERT_TRUE(d.exec("INSERT INTO t VALUES (1, 'one'), (2, 'two')"));
  Result<sqlite3_stmt*> pinned = d.prepare("SELECT v FROM t WHERE id = ?");
  ASSERT_TRUE(pinned);
  // A statement held through the whole churn, opened first so it is the least recently used.
  sqlite::Stmt held(d, "SELECT v FROM t WHERE id = 2");
  const size_t variants = 3 * sqlite::Db::kMaxUnpinnedStatements;
  for (size_t n = 1; n <= variants; ++n) {
    std::string sql = "SELECT count(*) FROM t WHERE id IN (1";
    for (size_t k = 1; k < n; ++k) sql += ", " + std::to_string(k + 100);
    sql += ")";
    sqlite::Stmt q(d, sql);
    ASSERT_TRUE(q.step()) << q.status().to_string();
    EXPECT_EQ(q.col_int(0), 1);
    // The pinned one and the bound of the rest (the held one among them: it is not evicted).
    EXPECT_LE(d.cached_statements(), sqlite::Db::kMaxUnpinnedStatements + 1);
  }
  EXPECT_EQ(d.cached_statements(), sqlite::Db::kMaxUnpinnedStatements + 1);
  // Both survived: the held Stmt still steps, the pinned pointer still binds and steps.
  ASSERT_TRUE(held.step()) << held.status().to_string();
  EXPECT_EQ(held.col_text(0), "two");
  sqlite3_stmt* p = *pinned;
  ASSERT_EQ(sqlite3_bind_int64(p, 1, 1), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(p), SQLITE_ROW);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(sqlite3_column_text(p, 0))), "one");
  sqlite3_reset(p);
  // The same SQL again is the same pinned statement, not a second one.
  Result<sqlite3_stmt*> again = d.prepare("SELECT v FROM t WHERE id = ?");
  ASSERT_TRUE(again);
  EXPECT_EQ(*again, p);
  // A recently used unpinned statement is found again, not prepared anew.
  const size_t before = d.cached_statements();
  { sqlite::Stmt q(d, "SELECT count(*) FROM t WHERE id IN (1)"); }
  sqlite::Stmt recent(d, "SELECT count(*) FROM t WHERE id IN (1)");
  ASSERT_TRUE(recent.step());
  EXPECT_LE(d.cached_statements(), before + 1);
}

TEST(SqliteQuoting, QuotesKeywordsAndDoublesQuotes) {
  EXPECT_EQ(sqlite::quoted("order"), "\"order\"");
  EXPECT_EQ(sqlite::quoted("a\"b"), "\"a\"\"b\"");
  EXPECT_EQ(sqlite::quoted(""), "\"\"");
  TempDir dir;
  auto db = sqlite::Db::open(dir.file("q.db"), kCreate, 0);
  ASSERT_TRUE(db);
  EXPECT_TRUE(
      (*db)->exec("CREATE TABLE " + sqlite::quoted("order") + " (" + sqlite::quoted("a\"b") + " TEXT)"));
  sqlite::Stmt q(**db, "SELECT count(*) FROM " + sqlite::quoted("order"));
  ASSERT_TRUE(q.step());
  EXPECT_EQ(q.col_int(0), 0);
}

// A throwaway self-signed certificate, made here with OpenSSL alone (io/ sits below the server's tls.h).
struct TestCert {
  TestCert() {
    EVP_PKEY* key = EVP_EC_gen("P-256");
    cert = X509_new();
    ASN1_INTEGER_set(X509_get_serialNumber(cert), 7);
    X509_gmtime_adj(X509_getm_notBefore(cert), 0);
    X509_gmtime_adj(X509_getm_notAfter(cert), 3600);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(cert), "CN", MBSTRING_ASC,
                               reinterpret_cast<const unsigned char*>("io-test"), -1, -1, 0);
    X509_set_issuer_name(cert, X509_get_subject_name(cert));
    X509_set_pubkey(cert, key);
    X509_sign(cert, key, EVP_sha256());
    EVP_PKEY_free(key);
    BIO* bio = BIO_new(BIO_s_mem());
    PEM_write_bio_X509(bio, cert);
    char* data = nullptr;
    long n = BIO_get_mem_data(bio, &data);
    pem.assign(data, static_cast<size_t>(n));
    BIO_free(bio);
  }
  ~TestCert() { X509_free(cert); }
  X509* cert = nullptr;
  std::string pem;
};

// The pin is the SHA-256 of the DER encoding, lowercase hex, from the parsed certificate (the client's side)
// and from its PEM (the server's side) alike.
TEST(CertificateFingerprint, IsTheSha256OfTheDerInLowercaseHex) {
  TestCert t;
  unsigned char* der = nullptr;
  const int der_len = i2d_X509(t.cert, &der);
  ASSERT_GT(der_len, 0);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int md_len = 0;
  ASSERT_EQ(EVP_Digest(der, static_cast<size_t>(der_len), md, &md_len, EVP_sha256(), nullptr), 1);
  OPENSSL_free(der);
  std::string expected;
  for (unsigned int i = 0; i < md_len; ++i) {
    char hex[3];
    std::snprintf(hex, sizeof hex, "%02x", md[i]);
    expected += hex;
  }
  ASSERT_EQ(expected.size(), 64u);
  EXPECT_EQ(net::certificate_sha256(t.cert), expected);
  Result<std::string> from_pem = net::certificate_sha256(t.pem);
  ASSERT_TRUE(from_pem) << from_pem.status().to_string();
  EXPECT_EQ(*from_pem, expected);
}

TEST(CertificateFingerprint, NoCertificateIsAnErrorOrEmpty) {
  EXPECT_EQ(net::certificate_sha256(static_cast<const X509*>(nullptr)), "");
  Result<std::string> bad = net::certificate_sha256(std::string("-----BEGIN CERTIFICATE-----\nnope\n"));
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.status().code(), ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace fieldsync
