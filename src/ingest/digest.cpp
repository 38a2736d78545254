// The digest: statistics per configuration, best and worst configurations, errors, written as
// blocks with priorities and fitted into the token budget by dropping the least important.
#include "ingest/internal.hpp"

#include <chimera/ingest/digest.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <unordered_map>

namespace chimera::ingest {

std::size_t estimate_tokens(std::string_view text) {
  std::size_t pieces = 0;
  std::size_t i = 0;
  const std::size_t n = text.size();
  auto letter = [](unsigned char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); };
  auto digit = [](unsigned char c) { return c >= '0' && c <= '9'; };
  while (i < n) {
    auto c = static_cast<unsigned char>(text[i]);
    if (letter(c)) {
      std::size_t j = i;
      while (j < n && letter(static_cast<unsigned char>(text[j]))) ++j;
      pieces += (j - i + 5) / 6;
      i = j;
    } else if (digit(c)) {
      std::size_t j = i;
      while (j < n && digit(static_cast<unsigned char>(text[j]))) ++j;
      pieces += (j - i + 2) / 3;
      i = j;
    } else if (c == ' ' || c == '\t' || c == '\r' || (c >= 0x80 && c < 0xC0)) {
      ++i;  // spaces merge with the next piece; a UTF-8 continuation byte is part of a character
    } else {
      ++pieces;  // punctuation, line breaks, other characters
      ++i;
    }
  }
  return std::max(pieces, (n + 3) / 4);
}

namespace {

std::string human_bytes(std::uint64_t b) {
  if (b < 1024) return fmt::format("{} B", b);
  if (b < std::uint64_t{1024} * 1024)
    return fmt::format("{:.1f} KB", static_cast<double>(b) / 1024.0);
  if (b < 1024ull * 1024 * 1024)
    return fmt::format("{:.1f} MB", static_cast<double>(b) / 1048576.0);
  return fmt::format("{:.2f} GB", static_cast<double>(b) / 1073741824.0);
}

std::string num(double v) {
  if (v == 0) return "0";
  double a = std::fabs(v);
  if (a >= 1e6 || a < 1e-3) return fmt::format("{:.3g}", v);
  if (a >= 1000) return fmt::format("{:.0f}", v);
  return fmt::format("{:.4g}", v);
}

double lower_median(std::vector<double> v) {
  if (v.empty()) return 0;
  auto mid = v.begin() + static_cast<std::ptrdiff_t>((v.size() - 1) / 2);
  std::nth_element(v.begin(), mid, v.end());
  return *mid;
}

std::string short_label(const Context& c) {
  std::string out;
  auto add = [&](std::string_view k, std::string_view v) {
    if (v.empty()) return;
    if (!out.empty()) out += ' ';
    if (!k.empty()) {
      out += k;
      out += '=';
    }
    out += v;
  };
  add("", c.model);
  if (!c.quantization.empty() && c.model.find(c.quantization) == std::string_view::npos)
    add("quant", c.quantization);
  add("num_gpu", c.num_gpu);
  add("num_ctx", c.num_ctx);
  add("temp", c.temperature);
  static constexpr std::string_view kParams[] = {
      "top_p",      "top_k",       "repeat_penalty", "num_predict", "num_batch", "num_thread",
      "batch_size", "concurrency", "parallel",       "backend",     "config"};
  for (auto k : kParams) add(k, c.find(k));
  return out;
}

struct MetricAcc {
  MetricKind kind = MetricKind::other;
  std::vector<double> values;
};

struct FigureAcc {
  std::vector<double> values;
  std::string source_file;
  int line = 0;
};

struct Group {
  std::string key;
  std::string label;
  std::size_t records = 0;
  std::map<std::pair<std::string_view, std::string_view>, MetricAcc> metrics;
  FigureAcc throughput, ttft;
  bool main = false;       // has throughput or TTFT values
  bool has_model = false;  // the configuration names a model
};

struct Block {
  int section = 0;  // order in the text
  std::size_t order = 0;
  int priority = 0;  // lower is kept first
  std::size_t rank = 0;
  std::string text;
  std::string category;  // what to call it when dropped
  std::size_t items = 1;
  int depends_on = -1;  // index of a block that must be kept for this one to make sense
  bool kept = false;
};

ConfigFigure figure_of(const Group& g, const FigureAcc& acc, std::string unit) {
  ConfigFigure f;
  f.config = g.key;
  f.label = g.label;
  f.unit = std::move(unit);
  f.median = lower_median(acc.values);
  f.min = *std::min_element(acc.values.begin(), acc.values.end());
  f.max = *std::max_element(acc.values.begin(), acc.values.end());
  f.count = acc.values.size();
  f.source_file = acc.source_file;
  f.line = acc.line;
  return f;
}

// Best `n` (best first) and worst `n` not among the best (worst first).
void rank_figures(std::vector<ConfigFigure> all, bool higher_better, std::size_t n,
                  std::vector<ConfigFigure>* best, std::vector<ConfigFigure>* worst) {
  std::sort(all.begin(), all.end(), [&](const ConfigFigure& a, const ConfigFigure& b) {
    if (a.median != b.median) return higher_better ? a.median > b.median : a.median < b.median;
    return a.config < b.config;
  });
  std::size_t nb = std::min(n, all.size());
  best->assign(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(nb));
  std::size_t nw = std::min(n, all.size() - nb);
  worst->assign(all.rbegin(), all.rbegin() + static_cast<std::ptrdiff_t>(nw));
}

std::string relative_of(const IngestResult& r, const std::string& path) {
  for (const auto& f : r.files)
    if (f.path == path) return f.relative_path;
  return path;
}

// Writes one digest in phases that share the groups, their order and the blocks: gather the
// records into configuration groups, rank their figures, turn everything into blocks with
// priorities, then fit the blocks into the token budget.
class DigestWriter {
 public:
  DigestWriter(const IngestResult& result, const DigestOptions& options)
      : result_(result), options_(options) {
    digest_.token_budget = options.token_budget;
  }

