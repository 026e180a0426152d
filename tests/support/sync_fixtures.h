// Fixtures shared by the sync tests: an Authenticator over a token table and a device (a memory replica
// with its SyncClient). One copy here instead of one per test file.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "fieldsync/sync/client.h"
#include "fieldsync/sync/server.h"
#include "support/memory_store.h"

namespace fieldsync::testing_support {

// Tokens name principals; a revoked token is answered kDeviceRevoked. Thread-safe (networked tests
// authenticate on io threads while the test body edits the table).
class TokenAuth final : public Authenticator {
 public:
  std::map<std::string, Principal> tokens;
  std::set<std::string> revoked;
  std::mutex mu;
  Result<Principal> authenticate(const protocol::Hello& hello, int64_t) override {
    std::lock_guard lock(mu);
    if (revoked.count(hello.token) != 0)
      return Status(ErrorCode::kDeviceRevoked, "this device was revoked by head office");
    auto it = tokens.find(hello.token);
    if (it == tokens.end()) return Status(ErrorCode::kAuthFailed, "authentication failed");
    return it->second;
  }
};

// A phone of the sans-IO tests: its replica, its SyncClient (token "token-<user>"), ids, the session the test
// connected it on and the events its client reported.
struct Device {
  Device(NodeId node, UserId user) : store(node), ids(node) {
    config.user = user;
    config.token = "token-" + user;
    client = std::make_unique<SyncClient>(store, config);
  }
  void restart() { client = std::make_unique<SyncClient>(store, config); }

  MemoryReplicaStore store;
  ClientConfig config;
  std::unique_ptr<SyncClient> client;
  RecordIdGenerator ids;
  SessionId session = 0;
  std::vector<ClientEvent> events;
};

}  // namespace fieldsync::testing_support
