#include "fieldsync/server/sync_service.h"

#include <algorithm>
#include <cstdlib>
#include <iostream>
#include <set>
#include <utility>

#include "fieldsync/sync/codec.h"
#include "wall_clock.h"

namespace fieldsync::server {

namespace {

bool is_auth_refusal(ErrorCode code) {
  return code == ErrorCode::kAuthFailed || code == ErrorCode::kTokenExpired ||
         code == ErrorCode::kDeviceRevoked;
}

// Quotes a log value when it holds spaces or quotes, so a line stays one key=value list.
std::string quoted_value(std::string_view v) {
  if (!v.empty() && v.find_first_of(" \"=\n") == std::string_view::npos) return std::string(v);
  std::string out = "\"";
  for (char c : v) {
    if (c == '"' || c == '\\') out += '\\';
    out += c == '\n' ? ' ' : c;
  }
  return out + "\"";
}

// With group commit the live batches of every commit in a flush are built once, when the flush starts.
ServerConfig sync_config(ServerConfig config, bool group_commit) {
  config.defer_fan_out = group_commit;
  config.stored_pages = true;        // every message leaves through codec::encode
  config.bootstrap_in_steps = true;  // frame() takes mu_ again for each further page
  return config;
}

}  // namespace

SyncService::SyncService(CentralStore& store, Authenticator& auth, Options options, Sink sink)
    : store_(store),
      options_(std::move(options)),
      group_commit_(store.commits_need_sync()),
      sink_(std::move(sink)),
      server_(store, auth, sync_config(options_.sync, group_commit_)) {
  if (group_commit_) flusher_ = std::thread([this] { flusher(); });
}

SyncService::~SyncService() {
  {
    MutexLock lock(mu_);
    stopping_ = true;
  }
  held_cv_.notify_all();
  if (flusher_.joinable()) flusher_.join();
}

void SyncService::log(const std::string& line) const {
  if (options_.log) options_.log(line);
}

void SyncService::count(Counter c, uint64_t n, std::string_view label) const {
  if (options_.metrics) options_.metrics->add(c, n, label);
}

void SyncService::emit_locked(Held h) {
  if (!group_commit_) {
    std::vector<Held> one;
    one.push_back(std::move(h));
    release(one);  // under mu_: the sink sees every session's frames in production order
    return;
  }
  held_.push_back(std::move(h));
  held_cv_.notify_one();
}

void SyncService::flush_locked(SessionId from, const protocol::PushTxns* push, Clock::time_point received) {
  std::vector<SyncServer::Outgoing> out = server_.take_outgoing();
  std::vector<SessionId> closing = server_.take_closing();
  for (SyncServer::Outgoing& o : out) {
    Held h;
    h.out.session = o.session;
    const std::string session = std::to_string(o.session);
    std::visit(
        [&](const auto& m) {
          mu_.assert_held();  // runs here, under the lock; the analysis does not follow lambdas
          using M = std::decay_t<decltype(m)>;
          if constexpr (std::is_same_v<M, protocol::Welcome>) {
            SessionInfo& info = info_[o.session];
            info.user = m.user;
            info.protocol_version = m.protocol_version;
            if (info.node != 0) {
              // Only a device that passed the handshake is recorded: a Hello with someone's node id and no
              // valid token never reaches head office's page (its connection time, schema, cursor, build).
              LiveDevice& a = activity_[info.node];
              a.node = info.node;
              a.session = o.session;
              a.user = m.user;
              a.protocol_version = m.protocol_version;
              a.connected_at_ms = info.connected_at_ms;
              a.schema_version = info.schema_version;
              a.cursor = info.cursor;
              a.app_version = info.app_version;
            }
            count(Counter::kHandshakes);
            log("event=hello session=" + session + " user=" + quoted_value(m.user) +
                " node=" + std::to_string(info.node) + " server_seq=" + std::to_string(m.server_seq) +
                (info.app_version.empty() ? "" : " app=" + quoted_value(info.app_version)));
          } else if constexpr (std::is_same_v<M, protocol::PushAck>) {
            size_t applied = 0, rejected = 0, duplicate = 0, conflicts = 0;
            size_t in_push = 0;  // results and the push's transactions are both in node_seq order
            for (const protocol::TxnResult& r : m.results) {
              switch (r.outcome) {
                case protocol::TxnOutcome::kApplied:
                  applied++;
                  count(Counter::kTxns, 1, "applied");
                  if (push != nullptr && o.session == from) {
                    while (in_push < push->txns.size() && push->txns[in_push].node_seq < r.node_seq)
                      ++in_push;
                    if (in_push < push->txns.size() && push->txns[in_push].node_seq == r.node_seq)
                      count(Counter::kChangesApplied, push->txns[in_push].changes.size());
                  }
                  break;
                case protocol::TxnOutcome::kRejected:
                  rejected++;
                  count(Counter::kTxns, 1, "rejected");
                  count(Counter::kRejections, 1, to_string(r.reason));
                  break;
                case protocol::TxnOutcome::kDuplicate:
                  duplicate++;
                  count(Counter::kTxns, 1, "duplicate");
                  break;
              }
              for (const ConflictRecord& c : r.conflicts) count(Counter::kConflicts, 1, to_string(c.kind));
              conflicts += r.conflicts.size();
            }
            if (push != nullptr && o.session == from) h.push_received = received;
            h.committed = applied > 0;
            const SessionInfo& info = info_[o.session];
            h.log_line = "event=push session=" + session + " user=" + quoted_value(info.user) +
                         " node=" + std::to_string(info.node) + " request=" + std::to_string(m.request_id) +
                         " txns=" + std::to_string(m.results.size()) + " applied=" + std::to_string(applied) +
                         " rejected=" + std::to_string(rejected) + " duplicate=" + std::to_string(duplicate) +
                         " conflicts=" + std::to_string(conflicts);
          } else if constexpr (std::is_same_v<M, protocol::Error>) {
            count(Counter::kErrors, 1, to_string(m.code));
            auto it = info_.find(o.session);
            log("event=error session=" + session +
                " user=" + quoted_value(it != info_.end() ? it->second.user : std::string()) +
                " code=" + std::string(to_string(m.code)) + " message=" + quoted_value(m.message) +
                " retryable=" + (m.retryable ? "true" : "false"));
            // A refused handshake is answered late, to slow down guessing tokens.
            if (is_auth_refusal(m.code) && (it == info_.end() || it->second.user.empty()))
              h.out.delay_ms = options_.auth_failure_delay_ms;
          } else if constexpr (std::is_same_v<M, protocol::ChangeBatch>) {
            if (m.request_id == 0) count(Counter::kLiveBatches);
            // What the device is brought up to (sync health: its cursor against the log head).
            if (auto it = info_.find(o.session); it != info_.end() && it->second.node != 0) {
              LiveDevice& a = activity_[it->second.node];
              a.cursor = std::max(a.cursor, m.to_cursor);
            }
          }
        },
        o.message);
    auto info = info_.find(o.session);
    h.protocol_version = info != info_.end() ? info->second.protocol_version : 1;
    if (group_commit_) {
      h.message = std::move(o.message);
    } else {
      h.out.frame =
          std::make_shared<const std::vector<uint8_t>>(codec::encode(o.message, h.protocol_version));
    }
    emit_locked(std::move(h));
  }
  for (SessionId s : closing) {
    Held h;
    h.out.session = s;
    h.out.close_after = true;
    emit_locked(std::move(h));
  }
}

void SyncService::release(std::vector<Held>& batch) {
  const Clock::time_point now = Clock::now();
  if (options_.after_commit &&
      std::any_of(batch.begin(), batch.end(), [](const Held& h) { return h.committed; }))
    options_.after_commit();
  for (Held& h : batch) {
    if (h.out.frame) count(Counter::kFramesSent), count(Counter::kBytesSent, h.out.frame->size());
    if (!h.log_line.empty()) {
      if (h.push_received) {
        const double seconds = std::chrono::duration<double>(now - *h.push_received).count();
        if (options_.metrics) options_.metrics->observe_push_durable(seconds);
        h.log_line += " durable_ms=" + std::to_string(static_cast<int64_t>(seconds * 1000.0));
      }
      log(h.log_line);
    }
    if (h.on_durable) {
      h.on_durable();
      continue;
    }
    sink_(std::move(h.out));
  }
  batch.clear();
}

void SyncService::flusher() {
  std::unique_lock lock(mu_.native());
  for (;;) {
    // A fan-out left pending (a flush bigger than one live scan) continues even if it produced nothing.
    held_cv_.wait(lock, [&] {
      mu_.assert_held();  // a wait's predicate runs with the lock held
      return !held_.empty() || stopping_ || server_.fan_out_pending();
    });
    if (held_.empty() && stopping_) return;  // nothing left
    // One scan for the live batches of every commit since the last flush; they leave with this flush.
    server_.fan_out(wall_ms());
    flush_locked(0, nullptr, Clock::now());
    std::vector<Held> batch = std::exchange(held_, {});
    if (batch.empty()) continue;  // a continued fan-out that found nothing to send
    lock.unlock();
    for (Held& h : batch) {
      if (!h.message) continue;
      h.out.frame =
          std::make_shared<const std::vector<uint8_t>>(codec::encode(*h.message, h.protocol_version));
      h.message.reset();
    }
    // Every commit behind these frames returned before they were queued, so before this sync() begins.
    const Clock::time_point start = Clock::now();
    Status synced = store_.sync();
    count(Counter::kGroupSyncs);
    if (options_.metrics)
      options_.metrics->observe_store_sync(std::chrono::duration<double>(Clock::now() - start).count());
    if (!synced) {
      log("event=fatal reason=store_sync_failed error=" + quoted_value(synced.to_string()) +
          " held_frames=" + std::to_string(batch.size()));
      if (options_.on_fatal) {
        options_.on_fatal(synced);
      } else {
        std::cerr << "fieldsync-server: the central store could not be made durable (" << synced.to_string()
                  << "); stopping so that nothing unsaved is acknowledged\n";
        std::abort();
      }
      // Nothing held is ever sent: close those sessions; their devices re-push after reconnecting.
      lock.lock();
      for (const Held& h : batch) sink_(Outbound{h.out.session, nullptr, true, 0});
      for (const Held& h : held_) sink_(Outbound{h.out.session, nullptr, true, 0});
      held_.clear();
      continue;
    }
    release(batch);
    lock.lock();
  }
}

void SyncService::connect(SessionId session, int64_t now_ms) {
  MutexLock lock(mu_);
  info_[session] = SessionInfo{};
  server_.on_connect(session, now_ms);
  flush_locked(session, nullptr, Clock::now());
}

bool SyncService::frame(SessionId session, std::span<const uint8_t> bytes, int64_t now_ms) {
  const Clock::time_point received = Clock::now();
  count(Counter::kFramesReceived);
  count(Counter::kBytesReceived, bytes.size());
  // Decoding (FlatBuffers verification and model checks) needs no shared state: done before taking the lock.
  Result<protocol::Message> m = codec::decode(bytes);
  bool solicited = false;
  {
    MutexLock lock(mu_);
    const protocol::PushTxns* push = nullptr;
    if (m) {
      SessionInfo& info = info_[session];
      const auto* hello = std::get_if<protocol::Hello>(&m.value());
      if (hello != nullptr) {
        // Recorded in the node's activity by the Welcome (flush_locked), if authentication lets one out.
        info.node = hello->node;
        info.connected_at_ms = now_ms;
        info.app_version = hello->app_version;
        info.schema_version = hello->schema_version;
        info.cursor = hello->cursor;
      } else if ((push = std::get_if<protocol::PushTxns>(&m.value()))) {
        count(Counter::kPushes);
      }
      if (hello == nullptr && info.node != 0 && !info.user.empty()) {  // past the handshake
        LiveDevice& a = activity_[info.node];
        a.session = session;
        if (push != nullptr) {
          a.last_push_ms = now_ms;
        } else {
          a.last_pull_ms = now_ms;
        }
      }
      solicited = server_.on_message(session, m.value(), now_ms);
      if (hello != nullptr && token_expiry_) {
        if (std::optional<int64_t> expiry = token_expiry_(hello->token)) expiry_ms_[session] = *expiry;
      }
    } else {
      server_.on_bad_frame(session, m.status());
    }
    flush_locked(session, push, received);
  }
  continue_bootstrap(session, now_ms);
  return solicited;
}

void SyncService::continue_bootstrap(SessionId session, int64_t now_ms) {
  // The further pages of a multi-page bootstrap request, one per hold of mu_: other sessions' frames and the
  // flusher get in between page reads (a run of page reads under one hold stalled every session). A
  // backlogged session's wait for set_backlogged(false).
  for (;;) {
    MutexLock lock(mu_);
    if (!server_.bootstrap_pages_owed(session)) return;
    server_.continue_bootstrap(session, now_ms);
    flush_locked(session, nullptr, Clock::now());
  }
}

void SyncService::set_token_expiry(TokenExpiry expiry) {
  MutexLock lock(mu_);
  token_expiry_ = std::move(expiry);
}

void SyncService::expire(int64_t now_ms) {
  MutexLock lock(mu_);
  for (auto it = expiry_ms_.begin(); it != expiry_ms_.end();) {
    if (it->second > now_ms) {
      ++it;
      continue;
    }
    protocol::Error e;
    e.code = ErrorCode::kTokenExpired;
    e.message = "device token expired";
    count(Counter::kErrors, 1, to_string(e.code));
    log("event=token_expired session=" + std::to_string(it->first));
    Held h;
    h.out.session = it->first;
    auto info = info_.find(it->first);
    h.protocol_version = info != info_.end() ? info->second.protocol_version : 1;
    h.out.frame = std::make_shared<const std::vector<uint8_t>>(codec::encode(e, h.protocol_version));
    emit_locked(std::move(h));
    Held close;
    close.out.session = it->first;
    close.out.close_after = true;
    emit_locked(std::move(close));
    it = expiry_ms_.erase(it);
  }
}

void SyncService::poll_external_commits(int64_t now_ms) {
  MutexLock lock(mu_);
  server_.poll_external_commits(now_ms);
  flush_locked(0, nullptr, Clock::now());
  if (server_.fan_out_pending()) held_cv_.notify_one();  // the flusher continues it
}

void SyncService::bad_frame(SessionId session, const Status& status) {
  MutexLock lock(mu_);
  server_.on_bad_frame(session, status);
  flush_locked(session, nullptr, Clock::now());
}

void SyncService::disconnect(SessionId session) {
  MutexLock lock(mu_);
  expiry_ms_.erase(session);
  info_.erase(session);
  server_.on_disconnect(session);
  flush_locked(session, nullptr, Clock::now());
}

void SyncService::set_backlogged(SessionId session, bool backlogged) {
  {
    MutexLock lock(mu_);
    server_.set_backlogged(session, backlogged);
    flush_locked(session, nullptr, Clock::now());
  }
  if (!backlogged) continue_bootstrap(session, wall_ms());  // pages that waited for the queue to drain
}

void SyncService::write(NodeId node, const Principal& who, std::vector<Change> changes, int64_t now_ms,
                        WriteDone done) {
  std::optional<Result<protocol::TxnResult>> answer;
  {
    MutexLock lock(mu_);
    auto outcome = [&]() -> Result<protocol::TxnResult> {
      mu_.assert_held();
      Result<NodeState> state = store_.node_state(node);
      if (!state) return state.status();
      Result<Hlc> persisted = store_.clock();
      if (!persisted) return persisted.status();
      HybridClock clock(std::max(*persisted, server_.hlc()));
      std::map<RecordKey, std::optional<RecordState>> current;
      for (Change& c : changes) {
        c.version = Version{clock.tick(now_ms), node};
        if (c.op != ChangeOp::kSet) continue;
        const RecordKey key{c.entity, c.record};
        auto it = current.find(key);
        if (it == current.end()) {
          Result<std::optional<RecordState>> stored = store_.load(c.entity, c.record);
          if (!stored) return stored.status();
          it = current.emplace(key, std::move(stored.value())).first;
        }
        if (it->second)
          if (const FieldState* f = it->second->field(c.field)) c.base = f->version;
      }
      ClientTxn txn;
      txn.node = node;
      txn.node_seq = state->last_node_seq + 1;
      txn.created_at_ms = now_ms;
      txn.changes = std::move(changes);
      return server_.apply_local(txn, who, now_ms);
    };
    Result<protocol::TxnResult> r = outcome();
    if (r && r->outcome == protocol::TxnOutcome::kApplied) {
      count(Counter::kTxns, 1, "applied");
    } else if (r && r->outcome == protocol::TxnOutcome::kRejected) {
      count(Counter::kTxns, 1, "rejected");
      count(Counter::kRejections, 1, to_string(r->reason));
    }
    if (r) {
      for (const ConflictRecord& c : r->conflicts) count(Counter::kConflicts, 1, to_string(c.kind));
    }
    flush_locked(0, nullptr, Clock::now());  // live batches (without group commit: now)
    const bool committed = r && r->outcome == protocol::TxnOutcome::kApplied;
    if (!group_commit_ || !r) {
      if (committed && options_.after_commit) options_.after_commit();
      answer = std::move(r);
    } else {
      // Answered behind every frame the commit produced, after the flush that makes it durable.
      Held h;
      h.on_durable = [done, r = std::move(r)]() mutable { done(std::move(r)); };
      h.committed = committed;
      emit_locked(std::move(h));
      if (server_.fan_out_pending()) held_cv_.notify_one();
    }
  }
  if (answer) done(std::move(*answer));
}

void SyncService::cut_user(const UserId& user, ErrorCode code, const std::string& message) {
  MutexLock lock(mu_);
  std::vector<SessionId> sessions;
  for (const auto& [id, info] : info_)
    if (info.user == user) sessions.push_back(id);
  for (SessionId id : sessions) server_.on_bad_frame(id, Status(code, message));
  flush_locked(0, nullptr, Clock::now());
}

void SyncService::cut_node(NodeId node, ErrorCode code, const std::string& message) {
  MutexLock lock(mu_);
  std::vector<SessionId> sessions;
  for (const auto& [id, info] : info_)
    if (info.node == node && !info.user.empty()) sessions.push_back(id);
  for (SessionId id : sessions) server_.on_bad_frame(id, Status(code, message));
  flush_locked(0, nullptr, Clock::now());
}

void SyncService::refresh_principals(const std::function<Result<Principal>(const UserId&)>& lookup,
                                     int64_t now_ms) {
  std::set<UserId> users;
  {
    MutexLock lock(mu_);
    for (const auto& [id, info] : info_)
      if (!info.user.empty()) users.insert(info.user);
  }
  std::vector<Principal> principals;
  for (const UserId& u : users)
    if (Result<Principal> p = lookup(u)) principals.push_back(std::move(*p));
  MutexLock lock(mu_);
  for (const Principal& p : principals) server_.update_principal(p, now_ms);
  flush_locked(0, nullptr, Clock::now());
}

std::vector<SyncService::LiveDevice> SyncService::live_devices() const {
  MutexLock lock(mu_);
  std::vector<LiveDevice> out;
  for (const auto& [id, info] : info_) {
    if (info.user.empty()) continue;  // not past the handshake
    LiveDevice d;
    d.session = id;
    d.user = info.user;
    d.node = info.node;
    d.protocol_version = info.protocol_version;
    d.connected_at_ms = info.connected_at_ms;
    if (auto it = activity_.find(info.node); it != activity_.end()) {
      d.last_push_ms = it->second.last_push_ms;
      d.last_pull_ms = it->second.last_pull_ms;
      d.schema_version = it->second.schema_version;
      d.app_version = it->second.app_version;
      d.cursor = it->second.cursor;
    }
    out.push_back(std::move(d));
  }
  return out;
}

std::map<NodeId, SyncService::LiveDevice> SyncService::device_activity() const {
  MutexLock lock(mu_);
  return activity_;
}

size_t SyncService::session_count() const {
  MutexLock lock(mu_);
  return server_.session_count();
}

// ---- DevAuthenticator

namespace {
std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  for (;;) {
    size_t p = s.find(sep, start);
    out.push_back(s.substr(start, p == std::string::npos ? std::string::npos : p - start));
    if (p == std::string::npos) return out;
    start = p + 1;
  }
}
}  // namespace

Result<Principal> DevAuthenticator::authenticate(const protocol::Hello& hello, int64_t) {
  std::vector<std::string> parts = split(hello.token, ':');
  if (parts.size() != 4 || parts[0] != "dev" || parts[1].empty())
    return Status(ErrorCode::kAuthFailed, "authentication failed");
  Principal p;
  p.user = parts[1];
  if (parts[2] == "rep")
    p.role = schema::Role::kRep;
  else if (parts[2] == "manager")
    p.role = schema::Role::kManager;
  else if (parts[2] == "head_office")
    p.role = schema::Role::kHeadOffice;
  else
    return Status(ErrorCode::kAuthFailed, "authentication failed");
  if (!parts[3].empty()) p.territories = split(parts[3], ',');
  return p;
}

std::string DevAuthenticator::token(const std::string& user, const std::string& role,
                                    const std::string& territories) {
  return "dev:" + user + ":" + role + ":" + territories;
}

}  // namespace fieldsync::server
