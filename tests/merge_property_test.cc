// Seeded random property test of merge: the same set of changes, applied in any order with any duplicates,
// gives the same record states; merge_record of two partial replicas equals the full merge; and for
// concurrent writers the conflict log records the same losing versions whatever the order.
//
// A failure prints its seed; rerun one case with FIELDSYNC_MERGE_SEED=<seed>.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <tuple>

#include "fieldsync/sync/merge.h"
#include "support/faulty_merge.h"

namespace fieldsync {
namespace {

using schema::EntityId;

struct Item {
  Change change;
  UserId user;
};

// Fields written per record. The contact is deletable; the account is not. Field 6 on the contact stands in
// for an append-only field of a deletable entity (merge never consults policies) so fragments meet tombstones
// too.
struct Shape {
  EntityId entity;
  uint16_t scope_field;
  std::vector<uint16_t> lww_fields;
  uint16_t append_field;
  bool deletable;
};
const Shape kContactShape{EntityId::kContact, 1, {1, 2, 3, 4}, 6, true};
const Shape kAccountShape{EntityId::kAccount, 2, {1, 2, 3, 4}, 9, false};

struct Rec {
  RecordKey key;
  const Shape* shape;
};

using States = std::map<RecordKey, RecordState>;
using Losers = std::set<std::tuple<RecordKey, uint16_t, Version>>;

std::string dump(const RecordState& r) {
  std::ostringstream o;
  o << "created=" << r.created.hlc << "/" << r.created.node << " deleted=" << r.deleted
    << " by=" << r.deleted_by << "@" << r.deleted_version.hlc << "/" << r.deleted_version.node
    << " seen=" << r.delete_seen.size();
  for (const FieldState& f : r.fields) {
    o << " [" << f.field << "=" << f.value.debug_string() << "@" << f.version.hlc << "/" << f.version.node
      << " by " << f.user << " frags=" << f.fragments.size() << "]";
  }
  return o.str();
}

class Generator {
 public:
  explicit Generator(uint64_t seed) : rng_(seed) {}

  uint64_t below(uint64_t n) { return std::uniform_int_distribution<uint64_t>(0, n - 1)(rng_); }
  bool chance(int percent) { return below(100) < static_cast<uint64_t>(percent); }
  std::mt19937_64& rng() { return rng_; }

  // Unique HLCs, handed out in random order so versions do not follow generation order.
  void reset_clock(size_t n) {
    hlcs_.clear();
    for (size_t i = 0; i < n; ++i) hlcs_.push_back(1000 + i * 7);
    std::shuffle(hlcs_.begin(), hlcs_.end(), rng_);
  }
  Hlc next_hlc() {
    Hlc h = hlcs_.back();
    hlcs_.pop_back();
    return h;
  }

  std::vector<Rec> records() {
    std::vector<Rec> recs;
    for (uint64_t i = 0; i < 3; ++i) {
      const Shape* shape = i < 2 ? &kContactShape : &kAccountShape;
      recs.push_back(Rec{
          RecordKey{shape->entity, RecordId{0x0190'0000'0000'7000 + i, 0x8000'0000'0000'0000 + i}}, shape});
    }
    return recs;
  }

  Change change(ChangeOp op, const Rec& r, uint16_t field, NodeId node) {
    Change c;
    c.op = op;
    c.entity = r.key.entity;
    c.record = r.key.id;
    c.field = field;
    c.version = Version{next_hlc(), node};
    // (std::string::append rather than "literal" + string: GCC 12 -Wrestrict false positive.)
    if (op == ChangeOp::kSet) {
      c.value = below(4) == 0 ? Value::integer(static_cast<int64_t>(below(100)))
                              : Value::text(std::string("v").append(std::to_string(below(1000))));
    }
    if (op == ChangeOp::kAppend)
      c.value = Value::text(std::string("note ").append(std::to_string(below(1000))));
    return c;
  }

  static UserId user_of(NodeId node) { return UserId("user").append(std::to_string(node)); }

