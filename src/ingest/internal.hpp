// Internal pieces shared by the ingestion parsers: string storage, name and unit rules,
// number parsing, text checks and the table builder used by CSV and Markdown.
#pragma once

#include <chimera/core/text.hpp>
#include <chimera/ingest/ingest.hpp>

#include <algorithm>
#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

namespace chimera::ingest::detail {

// A set of bytes to split text on: one table lookup per byte, where
// std::string_view::find_first_of calls memchr over the set for every byte of the text.
class ByteSet {
 public:
  constexpr explicit ByteSet(std::string_view chars) {
    for (char c : chars) bits_[static_cast<unsigned char>(c)] = true;
  }
  constexpr bool has(char c) const { return bits_[static_cast<unsigned char>(c)]; }
  // The first byte of `s` at or after `pos` in the set, or npos.
  constexpr std::size_t find_in(std::string_view s, std::size_t pos = 0) const {
    for (; pos < s.size(); ++pos)
      if (has(s[pos])) return pos;
    return std::string_view::npos;
  }

 private:
  std::array<bool, 256> bits_{};
};

// Owns the bytes that Record/Context views point into. One per parsing thread (it outlives the
// files it parsed), so parsers never share one across threads; IngestResult keeps them all.
class Arena {
 public:
  Arena() = default;
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;

  std::string_view store(std::string_view s);
  // Like store(), but equal strings share one copy.
  std::string_view intern(std::string_view s);
  // A new context with a stable address.
  Context* new_context(Context c);
  const Context* empty_context() {
    if (empty_ == nullptr) empty_ = new_context(Context{});
    return empty_;
  }

