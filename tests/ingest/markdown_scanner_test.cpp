// The Markdown line scanner against cmark-gfm: every document gives the same records, error
// values and errors through both readers (IngestOptions::markdown_fast_path on and off), and the
// scanner really takes the common subset (it is not passing by leaving everything to cmark).
#include "ingest/internal.hpp"

#include <chimera/ingest/ingest.hpp>

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace ci = chimera::ingest;
namespace fs = std::filesystem;

namespace {

std::string context_text(const ci::Context* c) {
  if (c == nullptr) return "(null)";
  std::string s;
  for (auto v : {c->model, c->quantization, c->num_gpu, c->num_ctx, c->temperature, c->run}) {
    s += v;
    s += '|';
  }
  for (const auto& [k, v] : c->extra) {
    s += k;
    s += '=';
    s += v;
    s += ';';
  }
  return s;
}

// Everything a reader of the result sees, as text (so that a difference prints readably).
std::string dump(const ci::IngestResult& r) {
  std::ostringstream o;
  o.precision(17);
  for (const auto& rec : r.records)
    o << "R " << rec.line << ' ' << rec.metric << '=' << rec.value << ' ' << rec.unit << ' '
      << static_cast<int>(rec.kind) << " origin=" << rec.origin
      << " ctx=" << context_text(rec.context) << '\n';
  for (const auto& e : r.error_values)
    o << "E " << e.line << ' ' << e.metric << ' ' << e.text << " ctx=" << context_text(e.context)
      << '\n';
  for (const auto& e : r.errors) o << "F " << e.line << ' ' << e.reason << ' ' << e.fatal << '\n';
  for (const auto& f : r.files) o << "I rows=" << f.rows << '\n';
  return o.str();
}

std::string through(std::string_view doc, bool fast) {
  ci::IngestOptions opts;
  opts.markdown_fast_path = fast;
  return dump(ci::ingest_buffer(doc, ci::FileType::markdown, "doc.md", opts));
}

void expect_same(std::string_view doc, const std::string& name) {
  EXPECT_EQ(through(doc, true), through(doc, false)) << "document " << name << ":\n" << doc;
}

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

}  // namespace

TEST(MarkdownScanner, TakesTheCommonSubsetAndMatchesCmark) {
  const std::vector<std::string> taken = {
      "# llama3.1:8b-instruct-q4_0\n\nThroughput: 78.4 tok/s\nTTFT: 120 ms\n",
      "## Results (num_gpu 80, num_ctx 1024)\n\n| model | tokens/s | ttft (ms) |\n|---|---:|:-:|\n"
      "| gemma3 | 102.5 | 88 |\n| llama3 | 77.1 | 130 |\n\nAfter: 3 s\n",
      "- **Tokens/s:** 78.42\n- `TTFT`: 0.5 s\n  1. nested: 4 ms\n",
      "Intro text\nsecond line: 5 ms\n\n```\nThroughput: 999\n```\n\nThroughput: 1 tok/s\n",
      "| a | b |\n|---|---|\n| 1 |\n| 2 | 3 | 4 |\n",                       // ragged rows
      "| **model** | tokens_per_s |\n| --- | --- |\n| *gemma3* | 1.5 |\n",  // inline markup
      "# Title #\n### num_ctx=512 ###\nTokens per second: 12\n\n---\nTTFT: 40 ms\n",
      "## Heading with `code` and [link](x)\nLatency: 3 ms\n",
      "~~~python\nx: 1\n~~~\n| t | v |\n|:--|--:|\n| x | 1 |\n# h\n",
      "Model: llama3\n\n| run | tokens/s |\n|---|---|\n| 1 | 10 |\n| 2 | 11 |\n# next\n",
      "",
      "\n\n\n",
      "- DType: f32 | Backend | Mean |\n| --- | --- |\n| eager | 0.7 |\n",  // glued header
      "Best: 7 tok/s. | tag | mean |\n| --- | --- |\n| q4 | 7 |\n",         // glued header
      "<!-- a comment\n\nTTFT: 1 ms\n-->\nTTFT: 2 ms\n<!-- one line -->\n",
      "1. [Intro & Aims](#intro)\n## 1. Intro & Aims\n| **a** _b_ | c |\n|---|---|\n",
      "> quoted: 5 ms\nlazy: 3 ms\n- >1.0 = high variance\n> - nested: 2 ms\n",
      "| **Best:** 5 | ` a ` | `` x`y `` | **Tokens/s:** 7 |\n|---|---|---|---|\n",
  };
  for (std::size_t i = 0; i < taken.size(); ++i) {
    EXPECT_TRUE(ci::detail::markdown_scanner_takes(taken[i])) << taken[i];
    expect_same(taken[i], "taken #" + std::to_string(i));
  }
}

