// The server's metrics, served at GET /metrics in the Prometheus text format (version 0.0.4).
//
// Counters only go up (Prometheus' rate() turns them into per-second figures); for a person reading the page
// with curl, the main ones also have a `_per_second` gauge averaged over the last ten seconds, from samples
// the network server takes once a second (tick()). Gauges that belong to other objects (open sessions, store
// size, log head) are read at scrape time through callbacks.
//
// Thread-safe: every method may be called from any thread; one mutex guards the values. Recording is a map
// update under that mutex, far cheaper than the store commit it accompanies.
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "fieldsync/sync/thread_annotations.h"

namespace fieldsync::server {

enum class Counter : uint8_t {
  kSessionsOpened,  // WebSocket sessions accepted
  kSessionsClosed,  // label reason: closed_by_peer, closed_by_server, write_queue_overflow, ...
  kHandshakes,      // Welcome sent: a device authenticated
  kFramesReceived,  // binary messages read
  kBytesReceived,   //
  kFramesSent,      // messages released to sessions
  kBytesSent,       //
  kPushes,          // PushTxns messages
  kTxns,            // label outcome: applied, rejected, duplicate
  kChangesApplied,  // field changes in applied transactions
  kRejections,      // label reason: the ErrorCode name (out_of_scope, order_locked, ...)
  kConflicts,       // label kind: concurrent_write, delete_wins, scheduling
  kErrors,          // Error frames sent, label code
  kLiveBatches,     // ChangeBatches pushed to live sessions without a request
  kGroupSyncs,      // store flushes (group commit)
  kLogins,          // POST /login, label outcome: ok, failed, rate_limited, busy, bad_request
  kHttpRequests,    // plain HTTP requests, label path
  kCount_,
};

struct CounterDef {
  std::string_view name;   // without the fieldsync_ prefix and _total suffix
  std::string_view label;  // label name, or empty
  std::string_view help;
};
const CounterDef& counter_def(Counter c);

class Metrics {
 public:
  Metrics();

  void add(Counter c, uint64_t n = 1, std::string_view label_value = {});
  uint64_t value(Counter c, std::string_view label_value = {}) const;  // for tests
  uint64_t total(Counter c) const;                                     // summed over labels

  // Time from receiving a push to releasing its acknowledgement (after the commit is durable).
  void observe_push_durable(double seconds);
  // Duration of one group-commit flush of the store.
  void observe_store_sync(double seconds);

  // A gauge read at scrape time. Registered once, before serving.
  void gauge(std::string name, std::string help, std::function<double()> read);

  // Once a second: samples the counters behind the _per_second gauges.
  void tick(int64_t now_ms);

  std::string render();

 private:
  struct Histogram {
    static constexpr std::array<double, 14> kBounds = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                                       0.25,  0.5,    1,     2.5,  5,     10,   30};
    std::array<uint64_t, kBounds.size()> buckets{};  // non-cumulative; rendered cumulative
    uint64_t count = 0;
    double sum = 0;
    void observe(double v);
    void render(std::string& out, std::string_view name, std::string_view help) const;
  };
  struct Gauge {
    std::string name;
    std::string help;
    std::function<double()> read;
  };
  struct Sample {
    int64_t at_ms = 0;
    uint64_t pushes = 0;
    uint64_t changes = 0;
    uint64_t txns = 0;
  };

  mutable Mutex mu_;
  std::map<std::pair<Counter, std::string>, uint64_t> counters_ GUARDED_BY(mu_);
  Histogram push_durable_ GUARDED_BY(mu_);
  Histogram store_sync_ GUARDED_BY(mu_);
  std::deque<Sample> samples_ GUARDED_BY(mu_);  // the last ~10 s
  std::vector<Gauge> gauges_;                   // registered before serving
};

}  // namespace fieldsync::server
