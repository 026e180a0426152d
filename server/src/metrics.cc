#include "fieldsync/server/metrics.h"

#include <cmath>
#include <cstdio>

namespace fieldsync::server {
namespace {

constexpr CounterDef kDefs[] = {
    {"sessions_opened", "", "WebSocket sync sessions accepted."},
    {"sessions_closed", "reason", "Sync sessions closed, by reason."},
    {"handshakes", "", "Devices authenticated (Welcome sent)."},
    {"frames_received", "", "Binary WebSocket messages received."},
    {"bytes_received", "", "Bytes of binary WebSocket messages received."},
    {"frames_sent", "", "Messages released to sessions."},
    {"bytes_sent", "", "Bytes of messages released to sessions."},
    {"pushes", "", "PushTxns messages received."},
    {"txns", "outcome", "Pushed client transactions, by outcome (applied, rejected, duplicate)."},
    {"changes_applied", "", "Field changes in applied client transactions."},
    {"rejections", "reason", "Rejected client transactions, by reason."},
    {"conflicts", "kind", "Conflicts recorded, by kind (concurrent_write, delete_wins, scheduling)."},
    {"errors", "code", "Error frames sent to devices, by code."},
    {"live_batches", "", "Change batches pushed to live sessions."},
    {"store_syncs", "", "Group-commit flushes of the central store."},
    {"logins", "outcome", "POST /login requests, by outcome."},
    {"http_requests", "path", "Plain HTTP requests, by path."},
};
static_assert(std::size(kDefs) == static_cast<size_t>(Counter::kCount_), "one definition per counter");

// Label values come from our own code (enum names, fixed reasons), but escape anyway: the format requires it.
std::string escape_label(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

std::string number(double v) {
  if (std::isnan(v)) return "NaN";
  char buf[64];
  if (v == std::floor(v) && std::fabs(v) < 1e15) {
    std::snprintf(buf, sizeof buf, "%.0f", v);
  } else {
    std::snprintf(buf, sizeof buf, "%.6g", v);
  }
  return buf;
}

void header(std::string& out, std::string_view name, std::string_view type, std::string_view help) {
  out += "# HELP ";
  out += name;
  out += ' ';
  out += help;
  out += "\n# TYPE ";
  out += name;
  out += ' ';
  out += type;
  out += '\n';
}

}  // namespace

const CounterDef& counter_def(Counter c) {
  return kDefs[static_cast<size_t>(c)];
}

Metrics::Metrics() = default;

void Metrics::add(Counter c, uint64_t n, std::string_view label_value) {
  MutexLock lock(mu_);
  counters_[{c, std::string(label_value)}] += n;
}

uint64_t Metrics::value(Counter c, std::string_view label_value) const {
  MutexLock lock(mu_);
  auto it = counters_.find({c, std::string(label_value)});
  return it == counters_.end() ? 0 : it->second;
}

uint64_t Metrics::total(Counter c) const {
  MutexLock lock(mu_);
  uint64_t sum = 0;
  for (auto it = counters_.lower_bound({c, std::string()}); it != counters_.end() && it->first.first == c;
       ++it)
    sum += it->second;
  return sum;
}

void Metrics::Histogram::observe(double v) {
  size_t i = 0;
  while (i < kBounds.size() && v > kBounds[i]) ++i;
  if (i < kBounds.size()) buckets[i]++;
  count++;
  sum += v;
}

void Metrics::Histogram::render(std::string& out, std::string_view name, std::string_view help) const {
  header(out, name, "histogram", help);
  uint64_t cumulative = 0;
  for (size_t i = 0; i < kBounds.size(); ++i) {
    cumulative += buckets[i];
    out +=
        std::string(name) + "_bucket{le=\"" + number(kBounds[i]) + "\"} " + std::to_string(cumulative) + "\n";
  }
  out += std::string(name) + "_bucket{le=\"+Inf\"} " + std::to_string(count) + "\n";
  out += std::string(name) + "_sum " + number(sum) + "\n";
  out += std::string(name) + "_count " + std::to_string(count) + "\n";
}

void Metrics::observe_push_durable(double seconds) {
  MutexLock lock(mu_);
  push_durable_.observe(seconds);
}

void Metrics::observe_store_sync(double seconds) {
  MutexLock lock(mu_);
  store_sync_.observe(seconds);
}

void Metrics::gauge(std::string name, std::string help, std::function<double()> read) {
  MutexLock lock(mu_);
  gauges_.push_back(Gauge{std::move(name), std::move(help), std::move(read)});
}

void Metrics::tick(int64_t now_ms) {
  Sample s;
  s.at_ms = now_ms;
  s.pushes = total(Counter::kPushes);
  s.changes = total(Counter::kChangesApplied);
  s.txns = value(Counter::kTxns, "applied");
  MutexLock lock(mu_);
  samples_.push_back(s);
  // Keep just over ten seconds: the oldest sample is the window's start.
  while (samples_.size() > 2 && samples_.back().at_ms - samples_[1].at_ms >= 10'000) samples_.pop_front();
}

std::string Metrics::render() {
  std::vector<Gauge> gauges;
  {
    MutexLock lock(mu_);
    gauges = gauges_;
  }
  // Gauge callbacks read other objects (the store, the session registry): called without our lock.
  std::vector<double> gauge_values;
  for (const Gauge& g : gauges) gauge_values.push_back(g.read ? g.read() : 0.0);

  std::string out;
  MutexLock lock(mu_);
  for (size_t i = 0; i < std::size(kDefs); ++i) {
    const Counter c = static_cast<Counter>(i);
    const CounterDef& d = kDefs[i];
    const std::string name = "fieldsync_" + std::string(d.name) + "_total";
    header(out, name, "counter", d.help);
    bool any = false;
    for (auto it = counters_.lower_bound({c, std::string()}); it != counters_.end() && it->first.first == c;
         ++it) {
      any = true;
      out += name;
      if (!d.label.empty()) {
        out += '{';
        out += d.label;
        out += "=\"";
        out += escape_label(it->first.second);
        out += "\"}";
      }
      out += ' ';
      out += std::to_string(it->second);
      out += '\n';
    }
    if (!any && d.label.empty()) out += name + " 0\n";
  }
  push_durable_.render(
      out, "fieldsync_push_durable_seconds",
      "Time from receiving a push to sending its acknowledgement, after the commit is durable.");
  store_sync_.render(out, "fieldsync_store_sync_seconds", "Duration of one group-commit flush of the store.");

  double pushes_rate = 0, changes_rate = 0, txns_rate = 0;
  if (samples_.size() >= 2) {
    const Sample& a = samples_.front();
    const Sample& b = samples_.back();
    const double span_s = static_cast<double>(b.at_ms - a.at_ms) / 1000.0;
    if (span_s > 0) {
      pushes_rate = static_cast<double>(b.pushes - a.pushes) / span_s;
      changes_rate = static_cast<double>(b.changes - a.changes) / span_s;
      txns_rate = static_cast<double>(b.txns - a.txns) / span_s;
    }
  }
  for (auto [name, help, v] :
       {std::tuple{"fieldsync_pushes_per_second", "Pushes received per second (10 s).", pushes_rate},
        std::tuple{"fieldsync_changes_per_second", "Field changes applied per second (10 s).", changes_rate},
        std::tuple{"fieldsync_txns_applied_per_second", "Client transactions applied per second (10 s).",
                   txns_rate}}) {
    header(out, name, "gauge", help);
    out += std::string(name) + " " + number(v) + "\n";
  }
  for (size_t i = 0; i < gauges.size(); ++i) {
    header(out, gauges[i].name, "gauge", gauges[i].help);
    out += gauges[i].name + " " + number(gauge_values[i]) + "\n";
  }
  return out;
}

}  // namespace fieldsync::server