TEST(MarkdownScanner, LeavesWhatItCannotReadToCmark) {
  const std::vector<std::string> left = {
      "> ```\nquoted: 5 ms\n",                                 // code in a block quote
      "<div>\nTTFT: 5 ms\n</div>\n",                           // HTML block
      "Title\n=====\nTTFT: 5 ms\n",                            // setext heading
      "Title\n-----\nTTFT: 5 ms\n",                            // setext heading
      "text\n\n    code: 5\n",                                 // indented code
      "[ref]: http://x\nTTFT: 5 ms\n",                         // link reference definition
      "Text: 1\n| tag | mean |\n| --- | --- |\n| q4 | 7 |\n",  // a table below text
      "text: 1\n| a | b |\n|---|---|\n| 1 | 2 |\n",            // table after paragraph text
      "Tokens per second: 12\n---\n",                          // setext heading
      "- item\n  | a | b |\n  |---|---|\n  | 1 | 2 |\n",       // table in a list
      "| a \\| b | c |\n|---|---|\n| 1 | 2 |\n",               // escaped pipe
      "| a | b |\n|---|---|\n| 1 | 2 |\nlazy: 3\n",            // a row without a pipe
      "line one\rline two: 5 ms\n",                            // a lone carriage return
      "TTFT: 5 ms\r\r\nTPS: 7\r\n",                            // \r before a \r\n
      "# Run\n\nTTFT: 5\vms\n",                                // a vertical tab
      "| a | b |\n|---|---|\n| 1\f | 2 |\n",                   // a form feed in a row
      "```\ncode\f\n```\nTTFT: 5 ms\n",                        // ... even inside code
      "\tTTFT: 5 ms\n",                                        // a tab in the indentation
  };
  for (std::size_t i = 0; i < left.size(); ++i) {
    EXPECT_FALSE(ci::detail::markdown_scanner_takes(left[i])) << left[i];
    expect_same(left[i], "left #" + std::to_string(i));
  }
}

// Line endings the scanner reads itself: \r\n throughout, and a last line ending in a lone \r.
TEST(MarkdownScanner, TakesCrLfAndAFinalCarriageReturn) {
  const std::vector<std::string> taken = {
      "# Run 1\r\n\r\nTTFT: 5 ms\r\n\r\n| a | b |\r\n|---|---|\r\n| 1 | 2 |\r\n",
      "TTFT: 5 ms\nTPS: 7\r",
  };
  for (std::size_t i = 0; i < taken.size(); ++i) {
    EXPECT_TRUE(ci::detail::markdown_scanner_takes(taken[i])) << taken[i];
    expect_same(taken[i], "taken #" + std::to_string(i));
  }
}

// Every Markdown file of the shared corpus, the sample data and the test data: the same
// results, and most of them taken by the scanner.
TEST(MarkdownScanner, RealFilesGiveTheSameRecords) {
  const fs::path repo = fs::path(CHIMERA_TEST_DATA).parent_path().parent_path();
  std::vector<fs::path> roots = {repo / "tests", repo / "data", repo / "docs"};
  const fs::path shared = repo.parent_path() / "shared/corpus";
  if (fs::exists(shared)) roots.push_back(shared);
  std::size_t files = 0, taken = 0;
  for (const auto& root : roots) {
    if (!fs::exists(root)) continue;
    for (const auto& e : fs::recursive_directory_iterator(root)) {
      if (!e.is_regular_file()) continue;
      auto ext = e.path().extension().string();
      if (ext != ".md" && ext != ".markdown") continue;
      std::string doc = read_file(e.path());
      if (doc.size() >= 3 && doc.compare(0, 3, "\xEF\xBB\xBF") == 0) doc.erase(0, 3);
      ++files;
      taken += ci::detail::markdown_scanner_takes(doc) ? 1 : 0;
      expect_same(doc, e.path().string());
    }
  }
  ASSERT_GT(files, 0u);
  std::printf("[ scanner  ] %zu of %zu Markdown files read by the line scanner%s\n", taken, files,
              fs::exists(shared) ? "" : " (shared corpus absent: only this repository's files)");
  EXPECT_GE(taken * 2, files) << "the scanner should take most real files";
}

