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

#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>
#include <span>

#include "fieldsync/schema/model.h"
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

// base64url without padding: the API's cursors (api_entities.cc encode_cursor) are this of a JSON text.
std::string base64url(const std::string& in) {
  static const char* const k = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (unsigned char c : in) {
    acc = (acc << 8) | c;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out += k[(acc >> bits) & 63];
    }
  }
  if (bits > 0) out += k[(acc << (6 - bits)) & 63];
  return out;
}

std::string with_selector(uint8_t selector, const std::string& text) {
  return std::string(1, static_cast<char>(selector)) + text;
}

// A valid value for every field of the model, as the API's JSON takes it.
boost::json::value sample_json(const schema::FieldDef& f) {
  using schema::FieldType;
  switch (f.type) {
    case FieldType::kInt:
      return f.value_rule == schema::ValueRule::kQuantity ? 3 : 1250;
    case FieldType::kTimestamp:
      return int64_t{1'764'900'000'000};
    case FieldType::kReal:
      return f.value_rule == schema::ValueRule::kLongitude ? 8.54 : 47.37;
    case FieldType::kBool:
      return true;
    case FieldType::kEnum:
      return boost::json::string(f.enum_values.empty() ? std::string_view("x") : f.enum_values.front());
    case FieldType::kId:
      return "01890a5d-ac96-774b-bcce-b302099a8057";
    case FieldType::kUserId:
      return "rep-7";
    case FieldType::kText:
      if (f.value_rule == schema::ValueRule::kCurrencyCode) return "CHF";
      if (f.value_rule == schema::ValueRule::kEmail) return "anna@example.ch";
      return "Caf\u00e9 M\u00fcller";
  }
  return nullptr;
}

