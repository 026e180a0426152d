// The field-sales API a rep's app uses: accounts and contacts, visits, orders, the calendar, opportunities
// and sync status, over the device's SQLite replica.
//
// Every write is validated here first (a clear typed Status, nothing written, for a bad value), then becomes
// one SyncEngine::write: the record changes and their outbox entry in one SQLite transaction. Reads are
// prepared-statement queries on the replica's typed columns; tombstoned rows are never returned. Nothing here
// touches the network: the transport drives engine() and calls dispatch_events() after each frame.
//
// Threading: every method may be called from any thread. Observers are called on the thread that calls
// dispatch_events() (sync events) or that made the write (the app's own writes), never under a lock, so an
// observer may call back into the client.
//
// Revocation: when head office revokes the device, the server answers its next handshake with
// kDeviceRevoked and dispatch_events() erases the replica (a lost or stolen phone must not keep the
// company's data): it writes the marker file `<path>.revoked`, closes the SQLite connection (waiting for any
// call in progress on another thread), deletes the replica file with its -wal, -shm and -journal files, and
// then tells the observers (`error` with the stop reason, then `erased`). Unsynced local writes are lost by
// design. From then on every method that returns a Status or Result fails with kDeviceRevoked, and open() on
// that path keeps failing with kDeviceRevoked (finishing a deletion a crash interrupted) until
// clear_revocation() removes the marker.
//
// Times are UTC milliseconds since the epoch; money is integer cents; ids are UUIDv7 text. "Today" and "this
// week" (Monday to Sunday) are computed in the zone given by Options::utc_offset_minutes.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "fieldsync/client/sync_engine.h"
#include "fieldsync/schema/model.h"
#include "fieldsync/sync/change.h"
#include "fieldsync/sync/status.h"
#include "fieldsync/sync/store.h"
#include "fieldsync/sync/thread_annotations.h"

