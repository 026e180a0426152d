// The benches' one reader of a running fieldsync-server's counters (GET /metrics over loopback, through curl:
// scripts/install-deps.sh installs it).
#pragma once

#include <cstdint>
#include <cstdio>
#include <map>
#include <string>

namespace fieldsync::bench {

// Every sample of the server's /metrics by its name, labels included (`name{label="x"}`). Empty if curl or
// the server did not answer; the figures that need it are then left out.
inline std::map<std::string, double> scrape_metrics(uint16_t port) {
  std::map<std::string, double> out;
  const std::string cmd = "curl -sk --max-time 5 https://127.0.0.1:" + std::to_string(port) + "/metrics";
  FILE* f = popen(cmd.c_str(), "r");
  if (f == nullptr) return out;
  char line[512];
  while (std::fgets(line, sizeof line, f) != nullptr) {
    if (line[0] == '#') continue;
    char name[256];
    double value = 0;
    if (std::sscanf(line, "%255s %lf", name, &value) == 2) out[name] = value;
  }
  pclose(f);
  return out;
}

}  // namespace fieldsync::bench
