// The scan: recursion, order, symlink cycles, broken links, unreadable files, missing roots,
// progress and cancellation.
#include <chimera/ingest/ingest.hpp>

#include <gtest/gtest.h>

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <string>

namespace ci = chimera::ingest;
namespace fs = std::filesystem;

namespace {

class TempDir {
 public:
  TempDir() {
    path_ = fs::temp_directory_path() /
            ("chimera-scan-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter_++));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::permissions(path_ / "locked", fs::perms::owner_all, ec);
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  static inline int counter_ = 0;
  fs::path path_;
};

void write(const fs::path& p, const std::string& content) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << content;
}

const std::string kCsv = "model,tokens_s\nllama3.2:1b,181.5\n";

}  // namespace

TEST(Scan, RecursesSortsAndSurvivesLinkCycles) {
  TempDir t;
  const auto& d = t.path();
  write(d / "b/deep/er/x.csv", kCsv);
  write(d / "a.CSV", kCsv);  // extensions are case-insensitive
  write(d / "b/y.json", R"({"model": "gemma3:270m", "tokens_s": 316})");
  write(d / "b/z.markdown", "| model | tokens/s |\n| --- | --- |\n| m | 1 |\n");
  write(d / "b/notes.txt", "Tokens per second: 12\n");
  write(d / "b/image.bin", "\x89PNG");
  fs::create_directory_symlink(d, d / "b/deep/loop");      // a cycle to the root
  fs::create_directory_symlink(d / "b", d / "b/deep/up");  // and to a parent
  fs::create_symlink(d / "a.CSV", d / "b/same.csv");       // the same file twice
  fs::create_symlink(d / "missing.csv", d / "b/broken.csv");

  auto r = ci::ingest({d});
  std::vector<std::string> names;
  for (const auto& f : r.files) names.push_back(f.relative_path);
  EXPECT_EQ(names, (std::vector<std::string>{"a.CSV", "b/deep/er/x.csv", "b/notes.txt", "b/y.json",
                                             "b/z.markdown"}));
  EXPECT_EQ(r.scan.symlink_cycles, 2u);
  EXPECT_EQ(r.scan.duplicate_files, 1u);
  EXPECT_EQ(r.scan.skipped_files, 1u);
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_NE(r.errors[0].reason.find("broken symbolic link"), std::string::npos);
  EXPECT_EQ(r.records.size(), 5u);
  EXPECT_EQ(r.file_count(ci::FileType::markdown), 1u);
}

// 0 when ok.csv is read and the two unreadable entries are reported; else which check failed.
int check_unreadable(const fs::path& d) {
  auto r = ci::ingest({d});
  if (r.records.size() != 1) return 10;
  if (r.errors.size() != 2) return 11;
  if (r.errors[0].reason.find("cannot list folder") == std::string::npos) return 12;
  if (r.errors[1].reason.find("cannot open") == std::string::npos) return 13;
  if (r.errors[1].path != (d / "private.csv").string()) return 14;
  return 0;
}

TEST(Scan, UnreadableFilesAndFoldersAreReportedNotFatal) {
  TempDir t;
  const auto& d = t.path();
  write(d / "ok.csv", kCsv);
  write(d / "locked/secret.csv", kCsv);
  write(d / "private.csv", kCsv);
  fs::permissions(d / "private.csv", fs::perms::none);
  fs::permissions(d / "locked", fs::perms::none);
  if (::geteuid() != 0) {
    EXPECT_EQ(check_unreadable(d), 0);
  } else {
    // Permissions do not stop root: check as "nobody" in a child process.
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      if (::setgid(65534) != 0 || ::setuid(65534) != 0) ::_exit(2);
      ::_exit(check_unreadable(d));
    }
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 0);
  }
}

TEST(Scan, MissingRootsAndSingleFiles) {
  TempDir t;
  write(t.path() / "one.csv", kCsv);
  auto r = ci::ingest({t.path() / "nope", t.path() / "one.csv"});
  ASSERT_EQ(r.files.size(), 1u);
  EXPECT_EQ(r.files[0].relative_path, "one.csv");
  EXPECT_EQ(r.records.size(), 1u);
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_NE(r.errors[0].reason.find("check the path"), std::string::npos);
}

