// The simulator's network: connections, frames through the real codec with drops, duplicates, reordering,
// delays and corruption, delivery to the server and the clients, the server's and clients' outputs, timers.
#include "simulation.h"

namespace fieldsync::sim::detail {

void Simulation::connect(Node& n) {
  if (!n.client || n.session != 0) return;
  SessionId s = next_session_++;
  n.session = s;
  n.closing = false;
  n.corrupted_session = false;
  n.lost_frame = false;
  n.connected_at = now_;
  n.last_pull_ms = now_;
  n.reconnect_at = -1;
  n.watermark_to_server = now_;
  n.watermark_to_client = now_;
  n.wire_version_to_server = 1;
  n.wire_version_to_client = 1;
  session_owner_[s] = n.index;
  // Devices are given every instance's URL: a connection lands on any of them (one server draws nothing).
  const size_t instance = servers_.size() > 1 ? static_cast<size_t>(rnd(servers_.size())) : 0;
  session_server_[s] = instance;
  trace(n.name, ": connect session ", s,
        servers_.size() > 1 ? cat(" to instance ", instance) : std::string());
  servers_[instance]->on_connect(s, now_);
  pump_server();
  n.client->on_connected(wall(n));
  pump_client(n);
}

void Simulation::erase_frames(SessionId s, bool to_server_only) {
  for (auto it = in_flight_.begin(); it != in_flight_.end();) {
    if (it->second.conn == s && (!to_server_only || it->second.to_server))
      it = in_flight_.erase(it);
    else
      ++it;
  }
}

void Simulation::close_connection(Node& n, std::string_view why, int64_t reconnect_delay_ms) {
  if (n.session == 0) return;
  SessionId s = n.session;
  trace(n.name, ": close session ", s, " (", why, ")");
  erase_frames(s, false);
  session_owner_.erase(s);
  n.session = 0;
  n.closing = false;
  server_of(s).on_disconnect(s);
  session_server_.erase(s);
  pump_server();
  if (n.client) {
    n.client->on_disconnected(wall(n));
    pump_client(n);
  }
  if (reconnect_delay_ms >= 0) n.reconnect_at = now_ + reconnect_delay_ms;
}

void Simulation::send_frame(Node& n, bool to_server, protocol::Message m) {
  ++report_.messages_sent;
  if (std::holds_alternative<protocol::PullRequest>(m) ||
      std::holds_alternative<protocol::BootstrapRequest>(m))
    n.last_pull_ms = now_;
  // Every third device is an old one that speaks protocol version 1, so both frame forms cross the network.
  if (auto* hello = std::get_if<protocol::Hello>(&m); hello && n.index % 3 == 2) hello->protocol_version = 1;
  if (const auto* welcome = std::get_if<protocol::Welcome>(&m); welcome && !to_server)
    n.wire_version_to_client = welcome->protocol_version;
  std::vector<uint8_t> bytes =
      codec::encode(m, to_server ? n.wire_version_to_server : n.wire_version_to_client);
  const bool handshake =
      std::holds_alternative<protocol::Hello>(m) || std::holds_alternative<protocol::Welcome>(m);
  bool reordered = false;
  bool duplicated = false;
  bool corrupted = false;
  if (faults_on_) {
    if (chance(kDropP)) {
      ++report_.messages_dropped;
      n.lost_frame = true;
      trace(n.name, to_server ? " -> server" : " <- server", ": DROP ", protocol::message_name(m));
      return;
    }
    if (chance(kCorruptP)) {
      corrupted = true;
      corrupt(bytes);
      ++report_.frames_corrupted;
    }
    // Duplicates and reordering of the handshake would be a broken transport, not a lossy one.
    if (!handshake && chance(kReorderP)) reordered = true;
    if (!handshake && chance(kDuplicateP)) duplicated = true;
  }
  int64_t& watermark = to_server ? n.watermark_to_server : n.watermark_to_client;
  int64_t at = now_ + range(kLatencyMinMs, kLatencyMaxMs);
  if (reordered) {
    ++report_.messages_reordered;
    at += range(1, kReorderDelayMaxMs);
  } else {
    at = std::max(at, watermark);
    watermark = at;
  }
  if (opt_.verbose)
    trace(n.name, to_server ? " -> server: " : " <- server: ", describe(m), reordered ? " [late]" : "",
          corrupted ? " [CORRUPT]" : "", duplicated ? " [dup]" : "");
  if (duplicated) {
    ++report_.messages_duplicated;
    Frame copy{n.session, n.index, to_server, corrupted, bytes, m};
    in_flight_.emplace(std::make_pair(at + range(1, kReorderDelayMaxMs), next_frame_++), std::move(copy));
  }
  Frame f{n.session, n.index, to_server, corrupted, std::move(bytes), std::move(m)};
  in_flight_.emplace(std::make_pair(at, next_frame_++), std::move(f));
}

void Simulation::corrupt(std::vector<uint8_t>& bytes) {
  if (bytes.size() < 8 || chance(0.5)) {
    bytes.resize(static_cast<size_t>(rnd(std::min<size_t>(bytes.size(), 8))));
  } else {
    for (size_t i = 0; i < 4; ++i) bytes[i] = 0xff;
  }
}

const char* Simulation::state_name(SyncClient::State s) {
  switch (s) {
    case SyncClient::State::kDisconnected:
      return "disconnected";
    case SyncClient::State::kHandshaking:
      return "handshaking";
    case SyncClient::State::kBootstrapping:
      return "bootstrapping";
    case SyncClient::State::kSyncing:
      return "syncing";
    case SyncClient::State::kStopped:
      return "stopped";
  }
  return "?";
}

std::string Simulation::describe(const protocol::Message& m) {
  return std::visit(
      [](const auto& x) -> std::string {
        using M = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<M, protocol::Hello>) {
          return cat("Hello cursor=", x.cursor);
        } else if constexpr (std::is_same_v<M, protocol::Welcome>) {
          return cat("Welcome last_node_seq=", x.last_node_seq, " head=", x.server_seq);
        } else if constexpr (std::is_same_v<M, protocol::PushTxns>) {
          std::string s = cat("PushTxns req=", x.request_id, " seqs=");
          for (const auto& t : x.txns) s += cat(t.node_seq, ",");
          return s;
        } else if constexpr (std::is_same_v<M, protocol::PushAck>) {
          std::string s = cat("PushAck req=", x.request_id, " ");
          for (const auto& r : x.results)
            s += cat(r.node_seq, ":", static_cast<int>(r.outcome), r.reason != ErrorCode::kOk ? "/" : "",
                     r.reason != ErrorCode::kOk ? to_string(r.reason) : "", " ");
          return s;
        } else if constexpr (std::is_same_v<M, protocol::PullRequest>) {
          return cat("PullRequest req=", x.request_id, " cursor=", x.cursor);
        } else if constexpr (std::is_same_v<M, protocol::ChangeBatch>) {
          return cat("ChangeBatch req=", x.request_id, " (", x.from_cursor, ",", x.to_cursor,
                     "] txns=", x.txns.size(), " records=", x.records.size(), " purges=", x.purges.size(),
                     x.has_more ? " more" : "");
        } else if constexpr (std::is_same_v<M, protocol::BootstrapRequest>) {
          return cat("BootstrapRequest req=", x.request_id, " snapshot=", x.snapshot_seq);
        } else if constexpr (std::is_same_v<M, protocol::BootstrapPage>) {
          return cat("BootstrapPage req=", x.request_id, " snapshot=", x.snapshot_seq,
                     " records=", x.records.size(), x.done ? " done" : "");
        } else {
          return cat("Error ", to_string(x.code), " '", x.message, "'", x.retryable ? " retryable" : "");
        }
      },
      m);
}