// The head-office API's seeds (api_query_fuzz, api_body_fuzz): the requests of tests/api_test.cc and
// docs/API.md, and for every entity of the model a listing, a create and a patch with a value of every field.
void write_api_corpus(const std::filesystem::path& root) {
  const std::filesystem::path query = root / "api_query_fuzz";
  const std::span<const schema::EntityDef> all = schema::entities();
  int n = 0;
  const auto q = [&](uint8_t selector, const std::string& target) {
    write(query, "q" + std::to_string(n++), with_selector(selector, target));
  };
  for (size_t i = 0; i < all.size(); ++i) {
    const schema::EntityDef& e = all[i];
    const uint8_t head_office = static_cast<uint8_t>(i << 2), rep = static_cast<uint8_t>(i << 2 | 2);
    std::string filters = "/api/v1/entities/" + std::string(e.name) + "?limit=50&order=desc";
    std::string sort = "id";
    for (const schema::FieldDef& f : e.fields) {
      const boost::json::value v = sample_json(f);
      std::string text = v.is_string() ? std::string(v.as_string()) : boost::json::serialize(v);
      if (f.type == schema::FieldType::kTimestamp || f.type == schema::FieldType::kInt) {
        filters += "&" + std::string(f.name) + ".gte=" + text + "&" + std::string(f.name) + ".lt=" + text;
        sort = f.name;
      } else if (f.type != schema::FieldType::kText && f.type != schema::FieldType::kReal) {
        filters += "&" + std::string(f.name) + "=" + text;
      }
    }
    q(head_office, filters);
    q(rep, "/api/v1/entities/" + std::string(e.name) + "?q=M%C3%BCller+50%25_off&sort=" + sort);
    // A cursor of this listing, as the server hands it out (next_cursor), and one past a NULL.
    for (const char* order : {"asc", "desc"}) {
      boost::json::object c;
      c["v"] = 1'764'900'000'000;
      c["id"] = "01890a5d-ac96-774b-bcce-b302099a8057";
      c["s"] = sort;
      c["o"] = order;
      q(static_cast<uint8_t>(i << 2 | 1), "/api/v1/entities/" + std::string(e.name) + "?sort=" + sort +
                                              "&order=" + order +
                                              "&cursor=" + base64url(boost::json::serialize(c)));
      c["v"] = nullptr;
      q(static_cast<uint8_t>(i << 2 | 3), "/api/v1/entities/" + std::string(e.name) + "?sort=" + sort +
                                              "&order=" + order +
                                              "&cursor=" + base64url(boost::json::serialize(c)));
    }
    boost::json::object c;
    c["v"] = "01890a5d-ac96-774b-bcce-b302099a8057";
    c["id"] = "01890a5d-ac96-774b-bcce-b302099a8057";
    c["s"] = "id";
    c["o"] = "asc";
    q(head_office,
      "/api/v1/entities/" + std::string(e.name) + "?cursor=" + base64url(boost::json::serialize(c)));
  }
  for (const char* t :
       {"/api/v1/entities/account?colour=red", "/api/v1/entities/account?cursor=garbage",
        "/api/v1/entities/account?limit=0", "/api/v1/entities/account?sort=colour",
        "/api/v1/entities/account?name.gte=A", "/api/v1/entities/account?a=1&a=2", "/api/v1/x?%zz=1",
        "/api/v1/x?=1&&b",
        "/api/v1/reports/revenue?from=1764000000000&to=1764900000000&territory=north,south&"
        "rep=rep1&rep=rep2&days=14&tz_offset_minutes=-300&limit=20",
        "/api/v1/reports/revenue?from=yesterday", "/api/v1/reports/stalled?days=0&tz_offset_minutes=841",
        "/api/v1/reports/funnel?from=1764900000000&to=1000",
        "/api/v1/export/orders.csv?territory=north&bom=1", "/api/v1/export/accounts.csv?bom=2",
        "/api/v1/export/visits.csv?bom=0&limit=500&territory=,,a,"})
    for (uint8_t s : {0, 1, 2})  // each export file name
      q(s, t);

  const std::filesystem::path body = root / "api_body_fuzz";
  n = 0;
  const auto b = [&](uint8_t selector, const std::string& text) {
    write(body, "b" + std::to_string(n++), with_selector(selector, text));
  };
  b(0, R"({"user":"head","password":"pw-head-1","mode":"token"})");
  b(0, R"({"user":"rep1","password":"pw","mode":"cookie"})");
  b(0, R"({"user":"rep1","password":"pw","mode":"session"})");
  b(0, R"({"user":"rep1","password":"","colour":1})");
  for (size_t i = 0; i < all.size(); ++i) {
    const schema::EntityDef& e = all[i];
    boost::json::object create, patch;
    for (const schema::FieldDef& f : e.fields) create[f.name] = sample_json(f);
    if (!e.fields.empty()) patch[e.fields.back().name] = sample_json(e.fields.back());
    b(static_cast<uint8_t>(i << 3 | 1), boost::json::serialize(create));
    create["id"] = "01890a5d-ac96-774b-bcce-b302099a8057";
    b(static_cast<uint8_t>(i << 3 | 1), boost::json::serialize(create));
    b(static_cast<uint8_t>(i << 3 | 2), boost::json::serialize(patch));
  }
  b(1, R"({"id":"not-an-id","name":"x"})");
  b(2, R"({"name":7,"colour":"red"})");
  b(3, R"({"reason":"prices are last year's"})");
  b(3, R"({"reason":" 	"})");
  b(4, R"({"to":"rep2"})");
  b(5, R"({"action":"restore"})");
  b(5, R"({"action":"accept","x":1})");
  b(6, R"({"accounts":["01890a5d-ac96-774b-bcce-b302099a8057"],"territory":"north"})");
  b(6, R"({"from_rep":"rep1","to_rep":"rep2"})");
  b(7, R"({"accounts":["nope"],"to_rep":5})");
}

// The C ABI's seeds (cabi_fuzz): the JSON texts of mobile-glue/tests/fieldsync_c_test.c and
// docs/EMBEDDING.md, each after its selector byte (cabi_target.cc); "#<n>" names a record created earlier in
// the run.
void write_cabi_corpus(const std::filesystem::path& root) {
  const std::filesystem::path dir = root / "cabi_fuzz";
  int n = 0;
  const auto c = [&](uint8_t selector, const std::string& a, const char* b = nullptr) {
    std::string text = a;
    if (b != nullptr) text += std::string(1, '\0') + b;
    write(dir, "c" + std::to_string(n++), with_selector(selector, text));
  };
  c(0,
    R"({"name":"Alpine Dairy","territory_id":"north","city":"Chur","email":"info@alpine.ch","segment":"A"})");
  c(0, R"({"name":"x","territory_id":"north","colour":"red"})");
  c(1, "#0", R"({"name":"Alpine Dairy AG","add_note":"new owner","phone":"+41 81 000 00 00"})");
  c(2,
    R"({"account_id":"01890a5d-ac96-774b-bcce-b302099a8057","name":"Anna","is_primary":true,"title":"CEO"})");
  c(3, "#1", R"({"email":"anna@example.ch","is_primary":false})");
  c(4,
    R"({"account_id":"01890a5d-ac96-774b-bcce-b302099a8057","at_ms":1764900000000,"latitude":46.85,"longitude":9.53})");
  c(5, "#2", "asked for a tasting");
  c(6 | 0x80, "#2", "ordered");
  c(7 | 0x80, "#0",
    R"([{"product_id":"01890a5d-ac96-774b-bcce-b302099a8057","quantity":12,"discount_bp":500}])");
  c(7, "#0", R"([{"product_id":"p","quantity":"12"}])");
  c(8, "#3",
    R"({"product_id":"01890a5d-ac96-774b-bcce-b302099a8057","unit_price_cents":1250,"note":"promo"})");
  c(9, "#4", R"({"quantity":24,"discount_bp":1000})");
  c(10, "#4");
  c(11, "#3");
  c(12, R"({"title":"Tasting","start_at_ms":1764900000000,"end_at_ms":1764903600000,"location":"Chur"})");
  c(13, "#5", "");
  c(14, "#5");
  c(15,
    R"({"account_id":"01890a5d-ac96-774b-bcce-b302099a8057","name":"Winter range","amount_cents":500000,"currency":"CHF","stage":"qualified","expected_close_ms":1767000000000})");
  c(16, "#6", "proposal");
  for (uint8_t kind = 0; kind < 8; ++kind) c(static_cast<uint8_t>(17 | kind << 5), "#0");
  for (uint8_t listing = 0; listing < 8; ++listing) c(static_cast<uint8_t>(18 | listing << 5), "unread", "x");
  c(19 | 4 << 5, "https://fieldsync.example.com/sync");
  c(19 | 6 << 5, "ab:cd:ef");
  c(20, "ab", "abcdef");
  c(21, "");
  c(0, "{\"name\":\"\xff\"}");
  c(4, "[1,2]");
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
  write_api_corpus(root);
  write_cabi_corpus(root);
  std::printf("corpus written to %s\n", root.c_str());
  return 0;
}
