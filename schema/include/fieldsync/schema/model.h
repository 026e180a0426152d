// The entity model of fieldsync, defined once.
//
// Every table, field, type, nullability rule, merge policy and scope rule of the CRM lives in one constant
// table (schema/src/model.cc). SQL DDL (ddl.h), change validation (sync/rules.h) and the wire encoding
// (codec.h) are all derived from it on both the device and the server; nothing else may restate it.
//
// Evolution rules: entity ids and field ids are wire identifiers. They are only ever appended, never
// renumbered or reused; a removed field keeps its id reserved. Bump kSchemaVersion on every change and
// describe it in the history.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

namespace fieldsync::schema {

// History:
//   1: accounts, contacts, products, price-list entries, visits, orders, order lines, calendar events,
//      opportunities.
inline constexpr uint32_t kSchemaVersion = 1;

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
};

// Roles order by reach: a higher role sees and may do everything a lower one may.
enum class Role : uint8_t { kRep = 0, kManager = 1, kHeadOffice = 2 };

enum class FieldType : uint8_t {
  kText = 1,
  kInt = 2,   // 64-bit signed; money is always integer cents
  kReal = 3,  // coordinates only; never money
  kBool = 4,
  kTimestamp = 5,  // milliseconds since the Unix epoch, UTC
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

std::string_view to_string(FieldType t);
std::string_view to_string(MergePolicy p);
std::string_view to_string(Role r);
std::optional<Role> role_from_string(std::string_view s);

// Field ids used by code that needs a specific field (scheduling-conflict detection, order locks, tests).
// They must match the table in model.cc; model_test checks every one by name.
namespace fields {
inline constexpr uint16_t kAccountName = 1;
inline constexpr uint16_t kAccountTerritory = 2;
inline constexpr uint16_t kContactAccount = 1;
inline constexpr uint16_t kVisitAccount = 1;
inline constexpr uint16_t kVisitRep = 2;
inline constexpr uint16_t kVisitNotes = 8;
inline constexpr uint16_t kOrderAccount = 1;
inline constexpr uint16_t kOrderStatus = 3;
inline constexpr uint16_t kOrderLineOrder = 1;
inline constexpr uint16_t kEventOwner = 1;
inline constexpr uint16_t kEventStart = 4;
inline constexpr uint16_t kEventEnd = 5;
inline constexpr uint16_t kEventStatus = 6;
inline constexpr uint16_t kOpportunityStage = 4;
}  // namespace fields

}  // namespace fieldsync::schema
