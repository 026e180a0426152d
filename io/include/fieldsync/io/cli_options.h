// Command-line options for the tools: `--name value`, `--name=value` and bare switches (`--dev`), checked
// against the names a tool knows; other arguments are words (commands). A `name = value` file (`#`
// comments) may give the same names without dashes; the command line wins. Typed reads with ranges.
// A tool whose commands have options of their own (fieldsync-rep) parses its global options with
// stop_at_first_word() and each command's arguments with another Options.
// Header-only, in io/ so that every tool of client-core and server can share it (fieldsync-server,
// fieldsync-admin, fieldsync-rep, the load bench).
#pragma once

#include <charconv>
#include <cstddef>
#include <cstdint>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace fieldsync::cli {

class Options {
 public:
  // `values`: names that take a value; `switches`: names that do not. Without the leading "--".
  // `repeat`: a value given twice is an error (kError) or the last one counts (kLastWins).
  enum class Repeat { kError, kLastWins };
  Options(std::set<std::string> values, std::set<std::string> switches, Repeat repeat = Repeat::kError)
      : values_(std::move(values)), switches_(std::move(switches)), repeat_(repeat) {}

  // Options end at the first word: it and every argument after it become words, unparsed (a command and
  // its own options: `tool --global x COMMAND --option y`).
  void stop_at_first_word() { stop_at_word_ = true; }

  // Parses the arguments (without argv[0]). Returns an error message ("" on success).
  std::string parse(const std::vector<std::string>& args) {
    for (size_t i = 0; i < args.size(); ++i) {
      const std::string& a = args[i];
      if (a.size() < 3 || a.rfind("--", 0) != 0) {
        if (stop_at_word_) {
          words_.insert(words_.end(), args.begin() + static_cast<std::ptrdiff_t>(i), args.end());
          return {};
        }
        words_.push_back(a);
        continue;
      }
      std::string key = a.substr(2), value;
      const size_t eq = key.find('=');
      if (eq != std::string::npos) {
        value = key.substr(eq + 1);
        key.resize(eq);
      }
      if (switches_.count(key) != 0 && eq == std::string::npos) {
        given_[key] = {"true"};
        continue;
      }
      if (values_.count(key) == 0) return "unknown option --" + key;
      if (eq == std::string::npos) {
        if (i + 1 >= args.size()) return "--" + key + " needs a value";
        value = args[++i];
      }
      std::vector<std::string>& values = given_[key];
      if (!values.empty() && repeat_ == Repeat::kError && many_.count(key) == 0)
        return "--" + key + " given twice";
      values.push_back(value);
    }
    return {};
  }

  // Reads `name = value` lines; names given on the command line keep their value. Switches take true, 1 or
  // yes. Returns an error message ("" on success).
  std::string parse_file(const std::string& path) {
    std::ifstream in(path);
    if (!in) return "cannot read config file " + path;
    std::string line;
    for (int n = 1; std::getline(in, line); ++n) {
      if (size_t h = line.find('#'); h != std::string::npos) line.resize(h);
      line = trim(line);
      if (line.empty()) continue;
      const size_t eq = line.find('=');
      if (eq == std::string::npos) return path + ":" + std::to_string(n) + ": expected name = value";
      const std::string key = trim(line.substr(0, eq)), value = trim(line.substr(eq + 1));
      if (values_.count(key) == 0 && switches_.count(key) == 0)
        return "config file: unknown option '" + key + "'";
      if (given_.count(key) != 0) continue;
      if (switches_.count(key) != 0)
        file_[key] = value == "true" || value == "1" || value == "yes" ? "true" : "";
      else
        file_[key] = value;
    }
    return {};
  }

  bool has(const std::string& name) const { return find(name) != nullptr; }
  bool on(const std::string& name) const {  // a switch
    const std::string* v = find(name);
    return v != nullptr && *v == "true";
  }
  std::string get(const std::string& name, const std::string& fallback = {}) const {
    const std::string* v = find(name);
    return v != nullptr ? *v : fallback;
  }
  // Every value of an option that may be given many times (allow_many), in order.
  std::vector<std::string> all(const std::string& name) const {
    auto it = given_.find(name);
    return it != given_.end() ? it->second : std::vector<std::string>{};
  }
  void allow_many(const std::string& name) { many_.insert(name); }
  std::optional<std::string> maybe(const std::string& name) const {
    const std::string* v = find(name);
    return v != nullptr ? std::optional<std::string>(*v) : std::nullopt;
  }
  // An integer in [min, max], or `fallback` when not given; on a bad value `error` says why.
  int64_t integer(const std::string& name, int64_t fallback, int64_t min, int64_t max,
                  std::string& error) const {
    const std::string* v = find(name);
    if (v == nullptr) return fallback;
    int64_t out = 0;
    auto [ptr, ec] = std::from_chars(v->data(), v->data() + v->size(), out);
    if (ec != std::errc() || ptr != v->data() + v->size() || v->empty() || out < min || out > max) {
      if (error.empty())
        error = "--" + name + ": expected a number in [" + std::to_string(min) + ", " + std::to_string(max) +
                "], got '" + *v + "'";
      return fallback;
    }
    return out;
  }
  // The names given (command line and file), for "does not apply to this command" checks.
  std::set<std::string> given() const {
    std::set<std::string> out;
    for (const auto& [k, v] : given_) out.insert(k);
    for (const auto& [k, v] : file_) out.insert(k);
    return out;
  }
  const std::vector<std::string>& words() const { return words_; }

 private:
  static std::string trim(const std::string& s) {
    const size_t a = s.find_first_not_of(" \t\r"), b = s.find_last_not_of(" \t\r");
    return a == std::string::npos ? std::string() : s.substr(a, b - a + 1);
  }
  const std::string* find(const std::string& name) const {
    if (auto it = given_.find(name); it != given_.end()) return &it->second.back();
    if (auto it = file_.find(name); it != file_.end()) return &it->second;
    return nullptr;
  }

  std::set<std::string> values_, switches_, many_;
  Repeat repeat_;
  bool stop_at_word_ = false;
  std::map<std::string, std::vector<std::string>> given_;
  std::map<std::string, std::string> file_;
  std::vector<std::string> words_;
};

}  // namespace fieldsync::cli