  // ---- gather ----
  void gather_groups() {
    for (const auto& r : result_.records) add_record(group_for(r), r);
  }

  // Groups with throughput or TTFT first, then by size, then by name.
  void order_groups() {
    order_.resize(groups_.size());
    for (std::size_t i = 0; i < order_.size(); ++i) order_[i] = i;
    std::sort(order_.begin(), order_.end(), [&](std::size_t a, std::size_t b) {
      const auto& ga = groups_[a];
      const auto& gb = groups_[b];
      if (ga.main != gb.main) return ga.main;
      if (ga.has_model != gb.has_model) return ga.has_model;
      if (ga.records != gb.records) return ga.records > gb.records;
      return ga.key < gb.key;
    });
  }

  // ---- structured figures ----
  void rank_configurations() {
    for (auto i : order_) {
      const auto& g = groups_[i];
      if (!g.throughput.values.empty())
        throughput_.push_back(figure_of(g, g.throughput, "tokens/s"));
      if (!g.ttft.values.empty()) ttft_.push_back(figure_of(g, g.ttft, "ms"));
    }
    rank_figures(throughput_, true, options_.top_n, &digest_.best_throughput,
                 &digest_.worst_throughput);
    rank_figures(ttft_, false, options_.top_n, &digest_.best_ttft, &digest_.worst_ttft);
  }

  void collect_stats() {
    for (auto i : order_) {
      const auto& g = groups_[i];
      std::vector<MetricStats> gs;
      for (const auto& [key, acc] : g.metrics) {
        MetricStats s;
        s.group = g.label;
        s.metric = std::string(key.first);
        s.unit = std::string(key.second);
        s.kind = acc.kind;
        s.count = acc.values.size();
        s.min = *std::min_element(acc.values.begin(), acc.values.end());
        s.max = *std::max_element(acc.values.begin(), acc.values.end());
        s.median = lower_median(acc.values);
        gs.push_back(std::move(s));
      }
      std::stable_sort(gs.begin(), gs.end(), [](const MetricStats& a, const MetricStats& b) {
        if (a.kind != b.kind) return a.kind < b.kind;
        return a.metric < b.metric;
      });
      for (auto& s : gs) digest_.stats.push_back(std::move(s));
    }
  }

