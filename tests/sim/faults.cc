// The simulator's faults: resets, crashes of clients and the server, partitions, backlogs, clock drift,
// server store read failures; and the clock checks (no HLC ever goes back).
#include "simulation.h"

namespace fieldsync::sim::detail {

void Simulation::start_partition(Node& n, int64_t duration_ms) {
  ++report_.partitions;
  n.partition_until = now_ + duration_ms;
  trace(n.name, ": out of coverage for ", duration_ms, "ms");
  close_connection(n, "partition", -1);
}

void Simulation::restart_client(Node& n, std::string_view why) {
  trace(n.name, ": restart client (", why, ")");
  if (n.session != 0) {
    SessionId s = n.session;
    erase_frames(s, false);
    session_owner_.erase(s);
    n.session = 0;
    n.closing = false;
    server_of(s).on_disconnect(s);
    session_server_.erase(s);
    pump_server();
  }
  n.client.reset();
  n.store->reopen();
  // An app restart may be the update to the current model version (not at the final heal: devices still on
  // the old version must be checked as such too). Its replica is backfilled at the next sync.
  if (why != "heal" && n.config.schema_version < schema::kSchemaVersion && chance(0.5)) {
    n.config.schema_version = schema::kSchemaVersion;
    ++report_.app_upgrades;
    trace(n.name, ": app upgraded to schema ", schema::kSchemaVersion, " with ", n.store->outbox().size(),
          " writes pending");
  }
  n.client = std::make_unique<SyncClient>(*n.store, n.config);
  n.snapshot_dirty = true;
  check_restarted_clock(n);
  if (!partitioned(n)) n.reconnect_at = now_ + range(200, 3'000);
}

void Simulation::crash_server() {
  ++report_.server_crashes;
  // One server draws nothing here, so single-server seeds run as they always did.
  const size_t which = servers_.size() > 1 ? static_cast<size_t>(rnd(servers_.size())) : 0;
  trace("SERVER CRASH", servers_.size() > 1 ? cat(" (instance ", which, ")") : std::string());
  // What goes down with it: its sessions, and whatever is left of sessions already closed.
  auto gone = [&](SessionId s) {
    auto on = session_server_.find(s);
    return on == session_server_.end() || on->second == which;
  };
  std::erase_if(in_flight_, [&](const auto& f) { return gone(f.second.conn); });
  std::erase_if(backlogged_, gone);
  std::erase_if(session_owner_, [&](const auto& o) { return gone(o.first); });
  std::vector<SessionId> ended;
  for (auto& np : nodes_)
    if (np->session != 0 && gone(np->session)) ended.push_back(np->session);
  std::erase_if(session_server_, [&](const auto& o) { return o.second == which; });
  servers_[which].reset();
  servers_[which] = std::make_unique<SyncServer>(*server_stores_[which], auth_, server_config());
  for (auto& np : nodes_) {
    Node& n = *np;
    if (n.session == 0 || std::find(ended.begin(), ended.end(), n.session) == ended.end()) continue;
    n.session = 0;
    n.closing = false;
    if (n.client) {
      n.client->on_disconnected(wall(n));
      pump_client(n);
    }
    if (!partitioned(n)) n.reconnect_at = now_ + range(500, 5'000);
  }
  check_server_clock();
}

void Simulation::drain(SessionId session) {
  backlogged_.erase(session);
  trace("session ", session, " drained");
  server_of(session).set_backlogged(session, false);  // a session already gone is ignored
  pump_server();
}

void Simulation::inject_faults() {
  Node& any = *nodes_[rnd(nodes_.size())];
  if (chance(kResetP) && any.session != 0) {
    ++report_.connection_resets;
    close_connection(any, "connection reset", any.backoff->next_delay_ms());
  }
  Node& victim = *nodes_[rnd(nodes_.size())];
  if (chance(kClientCrashP) && victim.client) {
    ++report_.client_crashes;
    restart_client(victim, "crash");
  }
  if (chance(kServerCrashP)) crash_server();
  Node& office = *nodes_[rnd(nodes_.size())];
  if (!office.is_rep && !partitioned(office) && chance(kOfficePartitionP))
    start_partition(office, range(2'000, 20'000));
  // The transport reports a write queue backed up and later drained; live batches wait meanwhile.
  Node& slow = *nodes_[rnd(nodes_.size())];
  if (chance(kBacklogP) && slow.session != 0 && backlogged_.insert(slow.session).second) {
    ++report_.backlogs;
    trace(slow.name, ": socket backed up (session ", slow.session, ")");
    server_of(slow.session).set_backlogged(slow.session, true);
  }
  if (!backlogged_.empty() && chance(kDrainP))
    drain(*std::next(backlogged_.begin(), rnd(backlogged_.size())));
  if (now_ >= read_outage_until_ && read_chance(kReadOutageP)) {
    read_outage_until_ = now_ + 1'000 + static_cast<int64_t>(read_rng_() % kReadOutageMaxMs);
    trace("server store reads failing until +", read_outage_until_ - now_, "ms");
  }
  // The real server polls once a second (commits of other writers -- with several instances, each other's --
  // and fan-outs a failed read stopped).
  for (auto& server : servers_) server->poll_external_commits(now_);
  pump_server();
  if (chance(kClockDriftP)) {
    Node& d = *nodes_[rnd(nodes_.size())];
    d.clock_offset_ms =
        std::clamp<int64_t>(d.clock_offset_ms + range(-500, 500), -kMaxClockDriftMs, kMaxClockDriftMs);
  }
}

void Simulation::check_client_clock(Node& n) {
  if (!n.client || n.clock_failed) return;
  Hlc h = n.client->hlc();
  Hlc persisted = n.store->meta().hlc;
  if (h < n.max_hlc) {
    n.clock_failed = true;
    fail(cat("clock: client ", n.name, " hlc went back from ", n.max_hlc, " to ", h, " (",
             hlc_physical_ms(n.max_hlc) - hlc_physical_ms(h), "ms)"));
  } else if (persisted < n.max_persisted_hlc) {
    n.clock_failed = true;
    fail(cat("clock: client ", n.name, " persisted hlc went back from ", n.max_persisted_hlc, " to ",
             persisted, " (", hlc_physical_ms(n.max_persisted_hlc) - hlc_physical_ms(persisted), "ms)"));
  }
  n.max_hlc = std::max(n.max_hlc, h);
  n.max_persisted_hlc = std::max(n.max_persisted_hlc, persisted);
}

void Simulation::check_restarted_clock(Node& n) {
  n.max_hlc = 0;  // a new SyncClient: its in-memory clock starts from the persisted one
  if (!n.client || n.clock_failed) return;
  Hlc h = n.client->hlc();
  Version top;
  for (const auto& [key, rec] : n.store->records()) {
    top = std::max(top, rec.created);
    for (const FieldState& f : rec.fields) top = std::max(top, f.version);
  }
  for (const ClientTxn& t : n.store->outbox())
    for (const Change& c : t.changes) top = std::max(top, c.version);
  if (h < n.max_persisted_hlc || h < top.hlc) {
    n.clock_failed = true;
    fail(cat("clock: client ", n.name, " restarted at hlc ", h, " below its persisted hlc ",
             n.max_persisted_hlc, " or the newest version in its replica ", top.hlc));
  }
  check_client_clock(n);
}

void Simulation::check_server_clock() {
  for (size_t i = 0; i < servers_.size(); ++i) {
    Hlc h = servers_[i]->hlc();
    // A server that has not issued or received a timestamp yet (just restarted) reports 0; what matters is
    // that nothing it issues goes back (each instance's own clock: another's may be behind it).
    if (h != 0 && h < server_max_hlc_[i] && !server_clock_failed_) {
      server_clock_failed_ = true;
      fail(cat("clock: server hlc went back from ", server_max_hlc_[i], " to ", h, " (",
               hlc_physical_ms(server_max_hlc_[i]) - hlc_physical_ms(h), "ms)"));
    }
    server_max_hlc_[i] = std::max(server_max_hlc_[i], h);
  }
}

void Simulation::check_clocks() {
  for (auto& n : nodes_) check_client_clock(*n);
  check_server_clock();
}

}  // namespace fieldsync::sim::detail
