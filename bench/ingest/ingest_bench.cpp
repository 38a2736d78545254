// Ingestion alone: the shared corpus, and a generated corpus about 100 times larger built from
// the same files (and the project's sample), each read single-threaded and with every core.
// Prints files/s and MB/s and appends JSON lines (with commit, compiler, CPU, command line) to
// --out; then parsing alone per file type, from memory, next to cmark-gfm's own parse.
//
//   chimera_ingest_bench                               # defaults: ../shared/corpus, 100x, 5 reps
//   chimera_ingest_bench --scale 100 --reps 5 --out bench/results/ingest.jsonl
//
// Each figure is `measured`: wall time of chimera::ingest::ingest() (scan + read + parse +
// merge) with the files in the page cache (one untimed run first). The generated copies keep
// every file's shape; digits after a decimal point are changed per copy so that values differ.
#include "bench_env.hpp"

#include <chimera/ingest/experiment.hpp>
#include <chimera/ingest/ingest.hpp>
#include <chimera/metrics/figures.hpp>

#include <CLI/CLI.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <cmark-gfm-core-extensions.h>
#include <cmark-gfm-extension_api.h>
#include <cmark-gfm.h>
#include <fmt/format.h>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

namespace {

namespace fs = std::filesystem;
namespace ci = chimera::ingest;

using chimera::bench::cpu_model;

std::string loadavg() {
  std::ifstream in("/proc/loadavg");
  std::string one;
  in >> one;
  return one.empty() ? "unknown" : one;
}

// How many cores this process really gets now (other processes share the machine): the same
// fixed work on 1 thread and on `n` threads, effective = n * t1 / tn.
double effective_cores(unsigned n) {
  auto spin = [] {
    volatile double x = 0;
    for (long i = 0; i < 30'000'000; ++i) x = x + static_cast<double>(i) * 0.5;
  };
  auto time = [&](unsigned threads) {
    auto t0 = std::chrono::steady_clock::now();
    std::vector<std::thread> ts;
    ts.reserve(threads);
    for (unsigned i = 0; i < threads; ++i) ts.emplace_back(spin);
    for (auto& t : ts) t.join();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  double t1 = time(1);
  double tn = time(n);
  return static_cast<double>(n) * t1 / tn;
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
  // The experiment's structure and statistics over the result (single-threaded), as the
  // workflow computes them after ingestion.
  std::vector<double> experiment_ms;
  std::size_t factors = 0, configurations = 0;
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
    const auto x = ci::analyse_experiment(r);
    f.experiment_ms.push_back(x.elapsed_ms);
    f.factors = x.factors.size();
    f.configurations = x.configs.size();
  }
  return f;
}

// Parsing alone, per file type: every corpus file of the type from memory through
// ingest_buffer() on one thread (no scan, no reads), and for Markdown, cmark-gfm's own parse
// with its table extension and default allocator as the floor we build on.
struct TypeFigure {
  std::string type;
  std::size_t files = 0;
  std::uint64_t bytes = 0;
  double ms = 0;  // median over reps of the time for all files of the type
};

std::vector<TypeFigure> per_type(const fs::path& root, int reps) {
  std::vector<std::pair<ci::FileType, std::string>> docs;
  for (const auto& f : ci::ingest({root}).files) {
    std::ifstream in(f.path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    docs.emplace_back(f.type, ss.str());
  }
  std::vector<TypeFigure> out;
  auto time_all = [&](auto&& fn) {
    std::vector<double> ms;
    for (int r = 0; r < reps; ++r) {
      auto t0 = std::chrono::steady_clock::now();
      fn();
      ms.push_back(
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    }
    return median(ms);
  };
  for (auto type :
       {ci::FileType::csv, ci::FileType::json, ci::FileType::markdown, ci::FileType::text}) {
    TypeFigure t;
    t.type = std::string(ci::to_string(type));
    for (const auto& [ty, text] : docs) {
      if (ty != type) continue;
      ++t.files;
      t.bytes += text.size();
    }
    t.ms = time_all([&] {
      for (const auto& [ty, text] : docs)
        if (ty == type) (void)ci::ingest_buffer(text, ty, "bench");
    });
    out.push_back(t);
  }
  cmark_gfm_core_extensions_ensure_registered();
  cmark_syntax_extension* table = cmark_find_syntax_extension("table");
  TypeFigure cm{"md (cmark-gfm parse only)", 0, 0, 0};
  for (const auto& [ty, text] : docs) {
    if (ty != ci::FileType::markdown) continue;
    ++cm.files;
    cm.bytes += text.size();
  }
  cm.ms = time_all([&] {
    for (const auto& [ty, text] : docs) {
      if (ty != ci::FileType::markdown) continue;
      cmark_parser* p = cmark_parser_new(CMARK_OPT_DEFAULT);
      cmark_parser_attach_syntax_extension(p, table);
      cmark_parser_feed(p, text.data(), text.size());
      cmark_node_free(cmark_parser_finish(p));
      cmark_parser_free(p);
    }
  });
  out.push_back(cm);
  return out;
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
  int type_reps = 20;
  app.add_option("--type-reps", type_reps,
                 "Runs of the per-type parse figures (in memory, one thread; 0: skip)")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  if (threads_list.empty()) threads_list = {1, cores};
  const std::string cmdline = chimera::bench::command_line(argc, argv);
  const chimera::bench::Provenance provenance(argc, argv);

  const double cores_before = effective_cores(cores);
  const std::string load_before = loadavg();
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

  std::vector<TypeFigure> types;
  if (type_reps > 0) types = per_type(corpus, type_reps);

  const double cores_after = effective_cores(cores);
  fmt::print(
      "\ncores: {}, effective before/after: {:.2f}/{:.2f} (1.0 = one core's worth free), "
      "load average {} before\n",
      cores, cores_before, cores_after, load_before);
  fmt::print("\n{:<16} {:>7} {:>7} {:>9} {:>8} {:>10} {:>10} {:>9} {:>9} {:>13}\n", "corpus",
             "threads", "files", "MB", "records", "ms median", "ms min", "files/s", "MB/s",
             "experiment ms");
  fs::create_directories(
      fs::path(out_path).parent_path().empty() ? fs::path(".") : fs::path(out_path).parent_path());
  std::ofstream out(out_path, std::ios::app);
  for (const auto& f : all) {
    double med = median(f.total_ms);
    double best = *std::min_element(f.total_ms.begin(), f.total_ms.end());
    double mb = static_cast<double>(f.bytes) / 1e6;
    double files_s = static_cast<double>(f.files) / (med / 1e3);
    double mb_s = mb / (med / 1e3);
    const auto spread = chimera::metrics::mean_sd(f.total_ms);
    std::vector<double> rates;
    for (double ms : f.total_ms) rates.push_back(mb / (ms / 1e3));
    const auto rate = chimera::metrics::mean_sd(rates);
    fmt::print(
        "{:<16} {:>7} {:>7} {:>9.2f} {:>8} {:>10.2f} {:>10.2f} {:>9.0f} {:>9.1f} {:>13.1f}\n",
        f.corpus, f.threads, f.files, mb, f.records, med, best, files_s, mb_s,
        median(f.experiment_ms));
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
        // Mean and sample sd over the reps, as every published figure carries a spread.
        {"total_ms_mean", spread.mean.value_or(0)},
        {"total_ms_sd", spread.sd.value_or(0)},
        {"mb_per_s_mean", rate.mean.value_or(0)},
        {"mb_per_s_sd", rate.sd.value_or(0)},
        {"scan_ms_median", median(f.scan_ms)},
        {"parse_ms_median", median(f.parse_ms)},
        {"merge_ms_median", median(f.merge_ms)},
        {"files_per_s", files_s},
        {"mb_per_s", mb_s},
        {"mb_per_s_formula", "bytes / 1e6 / (total_ms_median / 1e3)"},
        {"experiment_ms_median", median(f.experiment_ms)},
        {"experiment_factors", f.factors},
        {"experiment_configurations", f.configurations},
        {"provenance", provenance.stamp()},
        {"compiler", __VERSION__},
        {"flags", CHIMERA_CXX_FLAGS},
        {"cpu", cpu_model()},
        {"cores", cores},
        {"effective_cores_before", cores_before},
        {"effective_cores_after", cores_after},
        {"effective_cores_formula", "cores * t(spin on 1 thread) / t(same spin on each core)"},
        {"loadavg_1m_before", load_before},
        {"command", cmdline},
    };
    out << boost::json::serialize(o) << "\n";
  }
  if (!types.empty()) {
    fmt::print("\nparsing alone, shared corpus from memory, 1 thread, median of {} runs:\n",
               type_reps);
    fmt::print("{:<28} {:>6} {:>9} {:>9} {:>9}\n", "type", "files", "MB", "ms", "MB/s");
  }
  for (const auto& t : types) {
    double mb = static_cast<double>(t.bytes) / 1e6;
    fmt::print("{:<28} {:>6} {:>9.3f} {:>9.2f} {:>9.1f}\n", t.type, t.files, mb, t.ms,
               mb / (t.ms / 1e3));
    boost::json::object o{
        {"bench", "ingest-parse-by-type"},
        {"source", "measured"},
        {"corpus", "shared (in memory)"},
        {"type", t.type},
        {"threads", 1},
        {"files", t.files},
        {"bytes", t.bytes},
        {"reps", type_reps},
        {"ms_median", t.ms},
        {"mb_per_s", mb / (t.ms / 1e3)},
        {"mb_per_s_formula", "bytes / 1e6 / (ms_median / 1e3)"},
        {"provenance", provenance.stamp()},
        {"compiler", __VERSION__},
        {"flags", CHIMERA_CXX_FLAGS},
        {"cpu", cpu_model()},
        {"cores", cores},
        {"effective_cores_before", cores_before},
        {"effective_cores_after", cores_after},
        {"command", cmdline},
    };
    out << boost::json::serialize(o) << "\n";
  }
  fmt::print("\nappended {} lines to {}\n", all.size() + types.size(), out_path);
  if (!gen.empty() && !keep) fs::remove_all(gen);
  return 0;
} catch (const std::exception& e) {
  fmt::print(stderr, "chimera_ingest_bench: {}\n", e.what());
  return 1;
}
