// The entity model's internal consistency, and the SQL derived from it run against a real SQLite.
#include "fieldsync/schema/model.h"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <algorithm>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "fieldsync/schema/ddl.h"
#include "fieldsync/sync/tuning.h"

namespace fieldsync::schema {
namespace {

bool contains(std::span<const std::string_view> values, std::string_view v) {
  return std::find(values.begin(), values.end(), v) != values.end();
}

// Lowercase snake_case: valid unquoted in JSON keys, SQL and generated code.
bool is_snake_case(std::string_view s) {
  if (s.empty() || !(s[0] >= 'a' && s[0] <= 'z')) return false;
  for (char c : s)
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) return false;
  return s.back() != '_';
}

const FieldDef& field_of(const EntityDef& e, uint16_t id) {
  const FieldDef* f = e.field(id);
  if (!f) ADD_FAILURE() << e.name << " has no field " << id;
  static const FieldDef kMissing{0, "<missing>", FieldType::kText, true, MergePolicy::kLastWriterWins};
  return f ? *f : kMissing;
}

// --- Entities
// ------------------------------------------------------------------------------------------------

TEST(ModelTest, EntitiesAreOrderedUniqueAndFindable) {
  const auto all = entities();
  ASSERT_FALSE(all.empty());
  std::set<std::string_view> names;
  uint16_t prev = 0;
  for (const EntityDef& e : all) {
    const auto id = static_cast<uint16_t>(e.id);
    EXPECT_GT(id, prev) << e.name << ": entity ids must be unique and ascending";
    prev = id;
    EXPECT_NE(e.id, EntityId::kNone);
    EXPECT_TRUE(names.insert(e.name).second) << "duplicate entity name " << e.name;
    EXPECT_TRUE(is_snake_case(e.name)) << e.name;
    EXPECT_EQ(entity(e.id), &e);
    EXPECT_EQ(entity(e.name), &e);
    EXPECT_EQ(&entity_ref(e.id), &e);
    EXPECT_FALSE(e.fields.empty()) << e.name;
  }
  EXPECT_EQ(entity(EntityId::kNone), nullptr);
  EXPECT_EQ(entity(static_cast<EntityId>(0xffff)), nullptr);
  EXPECT_EQ(entity("no_such_entity"), nullptr);
  EXPECT_EQ(entity(""), nullptr);
}

TEST(ModelTest, EveryEntityIdEnumeratorIsInTheModel) {
  // The enum and the table must not drift apart: every enumerator but kNone has an entry.
  for (EntityId id :
       {EntityId::kAccount, EntityId::kContact, EntityId::kProduct, EntityId::kPriceListEntry,
        EntityId::kVisit, EntityId::kOrder, EntityId::kOrderLine, EntityId::kCalendarEvent,
        EntityId::kOpportunity, EntityId::kLead, EntityId::kServiceCase, EntityId::kAsset, EntityId::kTask})
    EXPECT_NE(entity(id), nullptr) << static_cast<int>(id);
}

TEST(ModelTest, EntityNamesMatchTheirIds) {
  const std::pair<EntityId, std::string_view> expected[] = {
      {EntityId::kAccount, "account"},
      {EntityId::kContact, "contact"},
      {EntityId::kProduct, "product"},
      {EntityId::kPriceListEntry, "price_list_entry"},
      {EntityId::kVisit, "visit"},
      {EntityId::kOrder, "order"},
      {EntityId::kOrderLine, "order_line"},
      {EntityId::kCalendarEvent, "calendar_event"},
      {EntityId::kOpportunity, "opportunity"},
      {EntityId::kLead, "lead"},
      {EntityId::kServiceCase, "service_case"},
      {EntityId::kAsset, "asset"},
      {EntityId::kTask, "task"},
  };
  for (const auto& [id, name] : expected) {
    ASSERT_NE(entity(id), nullptr);
    EXPECT_EQ(entity(id)->name, name);
  }
}

// --- Fields
// --------------------------------------------------------------------------------------------------

TEST(ModelTest, FieldIdsAndNamesAreUniquePerEntity) {
  for (const EntityDef& e : entities()) {
    std::set<uint16_t> ids;
    std::set<std::string_view> names;
    for (const FieldDef& f : e.fields) {
      EXPECT_NE(f.id, 0) << e.name << "." << f.name << ": field id 0 means the record itself";
      EXPECT_TRUE(ids.insert(f.id).second) << e.name << ": duplicate field id " << f.id;
      EXPECT_TRUE(names.insert(f.name).second) << e.name << ": duplicate field name " << f.name;
      EXPECT_TRUE(is_snake_case(f.name)) << e.name << "." << f.name;
      // The SQL table adds these columns; a field must not collide with them.
      EXPECT_NE(f.name, "id") << e.name;
      EXPECT_NE(f.name.front(), '_') << e.name << "." << f.name;
      EXPECT_EQ(e.field(f.id), &f);
      EXPECT_EQ(e.field(f.name), &f);
    }
    EXPECT_EQ(e.field(uint16_t{0}), nullptr);
    EXPECT_EQ(e.field("no_such_field"), nullptr);
  }
}

TEST(ModelTest, FieldsAreListedInIdOrder) {
  // Not needed for correctness, but keeps the table readable and append-only edits obvious.
  for (const EntityDef& e : entities())
    EXPECT_TRUE(std::is_sorted(e.fields.begin(), e.fields.end(), [](const FieldDef& a, const FieldDef& b) {
      return a.id < b.id;
    })) << e.name;
}

TEST(ModelTest, FieldConstantsNameTheIntendedFields) {
  struct Expect {
    EntityId entity;
    uint16_t id;
    std::string_view name;
  };
  const Expect expected[] = {
      {EntityId::kAccount, fields::kAccountName, "name"},
      {EntityId::kAccount, fields::kAccountTerritory, "territory_id"},
      {EntityId::kContact, fields::kContactAccount, "account_id"},
      {EntityId::kVisit, fields::kVisitAccount, "account_id"},
      {EntityId::kVisit, fields::kVisitRep, "rep_id"},
      {EntityId::kVisit, fields::kVisitNotes, "notes"},
      {EntityId::kOrder, fields::kOrderAccount, "account_id"},
      {EntityId::kOrder, fields::kOrderStatus, "status"},
      {EntityId::kOrderLine, fields::kOrderLineOrder, "order_id"},
      {EntityId::kCalendarEvent, fields::kEventOwner, "owner_id"},
      {EntityId::kCalendarEvent, fields::kEventStart, "start_at"},
      {EntityId::kCalendarEvent, fields::kEventEnd, "end_at"},
      {EntityId::kCalendarEvent, fields::kEventStatus, "status"},
      {EntityId::kOpportunity, fields::kOpportunityStage, "stage"},
      {EntityId::kAccount, fields::kAccountEmail, "email"},
      {EntityId::kAccount, fields::kAccountCreditLimit, "credit_limit_cents"},
      {EntityId::kAccount, fields::kAccountCreatedBy, "created_by"},
      {EntityId::kContact, fields::kContactName, "name"},
      {EntityId::kContact, fields::kContactEmail, "email"},
      {EntityId::kProduct, fields::kProductSku, "sku"},
      {EntityId::kProduct, fields::kProductName, "name"},
      {EntityId::kProduct, fields::kProductUnit, "unit"},
      {EntityId::kProduct, fields::kProductActive, "active"},
      {EntityId::kPriceListEntry, fields::kPriceProduct, "product_id"},
      {EntityId::kPriceListEntry, fields::kPriceList, "price_list"},
      {EntityId::kPriceListEntry, fields::kPriceUnitPrice, "unit_price_cents"},
      {EntityId::kPriceListEntry, fields::kPriceCurrency, "currency"},
      {EntityId::kVisit, fields::kVisitLatitude, "latitude"},
      {EntityId::kVisit, fields::kVisitLongitude, "longitude"},
      {EntityId::kOrder, fields::kOrderRep, "rep_id"},
      {EntityId::kOrder, fields::kOrderCurrency, "currency"},
      {EntityId::kOrder, fields::kOrderApprovedBy, "approved_by"},
      {EntityId::kOrderLine, fields::kOrderLineProduct, "product_id"},
      {EntityId::kOrderLine, fields::kOrderLineQuantity, "quantity"},
      {EntityId::kOrderLine, fields::kOrderLineUnitPrice, "unit_price_cents"},
      {EntityId::kOrderLine, fields::kOrderLineDiscount, "discount_bp"},
      {EntityId::kOpportunity, fields::kOpportunityOwner, "owner_id"},
      {EntityId::kOpportunity, fields::kOpportunityAmount, "amount_cents"},
      {EntityId::kOpportunity, fields::kOpportunityCurrency, "currency"},
      {EntityId::kCalendarEvent, fields::kEventOpportunity, "opportunity_id"},
      {EntityId::kLead, fields::kLeadPersonName, "person_name"},
      {EntityId::kLead, fields::kLeadCompanyName, "company_name"},
      {EntityId::kLead, fields::kLeadEmail, "email"},
      {EntityId::kLead, fields::kLeadPhone, "phone"},
      {EntityId::kLead, fields::kLeadSource, "source"},
      {EntityId::kLead, fields::kLeadOwner, "owner_id"},
      {EntityId::kLead, fields::kLeadTerritory, "territory_id"},
      {EntityId::kLead, fields::kLeadStatus, "status"},
      {EntityId::kLead, fields::kLeadDisqualifyReason, "disqualify_reason"},
      {EntityId::kLead, fields::kLeadConvertedAccount, "converted_account_id"},
      {EntityId::kLead, fields::kLeadConvertedContact, "converted_contact_id"},
      {EntityId::kLead, fields::kLeadConvertedOpportunity, "converted_opportunity_id"},
      {EntityId::kLead, fields::kLeadConvertedAt, "converted_at"},
      {EntityId::kLead, fields::kLeadCreatedAt, "created_at"},
      {EntityId::kLead, fields::kLeadNotes, "notes"},
      {EntityId::kServiceCase, fields::kCaseAccount, "account_id"},
      {EntityId::kServiceCase, fields::kCaseContact, "contact_id"},
      {EntityId::kServiceCase, fields::kCaseAsset, "asset_id"},
      {EntityId::kServiceCase, fields::kCaseSubject, "subject"},
      {EntityId::kServiceCase, fields::kCasePriority, "priority"},
      {EntityId::kServiceCase, fields::kCaseStatus, "status"},
      {EntityId::kServiceCase, fields::kCaseAssignee, "assignee_id"},
      {EntityId::kServiceCase, fields::kCaseDueAt, "due_at"},
      {EntityId::kServiceCase, fields::kCaseEscalationLevel, "escalation_level"},
      {EntityId::kServiceCase, fields::kCaseResolutionNotes, "resolution_notes"},
      {EntityId::kServiceCase, fields::kCaseOpenedAt, "opened_at"},
      {EntityId::kServiceCase, fields::kCaseResolvedAt, "resolved_at"},
      {EntityId::kServiceCase, fields::kCaseOpenedBy, "opened_by"},
      {EntityId::kAsset, fields::kAssetAccount, "account_id"},
      {EntityId::kAsset, fields::kAssetProduct, "product_id"},
      {EntityId::kAsset, fields::kAssetSerialNumber, "serial_number"},
      {EntityId::kAsset, fields::kAssetInstalledAt, "installed_at"},
      {EntityId::kAsset, fields::kAssetWarrantyEnd, "warranty_end_at"},
      {EntityId::kAsset, fields::kAssetNotes, "notes"},
      {EntityId::kTask, fields::kTaskOwner, "owner_id"},
      {EntityId::kTask, fields::kTaskTitle, "title"},
      {EntityId::kTask, fields::kTaskDueAt, "due_at"},
      {EntityId::kTask, fields::kTaskRemindAt, "remind_at"},
      {EntityId::kTask, fields::kTaskStatus, "status"},
      {EntityId::kTask, fields::kTaskAccount, "account_id"},
      {EntityId::kTask, fields::kTaskOpportunity, "opportunity_id"},
      {EntityId::kTask, fields::kTaskLead, "lead_id"},
      {EntityId::kTask, fields::kTaskServiceCase, "service_case_id"},
      {EntityId::kTask, fields::kTaskNotes, "notes"},
      {EntityId::kTask, fields::kTaskCompletedAt, "completed_at"},
  };
  for (const Expect& x : expected) {
    const EntityDef& e = entity_ref(x.entity);
    const FieldDef* by_name = e.field(x.name);
    ASSERT_NE(by_name, nullptr) << e.name << "." << x.name;
    EXPECT_EQ(by_name->id, x.id) << e.name << "." << x.name;
  }
  // What code relies on besides the id.
  EXPECT_EQ(entity_ref(EntityId::kAccount).field(fields::kAccountTerritory)->type, FieldType::kText);
  EXPECT_EQ(entity_ref(EntityId::kVisit).field(fields::kVisitRep)->type, FieldType::kUserId);
  EXPECT_EQ(entity_ref(EntityId::kVisit).field(fields::kVisitNotes)->policy, MergePolicy::kAppendText);
  EXPECT_EQ(entity_ref(EntityId::kOrder).field(fields::kOrderStatus)->type, FieldType::kEnum);
  EXPECT_EQ(entity_ref(EntityId::kCalendarEvent).field(fields::kEventStart)->type, FieldType::kTimestamp);
  EXPECT_EQ(entity_ref(EntityId::kCalendarEvent).field(fields::kEventEnd)->type, FieldType::kTimestamp);
  EXPECT_EQ(entity_ref(EntityId::kCalendarEvent).field(fields::kEventOwner)->type, FieldType::kUserId);
  EXPECT_EQ(entity_ref(EntityId::kOrder).status_field, fields::kOrderStatus);
  EXPECT_EQ(entity_ref(EntityId::kCalendarEvent).status_field, fields::kEventStatus);
  EXPECT_EQ(entity_ref(EntityId::kOpportunity).status_field, fields::kOpportunityStage);
  EXPECT_EQ(entity_ref(EntityId::kLead).status_field, fields::kLeadStatus);
  EXPECT_EQ(entity_ref(EntityId::kServiceCase).status_field, fields::kCaseStatus);
  EXPECT_EQ(entity_ref(EntityId::kTask).status_field, fields::kTaskStatus);
  EXPECT_EQ(entity_ref(EntityId::kAsset).status_field, 0);
}

// --- Evolution: every entity and field says the schema version it appeared in
// ----------------------------------------------------------------

TEST(ModelTest, SinceVersionsAreConsistent) {
  for (const EntityDef& e : entities()) {
    EXPECT_GE(e.since, 1u) << e.name;
    EXPECT_LE(e.since, kSchemaVersion) << e.name;
    if (e.scope.parent != EntityId::kNone) {
      EXPECT_LE(entity_ref(e.scope.parent).since, e.since) << e.name << ": scoped by a newer entity";
    }
    if (e.scope.kind != ScopeKind::kGlobal) {
      EXPECT_EQ(field_of(e, e.scope.field).since, e.since) << e.name << ": the scope field came later";
    }
    if (e.status_field != 0) {
      EXPECT_EQ(field_of(e, e.status_field).since, e.since) << e.name;
    }
    for (const FieldDef& f : e.fields) {
      EXPECT_GE(f.since, e.since) << e.name << "." << f.name << ": older than its entity";
      EXPECT_LE(f.since, kSchemaVersion) << e.name << "." << f.name;
      if (f.ref != EntityId::kNone) {
        EXPECT_LE(entity_ref(f.ref).since, f.since)
            << e.name << "." << f.name << ": refers to a newer entity";
      }
    }
  }
}

TEST(ModelTest, FieldsAddedAfterV1AreNullable) {
  // Records written before the field existed, and by devices still on an older version, lack it: it cannot
  // be required. (A field of an entity that appeared later is as old as the entity and may be required.)
  size_t added = 0;
  for (const EntityDef& e : entities())
    for (const FieldDef& f : e.fields)
      if (f.since > e.since) {
        ++added;
        EXPECT_TRUE(f.nullable) << e.name << "." << f.name << " (since " << f.since << ")";
        EXPECT_NE(f.policy, MergePolicy::kImmutable)
            << e.name << "." << f.name << ": existing records could never get a value";
      }
  EXPECT_GT(added, 0u);  // calendar_event.opportunity_id
}

TEST(ModelTest, SchemaThree) {
  EXPECT_EQ(kSchemaVersion, 3u);
  for (EntityId id : {EntityId::kLead, EntityId::kServiceCase, EntityId::kAsset, EntityId::kTask}) {
    const EntityDef& e = entity_ref(id);
    EXPECT_EQ(e.since, 3u) << e.name;
    EXPECT_FALSE(e.deletable) << e.name;
    EXPECT_FALSE(e.head_office_only) << e.name;
  }
  for (const EntityDef& e : entities()) {
    if (static_cast<uint16_t>(e.id) < 10) {
      EXPECT_EQ(e.since, 1u) << e.name;
    }
  }
  const FieldDef& opp = field_of(entity_ref(EntityId::kCalendarEvent), fields::kEventOpportunity);
  EXPECT_EQ(opp.since, 3u);
  EXPECT_EQ(opp.ref, EntityId::kOpportunity);
  const EntityDef& lead = entity_ref(EntityId::kLead);
  EXPECT_EQ(lead.scope.kind, ScopeKind::kTerritory);
  EXPECT_EQ(lead.scope.field, fields::kLeadTerritory);
  ASSERT_EQ(lead.locked_statuses.size(), 1u);
  EXPECT_EQ(lead.locked_statuses[0], "converted");
  EXPECT_EQ(transition_role(lead, "disqualified", "new"), Role::kManager);
  EXPECT_EQ(transition_role(lead, "qualified", "converted"), Role::kRep);
  EXPECT_EQ(transition_role(lead, "converted", "new"), std::nullopt);
  const EntityDef& kase = entity_ref(EntityId::kServiceCase);
  EXPECT_EQ(kase.scope.kind, ScopeKind::kParent);
  EXPECT_EQ(kase.scope.parent, EntityId::kAccount);
  EXPECT_EQ(field_of(kase, fields::kCaseDueAt).policy, MergePolicy::kServerOwned);
  EXPECT_EQ(field_of(kase, fields::kCaseEscalationLevel).policy, MergePolicy::kServerOwned);
  EXPECT_EQ(field_of(kase, fields::kCaseAssignee).user_ref, UserRef::kWriterOrTeam);
  EXPECT_EQ(transition_role(kase, "closed", "in_progress"), Role::kManager);
  EXPECT_EQ(transition_role(kase, "resolved", "closed"), Role::kRep);
  EXPECT_EQ(field_of(entity_ref(EntityId::kAsset), fields::kAssetWarrantyEnd).update_role, Role::kHeadOffice);
  const EntityDef& task = entity_ref(EntityId::kTask);
  EXPECT_EQ(task.scope.kind, ScopeKind::kOwner);
  EXPECT_EQ(task.scope.field, fields::kTaskOwner);
  EXPECT_EQ(transition_role(task, "done", "open"), Role::kRep);
}

TEST(ModelTest, TypeSpecificAttributesOnlyWhereTheyApply) {
  for (const EntityDef& e : entities()) {
    for (const FieldDef& f : e.fields) {
      const std::string where = std::string(e.name) + "." + std::string(f.name);
      if (f.type == FieldType::kEnum) {
        EXPECT_FALSE(f.enum_values.empty()) << where;
        std::set<std::string_view> values;
        for (std::string_view v : f.enum_values) {
          EXPECT_TRUE(is_snake_case(v)) << where << " value '" << v << "'";
          EXPECT_TRUE(values.insert(v).second) << where << ": duplicate value " << v;
        }
      } else {
        EXPECT_TRUE(f.enum_values.empty()) << where;
      }
      if (f.type == FieldType::kId) {
        EXPECT_NE(f.ref, EntityId::kNone) << where;
        EXPECT_NE(entity(f.ref), nullptr) << where << " refers to a missing entity";
      } else {
        EXPECT_EQ(f.ref, EntityId::kNone) << where;
      }
      EXPECT_GE(f.max_length, 0) << where;
      EXPECT_LE(f.max_length, static_cast<int64_t>(tuning::kMaxTextBytes)) << where;
      if (f.max_length != 0) {
        EXPECT_EQ(f.type, FieldType::kText) << where << ": max_length on a non-text field";
      }
      // Appended text is text, and a fragment log cannot be required.
      if (f.policy == MergePolicy::kAppendText) {
        EXPECT_EQ(f.type, FieldType::kText) << where;
        EXPECT_TRUE(f.nullable) << where;
      }
      // An update_role on a field nobody may update would be dead data.
      if (f.policy == MergePolicy::kImmutable) {
        EXPECT_EQ(f.update_role, Role::kRep) << where;
      }
    }
  }
}

// --- Value rules and user references
// ------------------------------------------------------------------------------

// Each value rule belongs to one type, and fields are named after what they hold: every currency field is a
// currency code, every e-mail an e-mail, every *_cents field money. A new field of that sort without its rule
// fails here rather than opening a hole on the server.
TEST(ModelTest, ValueRulesFitTheirFieldsAndEveryMoneyFieldHasOne) {
  for (const EntityDef& e : entities()) {
    for (const FieldDef& f : e.fields) {
      const std::string where = std::string(e.name) + "." + std::string(f.name);
      switch (f.value_rule) {
        case ValueRule::kAny:
          break;
        case ValueRule::kCurrencyCode:
        case ValueRule::kEmail:
          EXPECT_EQ(f.type, FieldType::kText) << where;
          break;
        case ValueRule::kMoney:
        case ValueRule::kQuantity:
        case ValueRule::kBasisPoints:
          EXPECT_EQ(f.type, FieldType::kInt) << where;
          break;
        case ValueRule::kLatitude:
        case ValueRule::kLongitude:
          EXPECT_EQ(f.type, FieldType::kReal) << where;
          break;
      }
      if (f.name == "currency") {
        EXPECT_EQ(f.value_rule, ValueRule::kCurrencyCode) << where;
      }
      if (f.name == "email") {
        EXPECT_EQ(f.value_rule, ValueRule::kEmail) << where;
      }
      if (f.name.ends_with("_cents")) {
        EXPECT_EQ(f.value_rule, ValueRule::kMoney) << where;
      }
      if (f.name.ends_with("_bp")) {
        EXPECT_EQ(f.value_rule, ValueRule::kBasisPoints) << where;
      }
      // Every number a person types has a range: an int or real field without a rule must say why here.
      // service_case.escalation_level: a level only head office raises (server-owned), never typed on a
      // device.
      const bool exempt = e.id == EntityId::kServiceCase && f.id == fields::kCaseEscalationLevel;
      if ((f.type == FieldType::kInt || f.type == FieldType::kReal) && f.value_rule == ValueRule::kAny &&
          !exempt)
        ADD_FAILURE() << where << ": a number without a value rule";
    }
  }
  EXPECT_EQ(entity_ref(EntityId::kOrderLine).field(fields::kOrderLineQuantity)->value_rule,
            ValueRule::kQuantity);
  EXPECT_EQ(entity_ref(EntityId::kVisit).field(fields::kVisitLatitude)->value_rule, ValueRule::kLatitude);
  EXPECT_EQ(entity_ref(EntityId::kVisit).field(fields::kVisitLongitude)->value_rule, ValueRule::kLongitude);
}

TEST(ModelTest, ValueRuleRules) {
  EXPECT_EQ(int_range(ValueRule::kQuantity)->min, 1);
  EXPECT_EQ(int_range(ValueRule::kQuantity)->max, kMaxQuantity);
  EXPECT_EQ(int_range(ValueRule::kMoney)->min, 0);
  EXPECT_EQ(int_range(ValueRule::kMoney)->max, kMaxMoneyCents);
  EXPECT_EQ(int_range(ValueRule::kBasisPoints)->max, 10'000);
  EXPECT_FALSE(int_range(ValueRule::kAny));
  EXPECT_FALSE(int_range(ValueRule::kEmail));
  EXPECT_EQ(real_range(ValueRule::kLatitude)->max, 90);
  EXPECT_EQ(real_range(ValueRule::kLongitude)->min, -180);
  EXPECT_FALSE(real_range(ValueRule::kMoney));
  // The largest line's gross (quantity * unit price) fits in int64: totals cannot overflow.
  EXPECT_LE(kMaxQuantity, INT64_MAX / kMaxMoneyCents);

  for (std::string_view ok : {"EUR", "CHF", "USD"})
    EXPECT_TRUE(check_text_rule(ValueRule::kCurrencyCode, ok).empty()) << ok;
  for (std::string_view bad : {"", "EU", "EURO", "eur", "E1R", "EU "})
    EXPECT_FALSE(check_text_rule(ValueRule::kCurrencyCode, bad).empty()) << bad;
  for (std::string_view ok : {"a@b", "zoe@x.de", "first.last+tag@sub.example.com"})
    EXPECT_TRUE(check_text_rule(ValueRule::kEmail, ok).empty()) << ok;
  for (std::string_view bad :
       {"", "nope", "@x.de", "zoe@", "zoe@x@y", "zoe @x.de", "zoe@x.de\n", "<zoe@x.de> "})
    EXPECT_FALSE(check_text_rule(ValueRule::kEmail, bad).empty()) << bad;
  EXPECT_TRUE(check_text_rule(ValueRule::kAny, "anything").empty());

  std::set<std::string_view> names;
  for (ValueRule k :
       {ValueRule::kAny, ValueRule::kCurrencyCode, ValueRule::kEmail, ValueRule::kMoney, ValueRule::kQuantity,
        ValueRule::kBasisPoints, ValueRule::kLatitude, ValueRule::kLongitude}) {
    EXPECT_NE(to_string(k), "?");
    EXPECT_TRUE(names.insert(to_string(k)).second) << to_string(k);
  }
}

// Every field that names a user says whom it may name; no other field does.
TEST(ModelTest, EveryUserIdFieldSaysWhomItMayName) {
  std::map<std::string, UserRef> refs;
  for (const EntityDef& e : entities()) {
    for (const FieldDef& f : e.fields) {
      const std::string where = std::string(e.name) + "." + std::string(f.name);
      if (f.type == FieldType::kUserId) {
        EXPECT_NE(f.user_ref, UserRef::kNotAUser) << where;
        refs[where] = f.user_ref;
      } else {
        EXPECT_EQ(f.user_ref, UserRef::kNotAUser) << where;
      }
    }
  }
  const std::map<std::string, UserRef> expected = {
      {"account.created_by", UserRef::kWriter},
      {"visit.rep_id", UserRef::kWriter},
      {"lead.owner_id", UserRef::kWriterOrTeam},
      {"service_case.assignee_id", UserRef::kWriterOrTeam},
      {"service_case.opened_by", UserRef::kWriter},
      {"task.owner_id", UserRef::kWriterOrTeam},
      {"order.rep_id", UserRef::kWriterOrTeam},
      {"order.approved_by", UserRef::kWriter},
      {"calendar_event.owner_id", UserRef::kWriterOrTeam},
      {"opportunity.owner_id", UserRef::kWriterOrTeam},
  };
  EXPECT_EQ(refs, expected);
  EXPECT_NE(to_string(UserRef::kWriter), to_string(UserRef::kWriterOrTeam));
}

// --- Scope
// ---------------------------------------------------------------------------------------------------

TEST(ModelTest, ScopeRulesPointAtFieldsOfTheRightType) {
  for (const EntityDef& e : entities()) {
    const ScopeRule& s = e.scope;
    switch (s.kind) {
      case ScopeKind::kGlobal:
        EXPECT_EQ(s.field, 0) << e.name;
        EXPECT_EQ(s.parent, EntityId::kNone) << e.name;
        EXPECT_TRUE(e.head_office_only) << e.name << ": global data is written by head office only";
        break;
      case ScopeKind::kTerritory: {
        const FieldDef& f = field_of(e, s.field);
        EXPECT_EQ(f.type, FieldType::kText) << e.name;
        EXPECT_FALSE(f.nullable) << e.name << ": a record without a territory would be invisible";
        EXPECT_EQ(s.parent, EntityId::kNone) << e.name;
        break;
      }
      case ScopeKind::kParent: {
        const FieldDef& f = field_of(e, s.field);
        EXPECT_EQ(f.type, FieldType::kId) << e.name;
        EXPECT_EQ(f.ref, s.parent) << e.name;
        EXPECT_NE(entity(s.parent), nullptr) << e.name;
        EXPECT_NE(s.parent, e.id) << e.name;
        EXPECT_FALSE(f.nullable) << e.name;
        // Moving a child to another parent would move it between scopes behind the other writers' backs.
        EXPECT_EQ(f.policy, MergePolicy::kImmutable) << e.name;
        break;
      }
      case ScopeKind::kOwner: {
        const FieldDef& f = field_of(e, s.field);
        EXPECT_EQ(f.type, FieldType::kUserId) << e.name;
        EXPECT_FALSE(f.nullable) << e.name;
        EXPECT_EQ(s.parent, EntityId::kNone) << e.name;
        break;
      }
      default:
        ADD_FAILURE() << e.name << ": unknown scope kind " << static_cast<int>(s.kind);
    }
  }
}

TEST(ModelTest, ScopeParentChainsEndAndHaveNoCycles) {
  for (const EntityDef& e : entities()) {
    const EntityDef* cur = &e;
    int depth = 0;
    while (cur->scope.kind == ScopeKind::kParent) {
      cur = entity(cur->scope.parent);
      ASSERT_NE(cur, nullptr) << e.name;
      ASSERT_LT(++depth, 10) << e.name << ": scope parent cycle";
    }
    EXPECT_NE(cur->scope.kind, ScopeKind::kParent);
  }
}

TEST(ModelTest, DeletableEntitiesKeepTheirScopeInTombstones) {
  for (const EntityDef& e : entities()) {
    if (!e.deletable) continue;
    for (const FieldDef& f : e.fields)
      EXPECT_NE(f.policy, MergePolicy::kAppendText)
          << e.name << "." << f.name << ": a deletable entity cannot have append-only text";
    if (e.scope.kind != ScopeKind::kGlobal) {
      // A tombstone must still say whose it is so the delete reaches the right devices.
      EXPECT_EQ(field_of(e, e.scope.field).policy, MergePolicy::kImmutable) << e.name;
    }
    // Entities with a status use it instead of deletion.
    EXPECT_EQ(e.status_field, 0) << e.name;
  }
}

// --- Status fields and transitions
// ---------------------------------------------------------------------------

TEST(ModelTest, TransitionsUseTheStatusFieldsValues) {
  for (const EntityDef& e : entities()) {
    if (e.status_field == 0) {
      EXPECT_TRUE(e.transitions.empty()) << e.name;
      EXPECT_TRUE(e.locked_statuses.empty()) << e.name;
      EXPECT_EQ(e.locks_children, EntityId::kNone) << e.name;
      continue;
    }
    const FieldDef& status = field_of(e, e.status_field);
    EXPECT_EQ(status.type, FieldType::kEnum) << e.name;
    EXPECT_FALSE(status.nullable) << e.name;
    EXPECT_NE(status.policy, MergePolicy::kImmutable) << e.name;
    EXPECT_NE(status.policy, MergePolicy::kAppendText) << e.name;
    EXPECT_FALSE(e.transitions.empty()) << e.name;
    std::set<std::pair<std::string_view, std::string_view>> seen;
    for (const Transition& t : e.transitions) {
      EXPECT_TRUE(contains(status.enum_values, t.from)) << e.name << ": from " << t.from;
      EXPECT_TRUE(contains(status.enum_values, t.to)) << e.name << ": to " << t.to;
      EXPECT_NE(t.from, t.to) << e.name << ": staying put is always allowed, not listed";
      EXPECT_TRUE(seen.insert({t.from, t.to}).second) << e.name << ": duplicate " << t.from << "->" << t.to;
    }
    // Every value can be reached or left: an enum value outside every transition is a mistake.
    for (std::string_view v : status.enum_values) {
      const bool used = std::any_of(e.transitions.begin(), e.transitions.end(),
                                    [&](const Transition& t) { return t.from == v || t.to == v; });
      EXPECT_TRUE(used) << e.name << ": status " << v << " appears in no transition";
    }
    for (std::string_view v : e.locked_statuses)
      EXPECT_TRUE(contains(status.enum_values, v)) << e.name << ": locked status " << v;
  }
}

TEST(ModelTest, LockedChildrenAreScopedByTheirParent) {
  for (const EntityDef& e : entities()) {
    if (e.locks_children == EntityId::kNone) continue;
    EXPECT_FALSE(e.locked_statuses.empty()) << e.name;
    const EntityDef* child = entity(e.locks_children);
    ASSERT_NE(child, nullptr) << e.name;
    EXPECT_EQ(child->scope.kind, ScopeKind::kParent) << child->name;
    EXPECT_EQ(child->scope.parent, e.id) << child->name;
  }
}

TEST(ModelTest, OrderLocksAndTransitions) {
  const EntityDef& order = entity_ref(EntityId::kOrder);
  EXPECT_EQ(order.locks_children, EntityId::kOrderLine);
  for (std::string_view s : {"approved", "fulfilled", "cancelled"})
    EXPECT_TRUE(contains(order.locked_statuses, s));
  for (std::string_view s : {"draft", "submitted"}) EXPECT_FALSE(contains(order.locked_statuses, s));
  // Nothing leaves a terminal status.
  for (const Transition& t : order.transitions) {
    EXPECT_NE(t.from, "fulfilled");
    EXPECT_NE(t.from, "cancelled");
  }
}

TEST(ModelTest, TransitionRole) {
  const EntityDef& order = entity_ref(EntityId::kOrder);
  EXPECT_EQ(transition_role(order, "draft", "submitted"), Role::kRep);
  EXPECT_EQ(transition_role(order, "submitted", "approved"), Role::kManager);
  EXPECT_EQ(transition_role(order, "approved", "fulfilled"), Role::kHeadOffice);
  EXPECT_EQ(transition_role(order, "draft", "approved"), std::nullopt);      // skips a step
  EXPECT_EQ(transition_role(order, "fulfilled", "draft"), std::nullopt);     // terminal
  EXPECT_EQ(transition_role(order, "approved", "submitted"), std::nullopt);  // not listed backwards
  EXPECT_EQ(transition_role(order, "draft", "no_such_status"), std::nullopt);
  EXPECT_EQ(transition_role(order, "draft", "draft"), Role::kRep);  // staying put is always allowed
  EXPECT_EQ(transition_role(order, "approved", "approved"), Role::kRep);

  const EntityDef& opp = entity_ref(EntityId::kOpportunity);
  EXPECT_EQ(transition_role(opp, "proposal", "qualified"), Role::kRep);
  EXPECT_EQ(transition_role(opp, "won", "negotiation"), Role::kManager);
  EXPECT_EQ(transition_role(opp, "won", "lost"), std::nullopt);

  const EntityDef& event = entity_ref(EntityId::kCalendarEvent);
  EXPECT_EQ(transition_role(event, "scheduled", "done"), Role::kRep);
  EXPECT_EQ(transition_role(event, "done", "scheduled"), std::nullopt);

  // An entity without transitions allows only staying put.
  const EntityDef& account = entity_ref(EntityId::kAccount);
  EXPECT_EQ(transition_role(account, "a", "b"), std::nullopt);
  EXPECT_EQ(transition_role(account, "a", "a"), Role::kRep);
}

// --- Names
// ---------------------------------------------------------------------------------------------------

TEST(ModelTest, RoleNamesRoundTrip) {
  std::set<std::string_view> names;
  for (Role r : {Role::kRep, Role::kManager, Role::kHeadOffice}) {
    const std::string_view name = to_string(r);
    EXPECT_NE(name, "?");
    EXPECT_TRUE(names.insert(name).second);
    EXPECT_EQ(role_from_string(name), r);
  }
  EXPECT_EQ(to_string(Role::kHeadOffice), "head_office");
  EXPECT_EQ(role_from_string(""), std::nullopt);
  EXPECT_EQ(role_from_string("Rep"), std::nullopt);
  EXPECT_EQ(role_from_string("admin"), std::nullopt);
  EXPECT_LT(Role::kRep, Role::kManager);
  EXPECT_LT(Role::kManager, Role::kHeadOffice);
}

TEST(ModelTest, TypeAndPolicyNamesAreDistinct) {
  std::set<std::string_view> types;
  for (FieldType t : {FieldType::kText, FieldType::kInt, FieldType::kReal, FieldType::kBool,
                      FieldType::kTimestamp, FieldType::kId, FieldType::kEnum, FieldType::kUserId}) {
    EXPECT_NE(to_string(t), "?");
    EXPECT_TRUE(types.insert(to_string(t)).second) << to_string(t);
  }
  std::set<std::string_view> policies;
  for (MergePolicy p : {MergePolicy::kLastWriterWins, MergePolicy::kServerOwned, MergePolicy::kImmutable,
                        MergePolicy::kAppendText}) {
    EXPECT_NE(to_string(p), "?");
    EXPECT_TRUE(policies.insert(to_string(p)).second) << to_string(p);
  }
}

// --- DDL
// -----------------------------------------------------------------------------------------------------

struct DbCloser {
  void operator()(sqlite3* db) const { sqlite3_close(db); }
};
using Db = std::unique_ptr<sqlite3, DbCloser>;

Db open_memory_db() {
  sqlite3* raw = nullptr;
  const int rc = sqlite3_open(":memory:", &raw);
  Db db(raw);
  EXPECT_EQ(rc, SQLITE_OK);
  return db;
}

void exec(sqlite3* db, const std::string& sql) {
  char* err = nullptr;
  const int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
  EXPECT_EQ(rc, SQLITE_OK) << sql << "\n" << (err ? err : "");
  sqlite3_free(err);
}

// Rows of a query whose columns are all read as text (NULL becomes "").
std::vector<std::vector<std::string>> query(sqlite3* db, const std::string& sql) {
  std::vector<std::vector<std::string>> rows;
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr) != SQLITE_OK) {
    ADD_FAILURE() << sql << ": " << sqlite3_errmsg(db);
    return rows;
  }
  int rc;
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    std::vector<std::string> row;
    for (int i = 0; i < sqlite3_column_count(stmt); ++i) {
      const unsigned char* text = sqlite3_column_text(stmt, i);
      row.emplace_back(text ? reinterpret_cast<const char*>(text) : "");
    }
    rows.push_back(std::move(row));
  }
  EXPECT_EQ(rc, SQLITE_DONE) << sql << ": " << sqlite3_errmsg(db);
  sqlite3_finalize(stmt);
  return rows;
}

