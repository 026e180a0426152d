// The TLS policy of both ends of the sync protocol, in one place: the server's listener
// (server/src/listener.cc), the device's WebSocket transport and its login request
// (client-core/src/ws_client.cc). A suite or version changed here changes for both, so a device never offers
// what the server refuses or the reverse.
#pragma once

#include <openssl/ssl.h>

namespace fieldsync::net {

// TLS 1.2 minimum; OpenSSL negotiates 1.3 whenever both ends can.
inline constexpr int kTlsMinVersion = TLS1_2_VERSION;

// TLS 1.2: AEAD suites only, Mozilla's intermediate profile without DHE (no DH parameters are loaded).
// OpenSSL's default list still offers CBC suites (ECDHE-ECDSA-AES128-SHA and friends, where Lucky13-style
// padding oracles live). TLS 1.3's suites are all AEAD and keep OpenSSL's defaults.
inline constexpr const char* kTls12CipherSuites =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

// Applies the policy to a server or client context: the minimum version, the TLS 1.2 suites, and no
// renegotiation (each one costs a handshake's CPU, an old denial-of-service lever; nothing needs it; OpenSSL
// 3 refuses a client's by default, said here so that no library version or default decides it). False when
// this OpenSSL has none of the suites.
inline bool apply_tls_policy(SSL_CTX* ctx) {
  if (SSL_CTX_set_min_proto_version(ctx, kTlsMinVersion) != 1) return false;
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION);
  return SSL_CTX_set_cipher_list(ctx, kTls12CipherSuites) == 1;
}

}  // namespace fieldsync::net
