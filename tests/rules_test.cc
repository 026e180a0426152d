// The server's transaction rules (apply_client_txn) through a MemoryCentralStore, one test per rejection
// reason, plus the happy path, scheduling conflicts and the in-memory stores themselves.
#include <gtest/gtest.h>

#include <set>
#include <string>

#include "fieldsync/sync/rules.h"
#include "fieldsync/sync/tuning.h"
#include "support/memory_store.h"

namespace fieldsync {
namespace {

using schema::EntityId;
using schema::Role;
namespace f = schema::fields;

// Field ids not named in model.h's fields namespace.
constexpr uint16_t kAccountNotes = 9;
constexpr uint16_t kOrderDelivery = 9;
constexpr uint16_t kEventTitle = 3;
constexpr uint16_t kOpportunityName = 3;
constexpr uint16_t kVisitCheckIn = 4;

const Principal kHq{"hq", Role::kHeadOffice, {}, {}};
const Principal kAnn{"ann", Role::kRep, {"north"}, {}};
const Principal kBob{"bob", Role::kRep, {"south"}, {}};
const Principal kMia{"mia", Role::kManager, {"north", "south"}, {"ann", "bob"}};

NodeId node_of(const Principal& p) {
  if (p.user == "hq") return 10;
  if (p.user == "ann") return 11;
  if (p.user == "bob") return 12;
  return 13;
}

Change make(ChangeOp op, EntityId e, RecordId id, uint16_t field = 0, Value value = {}) {
  Change c;
  c.op = op;
  c.entity = e;
  c.record = id;
  c.field = field;
  c.value = std::move(value);
  return c;
}
Change create(EntityId e, RecordId id) {
  return make(ChangeOp::kCreate, e, id);
}
Change set(EntityId e, RecordId id, uint16_t field, Value v) {
  return make(ChangeOp::kSet, e, id, field, v);
}
Change del(EntityId e, RecordId id) {
  return make(ChangeOp::kDelete, e, id);
}
Value text(std::string s) {
  return Value::text(std::move(s));
}
Value ref(RecordId id) {
  return Value::text(id.to_string());
}

class RulesTest : public ::testing::Test {
 protected:
  RecordId new_id() {
    ++ids_;
    return RecordId{0x0190'0000'0000'7000 + (ids_ << 16), 0x8000'0000'0000'0000 + ids_};
  }

  // A transaction of `who`'s device: versions are stamped in order, each above every earlier one.
  ClientTxn txn(const Principal& who, std::vector<Change> changes) {
    ClientTxn t;
    t.node = node_of(who);
    t.node_seq = ++seqs_[t.node];
    for (Change& c : changes) c.version = Version{++hlc_, t.node};
    t.changes = std::move(changes);
    return t;
  }

  Result<TxnApplication> apply(const ClientTxn& t, const Principal& who) {
    std::unique_ptr<CentralTxn> tx = store_.begin();
    CheckedTxnReader reader(*tx);
    return apply_client_txn(t, who, reader);
  }

  // Applies and commits like the server does; the test fails if the transaction is rejected.
  TxnApplication commit(const ClientTxn& t, const Principal& who) {
    std::unique_ptr<CentralTxn> tx = store_.begin();
    CheckedTxnReader reader(*tx);
    Result<TxnApplication> r = apply_client_txn(t, who, reader);
    EXPECT_TRUE(r.is_ok()) << r.status().to_string();
    if (!r.is_ok()) return {};
    for (const RecordState& rec : r->records) tx->save(rec);
    ServerTxn st;
    st.origin_node = t.node;
    st.origin_user = who.user;
    st.origin_node_seq = t.node_seq;
    st.changes = r->effective;
    std::vector<ScopeKey> scopes = log_scopes(st, r->conflicts, reader);
    // The server passes the scopes the rules resolved instead of loading each record again: the same keys.
    EXPECT_EQ(log_scopes(st, r->conflicts, reader, r->scopes), scopes);
    EXPECT_TRUE(reader.status().is_ok());
    tx->append_log(st, r->conflicts, std::move(scopes));
    EXPECT_TRUE(tx->commit().is_ok());
    return std::move(r.value());
  }

  void expect_rejected(const ClientTxn& t, const Principal& who, ErrorCode code) {
    size_t log_before = store_.log().size();
    Result<TxnApplication> r = apply(t, who);
    ASSERT_FALSE(r.is_ok()) << "accepted; expected " << to_string(code);
    EXPECT_EQ(r.status().code(), code) << r.status().to_string();
    EXPECT_FALSE(r.status().message().empty());
    EXPECT_EQ(store_.log().size(), log_before);
  }

  std::vector<Change> account(RecordId id, const std::string& territory, const Principal& by) {
    return {create(EntityId::kAccount, id), set(EntityId::kAccount, id, f::kAccountName, text("Acme")),
            set(EntityId::kAccount, id, f::kAccountTerritory, text(territory)),
            set(EntityId::kAccount, id, f::kAccountCreatedBy, text(by.user))};
  }
  RecordId new_account(const std::string& territory) {
    RecordId id = new_id();
    commit(txn(kHq, account(id, territory, kHq)), kHq);
    return id;
  }

  RecordId new_product() {
    RecordId id = new_id();
    commit(
        txn(kHq, {create(EntityId::kProduct, id), set(EntityId::kProduct, id, f::kProductSku, text("SKU-1")),
                  set(EntityId::kProduct, id, f::kProductName, text("Widget")),
                  set(EntityId::kProduct, id, f::kProductActive, Value::boolean(true))}),
        kHq);
    return id;
  }

  std::vector<Change> order(RecordId id, RecordId account_id, const Principal& rep,
                            const std::string& status) {
    return {create(EntityId::kOrder, id), set(EntityId::kOrder, id, f::kOrderAccount, ref(account_id)),
            set(EntityId::kOrder, id, f::kOrderRep, text(rep.user)),
            set(EntityId::kOrder, id, f::kOrderStatus, text(status)),
            set(EntityId::kOrder, id, f::kOrderCurrency, text("EUR"))};
  }

  std::vector<Change> line(RecordId id, RecordId order_id, RecordId product) {
    return {create(EntityId::kOrderLine, id),
            set(EntityId::kOrderLine, id, f::kOrderLineOrder, ref(order_id)),
            set(EntityId::kOrderLine, id, f::kOrderLineProduct, ref(product)),
            set(EntityId::kOrderLine, id, f::kOrderLineQuantity, Value::integer(3)),
            set(EntityId::kOrderLine, id, f::kOrderLineUnitPrice, Value::integer(1250))};
  }

  std::vector<Change> event(RecordId id, const Principal& owner, int64_t start, int64_t end,
                            const std::string& status = "scheduled") {
    return {create(EntityId::kCalendarEvent, id),
            set(EntityId::kCalendarEvent, id, f::kEventOwner, text(owner.user)),
            set(EntityId::kCalendarEvent, id, kEventTitle, text("Visit")),
            set(EntityId::kCalendarEvent, id, f::kEventStart, Value::integer(start)),
            set(EntityId::kCalendarEvent, id, f::kEventEnd, Value::integer(end)),
            set(EntityId::kCalendarEvent, id, f::kEventStatus, text(status))};
  }

  // An order of ann's in the north, moved to `status` by the people allowed to.
  struct OrderSetup {
    RecordId account, order, line, product;
  };
  OrderSetup approved_order() {
    OrderSetup s{new_account("north"), new_id(), new_id(), new_product()};
    std::vector<Change> changes = order(s.order, s.account, kAnn, "submitted");
    for (Change& c : line(s.line, s.order, s.product)) changes.push_back(c);
    commit(txn(kAnn, changes), kAnn);
    commit(txn(kMia, {set(EntityId::kOrder, s.order, f::kOrderStatus, text("approved"))}), kMia);
    return s;
  }

  std::optional<RecordState> stored(EntityId e, RecordId id) { return store_.load(e, id).value(); }

  MemoryCentralStore store_;

