#include "fieldsync/sync/export.h"

#include <gtest/gtest.h>

namespace fieldsync {
namespace {

using schema::EntityId;

RecordState account(uint64_t lo, std::string name) {
  RecordState r;
  r.entity = EntityId::kAccount;
  r.id = RecordId{0x0190000000007000ull, 0x8000000000000000ull | lo};
  r.mutable_field(1)->value = Value::text(std::move(name));
  r.mutable_field(2)->value = Value::text("t-north");
  r.mutable_field(8)->value = Value::integer(150000);
  return r;
}

TEST(CanonicalJson, SameBytesWhateverTheInputOrder) {
  RecordState a = account(1, "Bäckerei \"Nord\"\n");
  RecordState b = account(2, "Zeta");
  RecordState gone = account(3, "deleted");
  gone.deleted = true;
  EXPECT_EQ(canonical_json({a, b, gone}), canonical_json({gone, b, a}));
  std::string json = canonical_json({b, a});
  EXPECT_LT(json.find("Bäckerei"), json.find("Zeta"));
  EXPECT_EQ(json.find("deleted"), std::string::npos);
  // Every model field appears, in model order, with null for unset fields; text is escaped.
  EXPECT_NE(json.find(R"("name":"Bäckerei \"Nord\"\n","territory_id":"t-north","address":null)"),
            std::string::npos)
      << json;
  EXPECT_NE(json.find(R"("credit_limit_cents":150000)"), std::string::npos);
  EXPECT_NE(json.find(R"("contact": [])"), std::string::npos);
  EXPECT_EQ(json.back(), '\n');
}

TEST(CanonicalJson, DifferentDataDifferentBytes) {
  EXPECT_NE(canonical_json({account(1, "A")}), canonical_json({account(1, "B")}));
  EXPECT_EQ(canonical_json({}), canonical_json({}));
}

}  // namespace
}  // namespace fieldsync
