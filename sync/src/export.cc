#include "fieldsync/sync/export.h"

#include <algorithm>
#include <boost/json.hpp>

namespace fieldsync {
boost::json::value value_to_json(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kNull:
      return nullptr;
    case Value::Kind::kInt:
      return v.as_int();
    case Value::Kind::kReal:
      return v.as_real();
    case Value::Kind::kBool:
      return v.as_bool();
    case Value::Kind::kText:
      return boost::json::string(v.as_text());
  }
  return nullptr;
}

std::string canonical_json(const std::vector<RecordState>& records) {
  std::vector<const RecordState*> live;
  for (const RecordState& r : records)
    if (!r.deleted && schema::entity(r.entity)) live.push_back(&r);
  std::sort(live.begin(), live.end(), [](const RecordState* a, const RecordState* b) {
    return std::tie(a->entity, a->id) < std::tie(b->entity, b->id);
  });

  std::string out = "{\n";
  size_t next = 0;
  bool first_entity = true;
  for (const schema::EntityDef& e : schema::entities()) {
    out += first_entity ? "" : ",\n";
    first_entity = false;
    out += "  " + boost::json::serialize(boost::json::string(e.name)) + ": [";
    bool first = true;
    for (; next < live.size() && live[next]->entity == e.id; ++next) {
      const RecordState& r = *live[next];
      // boost::json::object keeps insertion order, which is what makes the key order canonical.
      boost::json::object obj;
      obj["id"] = r.id.to_string();
      for (const schema::FieldDef& f : e.fields) obj[f.name] = value_to_json(r.get(f.id));
      out += first ? "\n    " : ",\n    ";
      first = false;
      out += boost::json::serialize(obj);
    }
    out += first ? "]" : "\n  ]";
  }
  out += "\n}\n";
  return out;
}

}  // namespace fieldsync
