// The digest: a compact, deterministic text summary of an IngestResult, sized to fit a model's
// context, plus the same figures as plain structs for a report writer to render as tables.
//
//   auto result = chimera::ingest::ingest({"data/sample"});
//   chimera::ingest::DigestOptions dopts;
//   dopts.token_budget = 800;
//   auto digest = chimera::ingest::make_digest(result, dopts);
//   prompt += digest.text;                       // estimated_tokens <= token_budget
//   for (const auto& f : digest.best_throughput) // highest median tokens/s first
//     table.add_row(f.config, f.median, f.unit, f.count);
//
// What the text holds, most important first (what does not fit is dropped from the end of
// this list, and a last line names what was dropped):
//   1. files and bytes by type, record and error counts            (always kept)
//   2. the best and the worst configuration for throughput and TTFT (median per configuration)
//   3. error counts, the first 5 file errors, the 5 most frequent error-value messages
//   4. the runners-up (top_n best and worst), the 3 largest outliers (a time whose max is over
//      10x its group's median)
//   5. per configuration group: count, min, median and max of the throughput and TTFT metrics
//   6. the other outliers and error messages
//   7. per group: the other metrics (durations, memory, counts, ...)
//   8. the remaining file errors
// Groups are configurations (Context::config_key()); values with no configuration are grouped
// by source file. Groups with throughput or TTFT come first, then groups that name a model,
// then larger groups; ties by name.
//
// Deterministic: the same IngestResult content gives the same text, byte for byte (no times,
// no thread-dependent order). Pure function; safe to call from several threads at once.
#pragma once

#include <chimera/ingest/ingest.hpp>

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace chimera::ingest {

struct DigestOptions {
  std::size_t token_budget = 1500;  // upper bound on estimate_tokens(text)
  std::size_t top_n = 3;            // configurations listed as best and as worst
  std::size_t max_metrics_per_group = 8;
};

// One configuration's figure for one quantity, across all its values (all files).
struct ConfigFigure {
  std::string config;  // Context::config_key(), or "file=<relative path>" when empty
  std::string label;   // the short form used in the text ("gemma3:270m num_gpu=999 ...")
  std::string unit;    // "tokens/s" or "ms"
  double median = 0;
  double min = 0;
  double max = 0;
  std::size_t count = 0;
  std::string source_file;  // where the first of its values came from
  int line = 0;
};

// count/min/median/max of one metric within one group.
struct MetricStats {
  std::string group;  // config label, or "file=<relative path>"
  std::string metric;
  std::string unit;
  MetricKind kind = MetricKind::other;
  std::size_t count = 0;
  double min = 0;
  double median = 0;  // the lower median for an even count (a value that occurs)
  double max = 0;
};

struct Digest {
  std::string text;
  std::size_t estimated_tokens = 0;  // estimate_tokens(text); <= token_budget
  std::size_t token_budget = 0;
  // Throughput: generation tokens/s (not prompt processing), higher is better. TTFT: ms, lower
  // is better. Central figures only (plain values, means, medians, p50); spreads, tails (std,
  // min, max, p95, p99) and differences (delta, speedup) are not used, nor values <= 0. Best first
  // in the best lists, worst first in the worst lists.
  std::vector<ConfigFigure> best_throughput;
  std::vector<ConfigFigure> worst_throughput;
  std::vector<ConfigFigure> best_ttft;
  std::vector<ConfigFigure> worst_ttft;
  std::vector<MetricStats> stats;    // every group and metric, whether or not in `text`
  std::vector<std::string> dropped;  // what was left out of `text` to fit, one item each
};

Digest make_digest(const IngestResult& result, const DigestOptions& options = {});

// The token estimate the budget is checked with: the larger of ceil(bytes / 4) and a count
// of word pieces (letters in pieces of 6, digits in groups of 3, each other symbol and each
// line break one token). Numbers-heavy text costs more tokens than bytes / 4 suggests, so
// this errs on the high side for common BPE vocabularies.
std::size_t estimate_tokens(std::string_view text);

}  // namespace chimera::ingest