std::string sql_name(std::string_view name) {
  std::string q(1, '"');
  q += name;
  q += '"';
  return q;
}

TEST(DdlTest, SqliteTypes) {
  EXPECT_EQ(sqlite_type(FieldType::kText), "TEXT");
  EXPECT_EQ(sqlite_type(FieldType::kId), "TEXT");
  EXPECT_EQ(sqlite_type(FieldType::kEnum), "TEXT");
  EXPECT_EQ(sqlite_type(FieldType::kUserId), "TEXT");
  EXPECT_EQ(sqlite_type(FieldType::kInt), "INTEGER");
  EXPECT_EQ(sqlite_type(FieldType::kBool), "INTEGER");
  EXPECT_EQ(sqlite_type(FieldType::kTimestamp), "INTEGER");
  EXPECT_EQ(sqlite_type(FieldType::kReal), "REAL");
}

TEST(DdlTest, AllDdlCreatesEveryTableWithExactlyTheModelsColumns) {
  Db db = open_memory_db();
  ASSERT_TRUE(db);
  for (const std::string& sql : all_ddl()) exec(db.get(), sql);

  for (const EntityDef& e : entities()) {
    // PRAGMA table_info: cid, name, type, notnull, dflt_value, pk.
    const auto rows = query(db.get(), "PRAGMA table_info(" + sql_name(e.name) + ")");
    ASSERT_EQ(rows.size(), e.fields.size() + 3) << e.name;
    EXPECT_EQ(rows[0][1], "id") << e.name;
    EXPECT_EQ(rows[0][2], "TEXT") << e.name;
    EXPECT_EQ(rows[0][5], "1") << e.name << ": id is the primary key";
    for (size_t i = 0; i < e.fields.size(); ++i) {
      const FieldDef& f = e.fields[i];
      const auto& row = rows[i + 1];
      EXPECT_EQ(row[1], f.name) << e.name;
      EXPECT_EQ(row[2], sqlite_type(f.type)) << e.name << "." << f.name;
      EXPECT_EQ(row[3], "0") << e.name << "." << f.name << ": NOT NULL is enforced by validation, not SQL";
      EXPECT_EQ(row[5], "0") << e.name << "." << f.name;
    }
    const auto& deleted = rows[e.fields.size() + 1];
    EXPECT_EQ(deleted[1], "_deleted") << e.name;
    EXPECT_EQ(deleted[2], "INTEGER") << e.name;
    EXPECT_EQ(deleted[3], "1") << e.name;
    EXPECT_EQ(deleted[4], "0") << e.name;
    const auto& meta = rows[e.fields.size() + 2];
    EXPECT_EQ(meta[1], "_meta") << e.name;
    EXPECT_EQ(meta[2], "BLOB") << e.name;
  }

  // No tables beyond the model's.
  const auto tables = query(db.get(), "SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name");
  EXPECT_EQ(tables.size(), entities().size());
}