TEST(Scan, ProgressAndCancel) {
  TempDir t;
  for (int i = 0; i < 20; ++i) write(t.path() / ("f" + std::to_string(i) + ".csv"), kCsv);
  std::atomic<int> calls{0};
  ci::IngestOptions opts;
  opts.threads = 2;
  bool saw_done = false;
  opts.on_progress = [&](const ci::Progress& p) {
    ++calls;
    if (p.stage == ci::Progress::Stage::done) saw_done = true;
    EXPECT_LE(p.files_done, p.files_total);
    return true;
  };
  auto r = ci::ingest({t.path()}, opts);
  EXPECT_EQ(r.records.size(), 20u);
  EXPECT_EQ(calls.load(), 22);  // scanning, 20 files, done
  EXPECT_TRUE(saw_done);
  EXPECT_FALSE(r.cancelled);

  opts.threads = 1;
  opts.on_progress = [](const ci::Progress& p) {
    return p.stage != ci::Progress::Stage::parsing || p.files_done < 5;
  };
  auto c = ci::ingest({t.path()}, opts);
  EXPECT_TRUE(c.cancelled);
  EXPECT_EQ(c.records.size(), 5u);
  EXPECT_EQ(c.files.size(), 20u);
  std::size_t parsed = 0;
  for (const auto& f : c.files) parsed += f.parsed ? 1 : 0;
  EXPECT_EQ(parsed, 5u);
}

// A parsing thread keeps its JSON reader's state, its name caches and its folder descriptors
// from file to file: every file of a folder read on one thread gives what it gives alone, in
// particular a file where "errors" is a count followed by one where it is a message.
TEST(Scan, EachFileReadsAsIfAlone) {
  TempDir t;
  const auto& d = t.path();
  write(d / "a/1.json", R"({"errors": 3, "runs": [{"tokens_s": 5, "unit": "s"}], "p50": 2})");
  write(d / "a/2.json",
        R"({"errors": "Failed to connect to Ollama", "timing": {"p50": 1.5}, "tokens_s": 4})");
  write(d / "a/3.json", R"({"options": {"temperature": 0.3}, "errors": 0, "success": false})");
  write(d / "b/4.json", R"({"model": {"name": "llama3.2:1b"}, "eval_duration": 1000000})");
  write(d / "b/5.csv", kCsv);
  write(d / "b/6.md", "## Run (llama3.2:1b)\n\n- Tokens/s: 12.5\n- Errors: 2\n");
  const fs::path sample = fs::path(CHIMERA_TEST_DATA).parent_path().parent_path() / "data/sample";
  std::vector<fs::path> roots{d};
  if (fs::exists(sample)) roots.push_back(sample);
  ci::IngestOptions one;
  one.threads = 1;
  auto all = ci::ingest(roots, one);
  ASSERT_GE(all.files.size(), 6u);
  std::size_t at = 0;
  for (std::size_t f = 0; f < all.files.size(); ++f) {
    const auto& info = all.files[f];
    std::ifstream in(info.path, std::ios::binary);
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    auto alone = ci::ingest_buffer(text, info.type, info.path);
    ASSERT_EQ(info.records, alone.records.size()) << info.path;
    for (const auto& r : alone.records) {
      const auto& s = all.records[at++];
      EXPECT_EQ(s.file, f);
      EXPECT_EQ(s.metric, r.metric) << info.path << ":" << r.line;
      EXPECT_EQ(s.value, r.value) << info.path << ":" << r.line;
      EXPECT_EQ(s.unit, r.unit) << info.path << ":" << r.line;
      EXPECT_EQ(s.kind, r.kind) << info.path << ":" << r.line;
      EXPECT_EQ(s.origin, r.origin) << info.path << ":" << r.line;
      EXPECT_EQ(s.line, r.line) << info.path;
      EXPECT_EQ(s.context->config_key(), r.context->config_key()) << info.path << ":" << r.line;
      EXPECT_EQ(s.context->run, r.context->run) << info.path << ":" << r.line;
    }
    EXPECT_EQ(info.error_values, alone.error_values.size()) << info.path;
  }
  EXPECT_EQ(at, all.records.size());
}

