#include "fieldsync/server/tls.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <random>
#include <sstream>

namespace fieldsync::server {
namespace {

struct Free {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
  void operator()(X509* p) const { X509_free(p); }
  void operator()(BIO* p) const { BIO_free(p); }
  void operator()(GENERAL_NAMES* p) const { GENERAL_NAMES_free(p); }
  void operator()(X509_EXTENSION* p) const { X509_EXTENSION_free(p); }
};
template <typename T>
using Ptr = std::unique_ptr<T, Free>;

Status openssl_error(const std::string& what) {
  std::string msg = what;
  if (unsigned long e = ERR_get_error(); e != 0) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    msg += ": ";
    msg += buf;
  }
  ERR_clear_error();
  return Status(ErrorCode::kInternal, msg);
}

std::string bio_string(BIO* bio) {
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<size_t>(n));
}

bool add_ext(X509* cert, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, cert, cert, nullptr, nullptr, 0);
  Ptr<X509_EXTENSION> ext(X509V3_EXT_conf_nid(nullptr, &ctx, nid, value));
  return ext && X509_add_ext(cert, ext.get(), -1) == 1;
}

}  // namespace

Result<CertificatePem> make_self_signed(const SelfSignedOptions& options) {
  Ptr<EVP_PKEY> key(EVP_EC_gen("P-256"));
  if (!key) return openssl_error("generating a P-256 key");
  Ptr<X509> cert(X509_new());
  if (!cert) return openssl_error("X509_new");
  X509_set_version(cert.get(), 2);  // v3
  std::random_device rd;
  uint64_t serial = (static_cast<uint64_t>(rd()) << 32 | rd()) & 0x7fffffffffffffffULL;
  ASN1_INTEGER_set_uint64(X509_get_serialNumber(cert.get()), serial | 1);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);  // tolerate a client clock a little behind
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 60L * 60 * 24 * options.valid_days);
  X509_set_pubkey(cert.get(), key.get());
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("fieldsync dev"),
                             -1, -1, 0);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(options.common_name.c_str()), -1, -1, 0);
  X509_set_issuer_name(cert.get(), name);

  std::string san;
  auto add_san = [&san](const char* kind, const std::string& v) {
    if (!san.empty()) san.push_back(',');
    san.append(kind);
    san.append(v);
  };
  for (const std::string& d : options.dns_names) add_san("DNS:", d);
  for (const std::string& ip : options.ip_addresses) add_san("IP:", ip);
  if (!add_ext(cert.get(), NID_basic_constraints, "critical,CA:TRUE") ||
      !add_ext(cert.get(), NID_key_usage, "critical,digitalSignature,keyCertSign") ||
      !add_ext(cert.get(), NID_ext_key_usage, "serverAuth") ||
      !add_ext(cert.get(), NID_subject_key_identifier, "hash") ||
      (!san.empty() && !add_ext(cert.get(), NID_subject_alt_name, san.c_str())))
    return openssl_error("certificate extensions");
  if (X509_sign(cert.get(), key.get(), EVP_sha256()) <= 0) return openssl_error("signing the certificate");

  Ptr<BIO> cert_bio(BIO_new(BIO_s_mem()));
  Ptr<BIO> key_bio(BIO_new(BIO_s_mem()));
  if (!cert_bio || !key_bio || PEM_write_bio_X509(cert_bio.get(), cert.get()) != 1 ||
      PEM_write_bio_PrivateKey(key_bio.get(), key.get(), nullptr, nullptr, 0, nullptr, nullptr) != 1)
    return openssl_error("writing PEM");
  return CertificatePem{bio_string(cert_bio.get()), bio_string(key_bio.get())};
}

Result<std::string> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status(ErrorCode::kInvalidArgument, "cannot read " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

Status write_file(const std::string& path, const std::string& content, bool private_file) {
  std::string tmp = path + ".tmp";
  {
    mode_t old = umask(private_file ? 077 : 022);
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    umask(old);
    if (!out) return Status(ErrorCode::kStorageIo, "cannot write " + tmp);
    out << content;
    out.flush();
    if (!out) return Status(ErrorCode::kStorageIo, "cannot write " + tmp);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0)
    return Status(ErrorCode::kStorageIo, "cannot rename " + tmp);
  return Status::ok();
}

}  // namespace fieldsync::server
