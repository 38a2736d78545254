// CSV per RFC 4180, by hand: quoted fields, doubled quotes, line breaks inside quotes, CRLF or
// LF (or a lone CR) between records. Lenient where the RFC is strict and the intent is clear
// (a quote inside an unquoted field is kept as a character).
#include "ingest/internal.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <deque>

namespace chimera::ingest::detail {

namespace {

bool is_units_row(const Table& t, std::size_t first, std::size_t count) {
  bool any_known = false;
  for (std::size_t c = 0; c < count; ++c) {
    auto cell = trim(t.cells[first + c]);
    if (cell.empty()) continue;
    double v;
    std::string_view u;
    if (parse_number(cell, &v, &u)) return false;
    if (cell.size() > 16 || cell.find(' ') != std::string_view::npos ||
        cell.find_first_of("0123456789") != std::string_view::npos)
      return false;
    if (unit_from_text(cell).known) any_known = true;
  }
  return any_known;
}

}  // namespace

void parse_csv(std::string_view text, ParseJob& job) {
  const std::size_t max_field = job.options->max_line_bytes;
  Table t;
  std::deque<std::string> unescaped;  // fields that needed their quotes undoubled
  t.cells.reserve(text.size() / 8 + 16);
  t.rows.reserve(text.size() / 64 + 4);

  const char* p = text.data();
  const char* const end = p + text.size();
  int line = 1;
  while (p < end) {
    const int row_line = line;
    const auto first = static_cast<std::uint32_t>(t.cells.size());
    bool truncated = false;
    for (;;) {
      std::string_view field;
      if (p < end && *p == '"') {
        const int field_line = line;
        const char* start = ++p;
        std::string* buf = nullptr;
        for (;;) {
          const char* q =
              static_cast<const char*>(std::memchr(p, '"', static_cast<std::size_t>(end - p)));
          if (q == nullptr) {
            job.error(field_line,
                      fmt::format("unterminated quoted field starting at line {}: the file ends "
                                  "inside quotes (truncated?); the rows before it were kept",
                                  field_line),
                      false);
            truncated = true;
            break;
          }
          line += static_cast<int>(std::count(p, q, '\n'));
          if (q + 1 < end && q[1] == '"') {
            if (buf == nullptr) {
              buf = &unescaped.emplace_back(start, static_cast<std::size_t>(q + 1 - start));
            } else {
              buf->append(p, static_cast<std::size_t>(q + 1 - p));
            }
            p = q + 2;
            continue;
          }
          if (buf != nullptr) {
            buf->append(p, static_cast<std::size_t>(q - p));
            field = *buf;
          } else {
            field = std::string_view(start, static_cast<std::size_t>(q - start));
          }
          p = q + 1;
          break;
        }
        if (truncated) break;
        // Text after the closing quote ("abc"def) is kept, as most readers do.
        if (p < end && *p != ',' && *p != '\n' && *p != '\r') {
          const char* s = p;
          while (p < end && *p != ',' && *p != '\n' && *p != '\r') ++p;
          auto& joined = unescaped.emplace_back(field);
          joined.append(s, static_cast<std::size_t>(p - s));
          field = joined;
        }
      } else {
        const char* s = p;
        while (p < end && *p != ',' && *p != '\n' && *p != '\r') ++p;
        field = std::string_view(s, static_cast<std::size_t>(p - s));
      }
      if (field.size() > max_field) {
        job.error(row_line,
                  fmt::format("field at line {} is {} bytes, over the {}-byte limit "
                              "(IngestOptions::max_line_bytes)",
                              row_line, field.size(), max_field),
                  true);
        return;
      }
      t.cells.push_back(field);
      if (p < end && *p == ',') {
        ++p;
        if (p == end) t.cells.emplace_back();  // "a,b," at the very end: an empty last field
        continue;
      }
      if (p < end && *p == '\r') {
        ++p;
        if (p < end && *p == '\n') ++p;
        ++line;
      } else if (p < end && *p == '\n') {
        ++p;
        ++line;
      }
      break;
    }
    if (truncated) {
      t.cells.resize(first);
      break;
    }
    const auto count = static_cast<std::uint32_t>(t.cells.size() - first);
    if (count == 1 && t.cells[first].empty()) {  // a blank line
      t.cells.pop_back();
      continue;
    }
    t.rows.push_back(Table::Row{first, count, row_line});
  }
  if (t.rows.empty()) return;

  // The header: the first row, unless every cell of it is a number (then there is none).
  auto head = t.rows.front();
  bool headerless = true;
  for (std::uint32_t c = 0; c < head.count && headerless; ++c) {
    double v;
    std::string_view u;
    headerless = parse_number(t.cells[head.first + c], &v, &u);
  }
  std::size_t skip = 0;
  if (headerless) {
    for (std::uint32_t c = 0; c < head.count; ++c)
      t.header.push_back(job.arena().intern(fmt::format("column_{}", c + 1)));
  } else {
    t.header.assign(t.cells.begin() + head.first, t.cells.begin() + head.first + head.count);
    skip = 1;
    // Nsight Compute writes a row of units under the header.
    if (t.rows.size() > 2 && is_units_row(t, t.rows[1].first, t.rows[1].count)) {
      t.units.assign(t.cells.begin() + t.rows[1].first,
                     t.cells.begin() + t.rows[1].first + t.rows[1].count);
      skip = 2;
    }
  }
  t.rows.erase(t.rows.begin(), t.rows.begin() + static_cast<std::ptrdiff_t>(skip));
  emit_table(t, nullptr, job);
}

}  // namespace chimera::ingest::detail
