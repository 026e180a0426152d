// Thread-safe owner of a SyncClient: the app's writes (FieldClient) and the transport's frames (the TLS
// WebSocket connection) both go through one mutex, so the sans-IO state machine sees one event at a time.
// Frames are encoded FlatBuffers (codec.h); decode errors are handled here.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "fieldsync/sync/client.h"
#include "fieldsync/sync/thread_annotations.h"

namespace fieldsync::client {

class SyncEngine {
 public:
  SyncEngine(ReplicaStore& store, ClientConfig config);

  // ---- the app side
  Result<uint64_t> write(std::vector<Change> changes, int64_t now_ms);

  // ---- the transport side
  void connected(int64_t now_ms);
  void disconnected(int64_t now_ms);
  // One received frame. A frame that does not decode is reported as a kError event and makes wants_close()
  // true: the transport closes the connection and reconnects later.
  void frame(std::span<const uint8_t> frame, int64_t now_ms);
  void tick(int64_t now_ms);
  std::vector<std::vector<uint8_t>> take_frames();
  bool wants_close();
  // Called (outside the lock) whenever frames become ready outside a transport callback, i.e. after a local
  // write while connected, so the transport can send them without polling.
  void set_wakeup(std::function<void()> wakeup);

  // ---- both
  std::vector<ClientEvent> take_events();
  SyncClient::State state() const;
  bool stopped() const;  // a non-retryable error: reconnecting will not help (auth, revoked, protocol)
  Status stop_reason() const;
  // SyncClient::reconnect_not_before_ms: the server refused this app's newer schema; no connection before.
  int64_t reconnect_not_before_ms() const;
  bool idle() const;

 private:
  void drain_locked() REQUIRES(mu_);  // moves the client's outgoing messages into frames_

  mutable Mutex mu_;
  SyncClient client_ GUARDED_BY(mu_);
  std::vector<std::vector<uint8_t>> frames_ GUARDED_BY(mu_);
  std::vector<ClientEvent> events_ GUARDED_BY(mu_);
  bool wants_close_ GUARDED_BY(mu_) = false;
  // The connection's protocol version, from the Welcome received on it (1 until then: Hello is always the
  // v1 form); frames are encoded for it.
  uint32_t protocol_version_ GUARDED_BY(mu_) = 1;
  std::function<void()> wakeup_ GUARDED_BY(mu_);
};

}  // namespace fieldsync::client