TEST(DdlTest, IndexesExistForReferencesUsersAndTerritories) {
  Db db = open_memory_db();
  ASSERT_TRUE(db);
  for (const std::string& sql : all_ddl()) exec(db.get(), sql);

  size_t expected_total = 0;
  for (const EntityDef& e : entities()) {
    std::set<std::string> expected;
    for (const FieldDef& f : e.fields) {
      const bool territory = e.scope.kind == ScopeKind::kTerritory && e.scope.field == f.id;
      if (f.type == FieldType::kId || f.type == FieldType::kUserId || territory)
        expected.insert("idx_" + std::string(e.name) + "_" + std::string(f.name));
    }
    // Every scope field is indexed, whatever its kind: scope queries run on every pull.
    if (e.scope.kind != ScopeKind::kGlobal) {
      const std::string scope_index =
          "idx_" + std::string(e.name) + "_" + std::string(field_of(e, e.scope.field).name);
      EXPECT_TRUE(expected.count(scope_index)) << scope_index;
    }
    expected_total += expected.size();

    std::set<std::string> actual;
    for (const auto& row : query(db.get(), "PRAGMA index_list(" + sql_name(e.name) + ")"))
      if (row[3] == "c") actual.insert(row[1]);  // origin "c": made by CREATE INDEX, not the primary key
    EXPECT_EQ(actual, expected) << e.name;

    // Each index covers exactly its field.
    for (const std::string& index : expected) {
      const auto cols = query(db.get(), "PRAGMA index_info(" + sql_name(index) + ")");
      ASSERT_EQ(cols.size(), 1u) << index;
      EXPECT_EQ("idx_" + std::string(e.name) + "_" + cols[0][2], index);
    }
  }
  const auto all_indexes = query(
      db.get(), "SELECT name FROM sqlite_schema WHERE type = 'index' AND name LIKE 'idx\\_%' ESCAPE '\\'");
  EXPECT_EQ(all_indexes.size(), expected_total);
  EXPECT_GT(expected_total, 0u);
}