  // ---- blocks ----
  void add_header_block() {
    std::string h = "# Benchmark data digest\n";
    h += fmt::format("Files: {} ({})", result_.files.size(), human_bytes(result_.total_bytes));
    bool first = true;
    for (auto t : {FileType::csv, FileType::json, FileType::markdown, FileType::text}) {
      auto n = result_.file_count(t);
      if (n == 0) continue;
      h += fmt::format("{} {} {} ({})", first ? ":" : ",", to_string(t), n,
                       human_bytes(result_.file_bytes(t)));
      first = false;
    }
    std::size_t with_values = 0, skipped = 0;
    for (const auto& f : result_.files) {
      if (f.records > 0) ++with_values;
      if (!f.error.empty()) ++skipped;
    }
    h += fmt::format(
        "\nValues: {} from {} files in {} configuration groups; error values: {}; "
        "file errors: {} ({} files unreadable)\n",
        result_.records.size(), with_values, groups_.size(), result_.error_values.size(),
        result_.errors.size(), skipped);
    add(0, 0, 0, std::move(h), "header");
  }

  void add_best_worst_blocks() {
    if (throughput_.empty() && ttft_.empty()) return;
    int title = add(1, 1, 0, "## Best and worst configurations (median per configuration)\n",
                    "best/worst", 0);
    if (!throughput_.empty())
      add_figures("Throughput, tokens/s, higher is better:\n", digest_.best_throughput,
                  digest_.worst_throughput, 1, title);
    if (!ttft_.empty())
      add_figures("TTFT, ms, lower is better:\n", digest_.best_ttft, digest_.worst_ttft, 2, title);
  }

  // Errors and anomalies.
  void add_errors_title() {
    if (result_.errors.empty() && result_.error_values.empty()) return;
    errors_title_ = add(2, 2, 0,
                        fmt::format("## Errors and anomalies\nError values (failed measurements "
                                    "kept as text): {}; file errors: {}\n",
                                    result_.error_values.size(), result_.errors.size()),
                        "errors summary");
  }

  void add_file_error_blocks() {
    std::size_t k = 0;
    for (const auto& e : result_.errors) {
      std::string where = relative_of(result_, e.path);
      std::string line = e.line > 0 ? fmt::format(":{}", e.line) : std::string();
      std::string reason = e.reason.size() > 160
                               ? std::string(chimera::text::utf8_prefix(e.reason, 157)) + "..."
                               : e.reason;
      add(2, k < 5 ? 2 : 7, 100 + k, fmt::format("- file error {}{}: {}\n", where, line, reason),
          "file errors", 1, errors_title_);
      ++k;
    }
  }

  void add_error_message_blocks() {
    struct ErrAcc {
      std::size_t count = 0;
      std::set<std::uint32_t> files;
      std::string first;
    };
    std::map<std::string, ErrAcc> by_text;
    for (const auto& e : result_.error_values) {
      std::string t(chimera::text::utf8_prefix(e.text, 72));
      auto& acc = by_text[t];
      if (acc.count == 0)
        acc.first = fmt::format("{}:{}", result_.files[e.file].relative_path, e.line);
      ++acc.count;
      acc.files.insert(e.file);
    }
    std::vector<std::pair<std::string, ErrAcc>> sorted(by_text.begin(), by_text.end());
    std::stable_sort(sorted.begin(), sorted.end(),
                     [](const auto& a, const auto& b) { return a.second.count > b.second.count; });
    std::size_t k = 0;
    for (const auto& [t, acc] : sorted) {
      add(2, k < 5 ? 2 : 5, k,
          fmt::format("- {}x \"{}\" ({} files; first {})\n", acc.count, t, acc.files.size(),
                      acc.first),
          "error messages", 1, errors_title_);
      ++k;
    }
  }