// The walk keeps folders' descriptors open for the parse within a quarter of the open-file
// limit; beyond it, files and folders are opened by their paths, with the same result. Checked in
// a child process whose limit leaves room for 4 folders of 12.
TEST(Scan, SameResultBeyondTheDescriptorBudget) {
  TempDir t;
  const auto& d = t.path();
  for (int i = 0; i < 12; ++i)
    write(d / ("run_" + std::to_string(i)) / "sub" / "r.csv",
          "model,tokens_s\nllama3.2:1b," + std::to_string(100 + i) + "\n");
  auto full = ci::ingest({d});
  ASSERT_EQ(full.records.size(), 12u);
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    rlimit rl{};
    ::getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = 16;
    if (::setrlimit(RLIMIT_NOFILE, &rl) != 0) ::_exit(20);
    ci::IngestOptions one;
    one.threads = 1;
    auto r = ci::ingest({d}, one);
    if (!r.errors.empty()) ::_exit(21);
    if (r.records.size() != full.records.size()) ::_exit(22);
    for (std::size_t i = 0; i < r.records.size(); ++i)
      if (r.records[i].value != full.records[i].value ||
          r.records[i].source_file != full.records[i].source_file)
        ::_exit(23);
    ::_exit(0);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

namespace {

// Everything a reader can see of an ingest, as text.
std::string ingest_text(const ci::IngestResult& r) {
  std::string s;
  for (const auto& f : r.files)
    s += f.path + " parsed=" + std::to_string(f.parsed) + " records=" + std::to_string(f.records) +
         "\n";
  for (const auto& rec : r.records)
    s += std::string(rec.source_file) + ":" + std::to_string(rec.line) + " " +
         std::string(rec.metric) + "=" + std::to_string(rec.value) + " " +
         rec.context->config_key() + "\n";
  for (const auto& e : r.errors)
    s += "error " + e.path + ":" + std::to_string(e.line) + " " + e.reason + "\n";
  return s;
}

}  // namespace

// Files are read in batches through io_uring where the kernel allows it, else one at a time
// (IngestOptions::io_uring). Both give the same result, also for files that change between the
// scan and the read: one removed (cannot open), one cut short, one grown, one emptied.
TEST(Scan, BatchedReadsGiveWhatSingleReadsGive) {
  const fs::path tests_data = fs::path(CHIMERA_TEST_DATA);
  const fs::path sample = tests_data.parent_path().parent_path() / "data/sample";
  for (const fs::path& root : {tests_data, sample}) {
    if (!fs::exists(root)) continue;
    for (unsigned threads : {1u, 2u}) {
      ci::IngestOptions batched;
      batched.threads = threads;
      ci::IngestOptions single = batched;
      single.io_uring = false;
      EXPECT_EQ(ingest_text(ci::ingest({root}, batched)), ingest_text(ci::ingest({root}, single)))
          << root << ", " << threads << " threads";
    }
  }

  for (bool io_uring : {true, false}) {
    TempDir t;
    const auto& d = t.path();
    // More files than one batch holds, so that the changed ones fall in different batches.
    for (int i = 0; i < 40; ++i)
      write(d / ("run_" + std::to_string(i) + ".csv"),
            "model,tokens_s\nllama3.2:1b," + std::to_string(100 + i) + "\n");
    ci::IngestOptions options;
    options.threads = 1;
    options.io_uring = io_uring;
    // Called once the scan has sized every file, before any is read.
    options.on_progress = [&](const ci::Progress& p) {
      if (p.stage != ci::Progress::Stage::scanning) return true;
      fs::remove(d / "run_3.csv");
      write(d / "run_7.csv", "model,tokens_s\n");                                 // shorter
      write(d / "run_21.csv", "model,tokens_s\nllama3.2:1b,1\nllama3.2:1b,2\n");  // longer
      write(d / "run_30.csv", "");
      return true;
    };
    auto r = ci::ingest({d}, options);
    ASSERT_EQ(r.files.size(), 40u) << "io_uring " << io_uring;
    std::size_t cannot_open = 0;
    for (const auto& e : r.errors)
      if (e.path.ends_with("run_3.csv") && e.reason.starts_with("cannot open")) ++cannot_open;
    EXPECT_EQ(cannot_open, 1u) << ingest_text(r);
    // 36 untouched files give a record each; the shortened and emptied files none; the grown
    // one is read to its end (two rows).
    EXPECT_EQ(r.records.size(), 38u) << "io_uring " << io_uring << "\n" << ingest_text(r);
  }
}
