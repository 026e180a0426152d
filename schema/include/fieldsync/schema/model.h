// The entity model of fieldsync, defined once.
//
// Every table, field, type, nullability rule, merge policy and scope rule of the CRM lives in one constant
// table (schema/src/model.cc). SQL DDL (ddl.h), change validation (sync/rules.h) and the wire encoding
// (codec.h) are all derived from it on both the device and the server; nothing else may restate it.
//
// Evolution rules: entity ids and field ids are wire identifiers. They are only ever appended, never
// renumbered or reused; a removed field keeps its id reserved. Bump kSchemaVersion on every change and
// describe it in the history. Every entity and field says the version it appeared in (`since`), so the
// library can project itself to an older version (a device still on the old app, docs/DESIGN.md "Model
// evolution") and a server can send an old device only what it knows. A field added to an existing entity
// after version 1 is nullable: records written before it, and by devices that do not know it, lack it.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

namespace fieldsync::schema {

// History:
//   1: accounts, contacts, products, price-list entries, visits, orders, order lines, calendar events,
//      opportunities.
//   2: order.rep_id and calendar_event.owner_id change hands (a manager within their team, head office to
//      anyone; a rep never): a departing rep's open orders and future appointments go to a colleague.
//      Devices of version 1 accept the changes (their merge does not treat the fields specially).
//   3: leads, service cases, installed assets, tasks; calendar_event.opportunity_id.
inline constexpr uint32_t kSchemaVersion = 3;

enum class EntityId : uint16_t {
  kNone = 0,
  kAccount = 1,
  kContact = 2,
  kProduct = 3,
  kPriceListEntry = 4,
  kVisit = 5,
  kOrder = 6,
  kOrderLine = 7,
  kCalendarEvent = 8,
  kOpportunity = 9,
  kLead = 10,         // since 3
  kServiceCase = 11,  // since 3
  kAsset = 12,        // since 3
  kTask = 13,         // since 3
};

// Roles order by reach: a higher role sees and may do everything a lower one may.
enum class Role : uint8_t { kRep = 0, kManager = 1, kHeadOffice = 2 };

enum class FieldType : uint8_t {
  kText = 1,
  kInt = 2,   // 64-bit signed; money is always integer cents
  kReal = 3,  // coordinates only; never money
  kBool = 4,
  kTimestamp = 5,  // milliseconds since the Unix epoch, UTC; always after it (> 0)
  kId = 6,         // a record id (UUIDv7 text) of the entity named by FieldDef::ref
  kEnum = 7,       // text restricted to FieldDef::enum_values
  kUserId = 8,     // a user id (text), e.g. a visit's rep or an event's owner
};

enum class MergePolicy : uint8_t {
  // Highest version (HLC, then node id) wins; a concurrent loser is recorded in the conflict log.
  kLastWriterWins = 1,
  // Only head office (or the server itself) may write it; a rep's or manager's write rejects the transaction.
  // Among allowed writers the rule is last-writer-wins.
  kServerOwned = 2,
  // Set in the transaction that creates the record, never changed afterwards.
  kImmutable = 3,
  // Text that only grows: each write appends a fragment; concurrent fragments are all kept, ordered by
  // version.
  kAppendText = 4,
};

// How the scope (who may see and write a record) is found.
enum class ScopeKind : uint8_t {
  kGlobal = 1,     // everyone reads, head office writes (catalogue data)
  kTerritory = 2,  // `field` holds a territory id
  kParent = 3,     // `field` holds the id of a `parent` record whose scope applies (account, order, ...)
  kOwner = 4,      // `field` holds a user id: the owner, their manager and head office
};

struct ScopeRule {
  ScopeKind kind;
  uint16_t field = 0;  // field id within the entity; unused for kGlobal
  EntityId parent = EntityId::kNone;
};

// What a value must be beyond its type, named once here and checked by validate_change on the device and on
// the server alike (with check_text_rule, int_range and real_range below). The ranges are the model's, not an
// API's.
enum class ValueRule : uint8_t {
  kAny = 0,           // the type's own rules only
  kCurrencyCode = 1,  // text: an ISO 4217 alphabetic code, three upper-case ASCII letters (EUR, CHF)
  kEmail = 2,         // text: local@domain, both parts non-empty, one '@', no spaces or control characters
  kMoney = 3,         // int: cents, 0..kMaxMoneyCents; prices, amounts and limits are never negative
  kQuantity = 4,      // int: 1..kMaxQuantity
  kBasisPoints = 5,   // int: 0..10000, a share of a whole (a discount)
  kLatitude = 6,      // real: degrees, -90..90
  kLongitude = 7,     // real: degrees, -180..180
};

// A unit price or amount of at most 1e9 currency units: a line's gross (quantity * unit price) fits in int64.
inline constexpr int64_t kMaxMoneyCents = 100'000'000'000;
inline constexpr int64_t kMaxQuantity = 1'000'000;
inline constexpr int64_t kMaxBasisPoints = 10'000;

// Whom a user-id field may name, by the writer's role. Head office may always name anyone (imports,
// corrections, the admin tool); the server checks it on every create and set (a rep writing records in a
// colleague's name is rejected with permission_denied).
enum class UserRef : uint8_t {
  kNotAUser = 0,     // not a user-id field
  kWriter = 1,       // the writer themselves: who created a record, who checked in
  kWriterOrTeam = 2  // the writer, or for a manager a rep of their team (a manager books a rep's appointment)
};

struct FieldDef {
  uint16_t id;  // wire id, stable forever; 0 is reserved for "the record itself"
  std::string_view name;
  FieldType type;
  bool nullable;
  MergePolicy policy;
  EntityId ref = EntityId::kNone;                      // for kId fields
  std::span<const std::string_view> enum_values = {};  // for kEnum fields
  int64_t max_length = 0;                              // for text: maximum bytes; 0 means the global default
  // Who may change the field once the record exists (the creator may always set it in the creating
  // transaction, within their scope). Example: a rep files a new account in their own territory, but only
  // head office moves an account to another territory.
  Role update_role = Role::kRep;
  ValueRule value_rule = ValueRule::kAny;
  UserRef user_ref = UserRef::kNotAUser;  // for kUserId fields: every one says whom it may name
  uint32_t since = 1;                     // the schema version the field appeared in
};

// An allowed move of a status-like field. `min_role` is who may make it.
struct Transition {
  std::string_view from;
  std::string_view to;
  Role min_role;
};

struct EntityDef {
  EntityId id;
  std::string_view name;  // also the SQL table name and the JSON key
  std::span<const FieldDef> fields;
  ScopeRule scope;
  bool head_office_only;  // only head office creates or changes records of this entity
  bool deletable;         // writers may delete (tombstone) records; other entities use a status field instead
  uint16_t status_field = 0;  // field whose changes must follow `transitions`; 0 if none
  std::span<const Transition> transitions = {};
  // Values of status_field in which the record (and its children, see locks_children) is frozen.
  std::span<const std::string_view> locked_statuses = {};
  // A child entity whose records are frozen with this one (order lines of an approved order).
  EntityId locks_children = EntityId::kNone;
  uint32_t since = 1;  // the schema version the entity appeared in