namespace fieldsync::client {

class SqliteReplicaStore;
namespace detail {
struct Queries;
}

// ---- Read models

struct Contact {
  std::string id;
  std::string account_id;
  std::string name;
  std::string title;
  std::string email;
  std::string phone;
  bool is_primary = false;
};

struct Account {
  std::string id;
  std::string name;
  std::string territory_id;
  std::string address;
  std::string city;
  std::string phone;
  std::string email;
  std::string segment;  // "a", "b", "c" or empty
  std::optional<int64_t> credit_limit_cents;
  std::string notes;  // append-only: every note joined by newlines
  std::string created_by;
};

struct ServiceCase;

struct AccountWithContacts {
  Account account;
  std::vector<Contact> contacts;  // by name
  // The account's cases not yet resolved or closed, oldest first: the complaint a rep must know of before a
  // visit. Filled by account() (empty until the replica has any).
  std::vector<ServiceCase> open_cases;
};

struct Visit {
  std::string id;
  std::string account_id;
  std::string rep_id;
  std::string calendar_event_id;
  int64_t check_in_at_ms = 0;
  std::optional<int64_t> check_out_at_ms;
  std::optional<double> latitude;
  std::optional<double> longitude;
  std::string notes;
  std::string outcome;  // empty while checked in
};

struct OrderLine {
  std::string id;
  std::string product_id;
  int64_t quantity = 0;
  int64_t unit_price_cents = 0;
  int64_t discount_bp = 0;  // basis points: 250 = 2.5 %
  std::string note;
  int64_t gross_cents = 0;     // quantity * unit price
  int64_t discount_cents = 0;  // gross * discount_bp / 10000, rounded half up
  int64_t net_cents = 0;       // gross - discount
};

struct Order {
  std::string id;
  std::string account_id;
  std::string rep_id;
  std::string status;
  std::string currency;
  std::string notes;
  std::optional<int64_t> submitted_at_ms;
  std::vector<OrderLine> lines;  // by id (creation order)
  int64_t gross_cents = 0;
  int64_t discount_cents = 0;
  int64_t total_cents = 0;  // sum of the lines' net amounts
};

struct Event {
  std::string id;
  std::string owner_id;
  std::string account_id;
  std::string opportunity_id;  // the deal the appointment is for, or empty
  std::string title;
  int64_t start_at_ms = 0;
  int64_t end_at_ms = 0;
  std::string status;
  std::string location;
};

// A lead (schema 3): someone who may become a customer, owned by a rep, in a territory.
struct Lead {
  std::string id;
  std::string person_name;
  std::string company_name;
  std::string email;
  std::string phone;
  std::string source;  // campaign, web_form, email_enquiry, phone_enquiry, field_prospecting, referral, other
  std::string owner_id;
  std::string territory_id;
  std::string status;  // new, contacted, qualified, converted, disqualified
  std::string disqualify_reason;
  std::string converted_account_id, converted_contact_id, converted_opportunity_id;  // once converted
  std::optional<int64_t> converted_at_ms;
  int64_t created_at_ms = 0;
  std::string notes;
};

// A service case at a customer's site; `billable` is derived (case_billable in sync/rules.h), never stored.
struct ServiceCase {
  std::string id;
  std::string account_id;
  std::string contact_id;
  std::string asset_id;
  std::string subject;
  std::string priority;  // low, normal, high, urgent
  std::string status;    // open, assigned, in_progress, resolved, closed
  std::string assignee_id;
  std::optional<int64_t> due_at_ms;         // set by head office from the priority's SLA
  std::optional<int64_t> escalation_level;  // raised by head office
  std::string resolution_notes;             // append-only, every note joined by newlines
  int64_t opened_at_ms = 0;
  std::optional<int64_t> resolved_at_ms;
  std::string opened_by;
  bool billable = false;
};

// A product installed at an account.
struct Asset {
  std::string id;
  std::string account_id;
  std::string product_id;
  std::string serial_number;
  std::optional<int64_t> installed_at_ms;
  std::optional<int64_t> warranty_end_at_ms;
  std::string notes;
};

struct Task {
  std::string id;
  std::string owner_id;
  std::string title;
  std::optional<int64_t> due_at_ms;
  std::optional<int64_t> remind_at_ms;
  std::string status;                                                // open, done, cancelled
  std::string account_id, opportunity_id, lead_id, service_case_id;  // what it is about, any or none
  std::string notes;
  std::optional<int64_t> completed_at_ms;
};

struct EventWriteResult {
  std::string id;
  // The owner's other scheduled events that overlap the written one, as the replica knows them now.
  std::vector<Event> overlaps;
};

struct Opportunity {
  std::string id;
  std::string account_id;
  std::string owner_id;
  std::string name;
  std::string stage;
  int64_t amount_cents = 0;
  std::string currency;
  std::optional<int64_t> expected_close_ms;
};

struct PipelineStage {
  std::string stage;  // in funnel order (the model's enum order)
  std::string currency;
  int64_t count = 0;
  int64_t amount_cents = 0;
};

struct SyncStatus {
  size_t pending_txns = 0;                   // outbox entries not yet acknowledged
  std::optional<int64_t> last_synced_at_ms;  // when the replica was last fully synced (kept in the file)
  bool connected = false;
  SyncClient::State state = SyncClient::State::kDisconnected;
};

// ---- Inputs

struct NewAccount {
  std::string name;
  std::string territory_id;
  std::optional<std::string> address, city, phone, email, segment;
};

// Fields not given are not changed; an empty string clears an optional field. `add_note` appends a note.
// `territory_id` moves the account to another territory: only head office may (the model's update_role); the
// API checks the value and the server decides, rejecting a rep's move (the account goes back, the rejection
// is kept).
struct AccountEdit {
  std::optional<std::string> name, address, city, phone, email, segment, add_note, territory_id;
};

struct NewContact {
  std::string account_id;
  std::string name;
  std::optional<std::string> title, email, phone;
  std::optional<bool> is_primary;
};

struct ContactEdit {
  std::optional<std::string> name, title, email, phone;
  std::optional<bool> is_primary;
};

struct CheckIn {
  std::string account_id;
  std::optional<int64_t> at_ms;               // default: now
  std::optional<double> latitude, longitude;  // both or neither
  std::optional<std::string> calendar_event_id;
};

struct NewLine {
  std::string product_id;
  int64_t quantity = 1;
  std::optional<int64_t> unit_price_cents;  // default: the price list's price in the order's currency
  std::optional<int64_t> discount_bp;
  std::optional<std::string> note;
};

// Fields not given are not changed; an empty note clears it.
struct LineEdit {
  std::optional<int64_t> quantity, unit_price_cents, discount_bp;
  std::optional<std::string> note;
};

struct NewEvent {
  std::string title;
  int64_t start_at_ms = 0;
  int64_t end_at_ms = 0;
  std::optional<std::string> account_id, location;
  std::optional<std::string> opportunity_id;  // schema 3: the deal the appointment is for
};

struct NewLead {
  std::string person_name;
  std::string source;
  std::string territory_id;
  std::optional<std::string> company_name, email, phone, notes;
};

// How a lead becomes a customer: a new account (named after the company, else the person, in the lead's
// territory) unless `existing_account_id` names one, a contact for the person, and an opportunity.
struct LeadConversion {
  std::optional<std::string> existing_account_id;
  std::optional<std::string> account_name;  // default: the lead's company name, else the person's name
  std::string opportunity_name;             // default: "<account name> (lead)" when empty
  int64_t amount_cents = 0;
  std::string currency = "EUR";
  std::optional<int64_t> expected_close_ms;
};

struct ConvertedLead {
  std::string lead_id, account_id, contact_id, opportunity_id;
};

struct NewServiceCase {
  std::string account_id;
  std::string subject;
  std::string priority = "normal";
  std::optional<std::string> contact_id, asset_id;
  bool take = false;  // assign it to myself at once (status assigned)
};

struct NewAsset {
  std::string account_id;
  std::string serial_number;
  std::optional<std::string> product_id, notes;
  std::optional<int64_t> installed_at_ms, warranty_end_at_ms;
};

struct NewTask {
  std::string title;
  std::optional<int64_t> due_at_ms, remind_at_ms;
  std::optional<std::string> account_id, opportunity_id, lead_id, service_case_id, notes;
};

struct NewOpportunity {
  std::string account_id;
  std::string name;
  int64_t amount_cents = 0;
  std::string currency = "EUR";
  std::string stage = "prospect";
  std::optional<int64_t> expected_close_ms;
};

// The app's conflict and rejection inbox: each entry with its inbox id (to mark entries seen) and flag.
struct InboxConflict {
  int64_t inbox_id = 0;
  bool seen = false;
  ConflictRecord conflict;
};
struct InboxRejection {
  int64_t inbox_id = 0;
  bool seen = false;
  Rejection rejection;
};
struct InboxCounts {
  size_t unread_conflicts = 0;
  size_t unread_rejections = 0;
};

// Observers; any member may be empty.
struct Observer {
  std::function<void(const std::vector<RecordKey>&)> records_changed;  // sync and the app's own writes
  std::function<void(uint64_t done, uint64_t total)> sync_progress;    // bootstrap
  std::function<void(const ConflictRecord&)> conflict;
  std::function<void(const Rejection&)> rejection;
  std::function<void()> synced;              // outbox empty and caught up
  std::function<void(const Status&)> error;  // session or storage error reported by the sync engine
  // The device was revoked and its replica erased (after `error` heard kDeviceRevoked). `result` is
  // kDeviceRevoked; its message says whether deleting a file failed (open() retries the deletion then).
  // Called once, with no lock held; every call into the client from here on fails with kDeviceRevoked.
  std::function<void(const Status& result)> erased;
  // A push run: outbox entries acknowledged of those pending when it started plus those written since.
  std::function<void(uint64_t done, uint64_t total)> push_progress;
};

// The model's limits of an order line (schema/model.h), named here for callers sizing their inputs. Every
// value rule is the model's: the sync core checks it on each write (kValueInvalid naming the field), and the
// server checks it again.
inline constexpr int64_t kMaxQuantity = schema::kMaxQuantity;
inline constexpr int64_t kMaxUnitPriceCents = schema::kMaxMoneyCents;
inline constexpr int64_t kMaxDiscountBp = schema::kMaxBasisPoints;

class FieldClient {
 public:
  struct Options {
    std::string user;
    std::string token;
    schema::Role role = schema::Role::kRep;  // for local transition checks; the server decides
    std::function<int64_t()> now_ms;         // default: the system clock
    int utc_offset_minutes = 0;              // the rep's zone for "today" and "this week"
    std::string price_list;                  // preferred price list; empty: any list in the order's currency
    bool synchronous_full = true;            // SqliteReplicaStore::Options::synchronous_full
    NodeId node = 0;                         // for a new file: 0 picks a random node id
    // The app's build, sent in each Hello so head office's sync health shows which build every device runs
    // ("2.4.1 (317)"); empty: not sent. At most 64 bytes of printable ASCII (checked by open()).
    std::string app_version;
    // The model version the app speaks (ClientConfig::schema_version, SqliteReplicaStore::Options): the
    // newest, or an older one to behave as that version's app (tests of the rolling upgrade).
    uint32_t schema_version = schema::kSchemaVersion;
  };

