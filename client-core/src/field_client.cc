// FieldClient: opening, the write path (validation, one SyncEngine::write per API call), observers and sync
// status. Queries are in field_client_read.cc.
#include "fieldsync/client/field_client.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <random>
#include <set>

#include "field_client_internal.h"
#include "fieldsync/client/sqlite_replica.h"
#include "fieldsync/io/sqlite_db.h"
#include "fieldsync/sync/codec.h"
#include "fieldsync/sync/export.h"
#include "fieldsync/sync/tuning.h"

namespace fieldsync::client {

using detail::invalid;
using schema::EntityId;

namespace {

constexpr int64_t kDayMs = 86'400'000;

// Room for a typical API call's changes (a record created with its fields), so that building the batch
// does not reallocate and move the changes as it grows; larger calls grow the vector as before.
constexpr size_t kBatchReserve = 8;

// The high 64 bits of a * b, from 32-bit halves (no 128-bit type on 32-bit targets).
uint64_t mul_high(uint64_t a, uint64_t b) {
  const uint64_t a_lo = static_cast<uint32_t>(a), a_hi = a >> 32;
  const uint64_t b_lo = static_cast<uint32_t>(b), b_hi = b >> 32;
  const uint64_t lo_lo = a_lo * b_lo, hi_lo = a_hi * b_lo, lo_hi = a_lo * b_hi, hi_hi = a_hi * b_hi;
  const uint64_t cross = (lo_lo >> 32) + static_cast<uint32_t>(hi_lo) + lo_hi;  // at most 2^64 - 1
  return hi_hi + (hi_lo >> 32) + (cross >> 32);
}

// The system clock in milliseconds since 1970. Every write reads it; duration_cast divides 64-bit
// nanoseconds by a million, which 32-bit ARM does in a library call of hundreds of instructions. For times
// after 1970 the quotient is taken as a multiplication by the reciprocal instead (what compilers emit on
// 64-bit targets): ceil(2^82 / 10^6) and a shift, exact for every 64-bit dividend.
int64_t wall_clock_ms() {
  const int64_t ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count();
  if (ns < 0) return ns / 1'000'000;  // a clock before 1970: rare and broken, the plain division
  return static_cast<int64_t>(mul_high(static_cast<uint64_t>(ns), 0x431BDE82D7B634DBull) >> 18);
}

int64_t floor_div(int64_t a, int64_t b) {
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}

bool is_enum_value(EntityId e, std::string_view field, std::string_view v) {
  const schema::FieldDef* f = schema::entity_ref(e).field(field);
  return std::find(f->enum_values.begin(), f->enum_values.end(), v) != f->enum_values.end();
}

std::string enum_list(EntityId e, std::string_view field) {
  std::string out;
  for (std::string_view v : schema::entity_ref(e).field(field)->enum_values) {
    if (!out.empty()) out += ", ";
    out += v;
  }
  return out;
}

// ---- revocation: the marker file and the deletion of the replica's files

constexpr const char* kRevokedMessage = "device revoked by head office: local replica erased";

Status revoked_status() {
  return Status(ErrorCode::kDeviceRevoked, kRevokedMessage);
}

std::string marker_path(const std::string& path) {
  return path + ".revoked";
}

std::string errno_text(int err) {
  return std::error_code(err, std::generic_category()).message();
}

// Makes the directory entries created or removed in `path`'s directory durable.
void sync_directory(const std::string& path) {
  std::string dir = std::filesystem::path(path).parent_path().string();
  if (dir.empty()) dir = ".";
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;  // best effort: the entries are still there, just maybe not on disk yet
  (void)::fsync(fd);
  ::close(fd);
}

// Written and fsynced before anything is deleted: a crash part-way through the erase leaves the marker, and
// open() finishes the deletion instead of serving the data again.
Status write_marker(const std::string& path) {
  const std::string marker = marker_path(path);
  const int fd = ::open(marker.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return Status(ErrorCode::kStorageIo, "create " + marker + ": " + errno_text(errno));
  const std::string text = std::string(kRevokedMessage) + "\n";
  const bool ok =
      ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) && ::fsync(fd) == 0;
  const int err = errno;
  ::close(fd);
  if (!ok) return Status(ErrorCode::kStorageIo, "write " + marker + ": " + errno_text(err));
  sync_directory(path);
  return Status::ok();
}

// The WAL first: a WAL left next to a deleted database would be replayed into the next file of that name.
Status delete_replica_files(const std::string& path) {
  std::string failed;
  for (const char* suffix : {"-wal", "-journal", "-shm", ""}) {
    std::error_code ec;
    std::filesystem::remove(path + suffix, ec);  // a missing file is not an error
    if (ec) failed += (failed.empty() ? "" : "; ") + ("delete " + path + suffix + ": " + ec.message());
  }
  sync_directory(path);
  if (!failed.empty()) return Status(ErrorCode::kStorageIo, failed);
  return Status::ok();
}

Status revoked_after(const Status& deletion) {
  if (deletion) return revoked_status();
  return Status(ErrorCode::kDeviceRevoked,
                std::string("device revoked by head office: erasing the local replica failed (") +
                    deletion.message() + "); it is retried when the app opens the replica again");
}

}  // namespace

// ---- opening

Result<std::unique_ptr<FieldClient>> FieldClient::open(const std::string& path, Options options) {
  std::error_code ec;
  if (std::filesystem::exists(marker_path(path), ec)) return revoked_after(delete_replica_files(path));
  if (options.user.empty()) return invalid(ErrorCode::kInvalidArgument, "a user id is required");
  if (options.utc_offset_minutes < -14 * 60 || options.utc_offset_minutes > 14 * 60)
    return invalid(ErrorCode::kInvalidArgument, "utc offset must be within +-14 hours");
  // The server refuses a Hello with a bad one at every connection: say so now, where the app can fix it.
  if (options.app_version.size() > tuning::kMaxAppVersionBytes ||
      std::any_of(options.app_version.begin(), options.app_version.end(),
                  [](char c) { return c < 0x20 || c > 0x7e; }))
    return invalid(ErrorCode::kInvalidArgument, "app version must be at most 64 bytes of printable ASCII");
  if (!options.now_ms) options.now_ms = [] { return wall_clock_ms(); };
  SqliteReplicaStore::Options so;
  so.create_if_missing = true;
  so.synchronous_full = options.synchronous_full;
  so.node = options.node;
  so.schema_version = options.schema_version;
  auto store = SqliteReplicaStore::open(path, so);
  if (!store) return store.status();
  return std::unique_ptr<FieldClient>(new FieldClient(path, std::move(options), std::move(store).value()));
}

Status FieldClient::clear_revocation(const std::string& path) {
  if (Status s = delete_replica_files(path); !s) return s;
  std::error_code ec;
  std::filesystem::remove(marker_path(path), ec);
  if (ec) return Status(ErrorCode::kStorageIo, "delete " + marker_path(path) + ": " + ec.message());
  sync_directory(path);
  return Status::ok();
}

FieldClient::FieldClient(std::string path, Options options, std::unique_ptr<SqliteReplicaStore> store)
    : options_(std::move(options)),
      path_(std::move(path)),
      node_(store->node()),
      store_(std::move(store)),
      queries_(std::make_unique<detail::Queries>()),
      ids_(store_->node() ^ std::random_device{}()) {
  ClientConfig config;
  config.user = options_.user;
  config.token = options_.token;
  config.app_version = options_.app_version;
  config.schema_version = options_.schema_version;
  config.role = options_.role;
  engine_ = std::make_unique<SyncEngine>(*store_, std::move(config));
}

FieldClient::~FieldClient() {
  // Cached statements belong to the store's connection: finalize them before it closes.
  (void)store_->read([this](sqlite3*) {
    queries_->finalize_all();
    return Status::ok();
  });
}

NodeId FieldClient::node() const {
  return node_;
}

Status FieldClient::erase_replica() {
  MutexLock lock(erase_mu_);
  if (erased_) return revoked_status();
  // New writes already fail: the engine stopped with kDeviceRevoked before it asked for the erase.
  const Status marker = write_marker(path_);
  // Waits for a read or write in progress on another thread; the API's cached statements go with the
  // connection. Every call from here on fails with kDeviceRevoked.
  store_->close(revoked_status(), [this](sqlite3*) { queries_->finalize_all(); });
  Status deleted = delete_replica_files(path_);
  erased_ = true;
  if (!marker) {
    deleted = Status(ErrorCode::kStorageIo,
                     marker.message() + (deleted ? std::string() : "; " + deleted.message()));
  }
  return revoked_after(deleted);
}

// ---- the write path

Status FieldClient::transact(const std::function<Status(Batch&)>& build) {
  std::vector<RecordKey> touched;
  {
    MutexLock lock(write_mu_);
    if (erased_) return revoked_status();
    Batch batch;
    batch.changes.reserve(kBatchReserve);
    // One reading of the clock per call: its ids, its default times and its HLC ticks take the same
    // millisecond (an app's clock may convert with a 64-bit division, a library call on 32-bit ARM).
    batch.now_ms = now_ms();
    batch.next_id = [this, &batch] {
      write_mu_.assert_held();  // `build` runs inside this scope; the analysis does not follow lambdas
      return ids_.next(batch.now_ms);
    };
    if (Status s = build(batch); !s) return s;
    if (batch.changes.empty()) return Status::ok();
    // The records touched, each once and in order (a call's changes mostly share one record: one allocation).
    touched.reserve(batch.changes.size());
    for (const Change& c : batch.changes)
      if (touched.empty() || touched.back().entity != c.entity || touched.back().id != c.record)
        touched.push_back(RecordKey{c.entity, c.record});
    if (touched.size() > 1) {
      std::sort(touched.begin(), touched.end());
      touched.erase(std::unique(touched.begin(), touched.end()), touched.end());
    }
    Result<uint64_t> r = engine_->write(std::move(batch.changes), batch.now_ms);
    if (!r) return r.status();
  }
  for (const Observer& o : observers_snapshot())
    if (o.records_changed) o.records_changed(touched);
  return Status::ok();
}

// ---- accounts and contacts

Result<std::string> FieldClient::create_account(const NewAccount& a) {
  RecordId id;
  Status s = transact([&](Batch& b) -> Status {
    if (a.segment && !a.segment->empty() && !is_enum_value(EntityId::kAccount, "segment", *a.segment))
      return invalid(ErrorCode::kValueInvalid, "segment must be one of " +
                                                   enum_list(EntityId::kAccount, "segment") + ", got '" +
                                                   *a.segment + "'");
    const EntityId e = EntityId::kAccount;
    id = b.create(e, b.next_id());
    b.set(e, id, "name", Value::text(a.name));
    b.set(e, id, "territory_id", Value::text(a.territory_id));
    b.set_text(e, id, "address", a.address);
    b.set_text(e, id, "city", a.city);
    b.set_text(e, id, "phone", a.phone);
    b.set_text(e, id, "email", a.email);
    b.set_text(e, id, "segment", a.segment);
    b.set(e, id, "created_by", Value::text(options_.user));
    return Status::ok();
  });
  if (!s) return s;
  return id.to_string();
}

Status FieldClient::edit_account(const std::string& id_text, const AccountEdit& e) {
  return transact([&](Batch& b) -> Status {
    auto id = detail::parse_id("account", id_text);
    if (!id) return id.status();
    if (Status v = detail::require_live(*queries_, *store_, EntityId::kAccount, id_text); !v) return v;
    if (e.segment && !e.segment->empty() && !is_enum_value(EntityId::kAccount, "segment", *e.segment))
      return invalid(ErrorCode::kValueInvalid, "segment must be one of " +
                                                   enum_list(EntityId::kAccount, "segment") + ", got '" +
                                                   *e.segment + "'");
    const EntityId en = EntityId::kAccount;
    b.set_text(en, *id, "name", e.name);
    b.set_text(en, *id, "address", e.address);
    b.set_text(en, *id, "city", e.city);
    b.set_text(en, *id, "phone", e.phone);
    b.set_text(en, *id, "email", e.email);
    b.set_text(en, *id, "segment", e.segment);
    b.set_text(en, *id, "territory_id", e.territory_id);
    if (e.add_note) b.append(en, *id, "notes", *e.add_note);
    if (b.changes.empty()) return invalid(ErrorCode::kInvalidArgument, "nothing to change");
    return Status::ok();
  });
}

Result<std::string> FieldClient::create_contact(const NewContact& c) {
  RecordId id;
  Status s = transact([&](Batch& b) -> Status {
    auto account = detail::parse_id("account", c.account_id);
    if (!account) return account.status();
    if (Status v = detail::require_live(*queries_, *store_, EntityId::kAccount, c.account_id); !v) return v;
    const EntityId e = EntityId::kContact;
    id = b.create(e, b.next_id());
    b.set(e, id, "account_id", Value::text(c.account_id));
    b.set(e, id, "name", Value::text(c.name));
    b.set_text(e, id, "title", c.title);
    b.set_text(e, id, "email", c.email);
    b.set_text(e, id, "phone", c.phone);
    if (c.is_primary) b.set(e, id, "is_primary", Value::boolean(*c.is_primary));
    return Status::ok();
  });
  if (!s) return s;
  return id.to_string();
}

Status FieldClient::edit_contact(const std::string& id_text, const ContactEdit& e) {
  return transact([&](Batch& b) -> Status {
    auto id = detail::parse_id("contact", id_text);
    if (!id) return id.status();
    if (Status v = detail::require_live(*queries_, *store_, EntityId::kContact, id_text); !v) return v;
    const EntityId en = EntityId::kContact;
    b.set_text(en, *id, "name", e.name);
    b.set_text(en, *id, "title", e.title);
    b.set_text(en, *id, "email", e.email);
    b.set_text(en, *id, "phone", e.phone);
    if (e.is_primary) b.set(en, *id, "is_primary", Value::boolean(*e.is_primary));
    if (b.changes.empty()) return invalid(ErrorCode::kInvalidArgument, "nothing to change");
    return Status::ok();
  });
}

// ---- visits

Result<std::string> FieldClient::check_in(const CheckIn& c) {
  RecordId id;
  Status s = transact([&](Batch& b) -> Status {
    auto account = detail::parse_id("account", c.account_id);
    if (!account) return account.status();
    if (c.latitude.has_value() != c.longitude.has_value())
      return invalid(ErrorCode::kInvalidArgument, "give both latitude and longitude, or neither");
    if (Status v = detail::require_live(*queries_, *store_, EntityId::kAccount, c.account_id); !v) return v;
    if (c.calendar_event_id) {
      if (auto ev = detail::parse_id("calendar event", *c.calendar_event_id); !ev) return ev.status();
      if (Status v = detail::require_live(*queries_, *store_, EntityId::kCalendarEvent, *c.calendar_event_id);
          !v)
        return v;
    }
    const EntityId e = EntityId::kVisit;
    id = b.create(e, b.next_id());
    b.set(e, id, "account_id", Value::text(c.account_id));
    b.set(e, id, "rep_id", Value::text(options_.user));
    b.set(e, id, "check_in_at", Value::integer(c.at_ms.value_or(b.now_ms)));
    if (c.latitude) b.set(e, id, "latitude", Value::real(*c.latitude));
    if (c.longitude) b.set(e, id, "longitude", Value::real(*c.longitude));
    if (c.calendar_event_id) b.set(e, id, "calendar_event_id", Value::text(*c.calendar_event_id));
    return Status::ok();
  });
  if (!s) return s;
  return id.to_string();
}

Status FieldClient::add_visit_note(const std::string& visit_id, const std::string& text) {
  return transact([&](Batch& b) -> Status {
    auto id = detail::parse_id("visit", visit_id);
    if (!id) return id.status();
    if (Status v = detail::require_live(*queries_, *store_, EntityId::kVisit, visit_id); !v) return v;
    b.append(EntityId::kVisit, *id, "notes", text);
    return Status::ok();
  });
}

Status FieldClient::check_out(const std::string& visit_id, const std::string& outcome,
                              std::optional<int64_t> at_ms) {
  return transact([&](Batch& b) -> Status {
    auto id = detail::parse_id("visit", visit_id);
    if (!id) return id.status();
    if (!is_enum_value(EntityId::kVisit, "outcome", outcome))
      return invalid(
          ErrorCode::kValueInvalid,
          "outcome must be one of " + enum_list(EntityId::kVisit, "outcome") + ", got '" + outcome + "'");
    auto v = detail::load_visit(*queries_, *store_, visit_id);
    if (!v) return v.status();
    if (v->check_out_at_ms)
      return invalid(ErrorCode::kInvalidArgument, "visit " + visit_id + " is already checked out");
    const int64_t at = at_ms.value_or(now_ms());
    if (at < v->check_in_at_ms)
      return invalid(ErrorCode::kValueInvalid, "check-out time is before the check-in time");
    b.set(EntityId::kVisit, *id, "check_out_at", Value::integer(at));
    b.set(EntityId::kVisit, *id, "outcome", Value::text(outcome));
    return Status::ok();
  });
}

// ---- orders

namespace {

// Lines can change while the model lets the order's lines change: not once approved, fulfilled or cancelled.
Status check_order_editable(const Order& o) {
  for (std::string_view locked : schema::entity_ref(EntityId::kOrder).locked_statuses)
    if (o.status == locked)
      return invalid(ErrorCode::kOrderLocked,
                     "order " + o.id + " is " + o.status + " and can no longer change");
  return Status::ok();
}

}  // namespace

Result<std::string> FieldClient::draft_order(const std::string& account_id, const std::string& currency) {
  return draft_order_with_lines(account_id, currency, {});
}

Result<std::string> FieldClient::draft_order_with_lines(const std::string& account_id,
                                                        const std::string& currency,
                                                        const std::vector<NewLine>& lines) {
  RecordId id;
  Status s = transact([&](Batch& b) -> Status {
    auto account = detail::parse_id("account", account_id);
    if (!account) return account.status();
    if (Status v = detail::require_live(*queries_, *store_, EntityId::kAccount, account_id); !v) return v;
    const EntityId e = EntityId::kOrder;
    id = b.create(e, b.next_id());
    b.set(e, id, "account_id", Value::text(account_id));
    b.set(e, id, "rep_id", Value::text(options_.user));
    b.set(e, id, "status", Value::text("draft"));
    b.set(e, id, "currency", Value::text(currency));
    for (const NewLine& line : lines)
      if (auto v = add_line_changes(b, id, currency, line); !v) return v.status();
    return Status::ok();
  });
  if (!s) return s;
  return id.to_string();
}

Result<RecordId> FieldClient::add_line_changes(Batch& b, const RecordId& order, const std::string& currency,
                                               const NewLine& line) {
  auto pid = detail::parse_id("product", line.product_id);
  if (!pid) return pid.status();
  auto active = detail::product_active(*queries_, *store_, line.product_id);
  if (!active) return active.status();
  if (!*active) return invalid(ErrorCode::kValueInvalid, "product " + line.product_id + " is not active");
  int64_t price = 0;
  if (line.unit_price_cents) {
    price = *line.unit_price_cents;
  } else {
    auto p = detail::list_price(*queries_, *store_, line.product_id, currency, options_.price_list, now_ms());
    if (!p) return p.status();
    price = *p;
  }
  const EntityId e = EntityId::kOrderLine;
  const RecordId id = b.create(e, b.next_id());
  b.set(e, id, "order_id", Value::text(order.to_string()));
  b.set(e, id, "product_id", Value::text(line.product_id));
  b.set(e, id, "quantity", Value::integer(line.quantity));
  b.set(e, id, "unit_price_cents", Value::integer(price));
  if (line.discount_bp) b.set(e, id, "discount_bp", Value::integer(*line.discount_bp));
  b.set_text(e, id, "note", line.note);
  return id;
}

Result<std::string> FieldClient::add_line(const std::string& order_id, const NewLine& line) {
  RecordId id;
  Status s = transact([&](Batch& b) -> Status {
    auto oid = detail::parse_id("order", order_id);
    if (!oid) return oid.status();
    auto order = detail::load_order_head(*queries_, *store_, order_id);
    if (!order) return order.status();
    if (Status v = check_order_editable(*order); !v) return v;
    auto line_id = add_line_changes(b, *oid, order->currency, line);
    if (!line_id) return line_id.status();
    id = *line_id;
    return Status::ok();
  });
  if (!s) return s;
  return id.to_string();
}

Status FieldClient::change_line(const std::string& line_id, const LineEdit& e) {
  return transact([&](Batch& b) -> Status {
    auto id = detail::parse_id("order line", line_id);
    if (!id) return id.status();
    auto order_id = detail::line_order(*queries_, *store_, line_id);
    if (!order_id) return order_id.status();
    auto order = detail::load_order_head(*queries_, *store_, *order_id);
    if (!order) return order.status();
    if (Status v = check_order_editable(*order); !v) return v;
    const EntityId en = EntityId::kOrderLine;
    if (e.quantity) b.set(en, *id, "quantity", Value::integer(*e.quantity));
    if (e.unit_price_cents) b.set(en, *id, "unit_price_cents", Value::integer(*e.unit_price_cents));
    if (e.discount_bp) b.set(en, *id, "discount_bp", Value::integer(*e.discount_bp));
    b.set_text(en, *id, "note", e.note);
    if (b.changes.empty()) return invalid(ErrorCode::kInvalidArgument, "nothing to change");
    return Status::ok();
  });
}

Status FieldClient::remove_line(const std::string& line_id) {
  return transact([&](Batch& b) -> Status {
    auto id = detail::parse_id("order line", line_id);
    if (!id) return id.status();
    auto order_id = detail::line_order(*queries_, *store_, line_id);
    if (!order_id) return order_id.status();
    auto order = detail::load_order_head(*queries_, *store_, *order_id);
    if (!order) return order.status();
    if (Status v = check_order_editable(*order); !v) return v;
    b.erase(EntityId::kOrderLine, *id);
    return Status::ok();
  });
}

Status FieldClient::submit_order(const std::string& order_id) {
  return transact([&](Batch& b) -> Status {
    auto id = detail::parse_id("order", order_id);
    if (!id) return id.status();
    auto order = detail::load_order(*queries_, *store_, order_id);
    if (!order) return order.status();
    if (Status v = detail::check_transition(EntityId::kOrder, order->status, "submitted", options_.role); !v)
      return v;
    if (order->status == "submitted")
      return invalid(ErrorCode::kInvalidTransition, "order is already submitted");
    if (order->lines.empty())
      return invalid(ErrorCode::kInvalidArgument, "order " + order_id + " has no lines");
    b.set(EntityId::kOrder, *id, "status", Value::text("submitted"));
    b.set(EntityId::kOrder, *id, "submitted_at", Value::integer(now_ms()));
    return Status::ok();
  });
}

// ---- calendar

Result<EventWriteResult> FieldClient::create_event(const NewEvent& ev) {
  RecordId id;
  Status s = transact([&](Batch& b) -> Status {
    if (ev.end_at_ms <= ev.start_at_ms)
      return invalid(ErrorCode::kValueInvalid, "an event must end after it starts");
    if (ev.account_id) {
      if (auto a = detail::parse_id("account", *ev.account_id); !a) return a.status();
      if (Status v = detail::require_live(*queries_, *store_, EntityId::kAccount, *ev.account_id); !v)
        return v;
    }
    if (ev.opportunity_id) {
      if (auto o = detail::parse_id("opportunity", *ev.opportunity_id); !o) return o.status();
      if (Status v = detail::require_live(*queries_, *store_, EntityId::kOpportunity, *ev.opportunity_id); !v)
        return v;
    }
    const EntityId e = EntityId::kCalendarEvent;
    id = b.create(e, b.next_id());
    b.set(e, id, "owner_id", Value::text(options_.user));
    b.set(e, id, "title", Value::text(ev.title));
    b.set(e, id, "start_at", Value::integer(ev.start_at_ms));
    b.set(e, id, "end_at", Value::integer(ev.end_at_ms));
    b.set(e, id, "status", Value::text("scheduled"));
    if (ev.account_id) b.set(e, id, "account_id", Value::text(*ev.account_id));
    if (ev.opportunity_id) b.set(e, id, "opportunity_id", Value::text(*ev.opportunity_id));
    b.set_text(e, id, "location", ev.location);
    return Status::ok();
  });
  if (!s) return s;
  EventWriteResult out;
  out.id = id.to_string();
  auto o = overlaps(out.id, ev.start_at_ms, ev.end_at_ms);
  if (!o) return o.status();
  out.overlaps = std::move(o).value();
  return out;
}

Result<EventWriteResult> FieldClient::move_event(const std::string& id_text, int64_t start_at_ms,
                                                 int64_t end_at_ms) {
  Status s = transact([&](Batch& b) -> Status {
    auto id = detail::parse_id("calendar event", id_text);
    if (!id) return id.status();
    if (end_at_ms <= start_at_ms)
      return invalid(ErrorCode::kValueInvalid, "an event must end after it starts");
    auto ev = detail::load_event(*queries_, *store_, id_text);
    if (!ev) return ev.status();
    if (ev->status != "scheduled")
      return invalid(ErrorCode::kInvalidTransition,
                     "event " + id_text + " is " + ev->status + ", not scheduled");
    b.set(EntityId::kCalendarEvent, *id, "start_at", Value::integer(start_at_ms));
    b.set(EntityId::kCalendarEvent, *id, "end_at", Value::integer(end_at_ms));
    return Status::ok();
  });
  if (!s) return s;
  EventWriteResult out;
  out.id = id_text;
  auto o = overlaps(id_text, start_at_ms, end_at_ms);
  if (!o) return o.status();
  out.overlaps = std::move(o).value();
  return out;
}

Status FieldClient::cancel_event(const std::string& id_text) {
  return transact([&](Batch& b) -> Status {
    auto id = detail::parse_id("calendar event", id_text);
    if (!id) return id.status();
    auto ev = detail::load_event(*queries_, *store_, id_text);
    if (!ev) return ev.status();
    if (ev->status == "cancelled")
      return invalid(ErrorCode::kInvalidTransition, "event is already cancelled");
    if (Status v = detail::check_transition(EntityId::kCalendarEvent, ev->status, "cancelled", options_.role);
        !v)
      return v;
    b.set(EntityId::kCalendarEvent, *id, "status", Value::text("cancelled"));
    return Status::ok();
  });
}

std::pair<int64_t, int64_t> FieldClient::day_window(int64_t at_ms) const {
  const int64_t off = int64_t{options_.utc_offset_minutes} * 60'000;
  const int64_t start = floor_div(at_ms + off, kDayMs) * kDayMs - off;
  return {start, start + kDayMs};
}

std::pair<int64_t, int64_t> FieldClient::week_window(int64_t at_ms) const {
  const int64_t off = int64_t{options_.utc_offset_minutes} * 60'000;
  const int64_t day = floor_div(at_ms + off, kDayMs);
  const int64_t weekday = ((day + 3) % 7 + 7) % 7;  // 1970-01-01 was a Thursday; Monday = 0
  const int64_t start = (day - weekday) * kDayMs - off;
  return {start, start + 7 * kDayMs};
}

Result<std::vector<Event>> FieldClient::agenda_today() {
  auto [from, to] = day_window(now_ms());
  return agenda(from, to);
}

Result<std::vector<Event>> FieldClient::agenda_week() {
  auto [from, to] = week_window(now_ms());
  return agenda(from, to);
}

// ---- opportunities

Result<std::string> FieldClient::create_opportunity(const NewOpportunity& o) {
  RecordId id;
  Status s = transact([&](Batch& b) -> Status {
    auto account = detail::parse_id("account", o.account_id);
    if (!account) return account.status();
    if (!is_enum_value(EntityId::kOpportunity, "stage", o.stage))
      return invalid(
          ErrorCode::kValueInvalid,
          "stage must be one of " + enum_list(EntityId::kOpportunity, "stage") + ", got '" + o.stage + "'");
    if (Status v = detail::require_live(*queries_, *store_, EntityId::kAccount, o.account_id); !v) return v;
    const EntityId e = EntityId::kOpportunity;
    id = b.create(e, b.next_id());
    b.set(e, id, "account_id", Value::text(o.account_id));
    b.set(e, id, "owner_id", Value::text(options_.user));
    b.set(e, id, "name", Value::text(o.name));
    b.set(e, id, "stage", Value::text(o.stage));
    b.set(e, id, "amount_cents", Value::integer(o.amount_cents));
    b.set(e, id, "currency", Value::text(o.currency));
    if (o.expected_close_ms) b.set(e, id, "expected_close", Value::integer(*o.expected_close_ms));
    return Status::ok();
  });
  if (!s) return s;
  return id.to_string();
}

Status FieldClient::move_opportunity(const std::string& id_text, const std::string& stage) {
  return transact([&](Batch& b) -> Status {
    auto id = detail::parse_id("opportunity", id_text);
    if (!id) return id.status();
    if (!is_enum_value(EntityId::kOpportunity, "stage", stage))
      return invalid(
          ErrorCode::kValueInvalid,
          "stage must be one of " + enum_list(EntityId::kOpportunity, "stage") + ", got '" + stage + "'");
    auto o = detail::load_opportunity(*queries_, *store_, id_text);
    if (!o) return o.status();
    if (o->stage == stage)
      return invalid(ErrorCode::kInvalidTransition, "opportunity is already in " + stage);
    if (Status v = detail::check_transition(EntityId::kOpportunity, o->stage, stage, options_.role); !v)
      return v;
    b.set(EntityId::kOpportunity, *id, "stage", Value::text(stage));
    return Status::ok();
  });
}

// ---- sync status and observers

Result<SyncStatus> FieldClient::sync_status() {
  if (erased_) return revoked_status();
  SyncStatus st;
  auto pending = pending_count();
  if (!pending) return pending.status();
  st.pending_txns = *pending;
  st.state = engine_->state();
  st.connected = st.state != SyncClient::State::kDisconnected && st.state != SyncClient::State::kStopped;
  // Persisted by the sync engine in the commit that completed the sync, so it survives a restart.
  Status read = store_->read([&](sqlite3* db) {
    sqlite3_stmt* s = nullptr;
    int rc = sqlite3_prepare_v2(db, "SELECT last_synced_ms FROM _sync_meta WHERE id = 1", -1, &s, nullptr);
    if (rc == SQLITE_OK && (rc = sqlite3_step(s)) == SQLITE_ROW && sqlite3_column_int64(s, 0) > 0)
      st.last_synced_at_ms = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? Status::ok()
                                                 : sqlite::status_from(rc, "read last sync time", db);
  });
  if (!read) return read;
  return st;
}

Result<std::vector<ConflictRecord>> FieldClient::conflicts() {
  return store_->conflicts();
}

Result<std::vector<Rejection>> FieldClient::rejections() {
  return store_->rejections();
}

namespace {

// The column holds a blob; an empty one decodes as an error like any other damage.
std::span<const uint8_t> blob(sqlite3_stmt* s, int col) {
  const void* p = sqlite3_column_blob(s, col);
  const int n = sqlite3_column_bytes(s, col);
  if (p == nullptr || n <= 0) return {};
  return {static_cast<const uint8_t*>(p), static_cast<size_t>(n)};
}

}  // namespace

Result<std::vector<InboxConflict>> FieldClient::conflict_inbox(bool unread_only) {
  std::vector<InboxConflict> out;
  Status bad;
  Status s = detail::query(
      *queries_, *store_,
      unread_only ? "SELECT id, seen, conflict FROM _conflicts WHERE seen = 0 ORDER BY id DESC"
                  : "SELECT id, seen, conflict FROM _conflicts ORDER BY id DESC",
      {}, [&](sqlite3_stmt* st) {
        Result<ConflictRecord> c = codec::decode_conflict(blob(st, 2));
        if (!c) {
          if (bad)
            bad =
                Status(ErrorCode::kStorageCorrupt, "conflict " + std::to_string(sqlite3_column_int64(st, 0)) +
                                                       ": " + c.status().to_string());
          return;
        }
        out.push_back({sqlite3_column_int64(st, 0), sqlite3_column_int(st, 1) != 0, std::move(c).value()});
      });
  if (!s) return s;
  if (!bad) return bad;
  return out;
}

Result<std::vector<InboxRejection>> FieldClient::rejection_inbox(bool unread_only) {
  std::vector<InboxRejection> out;
  Status bad;
  Status s = detail::query(
      *queries_, *store_,
      unread_only ? "SELECT id, seen, node_seq, reason, message, changes FROM _rejections WHERE seen = 0 "
                    "ORDER BY id DESC"
                  : "SELECT id, seen, node_seq, reason, message, changes FROM _rejections ORDER BY id DESC",
      {}, [&](sqlite3_stmt* st) {
        Result<ClientTxn> t = codec::decode_client_txn(blob(st, 5));
        if (!t) {
          if (bad)
            bad = Status(
                ErrorCode::kStorageCorrupt,
                "rejection " + std::to_string(sqlite3_column_int64(st, 0)) + ": " + t.status().to_string());
          return;
        }
        InboxRejection r;
        r.inbox_id = sqlite3_column_int64(st, 0);
        r.seen = sqlite3_column_int(st, 1) != 0;
        r.rejection.node_seq = static_cast<uint64_t>(sqlite3_column_int64(st, 2));
        r.rejection.reason = static_cast<ErrorCode>(sqlite3_column_int(st, 3));
        const unsigned char* m = sqlite3_column_text(st, 4);
        if (m != nullptr)
          r.rejection.message.assign(reinterpret_cast<const char*>(m),
                                     static_cast<size_t>(sqlite3_column_bytes(st, 4)));
        r.rejection.changes = std::move(t->changes);
        out.push_back(std::move(r));
      });
  if (!s) return s;
  if (!bad) return bad;
  return out;
}

Result<InboxCounts> FieldClient::unread_counts() {
  InboxCounts counts;
  Status s = detail::query(*queries_, *store_,
                           "SELECT (SELECT count(*) FROM _conflicts WHERE seen = 0), "
                           "(SELECT count(*) FROM _rejections WHERE seen = 0)",
                           {}, [&](sqlite3_stmt* st) {
                             counts.unread_conflicts = static_cast<size_t>(sqlite3_column_int64(st, 0));
                             counts.unread_rejections = static_cast<size_t>(sqlite3_column_int64(st, 1));
                           });
  if (!s) return s;
  return counts;
}

Status FieldClient::mark_conflicts_seen(int64_t up_to_inbox_id) {
  if (up_to_inbox_id <= 0) return invalid(ErrorCode::kInvalidArgument, "inbox ids start at 1");
  return store_->mark_conflicts_seen(up_to_inbox_id);
}

Status FieldClient::mark_rejections_seen(int64_t up_to_inbox_id) {
  if (up_to_inbox_id <= 0) return invalid(ErrorCode::kInvalidArgument, "inbox ids start at 1");
  return store_->mark_rejections_seen(up_to_inbox_id);
}

Result<std::string> FieldClient::export_json() {
  auto records = store_->records();
  if (!records) return records.status();
  std::vector<RecordState> all;
  all.reserve(records->size());
  for (auto& [key, state] : *records) all.push_back(std::move(state));
  return canonical_json(all);
}

uint64_t FieldClient::add_observer(Observer observer) {
  MutexLock lock(observers_mu_);
  const uint64_t id = next_observer_++;
  observers_.emplace_back(id, std::move(observer));
  return id;
}

void FieldClient::remove_observer(uint64_t id) {
  MutexLock lock(observers_mu_);
  std::erase_if(observers_, [id](const auto& p) { return p.first == id; });
}

std::vector<Observer> FieldClient::observers_snapshot() {
  MutexLock lock(observers_mu_);
  std::vector<Observer> out;
  out.reserve(observers_.size());
  for (const auto& [id, o] : observers_) out.push_back(o);
  return out;
}

void FieldClient::dispatch_events() {
  std::vector<ClientEvent> events = engine_->take_events();
  if (events.empty()) return;
  const std::vector<Observer> observers = observers_snapshot();
  for (const ClientEvent& e : events) {
    if (e.kind == ClientEvent::Kind::kMustErase) {
      // Done whether or not anyone listens; erase_replica() releases its lock before the observers run.
      const Status result = erase_replica();
      for (const Observer& o : observers)
        if (o.erased) o.erased(result);
      continue;
    }
    for (const Observer& o : observers) {
      switch (e.kind) {
        case ClientEvent::Kind::kRecordsChanged:
          if (o.records_changed) o.records_changed(e.records);
          break;
        case ClientEvent::Kind::kConflict:
          if (o.conflict && e.conflict) o.conflict(*e.conflict);
          break;
        case ClientEvent::Kind::kRejected:
          if (e.rejection) {
            if (o.rejection) o.rejection(*e.rejection);
            if (o.records_changed) {
              std::set<RecordKey> keys;
              for (const Change& c : e.rejection->changes) keys.insert(RecordKey{c.entity, c.record});
              o.records_changed(std::vector<RecordKey>(keys.begin(), keys.end()));
            }
          }
          break;
        case ClientEvent::Kind::kBootstrapProgress:
          if (o.sync_progress) o.sync_progress(e.done, e.total);
          break;
        case ClientEvent::Kind::kPushProgress:
          if (o.push_progress) o.push_progress(e.done, e.total);
          break;
        case ClientEvent::Kind::kSynced:
          if (o.synced) o.synced();
          break;
        case ClientEvent::Kind::kError:
          if (o.error) o.error(e.status);
          break;
        case ClientEvent::Kind::kMustErase:
          break;  // handled above
      }
    }
  }
}

void compute_line_totals(OrderLine& line) {
  line.gross_cents = line.quantity * line.unit_price_cents;
  // gross * bp / 10000 without overflowing: split gross into whole ten-thousands and the rest.
  const int64_t bp = line.discount_bp;
  line.discount_cents = line.gross_cents / 10'000 * bp + (line.gross_cents % 10'000 * bp + 5'000) / 10'000;
  line.net_cents = line.gross_cents - line.discount_cents;
}

}  // namespace fieldsync::client
