// Administration of a server's data directory: users, territories, assignments and devices (the directory),
// the product catalogue, prices and account moves between territories (the central store), tokens for
// scripts, and exports. fieldsync-admin (admin_main.cc) is a thin command line over run().
//
// Catalogue writes and account moves are ordinary transactions: they go through SyncServer::apply_local as
// head office from the admin node (kAdminNode) with the next node_seq after the store's watermark for that
// node -- the watermark is the durable counter, committed with each write -- so they are validated, logged,
// audited and pulled by devices like any change. The admin tool may run while fieldsync-server runs (SQLite
// serialises the two writers); the running server finds such commits by polling the store once a second
// (SyncServer::poll_external_commits), so connected devices receive them live within about a second.
#pragma once

#include <functional>
#include <iosfwd>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "fieldsync/server/directory.h"
#include "fieldsync/server/sqlite_store.h"
#include "fieldsync/server/store_open.h"

namespace fieldsync::server {

// The node id the admin tool writes as (1 is SyncServer's own server_node; devices start at 16).
inline constexpr NodeId kAdminNode = 2;
inline constexpr std::string_view kAdminUser = "admin";
// `login --ttl-ms` accepts at most a year: longer-lived device tokens defeat expiry, and the bound keeps
// now + ttl far from int64 overflow.
inline constexpr int64_t kMaxTokenTtlMs = 366LL * 24 * 60 * 60 * 1000;

class Admin {
 public:
  struct Options {
    Directory::Options directory;
    SqliteCentralStore::Options store;
    std::function<int64_t()> now_ms;  // wall clock unless set
  };

  // Opens (creating if needed, mode 0700) `data_dir` with its directory.db and central.db, or, for a
  // postgresql:// URL (is_postgresql_url), the central store and directory in that database.
  static Result<std::unique_ptr<Admin>> open(const std::string& location, Options options);
  ~Admin();

  Directory& directory() { return *directory_; }
  CentralStore& store() { return *store_; }
  SqliteCentralStore* sqlite_store() { return sqlite_; }  // null on PostgreSQL
  PgCentralStore* postgres_store() { return postgres_; }  // null on SQLite
  int64_t now_ms() const;

  // A product (active). Errors: kInvalidArgument for a SKU that exists, the model's validation errors.
  Result<RecordId> add_product(const std::string& sku, const std::string& name, const std::string& unit);
  // Sets the price of a product (by SKU or record id) in a price list, creating the entry if needed.
  Result<RecordId> set_price(const std::string& product, const std::string& price_list, int64_t cents,
                             const std::string& currency);
  // Moves an account to another territory (head office's call): one transaction setting its territory_id,
  // so devices that could see it drop it with everything hanging off it, and devices of the new territory
  // receive it (sync/server.h scope moves). Already there: nothing is written. Errors:
  // kInvalidArgument for a malformed id or a territory the directory does not know, kRecordNotFound for no
  // such live account, the store's errors.
  Status move_account(const std::string& account_id, const std::string& territory);
  // The central store's live records as canonical JSON (sync/export.h): all of them, or what `user` can see.
  Result<std::string> export_json(const std::optional<UserId>& user);

 private:
  explicit Admin(Options options, OpenedStore opened);
  // Applies `changes` as one head-office transaction from kAdminNode, filling in versions and bases.
  Status apply(std::vector<Change> changes);
  Result<std::vector<RecordState>> records_of(EntityId entity);
  Result<std::optional<RecordState>> find_product(const std::string& sku_or_id);

  Options options_;
  std::unique_ptr<Directory> directory_;
  std::unique_ptr<CentralStore> store_;
  SqliteCentralStore* sqlite_ = nullptr;
  PgCentralStore* postgres_ = nullptr;
  std::string postgresql_url_;  // servers on it are told of each write (notify_log)
  RecordIdGenerator ids_;
};

// fieldsync-admin: runs one command line (`args` without the program name) and returns the exit code: 0 done,
// 1 the command failed (one line on `err`), 2 a usage error. Passwords not given with --password are read as
// one line from `in`.
int run_admin(const std::vector<std::string>& args, std::istream& in, std::ostream& out, std::ostream& err,
              const Admin::Options& options = {});

// The --help text.
std::string admin_usage();

}  // namespace fieldsync::server
