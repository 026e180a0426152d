// JSON in and out of the C ABI: the read models of field_client.h as Boost.JSON values, and a strict reader
// for the ABI's JSON inputs (every key known, every type right, or a message naming the key).
#pragma once

#include <boost/json.hpp>
#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <string_view>

#include "fieldsync/client/field_client.h"

namespace fieldsync::glue {

namespace json = boost::json;

json::value to_json(const client::Account& a);
json::value to_json(const client::Contact& c);
json::value to_json(const client::AccountWithContacts& a);
json::value to_json(const client::Visit& v);
json::value to_json(const client::OrderLine& l);
json::value to_json(const client::Order& o);
json::value to_json(const client::Event& e);
json::value to_json(const client::EventWriteResult& r);
json::value to_json(const client::Opportunity& o);
json::value to_json(const client::PipelineStage& s);
json::value to_json(const client::Lead& l);
json::value to_json(const client::ConvertedLead& c);
json::value to_json(const client::ServiceCase& c);
json::value to_json(const client::Asset& a);
json::value to_json(const client::Task& t);
json::value to_json(const ConflictRecord& c);
json::value to_json(const Rejection& r);
json::value to_json(const client::InboxConflict& c);
json::value to_json(const client::InboxRejection& r);
json::value to_json(const RecordKey& k);

template <typename T>
json::value to_json_array(const std::vector<T>& items) {
  json::array a;
  a.reserve(items.size());
  for (const T& item : items) a.push_back(to_json(item));
  return a;
}

// Reads one JSON object argument. Each accessor marks its key as known; finish() fails on any other key.
// The first problem is kept (error()); later accessors then return empty values.
class Input {
 public:
  // `what` names the argument in messages ("account_json").
  Input(const char* text, std::string_view what);
  explicit Input(const json::object& object, std::string_view what);

  std::string text(std::string_view key);  // required
  std::optional<std::string> opt_text(std::string_view key);
  int64_t integer(std::string_view key);  // required
  std::optional<int64_t> opt_integer(std::string_view key);
  std::optional<double> opt_real(std::string_view key);
  std::optional<bool> opt_boolean(std::string_view key);

  // True when every key was read and nothing was wrong; else error() says what.
  bool finish();
  const std::string& error() const { return error_; }
  bool ok() const { return error_.empty(); }

 private:
  const json::value* find(std::string_view key, bool required);
  std::optional<std::string> opt_text_impl(std::string_view key, bool required);
  std::optional<int64_t> opt_integer_impl(std::string_view key, bool required);
  void fail(std::string message);

  json::object object_;
  std::string what_;
  std::set<std::string, std::less<>> known_;
  std::string error_;
};

// A JSON array argument of objects; error() set if it is not one.
std::optional<json::array> parse_array(const char* text, std::string_view what, std::string& error);

}  // namespace fieldsync::glue