 private:
  uint64_t ids_ = 0;
  Hlc hlc_ = 1'000'000;
  std::map<NodeId, uint64_t> seqs_;
};

// ---- Happy path
// --------------------------------------------------------------------------------------------------

TEST_F(RulesTest, OrderWithLinesInOneTransaction) {
  RecordId acct = new_account("north");
  RecordId product = new_product();
  RecordId ord = new_id(), l1 = new_id(), l2 = new_id();
  // Lines first: their scope resolves through an order that only exists later in the same transaction.
  std::vector<Change> changes = line(l1, ord, product);
  for (Change& c : line(l2, ord, product)) changes.push_back(c);
  for (Change& c : order(ord, acct, kAnn, "draft")) changes.push_back(c);
  ClientTxn t = txn(kAnn, changes);

  TxnApplication app = commit(t, kAnn);
  ASSERT_EQ(app.records.size(), 3u);
  EXPECT_EQ(app.records[0].id, l1);
  EXPECT_EQ(app.records[2].id, ord);
  EXPECT_EQ(app.effective, t.changes);
  EXPECT_TRUE(app.conflicts.empty());
  ASSERT_TRUE(stored(EntityId::kOrderLine, l2));
  EXPECT_EQ(stored(EntityId::kOrderLine, l2)->get(f::kOrderLineQuantity), Value::integer(3));
  EXPECT_EQ(stored(EntityId::kOrder, ord)->get(f::kOrderStatus), text("draft"));
  EXPECT_EQ(store_.log().back().server_seq, store_.head_seq().value());
}

TEST_F(RulesTest, CreateMayStartOneAllowedTransitionIn) {
  RecordId acct = new_account("north");
  commit(txn(kAnn, order(new_id(), acct, kAnn, "submitted")), kAnn);  // draft -> submitted is a rep's move
}

// ---- Rejections
// --------------------------------------------------------------------------------------------------

TEST_F(RulesTest, OutOfScopeCreate) {
  expect_rejected(txn(kAnn, account(new_id(), "south", kAnn)), kAnn, ErrorCode::kOutOfScope);
}

TEST_F(RulesTest, OutOfScopeChildOfAnotherTerritory) {
  RecordId south = new_account("south");
  RecordId contact = new_id();
  expect_rejected(txn(kAnn, {create(EntityId::kContact, contact),
                             set(EntityId::kContact, contact, f::kContactAccount, ref(south)),
                             set(EntityId::kContact, contact, f::kContactName, text("Jo"))}),
                  kAnn, ErrorCode::kOutOfScope);
  // The same contact is fine for the rep of that territory.
  ClientTxn ok = txn(kBob, {create(EntityId::kContact, contact),
                            set(EntityId::kContact, contact, f::kContactAccount, ref(south)),
                            set(EntityId::kContact, contact, f::kContactName, text("Jo"))});
  EXPECT_TRUE(apply(ok, kBob).is_ok());
}

TEST_F(RulesTest, OutOfScopeUpdate) {
  RecordId south = new_account("south");
  expect_rejected(txn(kAnn, {set(EntityId::kAccount, south, f::kAccountName, text("Mine now"))}), kAnn,
                  ErrorCode::kOutOfScope);
}

TEST_F(RulesTest, HeadOfficeOnlyEntity) {
  RecordId p = new_id();
  expect_rejected(
      txn(kAnn, {create(EntityId::kProduct, p), set(EntityId::kProduct, p, f::kProductSku, text("X")),
                 set(EntityId::kProduct, p, f::kProductName, text("X")),
                 set(EntityId::kProduct, p, f::kProductActive, Value::boolean(true))}),
      kAnn, ErrorCode::kPermissionDenied);
}

TEST_F(RulesTest, ImmutableFieldAfterCreation) {
  RecordId acct = new_account("north");
  expect_rejected(txn(kAnn, {set(EntityId::kAccount, acct, f::kAccountCreatedBy, text("ann"))}), kAnn,
                  ErrorCode::kImmutableField);
  expect_rejected(txn(kHq, {set(EntityId::kAccount, acct, f::kAccountCreatedBy, text("hq2"))}), kHq,
                  ErrorCode::kImmutableField);
}

TEST_F(RulesTest, ServerOwnedField) {
  RecordId acct = new_account("north");
  expect_rejected(txn(kAnn, {set(EntityId::kAccount, acct, f::kAccountCreditLimit, Value::integer(100))}),
                  kAnn, ErrorCode::kServerOwnedField);
  expect_rejected(txn(kMia, {set(EntityId::kAccount, acct, f::kAccountCreditLimit, Value::integer(100))}),
                  kMia, ErrorCode::kServerOwnedField);
  commit(txn(kHq, {set(EntityId::kAccount, acct, f::kAccountCreditLimit, Value::integer(100))}), kHq);
}

TEST_F(RulesTest, UpdateRoleRepMovingAnAccount) {
  RecordId acct = new_account("north");
  expect_rejected(txn(kAnn, {set(EntityId::kAccount, acct, f::kAccountTerritory, text("north-2"))}), kAnn,
                  ErrorCode::kPermissionDenied);
  commit(txn(kHq, {set(EntityId::kAccount, acct, f::kAccountTerritory, text("south"))}), kHq);
  EXPECT_EQ(stored(EntityId::kAccount, acct)->get(f::kAccountTerritory), text("south"));
}

TEST_F(RulesTest, InvalidTransition) {
  RecordId acct = new_account("north");
  RecordId ord = new_id();
  commit(txn(kAnn, order(ord, acct, kAnn, "draft")), kAnn);
  expect_rejected(txn(kAnn, {set(EntityId::kOrder, ord, f::kOrderStatus, text("fulfilled"))}), kAnn,
                  ErrorCode::kInvalidTransition);
  // Creating straight into a later status is no transition from the first one either.
  expect_rejected(txn(kHq, order(new_id(), acct, kAnn, "approved")), kHq, ErrorCode::kInvalidTransition);
}

TEST_F(RulesTest, TransitionNeedsTheRole) {
  RecordId acct = new_account("north");
  RecordId ord = new_id();
  commit(txn(kAnn, order(ord, acct, kAnn, "submitted")), kAnn);
  expect_rejected(txn(kAnn, {set(EntityId::kOrder, ord, f::kOrderStatus, text("approved"))}), kAnn,
                  ErrorCode::kPermissionDenied);
  commit(txn(kMia, {set(EntityId::kOrder, ord, f::kOrderStatus, text("approved"))}), kMia);
}

TEST_F(RulesTest, LosingStatusWriteIsOnlyAConflict) {
  RecordId ev = new_id();
  commit(txn(kAnn, event(ev, kAnn, 1000, 2000)), kAnn);
  // Ann marks the event done offline; meanwhile her manager cancels it, and that reaches the server first.
  ClientTxn stale = txn(kAnn, {set(EntityId::kCalendarEvent, ev, f::kEventStatus, text("done"))});
  ClientTxn late = txn(kMia, {set(EntityId::kCalendarEvent, ev, f::kEventStatus, text("cancelled"))});
  commit(late, kMia);
  // cancelled -> done is no transition, but the stale write never takes effect: it is logged, not rejected.
  TxnApplication app = commit(stale, kAnn);
  EXPECT_TRUE(app.effective.empty());
  ASSERT_EQ(app.conflicts.size(), 1u);
  EXPECT_EQ(app.conflicts[0].loser.value, text("done"));
}

TEST_F(RulesTest, LockedOrder) {
  OrderSetup s = approved_order();
  expect_rejected(txn(kAnn, {set(EntityId::kOrder, s.order, kOrderDelivery, Value::integer(1))}), kAnn,
                  ErrorCode::kOrderLocked);
  expect_rejected(txn(kAnn, {set(EntityId::kOrder, s.order, f::kOrderStatus, text("cancelled"))}), kAnn,
                  ErrorCode::kOrderLocked);
  expect_rejected(txn(kHq, {set(EntityId::kOrder, s.order, kOrderDelivery, Value::integer(1))}), kHq,
                  ErrorCode::kOrderLocked);
  commit(txn(kHq, {set(EntityId::kOrder, s.order, f::kOrderStatus, text("fulfilled"))}), kHq);
}

TEST_F(RulesTest, LineOfLockedOrder) {
  OrderSetup s = approved_order();
  expect_rejected(txn(kAnn, {set(EntityId::kOrderLine, s.line, f::kOrderLineQuantity, Value::integer(9))}),
                  kAnn, ErrorCode::kOrderLocked);
  expect_rejected(txn(kAnn, {del(EntityId::kOrderLine, s.line)}), kAnn, ErrorCode::kOrderLocked);
  expect_rejected(txn(kAnn, line(new_id(), s.order, s.product)), kAnn, ErrorCode::kOrderLocked);
  expect_rejected(txn(kHq, line(new_id(), s.order, s.product)), kHq, ErrorCode::kOrderLocked);
}

TEST_F(RulesTest, DuplicateId) {
  RecordId acct = new_account("north");
  expect_rejected(txn(kAnn, account(acct, "north", kAnn)), kAnn, ErrorCode::kDuplicateId);
}

TEST_F(RulesTest, RecordNotFound) {
  expect_rejected(txn(kAnn, {set(EntityId::kAccount, new_id(), f::kAccountName, text("Ghost"))}), kAnn,
                  ErrorCode::kRecordNotFound);
}

TEST_F(RulesTest, MissingRequiredField) {
  RecordId acct = new_id();
  expect_rejected(txn(kAnn, {create(EntityId::kAccount, acct),
                             set(EntityId::kAccount, acct, f::kAccountTerritory, text("north")),
                             set(EntityId::kAccount, acct, f::kAccountCreatedBy, text("ann"))}),
                  kAnn, ErrorCode::kMissingField);
}

TEST_F(RulesTest, EventEndBeforeStart) {
  expect_rejected(txn(kAnn, event(new_id(), kAnn, 2000, 1000)), kAnn, ErrorCode::kValueInvalid);
  expect_rejected(txn(kAnn, event(new_id(), kAnn, 2000, 2000)), kAnn, ErrorCode::kValueInvalid);
  RecordId ev = new_id();
  commit(txn(kAnn, event(ev, kAnn, 1000, 2000)), kAnn);
  expect_rejected(txn(kAnn, {set(EntityId::kCalendarEvent, ev, f::kEventEnd, Value::integer(500))}), kAnn,
                  ErrorCode::kValueInvalid);
}

TEST_F(RulesTest, NotDeletable) {
  RecordId acct = new_account("north");
  expect_rejected(txn(kAnn, {del(EntityId::kAccount, acct)}), kAnn, ErrorCode::kNotDeletable);
}

TEST_F(RulesTest, RepCannotFillAColleaguesCalendar) {
  expect_rejected(txn(kAnn, event(new_id(), kBob, 1000, 2000)), kAnn, ErrorCode::kOutOfScope);
  commit(txn(kMia, event(new_id(), kBob, 1000, 2000)), kMia);  // bob is on mia's team
}

// ---- The model's value rules (schema::ValueRule), on a transaction built by hand
// ----------------------------------------------------------------

// One bad value in an otherwise valid create: the whole transaction is rejected with invalid_value naming the
// field, and nothing is applied (no record, no log entry).
TEST_F(RulesTest, EachBadValueIsRejectedNamingTheFieldAndNothingIsApplied) {
  RecordId acct = new_account("north");
  RecordId product = new_product();
  struct Case {
    std::string what;
    const Principal* who;
    EntityId entity;
    uint16_t field;
    Value bad;
  };
  const std::vector<Case> cases = {
      {"order currency lower case", &kAnn, EntityId::kOrder, f::kOrderCurrency, text("eur")},
      {"order currency digits", &kAnn, EntityId::kOrder, f::kOrderCurrency, text("E1R")},
      {"order currency short", &kAnn, EntityId::kOrder, f::kOrderCurrency, text("EU")},
      {"account email without @", &kAnn, EntityId::kAccount, f::kAccountEmail, text("nope")},
      {"account email without domain", &kAnn, EntityId::kAccount, f::kAccountEmail, text("jo@")},
      {"account email without local part", &kAnn, EntityId::kAccount, f::kAccountEmail, text("@x.de")},
      {"account email with a space", &kAnn, EntityId::kAccount, f::kAccountEmail, text("jo @x.de")},
      {"account email with two @", &kAnn, EntityId::kAccount, f::kAccountEmail, text("jo@x@y.de")},
      {"account email empty", &kAnn, EntityId::kAccount, f::kAccountEmail, text("")},
      {"contact email", &kAnn, EntityId::kContact, f::kContactEmail, text("zoe at x.de")},
      {"credit limit negative", &kHq, EntityId::kAccount, f::kAccountCreditLimit, Value::integer(-1)},
      {"quantity 0", &kAnn, EntityId::kOrderLine, f::kOrderLineQuantity, Value::integer(0)},
      {"quantity negative", &kAnn, EntityId::kOrderLine, f::kOrderLineQuantity, Value::integer(-3)},
      {"quantity too big", &kAnn, EntityId::kOrderLine, f::kOrderLineQuantity,
       Value::integer(schema::kMaxQuantity + 1)},
      {"unit price negative", &kAnn, EntityId::kOrderLine, f::kOrderLineUnitPrice, Value::integer(-1)},
      {"unit price too big", &kAnn, EntityId::kOrderLine, f::kOrderLineUnitPrice,
       Value::integer(schema::kMaxMoneyCents + 1)},
      {"discount negative", &kAnn, EntityId::kOrderLine, f::kOrderLineDiscount, Value::integer(-1)},
      {"discount over 100 %", &kAnn, EntityId::kOrderLine, f::kOrderLineDiscount, Value::integer(10'001)},
      {"opportunity amount negative", &kAnn, EntityId::kOpportunity, f::kOpportunityAmount,
       Value::integer(-100)},
      {"opportunity currency", &kAnn, EntityId::kOpportunity, f::kOpportunityCurrency, text("usd")},
      {"list price negative", &kHq, EntityId::kPriceListEntry, f::kPriceUnitPrice, Value::integer(-5)},
      {"list price currency", &kHq, EntityId::kPriceListEntry, f::kPriceCurrency, text("€")},
      {"latitude", &kAnn, EntityId::kVisit, f::kVisitLatitude, Value::real(90.5)},
      {"longitude", &kAnn, EntityId::kVisit, f::kVisitLongitude, Value::real(-180.5)},
  };
  // A valid create of each entity, to spoil one field of.
  auto valid_create = [&](EntityId e, RecordId id, const Principal& who) -> std::vector<Change> {
    switch (e) {
      case EntityId::kAccount:
        return account(id, "north", who);
      case EntityId::kContact:
        return {create(e, id), set(e, id, f::kContactAccount, ref(acct)),
                set(e, id, f::kContactName, text("Jo"))};
      case EntityId::kOrder:
        return order(id, acct, who, "draft");
      case EntityId::kOrderLine: {
        RecordId ord = new_id();
        std::vector<Change> changes = order(ord, acct, who, "draft");
        for (Change& c : line(id, ord, product)) changes.push_back(c);
        return changes;
      }
      case EntityId::kOpportunity:
        return {create(e, id),
                set(e, id, 1, ref(acct)),
                set(e, id, f::kOpportunityOwner, text(who.user)),
                set(e, id, kOpportunityName, text("Deal")),
                set(e, id, f::kOpportunityStage, text("prospect")),
                set(e, id, f::kOpportunityAmount, Value::integer(10'000)),
                set(e, id, f::kOpportunityCurrency, text("EUR"))};
      case EntityId::kPriceListEntry:
        return {create(e, id), set(e, id, f::kPriceProduct, ref(product)),
                set(e, id, f::kPriceList, text("retail")),
                set(e, id, f::kPriceUnitPrice, Value::integer(199)),
                set(e, id, f::kPriceCurrency, text("EUR"))};
      case EntityId::kVisit:
        return {create(e, id), set(e, id, f::kVisitAccount, ref(acct)),
                set(e, id, f::kVisitRep, text(who.user)), set(e, id, kVisitCheckIn, Value::integer(1'000))};
      default:
        ADD_FAILURE() << "no valid create for entity " << static_cast<int>(e);
        return {};
    }
  };
  for (const Case& bad : cases) {
    SCOPED_TRACE(bad.what);
    RecordId id = new_id();
    std::vector<Change> changes = valid_create(bad.entity, id, *bad.who);
    // The create is valid as it stands: the bad value alone is what the server refuses.
    EXPECT_TRUE(apply(txn(*bad.who, changes), *bad.who).is_ok());
    std::erase_if(changes, [&](const Change& c) { return c.record == id && c.field == bad.field; });
    changes.push_back(set(bad.entity, id, bad.field, bad.bad));
    const size_t log_before = store_.log().size();
    Result<TxnApplication> r = apply(txn(*bad.who, changes), *bad.who);
    ASSERT_FALSE(r.is_ok());
    EXPECT_EQ(r.status().code(), ErrorCode::kValueInvalid) << r.status().to_string();
    const std::string field_name(schema::entity_ref(bad.entity).field(bad.field)->name);
    EXPECT_NE(r.status().message().find("field " + field_name), std::string::npos) << r.status().to_string();
    EXPECT_EQ(store_.log().size(), log_before);
    EXPECT_FALSE(stored(bad.entity, id));
  }
  // And on an update of a record that exists: the stored value stays.
  RecordId ord = new_id(), ln = new_id();
  std::vector<Change> changes = order(ord, acct, kAnn, "draft");
  for (Change& c : line(ln, ord, product)) changes.push_back(c);
  commit(txn(kAnn, changes), kAnn);
  expect_rejected(txn(kAnn, {set(EntityId::kOrderLine, ln, f::kOrderLineQuantity, Value::integer(0))}), kAnn,
                  ErrorCode::kValueInvalid);
  expect_rejected(txn(kAnn, {set(EntityId::kOrder, ord, f::kOrderCurrency, text("XX"))}), kAnn,
                  ErrorCode::kValueInvalid);
  EXPECT_EQ(stored(EntityId::kOrderLine, ln)->get(f::kOrderLineQuantity), Value::integer(3));
  EXPECT_EQ(stored(EntityId::kOrder, ord)->get(f::kOrderCurrency), text("EUR"));
}

TEST(RulesValidation, ValueRulesAcceptTheirBounds) {
  RecordId id{0x0190'0000'0000'7000, 1};
  auto check = [&](EntityId e, uint16_t field, Value v) {
    Change c = set(e, id, field, std::move(v));
    c.version = Version{1, 1};
    return validate_change(c).code();
  };
  for (int64_t q : {int64_t{1}, schema::kMaxQuantity})
    EXPECT_EQ(check(EntityId::kOrderLine, f::kOrderLineQuantity, Value::integer(q)), ErrorCode::kOk) << q;
  for (int64_t p : {int64_t{0}, schema::kMaxMoneyCents})
    EXPECT_EQ(check(EntityId::kOrderLine, f::kOrderLineUnitPrice, Value::integer(p)), ErrorCode::kOk) << p;
  for (int64_t d : {int64_t{0}, int64_t{10'000}})
    EXPECT_EQ(check(EntityId::kOrderLine, f::kOrderLineDiscount, Value::integer(d)), ErrorCode::kOk) << d;
  EXPECT_EQ(check(EntityId::kOrderLine, f::kOrderLineDiscount, Value()), ErrorCode::kOk);  // nullable
  for (const char* cur : {"EUR", "CHF", "XAU"})
    EXPECT_EQ(check(EntityId::kOrder, f::kOrderCurrency, text(cur)), ErrorCode::kOk) << cur;
  for (const char* mail : {"a@b", "zoe.m+crm@x.example.de"})
    EXPECT_EQ(check(EntityId::kContact, f::kContactEmail, text(mail)), ErrorCode::kOk) << mail;
  EXPECT_EQ(check(EntityId::kContact, f::kContactEmail, Value()), ErrorCode::kOk);
  EXPECT_EQ(check(EntityId::kVisit, f::kVisitLatitude, Value::real(-90)), ErrorCode::kOk);
  EXPECT_EQ(check(EntityId::kVisit, f::kVisitLongitude, Value::real(180)), ErrorCode::kOk);
}

// What the device API used to check alone: a blank required text or note, a time before 1970.
TEST(RulesValidation, BlankRequiredTextAndTimesBeforeTheEpoch) {
  RecordId id{0x0190'0000'0000'7000, 1};
  auto check = [&](ChangeOp op, EntityId e, uint16_t field, Value v) {
    Change c = make(op, e, id, field, std::move(v));
    c.version = Version{1, 1};
    return validate_change(c).code();
  };
  EXPECT_EQ(check(ChangeOp::kSet, EntityId::kAccount, f::kAccountName, text(" \t")),
            ErrorCode::kNullViolation);
  EXPECT_EQ(check(ChangeOp::kSet, EntityId::kAccount, f::kAccountTerritory, text("")),
            ErrorCode::kNullViolation);
  EXPECT_EQ(check(ChangeOp::kAppend, EntityId::kAccount, kAccountNotes, text("\n")),
            ErrorCode::kNullViolation);
  EXPECT_EQ(check(ChangeOp::kSet, EntityId::kAccount, 3, text(" ")), ErrorCode::kOk);  // address is optional
  EXPECT_EQ(check(ChangeOp::kSet, EntityId::kCalendarEvent, f::kEventStart, Value::integer(0)),
            ErrorCode::kValueInvalid);
  EXPECT_EQ(check(ChangeOp::kSet, EntityId::kVisit, kVisitCheckIn, Value::integer(-1)),
            ErrorCode::kValueInvalid);
  EXPECT_EQ(check(ChangeOp::kSet, EntityId::kVisit, kVisitCheckIn, Value::integer(1)), ErrorCode::kOk);
}

// ---- Whom a user-id field may name (schema::UserRef)
// ------------------------------------------------------------------------------

class UserRefTest : public RulesTest {
 protected:
  void SetUp() override {
    north_ = new_account("north");
    // A deal of ann's, to hand over later.
    deal_ = new_id();
    commit(txn(kAnn, opportunity(deal_, kAnn.user)), kAnn);
  }

  std::vector<Change> visit(RecordId id, const std::string& rep) {
    const EntityId e = EntityId::kVisit;
    return {create(e, id), set(e, id, f::kVisitAccount, ref(north_)), set(e, id, f::kVisitRep, text(rep)),
            set(e, id, kVisitCheckIn, Value::integer(1'000))};
  }
  std::vector<Change> opportunity(RecordId id, const std::string& owner) {
    const EntityId e = EntityId::kOpportunity;
    return {create(e, id),
            set(e, id, 1, ref(north_)),
            set(e, id, f::kOpportunityOwner, text(owner)),
            set(e, id, kOpportunityName, text("Deal")),
            set(e, id, f::kOpportunityStage, text("prospect")),
            set(e, id, f::kOpportunityAmount, Value::integer(10'000)),
            set(e, id, f::kOpportunityCurrency, text("EUR"))};
  }
  std::vector<Change> order_for(RecordId id, const std::string& rep) {
    std::vector<Change> changes = order(id, north_, kAnn, "draft");
    for (Change& c : changes)
      if (c.field == f::kOrderRep) c.value = text(rep);
    return changes;
  }
  std::vector<Change> account_by(RecordId id, const std::string& creator) {
    std::vector<Change> changes = account(id, "north", kAnn);
    changes.back() = set(EntityId::kAccount, id, f::kAccountCreatedBy, text(creator));
    return changes;
  }
  Change hand_deal_to(const std::string& owner) {
    return set(EntityId::kOpportunity, deal_, f::kOpportunityOwner, text(owner));
  }

  void expect_denied(const std::vector<Change>& changes, const Principal& who, std::string_view field) {
    const size_t log_before = store_.log().size();
    Result<TxnApplication> r = apply(txn(who, changes), who);
    ASSERT_FALSE(r.is_ok()) << "accepted";
    EXPECT_EQ(r.status().code(), ErrorCode::kPermissionDenied) << r.status().to_string();
    EXPECT_NE(r.status().message().find("field " + std::string(field)), std::string::npos)
        << r.status().to_string();
    EXPECT_EQ(store_.log().size(), log_before);
  }

  RecordId north_, deal_;
};

TEST_F(UserRefTest, ARepWritesOnlyInHerOwnName) {
  expect_denied(account_by(new_id(), kHq.user), kAnn, "created_by");
  expect_denied(visit(new_id(), kBob.user), kAnn, "rep_id");
  expect_denied(order_for(new_id(), kBob.user), kAnn, "rep_id");
  expect_denied(opportunity(new_id(), kBob.user), kAnn, "owner_id");
  expect_denied({hand_deal_to(kBob.user)}, kAnn, "owner_id");
  EXPECT_EQ(stored(EntityId::kOpportunity, deal_)->get(f::kOpportunityOwner), text(kAnn.user));

  commit(txn(kAnn, account_by(new_id(), kAnn.user)), kAnn);
  commit(txn(kAnn, visit(new_id(), kAnn.user)), kAnn);
  commit(txn(kAnn, order_for(new_id(), kAnn.user)), kAnn);
  commit(txn(kAnn, opportunity(new_id(), kAnn.user)), kAnn);
  commit(txn(kAnn, {hand_deal_to(kAnn.user)}), kAnn);  // naming herself again is no change of name
}

TEST_F(UserRefTest, AManagerNamesHerselfOrARepOfHerTeam) {
  // "cy" works in the north but is not on mia's team.
  commit(txn(kMia, order_for(new_id(), kAnn.user)), kMia);
  commit(txn(kMia, opportunity(new_id(), kBob.user)), kMia);
  commit(txn(kMia, {hand_deal_to(kBob.user)}), kMia);
  commit(txn(kMia, event(new_id(), kAnn, 1'000, 2'000)), kMia);  // books her rep's appointment
  commit(txn(kMia, visit(new_id(), kMia.user)), kMia);
  commit(txn(kMia, account_by(new_id(), kMia.user)), kMia);

  expect_denied(order_for(new_id(), "cy"), kMia, "rep_id");
  expect_denied(opportunity(new_id(), "cy"), kMia, "owner_id");
  expect_denied({hand_deal_to("cy")}, kMia, "owner_id");
  expect_denied(order_for(new_id(), kHq.user), kMia, "rep_id");
  // Who filed an account or checked in is a fact about the writer, not an assignment: not even for her team.
  expect_denied(account_by(new_id(), kAnn.user), kMia, "created_by");
  expect_denied(visit(new_id(), kAnn.user), kMia, "rep_id");
  // Another rep's calendar stays what it was: out of her scope.
  expect_rejected(txn(kMia, event(new_id(), Principal{"cy", Role::kRep, {"north"}, {}}, 1'000, 2'000)), kMia,
                  ErrorCode::kOutOfScope);
}

TEST_F(UserRefTest, HeadOfficeNamesAnyone) {
  commit(txn(kHq, account_by(new_id(), kAnn.user)), kHq);
  commit(txn(kHq, visit(new_id(), kAnn.user)), kHq);
  commit(txn(kHq, order_for(new_id(), "cy")), kHq);
  commit(txn(kHq, opportunity(new_id(), kBob.user)), kHq);
  commit(txn(kHq, {hand_deal_to("cy")}), kHq);
  commit(txn(kHq, event(new_id(), kBob, 1'000, 2'000)), kHq);
  EXPECT_EQ(stored(EntityId::kOpportunity, deal_)->get(f::kOpportunityOwner), text("cy"));
}

// Schema 2: an open order and an appointment change hands (a departing rep's work goes to a colleague): a
// manager within her team, head office to anyone, never a rep -- not even her own; a locked order keeps its
// rep.
TEST_F(UserRefTest, OpenOrdersAndAppointmentsChangeHandsButNotByARep) {
  RecordId o = new_id();
  commit(txn(kAnn, order_for(o, kAnn.user)), kAnn);
  const Change to_bob = set(EntityId::kOrder, o, f::kOrderRep, text(kBob.user));
  expect_rejected(txn(kAnn, {to_bob}), kAnn, ErrorCode::kPermissionDenied);
  expect_denied({set(EntityId::kOrder, o, f::kOrderRep, text("cy"))}, kMia, "rep_id");
  commit(txn(kMia, {to_bob}), kMia);
  EXPECT_EQ(stored(EntityId::kOrder, o)->get(f::kOrderRep), text(kBob.user));
  commit(txn(kHq, {set(EntityId::kOrder, o, f::kOrderRep, text("cy"))}), kHq);
  EXPECT_EQ(stored(EntityId::kOrder, o)->get(f::kOrderRep), text("cy"));
  commit(txn(kHq, {set(EntityId::kOrder, o, f::kOrderStatus, text("cancelled"))}), kHq);
  expect_rejected(txn(kHq, {set(EntityId::kOrder, o, f::kOrderRep, text(kAnn.user))}), kHq,
                  ErrorCode::kOrderLocked);

  RecordId e = new_id();
  commit(txn(kMia, event(e, kAnn, 1'000, 2'000)), kMia);
  const Change event_to_bob = set(EntityId::kCalendarEvent, e, f::kEventOwner, text(kBob.user));
  expect_rejected(txn(kAnn, {event_to_bob}), kAnn, ErrorCode::kPermissionDenied);
  commit(txn(kMia, {event_to_bob}), kMia);
  EXPECT_EQ(stored(EntityId::kCalendarEvent, e)->get(f::kEventOwner), text(kBob.user));
}

TEST_F(UserRefTest, TerritoriesAreTheScopesToDecide) {
  // A territory field names no user: whether the writer may put a record there is the scope's call.
  expect_rejected(txn(kAnn, account(new_id(), "south", kAnn)), kAnn, ErrorCode::kOutOfScope);
  expect_rejected(txn(kMia, account(new_id(), "west", kMia)), kMia, ErrorCode::kOutOfScope);
  commit(txn(kMia, account(new_id(), "south", kMia)), kMia);  // her team's territory
  commit(txn(kHq, account(new_id(), "west", kHq)), kHq);
}

TEST_F(UserRefTest, ApprovedByIsHeadOfficesAlone) {
  RecordId ord = new_id();
  commit(txn(kAnn, order_for(ord, kAnn.user)), kAnn);
  expect_rejected(txn(kMia, {set(EntityId::kOrder, ord, f::kOrderApprovedBy, text(kMia.user))}), kMia,
                  ErrorCode::kServerOwnedField);
  commit(txn(kHq, {set(EntityId::kOrder, ord, f::kOrderApprovedBy, text(kMia.user))}), kHq);
}

// Record references other than a record's own scope parent (schema::FieldDef::ref): the record named must
// exist and be visible to the writer, or a rep links her record to another territory's account or a
// colleague's event.
class RecordRefTest : public RulesTest {
 protected:
  static constexpr uint16_t kEventAccount = 2;
  static constexpr uint16_t kVisitEvent = 3;

  void SetUp() override {
    north_ = new_account("north");
    south_ = new_account("south");
    anns_event_ = new_id();
    commit(txn(kAnn, event(anns_event_, kAnn, 1'000, 2'000)), kAnn);
    bobs_event_ = new_id();
    commit(txn(kBob, event(bobs_event_, kBob, 1'000, 2'000)), kBob);
    anns_visit_ = new_id();
    commit(txn(kAnn, visit(anns_visit_, kAnn)), kAnn);
  }

  std::vector<Change> visit(RecordId id, const Principal& rep) {
    const EntityId e = EntityId::kVisit;
    return {create(e, id), set(e, id, f::kVisitAccount, ref(north_)),
            set(e, id, f::kVisitRep, text(rep.user)), set(e, id, kVisitCheckIn, Value::integer(1'000))};
  }
  std::vector<Change> event_at(RecordId id, const Principal& owner, RecordId account_id) {
    std::vector<Change> changes = event(id, owner, 5'000, 6'000);
    changes.push_back(set(EntityId::kCalendarEvent, id, kEventAccount, ref(account_id)));
    return changes;
  }
  std::vector<Change> visit_for(RecordId id, const Principal& rep, RecordId event_id) {
    std::vector<Change> changes = visit(id, rep);
    changes.push_back(set(EntityId::kVisit, id, kVisitEvent, ref(event_id)));
    return changes;
  }
  std::vector<Change> price_entry(RecordId id, RecordId product) {
    const EntityId e = EntityId::kPriceListEntry;
    return {create(e, id), set(e, id, f::kPriceProduct, ref(product)),
            set(e, id, f::kPriceList, text("default")), set(e, id, f::kPriceUnitPrice, Value::integer(1'000)),
            set(e, id, f::kPriceCurrency, text("EUR"))};
  }

  // Rejected with `code`, naming `field` and nothing applied; returns the message.
  std::string expect_ref_rejected(const std::vector<Change>& changes, const Principal& who, ErrorCode code,
                                  std::string_view field) {
    const size_t log_before = store_.log().size();
    Result<TxnApplication> r = apply(txn(who, changes), who);
    EXPECT_FALSE(r.is_ok()) << "accepted";
    if (r.is_ok()) return {};
    EXPECT_EQ(r.status().code(), code) << r.status().to_string();
    EXPECT_NE(r.status().message().find("field " + std::string(field)), std::string::npos)
        << r.status().to_string();
    EXPECT_EQ(store_.log().size(), log_before);
    return r.status().message();
  }

  // A message with every record id in it blanked, to compare two answers about different records.
  static std::string without_ids(std::string message, std::initializer_list<RecordId> ids) {
    for (const RecordId& id : ids) {
      const std::string text = id.to_string();
      for (size_t at = message.find(text); at != std::string::npos; at = message.find(text))
        message.replace(at, text.size(), "<id>");
    }
    return message;
  }

  RecordId north_, south_, anns_event_, bobs_event_, anns_visit_;
};

TEST_F(RecordRefTest, EveryReferenceBeyondTheScopeParentIsCheckedHere) {
  // The model's record references that are not their entity's scope parent: each is covered below. A new one
  // must be added here, with a decision on what it may point at.
  std::set<std::string> refs;
  for (const schema::EntityDef& e : schema::entities()) {
    for (const schema::FieldDef& fd : e.fields) {
      if (fd.type != schema::FieldType::kId) continue;
      ASSERT_NE(fd.ref, EntityId::kNone) << e.name << "." << fd.name;
      if (e.scope.kind == schema::ScopeKind::kParent && e.scope.field == fd.id) continue;
      refs.insert(std::string(e.name) + "." + std::string(fd.name));
      // No reference of schema 1-2 points at a deletable entity; a tombstone would count as existing
      // (rules.cc). Schema 3's links to a contact (lead.converted_contact_id, service_case.contact_id) do:
      // what a deleted contact means there is the rules' decision (issue 21, h21-rules).
      if (e.since < 3) {
        EXPECT_FALSE(schema::entity_ref(fd.ref).deletable) << e.name << "." << fd.name;
      }
    }
  }
  // Schema 3's references (issue 21): their scope checks are the rules' (h21-rules), to be covered below.
  EXPECT_EQ(refs, (std::set<std::string>{
                      "calendar_event.account_id", "order_line.product_id", "price_list_entry.product_id",
                      "visit.calendar_event_id", "asset.product_id", "calendar_event.opportunity_id",
                      "lead.converted_account_id", "lead.converted_contact_id",
                      "lead.converted_opportunity_id", "service_case.asset_id", "service_case.contact_id",
                      "task.account_id", "task.lead_id", "task.opportunity_id", "task.service_case_id"}));
}

TEST_F(RecordRefTest, ARepLinksOnlyToRecordsInHerScope) {
  // Another territory's account on a new event, or on her existing one.
  expect_ref_rejected(event_at(new_id(), kAnn, south_), kAnn, ErrorCode::kOutOfScope, "account_id");
  expect_ref_rejected({set(EntityId::kCalendarEvent, anns_event_, kEventAccount, ref(south_))}, kAnn,
                      ErrorCode::kOutOfScope, "account_id");
  // A colleague's event on a new visit, or on her existing one.
  expect_ref_rejected(visit_for(new_id(), kAnn, bobs_event_), kAnn, ErrorCode::kOutOfScope,
                      "calendar_event_id");
  expect_ref_rejected({set(EntityId::kVisit, anns_visit_, kVisitEvent, ref(bobs_event_))}, kAnn,
                      ErrorCode::kOutOfScope, "calendar_event_id");
  EXPECT_TRUE(stored(EntityId::kCalendarEvent, anns_event_)->get(kEventAccount).is_null());
  EXPECT_TRUE(stored(EntityId::kVisit, anns_visit_)->get(kVisitEvent).is_null());

  // Her own territory's account and her own event are hers to link, and unlinking needs no target.
  commit(txn(kAnn, event_at(new_id(), kAnn, north_)), kAnn);
  commit(txn(kAnn, {set(EntityId::kCalendarEvent, anns_event_, kEventAccount, ref(north_))}), kAnn);
  commit(txn(kAnn, {set(EntityId::kVisit, anns_visit_, kVisitEvent, ref(anns_event_))}), kAnn);
  commit(txn(kAnn, {set(EntityId::kCalendarEvent, anns_event_, kEventAccount, Value())}), kAnn);
  commit(txn(kBob, event_at(new_id(), kBob, south_)), kBob);
  commit(txn(kBob, {set(EntityId::kCalendarEvent, bobs_event_, kEventAccount, ref(south_))}), kBob);
}

TEST_F(RecordRefTest, AMissingRecordAndAnInvisibleOneGetTheSameAnswer) {
  const RecordId nowhere = new_id();
  const RecordId e1 = new_id(), e2 = new_id();
  std::string invisible =
      expect_ref_rejected(event_at(e1, kAnn, south_), kAnn, ErrorCode::kOutOfScope, "account_id");
  std::string missing =
      expect_ref_rejected(event_at(e2, kAnn, nowhere), kAnn, ErrorCode::kOutOfScope, "account_id");
  EXPECT_EQ(without_ids(invisible, {e1, south_}), without_ids(missing, {e2, nowhere}));

  const RecordId v1 = new_id(), v2 = new_id();
  invisible = expect_ref_rejected(visit_for(v1, kAnn, bobs_event_), kAnn, ErrorCode::kOutOfScope,
                                  "calendar_event_id");
  missing =
      expect_ref_rejected(visit_for(v2, kAnn, nowhere), kAnn, ErrorCode::kOutOfScope, "calendar_event_id");
  EXPECT_EQ(without_ids(invisible, {v1, bobs_event_}), without_ids(missing, {v2, nowhere}));
}

TEST_F(RecordRefTest, TargetsCreatedInTheSameTransactionCount) {
  // A new account with an event at it, and a visit of that event, in one go and in any order.
  const RecordId acct = new_id(), ev = new_id(), vis = new_id();
  std::vector<Change> changes = visit_for(vis, kAnn, ev);
  changes[1] = set(EntityId::kVisit, vis, f::kVisitAccount, ref(acct));
  for (Change& c : event_at(ev, kAnn, acct)) changes.push_back(c);
  for (Change& c : account(acct, "north", kAnn)) changes.push_back(c);
  commit(txn(kAnn, changes), kAnn);
  EXPECT_EQ(stored(EntityId::kVisit, vis)->get(kVisitEvent), ref(ev));
  // ...but not a record another territory's rep creates alongside (the scope rules refuse that one).
  const RecordId south_acct = new_id(), ev2 = new_id();
  changes = account(south_acct, "south", kAnn);
  for (Change& c : event_at(ev2, kAnn, south_acct)) changes.push_back(c);
  expect_rejected(txn(kAnn, changes), kAnn, ErrorCode::kOutOfScope);
}

TEST_F(RecordRefTest, AManagerLinksWithinHerTeamAndHeadOfficeAnywhere) {
  const Principal cy{"cy", Role::kRep, {"west"}, {}};
  const RecordId west = new_account("west");
  const RecordId cys_event = new_id();
  commit(txn(cy, event(cys_event, cy, 1'000, 2'000)), cy);

  // Mia books ann's appointment at a south account and checks in for ann's event: both in her team's reach.
  commit(txn(kMia, event_at(new_id(), kAnn, south_)), kMia);
  commit(txn(kMia, visit_for(new_id(), kMia, anns_event_)), kMia);
  expect_ref_rejected(event_at(new_id(), kAnn, west), kMia, ErrorCode::kOutOfScope, "account_id");
  expect_ref_rejected(visit_for(new_id(), kMia, cys_event), kMia, ErrorCode::kOutOfScope,
                      "calendar_event_id");

  // Head office sees everything; a record that does not exist is simply not found.
  commit(txn(kHq, event_at(new_id(), kBob, west)), kHq);
  commit(txn(kHq, visit_for(new_id(), kHq, cys_event)), kHq);
  expect_ref_rejected(event_at(new_id(), kBob, new_id()), kHq, ErrorCode::kRecordNotFound, "account_id");
  expect_ref_rejected(visit_for(new_id(), kHq, new_id()), kHq, ErrorCode::kRecordNotFound,
                      "calendar_event_id");
}

TEST_F(RecordRefTest, CatalogueReferencesNeedAnExistingProduct) {
  // Everyone sees the catalogue: a product that is not there is not found, for a rep as for head office.
  const RecordId product = new_product();
  const RecordId ord = new_id();
  commit(txn(kAnn, order(ord, north_, kAnn, "draft")), kAnn);
  commit(txn(kAnn, line(new_id(), ord, product)), kAnn);
  expect_ref_rejected(line(new_id(), ord, new_id()), kAnn, ErrorCode::kRecordNotFound, "product_id");
  const RecordId l = new_id();
  commit(txn(kAnn, line(l, ord, product)), kAnn);
  expect_ref_rejected({set(EntityId::kOrderLine, l, f::kOrderLineProduct, ref(new_id()))}, kAnn,
                      ErrorCode::kRecordNotFound, "product_id");
  // A product is not an account: an id of another entity does not pass for one.
  expect_ref_rejected({set(EntityId::kOrderLine, l, f::kOrderLineProduct, ref(north_))}, kAnn,
                      ErrorCode::kRecordNotFound, "product_id");

  commit(txn(kHq, price_entry(new_id(), product)), kHq);
  expect_ref_rejected(price_entry(new_id(), new_id()), kHq, ErrorCode::kRecordNotFound, "product_id");
  // A product with its price in one transaction, the price first.
  const RecordId p2 = new_id();
  std::vector<Change> changes = price_entry(new_id(), p2);
  changes.push_back(create(EntityId::kProduct, p2));
  changes.push_back(set(EntityId::kProduct, p2, f::kProductSku, text("SKU-2")));
  changes.push_back(set(EntityId::kProduct, p2, f::kProductName, text("Gadget")));
  changes.push_back(set(EntityId::kProduct, p2, f::kProductActive, Value::boolean(true)));
  commit(txn(kHq, changes), kHq);
}

TEST_F(RulesTest, WriteToATombstoneIsAConflictNotAnError) {
  RecordId acct = new_account("north");
  RecordId contact = new_id();
  commit(txn(kAnn, {create(EntityId::kContact, contact),
                    set(EntityId::kContact, contact, f::kContactAccount, ref(acct)),
                    set(EntityId::kContact, contact, f::kContactName, text("Jo"))}),
         kAnn);
  ClientTxn offline_edit = txn(kAnn, {set(EntityId::kContact, contact, f::kContactName, text("Joanna"))});
  commit(txn(kMia, {del(EntityId::kContact, contact)}), kMia);
  TxnApplication app = commit(offline_edit, kAnn);
  EXPECT_TRUE(app.effective.empty());
  ASSERT_EQ(app.conflicts.size(), 1u);
  EXPECT_EQ(app.conflicts[0].kind, ConflictKind::kDeleteWins);
  EXPECT_EQ(app.conflicts[0].loser.value, text("Joanna"));
  ASSERT_EQ(app.records.size(), 1u);
  EXPECT_TRUE(app.records[0].deleted);
  EXPECT_EQ(store_.conflicts().back().server_seq, store_.head_seq().value());
}

TEST(RulesValidation, ChangeShape) {
  RecordId id{0x0190'0000'0000'7000, 1};
  auto check = [&](Change c) {
    c.version = Version{1, 1};
    return validate_change(c).code();
  };
  EXPECT_EQ(check(set(EntityId::kAccount, id, f::kAccountName, text("ok"))), ErrorCode::kOk);
  EXPECT_EQ(check(set(static_cast<EntityId>(99), id, 1, text("x"))), ErrorCode::kUnknownEntity);
  EXPECT_EQ(check(set(EntityId::kAccount, id, 42, text("x"))), ErrorCode::kUnknownField);
  EXPECT_EQ(check(set(EntityId::kAccount, id, f::kAccountName, Value::integer(1))), ErrorCode::kTypeMismatch);
  EXPECT_EQ(check(set(EntityId::kAccount, id, f::kAccountName, Value())), ErrorCode::kNullViolation);
  EXPECT_EQ(check(set(EntityId::kAccount, id, 3, Value())), ErrorCode::kOk);  // address is nullable
  EXPECT_EQ(check(set(EntityId::kAccount, id, 7, text("z"))), ErrorCode::kValueInvalid);  // segment a/b/c
  EXPECT_EQ(check(set(EntityId::kAccount, id, 5, text(std::string(65, '1')))), ErrorCode::kValueInvalid);
  EXPECT_EQ(check(set(EntityId::kAccount, id, 3, text(std::string(64 * 1024 + 1, 'x')))),
            ErrorCode::kValueInvalid);
  EXPECT_EQ(check(set(EntityId::kContact, id, f::kContactAccount, text("nope"))), ErrorCode::kValueInvalid);
  EXPECT_EQ(check(set(EntityId::kAccount, id, f::kAccountCreatedBy, text(""))), ErrorCode::kValueInvalid);
  EXPECT_EQ(check(set(EntityId::kAccount, id, kAccountNotes, text("x"))), ErrorCode::kTypeMismatch);
  EXPECT_EQ(check(make(ChangeOp::kAppend, EntityId::kAccount, id, f::kAccountName, text("x"))),
            ErrorCode::kTypeMismatch);
  EXPECT_EQ(check(make(ChangeOp::kAppend, EntityId::kAccount, id, kAccountNotes, text("x"))), ErrorCode::kOk);
  EXPECT_EQ(check(make(ChangeOp::kCreate, EntityId::kAccount, id, 1)), ErrorCode::kInvalidArgument);
  EXPECT_EQ(check(del(EntityId::kAccount, id)), ErrorCode::kNotDeletable);
  EXPECT_EQ(check(del(EntityId::kContact, id)), ErrorCode::kOk);
  EXPECT_EQ(validate_change(set(EntityId::kAccount, id, f::kAccountName, text("ok"))).code(),
            ErrorCode::kInvalidArgument);  // no version
}

TEST(RulesValidation, TransactionShape) {
  ClientTxn t;
  t.node = 5;
  t.node_seq = 1;
  EXPECT_EQ(validate_txn(t).code(), ErrorCode::kInvalidArgument);  // empty
  Change c = set(EntityId::kAccount, RecordId{1, 1}, f::kAccountName, text("x"));
  c.version = Version{1, 5};
  t.changes = {c};
  EXPECT_EQ(validate_txn(t).code(), ErrorCode::kOk);
  t.changes[0].version.node = 6;
  EXPECT_EQ(validate_txn(t).code(), ErrorCode::kInvalidArgument);  // another node's version
  t.changes[0].version.node = 5;
  t.node_seq = 0;
  EXPECT_EQ(validate_txn(t).code(), ErrorCode::kInvalidArgument);
  t.node_seq = 1;
  t.changes.assign(tuning::kMaxChangesPerTxn + 1, c);
  EXPECT_EQ(validate_txn(t).code(), ErrorCode::kTooManyChanges);
}

// ---- Scheduling conflicts
// ----------------------------------------------------------------------------------------

TEST_F(RulesTest, OverlappingEventIsFlagged) {
  RecordId a = new_id();
  commit(txn(kAnn, event(a, kAnn, 1000, 2000)), kAnn);
  RecordId b = new_id();
  TxnApplication app = commit(txn(kAnn, event(b, kAnn, 1500, 2500)), kAnn);
  ASSERT_EQ(app.conflicts.size(), 1u);
  const ConflictRecord& c = app.conflicts[0];
  EXPECT_EQ(c.kind, ConflictKind::kScheduling);
  EXPECT_EQ(c.rule, "overlap_flagged");
  EXPECT_EQ(c.entity, EntityId::kCalendarEvent);
  EXPECT_EQ(c.record, b);
  EXPECT_EQ(c.other_record, a);
  EXPECT_EQ(c.winner.value, Value::integer(1500));
  EXPECT_EQ(c.loser.value, Value::integer(1000));
  EXPECT_EQ(c.winner.user, "ann");
  // Both events are kept.
  EXPECT_EQ(stored(EntityId::kCalendarEvent, b)->get(f::kEventStart), Value::integer(1500));
}

TEST_F(RulesTest, AdjacentCancelledAndOtherOwnersEventsAreNotFlagged) {
  commit(txn(kAnn, event(new_id(), kAnn, 1000, 2000)), kAnn);
  commit(txn(kAnn, event(new_id(), kAnn, 3000, 4000, "cancelled")), kAnn);
  commit(txn(kBob, event(new_id(), kBob, 2000, 5000)), kBob);
  TxnApplication adjacent = commit(txn(kAnn, event(new_id(), kAnn, 2000, 3000)), kAnn);
  EXPECT_TRUE(adjacent.conflicts.empty());
  TxnApplication over_cancelled = commit(txn(kAnn, event(new_id(), kAnn, 3100, 3900)), kAnn);
  EXPECT_TRUE(over_cancelled.conflicts.empty());
  TxnApplication cancelled_over = commit(txn(kAnn, event(new_id(), kAnn, 1500, 1600, "cancelled")), kAnn);
  EXPECT_TRUE(cancelled_over.conflicts.empty());
}

TEST_F(RulesTest, OverlapWithinOneTransactionIsReportedOnce) {
  RecordId a = new_id(), b = new_id();
  std::vector<Change> changes = event(a, kAnn, 1000, 2000);
  for (Change& c : event(b, kAnn, 1500, 2500)) changes.push_back(c);
  TxnApplication app = commit(txn(kAnn, changes), kAnn);
  ASSERT_EQ(app.conflicts.size(), 1u);
  EXPECT_EQ(app.conflicts[0].record, a);
  EXPECT_EQ(app.conflicts[0].other_record, b);
}

TEST_F(RulesTest, MovingAnEventIntoAnotherIsFlaggedButEditingItsTitleIsNot) {
  RecordId a = new_id(), b = new_id();
  commit(txn(kAnn, event(a, kAnn, 1000, 2000)), kAnn);
  commit(txn(kAnn, event(b, kAnn, 3000, 4000)), kAnn);
  EXPECT_TRUE(commit(txn(kAnn, {set(EntityId::kCalendarEvent, b, kEventTitle, text("Lunch"))}), kAnn)
                  .conflicts.empty());
  TxnApplication moved =
      commit(txn(kAnn, {set(EntityId::kCalendarEvent, b, f::kEventStart, Value::integer(1900))}), kAnn);
  ASSERT_EQ(moved.conflicts.size(), 1u);
  EXPECT_EQ(moved.conflicts[0].other_record, a);
  // Cancelling one of them in the same transaction as the move clears the overlap.
  RecordId c = new_id();
  commit(txn(kAnn, event(c, kAnn, 5000, 6000)), kAnn);
  TxnApplication both =
      commit(txn(kAnn, {set(EntityId::kCalendarEvent, a, f::kEventStatus, text("cancelled")),
                        set(EntityId::kCalendarEvent, c, f::kEventStart, Value::integer(1500))}),
             kAnn);
  // c [1500,6000) now overlaps b [1900,4000), but not the cancelled a.
  ASSERT_EQ(both.conflicts.size(), 1u);
  EXPECT_EQ(both.conflicts[0].record, c);
  EXPECT_EQ(both.conflicts[0].other_record, b);
}

// ---- The in-memory stores
// ----------------------------------------------------------------------------------------

RecordState record(EntityId e, uint64_t n, bool deleted = false) {
  RecordState r{e, RecordId{n, n}};
  r.created = Version{n, 1};
  r.deleted = deleted;
  return r;
}

TEST(MemoryCentralStore, TransactionsAreOverlays) {
  MemoryCentralStore store;
  auto t1 = store.begin();
  t1->save(record(EntityId::kAccount, 1));
  EXPECT_TRUE(t1->load(EntityId::kAccount, RecordId{1, 1}).value());
  EXPECT_FALSE(store.load(EntityId::kAccount, RecordId{1, 1}).value());
  {
    auto t2 = store.begin();
    EXPECT_FALSE(t2->load(EntityId::kAccount, RecordId{1, 1}).value());
    t2->save(record(EntityId::kAccount, 2));
    t2->set_node_state(NodeState{7, 3});
  }  // dropped without commit
  EXPECT_EQ(t1->append_log(ServerTxn{}, {}, {}), 1u);
  EXPECT_TRUE(t1->commit().is_ok());
  EXPECT_TRUE(store.load(EntityId::kAccount, RecordId{1, 1}).value());
  EXPECT_FALSE(store.load(EntityId::kAccount, RecordId{2, 2}).value());
  EXPECT_TRUE(store.node_states().empty());
  EXPECT_EQ(store.begin()->node_state(7).value().last_node_seq, 0u);
}

TEST(MemoryCentralStore, LogSequencesAndBatches) {
  MemoryCentralStore store;
  for (int i = 0; i < 4; ++i) {
    auto t = store.begin();
    ServerTxn st;
    st.changes.resize(static_cast<size_t>(i + 1));  // 1, 2, 3, 4 changes
    ConflictRecord c;
    c.rule = std::string("r").append(std::to_string(i));
    EXPECT_EQ(t->append_log(st, {c}, {}), static_cast<uint64_t>(i + 1));
    ASSERT_TRUE(t->commit().is_ok());
  }
  EXPECT_EQ(store.head_seq().value(), 4u);
  std::vector<ServerTxn> batch = store.read_log(0, 3).value();  // 1 + 2 reaches 3
  ASSERT_EQ(batch.size(), 2u);
  EXPECT_EQ(batch[0].server_seq, 1u);
  EXPECT_EQ(batch[1].server_seq, 2u);
  EXPECT_EQ(store.read_log(2, 1).value().size(), 1u);  // always at least one whole transaction
  EXPECT_EQ(store.read_log(1, 1000).value().size(), 3u);
  EXPECT_TRUE(store.read_log(4, 10).value().empty());
  std::vector<ConflictRecord> cs = store.read_conflicts(1, 3).value();
  ASSERT_EQ(cs.size(), 2u);
  EXPECT_EQ(cs[0].server_seq, 2u);
  EXPECT_EQ(cs[1].rule, "r2");
}

TEST(MemoryCentralStore, ScanReturnsRecordsAndTombstonesInKeyOrder) {
  MemoryCentralStore store;
  auto t = store.begin();
  t->save(record(EntityId::kContact, 3));
  t->save(record(EntityId::kAccount, 2, true));
  t->save(record(EntityId::kAccount, 1));
  t->save(record(EntityId::kAccount, 4));
  ASSERT_TRUE(t->commit().is_ok());
  std::vector<RecordState> page = store.scan(RecordKey{}, 2).value();
  ASSERT_EQ(page.size(), 2u);
  EXPECT_EQ(page[0].id, (RecordId{1, 1}));
  EXPECT_EQ(page[1].id, (RecordId{2, 2}));
  EXPECT_TRUE(page[1].deleted);
  page = store.scan(RecordKey{page[1].entity, page[1].id}, 10).value();
  ASSERT_EQ(page.size(), 2u);
  EXPECT_EQ(page[0].id, (RecordId{4, 4}));
  EXPECT_EQ(page[1].entity, EntityId::kContact);
  EXPECT_EQ(store.record_count().value(), 3u);  // live records only
}

TEST(MemoryReplicaStore, OverlayOutboxMetaAndFaults) {
  MemoryReplicaStore store(42);
  EXPECT_EQ(store.meta().node, 42u);
  {
    auto t = store.begin();
    t->save(record(EntityId::kAccount, 1));
    ClientTxn a, b;
    a.node_seq = 1;
    b.node_seq = 2;
    t->outbox_append(a);
    t->outbox_append(b);
    ReplicaMeta m = t->meta();
    m.cursor = 9;
    t->set_meta(m);
    ASSERT_TRUE(t->commit().is_ok());
  }
  auto t = store.begin();
  EXPECT_EQ(t->outbox_size(), 2u);
  t->outbox_remove(1);
  ClientTxn c;
  c.node_seq = 3;
  t->outbox_append(c);
  EXPECT_EQ(t->outbox_size(), 2u);
  std::vector<ClientTxn> peek = t->outbox_peek(10);
  ASSERT_EQ(peek.size(), 2u);
  EXPECT_EQ(peek[0].node_seq, 2u);
  EXPECT_EQ(peek[1].node_seq, 3u);
  EXPECT_EQ(t->outbox_peek(1).size(), 1u);
  t->erase(EntityId::kAccount, RecordId{1, 1});
  EXPECT_FALSE(t->load(EntityId::kAccount, RecordId{1, 1}));
  EXPECT_EQ(t->meta().cursor, 9u);

  store.fail_next_commit(Status(ErrorCode::kStorageFull, "disk full"));
  EXPECT_EQ(t->commit().code(), ErrorCode::kStorageFull);
  EXPECT_EQ(store.outbox().size(), 2u);  // nothing of the failed transaction landed
  EXPECT_EQ(store.records().size(), 1u);
  auto again = store.begin();
  again->outbox_remove(1);
  EXPECT_TRUE(again->commit().is_ok());  // the fault was for one commit only
  EXPECT_EQ(store.outbox().size(), 1u);
}

// ---- Schema 3: leads, service cases (check_domain_rules inside apply_client_txn)

uint16_t fld(EntityId e, std::string_view name) {
  const schema::FieldDef* d = schema::entity_ref(e).field(name);
  EXPECT_NE(d, nullptr) << name;
  return d != nullptr ? d->id : 0;
}

const Principal kAl{"al", Role::kRep, {"north"}, {}};

class DomainRulesTest : public RulesTest {
 protected:
  std::vector<Change> lead(RecordId id, const Principal& owner, const std::string& territory,
                           const std::string& status = "new") {
    const EntityId L = EntityId::kLead;
    return {create(L, id),
            set(L, id, fld(L, "person_name"), text("Dana Diaz")),
            set(L, id, fld(L, "company_name"), text("Diaz Bakery")),
            set(L, id, fld(L, "source"), text("field_prospecting")),
            set(L, id, fld(L, "owner_id"), text(owner.user)),
            set(L, id, fld(L, "territory_id"), text(territory)),
            set(L, id, fld(L, "status"), text(status)),
            set(L, id, fld(L, "created_at"), Value::integer(1'700'000'000'000))};
  }
  RecordId new_lead(const Principal& owner, const std::string& territory) {
    RecordId id = new_id();
    commit(txn(owner, lead(id, owner, territory)), owner);
    return id;
  }

  // A conversion of `lead_id` by `who`: account (new unless given), contact, opportunity, links, status.
  struct Conversion {
    RecordId account, contact, opp;
    std::vector<Change> changes;
  };
  Conversion conversion(RecordId lead_id, const Principal& who, std::optional<RecordId> existing = {}) {
    Conversion c{existing.value_or(new_id()), new_id(), new_id(), {}};
    if (!existing)
      for (Change& x : account(c.account, "north", who)) c.changes.push_back(x);
    const EntityId C = EntityId::kContact, O = EntityId::kOpportunity, L = EntityId::kLead;
    for (Change x : {create(C, c.contact), set(C, c.contact, fld(C, "account_id"), ref(c.account)),
                     set(C, c.contact, fld(C, "name"), text("Dana Diaz")), create(O, c.opp),
                     set(O, c.opp, fld(O, "account_id"), ref(c.account)),
                     set(O, c.opp, fld(O, "owner_id"), text(who.user)),
                     set(O, c.opp, fld(O, "name"), text("Bakery ovens")),
                     set(O, c.opp, fld(O, "stage"), text("prospect")),
                     set(O, c.opp, fld(O, "amount_cents"), Value::integer(120000)),
                     set(O, c.opp, fld(O, "currency"), text("EUR")),
                     set(L, lead_id, fld(L, "converted_account_id"), ref(c.account)),
                     set(L, lead_id, fld(L, "converted_contact_id"), ref(c.contact)),
                     set(L, lead_id, fld(L, "converted_opportunity_id"), ref(c.opp)),
                     set(L, lead_id, fld(L, "converted_at"), Value::integer(1'700'000'100'000)),
                     set(L, lead_id, fld(L, "status"), text("converted"))})
      c.changes.push_back(x);
    return c;
  }
  // Drops the change that sets `field` of the lead.
  static std::vector<Change> without(std::vector<Change> changes, uint16_t field) {
    std::erase_if(changes, [&](const Change& c) { return c.entity == EntityId::kLead && c.field == field; });
    return changes;
  }

  std::vector<Change> service_case(RecordId id, RecordId account_id, const Principal& by) {
    const EntityId S = EntityId::kServiceCase;
    return {create(S, id),
            set(S, id, fld(S, "account_id"), ref(account_id)),
            set(S, id, fld(S, "subject"), text("Oven does not heat")),
            set(S, id, fld(S, "priority"), text("high")),
            set(S, id, fld(S, "status"), text("open")),
            set(S, id, fld(S, "opened_at"), Value::integer(1'700'000'000'000)),
            set(S, id, fld(S, "opened_by"), text(by.user))};
  }
  RecordId new_case(RecordId account_id, const Principal& by) {
    RecordId id = new_id();
    commit(txn(by, service_case(id, account_id, by)), by);
    return id;
  }
  Change assign(RecordId sc, const std::string& user) {
    return set(EntityId::kServiceCase, sc, fld(EntityId::kServiceCase, "assignee_id"),
               user.empty() ? Value::null() : text(user));
  }
};

TEST_F(DomainRulesTest, LeadConversionIsOneTransactionAndFreezesTheLead) {
  RecordId l = new_lead(kAnn, "north");
  commit(txn(kAnn, {set(EntityId::kLead, l, fld(EntityId::kLead, "status"), text("qualified"))}), kAnn);
  Conversion c = conversion(l, kAnn);
  TxnApplication app = commit(txn(kAnn, c.changes), kAnn);
  EXPECT_EQ(app.records.size(), 4u);  // lead, account, contact, opportunity
  std::optional<RecordState> lead_after = stored(EntityId::kLead, l);
  ASSERT_TRUE(lead_after);
  EXPECT_EQ(lead_after->get(fld(EntityId::kLead, "status")), text("converted"));
  EXPECT_EQ(lead_after->get(fld(EntityId::kLead, "converted_account_id")), ref(c.account));
  EXPECT_EQ(lead_after->get(fld(EntityId::kLead, "converted_contact_id")), ref(c.contact));
  EXPECT_EQ(lead_after->get(fld(EntityId::kLead, "converted_opportunity_id")), ref(c.opp));
  EXPECT_TRUE(stored(EntityId::kAccount, c.account));
  EXPECT_TRUE(stored(EntityId::kContact, c.contact));
  EXPECT_TRUE(stored(EntityId::kOpportunity, c.opp));
  // Frozen: neither a field, nor a status, nor the links change again, even for head office.
  expect_rejected(txn(kAnn, {set(EntityId::kLead, l, fld(EntityId::kLead, "phone"), text("+41 1"))}), kAnn,
                  ErrorCode::kOrderLocked);
  expect_rejected(txn(kHq, {set(EntityId::kLead, l, fld(EntityId::kLead, "status"), text("new"))}), kHq,
                  ErrorCode::kOrderLocked);
  expect_rejected(txn(kHq, {set(EntityId::kLead, l, fld(EntityId::kLead, "converted_account_id"),
                                ref(new_account("north")))}),
                  kHq, ErrorCode::kOrderLocked);
}

TEST_F(DomainRulesTest, ConversionIntoAnExistingAccountOfTheScope) {
  RecordId l = new_lead(kAnn, "north");
  RecordId existing = new_account("north");
  commit(txn(kAnn, conversion(l, kAnn, existing).changes), kAnn);
  // Someone else's territory: the writer's scope decides, as for any reference.
  RecordId l2 = new_lead(kAnn, "north");
  expect_rejected(txn(kAnn, conversion(l2, kAnn, new_account("south")).changes), kAnn,
                  ErrorCode::kOutOfScope);
  // A record that exists nowhere.
  expect_rejected(txn(kHq, conversion(l2, kHq, new_id()).changes), kHq, ErrorCode::kRecordNotFound);
}

TEST_F(DomainRulesTest, ConversionWithoutEveryLinkIsRejectedWhole) {
  RecordId l = new_lead(kAnn, "north");
  const size_t log_before = store_.log().size();
  for (const char* field :
       {"converted_account_id", "converted_contact_id", "converted_opportunity_id", "converted_at"}) {
    Conversion c = conversion(l, kAnn);
    Result<TxnApplication> r = apply(txn(kAnn, without(c.changes, fld(EntityId::kLead, field))), kAnn);
    ASSERT_FALSE(r.is_ok()) << field;
    EXPECT_EQ(r.status().code(), ErrorCode::kMissingField) << r.status().to_string();
    EXPECT_NE(r.status().message().find(field), std::string::npos) << r.status().message();
  }
  EXPECT_EQ(store_.log().size(), log_before);  // nothing half-applied
  EXPECT_EQ(stored(EntityId::kLead, l)->get(fld(EntityId::kLead, "status")), text("new"));
}

TEST_F(DomainRulesTest, ConversionLinksOnlyInTheConvertingTransaction) {
  RecordId l = new_lead(kAnn, "north");
  RecordId acct = new_account("north");
  expect_rejected(
      txn(kAnn, {set(EntityId::kLead, l, fld(EntityId::kLead, "converted_account_id"), ref(acct))}), kAnn,
      ErrorCode::kImmutableField);
  // Not even at creation: a lead is born unconverted.
  RecordId l2 = new_id();
  std::vector<Change> born = lead(l2, kAnn, "north");
  born.push_back(set(EntityId::kLead, l2, fld(EntityId::kLead, "converted_at"), Value::integer(5)));
  expect_rejected(txn(kAnn, born), kAnn, ErrorCode::kImmutableField);
}

TEST_F(DomainRulesTest, ConversionLinksMustHangTogether) {
  RecordId l = new_lead(kAnn, "north");
  Conversion c = conversion(l, kAnn);
  // The contact of another account of the territory.
  RecordId other = new_account("north");
  for (Change& x : c.changes)
    if (x.entity == EntityId::kContact && x.field == fld(EntityId::kContact, "account_id"))
      x.value = ref(other);
  expect_rejected(txn(kAnn, c.changes), kAnn, ErrorCode::kValueInvalid);
}

TEST_F(DomainRulesTest, DisqualifyingNeedsAReason) {
  RecordId l = new_lead(kAnn, "north");
  const uint16_t status = fld(EntityId::kLead, "status");
  expect_rejected(txn(kAnn, {set(EntityId::kLead, l, status, text("disqualified"))}), kAnn,
                  ErrorCode::kMissingField);
  commit(txn(kAnn, {set(EntityId::kLead, l, fld(EntityId::kLead, "disqualify_reason"), text("no budget")),
                    set(EntityId::kLead, l, status, text("disqualified"))}),
         kAnn);
  // Back to new is a manager's move; a second disqualification needs its own reason again.
  expect_rejected(txn(kAnn, {set(EntityId::kLead, l, status, text("new"))}), kAnn,
                  ErrorCode::kPermissionDenied);
  commit(txn(kMia, {set(EntityId::kLead, l, status, text("new"))}), kMia);
  expect_rejected(txn(kAnn, {set(EntityId::kLead, l, status, text("disqualified"))}), kAnn,
                  ErrorCode::kMissingField);
}

TEST_F(DomainRulesTest, ARepTakesOnlyAnUnassignedCaseOfTheirScopeForThemselves) {
  RecordId acct = new_account("north");
  RecordId sc = new_case(acct, kAnn);
  expect_rejected(txn(kBob, {assign(sc, "bob")}), kBob, ErrorCode::kOutOfScope);       // not his territory
  expect_rejected(txn(kAnn, {assign(sc, "al")}), kAnn, ErrorCode::kPermissionDenied);  // not for a colleague
  commit(txn(kAnn, {assign(sc, "ann")}), kAnn);
  expect_rejected(txn(kAl, {assign(sc, "al")}), kAl, ErrorCode::kPermissionDenied);  // taken already
  expect_rejected(txn(kAnn, {assign(sc, "")}), kAnn, ErrorCode::kPermissionDenied);  // no dropping it either
  // A manager reassigns within the team, head office to anyone.
  expect_rejected(txn(kMia, {assign(sc, "zed")}), kMia, ErrorCode::kPermissionDenied);
  commit(txn(kMia, {assign(sc, "bob")}), kMia);
  commit(txn(kHq, {assign(sc, "zed")}), kHq);
  EXPECT_EQ(stored(EntityId::kServiceCase, sc)->get(fld(EntityId::kServiceCase, "assignee_id")), text("zed"));
}

TEST_F(DomainRulesTest, CaseDueTimeAndEscalationAreHeadOffices) {
  RecordId sc = new_case(new_account("north"), kAnn);
  const EntityId S = EntityId::kServiceCase;
  expect_rejected(txn(kAnn, {set(S, sc, fld(S, "due_at"), Value::integer(1'800'000'000'000))}), kAnn,
                  ErrorCode::kServerOwnedField);
  expect_rejected(txn(kMia, {set(S, sc, fld(S, "escalation_level"), Value::integer(1))}), kMia,
                  ErrorCode::kServerOwnedField);
  commit(txn(kHq, {set(S, sc, fld(S, "escalation_level"), Value::integer(1))}), kHq);
  // Resolution notes only grow.
  expect_rejected(txn(kAnn, {set(S, sc, fld(S, "resolution_notes"), text("rewritten"))}), kAnn,
                  ErrorCode::kTypeMismatch);
  commit(txn(kAnn, {make(ChangeOp::kAppend, S, sc, fld(S, "resolution_notes"), text("replaced the fuse"))}),
         kAnn);
}

TEST_F(DomainRulesTest, Schema3ReferencesStayInTheWritersScopeAndTheCasesAccount) {
  const EntityId S = EntityId::kServiceCase, T = EntityId::kTask, C = EntityId::kContact;
  RecordId north = new_account("north"), north2 = new_account("north"), south = new_account("south");
  RecordId south_contact = new_id(), north2_contact = new_id(), own_contact = new_id();
  auto contact = [&](RecordId id, RecordId acct) {
    return std::vector<Change>{create(C, id), set(C, id, f::kContactAccount, ref(acct)),
                               set(C, id, f::kContactName, text("Pat"))};
  };
  commit(txn(kHq, contact(south_contact, south)), kHq);
  commit(txn(kHq, contact(north2_contact, north2)), kHq);
  commit(txn(kAnn, contact(own_contact, north)), kAnn);
  RecordId sc = new_case(north, kAnn);
  // Another territory's contact reads as out of scope; a contact of another account of hers is refused too.
  expect_rejected(txn(kAnn, {set(S, sc, fld(S, "contact_id"), ref(south_contact))}), kAnn,
                  ErrorCode::kOutOfScope);
  expect_rejected(txn(kAnn, {set(S, sc, fld(S, "contact_id"), ref(north2_contact))}), kAnn,
                  ErrorCode::kValueInvalid);
  commit(txn(kAnn, {set(S, sc, fld(S, "contact_id"), ref(own_contact))}), kAnn);
  // A task of bob's may not point at ann's lead in the north.
  RecordId l = new_lead(kAnn, "north"), t = new_id();
  expect_rejected(
      txn(kBob,
          {create(T, t), set(T, t, fld(T, "owner_id"), text("bob")), set(T, t, fld(T, "title"), text("Spy")),
           set(T, t, fld(T, "status"), text("open")), set(T, t, fld(T, "lead_id"), ref(l))}),
      kBob, ErrorCode::kOutOfScope);
  // A contact deleted meanwhile: the link made offline is judged as before the delete (kept account).
  commit(txn(kAnn, {del(C, own_contact)}), kAnn);
  RecordId sc2 = new_id();
  std::vector<Change> late = service_case(sc2, north, kAnn);
  late.push_back(set(S, sc2, fld(S, "contact_id"), ref(own_contact)));
  commit(txn(kAnn, late), kAnn);
}

TEST(CaseBillable, WarrantyEndedBeforeTheCaseOpenedOrUnknown) {
  const int64_t opened = 1'700'000'000'000;
  EXPECT_TRUE(case_billable(true, opened - 1, opened));
  EXPECT_FALSE(case_billable(true, opened, opened));  // still under warranty the moment it opened
  EXPECT_FALSE(case_billable(true, opened + 86'400'000, opened));
  EXPECT_TRUE(case_billable(true, std::nullopt, opened));
  EXPECT_FALSE(case_billable(false, std::nullopt, opened));
  EXPECT_FALSE(case_billable(false, opened - 1, opened));
}

}  // namespace
}  // namespace fieldsync
