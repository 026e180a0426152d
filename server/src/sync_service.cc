#include "fieldsync/server/sync_service.h"

#include <utility>

#include "fieldsync/sync/codec.h"

namespace fieldsync::server {

SyncService::SyncService(CentralStore& store, Authenticator& auth, ServerConfig config, Sink sink)
    : server_(store, auth, config), sink_(std::move(sink)) {}

void SyncService::flush_locked() {
  std::vector<SyncServer::Outgoing> out = server_.take_outgoing();
  std::vector<SessionId> closing = server_.take_closing();
  for (SyncServer::Outgoing& o : out)
    sink_(o.session, std::make_shared<const std::vector<uint8_t>>(codec::encode(o.message)), false);
  for (SessionId s : closing) sink_(s, nullptr, true);
}

void SyncService::connect(SessionId session, int64_t now_ms) {
  std::lock_guard lock(mu_);
  server_.on_connect(session, now_ms);
  flush_locked();
}

void SyncService::frame(SessionId session, std::span<const uint8_t> bytes, int64_t now_ms) {
  // Decoding (FlatBuffers verification and model checks) needs no shared state: done before taking the lock.
  Result<protocol::Message> m = codec::decode(bytes);
  std::lock_guard lock(mu_);
  if (m) {
    server_.on_message(session, m.value(), now_ms);
    if (const auto* hello = std::get_if<protocol::Hello>(&m.value()); hello && token_expiry_) {
      if (std::optional<int64_t> expiry = token_expiry_(hello->token)) expiry_ms_[session] = *expiry;
    }
  } else {
    server_.on_bad_frame(session, m.status());
  }
  flush_locked();
}

void SyncService::set_token_expiry(TokenExpiry expiry) {
  std::lock_guard lock(mu_);
  token_expiry_ = std::move(expiry);
}

void SyncService::expire(int64_t now_ms) {
  std::lock_guard lock(mu_);
  for (auto it = expiry_ms_.begin(); it != expiry_ms_.end();) {
    if (it->second > now_ms) {
      ++it;
      continue;
    }
    protocol::Error e;
    e.code = ErrorCode::kTokenExpired;
    e.message = "device token expired";
    sink_(it->first, std::make_shared<const std::vector<uint8_t>>(codec::encode(e)), false);
    sink_(it->first, nullptr, true);
    it = expiry_ms_.erase(it);
  }
}

void SyncService::bad_frame(SessionId session, const Status& status) {
  std::lock_guard lock(mu_);
  server_.on_bad_frame(session, status);
  flush_locked();
}

void SyncService::disconnect(SessionId session) {
  std::lock_guard lock(mu_);
  expiry_ms_.erase(session);
  server_.on_disconnect(session);
  flush_locked();
}

size_t SyncService::session_count() const {
  std::lock_guard lock(mu_);
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
