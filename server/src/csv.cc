#include "csv.h"

#include <charconv>
#include <cstdio>

namespace fieldsync::server {
namespace {

// Characters that make a spreadsheet read a cell as a formula (OWASP's CSV injection list); tab and CR
// because some spreadsheets strip them before looking at the first character.
bool starts_formula(std::string_view v) {
  if (v.empty()) return false;
  switch (v.front()) {
    case '=':
    case '+':
    case '-':
    case '@':
    case '\t':
    case '\r':
      return true;
    default:
      return false;
  }
}

void append_cell(std::string& out, std::string_view v) {
  const bool formula = starts_formula(v);
  const bool quote = formula || v.find_first_of("\",\r\n") != std::string_view::npos;
  if (!quote) {
    out.append(v);
    return;
  }
  out += '"';
  if (formula) out += '\'';
  for (char c : v) {
    if (c == '"') out += '"';
    out += c;
  }
  out += '"';
}

}  // namespace

std::string csv_cell(std::string_view v) {
  std::string out;
  append_cell(out, v);
  return out;
}

CsvWriter::CsvWriter(const Sink& sink, size_t chunk_bytes) : sink_(sink), chunk_bytes_(chunk_bytes) {
  buf_.reserve(chunk_bytes_ + 256);
}

void CsvWriter::bom() {
  buf_ += "\xEF\xBB\xBF";
}

void CsvWriter::separator() {
  if (row_started_) buf_ += ',';
  row_started_ = true;
}

void CsvWriter::text(std::string_view v) {
  separator();
  append_cell(buf_, v);
}

void CsvWriter::integer(int64_t v) {
  separator();
  char tmp[24];
  auto r = std::to_chars(tmp, tmp + sizeof tmp, v);
  buf_.append(tmp, r.ptr);
}

void CsvWriter::real(double v) {
  separator();
  char tmp[32];
  // Shortest form that reads back as the same double, never an exponent for coordinates.
  auto r = std::to_chars(tmp, tmp + sizeof tmp, v);
  buf_.append(tmp, r.ptr);
}

void CsvWriter::raw_number(std::string_view v) {
  separator();
  buf_.append(v);
}

void CsvWriter::empty() {
  separator();
}

void CsvWriter::end_row() {
  buf_ += "\r\n";
  row_started_ = false;
  maybe_flush();
}

void CsvWriter::maybe_flush() {
  if (buf_.size() >= chunk_bytes_) (void)flush();
}

bool CsvWriter::flush() {
  if (stopped_) {
    buf_.clear();
    return false;
  }
  if (buf_.empty()) return true;
  if (!sink_(buf_)) stopped_ = true;
  buf_.clear();
  return !stopped_;
}

}  // namespace fieldsync::server