  // Errors: the replica's (SqliteReplicaStore::open), and kDeviceRevoked when `<path>.revoked` exists (the
  // device was revoked; any replica file a crash left behind is deleted first).
  static Result<std::unique_ptr<FieldClient>> open(const std::string& path, Options options);
  // After head office has registered the device again: removes the revocation marker, so the next open()
  // creates a fresh, empty replica. Deletes any leftover replica files first.
  static Status clear_revocation(const std::string& path);
  ~FieldClient();
  FieldClient(const FieldClient&) = delete;
  FieldClient& operator=(const FieldClient&) = delete;

  SyncEngine& engine() { return *engine_; }
  const std::string& user() const { return options_.user; }
  NodeId node() const;

  // ---- accounts and contacts
  Result<std::string> create_account(const NewAccount& a);
  Status edit_account(const std::string& id, const AccountEdit& e);
  Result<std::vector<Account>> accounts_by_prefix(const std::string& prefix);  // by name; "" lists all
  Result<std::vector<Account>> accounts_in_territory(const std::string& territory_id);
  Result<AccountWithContacts> account(const std::string& id);
  Result<std::string> create_contact(const NewContact& c);
  Status edit_contact(const std::string& id, const ContactEdit& e);

  // ---- visits
  Result<std::string> check_in(const CheckIn& c);
  Status add_visit_note(const std::string& visit_id, const std::string& text);
  Status check_out(const std::string& visit_id, const std::string& outcome,
                   std::optional<int64_t> at_ms = {});
  Result<Visit> visit(const std::string& id);
  Result<std::vector<Visit>> visits_of_account(const std::string& account_id);  // newest first
  Result<std::vector<Visit>> todays_visits();                                   // mine, oldest first

