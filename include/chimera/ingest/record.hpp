// The typed records that ingestion produces from benchmark files (CSV, JSON, Markdown, text).
//
// A Record is one measured number: a metric name, its value in a normalised unit, the context
// that identifies it (model, quantization, num_gpu, num_ctx, temperature, run, and any other
// identifying key/value found beside it) and where it came from (file and line).
//
// Ownership: records, contexts and error values hold std::string_view members that point into
// storage owned by the IngestResult they came from (see ingest.hpp). They stay valid as long
// as that IngestResult lives, including after it is moved; copy the strings out to keep them
// longer. FileError and FileInfo own their strings.
//
// Units after normalisation (docs/ingest.md has the full table):
//   time        "ms"        from ns, us, ms, s, minutes, hours (a name ending in `_duration`
//                           with no other unit is taken as Ollama's nanoseconds)
//   throughput  "tokens/s"  from names like tokens_s, tokens_per_second, tps, tok/s cells
//   memory      "MB"        MiB: from bytes, KB (KiB), MB, GB (GiB), TB; 1 MB = 2^20 bytes
//   percent     "%"
//   count       ""          counts (eval_count, tokens, samples, ...) and unitless numbers
//   anything else keeps the unit it was written with ("W", "°C", "cycle/nsecond", ...).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace chimera::ingest {

// What a metric measures; decided from its name and unit. The digest ranks metrics in this
// order (throughput first).
enum class MetricKind : std::uint8_t {
  throughput,  // tokens/s
  ttft,        // time to first token, ms
  time,        // any other time or latency (durations, percentiles, means), ms
  memory,      // MB
  percent,     // %
  count,       // counts of tokens, samples, characters, ...
  other,
};

// "throughput", "ttft", "time", "memory", "percent", "count", "other".
std::string_view to_string(MetricKind kind);

// The identifying context of a value. Empty views mean "not known".
//
// Numeric context values are written in their shortest form ("40.00" -> "40", "0.40" -> "0.4")
// so that the same configuration written two ways groups together. `quantization` is filled
// from the model tag when the data does not name it ("llama3.1:8b-instruct-q4_0" -> "q4_0").
// `run` is a run, iteration or trial number when the data has one; for JSON arrays named like
// runs/iterations/trials it is the element's 1-based index.
struct Context {
  std::string_view model;
  std::string_view quantization;
  std::string_view num_gpu;
  std::string_view num_ctx;
  std::string_view temperature;
  std::string_view run;
  // Other identifying key/values (top_p, top_k, backend, prompt_index, timestamp, section
  // heading, short text columns, ...), keys normalised to lower_snake_case, sorted by key.
  std::vector<std::pair<std::string_view, std::string_view>> extra;

  // The value for `key` (a main field name such as "model" or an `extra` key); empty if none.
  std::string_view find(std::string_view key) const;

  // The configuration this value belongs to, without run-specific fields: the main fields
  // except `run`, plus the tuning parameters found in `extra` (top_p, top_k, repeat_penalty,
  // num_predict, num_batch, num_thread, batch_size, concurrency, parallel, backend, config), as
  // "model=M quantization=Q num_gpu=G ..." in that fixed order. Empty when none is known.
  std::string config_key() const;
};

// One numeric value harvested from a file.
struct Record {
  std::string_view metric;  // canonical lower_snake_case name: "tokens_per_s", "ttft",
                            // "load_duration", "mean_ttft", "timing_p50", ...
  double value = 0;         // in `unit`
  std::string_view unit;    // normalised unit, see the table above
  MetricKind kind = MetricKind::other;
  const Context* context = nullptr;  // never null in records from ingest()
  std::string_view source_file;      // the file's path, as in FileInfo::path
  std::string_view origin;           // the column header (CSV, Markdown), JSON path
                                     // ("models[1].mean_ttft_s") or text key, as written
  std::uint32_t file = 0;            // index into IngestResult::files
  int line = 0;  // 1-based line of the value (CSV: the row's first line); 0 when unknown
};

// A cell or field that stands where a value or status belongs but says the measurement
// failed ("Failed to connect to Ollama...", "[WinError 10049] ...", success = false). Kept as
// text, never turned into a number. For a CSV or Markdown row that carries one in an error
// column, the row's numeric cells are not recorded (they are placeholders such as 0).
struct ErrorValue {
  std::string_view metric;  // the column or key it was found under ("error", "tokens_s")
  std::string_view text;    // the cell text, cut to 200 bytes
  const Context* context = nullptr;
  std::string_view source_file;
  std::uint32_t file = 0;
  int line = 0;
};

// A problem with a file. `fatal` means nothing of the file was recorded (it could not be read
// or parsed: binary, invalid UTF-8, invalid JSON, over a size limit); otherwise only the named
// part was skipped (a ragged CSV row, an unterminated quoted field at the end) and the rest of
// the file's records are kept. `line` is 1-based; 0 when the problem is not tied to a line.
struct FileError {
  std::string path;
  int line = 0;
  std::string reason;  // says what was wrong and, where it helps, what to do
  bool fatal = true;
};

enum class FileType : std::uint8_t { csv, json, markdown, text };

// "csv", "json", "md", "txt".
std::string_view to_string(FileType type);

// One file found by the scan.
struct FileInfo {
  std::string path;           // root joined with the path below it ("data/csv/a.csv")
  std::string relative_path;  // below its root ("csv/a.csv"); the file name for a file root
  FileType type = FileType::text;
  std::uint64_t bytes = 0;
  std::size_t records = 0;       // Records harvested
  std::size_t error_values = 0;  // ErrorValues found
  std::size_t rows = 0;          // CSV data rows, Markdown table body rows; 0 for JSON, text
  bool parsed = false;           // false: a fatal error (see `error`) or not reached (cancelled)
  std::string error;             // the fatal error's reason and line; empty when parsed
};

}  // namespace chimera::ingest
