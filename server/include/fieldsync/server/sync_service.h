// Thread-safe owner of a SyncServer that speaks frames: the network sessions (any io thread) hand it received
// WebSocket messages and it hands encoded frames to a Sink for whichever sessions they are for (the sender's
// answers and live fan-out to others). SyncServer is single-threaded, so one mutex serialises every event.
//
// The sink is called with the mutex held, in the order SyncServer produced the messages. That is what keeps
// each session's frames in order across threads; the sink must therefore only queue (never block or call
// back into the service).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "fieldsync/sync/server.h"

namespace fieldsync::server {

using Frame = std::shared_ptr<const std::vector<uint8_t>>;

class SyncService {
 public:
  // Delivers `frame` (may be null: nothing to send) to `session`; `close_after` asks the session to close
  // once it has sent everything queued so far.
  using Sink = std::function<void(SessionId session, Frame frame, bool close_after)>;

  SyncService(CentralStore& store, Authenticator& auth, ServerConfig config, Sink sink);

  void connect(SessionId session, int64_t now_ms);
  // One received binary message. A frame that does not decode goes to SyncServer::on_bad_frame (Error,
  // close).
  void frame(SessionId session, std::span<const uint8_t> bytes, int64_t now_ms);
  // A message the transport refused before decoding (text message, over the size limit): Error, then close.
  void bad_frame(SessionId session, const Status& status);
  void disconnect(SessionId session);

  size_t session_count() const;

  // Tokens are checked at the handshake by the Authenticator; `expiry` says when an accepted token stops
  // being valid (nullopt: never), so a session outliving its token is closed with TokenExpired by expire().
  // Directory::verify_token provides it.
  using TokenExpiry = std::function<std::optional<int64_t>(const std::string& token)>;
  void set_token_expiry(TokenExpiry expiry);
  // Closes every session whose token has expired by `now_ms` (Error TokenExpired, then close). The network
  // server calls it periodically.
  void expire(int64_t now_ms);

 private:
  void flush_locked();

  mutable std::mutex mu_;
  SyncServer server_;
  Sink sink_;
  TokenExpiry token_expiry_;
  std::map<SessionId, int64_t> expiry_ms_;  // sessions whose token expires
};

// TEMPORARY development authenticator until the Directory (server/include/fieldsync/server/directory.h) with
// signed device tokens is wired in. Accepts tokens of the form `dev:USER:ROLE:TERRITORY[,TERRITORY...]` where
// ROLE is rep, manager or head_office; anyone who can reach the server can claim any identity. Only
// fieldsync-server --dev-tokens and the tests use it.
class DevAuthenticator final : public Authenticator {
 public:
  Result<Principal> authenticate(const protocol::Hello& hello, int64_t now_ms) override;
  static std::string token(const std::string& user, const std::string& role, const std::string& territories);
};

}  // namespace fieldsync::server