  // ---- orders
  Result<std::string> draft_order(const std::string& account_id, const std::string& currency = "EUR");
  // A draft order with its lines in one transaction (they reach the server together or not at all).
  Result<std::string> draft_order_with_lines(const std::string& account_id, const std::string& currency,
                                             const std::vector<NewLine>& lines);
  Result<std::string> add_line(const std::string& order_id, const NewLine& line);
  Status change_line(const std::string& line_id, const LineEdit& e);
  Status remove_line(const std::string& line_id);
  Status submit_order(const std::string& order_id);
  Result<Order> order(const std::string& id);
  Result<std::vector<Order>> open_orders();  // mine, draft or submitted, oldest first

  // ---- calendar
  Result<EventWriteResult> create_event(const NewEvent& e);
  Result<EventWriteResult> move_event(const std::string& id, int64_t start_at_ms, int64_t end_at_ms);
  Status cancel_event(const std::string& id);
  Result<Event> event(const std::string& id);
  Result<std::vector<Event>> agenda(int64_t from_ms,
                                    int64_t to_ms);  // mine, scheduled, overlapping the window
  Result<std::vector<Event>> agenda_today();
  Result<std::vector<Event>> agenda_week();

  // ---- opportunities
  Result<std::string> create_opportunity(const NewOpportunity& o);
  Status move_opportunity(const std::string& id, const std::string& stage);
  Result<Opportunity> opportunity(const std::string& id);
  Result<std::vector<PipelineStage>> pipeline();  // mine, every stage with at least one deal

  // ---- leads (schema 3). Conversion is one transaction, possible offline; the server checks it again.
  Result<std::string> create_lead(const NewLead& l);  // owned by me, status new
  Status mark_lead_contacted(const std::string& id);
  Status qualify_lead(const std::string& id);
  Result<ConvertedLead> convert_lead(const std::string& id, const LeadConversion& c);
  Status disqualify_lead(const std::string& id, const std::string& reason);  // reason required
  Status add_lead_note(const std::string& id, const std::string& text);
  Result<Lead> lead(const std::string& id);
  Result<std::vector<Lead>> my_leads();  // owned by me, not converted or disqualified, oldest first

  // ---- service cases
  Result<std::string> open_case(const NewServiceCase& c);
  Status take_case(const std::string& id);  // an unassigned case for myself: assigned
  // A manager's (within their team) or head office's dispatch to a rep: assigned.
  Status dispatch_case(const std::string& id, const std::string& assignee);
  Status start_case(const std::string& id);  // in_progress
  Status add_case_note(const std::string& id, const std::string& text);
  Status resolve_case(const std::string& id, const std::string& resolution_note);  // note required
  Status close_case(const std::string& id);
  Status reopen_case(const std::string& id);  // resolved or closed -> in_progress (managers)
  Result<ServiceCase> service_case(const std::string& id);
  Result<std::vector<ServiceCase>> open_cases_of_account(const std::string& account_id);
  Result<std::vector<ServiceCase>> my_cases();  // assigned to me, not resolved or closed, by due time

