// The wall clock in Unix milliseconds, as the server's components take it (token expiry, log timestamps, the
// time handed to the sans-IO state machines). Internal to server/.
#pragma once

#include <chrono>
#include <cstdint>

namespace fieldsync::server {

inline int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace fieldsync::server
