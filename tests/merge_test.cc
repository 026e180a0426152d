// Field-level merge and scope resolution, by example: each rule of merge.h and scope.h with the cases that
// matter.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>

#include "fieldsync/sync/merge.h"
#include "fieldsync/sync/scope.h"
#include "support/faulty_merge.h"

namespace fieldsync {
namespace {

using schema::EntityId;
using schema::Role;
namespace f = schema::fields;

// Ids by hand (any non-nil 128-bit value is a valid id for merge).
constexpr RecordId kAccount{0x0190'0000'0001'7000, 0x8000'0000'0000'0001};
constexpr RecordId kContact{0x0190'0000'0002'7000, 0x8000'0000'0000'0002};
constexpr RecordId kOrder{0x0190'0000'0003'7000, 0x8000'0000'0000'0003};
constexpr RecordId kLine{0x0190'0000'0004'7000, 0x8000'0000'0000'0004};
constexpr uint16_t kContactName = 2;
constexpr uint16_t kContactPhone = 5;
constexpr uint16_t kAccountCredit = 8;
constexpr uint16_t kAccountNotes = 9;
constexpr uint16_t kAccountCreatedBy = 10;

Version v(Hlc hlc, NodeId node) {
  return Version{hlc, node};
}

Change create(EntityId e, RecordId id, Version version) {
  Change c;
  c.op = ChangeOp::kCreate;
  c.entity = e;
  c.record = id;
  c.version = version;
  return c;
}

Change set(EntityId e, RecordId id, uint16_t field, Value value, Version version, Version base = {}) {
  Change c;
  c.op = ChangeOp::kSet;
  c.entity = e;
  c.record = id;
  c.field = field;
  c.value = std::move(value);
  c.version = version;
  c.base = base;
  return c;
}

Change append(EntityId e, RecordId id, uint16_t field, std::string text, Version version) {
  Change c = set(e, id, field, Value::text(std::move(text)), version);
  c.op = ChangeOp::kAppend;
  return c;
}

Change del(EntityId e, RecordId id, Version version, std::vector<FieldVersion> seen = {}) {
  Change c;
  c.op = ChangeOp::kDelete;
  c.entity = e;
  c.record = id;
  c.version = version;
  c.seen = std::move(seen);
  return c;
}

struct Write {
  Change change;
  UserId user;
};

struct Outcome {
  RecordState state;
  std::vector<ConflictRecord> conflicts;
};

Outcome apply_all(EntityId e, RecordId id, const std::vector<Write>& writes,
                  MergeChangeFn merge = &merge_change) {
  Outcome out;
  out.state.entity = e;
  out.state.id = id;
  for (const Write& w : writes) merge(out.state, w.change, w.user, &out.conflicts);
  return out;
}

// A contact of kAccount, created by node 1, with a name: the common start of the delete examples.
std::vector<Write> contact_base() {
  return {
      {create(EntityId::kContact, kContact, v(100, 1)), "ann"},
      {set(EntityId::kContact, kContact, f::kContactAccount, Value::text(kAccount.to_string()), v(101, 1)),
       "ann"},
      {set(EntityId::kContact, kContact, kContactName, Value::text("Jo"), v(102, 1)), "ann"},
  };
}

std::vector<Write> concat(std::vector<Write> a, const std::vector<Write>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// ---- Last writer wins
// ------------------------------------------------------------------------------------------

TEST(MergeLww, ConcurrentWritesGiveTheSameStateAndConflictInEitherOrder) {
  Write a{set(EntityId::kAccount, kAccount, f::kAccountName, Value::text("Acme"), v(100, 1)), "ann"};
  Write b{set(EntityId::kAccount, kAccount, f::kAccountName, Value::text("ACME Ltd"), v(200, 2)), "bob"};
  Outcome ab = apply_all(EntityId::kAccount, kAccount, {a, b});
  Outcome ba = apply_all(EntityId::kAccount, kAccount, {b, a});

  EXPECT_EQ(ab.state, ba.state);
  EXPECT_EQ(ab.state.get(f::kAccountName), Value::text("ACME Ltd"));
  EXPECT_EQ(ab.state.field(f::kAccountName)->version, v(200, 2));
  EXPECT_EQ(ab.state.field(f::kAccountName)->user, "bob");

  ASSERT_EQ(ab.conflicts.size(), 1u);
  EXPECT_EQ(ab.conflicts, ba.conflicts);
  const ConflictRecord& c = ab.conflicts[0];
  EXPECT_EQ(c.kind, ConflictKind::kConcurrentWrite);
  EXPECT_EQ(c.entity, EntityId::kAccount);
  EXPECT_EQ(c.record, kAccount);
  EXPECT_EQ(c.field, f::kAccountName);
  EXPECT_EQ(c.winner, (ConflictSide{Value::text("ACME Ltd"), v(200, 2), "bob"}));
  EXPECT_EQ(c.loser, (ConflictSide{Value::text("Acme"), v(100, 1), "ann"}));
  EXPECT_EQ(c.rule, "last_writer_wins");
  EXPECT_EQ(c.server_seq, 0u);
}

TEST(MergeLww, OverwriteThatSawTheCurrentValueIsNoConflict) {
  Write a{set(EntityId::kAccount, kAccount, f::kAccountName, Value::text("Acme"), v(100, 1)), "ann"};
  Write b{set(EntityId::kAccount, kAccount, f::kAccountName, Value::text("ACME Ltd"), v(200, 2), v(100, 1)),
          "bob"};
  Outcome o = apply_all(EntityId::kAccount, kAccount, {a, b});
  EXPECT_EQ(o.state.get(f::kAccountName), Value::text("ACME Ltd"));
  EXPECT_TRUE(o.conflicts.empty());
}

TEST(MergeLww, SameNodeOverwriteIsNoConflict) {
  Write a{set(EntityId::kAccount, kAccount, f::kAccountName, Value::text("Acme"), v(100, 1)), "ann"};
  Write b{set(EntityId::kAccount, kAccount, f::kAccountName, Value::text("Acme 2"), v(200, 1)), "ann"};
  EXPECT_TRUE(apply_all(EntityId::kAccount, kAccount, {a, b}).conflicts.empty());
  EXPECT_TRUE(apply_all(EntityId::kAccount, kAccount, {b, a}).conflicts.empty());
  EXPECT_EQ(apply_all(EntityId::kAccount, kAccount, {b, a}).state.get(f::kAccountName),
            Value::text("Acme 2"));
}

TEST(MergeLww, HigherHlcWinsAndNodeBreaksTies) {
  Write a{set(EntityId::kAccount, kAccount, f::kAccountName, Value::text("from node 9"), v(100, 9)), "ann"};
  Write b{set(EntityId::kAccount, kAccount, f::kAccountName, Value::text("from node 2"), v(100, 2)), "bob"};
  EXPECT_EQ(apply_all(EntityId::kAccount, kAccount, {a, b}).state.get(f::kAccountName),
            Value::text("from node 9"));
  EXPECT_EQ(apply_all(EntityId::kAccount, kAccount, {b, a}).state.get(f::kAccountName),
            Value::text("from node 9"));
}

TEST(MergeLww, ReapplyingIsANoOp) {
  RecordState rec{EntityId::kAccount, kAccount};
  std::vector<ConflictRecord> conflicts;
  Change c = set(EntityId::kAccount, kAccount, f::kAccountName, Value::text("Acme"), v(100, 1));
  EXPECT_TRUE(merge_change(rec, c, "ann", &conflicts));
  RecordState once = rec;
  EXPECT_FALSE(merge_change(rec, c, "ann", &conflicts));
  EXPECT_EQ(rec, once);
  EXPECT_TRUE(conflicts.empty());
}

TEST(MergeLww, ServerOwnedAndImmutableFieldsMergeByVersion) {
  // Who may write them is rules.cc's business; once accepted they merge like any last-writer-wins field.
  Write credit_old{set(EntityId::kAccount, kAccount, kAccountCredit, Value::integer(1000), v(100, 1)), "hq"};
  Write credit_new{set(EntityId::kAccount, kAccount, kAccountCredit, Value::integer(5000), v(300, 2)), "hq2"};
  Write by_a{set(EntityId::kAccount, kAccount, kAccountCreatedBy, Value::text("ann"), v(110, 1)), "ann"};
  Write by_b{set(EntityId::kAccount, kAccount, kAccountCreatedBy, Value::text("bob"), v(120, 2)), "bob"};
  Outcome x = apply_all(EntityId::kAccount, kAccount, {credit_new, credit_old, by_b, by_a});
  Outcome y = apply_all(EntityId::kAccount, kAccount, {by_a, credit_old, by_b, credit_new});
  EXPECT_EQ(x.state, y.state);
  EXPECT_EQ(x.state.get(kAccountCredit), Value::integer(5000));
  EXPECT_EQ(x.state.get(kAccountCreatedBy), Value::text("bob"));
  EXPECT_EQ(x.conflicts.size(), 2u);
  EXPECT_EQ(y.conflicts.size(), 2u);
}

TEST(MergeCreate, KeepsTheHighestCreateVersionAndIsIdempotent) {
  RecordState rec{EntityId::kAccount, kAccount};
  EXPECT_TRUE(merge_change(rec, create(EntityId::kAccount, kAccount, v(100, 1)), "ann", nullptr));
  EXPECT_FALSE(merge_change(rec, create(EntityId::kAccount, kAccount, v(100, 1)), "ann", nullptr));
  EXPECT_FALSE(merge_change(rec, create(EntityId::kAccount, kAccount, v(50, 3)), "cat", nullptr));
  EXPECT_EQ(rec.created, v(100, 1));
  EXPECT_TRUE(merge_change(rec, create(EntityId::kAccount, kAccount, v(150, 2)), "bob", nullptr));
  EXPECT_EQ(rec.created, v(150, 2));
}

// ---- Append-only text
// --------------------------------------------------------------------------------------------

TEST(MergeAppend, ConcurrentFragmentsAreAllKeptInVersionOrder) {
  Write first{append(EntityId::kAccount, kAccount, kAccountNotes, "called, no answer", v(100, 2)), "bob"};
  Write second{append(EntityId::kAccount, kAccount, kAccountNotes, "met the buyer", v(200, 1)), "ann"};
  Outcome a = apply_all(EntityId::kAccount, kAccount, {first, second});
  Outcome b = apply_all(EntityId::kAccount, kAccount, {second, first, second});
  EXPECT_EQ(a.state, b.state);
  const FieldState* notes = a.state.field(kAccountNotes);
  ASSERT_NE(notes, nullptr);
  ASSERT_EQ(notes->fragments.size(), 2u);
  EXPECT_EQ(notes->fragments[0].text, "called, no answer");
  EXPECT_EQ(notes->fragments[1].text, "met the buyer");
  EXPECT_EQ(notes->value, Value::text("called, no answer\nmet the buyer"));
  EXPECT_EQ(notes->version, v(200, 1));
  EXPECT_EQ(notes->user, "ann");
  EXPECT_TRUE(a.conflicts.empty());
  EXPECT_TRUE(b.conflicts.empty());
}

TEST(MergeAppend, DuplicateFragmentIsANoOp) {
  RecordState rec{EntityId::kAccount, kAccount};
  Change c = append(EntityId::kAccount, kAccount, kAccountNotes, "x", v(100, 1));
  EXPECT_TRUE(merge_change(rec, c, "ann", nullptr));
  EXPECT_FALSE(merge_change(rec, c, "ann", nullptr));
  EXPECT_EQ(rec.field(kAccountNotes)->fragments.size(), 1u);
}

TEST(MergeAppend, JoinFragments) {
  EXPECT_EQ(join_fragments({}), "");
  EXPECT_EQ(join_fragments({Fragment{v(1, 1), "a", "one"}}), "one");
  EXPECT_EQ(join_fragments(
                {Fragment{v(1, 1), "a", "one"}, Fragment{v(2, 1), "a", ""}, Fragment{v(3, 1), "a", "3"}}),
            "one\n\n3");
}

// ---- Delete wins
// -------------------------------------------------------------------------------------------------

TEST(MergeDelete, DeleteAndConcurrentUpdateConvergeWithOneConflictInEitherOrder) {
  // Bob (node 2) changes the phone while Cat (node 3), who had seen the contact as created, deletes it.
  Write update{set(EntityId::kContact, kContact, kContactPhone, Value::text("555-0100"), v(300, 2)), "bob"};
  Write remove{del(EntityId::kContact, kContact, v(250, 3),
                   {{f::kContactAccount, v(101, 1)}, {kContactName, v(102, 1)}}),
               "cat"};
  Outcome update_first = apply_all(EntityId::kContact, kContact, concat(contact_base(), {update, remove}));
  Outcome delete_first = apply_all(EntityId::kContact, kContact, concat(contact_base(), {remove, update}));

  EXPECT_EQ(update_first.state, delete_first.state);
  EXPECT_TRUE(update_first.state.deleted);
  EXPECT_EQ(update_first.state.deleted_version, v(250, 3));
  EXPECT_EQ(update_first.state.deleted_by, "cat");
  EXPECT_TRUE(update_first.state.get(kContactPhone).is_null());

  ASSERT_EQ(update_first.conflicts.size(), 1u);
  EXPECT_EQ(update_first.conflicts, delete_first.conflicts);
  const ConflictRecord& c = update_first.conflicts[0];
  EXPECT_EQ(c.kind, ConflictKind::kDeleteWins);
  EXPECT_EQ(c.rule, "delete_wins");
  EXPECT_EQ(c.field, kContactPhone);
  EXPECT_EQ(c.winner, (ConflictSide{Value::null(), v(250, 3), "cat"}));
  EXPECT_EQ(c.loser, (ConflictSide{Value::text("555-0100"), v(300, 2), "bob"}));
}

TEST(MergeDelete, DeleteThatSawTheUpdateIsNoConflict) {
  Write update{set(EntityId::kContact, kContact, kContactPhone, Value::text("555-0100"), v(300, 2)), "bob"};
  Write remove{del(EntityId::kContact, kContact, v(400, 3),
                   {{f::kContactAccount, v(101, 1)}, {kContactName, v(102, 1)}, {kContactPhone, v(300, 2)}}),
               "cat"};
  EXPECT_TRUE(
      apply_all(EntityId::kContact, kContact, concat(contact_base(), {update, remove})).conflicts.empty());
  EXPECT_TRUE(
      apply_all(EntityId::kContact, kContact, concat(contact_base(), {remove, update})).conflicts.empty());
}

TEST(MergeDelete, DeletersOwnWritesAreNotConflicts) {
  Write update{set(EntityId::kContact, kContact, kContactPhone, Value::text("555-0100"), v(300, 3)), "cat"};
  Write remove{del(EntityId::kContact, kContact, v(250, 3), {{kContactName, v(102, 1)}}), "cat"};
  Outcome o = apply_all(EntityId::kContact, kContact, concat(contact_base(), {remove, update}));
  EXPECT_TRUE(o.state.deleted);
  // The account reference is the kept scope field, not a lost value; name was seen; phone is the deleter's
  // own.
  EXPECT_TRUE(o.conflicts.empty());
}

TEST(MergeDelete, TombstoneKeepsOnlyTheScopeField) {
  Outcome o = apply_all(EntityId::kContact, kContact,
                        concat(contact_base(), {{del(EntityId::kContact, kContact, v(200, 1)), "ann"}}));
  ASSERT_TRUE(o.state.deleted);
  ASSERT_EQ(o.state.fields.size(), 1u);
  EXPECT_EQ(o.state.fields[0].field, f::kContactAccount);
  EXPECT_EQ(o.state.fields[0].value, Value::text(kAccount.to_string()));
  EXPECT_TRUE(o.state.get(f::kContactAccount).is_null());  // reads of a tombstone see nothing
  EXPECT_EQ(o.state.created, v(100, 1));
}

TEST(MergeDelete, ScopeFieldWrittenAfterTheDeleteStillArrives) {
  // The create's own writes can reach a device after the delete (scope entry, reordering); the tombstone must
  // end up routable either way.
  std::vector<Write> base = contact_base();
  Write remove{del(EntityId::kContact, kContact, v(200, 2), {{kContactName, v(102, 1)}}), "bob"};
  Outcome late = apply_all(EntityId::kContact, kContact, {remove, base[2], base[1], base[0]});
  Outcome early = apply_all(EntityId::kContact, kContact, concat(base, {remove}));
  EXPECT_EQ(late.state, early.state);
  EXPECT_EQ(late.conflicts, early.conflicts);
}

TEST(MergeDelete, ConcurrentDeletesKeepTheNewestTombstone) {
  Write d1{del(EntityId::kContact, kContact, v(300, 2), {{kContactName, v(102, 1)}}), "bob"};
  Write d2{del(EntityId::kContact, kContact, v(310, 3)), "cat"};
  Outcome a = apply_all(EntityId::kContact, kContact, concat(contact_base(), {d1, d2}));
  Outcome b = apply_all(EntityId::kContact, kContact, concat(contact_base(), {d2, d1, d2}));
  EXPECT_EQ(a.state, b.state);
  EXPECT_EQ(a.state.deleted_version, v(310, 3));
  EXPECT_EQ(a.state.deleted_by, "cat");
  EXPECT_TRUE(a.state.delete_seen.empty());
}

TEST(MergeDelete, AppendAfterDeleteIsDiscardedAndLogged) {
  // No deletable entity has an append-only field today; merge is policy-blind, so a contact field stands in.
  // The deleter saw the notes at version 150 (its newest fragment), so fragments up to 150 count as seen;
  // each fragment is judged alone, the same way whether it arrives before or after the delete.
  constexpr uint16_t kNotes = 6;
  Write note_0{append(EntityId::kContact, kContact, kNotes, "0", v(140, 5)), "eve"};
  Write note_a{append(EntityId::kContact, kContact, kNotes, "a", v(150, 2)), "bob"};
  Write note_b{append(EntityId::kContact, kContact, kNotes, "b", v(160, 4)), "dan"};
  Write remove{del(EntityId::kContact, kContact, v(200, 3), {{kContactName, v(102, 1)}, {kNotes, v(150, 2)}}),
               "cat"};
  Outcome notes_first =
      apply_all(EntityId::kContact, kContact, concat(contact_base(), {note_0, note_a, note_b, remove}));
  Outcome delete_first =
      apply_all(EntityId::kContact, kContact, concat(contact_base(), {remove, note_b, note_a, note_0}));
  EXPECT_EQ(notes_first.state, delete_first.state);
  ASSERT_EQ(notes_first.conflicts.size(), 1u);
  EXPECT_EQ(notes_first.conflicts, delete_first.conflicts);
  EXPECT_EQ(notes_first.conflicts[0].loser, (ConflictSide{Value::text("b"), v(160, 4), "dan"}));
  EXPECT_EQ(notes_first.conflicts[0].winner, (ConflictSide{Value::null(), v(200, 3), "cat"}));
}

// ---- merge_record
// -----------------------------------------------------------------------------------------------

TEST(MergeRecord, MergesFieldByField) {
  Write name_old{set(EntityId::kAccount, kAccount, f::kAccountName, Value::text("old"), v(100, 1)), "ann"};
  Write name_new{set(EntityId::kAccount, kAccount, f::kAccountName, Value::text("new"), v(300, 2)), "bob"};
  Write city{set(EntityId::kAccount, kAccount, 4, Value::text("Lyon"), v(200, 1)), "ann"};
  Write note1{append(EntityId::kAccount, kAccount, kAccountNotes, "n1", v(110, 1)), "ann"};
  Write note2{append(EntityId::kAccount, kAccount, kAccountNotes, "n2", v(120, 2)), "bob"};
  Write made{create(EntityId::kAccount, kAccount, v(90, 1)), "ann"};

  RecordState local = apply_all(EntityId::kAccount, kAccount, {made, name_old, city, note1}).state;
  RecordState remote = apply_all(EntityId::kAccount, kAccount, {name_new, note2}).state;
  RecordState all =
      apply_all(EntityId::kAccount, kAccount, {made, name_old, city, note1, name_new, note2}).state;

  RecordState a = local;
  EXPECT_TRUE(merge_record(a, remote));
  EXPECT_EQ(a, all);
  RecordState b = remote;
  EXPECT_TRUE(merge_record(b, local));
  EXPECT_EQ(b, all);
  EXPECT_FALSE(merge_record(a, remote));
  EXPECT_FALSE(merge_record(a, local));
  EXPECT_EQ(a.get(f::kAccountName), Value::text("new"));
  EXPECT_EQ(a.get(kAccountNotes), Value::text("n1\nn2"));
}

TEST(MergeRecord, RemoteTombstoneClearsLocalFields) {
  RecordState local = apply_all(EntityId::kContact, kContact, contact_base()).state;
  RecordState remote =
      apply_all(EntityId::kContact, kContact,
                concat(contact_base(), {{del(EntityId::kContact, kContact, v(200, 2)), "bob"}}))
          .state;
  local.mutable_field(kContactPhone)->value = Value::text("555");
  local.mutable_field(kContactPhone)->version = v(190, 1);
  EXPECT_TRUE(merge_record(local, remote));
  EXPECT_EQ(local, remote);
}

TEST(MergeRecord, FreshLocalTakesTheRemoteState) {
  RecordState remote = apply_all(EntityId::kContact, kContact, contact_base()).state;
  RecordState local;
  EXPECT_TRUE(merge_record(local, remote));
  EXPECT_EQ(local, remote);
}

// ---- Fault injection (for the simulator's mutation test)
// ---------------------------------------------------------

TEST(MergeFault, ArrivalOrderWinsIgnoresVersions) {
  const MergeChangeFn faulty = testing_support::merge_with(testing_support::MergeFault::kArrivalOrderWins);
  Write newer{set(EntityId::kAccount, kAccount, f::kAccountName, Value::text("newer"), v(200, 2)), "bob"};
  Write older{set(EntityId::kAccount, kAccount, f::kAccountName, Value::text("older"), v(100, 1)), "ann"};
  Outcome o = apply_all(EntityId::kAccount, kAccount, {newer, older}, faulty);
  EXPECT_EQ(o.state.get(f::kAccountName), Value::text("older"));
  EXPECT_TRUE(o.conflicts.empty());
}

TEST(MergeFault, DropConcurrentAppendKeepsOnlyTheLastFragment) {
  Outcome o = apply_all(EntityId::kAccount, kAccount,
                        {{append(EntityId::kAccount, kAccount, kAccountNotes, "a", v(100, 1)), "ann"},
                         {append(EntityId::kAccount, kAccount, kAccountNotes, "b", v(90, 2)), "bob"}},
                        testing_support::merge_with(testing_support::MergeFault::kDropConcurrentAppend));
  EXPECT_EQ(o.state.get(kAccountNotes), Value::text("b"));
}

// ---- Scope
// -------------------------------------------------------------------------------------------------------

class MapReader final : public RecordReader {
 public:
  void put(const RecordState& r) { records_[RecordKey{r.entity, r.id}] = r; }
  std::optional<RecordState> load(EntityId entity, const RecordId& id) override {
    ++loads;
    auto it = records_.find(RecordKey{entity, id});
    if (it == records_.end()) return std::nullopt;
    return it->second;
  }
  int loads = 0;

 private:
  std::map<RecordKey, RecordState> records_;
};

RecordState record_with(EntityId e, RecordId id, uint16_t field, Value value) {
  RecordState r{e, id};
  merge_change(r, create(e, id, v(1, 1)), "ann", nullptr);
  merge_change(r, set(e, id, field, std::move(value), v(2, 1)), "ann", nullptr);
  return r;
}

struct ScopeFixture : ::testing::Test {
  ScopeFixture() {
    reader.put(record_with(EntityId::kAccount, kAccount, f::kAccountTerritory, Value::text("north")));
    reader.put(record_with(EntityId::kOrder, kOrder, f::kOrderAccount, Value::text(kAccount.to_string())));
    line = record_with(EntityId::kOrderLine, kLine, f::kOrderLineOrder, Value::text(kOrder.to_string()));
  }
  MapReader reader;
  RecordState line;
};

TEST_F(ScopeFixture, FollowsParentsToTheTerritory) {
  EXPECT_EQ(resolve_scope(line, reader), (ScopeKey{ScopeKey::Kind::kTerritory, "north"}));
  EXPECT_EQ(reader.loads, 2);  // order, then account
}

TEST_F(ScopeFixture, MissingOrBadParentIsUnresolved) {
  RecordState orphan =
      record_with(EntityId::kOrderLine, kLine, f::kOrderLineOrder, Value::text(kLine.to_string()));
  EXPECT_EQ(resolve_scope(orphan, reader).kind, ScopeKey::Kind::kUnresolved);
  RecordState garbled =
      record_with(EntityId::kOrderLine, kLine, f::kOrderLineOrder, Value::text("not-an-id"));
  EXPECT_EQ(resolve_scope(garbled, reader).kind, ScopeKey::Kind::kUnresolved);
  RecordState bare{EntityId::kOrderLine, kLine};
  EXPECT_EQ(resolve_scope(bare, reader).kind, ScopeKey::Kind::kUnresolved);
  RecordState no_territory{EntityId::kAccount, kAccount};
  EXPECT_EQ(resolve_scope(no_territory, reader).kind, ScopeKey::Kind::kUnresolved);
}

TEST_F(ScopeFixture, TombstoneStillResolves) {
  merge_change(line, del(EntityId::kOrderLine, kLine, v(10, 2)), "bob", nullptr);
  ASSERT_TRUE(line.deleted);
  EXPECT_EQ(resolve_scope(line, reader), (ScopeKey{ScopeKey::Kind::kTerritory, "north"}));
}

TEST(Scope, GlobalAndOwner) {
  MapReader reader;
  RecordState product{EntityId::kProduct, kAccount};
  EXPECT_EQ(resolve_scope(product, reader), (ScopeKey{ScopeKey::Kind::kGlobal, ""}));
  RecordState event = record_with(EntityId::kCalendarEvent, kOrder, f::kEventOwner, Value::text("ann"));
  EXPECT_EQ(resolve_scope(event, reader), (ScopeKey{ScopeKey::Kind::kOwner, "ann"}));
  EXPECT_EQ(reader.loads, 0);
}

TEST(Scope, CanSeeByRole) {
  Principal rep{"ann", Role::kRep, {"north"}, {}};
  Principal manager{"mia", Role::kManager, {"north", "south"}, {"ann", "bob"}};
  Principal hq{"hq", Role::kHeadOffice, {}, {}};
  const ScopeKey north{ScopeKey::Kind::kTerritory, "north"};
  const ScopeKey south{ScopeKey::Kind::kTerritory, "south"};
  const ScopeKey global{ScopeKey::Kind::kGlobal, ""};
  const ScopeKey anns{ScopeKey::Kind::kOwner, "ann"};
  const ScopeKey bobs{ScopeKey::Kind::kOwner, "bob"};
  const ScopeKey zoes{ScopeKey::Kind::kOwner, "zoe"};
  const ScopeKey unresolved{ScopeKey::Kind::kUnresolved, ""};

  EXPECT_TRUE(can_see(rep, north));
  EXPECT_FALSE(can_see(rep, south));
  EXPECT_TRUE(can_see(rep, global));
  EXPECT_TRUE(can_see(rep, anns));
  EXPECT_FALSE(can_see(rep, bobs));  // a rep does not see a colleague's calendar
  EXPECT_FALSE(can_see(rep, unresolved));

  EXPECT_TRUE(can_see(manager, south));
  EXPECT_TRUE(can_see(manager, bobs));
  EXPECT_FALSE(can_see(manager, zoes));  // not on the team
  EXPECT_FALSE(can_see(manager, unresolved));

  Principal rep_with_team{"ann", Role::kRep, {"north"}, {"bob"}};
  EXPECT_FALSE(can_see(rep_with_team, bobs));  // a team list means nothing below manager

  for (const ScopeKey& k : {north, south, global, anns, zoes, unresolved}) EXPECT_TRUE(can_see(hq, k));
}

// Catch-up pulls (read_log_for) and live batches (batch_for) look only at a principal's visible_scopes: it
// must hold exactly the keys can_see accepts, or a change in the missing scope is never sent.
TEST(Scope, VisibleScopesAreExactlyWhatCanSeeAccepts) {
  const std::vector<ScopeKey> keys{
      {ScopeKey::Kind::kTerritory, "north"}, {ScopeKey::Kind::kTerritory, "south"},
      {ScopeKey::Kind::kTerritory, "east"},  {ScopeKey::Kind::kGlobal, ""},
      {ScopeKey::Kind::kOwner, "ann"},       {ScopeKey::Kind::kOwner, "bob"},
      {ScopeKey::Kind::kOwner, "mia"},       {ScopeKey::Kind::kOwner, "zoe"},
      {ScopeKey::Kind::kUnresolved, ""}};
  const std::vector<Principal> who{{"ann", Role::kRep, {"north"}, {}},
                                   {"ann", Role::kRep, {"north", "south"}, {"bob"}},
                                   {"mia", Role::kManager, {"north", "south"}, {"ann", "bob"}},
                                   {"mia", Role::kManager, {}, {}}};
  for (const Principal& p : who) {
    std::optional<std::vector<ScopeKey>> mine = visible_scopes(p);
    ASSERT_TRUE(mine.has_value()) << p.user;
    for (const ScopeKey& k : keys) {
      const bool listed = std::find(mine->begin(), mine->end(), k) != mine->end();
      EXPECT_EQ(listed, can_see(p, k)) << p.user << " " << static_cast<int>(k.kind) << ":" << k.value;
    }
  }
  EXPECT_FALSE(visible_scopes(Principal{"hq", Role::kHeadOffice, {}, {}}).has_value()) << "sees everything";
}

}  // namespace
}  // namespace fieldsync
