// The simulator's workload: the reps', managers' and head office's random edits through SyncClient::write.
#include "simulation.h"

namespace fieldsync::sim::detail {

const std::map<RecordKey, RecordState>& Simulation::snapshot(Node& n) {
  if (n.snapshot_dirty) {
    n.snapshot = n.store->records();
    n.snapshot_dirty = false;
  }
  return n.snapshot;
}

const RecordState* Simulation::pick(Node& n, EntityId e) {
  return pick(n, e, [](const RecordState&) { return true; });
}

const RecordState* Simulation::find(Node& n, EntityId e, const std::string& id_text) {
  std::optional<RecordId> id = RecordId::parse(id_text);
  if (!id) return nullptr;
  const auto& snap = snapshot(n);
  auto it = snap.find(RecordKey{e, *id});
  return it == snap.end() || it->second.deleted ? nullptr : &it->second;
}

std::string Simulation::word() {
  static const char* const kWords[] = {"alpine", "harbor",  "cedar",  "maple", "summit", "delta",
                                       "orchid", "granite", "willow", "coral", "ember",  "falcon"};
  return kWords[rnd(std::size(kWords))];
}

int64_t Simulation::event_slot_ms() {
  // Two working days of half-hour slots from the first morning: small enough that events of one owner
  // overlap.
  int64_t day0 = (start_ms_ / 86'400'000 + 1) * 86'400'000 + 8 * 3'600'000;
  return day0 + range(0, 1) * 86'400'000 + range(0, 15) * 1'800'000;
}

void Simulation::write(Node& n, std::vector<Change> changes, const std::string& what) {
  if (changes.empty() || !n.client) return;
  bool injected = false;
  ReplicaMeta meta_before;
  size_t outbox_before = 0;
  if (faults_on_ && chance(kStorageFaultP)) {
    ++report_.storage_faults;
    injected = true;
    meta_before = n.store->meta();
    outbox_before = n.store->outbox().size();
    n.store->fail_next_commit(Status(ErrorCode::kStorageFull, "injected: disk full", true));
  }
  Result<uint64_t> r = n.client->write(std::move(changes), wall(n));
  n.snapshot_dirty = true;
  if (injected) {
    // If write() refused before committing, the armed failure is still pending: spend it on an empty commit
    // so it cannot hit a sync transaction (that is a different test).
    (void)n.store->begin()->commit();
    if (r.is_ok()) {
      fail(cat("client ", n.name, ": write() returned #", *r, " although its commit failed (", what, ")"));
    } else {
      if (!(n.store->meta() == meta_before) || n.store->outbox().size() != outbox_before)
        fail(cat("client ", n.name, ": a failed write() changed the replica's meta or outbox (", what, ")"));
    }
  }
  if (r.is_ok()) {
    ++report_.txns_written;
    trace(n.name, ": write #", *r, " ", what);
  } else {
    ++report_.txns_local_errors;
    trace(n.name, ": write refused: ", r.status().to_string(), " (", what, ")");
  }
  pump_client(n);
  pump_server();
}

void Simulation::act() {
  // Reps write most; head office approves and edits; the manager approves now and then.
  std::vector<int> weights;
  for (auto& n : nodes_) weights.push_back(n->is_rep ? 4 : (n->principal.role == Role::kHeadOffice ? 3 : 2));
  int total = 0;
  for (int w : weights) total += w;
  int r = static_cast<int>(rnd(static_cast<uint64_t>(total)));
  size_t i = 0;
  while (r >= weights[i]) r -= weights[i++];
  Node& n = *nodes_[i];
  if (!n.client) return;
  for (int attempt = 0; attempt < 4; ++attempt) {
    bool done = false;
    switch (n.principal.role) {
      case Role::kRep:
        done = rep_action(n);
        break;
      case Role::kManager:
        done = manager_action(n);
        break;
      case Role::kHeadOffice:
        done = office_action(n);
        break;
    }
    if (done) return;
  }
}

bool Simulation::weighted(std::initializer_list<int> weights, int& chosen) {
  int total = 0;
  for (int w : weights) total += w;
  int r = static_cast<int>(rnd(static_cast<uint64_t>(total)));
  chosen = 0;
  for (int w : weights) {
    if (r < w) return true;
    r -= w;
    ++chosen;
  }
  return false;
}

bool Simulation::in_territories(const Node& n, const std::string& territory) const {
  return std::find(n.principal.territories.begin(), n.principal.territories.end(), territory) !=
         n.principal.territories.end();
}

bool Simulation::rep_action(Node& n) {
  int op = 0;
  weighted({4, 14, 5, 6, 2, 5, 5, 4, 5, 6, 3, 3, 4, 2, 5, 5, 3, 3, 6, 3, 2, 6}, op);
  switch (op) {
    case 0:
      return create_account(n, pick_one(n.principal.territories));
    case 1:
      return edit_account(n);
    case 2:
      return create_contact(n);
    case 3:
      return edit_contact(n);
    case 4:
      return delete_contact(n);
    case 5:
      return check_in(n);
    case 6:
      return append_visit_notes(n);
    case 7:
      return check_out(n);
    case 8:
      return draft_order(n);
    case 9:
      return edit_order_line(n);
    case 10:
      return add_order_line(n);
    case 11:
      return remove_order_line(n);
    case 12:
      return submit_order(n);
    case 13:
      return withdraw_order(n);
    case 14:
      return create_event(n);
    case 15:
      return move_event(n);
    case 16:
      return change_event_status(n);
    case 17:
      return create_opportunity(n);
    case 18:
      return move_stage(n);
    case 19:
      return edit_opportunity(n);
    case 21:
      return schema3_action(n);
    default:
      return mistake(n);
  }
}

bool Simulation::manager_action(Node& n) {
  int op = 0;
  weighted({8, 4, 2, 2, 2, 2}, op);
  switch (op) {
    case 0:
      return approve_order(n);
    case 1:
      return edit_account(n);
    case 2:
      return reopen_opportunity(n);
    case 3:
      return create_event(n);
    case 4:
      return move_event(n);
    default:
      return move_stage(n);
  }
}

bool Simulation::office_action(Node& n) {
  int op = 0;
  weighted({10, 2, 3, 6, 3, 1, 1, opt_.scope_moves ? 1 : 0, 2, 1, 2}, op);
  switch (op) {
    case 0:
      return approve_order(n);
    case 1:
      return fulfill_order(n);
    case 2:
      return cancel_order(n);
    case 3:
      return edit_account(n);
    case 4:
      return reprice(n);
    case 5:
      return edit_product(n);
    case 6:
      return create_product(n);
    case 7:
      return move_account(n);
    case 8:
      return reopen_opportunity(n);
    case 9:
      return delete_price(n);
    default:
      return create_account(n, pick_one(kTerritories));
  }
}

bool Simulation::create_account(Node& n, const std::string& territory) {
  RecordId id = n.ids->next(wall(n));
  const EntityId e = EntityId::kAccount;
  TxnBuilder b;
  b.create(e, id)
      .set(e, id, "name", T(cat(word(), " ", word(), " GmbH")))
      .set(e, id, "territory_id", T(territory))
      .set(e, id, "created_by", T(n.name));
  if (chance(0.7)) b.set(e, id, "city", T(word()));
  if (chance(0.7)) b.set(e, id, "phone", T(phone()));
  if (chance(0.5)) b.set(e, id, "segment", T(std::string(1, static_cast<char>('a' + rnd(3)))));
  write(n, b.take(), cat("create account ", id.to_string(), " in ", territory));
  return true;
}

bool Simulation::edit_account(Node& n) {
  const RecordState* a = pick(n, EntityId::kAccount);
  if (!a) return false;
  const EntityId e = EntityId::kAccount;
  TxnBuilder b;
  std::string what;
  int op = 0;
  weighted({5, 5, 1, 1, 3, n.principal.role == Role::kHeadOffice ? 3 : 0}, op);
  switch (op) {
    case 0:
      b.set(e, a->id, "name", T(cat(word(), " ", word(), " AG")));
      what = "name";
      break;
    case 1:
      b.set(e, a->id, "phone", T(phone()));
      what = "phone";
      break;
    case 2:
      b.set(e, a->id, "segment", T(std::string(1, static_cast<char>('a' + rnd(3)))));
      what = "segment";
      break;
    case 3:
      b.set(e, a->id, "city", T(word()));
      what = "city";
      break;
    case 4:
      b.append(e, a->id, "notes", cat(n.name, ": ", word()));
      what = "notes+";
      break;
    default:
      b.set(e, a->id, "credit_limit_cents", I(range(1, 500) * 10'000));
      what = "credit limit";
      break;
  }
  write(n, b.take(), cat("edit account ", a->id.to_string(), " ", what));
  return true;
}

bool Simulation::move_account(Node& n) {
  const RecordState* a = pick(n, EntityId::kAccount);
  if (!a) return false;
  std::string to = pick_one(kTerritories);
  if (to == text_of(*a, "territory_id")) return false;
  TxnBuilder b;
  b.set(EntityId::kAccount, a->id, "territory_id", T(to));
  write(n, b.take(), cat("move account ", a->id.to_string(), " to ", to));
  return true;
}

bool Simulation::create_contact(Node& n) {
  const RecordState* a = pick(n, EntityId::kAccount);
  if (!a) return false;
  const EntityId e = EntityId::kContact;
  RecordId id = n.ids->next(wall(n));
  TxnBuilder b;
  b.create(e, id).set(e, id, "account_id", T(a->id.to_string())).set(e, id, "name", T(cat("Dr. ", word())));
  if (chance(0.5)) b.set(e, id, "title", T("buyer"));
  if (chance(0.5)) b.set(e, id, "email", T(cat(word(), "@example.com")));
  if (chance(0.3)) b.set(e, id, "is_primary", Value::boolean(true));
  write(n, b.take(), cat("create contact ", id.to_string(), " of account ", a->id.to_string()));
  return true;
}

bool Simulation::edit_contact(Node& n) {
  const RecordState* c = pick(n, EntityId::kContact);
  if (!c) return false;
  const EntityId e = EntityId::kContact;
  TxnBuilder b;
  switch (rnd(4)) {
    case 0:
      b.set(e, c->id, "name", T(cat("Ms. ", word())));
      break;
    case 1:
      b.set(e, c->id, "title", T(pick_one(std::vector<std::string>{"buyer", "owner", "clerk"})));
      break;
    case 2:
      b.set(e, c->id, "phone", T(phone()));
      break;
    default:
      b.set(e, c->id, "is_primary", Value::boolean(chance(0.5)));
      break;
  }
  write(n, b.take(), cat("edit contact ", c->id.to_string()));
  return true;
}

bool Simulation::delete_contact(Node& n) {
  const RecordState* c = pick(n, EntityId::kContact);
  if (!c) return false;
  TxnBuilder b;
  b.remove(EntityId::kContact, c->id);
  write(n, b.take(), cat("delete contact ", c->id.to_string()));
  return true;
}

bool Simulation::check_in(Node& n) {
  const RecordState* a = pick(n, EntityId::kAccount);
  if (!a) return false;
  const EntityId e = EntityId::kVisit;
  RecordId id = n.ids->next(wall(n));
  TxnBuilder b;
  b.create(e, id)
      .set(e, id, "account_id", T(a->id.to_string()))
      .set(e, id, "rep_id", T(n.name))
      .set(e, id, "check_in_at", I(wall(n)));
  if (chance(0.8)) {
    b.set(e, id, "latitude", Value::real(52.0 + static_cast<double>(rnd(1000)) / 1000.0));
    b.set(e, id, "longitude", Value::real(13.0 + static_cast<double>(rnd(1000)) / 1000.0));
  }
  const std::string& me = n.name;
  if (const RecordState* ev = chance(0.3)
                                  ? pick(n, EntityId::kCalendarEvent,
                                         [&me](const RecordState& r) { return text_of(r, "owner_id") == me; })
                                  : nullptr)
    b.set(e, id, "calendar_event_id", T(ev->id.to_string()));
  write(n, b.take(), cat("check in visit ", id.to_string(), " at account ", a->id.to_string()));
  return true;
}

bool Simulation::append_visit_notes(Node& n) {
  const RecordState* v = pick(n, EntityId::kVisit);
  if (!v) return false;
  TxnBuilder b;
  b.append(EntityId::kVisit, v->id, "notes", cat(n.name, ": ", word(), " ", word()));
  write(n, b.take(), cat("visit notes+ ", v->id.to_string()));
  return true;
}

bool Simulation::check_out(Node& n) {
  const std::string& me = n.name;
  const RecordState* v = pick(n, EntityId::kVisit, [&me](const RecordState& r) {
    return text_of(r, "rep_id") == me && getv(r, "check_out_at").is_null();
  });
  if (!v) return false;
  static const std::vector<std::string> kOutcomes = {"order_taken", "follow_up", "no_interest",
                                                     "not_available", "other"};
  TxnBuilder b;
  b.set(EntityId::kVisit, v->id, "check_out_at", I(wall(n)))
      .set(EntityId::kVisit, v->id, "outcome", T(pick_one(kOutcomes)));
  write(n, b.take(), cat("check out visit ", v->id.to_string()));
  return true;
}

std::vector<const RecordState*> Simulation::lines_of(Node& n, const RecordId& order) {
  std::vector<const RecordState*> lines;
  const std::string order_text = order.to_string();
  const auto& snap = snapshot(n);
  for (auto it = snap.lower_bound(RecordKey{EntityId::kOrderLine, RecordId{}});
       it != snap.end() && it->first.entity == EntityId::kOrderLine; ++it)
    if (!it->second.deleted && text_of(it->second, "order_id") == order_text) lines.push_back(&it->second);
  return lines;
}

void Simulation::add_line(Node& n, TxnBuilder& b, const RecordId& order) {
  const RecordState* product = pick(n, EntityId::kProduct, [](const RecordState& r) {
    const Value& v = getv(r, "active");
    return v.kind() == Value::Kind::kBool && v.as_bool();
  });
  const EntityId e = EntityId::kOrderLine;
  RecordId id = n.ids->next(wall(n));
  int64_t price = 1'000;
  std::string product_text = product ? product->id.to_string() : std::string();
  if (product) {
    if (const RecordState* entry = pick(n, EntityId::kPriceListEntry, [&product_text](const RecordState& r) {
          return text_of(r, "product_id") == product_text;
        }))
      price = int_of(*entry, "unit_price_cents");
  }
  b.create(e, id)
      .set(e, id, "order_id", T(order.to_string()))
      .set(e, id, "product_id", T(product_text))
      .set(e, id, "quantity", I(range(1, 20)))
      .set(e, id, "unit_price_cents", I(price));
  if (chance(0.3)) b.set(e, id, "discount_bp", I(range(1, 20) * 50));
}

bool Simulation::draft_order(Node& n) {
  const RecordState* a = pick(n, EntityId::kAccount);
  if (!a || !pick(n, EntityId::kProduct)) return false;
  const EntityId e = EntityId::kOrder;
  RecordId id = n.ids->next(wall(n));
  TxnBuilder b;
  b.create(e, id)
      .set(e, id, "account_id", T(a->id.to_string()))
      .set(e, id, "rep_id", T(n.name))
      .set(e, id, "status", T("draft"))
      .set(e, id, "currency", T("EUR"));
  if (chance(0.3)) b.append(e, id, "notes", cat("deliver to ", word()));
  int lines = static_cast<int>(range(1, 5));
  for (int i = 0; i < lines; ++i) add_line(n, b, id);
  write(n, b.take(), cat("draft order ", id.to_string(), " with ", lines, " lines for ", a->id.to_string()));
  return true;
}

bool Simulation::order_open(const RecordState& order) {
  std::string s = text_of(order, "status");
  return s == "draft" || s == "submitted";
}

const RecordState* Simulation::pick_line(Node& n, bool open_only) {
  return pick(n, EntityId::kOrderLine, [this, &n, open_only](const RecordState& line) {
    const RecordState* order = find(n, EntityId::kOrder, text_of(line, "order_id"));
    return order && (!open_only || order_open(*order));
  });
}

bool Simulation::edit_order_line(Node& n) {
  const RecordState* line = pick_line(n, !chance(0.15));
  if (!line) return false;
  const EntityId e = EntityId::kOrderLine;
  TxnBuilder b;
  switch (rnd(3)) {
    case 0:
      b.set(e, line->id, "quantity", I(range(1, 50)));
      break;
    case 1:
      b.set(e, line->id, "discount_bp", I(range(0, 20) * 50));
      break;
    default:
      b.set(e, line->id, "note", T(cat("pack ", word())));
      break;
  }
  write(n, b.take(), cat("edit order line ", line->id.to_string()));
  return true;
}

bool Simulation::add_order_line(Node& n) {
  const RecordState* order = pick(n, EntityId::kOrder, order_open);
  if (!order) return false;
  TxnBuilder b;
  add_line(n, b, order->id);
  write(n, b.take(), cat("add line to order ", order->id.to_string()));
  return true;
}

bool Simulation::remove_order_line(Node& n) {
  const RecordState* line = pick_line(n, !chance(0.15));
  if (!line) return false;
  TxnBuilder b;
  b.remove(EntityId::kOrderLine, line->id);
  write(n, b.take(), cat("remove order line ", line->id.to_string()));
  return true;
}

bool Simulation::set_order_status(Node& n, const RecordState& order, const std::string& status,
                                  bool stamp_submitted) {
  TxnBuilder b;
  b.set(EntityId::kOrder, order.id, "status", T(status));
  if (stamp_submitted) b.set(EntityId::kOrder, order.id, "submitted_at", I(wall(n)));
  write(n, b.take(), cat("order ", order.id.to_string(), " ", text_of(order, "status"), " -> ", status));
  return true;
}

bool Simulation::submit_order(Node& n) {
  const RecordState* order =
      pick(n, EntityId::kOrder, [](const RecordState& r) { return text_of(r, "status") == "draft"; });
  return order && set_order_status(n, *order, "submitted", true);
}

bool Simulation::withdraw_order(Node& n) {
  const RecordState* order = pick(n, EntityId::kOrder, order_open);
  if (!order) return false;
  if (text_of(*order, "status") == "submitted" && chance(0.6))
    return set_order_status(n, *order, "draft", false);
  return set_order_status(n, *order, "cancelled", false);
}

bool Simulation::approve_order(Node& n) {
  const RecordState* order =
      pick(n, EntityId::kOrder, [](const RecordState& r) { return text_of(r, "status") == "submitted"; });
  return order && set_order_status(n, *order, "approved", false);
}

bool Simulation::fulfill_order(Node& n) {
  const RecordState* order =
      pick(n, EntityId::kOrder, [](const RecordState& r) { return text_of(r, "status") == "approved"; });
  return order && set_order_status(n, *order, "fulfilled", false);
}

bool Simulation::cancel_order(Node& n) {
  const RecordState* order = pick(n, EntityId::kOrder, [](const RecordState& r) {
    std::string s = text_of(r, "status");
    return s == "approved" || s == "submitted";
  });
  return order && set_order_status(n, *order, "cancelled", false);
}

bool Simulation::mistake(Node& n) {
  TxnBuilder b;
  std::string what;
  switch (rnd(3)) {
    case 0: {
      const RecordState* a = pick(n, EntityId::kAccount);
      if (!a) return false;
      b.set(EntityId::kAccount, a->id, "credit_limit_cents", I(99'999'900));
      what = cat("raise own credit limit of ", a->id.to_string());
      break;
    }
    case 1: {
      const RecordState* o =
          pick(n, EntityId::kOrder, [](const RecordState& r) { return text_of(r, "status") == "submitted"; });
      if (!o) return false;
      b.set(EntityId::kOrder, o->id, "status", T("approved"));
      what = cat("approve own order ", o->id.to_string());
      break;
    }
    default: {
      const RecordState* a = pick(n, EntityId::kAccount);
      if (!a) return false;
      b.set(EntityId::kAccount, a->id, "segment", T("platinum"));
      what = cat("segment of ", a->id.to_string(), " outside the enum");
      break;
    }
  }
  write(n, b.take(), what);
  return true;
}

bool Simulation::create_product(Node& n) {
  RecordId product = n.ids->next(wall(n));
  RecordId entry = n.ids->next(wall(n));
  TxnBuilder b;
  const EntityId p = EntityId::kProduct;
  const EntityId pe = EntityId::kPriceListEntry;
  b.create(p, product)
      .set(p, product, "sku", T(cat("SKU-", range(10'000, 99'999))))
      .set(p, product, "name", T(cat(word(), " ", word())))
      .set(p, product, "unit", T("box"))
      .set(p, product, "active", Value::boolean(true));
  b.create(pe, entry)
      .set(pe, entry, "product_id", T(product.to_string()))
      .set(pe, entry, "price_list", T("default"))
      .set(pe, entry, "unit_price_cents", I(range(100, 20'000)))
      .set(pe, entry, "currency", T("EUR"))
      .set(pe, entry, "valid_from", I(start_ms_));
  write(n, b.take(), cat("create product ", product.to_string()));
  return true;
}

bool Simulation::reprice(Node& n) {
  const RecordState* entry = pick(n, EntityId::kPriceListEntry);
  if (!entry) return false;
  TxnBuilder b;
  b.set(EntityId::kPriceListEntry, entry->id, "unit_price_cents", I(range(100, 20'000)));
  write(n, b.take(), cat("reprice ", entry->id.to_string()));
  return true;
}

bool Simulation::edit_product(Node& n) {
  const RecordState* product = pick(n, EntityId::kProduct);
  if (!product) return false;
  TxnBuilder b;
  if (chance(0.5))
    b.set(EntityId::kProduct, product->id, "active", Value::boolean(chance(0.7)));
  else
    b.set(EntityId::kProduct, product->id, "name", T(cat(word(), " ", word())));
  write(n, b.take(), cat("edit product ", product->id.to_string()));
  return true;
}

bool Simulation::delete_price(Node& n) {
  const RecordState* entry = pick(n, EntityId::kPriceListEntry);
  if (!entry) return false;
  TxnBuilder b;
  b.remove(EntityId::kPriceListEntry, entry->id);
  write(n, b.take(), cat("delete price entry ", entry->id.to_string()));
  return true;
}

bool Simulation::create_event(Node& n) {
  const EntityId e = EntityId::kCalendarEvent;
  RecordId id = n.ids->next(wall(n));
  int64_t start = event_slot_ms();
  TxnBuilder b;
  b.create(e, id)
      .set(e, id, "owner_id", T(n.name))
      .set(e, id, "title", T(cat("visit ", word())))
      .set(e, id, "start_at", I(start))
      .set(e, id, "end_at", I(start + range(1, 3) * 1'800'000))
      .set(e, id, "status", T("scheduled"));
  if (const RecordState* a = chance(0.6) ? pick(n, EntityId::kAccount) : nullptr)
    b.set(e, id, "account_id", T(a->id.to_string()));
  // Schema 3's field, from current apps only: older ones receive the events without it.
  if (n.config.schema_version >= 3)
    if (const RecordState* o = chance(0.4) ? pick(n, EntityId::kOpportunity) : nullptr)
      b.set(e, id, "opportunity_id", T(o->id.to_string()));
  write(n, b.take(), cat("create event ", id.to_string()));
  return true;
}

const RecordState* Simulation::my_event(Node& n) {
  const std::string& me = n.name;
  return pick(n, EntityId::kCalendarEvent,
              [&me](const RecordState& r) { return text_of(r, "owner_id") == me; });
}

bool Simulation::move_event(Node& n) {
  const RecordState* ev = my_event(n);
  if (!ev) return false;
  int64_t start = event_slot_ms();
  TxnBuilder b;
  b.set(EntityId::kCalendarEvent, ev->id, "start_at", I(start))
      .set(EntityId::kCalendarEvent, ev->id, "end_at", I(start + range(1, 3) * 1'800'000));
  write(n, b.take(), cat("move event ", ev->id.to_string()));
  return true;
}

bool Simulation::change_event_status(Node& n) {
  const RecordState* ev = my_event(n);
  if (!ev) return false;
  std::string from = text_of(*ev, "status");
  std::string to = from == "scheduled" ? (chance(0.5) ? "done" : "cancelled") : "scheduled";
  TxnBuilder b;
  b.set(EntityId::kCalendarEvent, ev->id, "status", T(to));
  if (chance(0.3)) b.append(EntityId::kCalendarEvent, ev->id, "notes", cat(n.name, ": ", word()));
  if (n.config.schema_version >= 3)
    if (const RecordState* o = chance(0.3) ? pick(n, EntityId::kOpportunity) : nullptr)
      b.set(EntityId::kCalendarEvent, ev->id, "opportunity_id", T(o->id.to_string()));
  write(n, b.take(), cat("event ", ev->id.to_string(), " ", from, " -> ", to));
  return true;
}

bool Simulation::create_opportunity(Node& n) {
  const RecordState* a = pick(n, EntityId::kAccount);
  if (!a) return false;
  const EntityId e = EntityId::kOpportunity;
  RecordId id = n.ids->next(wall(n));
  TxnBuilder b;
  b.create(e, id)
      .set(e, id, "account_id", T(a->id.to_string()))
      .set(e, id, "owner_id", T(n.name))
      .set(e, id, "name", T(cat(word(), " deal")))
      .set(e, id, "stage", T("prospect"))
      .set(e, id, "amount_cents", I(range(10, 1'000) * 10'000))
      .set(e, id, "currency", T("EUR"));
  if (chance(0.5)) b.set(e, id, "expected_close", I(start_ms_ + range(1, 90) * 86'400'000));
  write(n, b.take(), cat("create opportunity ", id.to_string()));
  return true;
}

bool Simulation::move_stage(Node& n) {
  const RecordState* o = pick(n, EntityId::kOpportunity);
  if (!o) return false;
  static const std::vector<std::string> kStages = {"prospect",    "qualified", "proposal",
                                                   "negotiation", "won",       "lost"};
  const schema::EntityDef& def = schema::entity_ref(EntityId::kOpportunity);
  std::string from = text_of(*o, "stage");
  std::vector<std::string> targets;
  for (const std::string& to : kStages) {
    if (to == from) continue;
    std::optional<Role> role = schema::transition_role(def, from, to);
    if (role && *role <= n.principal.role) targets.push_back(to);
  }
  if (targets.empty()) return false;
  std::string to = pick_one(targets);
  TxnBuilder b;
  b.set(EntityId::kOpportunity, o->id, "stage", T(to));
  write(n, b.take(), cat("opportunity ", o->id.to_string(), " ", from, " -> ", to));
  return true;
}

bool Simulation::reopen_opportunity(Node& n) {
  const RecordState* o = pick(n, EntityId::kOpportunity, [](const RecordState& r) {
    std::string s = text_of(r, "stage");
    return s == "won" || s == "lost";
  });
  if (!o) return false;
  TxnBuilder b;
  b.set(EntityId::kOpportunity, o->id, "stage", T("negotiation"));
  write(n, b.take(), cat("reopen opportunity ", o->id.to_string()));
  return true;
}

bool Simulation::edit_opportunity(Node& n) {
  const RecordState* o = pick(n, EntityId::kOpportunity);
  if (!o) return false;
  TxnBuilder b;
  if (chance(0.5))
    b.set(EntityId::kOpportunity, o->id, "amount_cents", I(range(10, 1'000) * 10'000));
  else
    b.append(EntityId::kOpportunity, o->id, "notes", cat(n.name, ": ", word()));
  write(n, b.take(), cat("edit opportunity ", o->id.to_string()));
  return true;
}

bool Simulation::schema3_action(Node& n) {
  if (n.config.schema_version < 3) return false;
  int op = 0;
  weighted({3, 2, 3, 2, 3, 2}, op);
  switch (op) {
    case 0:
      return create_lead(n);
    case 1:
      return convert_lead(n);
    case 2:
      return open_case(n);
    case 3:
      return take_case(n);
    case 4:
      return create_task(n);
    default:
      return complete_task(n);
  }
}

bool Simulation::create_lead(Node& n) {
  const EntityId e = EntityId::kLead;
  RecordId id = n.ids->next(wall(n));
  static const std::vector<std::string> kSources = {"campaign", "web_form", "referral", "field_prospecting"};
  TxnBuilder b;
  b.create(e, id)
      .set(e, id, "person_name", T(cat(word(), " ", word())))
      .set(e, id, "source", T(pick_one(kSources)))
      .set(e, id, "owner_id", T(n.name))
      .set(e, id, "territory_id", T(pick_one(n.principal.territories)))
      .set(e, id, "status", T(chance(0.5) ? "new" : "contacted"))
      .set(e, id, "created_at", I(wall(n)));
  if (chance(0.6)) b.set(e, id, "company_name", T(cat(word(), " AG")));
  write(n, b.take(), cat("create lead ", id.to_string()));
  return true;
}

bool Simulation::convert_lead(Node& n) {
  const RecordState* lead = pick(n, EntityId::kLead, [](const RecordState& r) {
    const std::string s = text_of(r, "status");
    return s == "new" || s == "contacted" || s == "qualified";
  });
  if (!lead) return false;
  const RecordId account = n.ids->next(wall(n)), contact = n.ids->next(wall(n)), deal = n.ids->next(wall(n));
  const EntityId a = EntityId::kAccount, c = EntityId::kContact, o = EntityId::kOpportunity,
                 l = EntityId::kLead;
  TxnBuilder b;
  b.create(a, account)
      .set(a, account, "name", T(cat(word(), " (lead)")))
      .set(a, account, "territory_id", T(text_of(*lead, "territory_id")))
      .set(a, account, "created_by", T(n.name));
  b.create(c, contact)
      .set(c, contact, "account_id", T(account.to_string()))
      .set(c, contact, "name", T(text_of(*lead, "person_name")));
  b.create(o, deal)
      .set(o, deal, "account_id", T(account.to_string()))
      .set(o, deal, "owner_id", T(n.name))
      .set(o, deal, "name", T(cat(word(), " deal")))
      .set(o, deal, "stage", T("prospect"))
      .set(o, deal, "amount_cents", I(range(10, 1'000) * 10'000))
      .set(o, deal, "currency", T("EUR"));
  // The links before the status: the model locks a converted lead as soon as its status says so.
  b.set(l, lead->id, "converted_account_id", T(account.to_string()))
      .set(l, lead->id, "converted_contact_id", T(contact.to_string()))
      .set(l, lead->id, "converted_opportunity_id", T(deal.to_string()))
      .set(l, lead->id, "converted_at", I(wall(n)))
      .set(l, lead->id, "status", T("converted"));
  write(n, b.take(), cat("convert lead ", lead->id.to_string()));
  return true;
}

bool Simulation::open_case(Node& n) {
  const RecordState* account = pick(n, EntityId::kAccount);
  if (!account) return false;
  const EntityId e = EntityId::kServiceCase;
  RecordId id = n.ids->next(wall(n));
  static const std::vector<std::string> kPriorities = {"low", "normal", "high", "urgent"};
  TxnBuilder b;
  b.create(e, id)
      .set(e, id, "account_id", T(account->id.to_string()))
      .set(e, id, "subject", T(cat(word(), " broken")))
      .set(e, id, "priority", T(pick_one(kPriorities)))
      .set(e, id, "status", T("open"))
      .set(e, id, "opened_at", I(wall(n)))
      .set(e, id, "opened_by", T(n.name));
  write(n, b.take(), cat("open case ", id.to_string()));
  return true;
}

bool Simulation::take_case(Node& n) {
  const RecordState* c = pick(n, EntityId::kServiceCase, [](const RecordState& r) {
    return text_of(r, "status") == "open" && text_of(r, "assignee_id").empty();
  });
  if (!c) return false;
  TxnBuilder b;
  b.set(EntityId::kServiceCase, c->id, "assignee_id", T(n.name))
      .set(EntityId::kServiceCase, c->id, "status", T("assigned"));
  if (chance(0.5)) b.append(EntityId::kServiceCase, c->id, "resolution_notes", cat(n.name, ": on my way"));
  write(n, b.take(), cat("take case ", c->id.to_string()));
  return true;
}

bool Simulation::create_task(Node& n) {
  const EntityId e = EntityId::kTask;
  RecordId id = n.ids->next(wall(n));
  TxnBuilder b;
  b.create(e, id)
      .set(e, id, "owner_id", T(n.name))
      .set(e, id, "title", T(cat("call ", word())))
      .set(e, id, "status", T("open"))
      .set(e, id, "due_at", I(wall(n) + range(1, 14) * 86'400'000));
  if (const RecordState* a = chance(0.5) ? pick(n, EntityId::kAccount) : nullptr)
    b.set(e, id, "account_id", T(a->id.to_string()));
  write(n, b.take(), cat("create task ", id.to_string()));
  return true;
}

bool Simulation::complete_task(Node& n) {
  const std::string& me = n.name;
  const RecordState* t = pick(n, EntityId::kTask, [&me](const RecordState& r) {
    return text_of(r, "status") == "open" && text_of(r, "owner_id") == me;
  });
  if (!t) return false;
  TxnBuilder b;
  b.set(EntityId::kTask, t->id, "status", T("done")).set(EntityId::kTask, t->id, "completed_at", I(wall(n)));
  write(n, b.take(), cat("complete task ", t->id.to_string()));
  return true;
}

}  // namespace fieldsync::sim::detail
