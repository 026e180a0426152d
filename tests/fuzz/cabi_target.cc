// The C ABI's fuzz target (targets.h: c_abi): the strings and JSON texts an app hands to the fs_* functions
// (mobile-glue/include/fieldsync/fieldsync.h), through the public header only, on one offline replica.
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "fieldsync/fieldsync.h"
#include "targets.h"

namespace fieldsync::fuzz {
namespace {

// One replica for the whole run (opening one per input would be all the fuzzer measures), in a temporary
// directory removed at exit. Offline: no server URL, so every write stays in its outbox.
struct Replica {
  std::filesystem::path dir;
  fs_client* client = nullptr;
  std::vector<std::string> ids;  // records this run created: "#<n>" in an input names one

  Replica() {
    char tmpl[] = "/tmp/fieldsync-cabi-fuzz-XXXXXX";
    if (mkdtemp(tmpl) == nullptr) std::abort();
    dir = tmpl;
    fs_error err{};
    fs_config* cfg = fs_config_new(&err);
    const std::string path = (dir / "replica.db").string();
    if (cfg == nullptr || !fs_config_set_text(cfg, FS_OPT_PATH, path.c_str(), &err) ||
        !fs_config_set_text(cfg, FS_OPT_USER, "rep-7", &err) ||
        !fs_config_set_int(cfg, FS_OPT_NODE, 4242, &err) ||
        !fs_config_set_int(cfg, FS_OPT_SYNCHRONOUS_FULL, 0, &err))
      std::abort();
    client = fs_client_open(cfg, &err);
    fs_config_free(cfg);
    if (client == nullptr) std::abort();
  }
  ~Replica() {
    fs_client_free(client);
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
};

Replica& replica() {
  static Replica r;
  return r;
}

// A call's outcome: true, or false with an error that says something. Never a crash (ASan) or a throw.
void check(bool ok, const fs_error& err) {
  if (ok) return;
  if (err.code == 0 || err.message[0] == '\0' ||
      std::memchr(err.message, '\0', sizeof err.message) == nullptr)
    std::abort();
}

void keep(char* s, bool ok) {
  if (ok && s == nullptr) std::abort();  // a success hands its string over
  if (ok && s != nullptr && s[0] != '\0' && replica().ids.size() < 64 && std::strlen(s) == 36)
    replica().ids.emplace_back(s);  // an id
  fs_string_free(s);
}

}  // namespace

int c_abi(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  Replica& rep = replica();
  fs_client* c = rep.client;
  const uint8_t selector = data[0];
  // The rest: "<a>\0<b>": a is an id or short text argument ("#<n>": the n-th id this run created), b a JSON
  // text (or a second text argument).
  const std::string rest(reinterpret_cast<const char*>(data + 1), size - 1);
  const size_t nul = rest.find('\0');
  std::string a = rest.substr(0, nul);
  const std::string b = nul == std::string::npos ? std::string() : rest.substr(nul + 1);
  if (a.size() == 2 && a[0] == '#' && !rep.ids.empty())
    a = rep.ids[static_cast<uint8_t>(a[1]) % rep.ids.size()];
  const char* bj = nul == std::string::npos ? nullptr : b.c_str();  // no second part: NULL
  fs_error err{};
  char* out = nullptr;
  bool ok = false;
  switch (selector % 30) {
    case 0:
      ok = fs_create_account(c, a.c_str(), &out, &err);
      keep(out, ok);
      break;
    case 1:
      ok = fs_edit_account(c, a.c_str(), bj, &err);
      break;
    case 2:
      ok = fs_create_contact(c, a.c_str(), &out, &err);
      keep(out, ok);
      break;
    case 3:
      ok = fs_edit_contact(c, a.c_str(), bj, &err);
      break;
    case 4:
      ok = fs_check_in(c, a.c_str(), &out, &err);
      keep(out, ok);
      break;
    case 5:
      ok = fs_add_visit_note(c, a.c_str(), bj, &err);
      break;
    case 6: {
      const int64_t at = static_cast<int64_t>(b.size()) * 1'000'000;
      ok = fs_check_out(c, a.c_str(), bj, selector & 0x80 ? &at : nullptr, &err);
      break;
    }
    case 7:
      ok = fs_draft_order(c, a.c_str(), selector & 0x80 ? "CHF" : nullptr, bj, &out, &err);
      keep(out, ok);
      break;
    case 8:
      ok = fs_add_line(c, a.c_str(), bj, &out, &err);
      keep(out, ok);
      break;
    case 9:
      ok = fs_change_line(c, a.c_str(), bj, &err);
      break;
    case 10:
      ok = fs_remove_line(c, a.c_str(), &err);
      break;
    case 11:
      ok = fs_submit_order(c, a.c_str(), &err);
      break;
    case 12:
      ok = fs_create_event(c, a.c_str(), &out, &err);
      if (ok && out == nullptr) std::abort();
      fs_string_free(out);
      break;
    case 13:
      ok = fs_move_event(c, a.c_str(), static_cast<int64_t>(b.size()) * 60'000,
                         static_cast<int64_t>(b.size() + selector) * 60'000, &out, &err);
      fs_string_free(out);
      break;
    case 14:
      ok = fs_cancel_event(c, a.c_str(), &err);
      break;
    case 15:
      ok = fs_create_opportunity(c, a.c_str(), &out, &err);
      keep(out, ok);
      break;
    case 16:
      ok = fs_move_opportunity(c, a.c_str(), bj, &err);
      break;
    case 17:
      ok = fs_get(c, static_cast<fs_record_kind>(selector >> 5), a.c_str(), &out, &err);
      fs_string_free(out);
      break;
    case 18:
      ok = fs_list(c, static_cast<fs_listing>((selector >> 5) * 2 + (b.size() & 1)),
                   a.empty() ? nullptr : a.c_str(), &out, &err);
      fs_string_free(out);
      break;
    case 19: {
      // A configuration's text options (never opened: the replica above is the run's).
      fs_config* cfg = fs_config_new(&err);
      ok = fs_config_set_text(cfg, static_cast<fs_option>(selector >> 5 | (b.size() & 8)), a.c_str(), &err);
      fs_config_free(cfg);
      break;
    }
    case 20:
      ok = fs_agenda(c, static_cast<int64_t>(a.size()) << 30, static_cast<int64_t>(b.size()) << 30, &out,
                     &err);
      fs_string_free(out);
      break;
    case 22:  // ABI 1.2: schema 3's entities
      ok = fs_create_lead(c, a.c_str(), &out, &err);
      keep(out, ok);
      break;
    case 23:
      ok = fs_lead_action(c, a.c_str(), static_cast<fs_lead_op>(selector >> 5), bj, &err);
      break;
    case 24:
      ok = fs_convert_lead(c, a.c_str(), bj, &out, &err);
      if (ok && out == nullptr) std::abort();
      fs_string_free(out);
      break;
    case 25:
      ok = fs_open_case(c, a.c_str(), &out, &err);
      keep(out, ok);
      break;
    case 26:
      ok = fs_case_action(c, a.c_str(), static_cast<fs_case_op>(selector >> 5), bj, &err);
      break;
    case 27:
      ok = fs_register_asset(c, a.c_str(), &out, &err);
      keep(out, ok);
      break;
    case 28:
      ok = fs_create_task(c, a.c_str(), &out, &err);
      keep(out, ok);
      break;
    case 29:
      ok = fs_task_action(c, a.c_str(), static_cast<fs_task_op>(selector >> 5), &err);
      break;
    default: {
      uint32_t conflicts = 0, rejections = 0;
      ok = fs_unread_counts(c, &conflicts, &rejections, &err);
      break;
    }
  }
  check(ok, err);
  return 0;
}

}  // namespace fieldsync::fuzz