  const FieldDef* field(uint16_t field_id) const;
  const FieldDef* field(std::string_view field_name) const;
};

// All entities, ordered by id.
std::span<const EntityDef> entities();
const EntityDef* entity(EntityId id);
const EntityDef* entity(std::string_view name);
const EntityDef& entity_ref(EntityId id);  // asserts the entity exists

// The status transition allowed from `from` to `to`, if any (from == to is always allowed).
std::optional<Role> transition_role(const EntityDef& e, std::string_view from, std::string_view to);

// Checks `text` against a text ValueRule (currency code, e-mail); empty if it fits, else why not ("not an
// ISO 4217 currency code ..."). Rules of other types always fit here.
std::string_view check_text_rule(ValueRule rule, std::string_view text);
// The inclusive range of an int ValueRule (money, quantity, basis points), or nullopt if it has none.
struct IntRange {
  int64_t min;
  int64_t max;
};
std::optional<IntRange> int_range(ValueRule rule);
// The inclusive range of a real ValueRule (latitude, longitude), or nullopt if it has none.
struct RealRange {
  double min;
  double max;
};
std::optional<RealRange> real_range(ValueRule rule);

std::string_view to_string(FieldType t);
std::string_view to_string(ValueRule k);
std::string_view to_string(UserRef r);
std::string_view to_string(MergePolicy p);
std::string_view to_string(Role r);
std::optional<Role> role_from_string(std::string_view s);

// Field ids used by code that needs a specific field (scheduling-conflict detection, order locks, the admin
// tool, tests). They must match the table in model.cc; model_test checks every one by name.
namespace fields {
inline constexpr uint16_t kAccountName = 1;
inline constexpr uint16_t kAccountTerritory = 2;
inline constexpr uint16_t kAccountEmail = 6;
inline constexpr uint16_t kAccountCreditLimit = 8;
inline constexpr uint16_t kAccountCreatedBy = 10;
inline constexpr uint16_t kContactAccount = 1;
inline constexpr uint16_t kContactName = 2;
inline constexpr uint16_t kContactEmail = 4;
inline constexpr uint16_t kProductSku = 1;
inline constexpr uint16_t kProductName = 2;
inline constexpr uint16_t kProductUnit = 3;
inline constexpr uint16_t kProductActive = 4;
inline constexpr uint16_t kPriceProduct = 1;
inline constexpr uint16_t kPriceList = 2;
inline constexpr uint16_t kPriceUnitPrice = 3;
inline constexpr uint16_t kPriceCurrency = 4;
inline constexpr uint16_t kVisitAccount = 1;
inline constexpr uint16_t kVisitRep = 2;
inline constexpr uint16_t kVisitLatitude = 6;
inline constexpr uint16_t kVisitLongitude = 7;
inline constexpr uint16_t kVisitNotes = 8;
inline constexpr uint16_t kOrderAccount = 1;
inline constexpr uint16_t kOrderRep = 2;
inline constexpr uint16_t kOrderStatus = 3;
inline constexpr uint16_t kOrderCurrency = 4;
inline constexpr uint16_t kOrderApprovedBy = 7;
inline constexpr uint16_t kOrderLineOrder = 1;
inline constexpr uint16_t kOrderLineProduct = 2;
inline constexpr uint16_t kOrderLineQuantity = 3;
inline constexpr uint16_t kOrderLineUnitPrice = 4;
inline constexpr uint16_t kOrderLineDiscount = 5;
inline constexpr uint16_t kEventOwner = 1;
inline constexpr uint16_t kEventStart = 4;
inline constexpr uint16_t kEventEnd = 5;
inline constexpr uint16_t kEventStatus = 6;
inline constexpr uint16_t kOpportunityOwner = 2;
inline constexpr uint16_t kOpportunityStage = 4;
inline constexpr uint16_t kOpportunityAmount = 5;
inline constexpr uint16_t kOpportunityCurrency = 6;
inline constexpr uint16_t kEventOpportunity = 9;
inline constexpr uint16_t kLeadPersonName = 1;
inline constexpr uint16_t kLeadCompanyName = 2;
inline constexpr uint16_t kLeadEmail = 3;
inline constexpr uint16_t kLeadPhone = 4;
inline constexpr uint16_t kLeadSource = 5;
inline constexpr uint16_t kLeadOwner = 6;
inline constexpr uint16_t kLeadTerritory = 7;
inline constexpr uint16_t kLeadStatus = 8;
inline constexpr uint16_t kLeadDisqualifyReason = 9;
inline constexpr uint16_t kLeadConvertedAccount = 10;
inline constexpr uint16_t kLeadConvertedContact = 11;
inline constexpr uint16_t kLeadConvertedOpportunity = 12;
inline constexpr uint16_t kLeadConvertedAt = 13;
inline constexpr uint16_t kLeadCreatedAt = 14;
inline constexpr uint16_t kLeadNotes = 15;
inline constexpr uint16_t kCaseAccount = 1;
inline constexpr uint16_t kCaseContact = 2;
inline constexpr uint16_t kCaseAsset = 3;
inline constexpr uint16_t kCaseSubject = 4;
inline constexpr uint16_t kCasePriority = 5;
inline constexpr uint16_t kCaseStatus = 6;
inline constexpr uint16_t kCaseAssignee = 7;
inline constexpr uint16_t kCaseDueAt = 8;
inline constexpr uint16_t kCaseEscalationLevel = 9;
inline constexpr uint16_t kCaseResolutionNotes = 10;
inline constexpr uint16_t kCaseOpenedAt = 11;
inline constexpr uint16_t kCaseResolvedAt = 12;
inline constexpr uint16_t kCaseOpenedBy = 13;
inline constexpr uint16_t kAssetAccount = 1;
inline constexpr uint16_t kAssetProduct = 2;
inline constexpr uint16_t kAssetSerialNumber = 3;
inline constexpr uint16_t kAssetInstalledAt = 4;
inline constexpr uint16_t kAssetWarrantyEnd = 5;
inline constexpr uint16_t kAssetNotes = 6;
inline constexpr uint16_t kTaskOwner = 1;
inline constexpr uint16_t kTaskTitle = 2;
inline constexpr uint16_t kTaskDueAt = 3;
inline constexpr uint16_t kTaskRemindAt = 4;
inline constexpr uint16_t kTaskStatus = 5;
inline constexpr uint16_t kTaskAccount = 6;
inline constexpr uint16_t kTaskOpportunity = 7;
inline constexpr uint16_t kTaskLead = 8;
inline constexpr uint16_t kTaskServiceCase = 9;
inline constexpr uint16_t kTaskNotes = 10;
inline constexpr uint16_t kTaskCompletedAt = 11;
}  // namespace fields

}  // namespace fieldsync::schema
