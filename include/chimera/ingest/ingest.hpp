// Ingestion: find benchmark files under folders and turn them into typed records.
//
//   chimera::ingest::IngestOptions opts;            // threads, limits, progress callback
//   auto result = chimera::ingest::ingest({"data/sample"}, opts);
//   for (const auto& r : result.records)
//     if (r.kind == chimera::ingest::MetricKind::throughput)
//       std::printf("%s %s %.1f %s (%s:%d)\n", std::string(r.context->model).c_str(),
//                   std::string(r.metric).c_str(), r.value, std::string(r.unit).c_str(),
//                   std::string(r.source_file).c_str(), r.line);
//   for (const auto& e : result.errors)
//     std::printf("%s:%d: %s\n", e.path.c_str(), e.line, e.reason.c_str());
//
// What is read (docs/ingest.md has the details):
//   .csv            RFC 4180: quoted fields, doubled quotes, quoted newlines, UTF-8 BOM, CRLF.
//                   The first row names the columns; a second row of unit names (as Nsight
//                   Compute writes) is used as units. Context columns (model, quantization,
//                   num_gpu, num_ctx, temperature, run, ids, timestamps, tuning parameters,
//                   short text) give each row's context; numeric columns become records.
//   .json           any shape (Boost.JSON, SAX): every numeric leaf becomes a record named
//                   from its key; context comes from sibling and ancestor keys and from
//                   "options"/"config"/"parameters" objects beside it.
//   .md, .markdown  GitHub-flavoured Markdown (cmark-gfm with the table extension; optionally a
//                   faster scanner of our own for the common subset, markdown_fast_path): tables
//                   become rows (same column rules as CSV), headings give context (a model tag
//                   in a heading is the model), and "Key: 12.3 unit" lines in paragraphs and
//                   lists are harvested.
//   .txt            "Key: 12.3 unit" lines are harvested.
// Other files are skipped (counted in ScanStats::skipped_files).
//
// Errors: nothing here throws for bad input. A root that does not exist, a directory that
// cannot be listed, a file that cannot be read or parsed, a ragged row: each is a FileError in
// `errors` (with its line) and the run goes on; other files' records are unaffected.
// std::bad_alloc is the only exception that can escape.
//
// Threads: ingest() runs its own std::thread pool (IngestOptions::threads) for both the
// directory walk and the parsing; the result is the same whatever the thread count (files
// sorted by path, records in file then line order). Separate calls may run concurrently.
#pragma once

#include <chimera/ingest/record.hpp>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace chimera::ingest {

struct Progress {
  enum class Stage : std::uint8_t { scanning, parsing, done };
  Stage stage = Stage::scanning;
  std::size_t files_done = 0;   // files parsed so far; files found (scanning)
  std::size_t files_total = 0;  // files to parse
  std::uint64_t bytes_done = 0;
  std::uint64_t bytes_total = 0;
  std::string_view path;  // the file just finished; empty while scanning
};

struct IngestOptions {
  // Worker threads for the walk and the parsing; 0 = std::thread::hardware_concurrency().
  unsigned threads = 0;
  // A file larger than this is not read (FileError).
  std::uint64_t max_file_bytes = 256ull << 20;
  // Longest line (CSV, Markdown, text), CSV field or JSON string; longer is a FileError.
  // JSON lines are not limited (minified JSON is one line).
  std::size_t max_line_bytes = 1u << 20;
  // Deepest JSON nesting accepted (at most 1000); deeper is a FileError, not a stack overflow.
  unsigned max_json_depth = 64;
  // Follow symbolic links to files and folders (each real folder is walked once, so link
  // cycles end; a file reached twice is read once, under its first path in sorted order).
  bool follow_symlinks = true;
  // true: Markdown documents in the common subset (ATX headings, paragraphs, lists, pipe
  // tables, fenced code) are read by a line scanner of our own, 2.4 times faster than
  // cmark-gfm's parse, and anything else by cmark-gfm. Both give the same records, error values
  // and errors: the markdown_differential fuzz target holds them to it (docs/ingest.md).
  // false: every document goes to cmark-gfm.
  bool markdown_fast_path = true;
  // Files are read in batches through io_uring where the kernel allows it (one system call
  // opens, reads and closes 16 files), else one at a time; the results are the same. false:
  // always one at a time (for tools that cannot see io_uring's reads, such as valgrind).
  bool io_uring = true;
  // Called after the scan and after each file is parsed, from worker threads but never two at
  // once. Return false to cancel: files not yet started are left unparsed and
  // IngestResult::cancelled is set. It must not throw (an exception cancels as if false).
  std::function<bool(const Progress&)> on_progress;
};

struct ScanStats {
  std::size_t directories = 0;      // folders listed
  std::size_t skipped_files = 0;    // files with other extensions
  std::size_t symlink_cycles = 0;   // links to folders already walked (cycles, duplicates)
  std::size_t duplicate_files = 0;  // files reached a second time through a link
};

struct Timings {
  double scan_ms = 0;   // directory walk (wall time)
  double parse_ms = 0;  // reading and parsing every file (wall time)
  double merge_ms = 0;  // gathering per-file results in order
  double total_ms = 0;
  unsigned threads = 0;  // threads used
};

namespace detail {
struct Storage;
}

// Everything ingest() found. Move-only: records point into storage it owns.
class IngestResult {
 public:
  IngestResult();
  ~IngestResult();
  IngestResult(IngestResult&&) noexcept;
  IngestResult& operator=(IngestResult&&) noexcept;
  IngestResult(const IngestResult&) = delete;
  IngestResult& operator=(const IngestResult&) = delete;

  std::vector<FileInfo> files;           // sorted by path
  std::vector<Record> records;           // in file order, then line order
  std::vector<ErrorValue> error_values;  // in file order, then line order
  std::vector<FileError> errors;         // roots and folders first, then files in order
  ScanStats scan;
  Timings timings;
  std::uint64_t total_bytes = 0;  // bytes of the files found
  bool cancelled = false;

  // Files of one type, and their bytes.
  std::size_t file_count(FileType type) const;
  std::uint64_t file_bytes(FileType type) const;

  // Internal: the storage the views point into.
  detail::Storage& storage();

 private:
  std::unique_ptr<detail::Storage> storage_;
};

// Walks `roots` (folders or single files) and parses every CSV, JSON, Markdown and text file
// found. Never throws for bad input; see the notes at the top of this header.
IngestResult ingest(const std::vector<std::filesystem::path>& roots,
                    const IngestOptions& options = {});

// Parses one in-memory buffer as a file of `type` named `name` (used in messages and as the
// source_file); the same parsers and limits as ingest(), on the calling thread.
IngestResult ingest_buffer(std::string_view content, FileType type, std::string_view name,
                           const IngestOptions& options = {});

// The type a file name maps to (.csv, .json, .md/.markdown, .txt; case-insensitive); false
// when it is not one ingestion reads.
bool file_type_of(const std::filesystem::path& path, FileType* type);

}  // namespace chimera::ingest
