// THE entity model. See model.h for the evolution rules: ids are appended, never reused.
#include "fieldsync/schema/model.h"

#include <algorithm>
#include <array>
#include <cassert>
#include <cstdlib>

namespace fieldsync::schema {
namespace {

using enum FieldType;
using enum MergePolicy;
using enum ValueRule;
using enum UserRef;
constexpr bool kNull = true;
constexpr bool kNotNull = false;
constexpr EntityId kNoRef = EntityId::kNone;  // a field that refers to no entity

constexpr std::string_view kSegments[] = {"a", "b", "c"};
constexpr std::string_view kVisitOutcomes[] = {"order_taken", "follow_up", "no_interest", "not_available",
                                               "other"};
constexpr std::string_view kOrderStatuses[] = {"draft", "submitted", "approved", "fulfilled", "cancelled"};
constexpr std::string_view kOrderLocked[] = {"approved", "fulfilled", "cancelled"};
constexpr std::string_view kEventStatuses[] = {"scheduled", "done", "cancelled"};
constexpr std::string_view kLeadSources[] = {
    "campaign", "web_form", "email_enquiry", "phone_enquiry", "field_prospecting", "referral", "other"};
constexpr std::string_view kLeadStatuses[] = {"new", "contacted", "qualified", "converted", "disqualified"};
constexpr std::string_view kLeadLocked[] = {"converted"};
constexpr std::string_view kCasePriorities[] = {"low", "normal", "high", "urgent"};
constexpr std::string_view kCaseStatuses[] = {"open", "assigned", "in_progress", "resolved", "closed"};
constexpr std::string_view kTaskStatuses[] = {"open", "done", "cancelled"};
constexpr std::string_view kStages[] = {"prospect", "qualified", "proposal", "negotiation", "won", "lost"};

constexpr FieldDef kAccountFields[] = {
    {1, "name", kText, kNotNull, kLastWriterWins},
    {2, "territory_id", kText, kNotNull, kLastWriterWins, kNoRef, {}, 64, Role::kHeadOffice},
    {3, "address", kText, kNull, kLastWriterWins},
    {4, "city", kText, kNull, kLastWriterWins},
    {5, "phone", kText, kNull, kLastWriterWins, kNoRef, {}, 64},
    {6, "email", kText, kNull, kLastWriterWins, kNoRef, {}, 254, Role::kRep, kEmail},
    {7, "segment", kEnum, kNull, kLastWriterWins, kNoRef, kSegments},
    {8, "credit_limit_cents", kInt, kNull, kServerOwned, kNoRef, {}, 0, Role::kRep, kMoney},
    {9, "notes", kText, kNull, kAppendText},
    // Who filed the account: only ever the writer (head office may import on someone's behalf).
    {10, "created_by", kUserId, kNotNull, kImmutable, kNoRef, {}, 0, Role::kRep, kAny, kWriter},
};

constexpr FieldDef kContactFields[] = {
    {1, "account_id", kId, kNotNull, kImmutable, EntityId::kAccount},
    {2, "name", kText, kNotNull, kLastWriterWins},
    {3, "title", kText, kNull, kLastWriterWins},
    {4, "email", kText, kNull, kLastWriterWins, kNoRef, {}, 254, Role::kRep, kEmail},
    {5, "phone", kText, kNull, kLastWriterWins, kNoRef, {}, 64},
    {6, "is_primary", kBool, kNull, kLastWriterWins},
};

constexpr FieldDef kProductFields[] = {
    {1, "sku", kText, kNotNull, kImmutable, kNoRef, {}, 64},
    {2, "name", kText, kNotNull, kLastWriterWins},
    {3, "unit", kText, kNull, kLastWriterWins, kNoRef, {}, 32},
    {4, "active", kBool, kNotNull, kLastWriterWins},
};

constexpr FieldDef kPriceListEntryFields[] = {
    {1, "product_id", kId, kNotNull, kImmutable, EntityId::kProduct},
    {2, "price_list", kText, kNotNull, kImmutable, kNoRef, {}, 64},
    {3, "unit_price_cents", kInt, kNotNull, kLastWriterWins, kNoRef, {}, 0, Role::kRep, kMoney},
    {4, "currency", kText, kNotNull, kLastWriterWins, kNoRef, {}, 3, Role::kRep, kCurrencyCode},
    {5, "valid_from", kTimestamp, kNull, kLastWriterWins},
    {6, "valid_to", kTimestamp, kNull, kLastWriterWins},
};

constexpr FieldDef kVisitFields[] = {
    {1, "account_id", kId, kNotNull, kImmutable, EntityId::kAccount},
    // A check-in records where the writer stood: nobody checks in for someone else.
    {2, "rep_id", kUserId, kNotNull, kImmutable, kNoRef, {}, 0, Role::kRep, kAny, kWriter},
    {3, "calendar_event_id", kId, kNull, kLastWriterWins, EntityId::kCalendarEvent},
    {4, "check_in_at", kTimestamp, kNotNull, kImmutable},
    {5, "check_out_at", kTimestamp, kNull, kLastWriterWins},
    {6, "latitude", kReal, kNull, kImmutable, kNoRef, {}, 0, Role::kRep, kLatitude},
    {7, "longitude", kReal, kNull, kImmutable, kNoRef, {}, 0, Role::kRep, kLongitude},
    {8, "notes", kText, kNull, kAppendText},
    {9, "outcome", kEnum, kNull, kLastWriterWins, kNoRef, kVisitOutcomes},
};

constexpr FieldDef kOrderFields[] = {
    {1, "account_id", kId, kNotNull, kImmutable, EntityId::kAccount},
    // The rep the order is for: a manager may take one down for a rep of their team. It changes hands with
    // the customer (a departing rep's open orders go to a colleague): a manager to a rep of their team, head
    // office to anyone, never a rep; a locked (approved, fulfilled, cancelled) order keeps its rep.
    {2, "rep_id", kUserId, kNotNull, kLastWriterWins, kNoRef, {}, 0, Role::kManager, kAny, kWriterOrTeam},
    {3, "status", kEnum, kNotNull, kLastWriterWins, kNoRef, kOrderStatuses},
    {4, "currency", kText, kNotNull, kLastWriterWins, kNoRef, {}, 3, Role::kRep, kCurrencyCode},
    {5, "notes", kText, kNull, kAppendText},
    {6, "submitted_at", kTimestamp, kNull, kLastWriterWins},
    {7, "approved_by", kUserId, kNull, kServerOwned, kNoRef, {}, 0, Role::kRep, kAny, kWriter},
    {8, "approved_at", kTimestamp, kNull, kServerOwned},
    {9, "delivery_date", kTimestamp, kNull, kLastWriterWins},
};

constexpr FieldDef kOrderLineFields[] = {
    {1, "order_id", kId, kNotNull, kImmutable, EntityId::kOrder},
    {2, "product_id", kId, kNotNull, kLastWriterWins, EntityId::kProduct},
    {3, "quantity", kInt, kNotNull, kLastWriterWins, kNoRef, {}, 0, Role::kRep, kQuantity},
    {4, "unit_price_cents", kInt, kNotNull, kLastWriterWins, kNoRef, {}, 0, Role::kRep, kMoney},
    {5, "discount_bp", kInt, kNull, kLastWriterWins, kNoRef, {}, 0, Role::kRep, kBasisPoints},
    {6, "note", kText, kNull, kLastWriterWins},
};

constexpr FieldDef kCalendarEventFields[] = {
    // A manager books appointments for the reps of their team (the owner scope says the same).
    // Handed to a colleague the same way as an order (a manager within their team, head office to anyone);
    // the event then moves to the new owner's scope like an account moving territory.
    {1, "owner_id", kUserId, kNotNull, kLastWriterWins, kNoRef, {}, 0, Role::kManager, kAny, kWriterOrTeam},
    {2, "account_id", kId, kNull, kLastWriterWins, EntityId::kAccount},
    {3, "title", kText, kNotNull, kLastWriterWins},
    {4, "start_at", kTimestamp, kNotNull, kLastWriterWins},
    {5, "end_at", kTimestamp, kNotNull, kLastWriterWins},
    {6, "status", kEnum, kNotNull, kLastWriterWins, kNoRef, kEventStatuses},
    {7, "location", kText, kNull, kLastWriterWins},
    {8, "notes", kText, kNull, kAppendText},
    // The deal the appointment is for (schema 3): appointments are planned per customer and per project.
    {9,
     "opportunity_id",
     kId,
     kNull,
     kLastWriterWins,
     EntityId::kOpportunity,
     {},
     0,
     Role::kRep,
     kAny,
     kNotAUser,
     3},
};

constexpr FieldDef kOpportunityFields[] = {
    {1, "account_id", kId, kNotNull, kImmutable, EntityId::kAccount},
    // A rep owns deals themselves; a manager hands them to the reps of their team.
    {2, "owner_id", kUserId, kNotNull, kLastWriterWins, kNoRef, {}, 0, Role::kRep, kAny, kWriterOrTeam},
    {3, "name", kText, kNotNull, kLastWriterWins},
    {4, "stage", kEnum, kNotNull, kLastWriterWins, kNoRef, kStages},
    {5, "amount_cents", kInt, kNotNull, kLastWriterWins, kNoRef, {}, 0, Role::kRep, kMoney},
    {6, "currency", kText, kNotNull, kLastWriterWins, kNoRef, {}, 3, Role::kRep, kCurrencyCode},
    {7, "expected_close", kTimestamp, kNull, kLastWriterWins},
    {8, "notes", kText, kNull, kAppendText},
};

// Schema 3. Every field of a new entity has since = 3 (the entity's), spelled out so a field added later
// stands out.
constexpr FieldDef kLeadFields[] = {
    {1, "person_name", kText, kNotNull, kLastWriterWins, kNoRef, {}, 0, Role::kRep, kAny, kNotAUser, 3},
    {2, "company_name", kText, kNull, kLastWriterWins, kNoRef, {}, 0, Role::kRep, kAny, kNotAUser, 3},
    {3, "email", kText, kNull, kLastWriterWins, kNoRef, {}, 254, Role::kRep, kEmail, kNotAUser, 3},
    {4, "phone", kText, kNull, kLastWriterWins, kNoRef, {}, 64, Role::kRep, kAny, kNotAUser, 3},
    {5, "source", kEnum, kNotNull, kLastWriterWins, kNoRef, kLeadSources, 0, Role::kRep, kAny, kNotAUser, 3},
    // Leads belong to the company, not to whoever found them: a manager hands one to a rep of their team.
    {6,
     "owner_id",
     kUserId,
     kNotNull,
     kLastWriterWins,
     kNoRef,
     {},
     0,
     Role::kManager,
     kAny,
     kWriterOrTeam,
     3},
    {7,
     "territory_id",
     kText,
     kNotNull,
     kLastWriterWins,
     kNoRef,
     {},
     64,
     Role::kHeadOffice,
     kAny,
     kNotAUser,
     3},
    {8, "status", kEnum, kNotNull, kLastWriterWins, kNoRef, kLeadStatuses, 0, Role::kRep, kAny, kNotAUser, 3},
    {9, "disqualify_reason", kText, kNull, kLastWriterWins, kNoRef, {}, 0, Role::kRep, kAny, kNotAUser, 3},
    // Set by the converting transaction only (rules); the lead is locked once converted.
    {10,
     "converted_account_id",
     kId,
     kNull,
     kLastWriterWins,
     EntityId::kAccount,
     {},
     0,
     Role::kRep,
     kAny,
     kNotAUser,
     3},
    {11,
     "converted_contact_id",
     kId,
     kNull,
     kLastWriterWins,
     EntityId::kContact,
     {},
     0,
     Role::kRep,
     kAny,
     kNotAUser,
     3},
    {12,
     "converted_opportunity_id",
     kId,
     kNull,
     kLastWriterWins,
     EntityId::kOpportunity,
     {},
     0,
     Role::kRep,
     kAny,
     kNotAUser,
     3},
    {13, "converted_at", kTimestamp, kNull, kLastWriterWins, kNoRef, {}, 0, Role::kRep, kAny, kNotAUser, 3},
    {14, "created_at", kTimestamp, kNotNull, kImmutable, kNoRef, {}, 0, Role::kRep, kAny, kNotAUser, 3},
    {15, "notes", kText, kNull, kAppendText, kNoRef, {}, 0, Role::kRep, kAny, kNotAUser, 3},
};

constexpr FieldDef kServiceCaseFields[] = {
    {1, "account_id", kId, kNotNull, kImmutable, EntityId::kAccount, {}, 0, Role::kRep, kAny, kNotAUser, 3},
    {2, "contact_id", kId, kNull, kLastWriterWins, EntityId::kContact, {}, 0, Role::kRep, kAny, kNotAUser, 3},
    {3, "asset_id", kId, kNull, kLastWriterWins, EntityId::kAsset, {}, 0, Role::kRep, kAny, kNotAUser, 3},
    {4, "subject", kText, kNotNull, kLastWriterWins, kNoRef, {}, 0, Role::kRep, kAny, kNotAUser, 3},
    {5, "priority", kEnum, kNotNull, kLastWriterWins, kNoRef, kCasePriorities, 0, Role::kRep, kAny, kNotAUser,
     3},
    {6, "status", kEnum, kNotNull, kLastWriterWins, kNoRef, kCaseStatuses, 0, Role::kRep, kAny, kNotAUser, 3},
    // Dispatch: a rep may only take an unassigned case (null -> themselves), a manager assigns within the
    // team, head office anyone (rules.cc).
    {7, "assignee_id", kUserId, kNull, kLastWriterWins, kNoRef, {}, 0, Role::kRep, kAny, kWriterOrTeam, 3},
    {8, "due_at", kTimestamp, kNull, kServerOwned, kNoRef, {}, 0, Role::kRep, kAny, kNotAUser, 3},
    {9, "escalation_level", kInt, kNull, kServerOwned, kNoRef, {}, 0, Role::kRep, kAny, kNotAUser, 3},
    {10, "resolution_notes", kText, kNull, kAppendText, kNoRef, {}, 0, Role::kRep, kAny, kNotAUser, 3},
    {11, "opened_at", kTimestamp, kNotNull, kImmutable, kNoRef, {}, 0, Role::kRep, kAny, kNotAUser, 3},
    {12, "resolved_at", kTimestamp, kNull, kLastWriterWins, kNoRef, {}, 0, Role::kRep, kAny, kNotAUser, 3},
    {13, "opened_by", kUserId, kNotNull, kImmutable, kNoRef, {}, 0, Role::kRep, kAny, kWriter, 3},
};

constexpr FieldDef kAssetFields[] = {
    {1, "account_id", kId, kNotNull, kImmutable, EntityId::kAccount, {}, 0, Role::kRep, kAny, kNotAUser, 3},
    {2, "product_id", kId, kNull, kLastWriterWins, EntityId::kProduct, {}, 0, Role::kRep, kAny, kNotAUser, 3},
    {3, "serial_number", kText, kNotNull, kLastWriterWins, kNoRef, {}, 128, Role::kRep, kAny, kNotAUser, 3},
    {4, "installed_at", kTimestamp, kNull, kLastWriterWins, kNoRef, {}, 0, Role::kRep, kAny, kNotAUser, 3},
    // Whether a case on the asset is billable depends on it: only head office sets it.
    {5,
     "warranty_end_at",
     kTimestamp,
     kNull,
     kLastWriterWins,
     kNoRef,
     {},
     0,
     Role::kHeadOffice,
     kAny,
     kNotAUser,
     3},
    {6, "notes", kText, kNull, kAppendText, kNoRef, {}, 0, Role::kRep, kAny, kNotAUser, 3},
};

constexpr FieldDef kTaskFields[] = {
    {1,
     "owner_id",
     kUserId,
     kNotNull,
     kLastWriterWins,
     kNoRef,
     {},
     0,
     Role::kManager,
     kAny,
     kWriterOrTeam,
     3},
    {2, "title", kText, kNotNull, kLastWriterWins, kNoRef, {}, 0, Role::kRep, kAny, kNotAUser, 3},
    {3, "due_at", kTimestamp, kNull, kLastWriterWins, kNoRef, {}, 0, Role::kRep, kAny, kNotAUser, 3},
    {4, "remind_at", kTimestamp, kNull, kLastWriterWins, kNoRef, {}, 0, Role::kRep, kAny, kNotAUser, 3},
    {5, "status", kEnum, kNotNull, kLastWriterWins, kNoRef, kTaskStatuses, 0, Role::kRep, kAny, kNotAUser, 3},
    {6, "account_id", kId, kNull, kLastWriterWins, EntityId::kAccount, {}, 0, Role::kRep, kAny, kNotAUser, 3},
    {7,
     "opportunity_id",
     kId,
     kNull,
     kLastWriterWins,
     EntityId::kOpportunity,
     {},
     0,
     Role::kRep,
     kAny,
     kNotAUser,
     3},
    {8, "lead_id", kId, kNull, kLastWriterWins, EntityId::kLead, {}, 0, Role::kRep, kAny, kNotAUser, 3},
    {9,
     "service_case_id",
     kId,
     kNull,
     kLastWriterWins,
     EntityId::kServiceCase,
     {},
     0,
     Role::kRep,
     kAny,
     kNotAUser,
     3},
    {10, "notes", kText, kNull, kAppendText, kNoRef, {}, 0, Role::kRep, kAny, kNotAUser, 3},
    {11, "completed_at", kTimestamp, kNull, kLastWriterWins, kNoRef, {}, 0, Role::kRep, kAny, kNotAUser, 3},
};

constexpr Transition kLeadTransitions[] = {
    {"new", "contacted", Role::kRep},          {"new", "qualified", Role::kRep},
    {"contacted", "qualified", Role::kRep},    {"new", "converted", Role::kRep},
    {"contacted", "converted", Role::kRep},    {"qualified", "converted", Role::kRep},
    {"new", "disqualified", Role::kRep},       {"contacted", "disqualified", Role::kRep},
    {"qualified", "disqualified", Role::kRep}, {"disqualified", "new", Role::kManager},
};

// Reps work their cases forward; sending one back (unassign, reopen) is a manager's call.
constexpr Transition kCaseTransitions[] = {
    {"open", "assigned", Role::kRep},          {"open", "in_progress", Role::kRep},
    {"assigned", "in_progress", Role::kRep},   {"assigned", "resolved", Role::kRep},
    {"in_progress", "resolved", Role::kRep},   {"resolved", "closed", Role::kRep},
    {"assigned", "open", Role::kManager},      {"resolved", "in_progress", Role::kManager},
    {"closed", "in_progress", Role::kManager},
};

constexpr Transition kTaskTransitions[] = {
    {"open", "done", Role::kRep},
    {"open", "cancelled", Role::kRep},
    {"done", "open", Role::kRep},
    {"cancelled", "open", Role::kRep},
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
    {EntityId::kLead,
     "lead",
     kLeadFields,
     {ScopeKind::kTerritory, fields::kLeadTerritory},
     false,
     false,
     fields::kLeadStatus,
     kLeadTransitions,
     kLeadLocked,
     EntityId::kNone,
     3},
    {EntityId::kServiceCase,
     "service_case",
     kServiceCaseFields,
     {ScopeKind::kParent, fields::kCaseAccount, EntityId::kAccount},
     false,
     false,
     fields::kCaseStatus,
     kCaseTransitions,
     {},
     EntityId::kNone,
     3},
    {EntityId::kAsset,
     "asset",
     kAssetFields,
     {ScopeKind::kParent, fields::kAssetAccount, EntityId::kAccount},
     false,
     false,
     0,
     {},
     {},
     EntityId::kNone,
     3},
    {EntityId::kTask,
     "task",
     kTaskFields,
     {ScopeKind::kOwner, fields::kTaskOwner},
     false,
     false,
     fields::kTaskStatus,
     kTaskTransitions,
     {},
     EntityId::kNone,
     3},
};

}  // namespace

const FieldDef* EntityDef::field(uint16_t field_id) const {
  for (const auto& f : fields)
    if (f.id == field_id) return &f;
  return nullptr;
}

// Every write looks its fields up by name (FieldClient's Batch::set). Compared a character at a time after
// the length: names are short, and string equality is a memcmp call -- cheap on x86-64, a generic loop in
// 32-bit ARM's C library (PERFORMANCE.md "armhf's check-in ratio").
const FieldDef* EntityDef::field(std::string_view field_name) const {
  for (const auto& f : fields) {
    if (f.name.size() != field_name.size()) continue;
    size_t i = 0;
    while (i < field_name.size() && f.name[i] == field_name[i]) ++i;
    if (i == field_name.size()) return &f;
  }
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

std::string_view check_text_rule(ValueRule rule, std::string_view text) {
  switch (rule) {
    case kCurrencyCode:
      if (text.size() != 3 ||
          !std::all_of(text.begin(), text.end(), [](char c) { return c >= 'A' && c <= 'Z'; }))
        return "not an ISO 4217 currency code (three upper-case letters such as EUR)";
      return {};
    case kEmail: {
      const size_t at = text.find('@');
      if (at == std::string_view::npos || at == 0 || at + 1 == text.size() ||
          text.find('@', at + 1) != std::string_view::npos)
        return "not an e-mail address (local@domain)";
      // Spaces and control characters: a pasted "Name <a@b>" or a line break is never an address.
      if (std::any_of(text.begin(), text.end(), [](char c) { return static_cast<unsigned char>(c) <= ' '; }))
        return "an e-mail address has no spaces or control characters";
      return {};
    }
    default:
      return {};
  }
}

std::optional<IntRange> int_range(ValueRule rule) {
  switch (rule) {
    case kMoney:
      return IntRange{0, kMaxMoneyCents};
    case kQuantity:
      return IntRange{1, kMaxQuantity};
    case kBasisPoints:
      return IntRange{0, kMaxBasisPoints};
    default:
      return std::nullopt;
  }
}

std::optional<RealRange> real_range(ValueRule rule) {
  switch (rule) {
    case kLatitude:
      return RealRange{-90, 90};
    case kLongitude:
      return RealRange{-180, 180};
    default:
      return std::nullopt;
  }
}

std::string_view to_string(ValueRule k) {
  switch (k) {
    case kAny:
      return "any";
    case kCurrencyCode:
      return "currency_code";
    case kEmail:
      return "email";
    case kMoney:
      return "money";
    case kQuantity:
      return "quantity";
    case kBasisPoints:
      return "basis_points";
    case kLatitude:
      return "latitude";
    case kLongitude:
      return "longitude";
  }
  return "?";
}

std::string_view to_string(UserRef r) {
  switch (r) {
    case kNotAUser:
      return "not_a_user";
    case kWriter:
      return "writer";
    case kWriterOrTeam:
      return "writer_or_team";
  }
  return "?";
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