  // Anything goes: any node writes anything, bases and delete views are random existing versions.
  std::vector<Item> general() {
    reset_clock(64);
    std::vector<Rec> recs = records();
    std::vector<Item> items;
    std::map<std::pair<RecordKey, uint16_t>, std::vector<Version>> written;
    size_t n = 8 + below(25);
    for (size_t i = 0; i < n; ++i) {
      const Rec& r = recs[below(recs.size())];
      NodeId node = 1 + below(4);
      uint64_t pick = below(100);
      Change c;
      if (pick < 10) {
        c = change(ChangeOp::kCreate, r, 0, node);
      } else if (pick < 25 && r.shape->deletable) {
        c = change(ChangeOp::kDelete, r, 0, node);
        for (const auto& [key, versions] : written) {
          if (key.first != r.key) continue;
          for (const Version& v : versions)
            if (chance(50)) c.seen.push_back(FieldVersion{key.second, v});
        }
      } else if (pick < 45) {
        c = change(ChangeOp::kAppend, r, r.shape->append_field, node);
        written[{r.key, c.field}].push_back(c.version);
      } else {
        uint16_t field = r.shape->lww_fields[below(r.shape->lww_fields.size())];
        c = change(ChangeOp::kSet, r, field, node);
        std::vector<Version>& prior = written[{r.key, field}];
        if (!prior.empty() && chance(60)) c.base = prior[below(prior.size())];
        prior.push_back(c.version);
      }
      items.push_back(Item{c, user_of(node)});
    }
    return items;
  }

  // Concurrent writers: every LWW write of a field comes from a different node and saw none of the others
  // (base zero); deletes come from nodes that write nothing and share one view per record, which includes a
  // field's value only if it is that field's newest. Under these conditions the conflict log must list the
  // same losing versions in every order (see merge.h); with causal chains of writes it legitimately may not.
  std::vector<Item> concurrent() {
    reset_clock(96);
    std::vector<Rec> recs = records();
    std::vector<Item> items;
    for (const Rec& r : recs) {
      if (chance(70)) items.push_back(Item{change(ChangeOp::kCreate, r, 0, 1 + below(4)), ""});
      std::vector<FieldVersion> view;
      for (uint16_t field : r.shape->lww_fields) {
        std::vector<NodeId> nodes{1, 2, 3, 4};
        std::shuffle(nodes.begin(), nodes.end(), rng_);
        size_t writes = below(5);
        Version newest;
        for (size_t w = 0; w < writes; ++w) {
          Change c = change(ChangeOp::kSet, r, field, nodes[w]);
          newest = std::max(newest, c.version);
          items.push_back(Item{c, user_of(nodes[w])});
        }
        if (writes > 0 && chance(50)) view.push_back(FieldVersion{field, newest});
      }
      size_t appends = below(4);
      std::vector<Version> fragments;
      for (size_t a = 0; a < appends; ++a) {
        NodeId node = 1 + below(4);
        Change c = change(ChangeOp::kAppend, r, r.shape->append_field, node);
        fragments.push_back(c.version);
        items.push_back(Item{c, user_of(node)});
      }
      if (!fragments.empty() && chance(50))
        view.push_back(FieldVersion{r.shape->append_field, fragments[below(fragments.size())]});
      if (r.shape->deletable) {
        size_t deletes = below(3);
        for (size_t d = 0; d < deletes; ++d) {
          NodeId node = 5 + below(2);
          Change c = change(ChangeOp::kDelete, r, 0, node);
          c.seen = view;
          items.push_back(Item{c, user_of(node)});
        }
      }
    }
    for (Item& it : items)
      if (it.user.empty()) it.user = user_of(it.change.version.node);
    return items;
  }

  // A random order of `items` in which about a quarter appear twice.
  std::vector<Item> shuffled_with_duplicates(const std::vector<Item>& items) {
    std::vector<Item> out = items;
    for (const Item& it : items)
      if (chance(25)) out.push_back(it);
    std::shuffle(out.begin(), out.end(), rng_);
    return out;
  }