TEST(DdlTest, AllDdlIsIdempotent) {
  Db db = open_memory_db();
  ASSERT_TRUE(db);
  for (const std::string& sql : all_ddl()) exec(db.get(), sql);
  for (const std::string& sql : all_ddl()) exec(db.get(), sql);  // a device reopening its replica
}

TEST(DdlTest, KeywordTableNameIsUsable) {
  Db db = open_memory_db();
  ASSERT_TRUE(db);
  for (const std::string& sql : all_ddl()) exec(db.get(), sql);
  exec(db.get(), R"(INSERT INTO "order" (id, "account_id", "status") VALUES ('x', 'a', 'draft'))");
  const auto rows = query(db.get(), R"(SELECT id, "status", _deleted FROM "order")");
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0], (std::vector<std::string>{"x", "draft", "0"}));
}

TEST(DdlTest, TablesComeInDependencyOrder) {
  const std::vector<std::string> ddl = all_ddl();
  std::map<EntityId, size_t> position;
  for (const EntityDef& e : entities()) {
    const std::string prefix = "CREATE TABLE IF NOT EXISTS " + sql_name(e.name) + " ";
    size_t found = ddl.size();
    for (size_t i = 0; i < ddl.size(); ++i)
      if (ddl[i].rfind(prefix, 0) == 0) {
        EXPECT_EQ(found, ddl.size()) << e.name << " created twice";
        found = i;
      }
    ASSERT_LT(found, ddl.size()) << e.name << " not created";
    position[e.id] = found;
  }
  for (const EntityDef& e : entities()) {
    if (e.scope.kind == ScopeKind::kParent) {
      EXPECT_LT(position[e.scope.parent], position[e.id]) << e.name;
    }
    for (const FieldDef& f : e.fields) {
      if (f.ref != EntityId::kNone && f.ref != e.id) {
        EXPECT_LT(position[f.ref], position[e.id]) << e.name << "." << f.name;
      }
    }
  }
  // Each entity's indexes follow its table.
  for (const EntityDef& e : entities())
    for (const std::string& sql : create_index_sql(e)) {
      const auto it = std::find(ddl.begin(), ddl.end(), sql);
      ASSERT_NE(it, ddl.end()) << sql;
      EXPECT_GT(static_cast<size_t>(it - ddl.begin()), position[e.id]) << sql;
    }
}

