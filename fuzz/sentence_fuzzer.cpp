// Speech text for text-to-speech (banter/speech.hpp): the think-tag splitter, the speaker-name
// prefix and the sentence splitter, fed in token-sized pieces. Checked: nothing spoken or
// thought is lost or invented (the pieces, whitespace aside, are the input in order), every
// piece is trimmed and non-empty, and no half tag reaches either side.
//
// Input: [mode byte][split byte][text...].
#include "support/splits.hpp"

#include <chimera/banter/speech.hpp>
#include <chimera/core/text.hpp>

#include <cstdio>
#include <cstdlib>
#include <string>

namespace {

// The splitter's own notion of white space (chimera/core/text.hpp).
bool is_space(char c) {
  return chimera::text::is_space(c);
}

std::string without_space(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (!is_space(c)) out.push_back(c);
  }
  return out;
}

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "%s\n", what);
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  using namespace chimera::banter;
  const std::string_view text(reinterpret_cast<const char*>(data) + 2, size - 2);
  const auto pieces = chimera::fuzz::cut(text, data[1], 12);

  SplitterOptions opts;
  opts.mode = (data[0] & 1) != 0 ? SplitMode::clause : SplitMode::sentence;
  opts.min_clause_chars = (data[0] >> 1) % 32;
  opts.max_chars = 8 + (data[0] >> 2) * 4;

  ThinkSplitter think;
  NamePrefix name("Mira");
  SentenceSplitter sentences(opts);
  std::string spoken, thinking, named;
  std::vector<std::string> out;
  auto take = [&](std::vector<std::string> v) {
    for (auto& s : v) out.push_back(std::move(s));
  };
  for (std::string_view piece : pieces) {
    auto parts = think.push(piece);
    spoken += parts.spoken;
    thinking += parts.thinking;
    std::string n = name.push(parts.spoken);
    named += n;
    take(sentences.push(n));
  }
  auto last = think.finish();
  spoken += last.spoken;
  thinking += last.thinking;
  std::string n = name.push(last.spoken);
  n += name.finish();
  named += n;
  take(sentences.push(n));
  take(sentences.finish());

  // The think splitter only removes whole tags: the two sides together hold every other byte.
  ThinkSplitter whole;
  auto at_once = whole.push(text);
  auto at_end = whole.finish();
  if (at_once.spoken + at_end.spoken != spoken || at_once.thinking + at_end.thinking != thinking) {
    fail("ThinkSplitter output depends on how the text is split");
  }
  std::string joined;
  for (const auto& s : out) {
    if (s.empty() || is_space(s.front()) || is_space(s.back())) fail("an untrimmed or empty piece");
    joined += s;
  }
  if (without_space(joined) != without_space(named)) {
    fail("the sentence splitter lost or invented text");
  }
  return 0;
}
