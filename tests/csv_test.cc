// The CSV writer of the exports (server/src/csv.h): RFC 4180 quoting, formula neutralisation, BOM, chunks.
#include "csv.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace fieldsync::server {
namespace {

TEST(Csv, QuotesOnlyWhatNeedsIt) {
  EXPECT_EQ(csv_cell("plain text"), "plain text");
  EXPECT_EQ(csv_cell(""), "");
  EXPECT_EQ(csv_cell("a,b"), "\"a,b\"");
  EXPECT_EQ(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
  EXPECT_EQ(csv_cell("two\nlines"), "\"two\nlines\"");
  EXPECT_EQ(csv_cell("cr\rhere"), "\"cr\rhere\"");
  EXPECT_EQ(csv_cell("Müller 北京"), "Müller 北京") << "UTF-8 passes through";
}

TEST(Csv, FormulaCellsAreNeutralised) {
  EXPECT_EQ(csv_cell("=1+1"), "\"'=1+1\"");
  EXPECT_EQ(csv_cell("+49 30 1234"), "\"'+49 30 1234\"");
  EXPECT_EQ(csv_cell("-2+3"), "\"'-2+3\"");
  EXPECT_EQ(csv_cell("@SUM(A1)"), "\"'@SUM(A1)\"");
  EXPECT_EQ(csv_cell("\tx"), "\"'\tx\"");
  EXPECT_EQ(csv_cell("\rx"), "\"'\rx\"");
  EXPECT_EQ(csv_cell("=HYPERLINK(\"http://x\")"), "\"'=HYPERLINK(\"\"http://x\"\")\"");
  EXPECT_EQ(csv_cell("a=b"), "a=b") << "only the first character matters";
}

TEST(Csv, RowsNumbersBomAndChunks) {
  std::vector<std::string> chunks;
  CsvWriter::Sink sink = [&](std::string_view c) {
    chunks.emplace_back(c);
    return true;
  };
  CsvWriter w(sink, 16);
  w.bom();
  w.text("id");
  w.text("=x");
  w.integer(-5);
  w.raw_number("-3.75");
  w.empty();
  w.end_row();
  w.text("second");
  w.end_row();
  EXPECT_TRUE(w.flush());
  std::string all;
  for (const std::string& c : chunks) all += c;
  EXPECT_EQ(all, "\xEF\xBB\xBFid,\"'=x\",-5,-3.75,\r\nsecond\r\n") << "numbers are ours: never neutralised";
  EXPECT_EQ(chunks.size(), 2u) << "the first row passed 16 bytes and went at once";
}

TEST(Csv, ARefusingSinkStopsTheWriter) {
  int calls = 0;
  CsvWriter::Sink sink = [&](std::string_view) {
    ++calls;
    return false;
  };
  CsvWriter w(sink, 4);
  w.text("hello");
  w.end_row();
  EXPECT_TRUE(w.stopped());
  w.text("more");
  w.end_row();
  EXPECT_FALSE(w.flush());
  EXPECT_EQ(calls, 1);
}

}  // namespace
}  // namespace fieldsync::server
