// Ingestion alone: the shared corpus, and a generated corpus about 100 times larger built from
// the same files (and the project's sample), each read single-threaded and with every core.
// Prints files/s and MB/s and appends JSON lines (with commit, compiler, CPU, command line) to
// --out.
//
//   chimera_ingest_bench                               # defaults: ../shared/corpus, 100x, 5 reps
//   chimera_ingest_bench --scale 100 --reps 5 --out bench/results/ingest.jsonl
//
// Each figure is `measured`: wall time of chimera::ingest::ingest() (scan + read + parse +
// merge) with the files in the page cache (one untimed run first). The generated copies keep
// every file's shape; digits after a decimal point are changed per copy so that values differ.
#include <fmt/format.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <chimera/ingest/ingest.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

namespace {

namespace fs = std::filesystem;
namespace ci = chimera::ingest;

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  }
  return "unknown";
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[(v.size() - 1) / 2];
}

// Copies every ingestible file under `sources` into `dest`/<copy>/<source index>/..., `copies`
// times, changing fraction digits so that each copy carries its own values.
std::uint64_t generate(const std::vector<fs::path>& sources, const fs::path& dest, int copies) {
  std::vector<std::pair<fs::path, std::string>> files;  // relative path, content
  for (std::size_t s = 0; s < sources.size(); ++s) {
    if (!fs::exists(sources[s])) continue;
    for (const auto& e : fs::recursive_directory_iterator(sources[s])) {
      if (!e.is_regular_file() || !ci::file_type_of(e.path(), nullptr)) continue;
      std::ifstream in(e.path(), std::ios::binary);
      std::stringstream ss;
      ss << in.rdbuf();
      files.emplace_back(fs::path(std::to_string(s)) / fs::relative(e.path(), sources[s]),
                         ss.str());
    }
  }
  std::uint64_t bytes = 0;
  for (int c = 0; c < copies; ++c) {
    for (const auto& [rel, content] : files) {
      std::string text = content;
      // The last digit of each run of 2+ digits after a '.': "0.0865" -> "0.0868".
      for (std::size_t i = 1; i < text.size(); ++i) {
        if (text[i - 1] != '.' || !std::isdigit(static_cast<unsigned char>(text[i]))) continue;
        std::size_t j = i;
        while (j < text.size() && std::isdigit(static_cast<unsigned char>(text[j]))) ++j;
        if (j - i >= 2) text[j - 1] = static_cast<char>('0' + (text[j - 1] - '0' + c) % 10);
        i = j;
      }
      auto path = dest / fmt::format("copy{:03}", c) / rel;
      fs::create_directories(path.parent_path());
      std::ofstream(path, std::ios::binary) << text;
      bytes += text.size();
    }
  }
  return bytes;
}

struct Figures {
  std::string corpus;
  unsigned threads = 0;
  std::size_t files = 0, records = 0, errors = 0;
  std::uint64_t bytes = 0;
  std::vector<double> total_ms, scan_ms, parse_ms, merge_ms;
};

Figures measure(const std::string& name, const fs::path& root, unsigned threads, int reps) {
  Figures f;
  f.corpus = name;
  f.threads = threads;
  ci::IngestOptions opts;
  opts.threads = threads;
  (void)ci::ingest({root}, opts);  // warm the page cache and the allocator
  for (int i = 0; i < reps; ++i) {
    auto r = ci::ingest({root}, opts);
    f.files = r.files.size();
    f.records = r.records.size();
    f.errors = r.errors.size();
    f.bytes = r.total_bytes;
    f.total_ms.push_back(r.timings.total_ms);
    f.scan_ms.push_back(r.timings.scan_ms);
    f.parse_ms.push_back(r.timings.parse_ms);
    f.merge_ms.push_back(r.timings.merge_ms);
  }
  return f;
}

}  // namespace