 private:
  static constexpr std::size_t kMaxBlock = std::size_t{64} * 1024;
  static constexpr std::size_t kMaxContextChunk = 256;
  std::vector<std::unique_ptr<char[]>> blocks_;
  char* cur_ = nullptr;
  std::size_t left_ = 0;
  std::size_t next_block_ = 2048;  // blocks grow from small files' needs to kMaxBlock
  std::unordered_set<std::string_view> interned_;
  std::uint64_t id_ = next_id();  // tells intern()'s per-thread cache which arena it holds
  static std::uint64_t next_id();
  // Chunks grow (4, 8, ... 256 contexts): most files need a few, a CSV one per row.
  std::vector<std::unique_ptr<Context[]>> contexts_;
  std::size_t contexts_used_ = 0;
  std::size_t contexts_chunk_ = 0;
  Context* empty_ = nullptr;
};

struct Storage {
  std::vector<std::unique_ptr<Arena>> arenas;
};

// ---- names, units, numbers ---------------------------------------------------------------

enum class Field : std::uint8_t { model, quantization, num_gpu, num_ctx, temperature, run };
std::string_view& field_of(Context& c, Field f);

// What a column header or JSON key is for.
enum class Role : std::uint8_t {
  metric,         // numbers become records
  context_main,   // one of the Context main fields (`field`)
  context_extra,  // identifying: ids, indices, timestamps, tuning parameters, names
  error,          // error message column/key
  success,        // success flag column/key (false -> ErrorValue)
  unit,           // a sibling naming the unit of the values beside it
  options,        // an object (or a JSON cell) of settings: its scalars are context
};

// A unit after normalisation: value_in_unit = raw * factor.
struct UnitConv {
  std::string_view unit;  // canonical ("ms", "tokens/s", "MB", "%") or the raw text
  double factor = 1;
  bool present = false;  // a unit was found
  bool known = false;    // it is one of the canonical units
};

// `raw` such as "s", "Kbyte", "tok/s", "%", "GB"; present=false when empty.
UnitConv unit_from_text(std::string_view raw);

// lower_snake_case of a header or key ("Generation Time (ms)" -> "generation_time_ms").
std::string normalize_key(std::string_view raw);

struct NameInfo {
  Role role = Role::metric;
  Field field = Field::model;  // for Role::context_main
  std::string key;             // normalized full name (context key for extras)
  std::string stem;            // metric name with the unit removed and aliases applied
  UnitConv unit;               // unit found in the name
  bool generic = false;        // a bare statistic ("p50", "mean"): prefix with the parent
  bool duration_ns = false;    // ends in "duration" with no unit: Ollama nanoseconds
};
// Cached per thread; the reference is valid until the next call on the same thread.
const NameInfo& classify_name(std::string_view raw);
NameInfo classify_name_uncached(std::string_view raw);

// The final name, unit and kind of a metric given the unit its value carries (a unit cell or
// suffix; `cell_unit.present` false when none).
struct MetricSpec {
  std::string name;
  std::string_view unit;  // canonical or raw (raw views live in the caller's input/arena)
  double factor = 1;
  MetricKind kind = MetricKind::other;
};
MetricSpec finalize_metric(const NameInfo& info, const UnitConv& cell_unit);

// Parses a cell that holds a number, optionally followed by a unit ("0.097 s", "85%",
// "22,80,000", "4478.2 MB"). False when it is not a finite number (text, empty, NaN).
bool parse_number(std::string_view cell, double* value, std::string_view* unit);

using chimera::text::trim;                     // whitespace at either end
bool is_missing(std::string_view cell);        // "", "-", "n/a", "nan", "null", "none"
bool looks_like_error(std::string_view text);  // "Failed to connect", "Error: ...", timeouts
bool benign_status(std::string_view text);     // "ok", "success", "none", "0", "false"
bool falsy(std::string_view text);             // "false", "no", "0", "failed"
// "40.00" -> "40" (written into `buf`); text stays as written (trimmed).
std::string_view normalize_context_value(std::string_view value, char (&buf)[40]);
// "q4_0" from "llama3.1:8b-instruct-q4_0"; empty when none.
std::string_view quantization_from(std::string_view model_or_tag);
bool is_runs_key(std::string_view normalized_key);
// A configuration's typical figure (a value, mean, median, p50), not a spread, a tail or a
// difference between configurations ("std", "p99", "delta", "speedup", ...).
bool central_metric(std::string_view metric);
// Experiment structure (segments.cpp): the canonical key of a setting name ("gpu" -> "num_gpu"),
// its label for people ("GPU layers"; empty when none), whether a key marks repetitions
// (run, seed, timestamp, ids), and the shortest text of a number (float32 widened to double
// prints as the float: "0.8").
std::string canonical_setting_key(std::string_view raw);
std::string_view setting_label(std::string_view key);
bool is_repetition_key(std::string_view key);
std::string shortest_number_text(double v);  // runs, iterations, trials, ...
// A model tag in free text: "Baseline (llama3.1:8b-instruct-q4_0)" -> "llama3.1:8b-instruct-q4_0".
std::string_view model_like(std::string_view text);
bool is_model_object_key(std::string_view normalized_key);

// Sets a main field or an extra of `c`, normalising the value and interning it in `arena`.
// Temperature only takes values in [0, 5]: a larger "temperature" is a sensor reading, not a
// sampling setting. Returns false when the value was refused.
bool set_context(Context& c, Field f, std::string_view raw, Arena& arena);
void set_extra(Context& c, std::string_view key, std::string_view raw, Arena& arena);
// Fills quantization from a "tag" extra or the model, sorts extras.
void finish_context(Context& c, Arena& arena);

// ---- per-file parsing ----------------------------------------------------------------------

// What parsing one file gave. Its records are written into its parsing thread's vector (one
// vector per thread, reused from file to file rather than one per file), at
// [first_record, first_record + record_count); the merge copies them to their place.
struct FileOutput {
  std::uint32_t worker = 0;
  std::size_t first_record = 0;
  std::size_t record_count = 0;
  std::vector<ErrorValue> error_values;
  std::vector<FileError> errors;
  std::size_t rows = 0;
  bool fatal = false;
};

// A metric name, unit and kind interned in a file's arena, with the factor from the unit the
// value was written in.
struct Metric {
  std::string_view name;
  std::string_view unit;
  double factor = 1;
  MetricKind kind = MetricKind::other;
};
Metric intern_metric(const MetricSpec& spec, Arena& arena);

// The JSON reader's working state (its frames, nodes, pending values and the keys it has
// classified), kept per parsing thread and reused from file to file instead of allocated per
// file and per object. Defined in json.cpp.
struct JsonScratch;
struct JsonScratchDelete {
  void operator()(JsonScratch* p) const;
};
using JsonScratchPtr = std::unique_ptr<JsonScratch, JsonScratchDelete>;

struct ParseJob {
  std::string_view source_file;  // lives in the arena
  std::uint32_t file = 0;
  const IngestOptions* options = nullptr;
  FileOutput* out = nullptr;
  Arena* strings = nullptr;                // the parsing thread's arena
  std::vector<Record>* records = nullptr;  // the parsing thread's records (this file's at the end)
  JsonScratchPtr* json = nullptr;          // the parsing thread's JSON state; null: per file

