// Writes the fuzz targets' seed corpus (tests/fuzz/corpus/<target>/) from real encodings: codec::encode of
// every protocol message type (full and empty), the stored blobs of codec::encode_record and friends, and
// /login bodies. Usage: make_corpus <corpus dir>. Its output is committed; rerun it when the schema grows:
//   build/bin/make_corpus tests/fuzz/corpus
// The sample values are those of tests/codec_test.cc (one change of every op, one value of every kind).
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "fieldsync/sync/codec.h"
#include "support/codec_samples.h"

namespace fieldsync {
namespace {

namespace f = schema::fields;
using protocol::Message;

using namespace samples;  // support/codec_samples.h

ServerTxn sample_server_txn_with_moves() {
  ServerTxn t;
  t.server_seq = 123'470;
  t.origin_node = 0x1;
  t.origin_user = "head-office";
  t.origin_node_seq = 12;
  t.changes = {set(EntityId::kAccount, 1, f::kAccountTerritory, Value::text("ch-be"), 1'700'000'003'000)};
  ScopeMove move;
  move.entity = EntityId::kAccount;
  move.record = rid(1);
  move.from = {ScopeKey::Kind::kTerritory, "ch-zh"};
  move.to = {ScopeKey::Kind::kTerritory, "ch-be"};
  ScopeMove owner;
  owner.entity = EntityId::kCalendarEvent;
  owner.record = rid(4);
  owner.from = {ScopeKey::Kind::kOwner, "rep-7"};
  owner.to = {ScopeKey::Kind::kUnresolved, ""};
  t.moves = {move, owner};
  return t;
}

// A seed that does not decode would only teach the fuzzer the first check.
void check(bool decoded, const std::string& what) {
  if (decoded) return;
  std::fprintf(stderr, "make_corpus: %s does not decode\n", what.c_str());
  std::exit(1);
}

void write(const std::filesystem::path& dir, const std::string& name, const std::vector<uint8_t>& bytes) {
  std::filesystem::create_directories(dir);
  std::ofstream out(dir / name, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}
void write(const std::filesystem::path& dir, const std::string& name, const std::string& text) {
  write(dir, name, std::vector<uint8_t>(text.begin(), text.end()));
}

}  // namespace
}  // namespace fieldsync

int main(int argc, char** argv) {
  using namespace fieldsync;
  if (argc != 2) {
    std::fprintf(stderr, "usage: make_corpus <corpus dir>\n");
    return 2;
  }
  const std::filesystem::path root = argv[1];

  const std::filesystem::path frames = root / "codec_fuzz";
  int n = 0;
  for (const Message& m : sample_messages()) {
    const std::vector<uint8_t> frame = codec::encode(m);
    check(codec::decode(frame).is_ok(), protocol::message_name(m));
    write(frames, (n < 10 ? "0" : "") + std::to_string(n) + "-" + protocol::message_name(m), frame);
    ++n;
  }
  // Protocol version 2: the compact forms (uncompressed) and every compressible message compressed.
  const std::filesystem::path compressed = root / "compressed_fuzz";
  n = 0;
  for (const Message& m : sample_messages()) {
    codec::EncodeOptions plain, always;
    plain.protocol_version = always.protocol_version = 2;
    plain.compression_level = 0;
    always.compress_min_bytes = 0;
    const std::string name = (n < 10 ? "0" : "") + std::to_string(n) + "-" + protocol::message_name(m);
    ++n;
    const std::vector<uint8_t> v2 = codec::encode(m, plain);
    check(codec::decode(v2).is_ok(), std::string("v2 ") + protocol::message_name(m));
    if (v2 != codec::encode(m)) write(frames, "v2-" + name, v2);
    if (!codec::compressible(m)) continue;
    const std::vector<uint8_t> z = codec::encode(m, always);
    check(codec::decode(z).is_ok(), std::string("compressed ") + protocol::message_name(m));
    write(frames, "z-" + name, z);
    write(compressed, name, v2);
    write(compressed, "z-" + name, z);
    if (name == "08-BootstrapPage") {
      // Hostile headers: a size one off (both ways), and one far over the limit (a bomb's).
      for (const auto& [tag, declared] :
           {std::pair<const char*, uint32_t>{"lying-larger", static_cast<uint32_t>(v2.size() + 1)},
            {"lying-smaller", static_cast<uint32_t>(v2.size() - 1)},
            {"bomb", 0xffff'fff0u}}) {
        std::vector<uint8_t> bad = z;
        for (int i = 0; i < 4; ++i) bad[static_cast<size_t>(i)] = static_cast<uint8_t>(declared >> (8 * i));
        if (codec::decode(bad).is_ok()) {
          std::fprintf(stderr, "make_corpus: the %s compressed frame decodes\n", tag);
          return 1;
        }
        write(compressed, std::string("z-") + tag, bad);
      }
    }
  }

  const std::filesystem::path blobs = root / "blob_fuzz";
  const auto record = [&](const std::string& name, const RecordState& r) {
    const std::vector<uint8_t> b = codec::encode_record(r);
    check(codec::decode_record(b).is_ok(), name);
    write(blobs, name, b);
  };
  record("record-account", sample_account());
  record("record-tombstone", sample_tombstone());
  const protocol::PushTxns push = sample_push();
  for (size_t i = 0; i < push.txns.size(); ++i) {
    const std::vector<uint8_t> b = codec::encode_client_txn(push.txns[i]);
    check(codec::decode_client_txn(b).is_ok(), "client txn");
    write(blobs, "client-txn-" + std::to_string(i), b);
  }
  const protocol::ChangeBatch batch = sample_batch();
  std::vector<ServerTxn> server_txns = batch.txns;
  server_txns.push_back(sample_server_txn_with_moves());
  for (size_t i = 0; i < server_txns.size(); ++i) {
    const std::vector<uint8_t> b = codec::encode_server_txn(server_txns[i]);
    check(codec::decode_server_txn(b).is_ok(), "server txn");
    write(blobs, "server-txn-" + std::to_string(i), b);
  }
  const std::vector<ConflictRecord> conflicts = sample_conflicts();
  for (size_t i = 0; i < conflicts.size(); ++i) {
    const std::vector<uint8_t> b = codec::encode_conflict(conflicts[i]);
    check(codec::decode_conflict(b).is_ok(), "conflict");
    write(blobs, "conflict-" + std::to_string(i), b);
  }

  const std::filesystem::path login = root / "login_fuzz";
  write(login, "number", R"({"user":"rep-7","password":"correct horse","node":12345})");
  write(login, "text-node", R"({"user":"rep-7","password":"pw","node":"18446744073709551615"})");
  write(login, "negative-node", R"({"user":"rep-7","password":"pw","node":-3})");
  write(login, "big-node", R"({"user":"r","password":"p","node":18446744073709551615})");
  write(login, "bad-text-node", R"({"user":"r","password":"p","node":"12x"})");
  write(login, "escapes",
        R"({"user":"caf\u00e9\n","password":"\"\\\/\b\f\r\t","node":1.5e3,"extra":[null,true,false,{}]})");
  write(login, "missing", R"({"user":"r","node":0})");
  write(login, "not-object", R"(["user","password",1])");
  std::printf("corpus written to %s\n", root.c_str());
  return 0;
}