 private:
  std::mt19937_64 rng_;
  std::vector<Hlc> hlcs_;
};

States fresh_states(const std::vector<Item>& items) {
  States s;
  for (const Item& it : items) {
    RecordKey key{it.change.entity, it.change.record};
    s.try_emplace(key, RecordState{key.entity, key.id});
  }
  return s;
}

States apply(const std::vector<Item>& order, States states, std::vector<ConflictRecord>* conflicts,
             MergeChangeFn merge = &merge_change) {
  for (const Item& it : order) {
    RecordState& rec = states.at(RecordKey{it.change.entity, it.change.record});
    merge(rec, it.change, it.user, conflicts);
  }
  return states;
}

Losers losers_of(const std::vector<ConflictRecord>& conflicts) {
  Losers out;
  for (const ConflictRecord& c : conflicts)
    out.insert({RecordKey{c.entity, c.record}, c.field, c.loser.version});
  return out;
}

std::string describe(const Losers& l) {
  std::ostringstream o;
  for (const auto& [key, field, version] : l)
    o << " " << key.id.lo % 16 << "." << field << "@" << version.hlc;
  return o.str();
}

// Checks one scenario; failures are reported through gtest with the seed.
void check_scenario(uint64_t seed, bool concurrent) {
  SCOPED_TRACE("seed " + std::to_string(seed) + (concurrent ? " (concurrent)" : " (general)"));
  Generator gen(seed);
  std::vector<Item> items = concurrent ? gen.concurrent() : gen.general();
  if (items.empty()) return;
  const States empty = fresh_states(items);

  std::vector<ConflictRecord> ref_conflicts;
  const States reference = apply(items, empty, &ref_conflicts);
  const Losers ref_losers = losers_of(ref_conflicts);

  for (int round = 0; round < 8; ++round) {
    std::vector<ConflictRecord> conflicts;
    States got = apply(gen.shuffled_with_duplicates(items), empty, &conflicts);
    for (const auto& [key, rec] : reference) {
      ASSERT_EQ(got.at(key), rec) << "record " << key.id.lo % 16 << "\n expected " << dump(rec)
                                  << "\n got      " << dump(got.at(key));
    }
    if (concurrent) {
      ASSERT_EQ(losers_of(conflicts), ref_losers) << "losers differ:\n expected" << describe(ref_losers)
                                                  << "\n got     " << describe(losers_of(conflicts));
    }
    // Order-independent facts about every conflict, whatever the generator.
    for (const ConflictRecord& c : conflicts) {
      const RecordState& final_state = reference.at(RecordKey{c.entity, c.record});
      if (c.kind == ConflictKind::kConcurrentWrite) {
        ASSERT_LT(c.loser.version, c.winner.version);
        ASSERT_NE(c.loser.version.node, c.winner.version.node);
        const FieldState* f = final_state.field(c.field);
        ASSERT_TRUE(f == nullptr || f->version != c.loser.version) << "a recorded loser survived";
      } else {
        ASSERT_EQ(c.kind, ConflictKind::kDeleteWins);
        ASSERT_TRUE(final_state.deleted);
        ASSERT_NE(c.loser.version.node, c.winner.version.node);
      }
    }
  }

  // Two replicas that each saw part of the changes (some both), merged record-wise, equal the full merge.
  for (int round = 0; round < 3; ++round) {
    std::vector<Item> part_a, part_b;
    for (const Item& it : items) {
      uint64_t where = gen.below(3);
      if (where != 1) part_a.push_back(it);
      if (where != 0) part_b.push_back(it);
    }
    std::shuffle(part_a.begin(), part_a.end(), gen.rng());
    std::shuffle(part_b.begin(), part_b.end(), gen.rng());
    States a = apply(part_a, empty, nullptr);
    States b = apply(part_b, empty, nullptr);
    for (const auto& [key, rec] : reference) {
      RecordState ab = a.at(key);
      merge_record(ab, b.at(key));
      ASSERT_EQ(ab, rec) << "merge_record(a, b)\n expected " << dump(rec) << "\n got      " << dump(ab);
      RecordState ba = b.at(key);
      merge_record(ba, a.at(key));
      ASSERT_EQ(ba, rec) << "merge_record(b, a)\n expected " << dump(rec) << "\n got      " << dump(ba);
      RecordState again = rec;
      ASSERT_FALSE(merge_record(again, a.at(key))) << "merging a subset into the full state changed it";
    }
  }
}

uint64_t seed_count() {
  return 400;
}

TEST(MergeProperty, AnyOrderAnyDuplicatesSameState) {
  if (const char* s = std::getenv("FIELDSYNC_MERGE_SEED")) {
    check_scenario(std::strtoull(s, nullptr, 10), false);
    return;
  }
  for (uint64_t seed = 1; seed <= seed_count(); ++seed) {
    check_scenario(seed, false);
    if (HasFatalFailure()) return;
  }
}

TEST(MergeProperty, ConcurrentWritersSameConflictLog) {
  if (const char* s = std::getenv("FIELDSYNC_MERGE_SEED")) {
    check_scenario(std::strtoull(s, nullptr, 10), true);
    return;
  }
  for (uint64_t seed = 1; seed <= seed_count(); ++seed) {
    check_scenario(seed, true);
    if (HasFatalFailure()) return;
  }
}

// The property test must be able to fail: with a deliberate merge bug it finds a divergence.
TEST(MergeProperty, DetectsArrivalOrderBug) {
  const MergeChangeFn faulty = testing_support::merge_with(testing_support::MergeFault::kArrivalOrderWins);
  bool diverged = false;
  for (uint64_t seed = 1; seed <= 50 && !diverged; ++seed) {
    Generator gen(seed);
    std::vector<Item> items = gen.general();
    const States empty = fresh_states(items);
    diverged = apply(items, empty, nullptr, faulty) !=
               apply(gen.shuffled_with_duplicates(items), empty, nullptr, faulty);
  }
  EXPECT_TRUE(diverged);
}

}  // namespace
}  // namespace fieldsync