  void add_outlier_blocks() {
    struct Outlier {
      double ratio;
      std::string text;
    };
    std::vector<Outlier> outliers;
    for (auto i : order_) {
      const auto& g = groups_[i];
      for (const auto& [key, acc] : g.metrics) {
        if (acc.kind != MetricKind::ttft && acc.kind != MetricKind::time) continue;
        if (acc.values.size() < 3) continue;
        double med = lower_median(acc.values);
        double mx = *std::max_element(acc.values.begin(), acc.values.end());
        if (med > 0 && mx > 10 * med)
          outliers.push_back(
              {mx / med,
               fmt::format("- outlier: {} max {} vs median {} {} in [{}] (n={})\n", key.first,
                           num(mx), num(med), key.second, g.label, acc.values.size())});
      }
    }
    std::stable_sort(outliers.begin(), outliers.end(),
                     [](const Outlier& a, const Outlier& b) { return a.ratio > b.ratio; });
    if (!outliers.empty() && errors_title_ < 0)
      errors_title_ = add(2, 2, 0, "## Errors and anomalies\n", "errors summary");
    for (std::size_t k = 0; k < outliers.size() && k < 20; ++k)
      add(2, k < 3 ? 3 : 5, 200 + k, outliers[k].text, "outliers", 1, errors_title_);
  }

  // Statistics per group.
  void add_group_blocks() {
    stats_title_ = add(3, 4, 0, "## Metrics by configuration (n | min / median / max unit)\n",
                       "configuration groups", 0);
    std::size_t rank = 0;
    for (auto i : order_) {
      add_group_block(groups_[i], rank);
      ++rank;
    }
  }

  // ---- fit ----
  void fit_to_budget() {
    keep_by_priority();
    std::string text = compose();
    while (estimate_tokens(text) > options_.token_budget) {
      if (!drop_least_important()) break;
      text = compose();
    }
    if (estimate_tokens(text) > options_.token_budget) cut_header(text);
    digest_.text = std::move(text);
    digest_.estimated_tokens = estimate_tokens(digest_.text);
  }

  Digest take() { return std::move(digest_); }

 private:
  using MetricKey = std::pair<std::string_view, std::string_view>;

  Group& group_for(const Record& r) {
    auto it = group_of_context_.find(r.context);
    if (it != group_of_context_.end()) {
      auto& g = groups_[it->second];
      // Context-less values group by file.
      if (g.key.rfind("file=", 0) != 0 || g.key == "file=" + result_.files[r.file].relative_path)
        return g;
    }
    std::string key = r.context != nullptr ? r.context->config_key() : std::string();
    std::string label;
    if (key.empty()) {
      key = "file=" + result_.files[r.file].relative_path;
      label = key;
    } else {
      label = short_label(*r.context);
    }
    auto [git, inserted] = group_index_.emplace(key, groups_.size());
    if (inserted) {
      Group g;
      g.key = key;
      g.label = label;
      g.has_model = r.context != nullptr && !r.context->model.empty();
      groups_.push_back(std::move(g));
    }
    group_of_context_[r.context] = git->second;
    return groups_[git->second];
  }

  static void add_record(Group& g, const Record& r) {
    ++g.records;
    auto& acc = g.metrics[{r.metric, r.unit}];
    acc.kind = r.kind;
    acc.values.push_back(r.value);
    // A rate or time of zero is a placeholder, a negative one a difference.
    if (!detail::central_metric(r.metric) || r.value <= 0) return;
    FigureAcc* fig = nullptr;
    // Generation speed only: prompt processing runs at another scale.
    if (r.kind == MetricKind::throughput && r.metric.find("prompt") == std::string_view::npos &&
        r.metric.find("prefill") == std::string_view::npos)
      fig = &g.throughput;
    if (r.kind == MetricKind::ttft && r.unit == "ms") fig = &g.ttft;
    if (fig == nullptr) return;
    if (fig->values.empty()) {
      fig->source_file = std::string(r.source_file);
      fig->line = r.line;
    }
    fig->values.push_back(r.value);
    g.main = true;
  }

  int add(int section, int priority, std::size_t rank, std::string text, std::string category,
          std::size_t items = 1, int depends_on = -1) {
    Block b;
    b.section = section;
    b.order = blocks_.size();
    b.priority = priority;
    b.rank = rank;
    b.text = std::move(text);
    b.category = std::move(category);
    b.items = items;
    b.depends_on = depends_on;
    blocks_.push_back(std::move(b));
    return static_cast<int>(blocks_.size() - 1);
  }