void Simulation::deliver(Frame& f) {
  auto owner = session_owner_.find(f.conn);
  if (owner == session_owner_.end()) return;  // closed meanwhile (its frames should be gone already)
  Node& n = *nodes_[static_cast<size_t>(owner->second)];
  if (std::holds_alternative<protocol::ChangeBatch>(f.original) ||
      std::holds_alternative<protocol::BootstrapPage>(f.original))
    n.last_pull_ms = now_;
  Result<protocol::Message> decoded = codec::decode(f.bytes);
  if (f.corrupted && decoded.is_ok())
    fail(cat("codec: decode accepted a corrupted ", protocol::message_name(f.original), " frame of ",
             f.bytes.size(), " bytes"));
  if (decoded.is_ok() && !f.corrupted && !same(*decoded, f.original)) {
    const char* name = protocol::message_name(f.original);
    if (roundtrip_reported_.insert(name).second)
      fail(cat("codec: a ", name, " changed in an encode/decode round trip"));
  }
  if (f.to_server) {
    if (!decoded.is_ok()) {
      trace(n.name, " -> server: bad frame: ", decoded.status().to_string());
      n.corrupted_session = true;
      server_of(f.conn).on_bad_frame(f.conn, decoded.status());
      pump_server();
      return;
    }
    server_of(f.conn).on_message(f.conn, *decoded, now_);
    pump_server();
  } else {
    if (!decoded.is_ok()) {
      trace(n.name, ": bad frame from server: ", decoded.status().to_string());
      n.corrupted_session = true;
      close_connection(n, "undecodable frame", range(100, 2000));
      return;
    }
    if (!n.client) return;
    if (const auto* welcome = std::get_if<protocol::Welcome>(&*decoded))
      n.wire_version_to_server = std::min(welcome->protocol_version, protocol::kProtocolVersion);
    const bool storage_fault = faults_on_ && chance(kSyncStorageFaultP);
    if (storage_fault) {
      ++report_.storage_faults;
      trace(n.name, ": disk full while applying ", protocol::message_name(*decoded));
      n.store->fail_next_commit(Status(ErrorCode::kStorageFull, "injected: disk full", true));
    }
    n.client->on_message(*decoded, wall(n));
    if (storage_fault) (void)n.store->begin()->commit();  // spends the failure if nothing committed
    n.snapshot_dirty = true;
    pump_client(n);
  }
}