// A store created at schema 2 (the DDL projected to it), brought forward with added_columns_ddl and then the
// current DDL, has exactly the tables and columns of a store created now.
std::map<std::string, std::vector<std::string>> columns_by_table(sqlite3* db) {
  // Sorted: ALTER TABLE appends a column at the end, CREATE TABLE puts it in field order.
  std::map<std::string, std::vector<std::string>> out;
  for (const auto& t : query(db, "SELECT name FROM sqlite_schema WHERE type = 'table'"))
    for (const auto& row : query(db, "PRAGMA table_info(" + sql_name(t[0]) + ")"))
      out[t[0]].push_back(row[1] + " " + row[2]);
  for (auto& [table, cols] : out) std::sort(cols.begin(), cols.end());
  return out;
}

TEST(DdlTest, ProjectedDdlLeavesOutLaterEntitiesAndFields) {
  Db db = open_memory_db();
  ASSERT_TRUE(db);
  for (const std::string& sql : all_ddl(Dialect::kSqlite, 2)) exec(db.get(), sql);
  const auto cols = columns_by_table(db.get());
  EXPECT_EQ(cols.size(), 9u);
  EXPECT_EQ(cols.count("lead"), 0u);
  EXPECT_EQ(cols.count("task"), 0u);
  ASSERT_EQ(cols.count("calendar_event"), 1u);
  for (const std::string& c : cols.at("calendar_event")) EXPECT_NE(c, "opportunity_id TEXT");
  EXPECT_EQ(cols.at("calendar_event").size(), entity_ref(EntityId::kCalendarEvent).fields.size() + 2);
}