int main(int argc, char** argv) try {
  CLI::App app{"Ingestion benchmark: files/s and MB/s over the shared corpus and a generated one"};
  std::string corpus = CHIMERA_DEFAULT_CORPUS;
  std::string sample = CHIMERA_DEFAULT_SAMPLE;
  int scale = 100;
  int reps = 5;
  std::vector<unsigned> threads_list;
  std::string out_path = "bench/results/ingest.jsonl";
  std::string tmp = "";
  bool keep = false;
  app.add_option("--corpus", corpus, "The shared corpus")->capture_default_str();
  app.add_option("--sample", sample, "The project's sample data (added to the generated corpus)")
      ->capture_default_str();
  app.add_option("--scale", scale, "Copies in the generated corpus (0: skip it)")
      ->capture_default_str();
  app.add_option("--reps", reps, "Timed runs per figure")->capture_default_str();
  app.add_option("--threads", threads_list, "Thread counts (default: 1 and all cores)");
  app.add_option("--out", out_path, "JSON lines appended here")->capture_default_str();
  app.add_option("--tmp", tmp, "Where to generate (default: a new folder under /tmp)");
  app.add_flag("--keep", keep, "Keep the generated corpus");
  CLI11_PARSE(app, argc, argv);

  const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  if (threads_list.empty()) threads_list = {1, cores};
  std::string cmdline;
  for (int i = 0; i < argc; ++i) cmdline += (i ? " " : "") + std::string(argv[i]);

  std::vector<Figures> all;
  all.reserve(threads_list.size() * 2);
  for (auto t : threads_list) all.push_back(measure("shared", corpus, t, reps));

  fs::path gen;
  if (scale > 0) {
    gen = tmp.empty()
              ? fs::temp_directory_path() / fmt::format("chimera-ingest-bench-{}", ::getpid())
              : fs::path(tmp);
    fs::remove_all(gen);
    auto t0 = std::chrono::steady_clock::now();
    auto bytes = generate({corpus, sample}, gen, scale);
    fmt::print("generated {:.1f} MB in {} copies under {} ({:.1f} s)\n",
               static_cast<double>(bytes) / 1e6, scale, gen.string(),
               std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    for (auto t : threads_list)
      all.push_back(measure(fmt::format("generated-{}x", scale), gen, t, reps));
  }

  fmt::print("\n{:<16} {:>7} {:>7} {:>9} {:>8} {:>10} {:>10} {:>9} {:>9}\n", "corpus", "threads",
             "files", "MB", "records", "ms median", "ms min", "files/s", "MB/s");
  fs::create_directories(
      fs::path(out_path).parent_path().empty() ? fs::path(".") : fs::path(out_path).parent_path());
  std::ofstream out(out_path, std::ios::app);
  for (const auto& f : all) {
    double med = median(f.total_ms);
    double best = *std::min_element(f.total_ms.begin(), f.total_ms.end());
    double mb = static_cast<double>(f.bytes) / 1e6;
    double files_s = static_cast<double>(f.files) / (med / 1e3);
    double mb_s = mb / (med / 1e3);
    fmt::print("{:<16} {:>7} {:>7} {:>9.2f} {:>8} {:>10.2f} {:>10.2f} {:>9.0f} {:>9.1f}\n",
               f.corpus, f.threads, f.files, mb, f.records, med, best, files_s, mb_s);
    boost::json::object o{
        {"bench", "ingest"},
        {"source", "measured"},
        {"corpus", f.corpus},
        {"threads", f.threads},
        {"files", f.files},
        {"bytes", f.bytes},
        {"records", f.records},
        {"file_errors", f.errors},
        {"reps", reps},
        {"total_ms_median", med},
        {"total_ms_min", best},
        {"scan_ms_median", median(f.scan_ms)},
        {"parse_ms_median", median(f.parse_ms)},
        {"merge_ms_median", median(f.merge_ms)},
        {"files_per_s", files_s},
        {"mb_per_s", mb_s},
        {"mb_per_s_formula", "bytes / 1e6 / (total_ms_median / 1e3)"},
        {"commit", CHIMERA_GIT_COMMIT},
        {"compiler", __VERSION__},
        {"flags", CHIMERA_CXX_FLAGS},
        {"cpu", cpu_model()},
        {"cores", cores},
        {"command", cmdline},
    };
    out << boost::json::serialize(o) << "\n";
  }
  fmt::print("\nappended {} lines to {}\n", all.size(), out_path);
  if (!gen.empty() && !keep) fs::remove_all(gen);
  return 0;
} catch (const std::exception& e) {
  fmt::print(stderr, "chimera_ingest_bench: {}\n", e.what());
  return 1;
}
