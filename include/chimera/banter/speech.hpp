// Streaming text for speech: model output arrives a token at a time; a text-to-speech engine
// wants whole sentences (or clauses) as early as possible, and never the model's reasoning.
//
// ThinkSplitter separates reasoning from spoken text in a stream: text inside <think>...</think>
// (or <thinking>...</thinking>) is thinking, the rest is spoken. A tag split over several tokens
// is held back until it is complete, so no half tag ever reaches either side.
//
// NamePrefix drops the speaker's own name when a model starts its line with it ("Mira: Hello"
// becomes "Hello"): chat models given a transcript of "Name: text" lines often do.
//
// SentenceSplitter cuts spoken text into sentences (after . ! ? … followed by a space or the end,
// closing quotes and brackets kept with their sentence; not after abbreviations such as "Mr." or
// initials, nor inside numbers such as 3.14) and, in clause mode, also after , ; : and dashes once
// the clause is at least `min_clause_chars` long. A piece longer than `max_chars` is cut at its
// last space. Each piece is trimmed; empty pieces are never emitted.
//
// Thread safety: none; one object per stream.
//
// Example:
//   chimera::banter::SentenceSplitter s;
//   for (auto piece : {"Hel", "lo there. How", " are you?"})
//     for (auto& sentence : s.push(piece)) speak(sentence);
//   for (auto& sentence : s.finish()) speak(sentence);   // "Hello there.", "How are you?"
#pragma once

#include <chimera/banter/scene_config.hpp>

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace chimera::banter {

class ThinkSplitter {
 public:
  struct Parts {
    std::string spoken;
    std::string thinking;
  };
  Parts push(std::string_view text);
  Parts finish();  // releases what was held back (a tag that never completed is spoken text)
  bool in_thinking() const { return in_thinking_; }

 private:
  std::string held_;
  bool in_thinking_ = false;
};

class NamePrefix {
 public:
  explicit NamePrefix(std::string name) : name_(std::move(name)) {}
  std::string push(std::string_view text);
  std::string finish();

 private:
  std::string name_;
  std::string held_;
  bool decided_ = false;
};

struct SplitterOptions {
  SplitMode mode = SplitMode::sentence;
  std::size_t min_clause_chars = 24;
  std::size_t max_chars = 200;
};

class SentenceSplitter {
 public:
  explicit SentenceSplitter(SplitterOptions options = {}) : opt_(options) {}
  // Adds text; returns the pieces that are now complete.
  std::vector<std::string> push(std::string_view text);
  // The rest, at the end of the line.
  std::vector<std::string> finish();

 private:
  void scan(std::vector<std::string>& out, bool at_end);
  void emit(std::size_t end, std::vector<std::string>& out);

  SplitterOptions opt_;
  std::string buf_;
  std::size_t scanned_ = 0;  // bytes of buf_ already looked at
};

}  // namespace chimera::banter
