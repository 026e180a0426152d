// fieldsync-rep: a command-line device. It opens a replica file and runs the field-sales API (FieldClient),
// for demos, tests and integrators. Success prints ids or plain tab-separated tables on stdout; an error is
// one line on stderr and a non-zero exit (1: the operation failed, 2: bad usage, 3: the device was revoked
// and its replica erased).
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <iostream>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "fieldsync/client/field_client.h"
#include "fieldsync/client/ws_client.h"
#include "fieldsync/io/cli_options.h"

namespace {

using fieldsync::ErrorCode;
using fieldsync::Result;
using fieldsync::Status;
using namespace fieldsync::client;
namespace cli = fieldsync::cli;

constexpr const char* kUsage =
    R"(usage: fieldsync-rep --db FILE --user USER [--token TOKEN] [--role rep|manager|head_office]
                     [--utc-offset MINUTES] [--app-version TEXT] COMMAND [OPTIONS]
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
    {"Leads (schema 3)",
     {"lead add --person N --source S --territory T [--company C] [--email E] [--phone P] [--note TEXT]\n"
      "                                      S: "
      "campaign|web_form|email_enquiry|phone_enquiry|field_prospecting|\n"
      "                                      referral|other; owned by me, status new",
      "lead contacted --id ID", "lead qualify --id ID",
      "lead convert --id ID [--account ID] [--account-name N] [--opp-name N] [--amount CENTS] [--currency "
      "EUR]\n"
      "                                      one transaction (offline too): a new account (or --account), a\n"
      "                                      contact and an opportunity; prints lead, account, contact, opp "
      "ids",
      "lead disqualify --id ID --reason TEXT", "lead note --id ID TEXT", "lead show --id ID",
      "leads                                 mine, open, oldest first"}},
    {"Service cases, assets and tasks (schema 3)",
     {"case open --account ID --subject S [--priority low|normal|high|urgent] [--contact ID] [--asset ID]\n"
      "          [--take]                    --take assigns it to me at once",
      "case take --id ID                     an unassigned case of my territory, for me",
      "case dispatch --id ID --to USER       managers (their team) and head office", "case start --id ID",
      "case resolve --id ID --note TEXT", "case close --id ID",
      "case reopen --id ID                   managers", "case note --id ID TEXT",
      "case show --id ID                     with the derived billable flag",
      "cases [--account ID]                  an account's open cases, or mine (not resolved or closed)",
      "asset add --account ID --serial S [--product ID] [--installed TIME] [--warranty-end TIME] [--note T]",
      "asset show --id ID", "assets --account ID",
      "task add --title T [--due TIME] [--remind TIME] [--account ID] [--opp ID] [--lead ID] [--case ID]\n"
      "         [--note TEXT]",
      "task done --id ID", "task cancel --id ID", "task reopen --id ID",
      "tasks [--overdue]                     my open tasks by due time, or those past due"}},
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
      "                                      fieldsync-server prints). Prints \"synced<TAB>pending N\".\n"
      "                                      --server URL,URL,...: instances of one service (several\n"
      "                                      servers on one PostgreSQL store), tried in turn when one "
      "fails.\n"
      "                                      A bootstrap or push of 1,000 records or more shows its "
      "progress\n"
      "                                      on stderr: one updating line on a terminal, else plain lines."}},
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

