// Rows of a table (a CSV file, a Markdown table) into records: which columns are context and
// which are metrics, decided from the header names and then from the cells.
#include "ingest/internal.hpp"

#include <boost/json.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <utility>

namespace chimera::ingest::detail {

namespace {

enum class Use : std::uint8_t { metric, main, extra, error, success, options, ignore };

struct Column {
  NameInfo info;
  Use use = Use::ignore;
  std::string_view key;     // interned normalized key (context extras, error metric names)
  std::string_view origin;  // interned header as written
  UnitConv header_unit;     // from the units row when the name has none
  bool has_metric = false;
  Metric metric;  // for cells without their own unit
  std::vector<std::pair<std::string, Metric>> by_cell_unit;

  const Metric& metric_for(std::string_view cell_unit, Arena& arena) {
    if (cell_unit.empty()) {
      if (!has_metric) {
        metric = intern_metric(finalize_metric(info, header_unit), arena);
        has_metric = true;
      }
      return metric;
    }
    for (const auto& [u, m] : by_cell_unit)
      if (u == cell_unit) return m;
    auto m = intern_metric(finalize_metric(info, unit_from_text(arena.intern(cell_unit))), arena);
    by_cell_unit.emplace_back(std::string(cell_unit), m);
    return by_cell_unit.back().second;
  }
};

// Settings written as a JSON object in one cell: {"temperature":0.3,"top_p":0.9}.
using Settings = std::vector<std::pair<NameInfo, std::string>>;

Settings parse_settings(std::string_view cell) {
  Settings out;
  cell = trim(cell);
  if (cell.size() < 2 || cell.front() != '{') return out;
  boost::system::error_code ec;
  auto value = boost::json::parse(boost::json::string_view(cell.data(), cell.size()), ec);
  if (ec || !value.is_object()) return out;
  for (const auto& [k, v] : value.as_object()) {
    std::string text;
    if (v.is_string()) {
      text = std::string(v.as_string().c_str(), v.as_string().size());
    } else if (v.is_number()) {
      text = boost::json::serialize(v);
    } else if (v.is_bool()) {
      text = v.as_bool() ? "true" : "false";
    } else {
      continue;
    }
    out.emplace_back(classify_name(std::string_view(k.data(), k.size())), std::move(text));
  }
  return out;
}

// A number, or a number followed by a note in parentheses: "1.62s (first prompt: 7.84s)".
bool cell_number(std::string_view cell, double* value, std::string_view* unit) {
  if (parse_number(cell, value, unit)) return true;
  cell = trim(cell);
  if (cell.empty() || cell.back() != ')') return false;
  auto open = cell.find('(');
  return open != std::string_view::npos && open > 0 &&
         parse_number(cell.substr(0, open), value, unit);
}

bool is_label_header(std::string_view key) {
  static constexpr std::string_view kLabels[] = {
      "",           "metric", "metrics",   "measure", "measurement", "parameter",
      "parameters", "name",   "statistic", "stat",    "item",        "kpi",
      "quantity",   "figure", "setting",   "field"};
  for (auto l : kLabels)
    if (key == l) return true;
  return false;
}

bool is_value_header(std::string_view key) {
  return key == "value" || key == "values" || key == "result" || key == "results" ||
         key == "measured" || key == "observed";
}

// "| Metric | Value |" or "| Metric | Gemma3:latest | Llama3.1:8b |": names run down the first
// column and the other columns are values (one per model or configuration).
void emit_row_labelled(const Table& table, const Context* base, ParseJob& job) {
  Arena& arena = job.arena();
  const std::size_t ncols = table.header.size();
  // Rows that name a setting ("| num_ctx | 2048 |") give the whole table its context.
  Context shared = base != nullptr ? *base : Context{};
  for (const auto& row : table.rows) {
    if (row.count < 2) continue;
    const auto& info = classify_name(table.cells[row.first]);
    if (info.role == Role::context_main) {
      set_context(shared, info.field, table.cells[row.first + 1], arena);
    } else if (info.role == Role::context_extra && !info.key.empty()) {
      set_extra(shared, info.key, table.cells[row.first + 1], arena);
    }
  }
  // One context per value column.
  std::vector<const Context*> contexts(ncols, nullptr);
  std::vector<std::string> suffix(ncols);
  for (std::size_t c = 1; c < ncols; ++c) {
    Context ctx = shared;
    auto header = trim(table.header[c]);
    auto key = classify_name(header).key;
    if (auto model = model_like(header); !model.empty()) {
      set_context(ctx, Field::model, model, arena);
      ctx.quantization = {};
    } else if (is_label_header(key) || is_value_header(key)) {
      // The plain value.
    } else if (classify_name(header).generic) {
      suffix[c] = key;  // "| Metric | Mean | P95 |"
    } else {
      set_extra(ctx, "config", header, arena);
    }
    finish_context(ctx, arena);
    contexts[c] = arena.new_context(std::move(ctx));
  }
  std::vector<std::pair<std::string, Metric>> metrics;  // by label and cell unit
  for (const auto& row : table.rows) {
    ++job.out->rows;
    if (row.count < 2) continue;
    auto label = trim(table.cells[row.first]);
    if (label.empty()) continue;
    const auto& label_info = classify_name(label);
    if (label_info.role == Role::context_main || label_info.role == Role::context_extra) continue;
    auto origin = arena.intern(label);
    for (std::size_t c = 1; c < ncols && c < row.count; ++c) {
      auto cell = table.cells[row.first + c];
      if (is_missing(cell)) continue;
      double value = 0;
      std::string_view unit;
      if (!cell_number(cell, &value, &unit)) {
        if (looks_like_error(cell)) job.error_value(label_info.key, cell, contexts[c], row.line);
        continue;
      }
      std::string name =
          suffix[c].empty() ? std::string(label) : std::string(label) + " " + suffix[c];
      std::string cache_key = name + '\x1f' + std::string(unit);
      auto it = std::find_if(metrics.begin(), metrics.end(),
                             [&](const auto& m) { return m.first == cache_key; });
      if (it == metrics.end()) {
        NameInfo info = classify_name(name);
        if (info.role != Role::metric) {
          info.role = Role::metric;
          info.stem = info.key;
        }
        metrics.emplace_back(
            cache_key,
            intern_metric(finalize_metric(info, unit_from_text(arena.intern(unit))), arena));
        it = metrics.end() - 1;
      }
      job.record(it->second, value, contexts[c], origin, row.line);
    }
  }
}

// "| Metric | Value |" tables: the header's first column names labels and no row starts with a
// number.
bool is_row_labelled(const Table& table) {
  if (table.header.size() < 2 || table.rows.empty() ||
      !is_label_header(classify_name(table.header[0]).key))
    return false;
  for (const auto& row : table.rows) {
    double v;
    std::string_view u;
    if (row.count > 0 && parse_number(table.cells[row.first], &v, &u)) return false;
  }
  return true;
}

// A table with one configuration per row: the columns are classified once from the header and
// the cells, then each row becomes a context and that context's records.
class ColumnTableEmitter {
 public:
  ColumnTableEmitter(const Table& table, const Context* base, ParseJob& job)
      : table_(table),
        base_(base),
        job_(job),
        arena_(job.arena()),
        ncols_(table.header.size()),
        cols_(ncols_) {}