ServerConfig Simulation::server_config() const {
  ServerConfig c;
  c.server_node = kServerNode;
  c.defer_fan_out = defers_fan_out();
  c.bootstrap_in_steps = bootstrap_in_steps();
  c.stored_pages = (opt_.seed & 4) != 0;  // half the runs: pages as SyncService builds them
  c.merge_change = testing_support::merge_with(opt_.fault);
  return c;
}

void Simulation::pump_server() {
  if (servers_.empty()) return;
  check_server_clock();
  for (auto& server : servers_) {
    if (defers_fan_out() && chance(0.5)) server->fan_out(now_);
    // bootstrap_in_steps: each session owed pages gets the next one, sessions taking turns (as SyncService
    // serves one page per hold of its lock).
    for (bool owed = bootstrap_in_steps(); owed;) {
      owed = false;
      for (const auto& [session, owner] : session_owner_) {
        if (&server_of(session) != server.get() || !server->bootstrap_pages_owed(session)) continue;
        server->continue_bootstrap(session, now_);
        owed = true;
      }
    }
    for (auto& out : server->take_outgoing()) {
      if (auto* ack = std::get_if<protocol::PushAck>(&out.message)) note_ack(out.session, *ack);
      if (auto* w = std::get_if<protocol::Welcome>(&out.message); w && w->protocol_version == 1)
        ++report_.v1_sessions;
      auto owner = session_owner_.find(out.session);
      if (owner == session_owner_.end()) continue;  // session already gone
      Node& n = *nodes_[static_cast<size_t>(owner->second)];
      send_frame(n, false, std::move(out.message));
    }
    for (SessionId s : server->take_closing()) {
      auto owner = session_owner_.find(s);
      if (owner == session_owner_.end()) continue;
      Node& n = *nodes_[static_cast<size_t>(owner->second)];
      if (n.session != s || n.closing) continue;
      trace(n.name, ": server closes session ", s);
      n.closing = true;
      erase_frames(s, true);  // the server reads nothing more from it
    }
  }
}

void Simulation::pump_client(Node& n) {
  if (!n.client) return;
  for (auto& m : n.client->take_outgoing()) {
    if (auto* push = std::get_if<protocol::PushTxns>(&m)) {
      note_push(n, *push);
      if (n.client->pushes_in_flight() > 1) ++report_.pipelined_pushes;
    }
    if (auto* req = std::get_if<protocol::BootstrapRequest>(&m); req && req->max_pages > 1)
      ++report_.multi_page_requests;
    if (n.session == 0 || n.closing) continue;  // nowhere to send it: lost with the connection
    send_frame(n, true, std::move(m));
  }
  for (auto& e : n.client->take_events()) on_event(n, e);
  check_client_clock(n);
  switch (n.client->state()) {
    case SyncClient::State::kSyncing:
      n.backoff->reset();
      break;
    case SyncClient::State::kDisconnected:
      if (n.session != 0) close_connection(n, "client dropped the session", n.backoff->next_delay_ms());
      break;
    case SyncClient::State::kStopped:
      if (n.restart_at < 0) {
        ++report_.client_stops;
        const Status& why = n.client->stop_reason();
        trace(n.name, ": client STOPPED: ", why.to_string());
        if (!n.corrupted_session)
          fail(cat("client ", n.name, " stopped without a corrupt frame to explain it: ", why.to_string()));
        n.restart_at = now_ + range(1'000, 10'000);
        close_connection(n, "client stopped", -1);
      }
      break;
    default:
      break;
  }
}

