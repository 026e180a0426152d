// TLS material for the server: a self-signed development certificate (`fieldsync-server --dev`, tests) and
// the SHA-256 pin of a certificate (what a field app ships to trust exactly this server; io/certificate.h).
// No Asio here: the TLS context itself is built in listener.cc.
#pragma once

#include <string>
#include <vector>

#include "fieldsync/io/certificate.h"
#include "fieldsync/sync/status.h"

namespace fieldsync::server {

struct CertificatePem {
  std::string cert_pem;  // X.509 certificate, PEM
  std::string key_pem;   // its private key, PKCS#8 PEM
};

struct SelfSignedOptions {
  std::string common_name = "localhost";
  std::vector<std::string> dns_names = {"localhost"};     // subjectAltName DNS entries
  std::vector<std::string> ip_addresses = {"127.0.0.1"};  // subjectAltName IP entries
  int valid_days = 365;
};

// A fresh P-256 key and a self-signed certificate for it (CA:TRUE, so the certificate is its own trust anchor
// when given to a client as a CA file). Errors: kInternal with OpenSSL's message.
Result<CertificatePem> make_self_signed(const SelfSignedOptions& options);

// Lowercase hex SHA-256 of the certificate's DER encoding (64 characters): the value clients pin. Defined in
// io/ with the client's check of the pin (fieldsync/io/certificate.h); named here too for the server's
// callers.
using net::certificate_sha256;

// Reads a whole file / writes one atomically (temporary file and rename). `private_file` makes it 0600.
Result<std::string> read_file(const std::string& path);
Status write_file(const std::string& path, const std::string& content, bool private_file);

}  // namespace fieldsync::server
