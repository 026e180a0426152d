// Certificate fingerprints: the SHA-256 of a certificate's DER encoding, as lowercase hex (64 characters, no
// separators). fieldsync-server prints it for a field app to pin, and WsClient compares the server's
// certificate with the pin: one function for both ends, so the two can never disagree on what is hashed or
// how it is spelled.
#pragma once

#include <openssl/ossl_typ.h>

#include <string>

#include "fieldsync/sync/status.h"

namespace fieldsync::net {

// The fingerprint of a parsed certificate (a peer's, during a handshake). Empty if OpenSSL cannot digest it,
// which never equals a pin.
std::string certificate_sha256(const X509* cert);

// The fingerprint of the first certificate in a PEM text. Errors: kInvalidArgument when the PEM does not hold
// a certificate, kInternal when OpenSSL fails.
Result<std::string> certificate_sha256(const std::string& cert_pem);

}  // namespace fieldsync::net
