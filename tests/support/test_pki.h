// One self-signed server certificate per test process, shared by every test that starts a TLS server in it:
// RSA key generation is the slow part, so it happens once. Clients trust it through `ca_file` (written to the
// temporary directory, named after the process so parallel ctest processes never share one) or `pin`.
#pragma once

#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>

#include <gtest/gtest.h>

#include "fieldsync/server/tls.h"

namespace fieldsync::testing_support {

struct TestPki {
  server::CertificatePem pem;
  std::string ca_file;
  std::string pin;  // the certificate's SHA-256, as WsClientOptions::pin_sha256 takes it

  static const TestPki& get() {
    static const TestPki pki = [] {
      TestPki p;
      auto pem = server::make_self_signed(server::SelfSignedOptions{});
      EXPECT_TRUE(pem.is_ok()) << pem.status().to_string();
      p.pem = pem.value();
      p.ca_file = (std::filesystem::temp_directory_path() /
                   ("fieldsync-test-" + std::to_string(::getpid()) + "-ca.pem"))
                      .string();
      EXPECT_TRUE(server::write_file(p.ca_file, p.pem.cert_pem, false).is_ok());
      p.pin = server::certificate_sha256(p.pem.cert_pem).value();
      return p;
    }();
    return pki;
  }
};

// Wall-clock milliseconds since the epoch, as the server stamps times.
inline int64_t wall_now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace fieldsync::testing_support