  void classify_columns() {
    for (std::size_t c = 0; c < ncols_; ++c) classify_column(c);
  }

  // A column named like a metric but holding only text is context (a name, a tone, a flag).
  void demote_text_metric_columns() {
    for (std::size_t c = 0; c < ncols_; ++c) {
      if (cols_[c].use != Use::metric) continue;
      if (has_number(c)) continue;  // one number makes it a metric column
      // No numbers: text (context), or only failures (kept: they become error values).
      bool text = false, failures = false;
      for (const auto& row : table_.rows) {
        if (c >= row.count) continue;
        auto cell = table_.cells[row.first + c];
        if (is_missing(cell)) continue;
        if (!looks_like_error(cell)) {
          text = true;
          break;
        }
        failures = true;
      }
      cols_[c].use = text ? Use::extra : (failures ? Use::metric : Use::ignore);
    }
  }

  // Room for the records and for each row context's extras, counted once per table.
  void reserve_room() {
    std::size_t metric_cols = 0;
    for (const auto& col : cols_) {
      metric_cols += col.use == Use::metric ? 1 : 0;
      // A settings cell ("num_gpu=80, temperature=0.6") holds a few extras.
      extra_room_ += col.use == Use::main || col.use == Use::extra ? 1 : 0;
      extra_room_ += col.use == Use::options ? 4 : 0;
    }
    job_.reserve_records(metric_cols * table_.rows.size());
  }

  void emit_rows() {
    for (const auto& row : table_.rows) {
      ++job_.out->rows;
      if (row.count != ncols_ && !only_trailing_empty(row)) {
        report_ragged(row);
        continue;
      }
      const Context* context = row_context(row);
      bool failed = report_failures(row, context);
      record_metrics(row, context, failed);
    }
  }

 private:
  std::string_view cell_at(const Table::Row& row, std::size_t c) const {
    return table_.cells[row.first + c];
  }

  void classify_column(std::size_t c) {
    auto& col = cols_[c];
    col.info = classify_name(table_.header[c]);
    col.key = arena_.intern(col.info.key.empty() ? fmt::format("column_{}", c + 1) : col.info.key);
    col.origin = arena_.intern(trim(table_.header[c]));
    if (c < table_.units.size()) {  // the units row wins over a unit guessed from the name
      col.header_unit = unit_from_text(arena_.intern(trim(table_.units[c])));
    }
    switch (col.info.role) {
      case Role::metric:
        col.use = Use::metric;
        break;
      case Role::context_main:
        col.use = Use::main;
        break;
      case Role::context_extra:
        col.use = Use::extra;
        break;
      case Role::error:
        col.use = Use::error;
        break;
      case Role::success:
        col.use = Use::success;
        break;
      case Role::options:
        col.use = Use::options;
        break;
      case Role::unit:
        col.use = Use::ignore;
        break;
    }
  }