  static std::string figure_line(const ConfigFigure& f, std::string_view word) {
    return fmt::format("  {} {} {} ({}; n={})\n", word, num(f.median), f.unit, f.label, f.count);
  }

  // The best and the worst configuration first; the runners-up only when there is room.
  void add_figures(std::string title, const std::vector<ConfigFigure>& best,
                   const std::vector<ConfigFigure>& worst, std::size_t rank, int parent) {
    std::string head = std::move(title);
    if (!best.empty()) head += figure_line(best.front(), "best");
    if (!worst.empty()) head += figure_line(worst.front(), "worst");
    int first = add(1, 1, rank, std::move(head), "best/worst lists", 1, parent);
    std::string more;
    for (std::size_t k = 1; k < best.size(); ++k) more += figure_line(best[k], "next best");
    for (std::size_t k = 1; k < worst.size(); ++k) more += figure_line(worst[k], "next worst");
    if (!more.empty()) add(1, 3, rank, std::move(more), "runner-up lists", 1, first);
  }

  void add_group_block(const Group& g, std::size_t rank) {
    std::vector<std::pair<MetricKey, const MetricAcc*>> ms;
    for (const auto& [key, acc] : g.metrics) ms.emplace_back(key, &acc);
    std::stable_sort(ms.begin(), ms.end(), [](const auto& a, const auto& b) {
      if (a.second->kind != b.second->kind) return a.second->kind < b.second->kind;
      return a.first.first < b.first.first;
    });
    auto line_of = [](const auto& m) {
      const auto& v = m.second->values;
      return fmt::format("  {}: {} | {} / {} / {}{}{}\n", m.first.first, v.size(),
                         num(*std::min_element(v.begin(), v.end())), num(lower_median(v)),
                         num(*std::max_element(v.begin(), v.end())),
                         m.first.second.empty() ? "" : " ", m.first.second);
    };
    std::string main = fmt::format("[{}] {} values\n", g.label, g.records);
    std::size_t main_lines = 0;
    std::vector<std::string> rest;
    for (const auto& m : ms) {
      bool is_main = m.second->kind == MetricKind::throughput || m.second->kind == MetricKind::ttft;
      if ((is_main && detail::central_metric(m.first.first)) || (!g.main && main_lines < 3)) {
        main += line_of(m);
        ++main_lines;
      } else {
        rest.push_back(line_of(m));
      }
    }
    int main_block = add(3, 4, 1 + rank, std::move(main), "configuration groups", 1, stats_title_);
    std::string other;
    std::size_t shown = 0;
    for (const auto& l : rest) {
      if (shown == options_.max_metrics_per_group) break;
      other += l;
      ++shown;
    }
    if (rest.size() > shown) other += fmt::format("  (+{} more metrics)\n", rest.size() - shown);
    if (!other.empty()) add(3, 6, rank, std::move(other), "metric lists", 1, main_block);
  }

  // Keeps the blocks in order of importance while they fit, leaving room for the "dropped" line.
  void keep_by_priority() {
    by_priority_.resize(blocks_.size());
    for (std::size_t i = 0; i < blocks_.size(); ++i) by_priority_[i] = i;
    std::stable_sort(by_priority_.begin(), by_priority_.end(), [&](std::size_t a, std::size_t b) {
      if (blocks_[a].priority != blocks_[b].priority)
        return blocks_[a].priority < blocks_[b].priority;
      return blocks_[a].rank < blocks_[b].rank;
    });
    const std::size_t budget = options_.token_budget;
    const std::size_t reserve = std::min<std::size_t>(60, budget / 5);  // the "dropped" line
    std::size_t used = 0;
    for (auto i : by_priority_) {
      auto& b = blocks_[i];
      if (b.depends_on >= 0 && !blocks_[static_cast<std::size_t>(b.depends_on)].kept) continue;
      // A title is kept first and shown only with at least one of its children (compose()).
      std::size_t cost = estimate_tokens(b.text);
      if (i == 0 || used + cost + reserve <= budget) {
        b.kept = true;
        used += cost;
      }
    }
  }

