// The server's rules for a client transaction: model validation, permissions, scope, domain rules (order
// locks, status transitions, required fields, event times), merge, and scheduling-conflict detection.
#include "fieldsync/sync/rules.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <string>

#include "fieldsync/sync/merge.h"
#include "fieldsync/sync/tuning.h"

namespace fieldsync {
namespace {

using schema::EntityDef;
using schema::FieldDef;
using schema::FieldType;
using schema::MergePolicy;
using schema::Role;

// "order 0190...-...: field status" — every rejection names what it is about.
std::string describe(EntityId entity, const RecordId& id, uint16_t field = 0) {
  const EntityDef* e = schema::entity(entity);
  std::string s =
      e != nullptr ? std::string(e->name) : "entity " + std::to_string(static_cast<unsigned>(entity));
  s += ' ';
  s += id.to_string();
  if (field != 0) {
    const FieldDef* f = e != nullptr ? e->field(field) : nullptr;
    s += ": field ";
    s += f != nullptr ? std::string(f->name) : std::to_string(field);
  }
  return s;
}

Status reject(ErrorCode code, const Change& c, std::string_view why) {
  return Status(code, describe(c.entity, c.record, c.field) + ": " + std::string(why));
}

// A record the store (or this transaction) knows anything about, tombstones included.
bool exists(const RecordState& r) {
  return !r.created.is_zero() || !r.fields.empty() || r.deleted;
}

std::string_view role_name(Role r) {
  return schema::to_string(r);
}

// The field's value rule (schema::ValueRule): currency codes, e-mail syntax, money, quantity and discount
// ranges, coordinates. The value already has the field's type.
Status check_value_rule(const Change& c, const FieldDef& f) {
  const Value& v = c.value;
  auto out_of_range = [&](const std::string& min, const std::string& max) {
    return reject(ErrorCode::kValueInvalid, c,
                  std::string(schema::to_string(f.value_rule)) + " must be " + min + ".." + max + ", got " +
                      v.debug_string());
  };
  switch (v.kind()) {
    case Value::Kind::kText:
      if (std::string_view why = schema::check_text_rule(f.value_rule, v.as_text()); !why.empty())
        return reject(ErrorCode::kValueInvalid, c, std::string(why) + ", got " + v.debug_string());
      break;
    case Value::Kind::kInt:
      if (std::optional<schema::IntRange> r = schema::int_range(f.value_rule);
          r && (v.as_int() < r->min || v.as_int() > r->max))
        return out_of_range(std::to_string(r->min), std::to_string(r->max));
      break;
    case Value::Kind::kReal:
      // The ranges are whole degrees: printed as such.
      if (std::optional<schema::RealRange> r = schema::real_range(f.value_rule);
          r && (v.as_real() < r->min || v.as_real() > r->max))
        return out_of_range(std::to_string(static_cast<int64_t>(r->min)),
                            std::to_string(static_cast<int64_t>(r->max)));
      break;
    default:
      break;
  }
  return Status::ok();
}

Status check_value(const Change& c, const FieldDef& f) {
  const Value& v = c.value;
  if (v.is_null()) {
    if (c.op == ChangeOp::kAppend)
      return reject(ErrorCode::kValueInvalid, c, "an append needs a text fragment");
    if (!f.nullable) return reject(ErrorCode::kNullViolation, c, "may not be null");
    return Status::ok();
  }
  if (v.kind() != storage_kind(f.type)) {
    return reject(ErrorCode::kTypeMismatch, c,
                  "expects " + std::string(schema::to_string(f.type)) + ", got " + v.debug_string());
  }
  switch (f.type) {
    case FieldType::kText: {
      size_t max = f.max_length > 0 ? static_cast<size_t>(f.max_length) : tuning::kMaxTextBytes;
      if (v.as_text().size() > max)
        return reject(
            ErrorCode::kValueInvalid, c,
            "text of " + std::to_string(v.as_text().size()) + " bytes exceeds " + std::to_string(max));
      // Blank text in a required field is a name nobody can read, and a blank fragment adds nothing.
      const bool blank = v.as_text().find_first_not_of(" \t\r\n") == std::string::npos;
      if (blank && (!f.nullable || c.op == ChangeOp::kAppend))
        return reject(ErrorCode::kNullViolation, c, "may not be blank");
      break;
    }
    case FieldType::kEnum: {
      if (std::find(f.enum_values.begin(), f.enum_values.end(), v.as_text()) == f.enum_values.end())
        return reject(ErrorCode::kValueInvalid, c, "not an allowed value: " + v.debug_string());
      break;
    }
    case FieldType::kId:
      if (!RecordId::parse(v.as_text())) return reject(ErrorCode::kValueInvalid, c, "not a record id");
      break;
    case FieldType::kUserId:
      if (v.as_text().empty() || v.as_text().size() > tuning::kMaxIdentifierBytes)
        return reject(ErrorCode::kValueInvalid, c,
                      "user id must be 1.." + std::to_string(tuning::kMaxIdentifierBytes) + " bytes");
      break;
    case FieldType::kReal:
      // NaN would never compare equal to itself, so replicas holding it could never be shown to agree.
      if (!std::isfinite(v.as_real())) return reject(ErrorCode::kValueInvalid, c, "not a finite number");
      break;
    case FieldType::kTimestamp:
      if (v.as_int() <= 0) return reject(ErrorCode::kValueInvalid, c, "not a time after 1970");
      break;
    case FieldType::kInt:
    case FieldType::kBool:
      break;
  }
  return check_value_rule(c, f);
}

// The status value of a record (empty if unset or tombstoned).
std::string_view status_of(const RecordState& r, const EntityDef& e) {
  if (e.status_field == 0) return {};
  const Value& v = r.get(e.status_field);
  return v.kind() == Value::Kind::kText ? std::string_view(v.as_text()) : std::string_view();
}

bool is_locked(const RecordState& r, const EntityDef& e) {
  std::string_view st = status_of(r, e);
  return !st.empty() &&
         std::find(e.locked_statuses.begin(), e.locked_statuses.end(), st) != e.locked_statuses.end();
}

// The raw scope-field value (tombstones keep it).
const Value* raw_field(const RecordState& r, uint16_t field) {
  const FieldState* f = r.field(field);
  return f != nullptr ? &f->value : nullptr;
}

// Records of this transaction layered over the store's: loaded on first touch, then read and merged here, so
// scope resolution and parent lookups see what the transaction has done so far (an order created with its
// lines).
class TxnOverlay final : public CentralReader {
 public:
  struct Entry {
    bool existed = false;  // the store had it before the transaction
    RecordState state;     // the state within the transaction
    bool touched = false;  // named by a change (not just read as a parent)
    bool created_here = false;
    bool schedule_changed = false;  // created, or owner/start/end/status altered: look for overlaps
    ScopeKey scope_before;          // if it existed: its scope before the transaction
  };

