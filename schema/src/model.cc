// THE entity model. See model.h for the evolution rules: ids are appended, never reused.
#include "fieldsync/schema/model.h"

#include <array>
#include <cassert>
#include <cstdlib>

namespace fieldsync::schema {
namespace {

using enum FieldType;
using enum MergePolicy;
constexpr bool kNull = true;
constexpr bool kNotNull = false;

constexpr std::string_view kSegments[] = {"a", "b", "c"};
constexpr std::string_view kVisitOutcomes[] = {"order_taken", "follow_up", "no_interest", "not_available",
                                               "other"};
constexpr std::string_view kOrderStatuses[] = {"draft", "submitted", "approved", "fulfilled", "cancelled"};
constexpr std::string_view kOrderLocked[] = {"approved", "fulfilled", "cancelled"};
constexpr std::string_view kEventStatuses[] = {"scheduled", "done", "cancelled"};
constexpr std::string_view kStages[] = {"prospect", "qualified", "proposal", "negotiation", "won", "lost"};

constexpr FieldDef kAccountFields[] = {
    {1, "name", kText, kNotNull, kLastWriterWins},
    {2, "territory_id", kText, kNotNull, kLastWriterWins, EntityId::kNone, {}, 64, Role::kHeadOffice},
    {3, "address", kText, kNull, kLastWriterWins},
    {4, "city", kText, kNull, kLastWriterWins},
    {5, "phone", kText, kNull, kLastWriterWins, EntityId::kNone, {}, 64},
    {6, "email", kText, kNull, kLastWriterWins, EntityId::kNone, {}, 254},
    {7, "segment", kEnum, kNull, kLastWriterWins, EntityId::kNone, kSegments},
    {8, "credit_limit_cents", kInt, kNull, kServerOwned},
    {9, "notes", kText, kNull, kAppendText},
    {10, "created_by", kUserId, kNotNull, kImmutable},
};

constexpr FieldDef kContactFields[] = {
    {1, "account_id", kId, kNotNull, kImmutable, EntityId::kAccount},
    {2, "name", kText, kNotNull, kLastWriterWins},
    {3, "title", kText, kNull, kLastWriterWins},
    {4, "email", kText, kNull, kLastWriterWins, EntityId::kNone, {}, 254},
    {5, "phone", kText, kNull, kLastWriterWins, EntityId::kNone, {}, 64},
    {6, "is_primary", kBool, kNull, kLastWriterWins},
};

constexpr FieldDef kProductFields[] = {
    {1, "sku", kText, kNotNull, kImmutable, EntityId::kNone, {}, 64},
    {2, "name", kText, kNotNull, kLastWriterWins},
    {3, "unit", kText, kNull, kLastWriterWins, EntityId::kNone, {}, 32},
    {4, "active", kBool, kNotNull, kLastWriterWins},
};

constexpr FieldDef kPriceListEntryFields[] = {
    {1, "product_id", kId, kNotNull, kImmutable, EntityId::kProduct},
    {2, "price_list", kText, kNotNull, kImmutable, EntityId::kNone, {}, 64},
    {3, "unit_price_cents", kInt, kNotNull, kLastWriterWins},
    {4, "currency", kText, kNotNull, kLastWriterWins, EntityId::kNone, {}, 3},
    {5, "valid_from", kTimestamp, kNull, kLastWriterWins},
    {6, "valid_to", kTimestamp, kNull, kLastWriterWins},
};

constexpr FieldDef kVisitFields[] = {
    {1, "account_id", kId, kNotNull, kImmutable, EntityId::kAccount},
    {2, "rep_id", kUserId, kNotNull, kImmutable},
    {3, "calendar_event_id", kId, kNull, kLastWriterWins, EntityId::kCalendarEvent},
    {4, "check_in_at", kTimestamp, kNotNull, kImmutable},
    {5, "check_out_at", kTimestamp, kNull, kLastWriterWins},
    {6, "latitude", kReal, kNull, kImmutable},
    {7, "longitude", kReal, kNull, kImmutable},
    {8, "notes", kText, kNull, kAppendText},
    {9, "outcome", kEnum, kNull, kLastWriterWins, EntityId::kNone, kVisitOutcomes},
};

constexpr FieldDef kOrderFields[] = {
    {1, "account_id", kId, kNotNull, kImmutable, EntityId::kAccount},
    {2, "rep_id", kUserId, kNotNull, kImmutable},
    {3, "status", kEnum, kNotNull, kLastWriterWins, EntityId::kNone, kOrderStatuses},
    {4, "currency", kText, kNotNull, kLastWriterWins, EntityId::kNone, {}, 3},
    {5, "notes", kText, kNull, kAppendText},
    {6, "submitted_at", kTimestamp, kNull, kLastWriterWins},
    {7, "approved_by", kUserId, kNull, kServerOwned},
    {8, "approved_at", kTimestamp, kNull, kServerOwned},
    {9, "delivery_date", kTimestamp, kNull, kLastWriterWins},
};

constexpr FieldDef kOrderLineFields[] = {
    {1, "order_id", kId, kNotNull, kImmutable, EntityId::kOrder},
    {2, "product_id", kId, kNotNull, kLastWriterWins, EntityId::kProduct},
    {3, "quantity", kInt, kNotNull, kLastWriterWins},
    {4, "unit_price_cents", kInt, kNotNull, kLastWriterWins},
    {5, "discount_bp", kInt, kNull, kLastWriterWins},
    {6, "note", kText, kNull, kLastWriterWins},
};

constexpr FieldDef kCalendarEventFields[] = {
    {1, "owner_id", kUserId, kNotNull, kImmutable},
    {2, "account_id", kId, kNull, kLastWriterWins, EntityId::kAccount},
    {3, "title", kText, kNotNull, kLastWriterWins},
    {4, "start_at", kTimestamp, kNotNull, kLastWriterWins},
    {5, "end_at", kTimestamp, kNotNull, kLastWriterWins},
    {6, "status", kEnum, kNotNull, kLastWriterWins, EntityId::kNone, kEventStatuses},
    {7, "location", kText, kNull, kLastWriterWins},
    {8, "notes", kText, kNull, kAppendText},
};

constexpr FieldDef kOpportunityFields[] = {
    {1, "account_id", kId, kNotNull, kImmutable, EntityId::kAccount},
    {2, "owner_id", kUserId, kNotNull, kLastWriterWins},
    {3, "name", kText, kNotNull, kLastWriterWins},
    {4, "stage", kEnum, kNotNull, kLastWriterWins, EntityId::kNone, kStages},
    {5, "amount_cents", kInt, kNotNull, kLastWriterWins},
    {6, "currency", kText, kNotNull, kLastWriterWins, EntityId::kNone, {}, 3},
    {7, "expected_close", kTimestamp, kNull, kLastWriterWins},
    {8, "notes", kText, kNull, kAppendText},
};

constexpr Transition kOrderTransitions[] = {
    {"draft", "submitted", Role::kRep},           {"draft", "cancelled", Role::kRep},
    {"submitted", "draft", Role::kRep},           {"submitted", "cancelled", Role::kRep},
    {"submitted", "approved", Role::kManager},    {"approved", "fulfilled", Role::kHeadOffice},
    {"approved", "cancelled", Role::kHeadOffice},
};

constexpr Transition kEventTransitions[] = {
    {"scheduled", "done", Role::kRep},
    {"scheduled", "cancelled", Role::kRep},
    {"cancelled", "scheduled", Role::kRep},
};

// Reps move open opportunities freely (deals do go back a stage) and close them; reopening a closed deal is a
// manager's call.
constexpr Transition kStageTransitions[] = {
    {"prospect", "qualified", Role::kRep},    {"prospect", "proposal", Role::kRep},
    {"prospect", "negotiation", Role::kRep},  {"qualified", "prospect", Role::kRep},
    {"qualified", "proposal", Role::kRep},    {"qualified", "negotiation", Role::kRep},
    {"proposal", "prospect", Role::kRep},     {"proposal", "qualified", Role::kRep},
    {"proposal", "negotiation", Role::kRep},  {"negotiation", "prospect", Role::kRep},
    {"negotiation", "qualified", Role::kRep}, {"negotiation", "proposal", Role::kRep},
    {"prospect", "won", Role::kRep},          {"prospect", "lost", Role::kRep},
    {"qualified", "won", Role::kRep},         {"qualified", "lost", Role::kRep},
    {"proposal", "won", Role::kRep},          {"proposal", "lost", Role::kRep},
    {"negotiation", "won", Role::kRep},       {"negotiation", "lost", Role::kRep},
    {"won", "negotiation", Role::kManager},   {"lost", "negotiation", Role::kManager},
};

constexpr EntityDef kEntities[] = {
    {EntityId::kAccount, "account", kAccountFields, {ScopeKind::kTerritory, 2}, false, false},
    {EntityId::kContact, "contact", kContactFields, {ScopeKind::kParent, 1, EntityId::kAccount}, false, true},
    {EntityId::kProduct, "product", kProductFields, {ScopeKind::kGlobal}, true, false},
    {EntityId::kPriceListEntry, "price_list_entry", kPriceListEntryFields, {ScopeKind::kGlobal}, true, true},
    {EntityId::kVisit, "visit", kVisitFields, {ScopeKind::kParent, 1, EntityId::kAccount}, false, false},
    {EntityId::kOrder,
     "order",
     kOrderFields,
     {ScopeKind::kParent, 1, EntityId::kAccount},
     false,
     false,
     fields::kOrderStatus,
     kOrderTransitions,
     kOrderLocked,
     EntityId::kOrderLine},
    {EntityId::kOrderLine,
     "order_line",
     kOrderLineFields,
     {ScopeKind::kParent, 1, EntityId::kOrder},
     false,
     true},
    {EntityId::kCalendarEvent,
     "calendar_event",
     kCalendarEventFields,
     {ScopeKind::kOwner, 1},
     false,
     false,
     fields::kEventStatus,
     kEventTransitions},
    {EntityId::kOpportunity,
     "opportunity",
     kOpportunityFields,
     {ScopeKind::kParent, 1, EntityId::kAccount},
     false,
     false,
     fields::kOpportunityStage,
     kStageTransitions},
};

}  // namespace

const FieldDef* EntityDef::field(uint16_t field_id) const {
  for (const auto& f : fields)
    if (f.id == field_id) return &f;
  return nullptr;
}

const FieldDef* EntityDef::field(std::string_view field_name) const {
  for (const auto& f : fields)
    if (f.name == field_name) return &f;
  return nullptr;
}

std::span<const EntityDef> entities() {
  return kEntities;
}

const EntityDef* entity(EntityId id) {
  for (const auto& e : kEntities)
    if (e.id == id) return &e;
  return nullptr;
}

const EntityDef* entity(std::string_view name) {
  for (const auto& e : kEntities)
    if (e.name == name) return &e;
  return nullptr;
}

const EntityDef& entity_ref(EntityId id) {
  const EntityDef* e = entity(id);
  if (!e) std::abort();  // programmer error: ids come from the model or were validated at the boundary
  return *e;
}

std::optional<Role> transition_role(const EntityDef& e, std::string_view from, std::string_view to) {
  if (from == to) return Role::kRep;
  for (const auto& t : e.transitions)
    if (t.from == from && t.to == to) return t.min_role;
  return std::nullopt;
}

std::string_view to_string(FieldType t) {
  switch (t) {
    case kText:
      return "text";
    case kInt:
      return "int";
    case kReal:
      return "real";
    case kBool:
      return "bool";
    case kTimestamp:
      return "timestamp";
    case kId:
      return "id";
    case kEnum:
      return "enum";
    case kUserId:
      return "user_id";
  }
  return "?";
}

std::string_view to_string(MergePolicy p) {
  switch (p) {
    case kLastWriterWins:
      return "last_writer_wins";
    case kServerOwned:
      return "server_owned";
    case kImmutable:
      return "immutable";
    case kAppendText:
      return "append_text";
  }
  return "?";
}

std::string_view to_string(Role r) {
  switch (r) {
    case Role::kRep:
      return "rep";
    case Role::kManager:
      return "manager";
    case Role::kHeadOffice:
      return "head_office";
  }
  return "?";
}

std::optional<Role> role_from_string(std::string_view s) {
  if (s == "rep") return Role::kRep;
  if (s == "manager") return Role::kManager;
  if (s == "head_office") return Role::kHeadOffice;
  return std::nullopt;
}

}  // namespace fieldsync::schema
