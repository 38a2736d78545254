// Malformed inputs of each type: a clear error each, and nothing else lost.
//
// The fixtures are in tests/ingest/data/malformed/; beside each input X is X.expected:
//   fatal: yes|no        the file was skipped (yes) or only part of it (no)
//   line: N              the line of the error (omitted: no error)
//   reason: text         a substring of the reason
//   errors: N            number of FileErrors for the file (default: 1 when line is given)
//   records: N           records harvested from the file
// Inputs too large to keep in the repository (a huge line of each type) are written by the test
// into a temporary copy of the folder, with their expectations below.
#include <chimera/ingest/ingest.hpp>

#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>

namespace ci = chimera::ingest;
namespace fs = std::filesystem;

namespace {

struct Expected {
  bool fatal = false;
  int line = 0;
  std::string reason;
  int errors = -1;
  std::size_t records = 0;
};

Expected parse_expected(const fs::path& p) {
  Expected e;
  std::ifstream in(p);
  std::string line;
  while (std::getline(in, line)) {
    auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string key = line.substr(0, colon);
    std::string value = line.substr(colon + 1);
    while (!value.empty() && value.front() == ' ') value.erase(0, 1);
    if (key == "fatal") e.fatal = value == "yes";
    if (key == "line") e.line = std::stoi(value);
    if (key == "reason") e.reason = value;
    if (key == "errors") e.errors = std::stoi(value);
    if (key == "records") e.records = std::stoul(value);
  }
  if (e.errors < 0) e.errors = e.line > 0 ? 1 : 0;
  return e;
}

class TempDir {
 public:
  TempDir() {
    path_ = fs::temp_directory_path() / ("chimera-ingest-test-" + std::to_string(::getpid()) + "-" +
                                         std::to_string(counter_++));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
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

}  // namespace

TEST(Malformed, EachFileAClearErrorAndNothingElseLost) {
  const fs::path fixtures = fs::path(CHIMERA_TEST_DATA).parent_path() / "ingest/data/malformed";
  ASSERT_TRUE(fs::is_directory(fixtures)) << fixtures;
  TempDir dir;
  std::map<std::string, Expected> expected;
  for (const auto& e : fs::directory_iterator(fixtures)) {
    if (e.path().extension() == ".expected") continue;
    fs::copy_file(e.path(), dir.path() / e.path().filename());
    expected[e.path().filename().string()] = parse_expected(e.path().string() + ".expected");
  }
  // A line of 2 MiB in each text type (the limit is 1 MiB), and a 2 MiB JSON string.
  const std::string huge(2u << 20, 'x');
  write(dir.path() / "huge_line.csv", "model,tokens_s\nllama," + huge + "\n");
  expected["huge_line.csv"] = {true, 2, "line 2 is 2097158 bytes, over the 1048576-byte limit", 1,
                               0};
  write(dir.path() / "huge_line.md", "# Title\n\n" + huge + "\n");
  expected["huge_line.md"] = {true, 3, "over the 1048576-byte limit", 1, 0};
  write(dir.path() / "huge_line.txt", "Tokens per second: 5\n" + huge + "\n");
  expected["huge_line.txt"] = {true, 2, "over the 1048576-byte limit", 1, 0};
  write(dir.path() / "huge_string.json", "{\"tokens_s\": 5,\n \"log\": \"" + huge + "\"}\n");
  expected["huge_string.json"] = {true, 2, "a JSON string at line 2 is over the 1048576-byte limit",
                                  1, 0};

  auto r = ci::ingest({dir.path()});
  ASSERT_EQ(r.files.size(), expected.size());
  for (const auto& f : r.files) {
    SCOPED_TRACE(f.relative_path);
    auto it = expected.find(f.relative_path);
    ASSERT_NE(it, expected.end());
    const Expected& want = it->second;
    std::vector<const ci::FileError*> errors;
    for (const auto& e : r.errors)
      if (e.path == f.path) errors.push_back(&e);
    ASSERT_EQ(errors.size(), static_cast<std::size_t>(want.errors));
    if (!errors.empty()) {
      EXPECT_EQ(errors[0]->line, want.line);
      EXPECT_EQ(errors[0]->fatal, want.fatal);
      EXPECT_NE(errors[0]->reason.find(want.reason), std::string::npos) << errors[0]->reason;
    }
    EXPECT_EQ(f.parsed, !want.fatal);
    EXPECT_EQ(f.records, want.records);
  }
}

TEST(Malformed, TruncatedFilesOfEachType) {
  // Every prefix of a valid file: never a crash, never a record that was not in the file.
  const std::string csv = "model,tokens_s,note\nllama3.2:1b,181.5,\"a, b\"\ngemma3:270m,316.0,x\n";
  const std::string json =
      R"({"model": "llama3.2:1b", "runs": [{"tokens_s": 181.5}, {"tokens_s": 180.5}]})";
  const std::string md = "# T\n\n| model | tokens/s |\n| --- | --- |\n| llama3.2:1b | 181.5 |\n";
  for (std::size_t n = 0; n <= csv.size(); ++n) {
    auto r = ci::ingest_buffer(csv.substr(0, n), ci::FileType::csv, "t.csv");
    EXPECT_LE(r.records.size(), 2u);
  }
  for (std::size_t n = 0; n < json.size(); ++n) {
    auto r = ci::ingest_buffer(json.substr(0, n), ci::FileType::json, "t.json");
    ASSERT_EQ(r.errors.size(), 1u) << n;
    EXPECT_TRUE(r.records.empty());
  }
  for (std::size_t n = 0; n <= md.size(); ++n) {
    auto r = ci::ingest_buffer(md.substr(0, n), ci::FileType::markdown, "t.md");
    EXPECT_LE(r.records.size(), 1u);
  }
}