  explicit TxnOverlay(CentralReader& base) : base_(base) {}

  Entry& entry(const RecordKey& key) {
    auto it = entries_.find(key);
    if (it == entries_.end()) {
      Entry e;
      std::optional<RecordState> stored = base_.load(key.entity, key.id);
      e.existed = stored && exists(*stored);
      if (e.existed) {
        e.state = std::move(*stored);
      } else {
        e.state.entity = key.entity;
        e.state.id = key.id;
      }
      it = entries_.emplace(key, std::move(e)).first;
    }
    return it->second;
  }

  std::optional<RecordState> load(EntityId entity, const RecordId& id) override {
    const Entry& e = entry(RecordKey{entity, id});
    if (!exists(e.state)) return std::nullopt;
    return e.state;
  }

  // The store's overlapping events with this transaction's versions substituted, plus the transaction's own.
  std::vector<RecordState> events_overlapping(const UserId& owner, int64_t start_ms,
                                              int64_t end_ms) override {
    std::vector<RecordState> out;
    std::vector<RecordState> committed = base_.events_overlapping(owner, start_ms, end_ms);
    if (committed.size() > tuning::kMaxOverlapScan) committed.resize(tuning::kMaxOverlapScan);
    for (RecordState& r : committed) {
      if (entries_.count(RecordKey{r.entity, r.id}) == 0) out.push_back(std::move(r));
    }
    for (const auto& [key, e] : entries_) {
      if (key.entity == EntityId::kCalendarEvent && overlaps(e.state, owner, start_ms, end_ms))
        out.push_back(e.state);
    }
    return out;
  }