  // ---- installed assets
  Result<std::string> register_asset(const NewAsset& a);
  Result<Asset> asset(const std::string& id);
  Result<std::vector<Asset>> assets_of_account(const std::string& account_id);

  // ---- tasks (mine)
  Result<std::string> create_task(const NewTask& t);
  Status complete_task(const std::string& id);
  Status cancel_task(const std::string& id);
  Status reopen_task(const std::string& id);
  Result<Task> task(const std::string& id);
  Result<std::vector<Task>> open_tasks();     // mine, open, by due time (undated last)
  Result<std::vector<Task>> overdue_tasks();  // mine, open, due before now, oldest due first

  // ---- sync status
  Result<size_t> pending_count();
  Result<SyncStatus> sync_status();
  Result<std::vector<ConflictRecord>> conflicts();  // oldest first; the replica keeps only this user's
  Result<std::vector<Rejection>> rejections();      // oldest first
  Result<std::string> export_json();                // fieldsync::canonical_json of every live record

  // ---- the inbox: conflicts and rejections with a seen flag, newest first
  Result<std::vector<InboxConflict>> conflict_inbox(bool unread_only = false);
  Result<std::vector<InboxRejection>> rejection_inbox(bool unread_only = false);
  Result<InboxCounts> unread_counts();
  // Marks every entry up to and including `up_to_inbox_id` as seen (the newest one the app showed).
  Status mark_conflicts_seen(int64_t up_to_inbox_id);
  Status mark_rejections_seen(int64_t up_to_inbox_id);

  // True once the replica was erased because the device was revoked.
  bool erased() const { return erased_.load(); }

  uint64_t add_observer(Observer observer);
  void remove_observer(uint64_t id);
  // Drains SyncEngine::take_events() and calls the observers (outside any lock).
  void dispatch_events();

  // The UTC millisecond window [start, end) of the day / week containing `at_ms` in the rep's zone.
  std::pair<int64_t, int64_t> day_window(int64_t at_ms) const;
  std::pair<int64_t, int64_t> week_window(int64_t at_ms) const;
  int64_t now_ms() const { return options_.now_ms(); }

 private:
  struct Batch;
  FieldClient(std::string path, Options options, std::unique_ptr<SqliteReplicaStore> store);
  // Under write_mu_: `build` validates and fills the batch, which is then one SyncEngine::write. After the
  // lock is released, records_changed observers hear about the records written.
  Status transact(const std::function<Status(Batch&)>& build);
  // Validates one new line of `order` (priced in `currency`) and adds its changes to the batch.
  Result<RecordId> add_line_changes(Batch& b, const RecordId& order, const std::string& currency,
                                    const NewLine& line);
  std::vector<Observer> observers_snapshot();
  Result<std::vector<Event>> overlaps(const std::string& self_id, int64_t start_ms, int64_t end_ms);
  // One status move of a record with a status field, checked against the model's transitions for my role;
  // `extra` adds the move's other changes (a resolution note, completed_at).
  Status move_status(schema::EntityId entity, const std::string& id, const std::string& to,
                     const std::function<Status(Batch&, const RecordId&)>& extra = {});
  // On kMustErase: marker, close, delete (see the header comment). Returns kDeviceRevoked with what
  // happened. Never called with a lock held that an observer could need.
  Status erase_replica() EXCLUDES(erase_mu_);

  Options options_;
  const std::string path_;
  const NodeId node_;  // kept: node() works after the erase
  std::unique_ptr<SqliteReplicaStore> store_;
  std::unique_ptr<SyncEngine> engine_;
  std::unique_ptr<detail::Queries> queries_;  // prepared-statement cache, used only inside store_->read()

  // Serialises the app's check-then-write sequences (an order's status read, then its lines' write).
  Mutex write_mu_;
  RecordIdGenerator ids_ GUARDED_BY(write_mu_);

  Mutex erase_mu_;  // one erase at a time; released before the observers hear about it
  std::atomic<bool> erased_{false};

  Mutex observers_mu_;
  uint64_t next_observer_ GUARDED_BY(observers_mu_) = 1;
  std::vector<std::pair<uint64_t, Observer>> observers_ GUARDED_BY(observers_mu_);
};

// Totals of one line: gross = quantity * unit price, discount rounded half up, net = gross - discount.
void compute_line_totals(OrderLine& line);

}  // namespace fieldsync::client