// The options of each command ("account add"): names taking a value, switches, and how many plain words
// (note's text) it takes. Anything else is a usage error, not silently ignored.
struct CommandOptions {
  std::set<std::string> values;
  std::set<std::string> switches;
  size_t words = 0;
};
const std::map<std::string, CommandOptions> kCommands = {
    {"account add", {{"name", "territory", "address", "city", "phone", "email", "segment"}}},
    {"account edit", {{"id", "name", "address", "city", "phone", "email", "segment", "note", "territory"}}},
    {"account show", {{"id"}}},
    {"accounts", {{"prefix", "territory"}}},
    {"contact add", {{"account", "name", "title", "email", "phone"}, {"primary"}}},
    {"contact edit", {{"id", "name", "title", "email", "phone"}, {"primary", "not-primary"}}},
    {"checkin", {{"account", "lat", "lon", "at", "event"}}},
    {"note", {{"visit"}, {}, 1}},
    {"checkout", {{"visit", "outcome", "at"}}},
    {"visits", {{"account"}, {"today"}}},
    {"order draft", {{"account", "currency"}}},
    {"order line", {{"order", "product", "qty", "price", "discount", "note"}}},
    {"order line-edit", {{"line", "qty", "price", "discount", "note"}}},
    {"order line-remove", {{"line"}}},
    {"order submit", {{"order"}}},
    {"order show", {{"order"}}},
    {"orders", {{}, {"open"}}},
    {"event book", {{"title", "start", "end", "account", "location", "opp"}}},
    {"lead add", {{"person", "source", "territory", "company", "email", "phone", "note"}}},
    {"lead contacted", {{"id"}}},
    {"lead qualify", {{"id"}}},
    {"lead convert", {{"id", "account", "account-name", "opp-name", "amount", "currency"}}},
    {"lead disqualify", {{"id", "reason"}}},
    {"lead note", {{"id"}, {}, 1}},
    {"lead show", {{"id"}}},
    {"leads", {}},
    {"case open", {{"account", "subject", "priority", "contact", "asset"}, {"take"}}},
    {"case take", {{"id"}}},
    {"case dispatch", {{"id", "to"}}},
    {"case start", {{"id"}}},
    {"case resolve", {{"id", "note"}}},
    {"case close", {{"id"}}},
    {"case reopen", {{"id"}}},
    {"case note", {{"id"}, {}, 1}},
    {"case show", {{"id"}}},
    {"cases", {{"account"}}},
    {"asset add", {{"account", "serial", "product", "installed", "warranty-end", "note"}}},
    {"asset show", {{"id"}}},
    {"assets", {{"account"}}},
    {"task add", {{"title", "due", "remind", "account", "opp", "lead", "case", "note"}}},
    {"task done", {{"id"}}},
    {"task cancel", {{"id"}}},
    {"task reopen", {{"id"}}},
    {"tasks", {{}, {"overdue"}}},
    {"event move", {{"id", "start", "end"}}},
    {"event cancel", {{"id"}}},
    {"agenda", {{}, {"week"}}},
    {"opp add", {{"account", "name", "amount", "currency", "stage"}}},
    {"opp move", {{"id", "stage"}}},
    {"pipeline", {}},
    {"pending", {}},
    {"status", {}},
    {"conflicts", {}},
    {"rejections", {}},
    {"inbox", {{}, {"unread", "mark-seen"}}},
    {"export", {}},
    {"login", {{"server", "ca", "pin", "password"}}},
    {"sync", {{"server", "ca", "pin", "stay", "timeout"}, {"once"}}},
};

std::string need(const cli::Options& a, const std::string& key) {
  if (!a.has(key)) throw UsageError{"missing --" + key};
  return a.get(key);
}

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