  // A live scheduled event of `owner` overlapping [start_ms, end_ms).
  static bool overlaps(const RecordState& r, const UserId& owner, int64_t start_ms, int64_t end_ms) {
    using namespace schema::fields;
    if (r.deleted) return false;
    const Value& o = r.get(kEventOwner);
    const Value& st = r.get(kEventStatus);
    const Value& s = r.get(kEventStart);
    const Value& en = r.get(kEventEnd);
    if (o.kind() != Value::Kind::kText || o.as_text() != owner) return false;
    if (st.kind() != Value::Kind::kText || st.as_text() != "scheduled") return false;
    if (s.kind() != Value::Kind::kInt || en.kind() != Value::Kind::kInt) return false;
    return s.as_int() < end_ms && en.as_int() > start_ms;
  }

 private:
  CentralReader& base_;
  std::map<RecordKey, Entry> entries_;
};

// Checks a status change that would take effect: in the creating transaction it must start from the first
// status (or one transition the role may make from it); later it must follow a transition the role may make.
Status check_transition(const Change& c, const EntityDef& e, const FieldDef& f, const TxnOverlay::Entry& en,
                        const Principal& who) {
  const FieldState* current = en.state.deleted ? nullptr : en.state.field(c.field);
  const bool wins = !en.state.deleted && (current == nullptr || c.version > current->version);
  if (!wins || c.value.kind() != Value::Kind::kText)
    return Status::ok();  // a losing write is only a conflict
  const std::string& to = c.value.as_text();
  std::string_view from;
  if (en.created_here || current == nullptr || current->value.kind() != Value::Kind::kText) {
    if (f.enum_values.empty()) return Status::ok();
    from = f.enum_values.front();
    if (to == from) return Status::ok();
  } else {
    from = current->value.as_text();
  }
  std::optional<Role> min_role = schema::transition_role(e, from, to);
  if (!min_role)
    return reject(ErrorCode::kInvalidTransition, c, "no transition from " + std::string(from) + " to " + to);
  if (who.role < *min_role) {
    return reject(ErrorCode::kPermissionDenied, c,
                  std::string(role_name(who.role)) + " may not move " + std::string(from) + " to " + to +
                      " (needs " + std::string(role_name(*min_role)) + ")");
  }
  return Status::ok();
}

// Order locks: a locked record only accepts a status transition its writer may make (head office fulfils or
// cancels an approved order); a child of a locked record (a line of an approved order) accepts nothing.
Status check_locks(const Change& c, const EntityDef& e, const RecordState& rec, TxnOverlay& overlay,
                   const Principal& who) {
  if (!e.locked_statuses.empty() && is_locked(rec, e)) {
    std::string_view st = status_of(rec, e);
    bool allowed = false;
    if (c.op == ChangeOp::kSet && c.field == e.status_field && c.value.kind() == Value::Kind::kText &&
        c.value.as_text() != st) {
      std::optional<Role> min_role = schema::transition_role(e, st, c.value.as_text());
      allowed = min_role && who.role >= *min_role;
    }
    if (!allowed) return reject(ErrorCode::kOrderLocked, c, std::string(e.name) + " is " + std::string(st));
  }

  if (e.scope.kind != schema::ScopeKind::kParent) return Status::ok();
  const EntityDef* parent_def = schema::entity(e.scope.parent);
  if (parent_def == nullptr || parent_def->locks_children != e.id) return Status::ok();
  const Value* ref =
      (c.op == ChangeOp::kSet && c.field == e.scope.field) ? &c.value : raw_field(rec, e.scope.field);
  if (ref == nullptr || ref->kind() != Value::Kind::kText) return Status::ok();
  std::optional<RecordId> parent_id = RecordId::parse(ref->as_text());
  if (!parent_id) return Status::ok();
  std::optional<RecordState> parent = overlay.load(parent_def->id, *parent_id);
  if (parent && is_locked(*parent, *parent_def)) {
    return reject(ErrorCode::kOrderLocked, c,
                  std::string(parent_def->name) + " " + parent_id->to_string() + " is " +
                      std::string(status_of(*parent, *parent_def)));
  }
  return Status::ok();
}

// Whom a user-id field may name (schema::UserRef): head office anyone, otherwise the writer, and for a
// kWriterOrTeam field a manager also a rep of their team. Without it a rep could file records in a
// colleague's or head office's name, and they would show up in that person's view.
Status check_user_ref(const Change& c, const FieldDef& f, const Principal& who) {
  if (f.user_ref == schema::UserRef::kNotAUser || c.value.kind() != Value::Kind::kText) return Status::ok();
  if (who.role == Role::kHeadOffice) return Status::ok();
  const std::string& named = c.value.as_text();
  if (named == who.user) return Status::ok();
  const bool team_allowed = f.user_ref == schema::UserRef::kWriterOrTeam && who.role >= Role::kManager;
  if (team_allowed && std::find(who.team.begin(), who.team.end(), named) != who.team.end())
    return Status::ok();
  return reject(ErrorCode::kPermissionDenied, c,
                std::string(role_name(who.role)) + " " + who.user + " may not name " + named +
                    (team_allowed ? " (only themselves or a rep of their team)" : " (only themselves)"));
}

// A record reference that is not the record's own scope field (schema::FieldDef::ref; the scope parent is the
// scope rules' business): an event's account, a visit's event, a line's or price entry's product. The record
// named must exist in the store or this transaction and be visible to the writer, or a rep could link her
// record to another territory's account or a colleague's event, leaking the link into that record's reports
// and devices and attaching data to a record she cannot see. A record the writer cannot see and one that does
// not exist get the same answer (out_of_scope), so a probe learns nothing; record_not_found only where the
// writer sees every record of the entity (head office, the global catalogue). A tombstone counts as existing
// and is judged on its kept scope field: linking to a record deleted meanwhile ends as linking before the
// delete would have (deletes do not cascade), and an offline writer's transaction is not lost over the race.
Status check_record_ref(const Change& c, const EntityDef& e, const FieldDef& f, const Principal& who,
                        TxnOverlay& overlay) {
  if (f.type != FieldType::kId || f.ref == EntityId::kNone || c.value.kind() != Value::Kind::kText)
    return Status::ok();
  if (e.scope.kind == schema::ScopeKind::kParent && e.scope.field == f.id) return Status::ok();
  std::optional<RecordId> id = RecordId::parse(c.value.as_text());
  if (!id) return Status::ok();  // validate_change already refused it
  const EntityDef& target = schema::entity_ref(f.ref);
  std::optional<RecordState> rec = overlay.load(f.ref, *id);
  if (rec && can_see(who, resolve_scope(*rec, overlay))) return Status::ok();
  const bool sees_all = who.role == Role::kHeadOffice || target.scope.kind == schema::ScopeKind::kGlobal;
  if (sees_all && !rec)
    return reject(ErrorCode::kRecordNotFound, c,
                  "refers to " + std::string(target.name) + " " + id->to_string() + ", which does not exist");
  return reject(ErrorCode::kOutOfScope, c,
                "refers to " + std::string(target.name) + " " + id->to_string() + ", which is not in " +
                    who.user + "'s scope");
}

ConflictSide event_side(const RecordState& r) {
  const FieldState* f = r.field(schema::fields::kEventStart);
  return f != nullptr ? ConflictSide{f->value, f->version, f->user} : ConflictSide{};
}

// ---- Domain rules of leads and service cases (check_domain_rules)

// What one transaction does to one record: created, the last value it sets per field.
struct Touch {
  bool created = false;
  std::map<uint16_t, const Change*> sets;
};

class TxnView {
 public:
  TxnView(std::span<const Change> changes, RecordReader& before) : before_(before) {
    for (const Change& c : changes) {
      Touch& t = touches_[RecordKey{c.entity, c.record}];
      if (c.op == ChangeOp::kCreate) t.created = true;
      if (c.op == ChangeOp::kSet) t.sets[c.field] = &c;
    }
  }
  const std::map<RecordKey, Touch>& touches() const { return touches_; }

