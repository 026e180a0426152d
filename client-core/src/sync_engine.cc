#include "fieldsync/client/sync_engine.h"

#include <algorithm>

#include "fieldsync/sync/codec.h"

namespace fieldsync::client {

SyncEngine::SyncEngine(ReplicaStore& store, ClientConfig config) : client_(store, std::move(config)) {}

void SyncEngine::drain_locked() {
  for (const protocol::Message& m : client_.take_outgoing())
    frames_.push_back(codec::encode(m, protocol_version_));
  for (ClientEvent& e : client_.take_events()) events_.push_back(std::move(e));
}

Result<uint64_t> SyncEngine::write(std::vector<Change> changes, int64_t now_ms) {
  std::function<void()> wakeup;
  Result<uint64_t> r = Status();
  {
    MutexLock lock(mu_);
    r = client_.write(std::move(changes), now_ms);
    size_t before = frames_.size();
    drain_locked();
    if (frames_.size() > before) wakeup = wakeup_;
  }
  if (wakeup) wakeup();
  return r;
}

void SyncEngine::connected(int64_t now_ms) {
  MutexLock lock(mu_);
  wants_close_ = false;
  protocol_version_ = 1;
  frames_.clear();  // frames queued for an earlier connection are stale; the handshake restarts the exchange
  client_.on_connected(now_ms);
  drain_locked();
}

void SyncEngine::disconnected(int64_t now_ms) {
  MutexLock lock(mu_);
  client_.on_disconnected(now_ms);
  frames_.clear();
  drain_locked();
  frames_.clear();
}

void SyncEngine::frame(std::span<const uint8_t> frame, int64_t now_ms) {
  MutexLock lock(mu_);
  Result<protocol::Message> m = codec::decode(frame);
  if (!m) {
    ClientEvent e{ClientEvent::Kind::kError};
    e.status = m.status();
    events_.push_back(std::move(e));
    wants_close_ = true;
    return;
  }
  if (const auto* err = std::get_if<protocol::Error>(&m.value()); err && !err->retryable) wants_close_ = true;
  if (const auto* welcome = std::get_if<protocol::Welcome>(&m.value()))
    protocol_version_ = std::min(welcome->protocol_version, protocol::kProtocolVersion);
  client_.on_message(m.value(), now_ms);
  drain_locked();
}

void SyncEngine::tick(int64_t now_ms) {
  MutexLock lock(mu_);
  client_.on_tick(now_ms);
  drain_locked();
}

std::vector<std::vector<uint8_t>> SyncEngine::take_frames() {
  MutexLock lock(mu_);
  return std::exchange(frames_, {});
}

bool SyncEngine::wants_close() {
  MutexLock lock(mu_);
  return wants_close_ || client_.state() == SyncClient::State::kStopped;
}

void SyncEngine::set_wakeup(std::function<void()> wakeup) {
  MutexLock lock(mu_);
  wakeup_ = std::move(wakeup);
}

std::vector<ClientEvent> SyncEngine::take_events() {
  MutexLock lock(mu_);
  return std::exchange(events_, {});
}

SyncClient::State SyncEngine::state() const {
  MutexLock lock(mu_);
  return client_.state();
}

bool SyncEngine::stopped() const {
  return state() == SyncClient::State::kStopped;
}

int64_t SyncEngine::reconnect_not_before_ms() const {
  MutexLock lock(mu_);
  return client_.reconnect_not_before_ms();
}

Status SyncEngine::stop_reason() const {
  MutexLock lock(mu_);
  return client_.stop_reason();
}

bool SyncEngine::idle() const {
  MutexLock lock(mu_);
  return client_.idle();
}

}  // namespace fieldsync::client