  bool has_number(std::size_t c) const {
    for (const auto& row : table_.rows) {
      if (c >= row.count) continue;
      auto cell = table_.cells[row.first + c];
      double v;
      std::string_view u;
      if (!is_missing(cell) && parse_number(cell, &v, &u)) return true;
    }
    return false;
  }

  // A row longer than the header whose extra cells are all empty is read as if it fitted.
  bool only_trailing_empty(const Table::Row& row) const {
    bool trailing_empty = row.count > ncols_;
    for (std::size_t c = ncols_; trailing_empty && c < row.count; ++c)
      trailing_empty = trim(cell_at(row, c)).empty();
    return trailing_empty;
  }

  void report_ragged(const Table::Row& row) {
    job_.error(row.line,
               fmt::format("ragged row at line {}: {} fields where the header has {}; the row "
                           "was skipped",
                           row.line, row.count, ncols_),
               false);
  }

  const Settings& settings_for(std::string_view cell) {
    for (const auto& [k, s] : settings_cache_)
      if (k == cell) return s;
    settings_cache_.emplace_back(cell, parse_settings(cell));
    return settings_cache_.back().second;
  }

  const Context* row_context(const Table::Row& row) {
    // Room for the row's own extras first, so that set_extra never regrows the vector.
    Context ctx;
    ctx.extra.reserve((base_ != nullptr ? base_->extra.size() : 0) + extra_room_);
    if (base_ != nullptr) ctx = *base_;  // copy-assigned into the room above
    for (std::size_t c = 0; c < ncols_; ++c) {
      const auto& col = cols_[c];
      auto cell = cell_at(row, c);
      switch (col.use) {
        case Use::main:
          if (!is_missing(cell) && !set_context(ctx, col.info.field, cell, arena_))
            set_extra(ctx, col.key, cell, arena_);
          break;
        case Use::extra:
          if (!is_missing(cell)) set_extra(ctx, col.key, cell, arena_);
          break;
        case Use::options:
          for (const auto& [info, value] : settings_for(cell)) {
            if (info.role == Role::context_main) {
              if (!set_context(ctx, info.field, value, arena_))
                set_extra(ctx, info.key, value, arena_);
            } else {
              set_extra(ctx, info.key, value, arena_);
            }
          }
          break;
        default:
          break;
      }
    }
    // A row that names its own model drops a quantization taken from the section's model.
    if (base_ != nullptr && ctx.model != base_->model && ctx.quantization == base_->quantization)
      ctx.quantization = {};
    finish_context(ctx, arena_);
    return arena_.new_context(std::move(ctx));
  }

  // An error in an error or success column marks the row's numbers as placeholders.
  bool report_failures(const Table::Row& row, const Context* context) {
    bool failed = false;
    for (std::size_t c = 0; c < ncols_; ++c) {
      const auto& col = cols_[c];
      auto cell = trim(cell_at(row, c));
      if (col.use == Use::error && !benign_status(cell)) {
        job_.error_value(col.key, cell, context, row.line);
        failed = true;
      } else if (col.use == Use::success && !cell.empty() && falsy(cell)) {
        job_.error_value(col.key, fmt::format("{} = {}", col.origin, cell), context, row.line);
        failed = true;
      }
    }
    return failed;
  }

  void record_metrics(const Table::Row& row, const Context* context, bool failed) {
    for (std::size_t c = 0; c < ncols_; ++c) {
      auto& col = cols_[c];
      if (col.use != Use::metric) continue;
      auto cell = cell_at(row, c);
      if (is_missing(cell)) continue;
      double value = 0;
      std::string_view unit;
      if (cell_number(cell, &value, &unit)) {
        if (!failed)
          job_.record(col.metric_for(unit, arena_), value, context, col.origin, row.line);
      } else if (!failed && looks_like_error(cell)) {
        job_.error_value(col.key, cell, context, row.line);
      }
    }
  }

  const Table& table_;
  const Context* base_;
  ParseJob& job_;
  Arena& arena_;
  const std::size_t ncols_;
  std::vector<Column> cols_;
  std::vector<std::pair<std::string_view, Settings>> settings_cache_;
  std::size_t extra_room_ = 0;  // extras a row may add to its context (reserve_room())
};

}  // namespace

void emit_table(const Table& table, const Context* base, ParseJob& job) {
  if (is_row_labelled(table)) {
    emit_row_labelled(table, base, job);
    return;
  }
  ColumnTableEmitter emitter(table, base, job);
  emitter.classify_columns();
  emitter.demote_text_metric_columns();
  emitter.reserve_room();
  emitter.emit_rows();
}

}  // namespace chimera::ingest::detail
