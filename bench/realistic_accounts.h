// Deterministic accounts with realistic field values, ~262 bytes of values each (company name, street
// address, city, phone, e-mail, segment, territory, creator, one note): the record the wire-size and device
// figures of docs/PERFORMANCE.md are per. Values vary like a real customer list -- names, streets and numbers
// drawn from lists, digits random -- so that compression is measured on text that is neither random nor one
// repeated string. Header-only, shared by the benches.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "fieldsync/sync/change.h"

namespace fieldsync::bench {

struct AccountValues {
  std::string name, address, city, phone, email, segment, notes;
  size_t bytes(const std::string& territory, const std::string& user) const {
    return name.size() + address.size() + city.size() + phone.size() + email.size() + segment.size() +
           notes.size() + territory.size() + user.size();
  }
};

namespace account_detail {

inline uint64_t mix(uint64_t x) {  // splitmix64
  x += 0x9e37'79b9'7f4a'7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58'476d'1ce4'e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d0'49bb'1331'11ebULL;
  return x ^ (x >> 31);
}

template <size_t N>
const char* pick(const char* const (&list)[N], uint64_t& state) {
  state = mix(state);
  return list[state % N];
}

inline uint64_t number(uint64_t& state, uint64_t below) {
  state = mix(state);
  return state % below;
}

inline std::string lower_ascii(std::string s) {
  for (char& c : s)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return s;
}

}  // namespace account_detail

// The values of account number `serial` (the same serial always gives the same values).
inline AccountValues account_values(uint64_t serial) {
  using namespace account_detail;
  static const char* const kTrades[] = {"Baeckerei",    "Metzgerei",    "Getraenke",      "Elektro",
                                        "Sanitaer",     "Blumen",       "Apotheke",       "Autohaus",
                                        "Buchhandlung", "Gaststaette",  "Hotel",          "Optik",
                                        "Schreinerei",  "Malerbetrieb", "Zahnarztpraxis", "Reisebuero",
                                        "Feinkost",     "Weinhandel",   "Fahrradladen",   "Dachdeckerei"};
  static const char* const kNames[] = {
      "Mueller",   "Schmidt",    "Schneider", "Fischer", "Weber",   "Meyer",    "Wagner",    "Becker",
      "Schulz",    "Hoffmann",   "Koch",      "Richter", "Klein",   "Wolf",     "Schroeder", "Neumann",
      "Schwarz",   "Zimmermann", "Braun",     "Krueger", "Hofmann", "Hartmann", "Lange",     "Schmitt",
      "Werner",    "Krause",     "Meier",     "Lehmann", "Schmid",  "Schulze",  "Maier",     "Koehler",
      "Herrmann",  "Koenig",     "Walter",    "Mayer",   "Huber",   "Kaiser",   "Fuchs",     "Peters",
      "Lang",      "Scholz",     "Moeller",   "Weiss",   "Jung",    "Hahn",     "Schubert",  "Vogel",
      "Friedrich", "Keller",     "Guenther",  "Frank",   "Berger",  "Winkler",  "Roth",      "Beck",
      "Lorenz",    "Baumann",    "Franke",    "Albrecht"};
  // Family names are built from two parts (600 of them), so that a page of 500 accounts does not repeat a
  // short list.
  static const char* const kNameStarts[] = {
      "Ober", "Unter", "Hoch", "Nieder", "Alt",  "Neu",   "Gross", "Klein", "Stein", "Bach",
      "Berg", "Wald",  "Sonn", "Eich",   "Lind", "Brand", "Fried", "Wolf",  "Hart",  "Reich",
      "Kalt", "Warm",  "Ross", "Kirch",  "Mark", "Hof",   "Bruck", "Feld",  "Holz",  "Dorn"};
  static const char* const kNameEnds[] = {"mann",  "er",   "hof",    "bauer",  "meier",   "huber", "berger",
                                          "inger", "ner",  "ler",    "mayr",   "hardt",   "wald",  "stein",
                                          "brink", "kamp", "hausen", "rieder", "lechner", "moser"};
  static const char* const kForms[] = {"GmbH", "GmbH & Co. KG", "KG", "e.K.", "OHG", "AG", "UG", "GbR"};
  static const char* const kStreets[] = {"Haupt",  "Bahnhof", "Garten",  "Schul",    "Dorf",      "Berg",
                                         "Kirch",  "Wald",    "Ring",    "Linden",   "Birken",    "Friedhof",
                                         "Post",   "Mozart",  "Goethe",  "Schiller", "Industrie", "Muehlen",
                                         "Rosen",  "Eichen",  "Markt",   "Feld",     "Wiesen",    "Tal",
                                         "Sonnen", "Blumen",  "Brunnen", "Burg",     "Kastanien", "Amsel"};
  static const char* const kStreetKinds[] = {"strasse", "weg", "allee", "platz", "gasse", "ring"};
  static const char* const kCities[] = {
      "Hamburg",    "Bremen",   "Hannover",  "Kiel",   "Luebeck",    "Rostock", "Schwerin",  "Oldenburg",
      "Osnabrueck", "Muenster", "Bielefeld", "Kassel", "Goettingen", "Celle",   "Lueneburg", "Flensburg",
      "Cuxhaven",   "Stade",    "Verden",    "Soltau", "Uelzen",     "Husum",   "Itzehoe",   "Wismar"};
  static const char* const kDepts[] = {"einkauf", "info", "kontakt", "buero", "bestellung", "office"};
  static const char* const kPeople[] = {"Ms Weber", "Mr Krause", "the owner",   "Ms Lange", "the buyer",
                                        "Mr Hahn",  "Ms Vogel",  "the manager", "Mr Roth"};
  static const char* const kTopics[] = {"the spring range",
                                        "delivery times",
                                        "the new price list",
                                        "a display stand",
                                        "payment terms",
                                        "the summer promotion",
                                        "returns of damaged goods",
                                        "a larger order for the autumn"};
  static const char* const kAsks[] = {"wants samples of", "asks for a quote on", "may reorder",
                                      "complains about the price of", "is interested in"};
  static const char* const kWhen[] = {"by Friday", "next week", "before the holidays", "end of month",
                                      "after the trade fair"};
  static const char* const kBring[] = {"the new catalogue",   "price list 2026",    "two sample boxes",
                                       "the signed contract", "credit note 17",     "the shelf plan",
                                       "a demo unit",         "the invoice copies", "brochures for the shop",
                                       "the tasting set"};
  uint64_t s = mix(serial * 0x2545'f491'4f6c'dd1dULL + 17);
  AccountValues v;
  const std::string trade = pick(kTrades, s);
  const std::string family = number(s, 2) == 0 ? std::string(pick(kNames, s))
                                               : std::string(pick(kNameStarts, s)) + pick(kNameEnds, s);
  v.name = trade + " " + family;
  if (number(s, 3) == 0) v.name += std::string(" & ") + pick(kNameStarts, s) + pick(kNameEnds, s);
  v.name += std::string(" ") + pick(kForms, s);
  v.city = pick(kCities, s);
  char buf[160];
  std::snprintf(buf, sizeof buf, "%s%s %u, %05u %s", pick(kStreets, s), pick(kStreetKinds, s),
                static_cast<unsigned>(1 + number(s, 180)), static_cast<unsigned>(10000 + number(s, 89999)),
                v.city.c_str());
  v.address = buf;
  std::snprintf(buf, sizeof buf, "+49 %u %07u", static_cast<unsigned>(30 + number(s, 9900)),
                static_cast<unsigned>(number(s, 10'000'000)));
  v.phone = buf;
  v.email = std::string(pick(kDepts, s)) + "@" + lower_ascii(family) + "-" + lower_ascii(trade) + ".example";
  static const char* const kSegments[] = {"a", "b", "c"};
  v.segment = pick(kSegments, s);
  std::snprintf(buf, sizeof buf, "On 2026-%02u-%02u met %s about %s; %s %u items %s.",
                static_cast<unsigned>(1 + number(s, 12)), static_cast<unsigned>(1 + number(s, 28)),
                pick(kPeople, s), pick(kTopics, s), pick(kAsks, s), static_cast<unsigned>(2 + number(s, 40)),
                pick(kWhen, s));
  v.notes = buf;
  std::snprintf(buf, sizeof buf, " Next: week %u, bring %s.", static_cast<unsigned>(1 + number(s, 52)),
                pick(kBring, s));
  v.notes += buf;
  return v;
}

// Field ids of the account entity (schema/src/model.cc).
namespace account_fields {
inline constexpr uint16_t kName = 1, kTerritory = 2, kAddress = 3, kCity = 4, kPhone = 5, kEmail = 6,
                          kSegment = 7, kNotes = 9, kCreatedBy = 10;
}

// The changes a device writes to create the account: create, one set per field, the note as an append, each
// with its own clock tick from `hlc` on (as SyncClient::write stamps them).
inline std::vector<Change> account_changes(const RecordId& id, const AccountValues& v,
                                           const std::string& territory, const std::string& user, Hlc hlc,
                                           NodeId node) {
  using namespace account_fields;
  std::vector<Change> out;
  auto add = [&](ChangeOp op, uint16_t field, std::string value) {
    Change c;
    c.op = op;
    c.entity = EntityId::kAccount;
    c.record = id;
    c.field = field;
    if (op != ChangeOp::kCreate) c.value = Value::text(std::move(value));
    c.version = Version{hlc++, node};
    out.push_back(std::move(c));
  };
  add(ChangeOp::kCreate, 0, {});
  add(ChangeOp::kSet, kName, v.name);
  add(ChangeOp::kSet, kTerritory, territory);
  add(ChangeOp::kSet, kAddress, v.address);
  add(ChangeOp::kSet, kCity, v.city);
  add(ChangeOp::kSet, kPhone, v.phone);
  add(ChangeOp::kSet, kEmail, v.email);
  add(ChangeOp::kSet, kSegment, v.segment);
  add(ChangeOp::kAppend, kNotes, v.notes);
  add(ChangeOp::kSet, kCreatedBy, user);
  return out;
}

// The account as the server holds it once those changes are applied (what a bootstrap page carries).
inline RecordState account_state(const RecordId& id, const AccountValues& v, const std::string& territory,
                                 const std::string& user, Hlc hlc, NodeId node) {
  using namespace account_fields;
  RecordState r;
  r.entity = EntityId::kAccount;
  r.id = id;
  r.created = Version{hlc, node};
  auto put = [&](uint16_t field, std::string value) {
    FieldState f;
    f.field = field;
    f.version = Version{++hlc, node};
    f.user = user;
    if (field == kNotes) f.fragments.push_back(Fragment{f.version, user, value});
    f.value = Value::text(std::move(value));
    r.fields.push_back(std::move(f));
  };
  put(kName, v.name);
  put(kTerritory, territory);
  put(kAddress, v.address);
  put(kCity, v.city);
  put(kPhone, v.phone);
  put(kEmail, v.email);
  put(kSegment, v.segment);
  put(kNotes, v.notes);
  put(kCreatedBy, user);
  return r;
}

}  // namespace fieldsync::bench