  // The record before the transaction (nullopt if it did not exist then).
  const std::optional<RecordState>& before(const RecordKey& key) {
    auto it = before_cache_.find(key);
    if (it == before_cache_.end()) {
      std::optional<RecordState> r = before_.load(key.entity, key.id);
      if (r && !exists(*r)) r.reset();
      it = before_cache_.emplace(key, std::move(r)).first;
    }
    return it->second;
  }
  bool created_here(const RecordKey& key) const {
    auto it = touches_.find(key);
    return it != touches_.end() && it->second.created;
  }
  // The value set in the transaction (nullptr if it sets none).
  const Value* set_value(const RecordKey& key, uint16_t field) const {
    auto it = touches_.find(key);
    if (it == touches_.end()) return nullptr;
    auto f = it->second.sets.find(field);
    return f == it->second.sets.end() ? nullptr : &f->second->value;
  }
  // The field once the transaction is applied: its own value if it sets one, else the stored one.
  Value after(const RecordKey& key, uint16_t field) {
    if (const Value* v = set_value(key, field)) return *v;
    const std::optional<RecordState>& r = before(key);
    return r && !r->deleted ? r->get(field) : Value::null();
  }
  // As after(), but a tombstone's kept value counts (a link made offline to a contact deleted meanwhile is
  // judged as it would have been before the delete, as the reference rule judges it).
  Value kept(const RecordKey& key, uint16_t field) {
    if (const Value* v = set_value(key, field)) return *v;
    const std::optional<RecordState>& r = before(key);
    const FieldState* f = r ? r->field(field) : nullptr;
    return f != nullptr ? f->value : Value::null();
  }
  bool exists_after(const RecordKey& key) {
    if (created_here(key)) return true;
    const std::optional<RecordState>& r = before(key);
    return r && !r->deleted;
  }

