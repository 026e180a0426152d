// fieldsync-rep: a command-line device. It opens a replica file and runs the field-sales API (FieldClient),
// for demos, tests and integrators. Success prints ids or plain tab-separated tables on stdout; an error is
// one line on stderr and a non-zero exit (1: the operation failed, 2: bad usage, 3: the device was revoked
// and its replica erased).
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "fieldsync/client/field_client.h"
#include "fieldsync/client/ws_client.h"

namespace {

using fieldsync::ErrorCode;
using fieldsync::Result;
using fieldsync::Status;
using namespace fieldsync::client;

constexpr const char* kUsage =
    R"(usage: fieldsync-rep --db FILE --user USER [--token TOKEN] [--role rep|manager|head_office]
                     [--utc-offset MINUTES] COMMAND [OPTIONS]
       fieldsync-rep [COMMAND [SUBCOMMAND]] --help

Times are ISO 8601 UTC (2030-01-07T10:00, 2030-01-07T10:00:00Z) or milliseconds since the epoch; money is
integer cents. Commands print the id they wrote, or one tab-separated row per record. An error is one line
on stderr; exit codes: 1 the operation failed, 2 bad usage, 3 the device was revoked by head office and its
local replica erased (every later command on that file exits 3 too).
)";

// One entry per command: its usage line(s). `COMMAND --help` prints the entries that start with it.
struct HelpSection {
  const char* title;
  std::vector<const char*> entries;
};
const std::vector<HelpSection> kHelpSections = {
    {"Accounts and contacts",
     {"account add --name N --territory T [--city C] [--address A] [--phone P] [--email E] [--segment a|b|c]",
      "account edit --id ID [--name N] [--city C] [--address A] [--phone P] [--email E] [--segment S]\n"
      "             [--note TEXT] [--territory T]\n"
      "                                      --note appends; --territory moves the account (head office "
      "only:\n"
      "                                      the server rejects a rep's move and the account goes back)",
      "account show --id ID                  the account and its contacts",
      "accounts [--prefix P] [--territory T]  by name prefix (case-insensitive) or territory",
      "contact add --account ID --name N [--title T] [--email E] [--phone P] [--primary]",
      "contact edit --id ID [--name N] [--title T] [--email E] [--phone P] [--primary | --not-primary]\n"
      "                                      --primary marks the contact as the account's primary one"}},
    {"Visits",
     {"checkin --account ID [--lat DEG --lon DEG] [--at TIME] [--event ID]",
      "note --visit ID TEXT                  append a note",
      "checkout --visit ID --outcome order_taken|follow_up|no_interest|not_available|other [--at TIME]",
      "visits --account ID | --today         history of an account (newest first) or my visits today"}},
    {"Orders",
     {"order draft --account ID [--currency EUR]",
      "order line --order ID --product ID --qty N [--price CENTS] [--discount BP] [--note TEXT]\n"
      "                                      unit price from the price list unless --price is given",
      "order line-edit --line ID [--qty N] [--price CENTS] [--discount BP] [--note TEXT]\n"
      "                                      an empty --note '' clears the note",
      "order line-remove --line ID", "order submit --order ID",
      "order show --order ID                 lines and totals",
      "orders --open                         my draft and submitted orders with totals"}},
    {"Calendar",
     {"event book --title T --start TIME --end TIME [--account ID] [--location L]\n"
      "                                      prints the id, then \"overlaps\" lines for the owner's other\n"
      "                                      appointments at that time",
      "event move --id ID --start TIME --end TIME   (overlaps as for book)", "event cancel --id ID",
      "agenda [--week]                       today's (or this week's) scheduled appointments"}},
    {"Opportunities",
     {"opp add --account ID --name N --amount CENTS [--currency EUR] [--stage prospect]",
      "opp move --id ID --stage prospect|qualified|proposal|negotiation|won|lost",
      "pipeline                              my deals per stage: stage, currency, count, amount"}},
    {"Sync",
     {"pending                               unacknowledged local transactions",
      "status                                device node id, pending, connection state, last successful sync",
      "conflicts                             conflict records concerning me",
      "rejections                            my transactions the server refused, with reasons",
      "inbox [--unread] [--mark-seen]        conflicts and rejections, newest first, with their inbox id "
      "and\n"
      "                                      seen flag, then the unread counts; --mark-seen marks all seen",
      "export                                every record as canonical JSON (stable: compare with cmp)",
      "login --server wss://HOST:PORT/sync [--ca FILE | --pin SHA256] [--password P]\n"
      "                                      exchanges the user's password (read from stdin unless given)\n"
      "                                      for a token bound to this device's node, over POST /login;\n"
      "                                      prints the token (pass it as --token); the device must be\n"
      "                                      registered by head office (fieldsync-admin device register)",
      "sync --server wss://HOST:PORT/sync [--ca FILE | --pin SHA256] [--once [--timeout SECONDS] | --stay "
      "SECONDS]\n"
      "                                      push and pull over TLS. --once (default): until synced, at "
      "most\n"
      "                                      --timeout seconds (60). --stay: keeps the connection for live\n"
      "                                      changes, reconnecting as needed; exits 0 only if connected and\n"
      "                                      synced when the time is up (a certificate or pin error ends it "
      "at\n"
      "                                      once). The server certificate is verified against the system "
      "CAs\n"
      "                                      unless --ca FILE (trust that CA) or --pin (its SHA-256, as\n"
      "                                      fieldsync-server prints). Prints \"synced<TAB>pending N\"."}},
};

