// Field-level merge. Every function here depends only on its arguments, so
// the server and every device reach the same record state from the same set of changes, in any order, with
// any duplicates.
#include "fieldsync/sync/merge.h"

#include <algorithm>

namespace fieldsync {
namespace {

// The one field a tombstone keeps: the entity's scope-rule field, so the record stays routable to the devices
// that must learn of the delete. For deletable entities it is immutable. 0 (no field has id 0) when there is
// none.
uint16_t kept_field(EntityId entity) {
  const schema::EntityDef* e = schema::entity(entity);
  if (e == nullptr || e->scope.kind == schema::ScopeKind::kGlobal) return 0;
  return e->scope.field;
}

// Whether the deleter had seen this field version. A set value must match exactly; for append-only fields the
// deleter records the field's version (its newest fragment), so every fragment at or below it counts as seen.
// The answer depends only on the write and the delete, which is what makes the conflict log the same
// whichever of the two arrives first.
bool seen_by_delete(const std::vector<FieldVersion>& seen, uint16_t field, const Version& v, bool append) {
  for (const FieldVersion& s : seen) {
    if (s.field != field) continue;
    if (append ? v <= s.version : v == s.version) return true;
  }
  return false;
}

ConflictRecord make_conflict(const RecordState& rec, uint16_t field, ConflictKind kind, ConflictSide winner,
                             ConflictSide loser) {
  ConflictRecord c;
  c.kind = kind;
  c.entity = rec.entity;
  c.record = rec.id;
  c.field = field;
  c.winner = std::move(winner);
  c.loser = std::move(loser);
  c.rule = kind == ConflictKind::kDeleteWins ? "delete_wins" : "last_writer_wins";
  return c;
}

// A write (or fragment) that a tombstone discards, recorded unless the deleter had seen it or wrote it
// itself.
void note_write_after_delete(const RecordState& rec, uint16_t field, ConflictSide write, bool append,
                             std::vector<ConflictRecord>* conflicts) {
  if (conflicts == nullptr) return;
  if (write.version.node == rec.deleted_version.node) return;
  if (seen_by_delete(rec.delete_seen, field, write.version, append)) return;
  conflicts->push_back(make_conflict(rec, field, ConflictKind::kDeleteWins,
                                     ConflictSide{Value::null(), rec.deleted_version, rec.deleted_by},
                                     std::move(write)));
}

// Derived parts of an append-only field: joined text, newest fragment's version and writer.
void refresh_append_field(FieldState& f) {
  f.value = Value::text(join_fragments(f.fragments));
  f.version = f.fragments.empty() ? Version{} : f.fragments.back().version;
  f.user = f.fragments.empty() ? UserId{} : f.fragments.back().user;
}

bool merge_create(RecordState& rec, const Change& change) {
  if (change.version <= rec.created) return false;
  rec.created = change.version;
  return true;
}

bool merge_set(RecordState& rec, const Change& change, const UserId& user,
               std::vector<ConflictRecord>* conflicts) {
  // The scope field survives deletion, so it merges as if the record were live; that keeps the tombstone's
  // scope the same whether its writes arrive before or after the delete.
  if (rec.deleted && change.field != kept_field(rec.entity)) {
    note_write_after_delete(rec, change.field, ConflictSide{change.value, change.version, user}, false,
                            conflicts);
    return false;
  }

  const FieldState* current = rec.field(change.field);
  const Version current_version = current != nullptr ? current->version : Version{};
  if (change.version == current_version) return false;  // the same write again

  if (change.version < current_version) {
    // The write loses. Same-node writes are sequential (the later one saw the earlier), so only another
    // node's newer value makes this a conflict.
    if (conflicts != nullptr && change.version.node != current_version.node) {
      conflicts->push_back(make_conflict(rec, change.field, ConflictKind::kConcurrentWrite,
                                         ConflictSide{current->value, current->version, current->user},
                                         ConflictSide{change.value, change.version, user}));
    }
    return false;
  }

  // The write wins. The value it replaces is a conflict if its writer had not seen it.
  if (conflicts != nullptr && !current_version.is_zero() && change.base != current_version &&
      current_version.node != change.version.node) {
    conflicts->push_back(make_conflict(rec, change.field, ConflictKind::kConcurrentWrite,
                                       ConflictSide{change.value, change.version, user},
                                       ConflictSide{current->value, current->version, current->user}));
  }
  FieldState* f = rec.mutable_field(change.field);
  f->value = change.value;
  f->version = change.version;
  f->user = user;
  return true;
}

bool merge_append(RecordState& rec, const Change& change, const UserId& user,
                  std::vector<ConflictRecord>* conflicts) {
  if (rec.deleted && change.field != kept_field(rec.entity)) {
    note_write_after_delete(rec, change.field, ConflictSide{change.value, change.version, user}, true,
                            conflicts);
    return false;
  }
  Fragment fragment{change.version, user, change.value.is_null() ? std::string() : change.value.as_text()};
  FieldState* f = rec.mutable_field(change.field);
  auto it = std::lower_bound(f->fragments.begin(), f->fragments.end(), change.version,
                             [](const Fragment& fr, const Version& v) { return fr.version < v; });
  if (it != f->fragments.end() && it->version == change.version) return false;  // the same fragment again
  f->fragments.insert(it, std::move(fragment));
  refresh_append_field(*f);
  return true;
}

// Drops every field but the kept one. Returns true if anything was dropped.
bool clear_tombstone_fields(RecordState& rec) {
  const uint16_t kept = kept_field(rec.entity);
  size_t before = rec.fields.size();
  std::erase_if(rec.fields, [kept](const FieldState& f) { return f.field != kept; });
  return rec.fields.size() != before;
}

bool merge_delete(RecordState& rec, const Change& change, const UserId& user,
                  std::vector<ConflictRecord>* conflicts) {
  if (rec.deleted) {
    // Concurrent deletes: the newer tombstone's details win; the record was already cleared.
    if (change.version <= rec.deleted_version) return false;
    rec.deleted_version = change.version;
    rec.deleted_by = user;
    rec.delete_seen = change.seen;
    return true;
  }

  rec.deleted = true;
  rec.deleted_version = change.version;
  rec.deleted_by = user;
  rec.delete_seen = change.seen;

  if (conflicts != nullptr) {
    const uint16_t kept = kept_field(rec.entity);
    for (const FieldState& f : rec.fields) {
      if (f.field == kept) continue;
      if (!f.fragments.empty()) {
        // Each fragment is judged alone, exactly as it would be had it arrived after the delete.
        for (const Fragment& fr : f.fragments)
          note_write_after_delete(rec, f.field, ConflictSide{Value::text(fr.text), fr.version, fr.user}, true,
                                  conflicts);
      } else if (!f.version.is_zero()) {
        note_write_after_delete(rec, f.field, ConflictSide{f.value, f.version, f.user}, false, conflicts);
      }
    }
  }
  clear_tombstone_fields(rec);
  return true;
}

// Union of two version-sorted fragment lists (no duplicates) into `into`. Returns true if `into` grew.
bool union_fragments(std::vector<Fragment>& into, const std::vector<Fragment>& from) {
  std::vector<Fragment> merged;
  merged.reserve(into.size() + from.size());
  auto a = into.begin();
  auto b = from.begin();
  bool grew = false;
  while (a != into.end() || b != from.end()) {
    if (b == from.end() || (a != into.end() && a->version < b->version)) {
      merged.push_back(std::move(*a++));
    } else if (a == into.end() || b->version < a->version) {
      merged.push_back(*b++);
      grew = true;
    } else {
      merged.push_back(std::move(*a++));
      ++b;
    }
  }
  into = std::move(merged);
  return grew;
}

}  // namespace

bool merge_change(RecordState& rec, const Change& change, const UserId& user,
                  std::vector<ConflictRecord>* conflicts) {
  switch (change.op) {
    case ChangeOp::kCreate:
      return merge_create(rec, change);
    case ChangeOp::kSet:
      return merge_set(rec, change, user, conflicts);
    case ChangeOp::kAppend:
      return merge_append(rec, change, user, conflicts);
    case ChangeOp::kDelete:
      return merge_delete(rec, change, user, conflicts);
  }
  return false;
}

bool merge_record(RecordState& local, const RecordState& remote) {
  bool changed = false;
  if (local.entity == EntityId::kNone && local.id.is_nil()) {
    local.entity = remote.entity;
    local.id = remote.id;
    changed = true;
  }
  if (remote.created > local.created) {
    local.created = remote.created;
    changed = true;
  }
  if (remote.deleted && (!local.deleted || remote.deleted_version > local.deleted_version)) {
    local.deleted = true;
    local.deleted_version = remote.deleted_version;
    local.deleted_by = remote.deleted_by;
    local.delete_seen = remote.delete_seen;
    changed = true;
  }

  const uint16_t kept = kept_field(local.entity);
  for (const FieldState& rf : remote.fields) {
    if (local.deleted && rf.field != kept) continue;  // cleared below anyway
    if (rf.fragments.empty() && rf.version.is_zero()) continue;
    const FieldState* existing = local.field(rf.field);
    if (existing == nullptr) {
      FieldState* lf = local.mutable_field(rf.field);
      *lf = rf;
      changed = true;
    } else if (!rf.fragments.empty() || !existing->fragments.empty()) {
      FieldState* lf = local.mutable_field(rf.field);
      if (union_fragments(lf->fragments, rf.fragments)) {
        refresh_append_field(*lf);
        changed = true;
      }
    } else if (rf.version > existing->version) {
      FieldState* lf = local.mutable_field(rf.field);
      lf->value = rf.value;
      lf->version = rf.version;
      lf->user = rf.user;
      changed = true;
    }
  }
  if (local.deleted && clear_tombstone_fields(local)) changed = true;
  return changed;
}

std::string join_fragments(const std::vector<Fragment>& fragments) {
  std::string out;
  size_t size = fragments.empty() ? 0 : fragments.size() - 1;
  for (const Fragment& f : fragments) size += f.text.size();
  out.reserve(size);
  for (size_t i = 0; i < fragments.size(); ++i) {
    if (i > 0) out += '\n';
    out += fragments[i].text;
  }
  return out;
}

}  // namespace fieldsync