 private:
  RecordReader& before_;
  std::map<RecordKey, Touch> touches_;
  std::map<RecordKey, std::optional<RecordState>> before_cache_;
};

std::string text_of(const Value& v) {
  return v.kind() == Value::Kind::kText ? v.as_text() : std::string();
}

bool blank(const Value& v) {
  return v.kind() != Value::Kind::kText || v.as_text().find_first_not_of(" \t\r\n") == std::string::npos;
}

Status domain_error(ErrorCode code, const RecordKey& key, uint16_t field, const std::string& why) {
  return Status(code, describe(key.entity, key.id, field) + ": " + why);
}

Status check_lead(TxnView& view, const RecordKey& lead, const Touch& t) {
  using namespace schema::fields;
  const uint16_t status = kLeadStatus;
  const uint16_t links[] = {kLeadConvertedAccount, kLeadConvertedContact, kLeadConvertedOpportunity,
                            kLeadConvertedAt};
  const Value* to = view.set_value(lead, status);
  const std::string before_status =
      view.before(lead) && !view.created_here(lead) ? text_of(view.before(lead)->get(status)) : std::string();
  const bool converting = to != nullptr && text_of(*to) == "converted" && before_status != "converted";

  if (!converting) {
    for (uint16_t f : links)
      if (t.sets.count(f) != 0)
        return domain_error(ErrorCode::kImmutableField, lead, f,
                            "set only in the transaction that converts the lead");
  } else {
    for (uint16_t f : links) {
      const Value* v = view.set_value(lead, f);
      if (v == nullptr || v->is_null())
        return domain_error(ErrorCode::kMissingField, lead, f, "a conversion sets it");
    }
    // Each link names a record of this transaction or one that exists; contact and deal hang off the account.
    const RecordId* ids[3] = {};
    std::optional<RecordId> parsed[3];
    const EntityId targets[3] = {EntityId::kAccount, EntityId::kContact, EntityId::kOpportunity};
    for (int i = 0; i < 3; ++i) {
      parsed[i] = RecordId::parse(text_of(*view.set_value(lead, links[i])));
      if (!parsed[i]) return domain_error(ErrorCode::kValueInvalid, lead, links[i], "not a record id");
      ids[i] = &*parsed[i];
      if (!view.exists_after(RecordKey{targets[i], *ids[i]}))
        return domain_error(ErrorCode::kRecordNotFound, lead, links[i],
                            "refers to " + std::string(schema::entity_ref(targets[i]).name) + " " +
                                ids[i]->to_string() +
                                ", which is neither created by the conversion nor exists");
    }
    const std::string account = ids[0]->to_string();
    // The contact's and the deal's account is their scope parent.
    const Value contact_account = view.after(RecordKey{EntityId::kContact, *ids[1]},
                                             schema::entity_ref(EntityId::kContact).scope.field);
    if (text_of(contact_account) != account)
      return domain_error(ErrorCode::kValueInvalid, lead, links[1],
                          "the contact belongs to another account than converted_account_id");
    const Value opp_account = view.after(RecordKey{EntityId::kOpportunity, *ids[2]},
                                         schema::entity_ref(EntityId::kOpportunity).scope.field);
    if (text_of(opp_account) != account)
      return domain_error(ErrorCode::kValueInvalid, lead, links[2],
                          "the opportunity belongs to another account than converted_account_id");
  }

  if (to != nullptr && text_of(*to) == "disqualified" && before_status != "disqualified") {
    const uint16_t reason = kLeadDisqualifyReason;
    const Value* v = view.set_value(lead, reason);
    if (v == nullptr || blank(*v))
      return domain_error(ErrorCode::kMissingField, lead, reason, "disqualifying a lead needs a reason");
  }
  return Status::ok();
}

// A case's contact and asset are the case's account's: a complaint filed against another customer's machine
// would put its warranty (and its bill) on the wrong account.
Status check_case_links(TxnView& view, const RecordKey& sc) {
  using namespace schema::fields;
  const std::string account = text_of(view.kept(sc, kCaseAccount));
  for (const auto& [field, target] :
       {std::pair{kCaseContact, EntityId::kContact}, std::pair{kCaseAsset, EntityId::kAsset}}) {
    const Value* v = view.set_value(sc, field);
    if (v == nullptr || v->kind() != Value::Kind::kText) continue;
    std::optional<RecordId> id = RecordId::parse(v->as_text());
    if (!id) continue;  // validate_change's
    const Value owner = view.kept(RecordKey{target, *id}, schema::entity_ref(target).scope.field);
    if (owner.is_null()) continue;  // unknown here: the reference rule's answer (server) or the app's check
    if (text_of(owner) != account)
      return domain_error(ErrorCode::kValueInvalid, sc, field,
                          "the " + std::string(schema::entity_ref(target).name) +
                              " belongs to another account than the case");
  }
  return Status::ok();
}

Status check_case_assignee(TxnView& view, const RecordKey& sc, const Principal& who) {
  if (who.role != Role::kRep) return Status::ok();  // a manager's and head office's reach is the UserRef rule
  const uint16_t assignee = schema::fields::kCaseAssignee;
  const Value* to = view.set_value(sc, assignee);
  if (to == nullptr) return Status::ok();
  if (to->is_null() || text_of(*to) != who.user)
    return domain_error(ErrorCode::kPermissionDenied, sc, assignee,
                        "a rep may only take a case for themselves");
  if (view.created_here(sc)) return Status::ok();
  const std::optional<RecordState>& before = view.before(sc);
  const Value current = before ? before->get(assignee) : Value::null();
  if (!current.is_null() && text_of(current) != who.user)
    return domain_error(ErrorCode::kPermissionDenied, sc, assignee,
                        "the case is already assigned to " + text_of(current) +
                            "; only a manager or head office reassigns it");
  return Status::ok();
}

}  // namespace

Status validate_change(const Change& c) {
  const EntityDef* e = schema::entity(c.entity);
  if (e == nullptr) {
    return Status(ErrorCode::kUnknownEntity, "unknown entity " +
                                                 std::to_string(static_cast<unsigned>(c.entity)) +
                                                 " (record " + c.record.to_string() + ")");
  }
  if (c.record.is_nil()) return reject(ErrorCode::kInvalidArgument, c, "nil record id");
  if (c.version.is_zero()) return reject(ErrorCode::kInvalidArgument, c, "change without a version");

  switch (c.op) {
    case ChangeOp::kCreate:
    case ChangeOp::kDelete:
      if (c.field != 0) return reject(ErrorCode::kInvalidArgument, c, "create and delete name no field");
      if (c.op == ChangeOp::kDelete && !e->deletable)
        return reject(ErrorCode::kNotDeletable, c,
                      "records of this entity are never deleted; use its status");
      return Status::ok();
    case ChangeOp::kSet:
    case ChangeOp::kAppend:
      break;
    default:
      return reject(ErrorCode::kInvalidArgument, c, "unknown operation");
  }

  const FieldDef* f = e->field(c.field);
  if (f == nullptr) return reject(ErrorCode::kUnknownField, c, "no such field");
  const bool append_field = f->policy == MergePolicy::kAppendText;
  if (c.op == ChangeOp::kAppend && !append_field)
    return reject(ErrorCode::kTypeMismatch, c, "append on a field that is not append-only");
  if (c.op == ChangeOp::kSet && append_field)
    return reject(ErrorCode::kTypeMismatch, c, "set on an append-only field (append a fragment instead)");
  return check_value(c, *f);
}

Status validate_txn(const ClientTxn& txn) {
  if (txn.changes.empty()) return Status(ErrorCode::kInvalidArgument, "empty transaction");
  if (txn.changes.size() > tuning::kMaxChangesPerTxn) {
    return Status(ErrorCode::kTooManyChanges, "transaction of " + std::to_string(txn.changes.size()) +
                                                  " changes exceeds " +
                                                  std::to_string(tuning::kMaxChangesPerTxn));
  }
  if (txn.node == 0) return Status(ErrorCode::kInvalidArgument, "transaction without a node id");
  if (txn.node_seq == 0) return Status(ErrorCode::kInvalidArgument, "transaction without a node sequence");
  for (const Change& c : txn.changes) {
    if (Status s = validate_change(c); !s) return s;
    if (c.version.node != txn.node) {
      return reject(ErrorCode::kInvalidArgument, c,
                    "change version from node " + std::to_string(c.version.node) +
                        " in a transaction of node " + std::to_string(txn.node));
    }
  }
  return Status::ok();
}

Status check_domain_rules(std::span<const Change> changes, const Principal& who, RecordReader& before) {
  TxnView view(changes, before);
  for (const auto& [key, touch] : view.touches()) {
    if (key.entity == EntityId::kLead) {
      if (Status s = check_lead(view, key, touch); !s) return s;
    } else if (key.entity == EntityId::kServiceCase) {
      if (Status s = check_case_assignee(view, key, who); !s) return s;
      if (Status s = check_case_links(view, key); !s) return s;
    }
  }
  return Status::ok();
}

bool case_billable(bool has_asset, std::optional<int64_t> warranty_end_at_ms, int64_t opened_at_ms) {
  if (!has_asset) return false;
  return !warranty_end_at_ms || *warranty_end_at_ms < opened_at_ms;
}

Result<TxnApplication> apply_client_txn(const ClientTxn& txn, const Principal& who, CentralReader& reader,
                                        MergeChangeFn merge) {
  if (Status s = validate_txn(txn); !s) return s;

  TxnOverlay overlay(reader);
  std::vector<RecordKey> touched;  // in order of first touch
  TxnApplication app;

  for (const Change& c : txn.changes) {
    const EntityDef& e = schema::entity_ref(c.entity);
    if (e.head_office_only && who.role < Role::kHeadOffice)
      return reject(ErrorCode::kPermissionDenied, c, "only head office writes " + std::string(e.name));

    const RecordKey key{c.entity, c.record};
    TxnOverlay::Entry& en = overlay.entry(key);
    if (!en.touched) {
      en.touched = true;
      touched.push_back(key);
      // Judged on the state before the transaction (a record is only changed once touched), before anything
      // else reveals what the record holds.
      if (en.existed) {
        en.scope_before = resolve_scope(en.state, reader);
        if (!can_see(who, en.scope_before))
          return reject(ErrorCode::kOutOfScope, c, "record is outside " + who.user + "'s scope");
      }
    }
    RecordState& rec = en.state;

    if (c.op == ChangeOp::kCreate) {
      if (exists(rec)) return reject(ErrorCode::kDuplicateId, c, "record already exists");
      en.created_here = true;
    } else if (!exists(rec) && !en.created_here) {
      return reject(ErrorCode::kRecordNotFound, c, "no such record");
    }
    // On a tombstone a write is not an error: merge discards it and logs a delete_wins conflict.

    if (c.op == ChangeOp::kSet || c.op == ChangeOp::kAppend) {
      const FieldDef& f = *e.field(c.field);
      if (f.policy == MergePolicy::kImmutable && !en.created_here)
        return reject(ErrorCode::kImmutableField, c, "set only when the record is created");
      if (f.policy == MergePolicy::kServerOwned && who.role < Role::kHeadOffice)
        return reject(ErrorCode::kServerOwnedField, c, "only head office writes it");
      if (!en.created_here && who.role < f.update_role) {
        return reject(ErrorCode::kPermissionDenied, c,
                      std::string(role_name(who.role)) + " may not change it (needs " +
                          std::string(role_name(f.update_role)) + ")");
      }
    }
    if (Status s = check_locks(c, e, rec, overlay, who); !s) return s;
    if (c.op == ChangeOp::kSet && e.status_field != 0 && c.field == e.status_field) {
      if (Status s = check_transition(c, e, *e.field(c.field), en, who); !s) return s;
    }

    if (merge(rec, c, who.user, &app.conflicts)) {
      app.effective.push_back(c);
      using namespace schema::fields;
      if (c.entity == EntityId::kCalendarEvent &&
          (c.op == ChangeOp::kCreate || c.field == kEventOwner || c.field == kEventStart ||
           c.field == kEventEnd || c.field == kEventStatus)) {
        en.schedule_changed = true;
      }
    }
  }

  // Whole-record rules, on the final states.
  for (const RecordKey& key : touched) {
    const TxnOverlay::Entry& en = overlay.entry(key);
    const RecordState& rec = en.state;
    const EntityDef& e = schema::entity_ref(key.entity);
    if (en.created_here && !rec.deleted) {
      for (const FieldDef& f : e.fields) {
        if (!f.nullable && rec.get(f.id).is_null())
          return Status(ErrorCode::kMissingField,
                        describe(key.entity, key.id, f.id) + ": required when creating");
      }
    }
    if (key.entity == EntityId::kCalendarEvent && !rec.deleted) {
      const Value& start = rec.get(schema::fields::kEventStart);
      const Value& end = rec.get(schema::fields::kEventEnd);
      if (start.kind() == Value::Kind::kInt && end.kind() == Value::Kind::kInt &&
          end.as_int() <= start.as_int()) {
        return Status(ErrorCode::kValueInvalid,
                      describe(key.entity, key.id, schema::fields::kEventEnd) + ": must be after start_at");
      }
    }
  }
  for (const RecordKey& key : touched) {
    const TxnOverlay::Entry& en = overlay.entry(key);
    ScopeKey after = resolve_scope(en.state, overlay);
    if (!can_see(who, after)) {
      return Status(ErrorCode::kOutOfScope,
                    describe(key.entity, key.id) + ": the result would be outside " + who.user + "'s scope");
    }
    if (en.existed && after != en.scope_before)
      app.moves.push_back(ScopeMove{key.entity, key.id, en.scope_before, after});
    app.scopes.emplace_back(key, std::move(after));
  }
  // After scope, so that a record the writer may not touch at all (a colleague's calendar) stays
  // out_of_scope; references resolved on the transaction's final states (an order line's product created with
  // it).
  for (const Change& c : txn.changes) {
    if (c.op != ChangeOp::kSet) continue;
    const EntityDef& e = schema::entity_ref(c.entity);
    const FieldDef& f = *e.field(c.field);
    if (Status s = check_user_ref(c, f, who); !s) return s;
    if (Status s = check_record_ref(c, e, f, who, overlay); !s) return s;
  }
  // On the store's states before the transaction, as the device judged them on its replica.
  if (Status s = check_domain_rules(txn.changes, who, reader); !s) return s;

  // Scheduling: every overlap of a changed scheduled event with another of the same owner, each pair once.
  std::set<std::pair<RecordKey, RecordKey>> reported;
  for (const RecordKey& key : touched) {
    const TxnOverlay::Entry& en = overlay.entry(key);
    if (!en.schedule_changed) continue;
    const RecordState& ev = en.state;
    using namespace schema::fields;
    const Value& owner = ev.get(kEventOwner);
    const Value& start = ev.get(kEventStart);
    const Value& end = ev.get(kEventEnd);
    if (owner.kind() != Value::Kind::kText || start.kind() != Value::Kind::kInt ||
        end.kind() != Value::Kind::kInt)
      continue;
    if (!TxnOverlay::overlaps(ev, owner.as_text(), start.as_int(), end.as_int())) continue;  // not scheduled
    for (const RecordState& other :
         overlay.events_overlapping(owner.as_text(), start.as_int(), end.as_int())) {
      const RecordKey other_key{other.entity, other.id};
      if (other_key == key || !TxnOverlay::overlaps(other, owner.as_text(), start.as_int(), end.as_int()))
        continue;
      if (!reported.insert(std::minmax(key, other_key)).second) continue;
      ConflictRecord c;
      c.kind = ConflictKind::kScheduling;
      c.entity = EntityId::kCalendarEvent;
      c.record = key.id;
      c.field = kEventStart;
      c.winner = event_side(ev);
      c.loser = event_side(other);
      c.other_record = other.id;
      c.rule = "overlap_flagged";
      app.conflicts.push_back(std::move(c));
    }
  }

  app.records.reserve(touched.size());
  for (const RecordKey& key : touched) app.records.push_back(std::move(overlay.entry(key).state));
  return app;
}

}  // namespace fieldsync
