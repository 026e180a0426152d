// RFC 4180 CSV, written in bounded chunks to a sink (reports.h, export_csv). Internal to the server.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

namespace fieldsync::server {

class CsvWriter {
 public:
  using Sink = std::function<bool(std::string_view chunk)>;
  // Hands the sink at most about chunk_bytes at a time (a single cell longer than that goes in one piece).
  CsvWriter(const Sink& sink, size_t chunk_bytes);

  // The UTF-8 byte order mark (first, before any cell).
  void bom();
  // A text cell: quoted when it holds a quote, comma, CR or LF; a leading = + - @ tab or CR gets an
  // apostrophe in front (then quoted), so a spreadsheet shows it instead of evaluating it.
  void text(std::string_view v);
  // Numbers are ours, never user text: written as they are (a negative longitude stays a number).
  void integer(int64_t v);
  void real(double v);
  // A number SQLite already wrote as text (a REAL column): passed through as it is.
  void raw_number(std::string_view v);
  void empty();
  void end_row();
  // Hands over what is buffered. False once the sink has refused a chunk: the writer then drops everything.
  bool flush();
  bool stopped() const { return stopped_; }

 private:
  void separator();
  void maybe_flush();
  const Sink& sink_;
  size_t chunk_bytes_;
  std::string buf_;
  bool row_started_ = false;
  bool stopped_ = false;
};

// The neutralised, quoted form of one text cell (what text() appends).
std::string csv_cell(std::string_view v);

}  // namespace fieldsync::server
