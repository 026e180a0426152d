// The server's transaction rules (apply_client_txn) through a MemoryCentralStore, one test per rejection
// reason, plus the happy path, scheduling conflicts and the in-memory stores themselves.
#include <gtest/gtest.h>

#include "fieldsync/sync/rules.h"
#include "fieldsync/sync/tuning.h"
#include "support/memory_store.h"

namespace fieldsync {
namespace {

using schema::EntityId;
using schema::Role;
namespace f = schema::fields;

// Field ids not named in model.h's fields namespace.
constexpr uint16_t kAccountCredit = 8;
constexpr uint16_t kAccountNotes = 9;
constexpr uint16_t kAccountCreatedBy = 10;
constexpr uint16_t kContactName = 2;
constexpr uint16_t kProductSku = 1;
constexpr uint16_t kProductName = 2;
constexpr uint16_t kProductActive = 4;
constexpr uint16_t kOrderRep = 2;
constexpr uint16_t kOrderCurrency = 4;
constexpr uint16_t kOrderDelivery = 9;
constexpr uint16_t kLineProduct = 2;
constexpr uint16_t kLineQuantity = 3;
constexpr uint16_t kLinePrice = 4;
constexpr uint16_t kEventTitle = 3;

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
            set(EntityId::kAccount, id, kAccountCreatedBy, text(by.user))};
  }
  RecordId new_account(const std::string& territory) {
    RecordId id = new_id();
    commit(txn(kHq, account(id, territory, kHq)), kHq);
    return id;
  }

  RecordId new_product() {
    RecordId id = new_id();
    commit(txn(kHq, {create(EntityId::kProduct, id), set(EntityId::kProduct, id, kProductSku, text("SKU-1")),
                     set(EntityId::kProduct, id, kProductName, text("Widget")),
                     set(EntityId::kProduct, id, kProductActive, Value::boolean(true))}),
           kHq);
    return id;
  }

  std::vector<Change> order(RecordId id, RecordId account_id, const Principal& rep,
                            const std::string& status) {
    return {create(EntityId::kOrder, id), set(EntityId::kOrder, id, f::kOrderAccount, ref(account_id)),
            set(EntityId::kOrder, id, kOrderRep, text(rep.user)),
            set(EntityId::kOrder, id, f::kOrderStatus, text(status)),
            set(EntityId::kOrder, id, kOrderCurrency, text("EUR"))};
  }

  std::vector<Change> line(RecordId id, RecordId order_id, RecordId product) {
    return {create(EntityId::kOrderLine, id),
            set(EntityId::kOrderLine, id, f::kOrderLineOrder, ref(order_id)),
            set(EntityId::kOrderLine, id, kLineProduct, ref(product)),
            set(EntityId::kOrderLine, id, kLineQuantity, Value::integer(3)),
            set(EntityId::kOrderLine, id, kLinePrice, Value::integer(1250))};
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
  EXPECT_EQ(stored(EntityId::kOrderLine, l2)->get(kLineQuantity), Value::integer(3));
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
                             set(EntityId::kContact, contact, kContactName, text("Jo"))}),
                  kAnn, ErrorCode::kOutOfScope);
  // The same contact is fine for the rep of that territory.
  ClientTxn ok = txn(kBob, {create(EntityId::kContact, contact),
                            set(EntityId::kContact, contact, f::kContactAccount, ref(south)),
                            set(EntityId::kContact, contact, kContactName, text("Jo"))});
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
      txn(kAnn, {create(EntityId::kProduct, p), set(EntityId::kProduct, p, kProductSku, text("X")),
                 set(EntityId::kProduct, p, kProductName, text("X")),
                 set(EntityId::kProduct, p, kProductActive, Value::boolean(true))}),
      kAnn, ErrorCode::kPermissionDenied);
}

TEST_F(RulesTest, ImmutableFieldAfterCreation) {
  RecordId acct = new_account("north");
  expect_rejected(txn(kAnn, {set(EntityId::kAccount, acct, kAccountCreatedBy, text("ann"))}), kAnn,
                  ErrorCode::kImmutableField);
  expect_rejected(txn(kHq, {set(EntityId::kAccount, acct, kAccountCreatedBy, text("hq2"))}), kHq,
                  ErrorCode::kImmutableField);
}

TEST_F(RulesTest, ServerOwnedField) {
  RecordId acct = new_account("north");
  expect_rejected(txn(kAnn, {set(EntityId::kAccount, acct, kAccountCredit, Value::integer(100))}), kAnn,
                  ErrorCode::kServerOwnedField);
  expect_rejected(txn(kMia, {set(EntityId::kAccount, acct, kAccountCredit, Value::integer(100))}), kMia,
                  ErrorCode::kServerOwnedField);
  commit(txn(kHq, {set(EntityId::kAccount, acct, kAccountCredit, Value::integer(100))}), kHq);
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
  expect_rejected(txn(kAnn, {set(EntityId::kOrderLine, s.line, kLineQuantity, Value::integer(9))}), kAnn,
                  ErrorCode::kOrderLocked);
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
                             set(EntityId::kAccount, acct, kAccountCreatedBy, text("ann"))}),
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

TEST_F(RulesTest, WriteToATombstoneIsAConflictNotAnError) {
  RecordId acct = new_account("north");
  RecordId contact = new_id();
  commit(txn(kAnn, {create(EntityId::kContact, contact),
                    set(EntityId::kContact, contact, f::kContactAccount, ref(acct)),
                    set(EntityId::kContact, contact, kContactName, text("Jo"))}),
         kAnn);
  ClientTxn offline_edit = txn(kAnn, {set(EntityId::kContact, contact, kContactName, text("Joanna"))});
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
  EXPECT_EQ(check(set(EntityId::kAccount, id, kAccountCreatedBy, text(""))), ErrorCode::kValueInvalid);
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

}  // namespace
}  // namespace fieldsync