void print_help_entry(const char* entry) {
  std::cout << "  " << entry << '\n';
}

void print_help() {
  std::cout << kUsage;
  for (const HelpSection& section : kHelpSections) {
    std::cout << '\n' << section.title << '\n';
    for (const char* e : section.entries) print_help_entry(e);
  }
}

// The help of `topic` ("account", "account edit", "sync"): every entry that starts with it as whole words.
std::vector<const char*> help_entries(const std::string& topic) {
  std::vector<const char*> out;
  for (const HelpSection& section : kHelpSections) {
    for (const char* e : section.entries) {
      const std::string entry(e);
      if (entry.rfind(topic, 0) != 0) continue;
      if (entry.size() > topic.size() && entry[topic.size()] != ' ') continue;  // "account" is not "accounts"
      out.push_back(e);
    }
  }
  return out;
}

struct UsageError {
  std::string message;
};

// Command-line words after the global options: `--key value` pairs, `--flag`s and positional words.
class Args {
 public:
  Args(std::vector<std::string> words, std::vector<std::string> flags) {
    for (size_t i = 0; i < words.size(); ++i) {
      const std::string& w = words[i];
      if (w.rfind("--", 0) == 0) {
        const std::string key = w.substr(2);
        if (std::find(flags.begin(), flags.end(), key) != flags.end()) {
          opts_[key] = "";
        } else {
          if (i + 1 >= words.size()) throw UsageError{"option " + w + " needs a value"};
          opts_[key] = words[++i];
        }
      } else {
        positional_.push_back(w);
      }
    }
  }
  std::optional<std::string> opt(const std::string& key) {
    auto it = opts_.find(key);
    if (it == opts_.end()) return std::nullopt;
    used_.push_back(key);
    return it->second;
  }
  std::string need(const std::string& key) {
    auto v = opt(key);
    if (!v) throw UsageError{"missing --" + key};
    return *v;
  }
  bool flag(const std::string& key) { return opt(key).has_value(); }
  const std::vector<std::string>& positional() const { return positional_; }
  // Unknown options are usage errors, not silently ignored.
  void finish(size_t positional_max = 0) {
    for (const auto& [k, v] : opts_)
      if (std::find(used_.begin(), used_.end(), k) == used_.end()) throw UsageError{"unknown option --" + k};
    if (positional_.size() > positional_max)
      throw UsageError{"unexpected argument '" + positional_.back() + "'"};
  }

 private:
  std::map<std::string, std::string> opts_;
  std::vector<std::string> positional_;
  std::vector<std::string> used_;
};

int64_t parse_int(const std::string& what, const std::string& s) {
  errno = 0;
  char* end = nullptr;
  const long long v = std::strtoll(s.c_str(), &end, 10);
  if (s.empty() || *end != '\0' || errno == ERANGE)
    throw UsageError{what + " must be an integer, got '" + s + "'"};
  return v;
}

double parse_double(const std::string& what, const std::string& s) {
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  if (s.empty() || *end != '\0') throw UsageError{what + " must be a number, got '" + s + "'"};
  return v;
}

int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