  std::string compose() {
    // Titles whose every child was dropped go too.
    std::vector<bool> has_child(blocks_.size(), false);
    for (const auto& b : blocks_)
      if (b.kept && b.depends_on >= 0) has_child[static_cast<std::size_t>(b.depends_on)] = true;
    std::vector<std::size_t> shown;
    for (std::size_t i = 0; i < blocks_.size(); ++i) {
      const auto& b = blocks_[i];
      if (!b.kept) continue;
      bool is_title = b.items == 0 || static_cast<int>(i) == stats_title_;
      if (is_title && !has_child[i]) continue;
      shown.push_back(i);
    }
    std::stable_sort(shown.begin(), shown.end(), [&](std::size_t a, std::size_t b) {
      if (blocks_[a].section != blocks_[b].section) return blocks_[a].section < blocks_[b].section;
      return blocks_[a].order < blocks_[b].order;
    });
    std::string text;
    for (auto i : shown) text += blocks_[i].text;
    // What was dropped, by category, in a fixed order.
    std::map<std::string, std::pair<std::size_t, std::size_t>> dropped;  // category -> (n, of)
    for (std::size_t i = 0; i < blocks_.size(); ++i) {
      const auto& b = blocks_[i];
      if (b.items == 0 || static_cast<int>(i) == stats_title_) continue;
      auto& [n, of] = dropped[b.category];
      of += b.items;
      if (!b.kept) n += b.items;
    }
    digest_.dropped.clear();
    for (const auto& [cat, counts] : dropped)
      if (counts.first > 0)
        digest_.dropped.push_back(fmt::format("{} of {} {}", counts.first, counts.second, cat));
    if (!digest_.dropped.empty()) {
      text += fmt::format("(Left out to fit {} tokens: ", options_.token_budget);
      for (std::size_t k = 0; k < digest_.dropped.size(); ++k)
        text += (k ? "; " : "") + digest_.dropped[k];
      text += ".)\n";
    }
    return text;
  }

  // Drops the kept block of least importance (not the header) and what depends on it; false when
  // only the header is left.
  bool drop_least_important() {
    std::size_t victim = blocks_.size();
    for (auto it = by_priority_.rbegin(); it != by_priority_.rend(); ++it) {
      if (blocks_[*it].kept && *it != 0) {
        victim = *it;
        break;
      }
    }
    if (victim == blocks_.size()) return false;
    blocks_[victim].kept = false;
    for (auto& b : blocks_)
      if (b.depends_on == static_cast<int>(victim)) b.kept = false;
    return true;
  }

  // Only the header is left and it is still too long: cut it.
  void cut_header(std::string& text) const {
    while (!text.empty() && estimate_tokens(text) > options_.token_budget) {
      auto cut = text.rfind(' ');
      text.resize(cut == std::string::npos
                      ? chimera::text::utf8_prefix(text, text.size() - 1).size()
                      : cut);
    }
  }

  const IngestResult& result_;
  const DigestOptions& options_;
  Digest digest_;
  std::unordered_map<const Context*, std::size_t> group_of_context_;
  std::unordered_map<std::string, std::size_t> group_index_;
  std::vector<Group> groups_;
  std::vector<std::size_t> order_;  // indices into groups_, most important first
  std::vector<ConfigFigure> throughput_, ttft_;
  std::vector<Block> blocks_;
  std::vector<std::size_t> by_priority_;  // indices into blocks_, most important first
  int errors_title_ = -1;
  int stats_title_ = -1;
};

}  // namespace

Digest make_digest(const IngestResult& result, const DigestOptions& options) {
  DigestWriter writer(result, options);
  writer.gather_groups();
  writer.order_groups();
  writer.rank_configurations();
  writer.collect_stats();

  writer.add_header_block();
  writer.add_best_worst_blocks();
  writer.add_errors_title();
  writer.add_file_error_blocks();
  writer.add_error_message_blocks();
  writer.add_outlier_blocks();
  writer.add_group_blocks();

  writer.fit_to_budget();
  return writer.take();
}

}  // namespace chimera::ingest