// The inputs the markdown_differential fuzz target found the two readers disagreeing on, kept
// in its seed corpus: each gives the same results now (and stays a check of that here, where
// every test run sees it, not only a fuzzing run).
TEST(MarkdownScanner, FuzzFindingsGiveTheSameRecords) {
  const fs::path repo = fs::path(CHIMERA_TEST_DATA).parent_path().parent_path();
  const fs::path seeds = repo / "fuzz/corpus/markdown_differential";
  std::size_t regressions = 0;
  for (const auto& e : fs::directory_iterator(seeds)) {
    if (!e.is_regular_file()) continue;
    regressions += e.path().filename().string().starts_with("regression-") ? 1 : 0;
    expect_same(read_file(e.path()), e.path().string());
  }
  EXPECT_GE(regressions, 11u) << "the fuzz findings kept in " << seeds.string();
}

// Random documents built from the constructs both readers know, and some only cmark reads:
// whichever reader takes a document, the results are the same.
TEST(MarkdownScanner, RandomDocumentsGiveTheSameRecords) {
  const std::vector<std::string> pieces = {
      "# llama3.1:8b-q4_0\n",
      "## num_gpu 60, num_ctx 512\n",
      "### Results ###\n",
      "#nohash\n",
      "\n",
      "\n",
      "Throughput: 78.4 tok/s\n",
      "TTFT: 0.12 s\n",
      "**Mean:** 12 ms\n",
      "- tokens/s: 55\n",
      "  - nested: 5 ms\n",
      "1. first: 3\n",
      "text without numbers\n",
      "| model | tokens/s | ttft_ms |\n|---|---|---|\n",
      "| gemma3 | 10 | 100 |\n",
      "| *x* | `7` | n/a |\n",
      "| 1 | 2 |\n",
      "```\ncode: 1\n```\n",
      "---\n",
      "***\n",
      "    indented: 4\n",
      "> quote: 1\n",
      "===\n",
      "<b>html</b>: 3\n",
      "| lone pipe\n",
      "|---|---|\n",
      "Model: gemma3\n",
      "Temperature: 0.8\n",
      "_emph_: 5 ms\n",
      "a_b_c: 4 tok/s\n",
      "[x](y): 1\n",
      "&amp;: 2\n",
      "Run 3\n",
      "Average: 7 ms\n",
      "- glued: 1 | a | b |\n",
      "x. | a | b | c |\n",
      "<!-- c -->\n",
      "<!--\n",
      "-->\n",
      "## 2. Results & *more* `x`\n",
      "| 1. a & b | [l](u) |\n",
      "[ref]: /u\n",
      "[open\n",
      "| a |\n|:-:|\n",
      "+ item: 3 ms\n",
      "  continued: 2\n",
      "\n    code: 9\n",
      "> q: 1 ms\n",
      ">\n",
      "> # h\n",
      "- > x: 2\n",
      ">     code: 3\n",
      "> | a |\n",
      "| **a:** 1 | *b* | ***c*** | ** d** | **e * | `f` | ` g ` | `` h`i `` | `j |\n",
      "## **Bold** heading *x*y* a**b**c\n",
      "| _u_ | __v__ | *w_x* | **y**z | \\* |\n",
      "| **é** | *a.*b | a*.b* | *(x)* | **x**. |\n",
      "### `code` & more\n",
  };
  std::mt19937 rng(12345);
  std::uniform_int_distribution<std::size_t> pick(0, pieces.size() - 1);
  std::uniform_int_distribution<int> length(1, 25);
  std::size_t taken = 0;
  const int documents = 3000;
  for (int d = 0; d < documents; ++d) {
    std::string doc;
    for (int n = length(rng); n > 0; --n) doc += pieces[pick(rng)];
    taken += ci::detail::markdown_scanner_takes(doc) ? 1 : 0;
    expect_same(doc, "random #" + std::to_string(d));
    if (HasFailure()) break;
  }
  std::printf("[ scanner  ] %zu of %d random documents read by the line scanner\n", taken,
              documents);
  EXPECT_GT(taken, 100u);
}