void Simulation::on_event(Node& n, const ClientEvent& e) {
  switch (e.kind) {
    case ClientEvent::Kind::kMustErase:
      fail(cat("client ", n.name, " was told to erase its replica: ", e.status.to_string()));
      break;
    case ClientEvent::Kind::kError:
      trace(n.name, ": event error ", e.status.to_string());
      break;
    case ClientEvent::Kind::kRejected:
      if (e.rejection)
        trace(n.name, ": event rejected #", e.rejection->node_seq, " ", to_string(e.rejection->reason), " ",
              e.rejection->message);
      break;
    case ClientEvent::Kind::kConflict:
      ++client_conflict_events_;
      break;
    default:
      break;
  }
}

void Simulation::note_push(Node& n, const protocol::PushTxns& push) {
  for (const ClientTxn& t : push.txns) {
    if (t.node != n.node) fail(cat("client ", n.name, " pushed txn #", t.node_seq, " with node ", t.node));
    auto [it, inserted] = pushed_.emplace(std::make_pair(t.node, t.node_seq), t);
    if (!inserted && !(it->second == t))
      fail(cat("client ", n.name, " re-sent txn #", t.node_seq, " with different content"));
  }
}

void Simulation::note_ack(SessionId s, const protocol::PushAck& ack) {
  auto owner = session_owner_.find(s);
  if (owner == session_owner_.end()) return;
  const Node& n = *nodes_[static_cast<size_t>(owner->second)];
  for (const auto& r : ack.results) {
    if (r.outcome == protocol::TxnOutcome::kApplied || r.outcome == protocol::TxnOutcome::kDuplicate)
      acked_[{n.node, r.node_seq}] = r.server_seq;
  }
}

void Simulation::advance_to(int64_t t) {
  while (!in_flight_.empty() && in_flight_.begin()->first.first <= t) {
    auto node = in_flight_.extract(in_flight_.begin());
    now_ = std::max(now_, node.key().first);
    deliver(node.mapped());
  }
  now_ = std::max(now_, t);
  process_timers();
  for (auto& n : nodes_) {
    if (!n->client) continue;
    n->client->on_tick(wall(*n));
    pump_client(*n);
  }
}

bool Simulation::frames_to_client(SessionId s) const {
  for (const auto& [key, f] : in_flight_)
    if (f.conn == s && !f.to_server) return true;
  return false;
}

void Simulation::process_timers() {
  for (auto& np : nodes_) {
    Node& n = *np;
    if (n.restart_at >= 0 && now_ >= n.restart_at) {
      n.restart_at = -1;
      restart_client(n, "app restart after stop");
    }
    if (n.partition_until >= 0 && now_ >= n.partition_until) {
      trace(n.name, ": back in coverage");
      n.partition_until = -1;
      n.reconnect_at = now_;
      if (n.is_rep && faults_on_) n.next_partition_at = now_ + range(kRepOnlineMinMs, kRepOnlineMaxMs);
    }
    if (faults_on_ && n.next_partition_at >= 0 && now_ >= n.next_partition_at && !partitioned(n)) {
      n.next_partition_at = -1;
      start_partition(n, range(kRepOfflineMinMs, kRepOfflineMaxMs));
    }
    if (n.session != 0 && n.closing && !frames_to_client(n.session))
      close_connection(n, "closed by server", n.backoff->next_delay_ms());
    if (n.session != 0 && n.client && n.client->state() == SyncClient::State::kHandshaking &&
        now_ - n.connected_at > kHandshakeTimeoutMs) {
      ++report_.handshake_timeouts;
      if (!n.lost_frame && !n.corrupted_session)
        fail(cat("client ", n.name, " stuck in the handshake for ", kHandshakeTimeoutMs,
                 "ms although no frame of the session was lost (it has no handshake timer)"));
      close_connection(n, "handshake timeout", range(100, 2000));
    }
    if (n.session != 0 && !n.closing && n.client && now_ - n.last_pull_ms > kNoPullMs &&
        n.client->state() != SyncClient::State::kHandshaking) {
      fail(cat("client ", n.name, " in state ", state_name(n.client->state()),
               " has neither asked for nor received changes for ", now_ - n.last_pull_ms,
               "ms on an open session"));
      close_connection(n, "stuck session", range(100, 2000));
    }
    if (n.session == 0 && n.reconnect_at >= 0 && now_ >= n.reconnect_at && !partitioned(n) && n.client &&
        n.client->state() != SyncClient::State::kStopped)
      connect(n);
  }
}

}  // namespace fieldsync::sim::detail