TEST(DdlTest, AddedColumnsBringAnOlderStoreToTheCurrentModel) {
  Db old_db = open_memory_db();
  Db new_db = open_memory_db();
  ASSERT_TRUE(old_db && new_db);
  for (const std::string& sql : all_ddl(Dialect::kSqlite, 2)) exec(old_db.get(), sql);
  const std::vector<std::string> added = added_columns_ddl(2);
  ASSERT_EQ(added.size(), 1u);
  EXPECT_EQ(added[0], R"(ALTER TABLE "calendar_event" ADD COLUMN "opportunity_id" TEXT)");
  for (const std::string& sql : added) exec(old_db.get(), sql);
  for (const std::string& sql : all_ddl()) exec(old_db.get(), sql);
  for (const std::string& sql : all_ddl()) exec(new_db.get(), sql);
  EXPECT_EQ(columns_by_table(old_db.get()), columns_by_table(new_db.get()));
  const auto indexes = "SELECT name FROM sqlite_schema WHERE type = 'index' ORDER BY name";
  EXPECT_EQ(query(old_db.get(), indexes), query(new_db.get(), indexes));
  EXPECT_TRUE(added_columns_ddl(kSchemaVersion).empty());
}

TEST(DdlTest, PostgresDdlAddsLaterColumnsToExistingTables) {
  // PostgreSQL's DDL upgrades an older database by itself: the column is added if missing, before its index.
  const std::vector<std::string> ddl = all_ddl(Dialect::kPostgres);
  const std::string add =
      R"(ALTER TABLE "calendar_event" ADD COLUMN IF NOT EXISTS "opportunity_id" TEXT COLLATE "C")";
  const auto at = std::find(ddl.begin(), ddl.end(), add);
  ASSERT_NE(at, ddl.end());
  const auto index = std::find_if(ddl.begin(), ddl.end(), [](const std::string& s) {
    return s.find("idx_calendar_event_opportunity_id") != std::string::npos;
  });
  ASSERT_NE(index, ddl.end());
  EXPECT_LT(at, index);
  // Tables new in a version have no such statement (CREATE TABLE has every column).
  for (const std::string& sql : ddl) EXPECT_EQ(sql.find(R"(ALTER TABLE "lead")"), std::string::npos) << sql;
}

}  // namespace
}  // namespace fieldsync::schema