// A time for a person at this terminal: the local time zone (TZ), with its name, so a listing read beside a
// calendar needs no conversion.
std::string format_local_time(int64_t ms) {
  const std::time_t secs = static_cast<std::time_t>(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
  std::tm tm{};
  char buf[64];
  if (localtime_r(&secs, &tm) == nullptr || std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M %Z", &tm) == 0)
    return format_time(ms);
  return buf;
}

// A conflict's value as a person reads it: a timestamp field's milliseconds as a local date and time.
std::string shown_value(const fieldsync::schema::FieldDef* f, const fieldsync::Value& v) {
  if (f != nullptr && f->type == fieldsync::schema::FieldType::kTimestamp &&
      v.kind() == fieldsync::Value::Kind::kInt)
    return format_local_time(v.as_int());
  return v.debug_string();
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
void print_lead(const Lead& l) {
  std::cout << l.id << '\t' << l.status << '\t' << l.source << '\t' << l.person_name << '\t'
            << (l.company_name.empty() ? "-" : l.company_name) << '\t' << l.owner_id << '\n';
}
void print_case(const ServiceCase& c, const char* prefix = "") {
  std::cout << prefix << c.id << '\t' << c.account_id << '\t' << c.status << '\t' << c.priority << '\t'
            << (c.assignee_id.empty() ? "-" : c.assignee_id) << '\t'
            << (c.due_at_ms ? format_time(*c.due_at_ms) : "-") << '\t' << (c.billable ? "billable" : "-")
            << '\t' << c.subject << '\n';
}
void print_task(const Task& t) {
  std::cout << t.id << '\t' << t.status << '\t' << (t.due_at_ms ? format_time(*t.due_at_ms) : "-") << '\t'
            << t.title << '\n';
}
void print_write(const EventWriteResult& r) {
  std::cout << r.id << '\n';
  for (const Event& e : r.overlaps) print_event(e, "overlaps\t");
}

std::optional<int64_t> opt_int(const cli::Options& a, const std::string& key) {
  auto v = a.maybe(key);
  if (!v) return std::nullopt;
  return parse_int("--" + key, *v);
}

// login's and sync's --server, --ca and --pin.
WsClientOptions server_options(const cli::Options& a) {
  WsClientOptions o;
  // Several instances of one service, comma-separated: the first, then the others when it fails
  // (WsClientOptions::fallback_urls). Login uses the first.
  const std::string servers = need(a, "server");
  for (size_t start = 0;;) {
    const size_t comma = servers.find(',', start);
    std::string url = servers.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    if (o.url.empty())
      o.url = std::move(url);
    else
      o.fallback_urls.push_back(std::move(url));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  o.ca_file = a.get("ca");
  o.pin_sha256 = a.get("pin");
  return o;
}

// `sync` progress during a bootstrap or a big push: records and bytes done of the total, rate and time left.
// On stderr, so that stdout stays the one "synced<TAB>pending N" line scripts read: one line rewritten in
// place when stderr is a terminal, plain lines every few seconds otherwise (logs, CI), and a closing line per
// phase either way. Only for at least kMinRecords records: a small sync is over before a rate means anything
// (and the demo's output stays as it is).
//
// Bootstrap: the FieldClient's sync_progress observer (done / total records). Push: the outbox's size,
// polled (it costs a COUNT over the outbox, hence the slow poll), against its size when the sync began.
// Bytes: the WsClient's message counters (payloads, before TLS); the total is extrapolated from the records
// done, so it is marked "~".
class SyncProgress {
 public:
  static constexpr uint64_t kMinRecords = 1000;

  SyncProgress(FieldClient& c, const WsClient& ws) : client_(c), ws_(ws), tty_(isatty(STDERR_FILENO) == 1) {
    Result<size_t> pending = c.pending_count();
    push_.total = pending ? *pending : 0;
    observer_ = c.add_observer({.sync_progress = [this](uint64_t done, uint64_t total) {
      std::lock_guard lock(mu_);
      boot_.done = done;
      boot_.total = total;
    }});
  }
  ~SyncProgress() {
    stop();
    client_.remove_observer(observer_);
  }
  void start() {
    thread_ = std::thread([this] { run(); });
  }
  // Prints each phase's closing line (also for a phase that did not finish: where it stopped).
  void stop() {
    {
      std::lock_guard lock(mu_);
      if (stopping_) return;
      stopping_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
    std::lock_guard lock(mu_);
    poll_push_locked();
    for (Phase* p : {&boot_, &push_}) report_locked(*p, true);
  }

 private:
  using Clock = std::chrono::steady_clock;
  struct Phase {
    const char* name;
    bool sends;  // push: bytes sent; bootstrap: bytes received
    uint64_t done = 0, total = 0;
    bool closed = false;
  };

  void run() {
    const auto period = tty_ ? std::chrono::milliseconds(1000) : std::chrono::milliseconds(5000);
    std::unique_lock lock(mu_);
    while (!cv_.wait_for(lock, period, [this] { return stopping_; })) {
      poll_push_locked();
      for (Phase* p : {&boot_, &push_}) report_locked(*p, p->total > 0 && p->done >= p->total);
    }
  }

  void poll_push_locked() {
    if (push_.total < kMinRecords || push_.closed) return;
    Result<size_t> pending = client_.pending_count();
    if (pending) push_.done = push_.total - std::min<uint64_t>(push_.total, *pending);
  }

  uint64_t bytes(const Phase& p) const {
    const WsCounters c = ws_.counters();
    return p.sends ? c.bytes_sent : c.bytes_received;
  }

  static std::string mb(double bytes) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f", bytes / 1e6);
    return buf;
  }

  void report_locked(Phase& p, bool final) {
    if (p.closed || p.total < kMinRecords) return;
    // Both phases are timed from the start of the sync: a device that must bootstrap before it pushes (it
    // wrote before its first sync) sees a push rate diluted by the bootstrap; rare, and said here.
    const double secs = std::chrono::duration<double>(Clock::now() - started_).count();
    const double moved = static_cast<double>(bytes(p));
    const double rate = secs > 0 ? static_cast<double>(p.done) / secs : 0;
    std::string line =
        std::string(p.name) + ": " + std::to_string(p.done) + "/" + std::to_string(p.total) + " records";
    char buf[160];
    if (final) {
      std::snprintf(buf, sizeof buf, ", %s MB in %.1f s (%.0f records/s)%s", mb(moved).c_str(), secs, rate,
                    p.done >= p.total ? "" : ", not finished");
      line += buf;
      p.closed = true;
    } else {
      const double pct = 100.0 * static_cast<double>(p.done) / static_cast<double>(p.total);
      const double total_bytes =
          p.done > 0 ? moved * static_cast<double>(p.total) / static_cast<double>(p.done) : 0;
      std::snprintf(buf, sizeof buf, " (%.0f%%), %s of ~%s MB, %.0f records/s", pct, mb(moved).c_str(),
                    mb(total_bytes).c_str(), rate);
      line += buf;
      if (rate > 0) {
        std::snprintf(buf, sizeof buf, ", %.0f s left", static_cast<double>(p.total - p.done) / rate);
        line += buf;
      }
    }
    if (tty_)
      std::cerr << '\r' << line << "\033[K" << (final ? "\n" : "") << std::flush;
    else
      std::cerr << line << '\n' << std::flush;
  }

  FieldClient& client_;
  const WsClient& ws_;
  const bool tty_;
  const Clock::time_point started_ = Clock::now();
  uint64_t observer_ = 0;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  Phase boot_{"bootstrap", false};
  Phase push_{"push", true};
  std::thread thread_;
};

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

// A command line's command: its name ("order line") and its own options, checked against kCommands.
struct Command {
  std::string full;
  cli::Options a;
};
Command parse_command(std::vector<std::string> words) {
  std::string full = words.front();
  words.erase(words.begin());
  // Two-word commands ("order line") take their second word from the arguments.
  if (full == "account" || full == "contact" || full == "order" || full == "event" || full == "opp" ||
      full == "lead" || full == "case" || full == "asset" || full == "task") {
    if (words.empty() || words[0].rfind("--", 0) == 0)
      throw UsageError{full + " needs a subcommand (see --help)"};
    full += " " + words[0];
    words.erase(words.begin());
  }
  const auto known = kCommands.find(full);
  if (known == kCommands.end()) throw UsageError{"unknown command '" + full + "' (see --help)"};
  Command command{
      full, cli::Options(known->second.values, known->second.switches, cli::Options::Repeat::kLastWins)};
  if (std::string e = command.a.parse(words); !e.empty()) throw UsageError{e};
  if (command.a.words().size() > known->second.words)
    throw UsageError{"unexpected argument '" + command.a.words().back() + "'"};
  return command;
}

int run(FieldClient& c, const Command& command) {
  const std::string& full = command.full;
  const cli::Options& a = command.a;
  if (full == "account add") {
    NewAccount n{need(a, "name"),  need(a, "territory"), a.maybe("address"), a.maybe("city"),
                 a.maybe("phone"), a.maybe("email"),     a.maybe("segment")};
    std::cout << check(c.create_account(n)) << '\n';
  } else if (full == "account edit") {
    const std::string id = need(a, "id");
    AccountEdit e{a.maybe("name"),  a.maybe("address"), a.maybe("city"), a.maybe("phone"),
                  a.maybe("email"), a.maybe("segment"), a.maybe("note"), a.maybe("territory")};
    check(c.edit_account(id, e));
    std::cout << id << '\n';
  } else if (full == "account show") {
    const std::string id = need(a, "id");
    AccountWithContacts r = check(c.account(id));
    print_account(r.account);
    for (const Contact& ct : r.contacts)
      std::cout << "contact\t" << ct.id << '\t' << ct.name << '\t' << ct.title << '\t' << ct.email << '\t'
                << ct.phone << (ct.is_primary ? "\tprimary" : "") << '\n';
    for (const ServiceCase& sc : r.open_cases) print_case(sc, "case\t");
  } else if (full == "accounts") {
    auto prefix = a.maybe("prefix");
    auto territory = a.maybe("territory");
    if (prefix && territory) throw UsageError{"give --prefix or --territory, not both"};
    for (const Account& acc :
         check(territory ? c.accounts_in_territory(*territory) : c.accounts_by_prefix(prefix.value_or(""))))
      print_account(acc);
  } else if (full == "contact add") {
    NewContact n{need(a, "account"), need(a, "name"),
                 a.maybe("title"),   a.maybe("email"),
                 a.maybe("phone"),   a.on("primary") ? std::optional<bool>(true) : std::nullopt};
    std::cout << check(c.create_contact(n)) << '\n';
  } else if (full == "contact edit") {
    const std::string id = need(a, "id");
    const bool primary = a.on("primary");
    const bool not_primary = a.on("not-primary");
    if (primary && not_primary) throw UsageError{"give --primary or --not-primary, not both"};
    ContactEdit e{a.maybe("name"), a.maybe("title"), a.maybe("email"), a.maybe("phone"),
                  primary || not_primary ? std::optional<bool>(primary) : std::nullopt};
    check(c.edit_contact(id, e));
    std::cout << id << '\n';
  } else if (full == "checkin") {
    CheckIn in;
    in.account_id = need(a, "account");
    if (auto v = a.maybe("lat")) in.latitude = parse_double("--lat", *v);
    if (auto v = a.maybe("lon")) in.longitude = parse_double("--lon", *v);
    if (auto v = a.maybe("at")) in.at_ms = parse_time("--at", *v);
    in.calendar_event_id = a.maybe("event");
    std::cout << check(c.check_in(in)) << '\n';
  } else if (full == "note") {
    const std::string id = need(a, "visit");
    if (a.words().empty()) throw UsageError{"note needs the text"};
    check(c.add_visit_note(id, a.words()[0]));
    std::cout << id << '\n';
  } else if (full == "checkout") {
    const std::string id = need(a, "visit");
    const std::string outcome = need(a, "outcome");
    std::optional<int64_t> at;
    if (auto v = a.maybe("at")) at = parse_time("--at", *v);
    check(c.check_out(id, outcome, at));
    std::cout << id << '\n';
  } else if (full == "visits") {
    auto account = a.maybe("account");
    const bool today = a.on("today");
    if (account.has_value() == today) throw UsageError{"visits needs --account ID or --today"};
    for (const Visit& v : check(today ? c.todays_visits() : c.visits_of_account(*account))) print_visit(v);
  } else if (full == "order draft") {
    const std::string account = need(a, "account");
    const std::string currency = a.maybe("currency").value_or("EUR");
    std::cout << check(c.draft_order(account, currency)) << '\n';
  } else if (full == "order line") {
    const std::string order = need(a, "order");
    NewLine l;
    l.product_id = need(a, "product");
    l.quantity = parse_int("--qty", need(a, "qty"));
    l.unit_price_cents = opt_int(a, "price");
    l.discount_bp = opt_int(a, "discount");
    l.note = a.maybe("note");
    std::cout << check(c.add_line(order, l)) << '\n';
  } else if (full == "order line-edit") {
    const std::string line = need(a, "line");
    LineEdit e{opt_int(a, "qty"), opt_int(a, "price"), opt_int(a, "discount"), a.maybe("note")};
    check(c.change_line(line, e));
    std::cout << line << '\n';
  } else if (full == "order line-remove") {
    const std::string line = need(a, "line");
    check(c.remove_line(line));
    std::cout << line << '\n';
  } else if (full == "order submit") {
    const std::string order = need(a, "order");
    check(c.submit_order(order));
    std::cout << order << '\n';
  } else if (full == "order show") {
    const std::string order = need(a, "order");
    print_order(check(c.order(order)), true);
  } else if (full == "orders") {
    // --open: the only listing so far
    for (const Order& o : check(c.open_orders())) print_order(o, false);
  } else if (full == "event book") {
    NewEvent e;
    e.title = need(a, "title");
    e.start_at_ms = parse_time("--start", need(a, "start"));
    e.end_at_ms = parse_time("--end", need(a, "end"));
    e.account_id = a.maybe("account");
    e.location = a.maybe("location");
    e.opportunity_id = a.maybe("opp");
    print_write(check(c.create_event(e)));
  } else if (full == "event move") {
    const std::string id = need(a, "id");
    const int64_t start = parse_time("--start", need(a, "start"));
    const int64_t end = parse_time("--end", need(a, "end"));
    print_write(check(c.move_event(id, start, end)));
  } else if (full == "event cancel") {
    const std::string id = need(a, "id");
    check(c.cancel_event(id));
    std::cout << id << '\n';
  } else if (full == "agenda") {
    const bool week = a.on("week");
    for (const Event& e : check(week ? c.agenda_week() : c.agenda_today())) print_event(e);
  } else if (full == "opp add") {
    NewOpportunity o;
    o.account_id = need(a, "account");
    o.name = need(a, "name");
    o.amount_cents = parse_int("--amount", need(a, "amount"));
    if (auto v = a.maybe("currency")) o.currency = *v;
    if (auto v = a.maybe("stage")) o.stage = *v;
    std::cout << check(c.create_opportunity(o)) << '\n';
  } else if (full == "opp move") {
    const std::string id = need(a, "id");
    const std::string stage = need(a, "stage");
    check(c.move_opportunity(id, stage));
    std::cout << id << '\n';
  } else if (full == "lead add") {
    NewLead l;
    l.person_name = need(a, "person");
    l.source = need(a, "source");
    l.territory_id = need(a, "territory");
    l.company_name = a.maybe("company");
    l.email = a.maybe("email");
    l.phone = a.maybe("phone");
    l.notes = a.maybe("note");
    std::cout << check(c.create_lead(l)) << '\n';
  } else if (full == "lead contacted" || full == "lead qualify") {
    const std::string id = need(a, "id");
    check(full == "lead qualify" ? c.qualify_lead(id) : c.mark_lead_contacted(id));
    std::cout << id << '\n';
  } else if (full == "lead convert") {
    LeadConversion conv;
    conv.existing_account_id = a.maybe("account");
    conv.account_name = a.maybe("account-name");
    if (auto v = a.maybe("opp-name")) conv.opportunity_name = *v;
    if (auto v = opt_int(a, "amount")) conv.amount_cents = *v;
    if (auto v = a.maybe("currency")) conv.currency = *v;
    ConvertedLead r = check(c.convert_lead(need(a, "id"), conv));
    std::cout << "lead\t" << r.lead_id << "\naccount\t" << r.account_id << "\ncontact\t" << r.contact_id
              << "\nopportunity\t" << r.opportunity_id << '\n';
  } else if (full == "lead disqualify") {
    const std::string id = need(a, "id");
    check(c.disqualify_lead(id, need(a, "reason")));
    std::cout << id << '\n';
  } else if (full == "lead note") {
    const std::string id = need(a, "id");
    if (a.words().empty()) throw UsageError{"lead note needs the note's text"};
    check(c.add_lead_note(id, a.words().front()));
    std::cout << id << '\n';
  } else if (full == "lead show") {
    Lead l = check(c.lead(need(a, "id")));
    print_lead(l);
    if (!l.converted_account_id.empty())
      std::cout << "converted\t" << l.converted_account_id << '\t' << l.converted_contact_id << '\t'
                << l.converted_opportunity_id << '\n';
    if (!l.disqualify_reason.empty()) std::cout << "reason\t" << l.disqualify_reason << '\n';
  } else if (full == "leads") {
    for (const Lead& l : check(c.my_leads())) print_lead(l);
  } else if (full == "case open") {
    NewServiceCase n;
    n.account_id = need(a, "account");
    n.subject = need(a, "subject");
    if (auto v = a.maybe("priority")) n.priority = *v;
    n.contact_id = a.maybe("contact");
    n.asset_id = a.maybe("asset");
    n.take = a.on("take");
    std::cout << check(c.open_case(n)) << '\n';
  } else if (full == "case take" || full == "case start" || full == "case close" || full == "case reopen") {
    const std::string id = need(a, "id");
    check(full == "case take"    ? c.take_case(id)
          : full == "case start" ? c.start_case(id)
          : full == "case close" ? c.close_case(id)
                                 : c.reopen_case(id));
    std::cout << id << '\n';
  } else if (full == "case dispatch") {
    const std::string id = need(a, "id");
    check(c.dispatch_case(id, need(a, "to")));
    std::cout << id << '\n';
  } else if (full == "case resolve") {
    const std::string id = need(a, "id");
    check(c.resolve_case(id, need(a, "note")));
    std::cout << id << '\n';
  } else if (full == "case note") {
    const std::string id = need(a, "id");
    if (a.words().empty()) throw UsageError{"case note needs the note's text"};
    check(c.add_case_note(id, a.words().front()));
    std::cout << id << '\n';
  } else if (full == "case show") {
    ServiceCase sc = check(c.service_case(need(a, "id")));
    print_case(sc);
    if (!sc.resolution_notes.empty()) std::cout << "notes\t" << sc.resolution_notes << '\n';
  } else if (full == "cases") {
    auto account = a.maybe("account");
    for (const ServiceCase& sc : check(account ? c.open_cases_of_account(*account) : c.my_cases()))
      print_case(sc);
  } else if (full == "asset add") {
    NewAsset n;
    n.account_id = need(a, "account");
    n.serial_number = need(a, "serial");
    n.product_id = a.maybe("product");
    if (auto v = a.maybe("installed")) n.installed_at_ms = parse_time("--installed", *v);
    if (auto v = a.maybe("warranty-end")) n.warranty_end_at_ms = parse_time("--warranty-end", *v);
    n.notes = a.maybe("note");
    std::cout << check(c.register_asset(n)) << '\n';
  } else if (full == "asset show" || full == "assets") {
    std::vector<Asset> list = full == "assets" ? check(c.assets_of_account(need(a, "account")))
                                               : std::vector<Asset>{check(c.asset(need(a, "id")))};
    for (const Asset& x : list)
      std::cout << x.id << '\t' << x.account_id << '\t' << x.serial_number << '\t'
                << (x.warranty_end_at_ms ? format_time(*x.warranty_end_at_ms) : "-") << '\n';
  } else if (full == "task add") {
    NewTask t;
    t.title = need(a, "title");
    if (auto v = a.maybe("due")) t.due_at_ms = parse_time("--due", *v);
    if (auto v = a.maybe("remind")) t.remind_at_ms = parse_time("--remind", *v);
    t.account_id = a.maybe("account");
    t.opportunity_id = a.maybe("opp");
    t.lead_id = a.maybe("lead");
    t.service_case_id = a.maybe("case");
    t.notes = a.maybe("note");
    std::cout << check(c.create_task(t)) << '\n';
  } else if (full == "task done" || full == "task cancel" || full == "task reopen") {
    const std::string id = need(a, "id");
    check(full == "task done"     ? c.complete_task(id)
          : full == "task cancel" ? c.cancel_task(id)
                                  : c.reopen_task(id));
    std::cout << id << '\n';
  } else if (full == "tasks") {
    for (const Task& t : check(a.on("overdue") ? c.overdue_tasks() : c.open_tasks())) print_task(t);
  } else if (full == "pipeline") {
    for (const PipelineStage& p : check(c.pipeline()))
      std::cout << p.stage << '\t' << p.currency << '\t' << p.count << '\t' << p.amount_cents << '\n';
  } else if (full == "pending") {
    std::cout << check(c.pending_count()) << '\n';
  } else if (full == "status") {
    SyncStatus s = check(c.sync_status());
    std::cout << "node\t" << c.node() << "\npending\t" << s.pending_txns << "\nconnected\t"
              << (s.connected ? "yes" : "no") << "\nlast_synced\t"
              << (s.last_synced_at_ms ? format_time(*s.last_synced_at_ms) : "-") << '\n';
  } else if (full == "conflicts") {
    for (const fieldsync::ConflictRecord& k : check(c.conflicts())) {
      const auto* e = fieldsync::schema::entity(k.entity);
      const auto* f = e ? e->field(k.field) : nullptr;
      std::cout << k.server_seq << '\t' << k.rule << '\t' << (e ? e->name : "?") << '\t'
                << k.record.to_string() << '\t' << (f ? f->name : "-") << "\twinner "
                << shown_value(f, k.winner.value) << " by " << k.winner.user << "\tloser "
                << shown_value(f, k.loser.value) << " by " << k.loser.user;
      if (!k.other_record.is_nil()) std::cout << "\tother " << k.other_record.to_string();
      std::cout << '\n';
    }
  } else if (full == "rejections") {
    for (const fieldsync::Rejection& r : check(c.rejections()))
      std::cout << r.node_seq << '\t' << fieldsync::to_string(r.reason) << '\t' << r.message << '\t'
                << r.changes.size() << " changes undone\n";
  } else if (full == "inbox") {
    const bool unread = a.on("unread");
    const bool mark = a.on("mark-seen");
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
    std::cout << check(c.export_json());
  } else if (full == "login") {
    WsClientOptions o = server_options(a);
    std::optional<std::string> password = a.maybe("password");
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
    WsClientOptions o = server_options(a);
    const bool once = a.on("once"), stay = a.has("stay");
    if (once && stay) throw UsageError{"give --once or --stay SECONDS, not both"};
    if (stay && a.has("timeout")) throw UsageError{"--timeout goes with --once; --stay gives its own time"};
    std::string error;
    const int64_t stay_s = a.integer("stay", 0, 1, 24 * 3600, error);
    const int64_t timeout_s = a.integer("timeout", 60, 1, 3600, error);
    if (!error.empty()) throw UsageError{error};
    // Set on the transport thread (dispatch_events), read here after the thread was joined.
    std::optional<Status> erased;
    c.add_observer({.erased = [&erased](const Status& result) { erased = result; }});
    o.after_frame = [&c] { c.dispatch_events(); };
    WsClient ws(c.engine(), o);
    SyncProgress progress(c, ws);
    progress.start();
    WsStatus s;
    if (!stay) {
      s = ws.sync_once(std::chrono::seconds(timeout_s));
    } else {
      s = ws.start();
      if (s.ok()) s = stay_connected(c, ws, std::chrono::seconds(stay_s));
    }
    c.dispatch_events();
    progress.stop();
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
  const std::vector<std::string> args(argv + 1, argv + argc);
  try {
    cli::Options global({"db", "user", "token", "role", "utc-offset", "app-version"}, {"help"},
                        cli::Options::Repeat::kLastWins);
    global.stop_at_first_word();  // the command's own options are parsed by run()
    if (std::string e = global.parse(args); !e.empty()) throw UsageError{e};
    if (global.on("help") || (!global.words().empty() && global.words()[0] == "-h")) {
      print_help();
      return 0;
    }
    FieldClient::Options options;
    const std::string db = global.get("db");
    options.user = global.get("user");
    options.token = global.get("token");
    options.app_version = global.get("app-version");  // sent in the Hello: head office's sync health shows it
    if (global.has("role")) {
      auto r = fieldsync::schema::role_from_string(global.get("role"));
      if (!r) throw UsageError{"--role must be rep, manager or head_office"};
      options.role = *r;
    }
    std::string error;
    options.utc_offset_minutes = static_cast<int>(global.integer("utc-offset", 0, -24 * 60, 24 * 60, error));
    if (!error.empty()) throw UsageError{error};
    const std::vector<std::string>& words = global.words();  // COMMAND [SUBCOMMAND] [OPTIONS]
    if (words.empty()) throw UsageError{"missing command (see --help)"};
    // `COMMAND [SUBCOMMAND] --help`: that command's help, no replica needed.
    if (std::find_if(words.begin(), words.end(),
                     [](const std::string& w) { return w == "--help" || w == "-h"; }) != words.end()) {
      std::string topic = words[0];
      if (words.size() > 1 && words[1].rfind("-", 0) != 0 && !help_entries(topic + " " + words[1]).empty())
        topic += " " + words[1];
      const std::vector<const char*> entries = help_entries(topic);
      if (entries.empty()) throw UsageError{"unknown command '" + topic + "' (see --help)"};
      std::cout << "usage: fieldsync-rep --db FILE --user USER [global options] COMMAND [OPTIONS]\n";
      for (const char* e : entries) print_help_entry(e);
      return 0;
    }
    if (db.empty()) throw UsageError{"missing --db FILE"};
    if (options.user.empty()) throw UsageError{"missing --user USER"};
    const Command command = parse_command(words);  // bad usage opens no replica
    auto client = check(FieldClient::open(db, std::move(options)));
    return run(*client, command);
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