// YYYY-MM-DDTHH:MM[:SS][Z] in UTC, or integer milliseconds.
int64_t parse_time(const std::string& what, const std::string& s) {
  if (!s.empty() && s.find_first_not_of("0123456789") == std::string::npos) return parse_int(what, s);
  int y = 0, mo = 0, d = 0, h = 0, mi = 0, sec = 0, n = 0;
  const int fields =
      std::sscanf(s.c_str(), "%4d-%2d-%2dT%2d:%2d%n:%2d%n", &y, &mo, &d, &h, &mi, &n, &sec, &n);
  std::string rest = n > 0 ? s.substr(static_cast<size_t>(n)) : s;
  if (fields < 5 || !(rest.empty() || rest == "Z") || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 ||
      mi > 59 || sec > 59)
    throw UsageError{what + " must be a UTC time like 2030-01-07T10:00, got '" + s + "'"};
  return (days_from_civil(y, static_cast<unsigned>(mo), static_cast<unsigned>(d)) * 86400 + h * 3600 +
          mi * 60 + sec) *
         1000;
}

std::string format_time(int64_t ms) {
  const int64_t secs = ms >= 0 ? ms / 1000 : (ms - 999) / 1000;
  int64_t days = secs >= 0 ? secs / 86400 : (secs - 86399) / 86400;
  const int64_t rem = secs - days * 86400;
  // civil_from_days
  days += 719468;
  const int64_t era = (days >= 0 ? days : days - 146096) / 146097;
  const unsigned doe = static_cast<unsigned>(days - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  const unsigned d = doy - (153 * mp + 2) / 5 + 1;
  const unsigned m = mp < 10 ? mp + 3 : mp - 9;
  const int64_t y = static_cast<int64_t>(yoe) + era * 400 + (m <= 2);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04lld-%02u-%02uT%02d:%02d:%02dZ", static_cast<long long>(y), m, d,
                static_cast<int>(rem / 3600), static_cast<int>(rem % 3600 / 60), static_cast<int>(rem % 60));
  return buf;
}

struct Failed {
  Status status;
};

template <typename T>
T check(Result<T> r) {
  if (!r) throw Failed{r.status()};
  return std::move(r).value();
}
void check(const Status& s) {
  if (!s) throw Failed{s};
}

void print_event(const Event& e, const char* prefix = "") {
  std::cout << prefix << e.id << '\t' << format_time(e.start_at_ms) << '\t' << format_time(e.end_at_ms)
            << '\t' << e.status << '\t' << e.title << '\n';
}
void print_visit(const Visit& v) {
  std::cout << v.id << '\t' << v.account_id << '\t' << format_time(v.check_in_at_ms) << '\t'
            << (v.check_out_at_ms ? format_time(*v.check_out_at_ms) : "-") << '\t'
            << (v.outcome.empty() ? "-" : v.outcome) << '\t' << v.rep_id << '\n';
}
void print_account(const Account& a) {
  std::cout << a.id << '\t' << a.name << '\t' << a.territory_id << '\t' << a.city << '\n';
}
void print_order(const Order& o, bool lines) {
  std::cout << o.id << '\t' << o.account_id << '\t' << o.status << '\t' << o.currency << '\t'
            << o.lines.size() << " lines\t" << o.total_cents << '\n';
  if (!lines) return;
  for (const OrderLine& l : o.lines)
    std::cout << "  " << l.id << '\t' << l.product_id << '\t' << l.quantity << " x " << l.unit_price_cents
              << '\t' << l.discount_bp << "bp\t" << l.net_cents << '\n';
  std::cout << "gross\t" << o.gross_cents << "\ndiscount\t" << o.discount_cents << "\ntotal\t"
            << o.total_cents << '\n';
}
void print_write(const EventWriteResult& r) {
  std::cout << r.id << '\n';
  for (const Event& e : r.overlaps) print_event(e, "overlaps\t");
}

std::optional<int64_t> opt_int(Args& a, const std::string& key) {
  auto v = a.opt(key);
  if (!v) return std::nullopt;
  return parse_int("--" + key, *v);
}

