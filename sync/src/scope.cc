// Scope resolution: which territory, owner or catalogue a record belongs to, following parent links.
#include "fieldsync/sync/scope.h"

#include <algorithm>
#include <set>

namespace fieldsync {
namespace {

// The raw value of the scope field. RecordState::get() hides a tombstone's fields, but tombstones keep
// exactly this field so the delete still reaches the devices that hold the record.
const Value* scope_value(const RecordState& record, uint16_t field) {
  const FieldState* f = record.field(field);
  if (f == nullptr || f->value.kind() != Value::Kind::kText || f->value.as_text().empty()) return nullptr;
  return &f->value;
}

}  // namespace

ScopeKey resolve_scope(const RecordState& record, RecordReader& reader) {
  const ScopeKey unresolved{ScopeKey::Kind::kUnresolved, {}};
  const RecordState* current = &record;
  std::optional<RecordState> parent;
  for (int hops = 0;; ++hops) {
    const schema::EntityDef* e = schema::entity(current->entity);
    if (e == nullptr) return unresolved;
    if (e->scope.kind == schema::ScopeKind::kGlobal) return ScopeKey{ScopeKey::Kind::kGlobal, {}};
    const Value* v = scope_value(*current, e->scope.field);
    if (v == nullptr) return unresolved;
    switch (e->scope.kind) {
      case schema::ScopeKind::kTerritory:
        return ScopeKey{ScopeKey::Kind::kTerritory, v->as_text()};
      case schema::ScopeKind::kOwner:
        return ScopeKey{ScopeKey::Kind::kOwner, v->as_text()};
      case schema::ScopeKind::kParent:
        break;
      case schema::ScopeKind::kGlobal:
        break;  // handled above
    }
    if (hops == kMaxScopeHops) return unresolved;
    std::optional<RecordId> id = RecordId::parse(v->as_text());
    if (!id) return unresolved;
    std::optional<RecordState> next = reader.load(e->scope.parent, *id);
    if (!next || next->entity != e->scope.parent) return unresolved;
    parent = std::move(next);
    current = &*parent;
  }
}

bool can_see(const Principal& who, const ScopeKey& scope) {
  if (who.role == schema::Role::kHeadOffice) return true;
  auto contains = [](const auto& list, const std::string& v) {
    return std::find(list.begin(), list.end(), v) != list.end();
  };
  switch (scope.kind) {
    case ScopeKey::Kind::kGlobal:
      return true;
    case ScopeKey::Kind::kTerritory:
      return contains(who.territories, scope.value);
    case ScopeKey::Kind::kOwner:
      return scope.value == who.user ||
             (who.role >= schema::Role::kManager && contains(who.team, scope.value));
    case ScopeKey::Kind::kUnresolved:
      return false;
  }
  return false;
}

std::optional<std::vector<ScopeKey>> visible_scopes(const Principal& who) {
  if (who.role == schema::Role::kHeadOffice) return std::nullopt;
  std::vector<ScopeKey> out{ScopeKey{ScopeKey::Kind::kGlobal, {}},
                            ScopeKey{ScopeKey::Kind::kOwner, who.user}};
  for (const std::string& t : who.territories) out.push_back(ScopeKey{ScopeKey::Kind::kTerritory, t});
  if (who.role >= schema::Role::kManager)
    for (const UserId& member : who.team) out.push_back(ScopeKey{ScopeKey::Kind::kOwner, member});
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

std::vector<ScopeKey> log_scopes(const ServerTxn& txn, const std::vector<ConflictRecord>& conflicts,
                                 RecordReader& reader,
                                 const std::vector<std::pair<RecordKey, ScopeKey>>& resolved) {
  std::vector<const std::pair<RecordKey, ScopeKey>*> known;  // sorted by key, for lookups
  known.reserve(resolved.size());
  for (const auto& r : resolved) known.push_back(&r);
  std::sort(known.begin(), known.end(), [](const auto* a, const auto* b) { return a->first < b->first; });
  std::vector<ScopeKey> out;
  std::set<RecordKey> seen;
  auto record_scope = [&](EntityId entity, const RecordId& id) {
    const RecordKey key{entity, id};
    if (!seen.insert(key).second) return;
    auto it = std::lower_bound(known.begin(), known.end(), key,
                               [](const auto* r, const RecordKey& k) { return r->first < k; });
    if (it != known.end() && (*it)->first == key) {
      out.push_back((*it)->second);
    } else if (std::optional<RecordState> rec = reader.load(entity, id)) {
      out.push_back(resolve_scope(*rec, reader));
    } else {
      out.push_back(ScopeKey{});  // unknown entity or gone: head office only (dropped below)
    }
  };
  for (const Change& c : txn.changes) record_scope(c.entity, c.record);
  // A write that lost is not among the changes, but its conflict is on the record.
  for (const ConflictRecord& c : conflicts) record_scope(c.entity, c.record);
  for (const ScopeMove& m : txn.moves) {
    out.push_back(m.from);
    out.push_back(m.to);
  }
  for (const ConflictRecord& c : conflicts) {
    for (const UserId* u : {&c.winner.user, &c.loser.user})
      if (!u->empty()) out.push_back(ScopeKey{ScopeKey::Kind::kOwner, *u});
  }
  // Only head office sees kUnresolved, and head office reads the whole log.
  std::erase_if(out, [](const ScopeKey& k) { return k.kind == ScopeKey::Kind::kUnresolved; });
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

}  // namespace fieldsync