  Arena& arena() { return *strings; }
  // Room for `n` more records, growing geometrically (a reserve of exactly size() + n on a
  // vector shared by many files would copy it for every file).
  void reserve_records(std::size_t n) {
    if (records->capacity() - records->size() < n)
      records->reserve(std::max(records->size() + n, records->capacity() * 2));
  }
  void error(int line, std::string reason, bool fatal);
  void error_value(std::string_view metric, std::string_view text, const Context* ctx, int line);
  void record(const Metric& m, double raw, const Context* ctx, std::string_view origin, int line);
};

// A context that changes as a document is read (Markdown sections, "Model: x" lines), frozen
// into the arena when a value needs it.
struct RunningContext {
  Context draft;
  const Context* frozen = nullptr;
  const Context* get(Arena& arena);
  void changed() { frozen = nullptr; }
};

// Reads a whole file into `buf`; returns false with a reason. `expected` is the size the scan
// found (no fstat: a file that has grown since is read to its end, one that has shrunk to its
// end). The file is opened relative to its folder's descriptor when the scan kept one
// (`dir_fd`, `name`), else by `path`.
bool read_file(int dir_fd, const char* name, const char* path, std::uint64_t expected,
               std::uint64_t max_bytes, std::vector<char>& buf, std::size_t* size,
               std::string* reason);

// A file for FileReader: where it is and the size the scan found.
struct FileRequest {
  int dir_fd = -1;
  const char* name = nullptr;
  const char* path = nullptr;
  std::uint64_t expected = 0;
};

// Reads the files of one parsing thread, a batch at a time: through io_uring when the build
// has liburing and the kernel allows it (one system call for the open, read and close of every
// file in the batch), else one file at a time with read_file(). The results are the same
// either way (file_reader.cpp). One per thread; not thread-safe.
class FileReader {
 public:
  static constexpr std::size_t kBatch = 16;

  explicit FileReader(bool use_io_uring);
  ~FileReader();
  FileReader(const FileReader&) = delete;
  FileReader& operator=(const FileReader&) = delete;

  // How many files read() takes at once: kBatch with io_uring, else 1.
  std::size_t batch_size() const;
  // Reads requests[0, count) (count <= kBatch); then ok(i), content(i) and reason(i) tell.
  void read(const FileRequest* requests, std::size_t count, std::uint64_t max_bytes);
  bool ok(std::size_t i) const { return slots_[i].ok; }
  std::string_view content(std::size_t i) const { return {slots_[i].buf.data(), slots_[i].size}; }
  std::string& reason(std::size_t i) { return slots_[i].reason; }

 private:
  struct Ring;
  struct Slot {
    std::vector<char> buf;
    std::size_t size = 0;
    bool read = false;  // read whole by the batch
    bool ok = false;
    std::string reason;
  };
  void read_batch(const FileRequest* requests, std::size_t count, std::uint64_t max_bytes);
  void drop_ring();

  std::unique_ptr<Ring> ring_;
  std::array<Slot, kBatch> slots_;
};

// Checks for binary content, UTF-16, invalid UTF-8 and lines over the limit
// (max_line == 0: no line limit). Returns the FileError reason and line, or nothing.
struct TextProblem {
  int line = 0;
  std::string reason;
};
std::optional<TextProblem> check_text(std::string_view text, std::size_t max_line);

// Parses `content` (BOM already removed, checked by check_text) into job.out.
void parse_csv(std::string_view content, ParseJob& job);
void parse_json(std::string_view content, ParseJob& job);
void parse_markdown(std::string_view content, ParseJob& job);
// Whether the Markdown line scanner reads `content` itself (true) or leaves it to cmark-gfm.
bool markdown_scanner_takes(std::string_view content);
void parse_text(std::string_view content, ParseJob& job);

// Reads a "Key: 12.3 unit [avg|peak|...]" line into a record. `label` carries the last
// "Heading:" line, used to name generic keys such as "Average:". A main-context key with a
// plain value ("Model: llama3", "Temperature: 0.8") updates `ctx` instead.
void harvest_line(std::string_view line, int line_no, RunningContext& ctx, std::string* label,
                  ParseJob& job);

// A table with a header row: CSV files and Markdown tables.
struct Table {
  std::vector<std::string_view> header;
  std::vector<std::string_view> units;  // a units row (Nsight Compute CSV), or empty
  std::vector<std::string_view> cells;  // all rows' cells, flat
  struct Row {
    std::uint32_t first = 0;
    std::uint32_t count = 0;
    int line = 0;
  };
  std::vector<Row> rows;
};
// Emits the table's records and error values; `base` is the enclosing context (a Markdown
// section) or null. Rows whose cell count differs from the header's are reported and skipped.
void emit_table(const Table& table, const Context* base, ParseJob& job);

}  // namespace chimera::ingest::detail