// `sync --stay`: stays connected (the transport reconnects by itself) for `stay`, ending early when the
// engine stops or the server's certificate is refused (no retry can fix either). The outcome is the state
// at the end: connected and synced, or the latest transport error.
WsStatus stay_connected(FieldClient& c, WsClient& ws, std::chrono::seconds stay) {
  auto hopeless = [&] {
    const WsError e = ws.last_error().code;
    return c.engine().stopped() || e == WsError::kCertificate || e == WsError::kPinMismatch;
  };
  auto synced = [&] { return ws.connected() && c.engine().idle(); };
  ws.wait_until(hopeless, stay);
  // A live change may be half-applied when the time is up: give a connected session a moment to settle.
  if (!hopeless() && ws.connected())
    ws.wait_until([&] { return hopeless() || synced(); }, std::chrono::seconds(5));
  const bool ok = !hopeless() && synced();
  const WsStatus last = ws.last_error();
  ws.stop();
  if (c.engine().stopped()) return {WsError::kStopped, c.engine().stop_reason().to_string()};
  if (ok) return {};
  if (!last.ok()) return last;
  return {WsError::kTimeout, "not synced when the " + std::to_string(stay.count()) + " s were up"};
}

int run(FieldClient& c, const std::string& cmd, std::vector<std::string> words) {
  // Two-word commands ("order line") take their second word from the arguments.
  std::string sub;
  if ((cmd == "account" || cmd == "contact" || cmd == "order" || cmd == "event" || cmd == "opp")) {
    if (words.empty() || words[0].rfind("--", 0) == 0)
      throw UsageError{cmd + " needs a subcommand (see --help)"};
    sub = words[0];
    words.erase(words.begin());
  }
  const std::string full = sub.empty() ? cmd : cmd + " " + sub;
  Args a(words, {"today", "open", "week", "primary", "not-primary", "once", "unread", "mark-seen"});

  if (full == "account add") {
    NewAccount n{a.need("name"), a.need("territory"), a.opt("address"), a.opt("city"),
                 a.opt("phone"), a.opt("email"),      a.opt("segment")};
    a.finish();
    std::cout << check(c.create_account(n)) << '\n';
  } else if (full == "account edit") {
    const std::string id = a.need("id");
    AccountEdit e{a.opt("name"),  a.opt("address"), a.opt("city"), a.opt("phone"),
                  a.opt("email"), a.opt("segment"), a.opt("note"), a.opt("territory")};
    a.finish();
    check(c.edit_account(id, e));
    std::cout << id << '\n';
  } else if (full == "account show") {
    const std::string id = a.need("id");
    a.finish();
    AccountWithContacts r = check(c.account(id));
    print_account(r.account);
    for (const Contact& ct : r.contacts)
      std::cout << "contact\t" << ct.id << '\t' << ct.name << '\t' << ct.title << '\t' << ct.email << '\t'
                << ct.phone << (ct.is_primary ? "\tprimary" : "") << '\n';
  } else if (full == "accounts") {
    auto prefix = a.opt("prefix");
    auto territory = a.opt("territory");
    a.finish();
    if (prefix && territory) throw UsageError{"give --prefix or --territory, not both"};
    for (const Account& acc :
         check(territory ? c.accounts_in_territory(*territory) : c.accounts_by_prefix(prefix.value_or(""))))
      print_account(acc);
  } else if (full == "contact add") {
    NewContact n{a.need("account"), a.need("name"),
                 a.opt("title"),    a.opt("email"),
                 a.opt("phone"),    a.flag("primary") ? std::optional<bool>(true) : std::nullopt};
    a.finish();
    std::cout << check(c.create_contact(n)) << '\n';
  } else if (full == "contact edit") {
    const std::string id = a.need("id");
    const bool primary = a.flag("primary");
    const bool not_primary = a.flag("not-primary");
    if (primary && not_primary) throw UsageError{"give --primary or --not-primary, not both"};
    ContactEdit e{a.opt("name"), a.opt("title"), a.opt("email"), a.opt("phone"),
                  primary || not_primary ? std::optional<bool>(primary) : std::nullopt};
    a.finish();
    check(c.edit_contact(id, e));
    std::cout << id << '\n';
  } else if (full == "checkin") {
    CheckIn in;
    in.account_id = a.need("account");
    if (auto v = a.opt("lat")) in.latitude = parse_double("--lat", *v);
    if (auto v = a.opt("lon")) in.longitude = parse_double("--lon", *v);
    if (auto v = a.opt("at")) in.at_ms = parse_time("--at", *v);
    in.calendar_event_id = a.opt("event");
    a.finish();
    std::cout << check(c.check_in(in)) << '\n';
  } else if (full == "note") {
    const std::string id = a.need("visit");
    a.finish(1);
    if (a.positional().empty()) throw UsageError{"note needs the text"};
    check(c.add_visit_note(id, a.positional()[0]));
    std::cout << id << '\n';
  } else if (full == "checkout") {
    const std::string id = a.need("visit");
    const std::string outcome = a.need("outcome");
    std::optional<int64_t> at;
    if (auto v = a.opt("at")) at = parse_time("--at", *v);
    a.finish();
    check(c.check_out(id, outcome, at));
    std::cout << id << '\n';
  } else if (full == "visits") {
    auto account = a.opt("account");
    const bool today = a.flag("today");
    a.finish();
    if (account.has_value() == today) throw UsageError{"visits needs --account ID or --today"};
    for (const Visit& v : check(today ? c.todays_visits() : c.visits_of_account(*account))) print_visit(v);
  } else if (full == "order draft") {
    const std::string account = a.need("account");
    const std::string currency = a.opt("currency").value_or("EUR");
    a.finish();
    std::cout << check(c.draft_order(account, currency)) << '\n';
  } else if (full == "order line") {
    const std::string order = a.need("order");
    NewLine l;
    l.product_id = a.need("product");
    l.quantity = parse_int("--qty", a.need("qty"));
    l.unit_price_cents = opt_int(a, "price");
    l.discount_bp = opt_int(a, "discount");
    l.note = a.opt("note");
    a.finish();
    std::cout << check(c.add_line(order, l)) << '\n';
  } else if (full == "order line-edit") {
    const std::string line = a.need("line");
    LineEdit e{opt_int(a, "qty"), opt_int(a, "price"), opt_int(a, "discount"), a.opt("note")};
    a.finish();
    check(c.change_line(line, e));
    std::cout << line << '\n';
  } else if (full == "order line-remove") {
    const std::string line = a.need("line");
    a.finish();
    check(c.remove_line(line));
    std::cout << line << '\n';
  } else if (full == "order submit") {
    const std::string order = a.need("order");
    a.finish();
    check(c.submit_order(order));
    std::cout << order << '\n';
  } else if (full == "order show") {
    const std::string order = a.need("order");
    a.finish();
    print_order(check(c.order(order)), true);
  } else if (full == "orders") {
    a.flag("open");  // the only listing so far
    a.finish();
    for (const Order& o : check(c.open_orders())) print_order(o, false);
  } else if (full == "event book") {
    NewEvent e;
    e.title = a.need("title");
    e.start_at_ms = parse_time("--start", a.need("start"));
    e.end_at_ms = parse_time("--end", a.need("end"));
    e.account_id = a.opt("account");
    e.location = a.opt("location");
    a.finish();
    print_write(check(c.create_event(e)));
  } else if (full == "event move") {
    const std::string id = a.need("id");
    const int64_t start = parse_time("--start", a.need("start"));
    const int64_t end = parse_time("--end", a.need("end"));
    a.finish();
    print_write(check(c.move_event(id, start, end)));
  } else if (full == "event cancel") {
    const std::string id = a.need("id");
    a.finish();
    check(c.cancel_event(id));
    std::cout << id << '\n';
  } else if (full == "agenda") {
    const bool week = a.flag("week");
    a.finish();
    for (const Event& e : check(week ? c.agenda_week() : c.agenda_today())) print_event(e);
  } else if (full == "opp add") {
    NewOpportunity o;
    o.account_id = a.need("account");
    o.name = a.need("name");
    o.amount_cents = parse_int("--amount", a.need("amount"));
    if (auto v = a.opt("currency")) o.currency = *v;
    if (auto v = a.opt("stage")) o.stage = *v;
    a.finish();
    std::cout << check(c.create_opportunity(o)) << '\n';
  } else if (full == "opp move") {
    const std::string id = a.need("id");
    const std::string stage = a.need("stage");
    a.finish();
    check(c.move_opportunity(id, stage));
    std::cout << id << '\n';
  } else if (full == "pipeline") {
    a.finish();
    for (const PipelineStage& p : check(c.pipeline()))
      std::cout << p.stage << '\t' << p.currency << '\t' << p.count << '\t' << p.amount_cents << '\n';
  } else if (full == "pending") {
    a.finish();
    std::cout << check(c.pending_count()) << '\n';
  } else if (full == "status") {
    a.finish();
    SyncStatus s = check(c.sync_status());
    std::cout << "node\t" << c.node() << "\npending\t" << s.pending_txns << "\nconnected\t"
              << (s.connected ? "yes" : "no") << "\nlast_synced\t"
              << (s.last_synced_at_ms ? format_time(*s.last_synced_at_ms) : "-") << '\n';
  } else if (full == "conflicts") {
    a.finish();
    for (const fieldsync::ConflictRecord& k : check(c.conflicts())) {
      const auto* e = fieldsync::schema::entity(k.entity);
      const auto* f = e ? e->field(k.field) : nullptr;
      std::cout << k.server_seq << '\t' << k.rule << '\t' << (e ? e->name : "?") << '\t'
                << k.record.to_string() << '\t' << (f ? f->name : "-") << "\twinner "
                << k.winner.value.debug_string() << " by " << k.winner.user << "\tloser "
                << k.loser.value.debug_string() << " by " << k.loser.user;
      if (!k.other_record.is_nil()) std::cout << "\tother " << k.other_record.to_string();
      std::cout << '\n';
    }
  } else if (full == "rejections") {
    a.finish();
    for (const fieldsync::Rejection& r : check(c.rejections()))
      std::cout << r.node_seq << '\t' << fieldsync::to_string(r.reason) << '\t' << r.message << '\t'
                << r.changes.size() << " changes undone\n";
  } else if (full == "inbox") {
    const bool unread = a.flag("unread");
    const bool mark = a.flag("mark-seen");
    a.finish();
    const std::vector<InboxConflict> conflicts = check(c.conflict_inbox(unread));
    const std::vector<InboxRejection> rejections = check(c.rejection_inbox(unread));
    for (const InboxConflict& k : conflicts) {
      const auto* e = fieldsync::schema::entity(k.conflict.entity);
      std::cout << "conflict\t" << k.inbox_id << '\t' << (k.seen ? "seen" : "unread") << '\t'
                << k.conflict.rule << '\t' << (e ? e->name : "?") << '\t' << k.conflict.record.to_string()
                << '\n';
    }
    for (const InboxRejection& r : rejections)
      std::cout << "rejection\t" << r.inbox_id << '\t' << (r.seen ? "seen" : "unread") << '\t'
                << fieldsync::to_string(r.rejection.reason) << '\t' << r.rejection.message << '\n';
    if (mark && !conflicts.empty()) check(c.mark_conflicts_seen(conflicts.front().inbox_id));
    if (mark && !rejections.empty()) check(c.mark_rejections_seen(rejections.front().inbox_id));
    const InboxCounts counts = check(c.unread_counts());
    std::cout << "unread\t" << counts.unread_conflicts << " conflicts\t" << counts.unread_rejections
              << " rejections\n";
  } else if (full == "export") {
    a.finish();
    std::cout << check(c.export_json());
  } else if (full == "login") {
    WsClientOptions o;
    o.url = a.need("server");
    if (auto v = a.opt("ca")) o.ca_file = *v;
    if (auto v = a.opt("pin")) o.pin_sha256 = *v;
    std::optional<std::string> password = a.opt("password");
    a.finish();
    if (!password) {
      std::string line;
      if (!std::getline(std::cin, line)) throw UsageError{"login: no --password and nothing on stdin"};
      password = line;
    }
    LoginReply r = fieldsync::client::login(o, c.user(), *password, c.node());
    if (!r.ok()) {
      std::cerr << "fieldsync-rep: login: " << r.to_string()
                << (r.retry_after_s > 0 ? " (retry after " + std::to_string(r.retry_after_s) + " s)" : "")
                << '\n';
      return 1;
    }
    std::cout << r.token << '\n';
  } else if (full == "sync") {
    WsClientOptions o;
    o.url = a.need("server");
    if (auto v = a.opt("ca")) o.ca_file = *v;
    if (auto v = a.opt("pin")) o.pin_sha256 = *v;
    const bool once = a.flag("once");
    const std::optional<std::string> stay = a.opt("stay");
    const std::optional<std::string> timeout = a.opt("timeout");
    a.finish();
    if (once && stay) throw UsageError{"give --once or --stay SECONDS, not both"};
    if (stay && timeout) throw UsageError{"--timeout goes with --once; --stay gives its own time"};
    const int64_t stay_s = stay ? parse_int("--stay", *stay) : 0;
    if (stay && (stay_s < 1 || stay_s > 24 * 3600)) throw UsageError{"--stay: 1 to 86400 seconds"};
    const int64_t timeout_s = timeout ? parse_int("--timeout", *timeout) : 60;
    if (timeout_s < 1 || timeout_s > 3600) throw UsageError{"--timeout: 1 to 3600 seconds"};
    // Set on the transport thread (dispatch_events), read here after the thread was joined.
    std::optional<Status> erased;
    c.add_observer({.erased = [&erased](const Status& result) { erased = result; }});
    o.after_frame = [&c] { c.dispatch_events(); };
    WsClient ws(c.engine(), o);
    WsStatus s;
    if (!stay) {
      s = ws.sync_once(std::chrono::seconds(timeout_s));
    } else {
      s = ws.start();
      if (s.ok()) s = stay_connected(c, ws, std::chrono::seconds(stay_s));
    }
    c.dispatch_events();
    if (erased) throw Failed{*erased};
    if (!s.ok()) {
      std::cerr << "fieldsync-rep: sync: " << s.to_string() << '\n';
      return 1;
    }
    std::cout << "synced\tpending " << check(c.pending_count()) << '\n';
  } else {
    throw UsageError{"unknown command '" + full + "' (see --help)"};
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  try {
    FieldClient::Options options;
    std::string db;
    size_t i = 0;
    for (; i < args.size() && args[i].rfind("--", 0) == 0; ++i) {
      const std::string& k = args[i];
      if (k == "--help" || k == "-h") {
        print_help();
        return 0;
      }
      if (i + 1 >= args.size()) throw UsageError{"option " + k + " needs a value"};
      const std::string& v = args[++i];
      if (k == "--db") {
        db = v;
      } else if (k == "--user") {
        options.user = v;
      } else if (k == "--token") {
        options.token = v;
      } else if (k == "--role") {
        auto r = fieldsync::schema::role_from_string(v);
        if (!r) throw UsageError{"--role must be rep, manager or head_office"};
        options.role = *r;
      } else if (k == "--utc-offset") {
        options.utc_offset_minutes = static_cast<int>(parse_int("--utc-offset", v));
      } else {
        throw UsageError{"unknown option " + k};
      }
    }
    if (i >= args.size()) throw UsageError{"missing command (see --help)"};
    // `COMMAND [SUBCOMMAND] --help`: that command's help, no replica needed.
    if (std::find_if(args.begin() + static_cast<std::ptrdiff_t>(i), args.end(),
                     [](const std::string& w) { return w == "--help" || w == "-h"; }) != args.end()) {
      std::string topic = args[i];
      if (i + 1 < args.size() && args[i + 1].rfind("-", 0) != 0 &&
          !help_entries(topic + " " + args[i + 1]).empty())
        topic += " " + args[i + 1];
      const std::vector<const char*> entries = help_entries(topic);
      if (entries.empty()) throw UsageError{"unknown command '" + topic + "' (see --help)"};
      std::cout << "usage: fieldsync-rep --db FILE --user USER [global options] COMMAND [OPTIONS]\n";
      for (const char* e : entries) print_help_entry(e);
      return 0;
    }
    if (db.empty()) throw UsageError{"missing --db FILE"};
    if (options.user.empty()) throw UsageError{"missing --user USER"};
    const std::string cmd = args[i];
    std::vector<std::string> rest(args.begin() + static_cast<std::ptrdiff_t>(i) + 1, args.end());
    auto client = check(FieldClient::open(db, std::move(options)));
    return run(*client, cmd, std::move(rest));
  } catch (const UsageError& e) {
    std::cerr << "fieldsync-rep: " << e.message << '\n';
    return 2;
  } catch (const Failed& f) {
    if (f.status.code() == ErrorCode::kDeviceRevoked) {
      std::cerr << "fieldsync-rep: " << f.status.message() << '\n';  // already says what happened
      return 3;
    }
    std::cerr << "fieldsync-rep: " << f.status.to_string() << '\n';
    return 1;
  }
}
