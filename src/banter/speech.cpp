#include <chimera/banter/speech.hpp>
#include <chimera/core/text.hpp>

#include <algorithm>
#include <array>
#include <cctype>

namespace chimera::banter {

namespace {

constexpr std::array<std::string_view, 2> kOpenTags = {"<think>", "<thinking>"};
constexpr std::array<std::string_view, 2> kCloseTags = {"</think>", "</thinking>"};

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f';
}

using text::trim;
constexpr char lower(char c) {
  return text::to_lower(c);
}

bool iequals_prefix(std::string_view text, std::string_view prefix) {
  if (text.size() < prefix.size()) return false;
  for (std::size_t i = 0; i < prefix.size(); ++i) {
    if (lower(text[i]) != lower(prefix[i])) return false;
  }
  return true;
}

// Closing quotes and brackets that stay with the sentence they end.
bool is_closer(std::string_view s, std::size_t i, std::size_t& len) {
  const char c = s[i];
  if (c == '"' || c == '\'' || c == ')' || c == ']' || c == '*') {
    len = 1;
    return true;
  }
  // ” ’ » in UTF-8
  for (std::string_view u : {"\xE2\x80\x9D", "\xE2\x80\x99", "\xC2\xBB"}) {
    if (s.substr(i, u.size()) == u) {
      len = u.size();
      return true;
    }
  }
  return false;
}

// Sentence-ending marks: . ! ? and … (ASCII run or the single character).
bool is_terminator(std::string_view s, std::size_t i, std::size_t& len) {
  const char c = s[i];
  if (c == '.' || c == '!' || c == '?') {
    len = 1;
    return true;
  }
  if (s.substr(i, 3) == "\xE2\x80\xA6") {  // …
    len = 3;
    return true;
  }
  return false;
}

// Full-width marks end a sentence without a space after them.
bool is_cjk_terminator(std::string_view s, std::size_t i, std::size_t& len) {
  for (std::string_view u : {"\xE3\x80\x82", "\xEF\xBC\x81", "\xEF\xBC\x9F"}) {  // 。！？
    if (s.substr(i, u.size()) == u) {
      len = u.size();
      return true;
    }
  }
  return false;
}

// A UTF-8 sequence that may be incomplete at the end of the buffer: wait for more.
bool maybe_incomplete_mark(std::string_view s, std::size_t i) {
  const auto c = static_cast<unsigned char>(s[i]);
  return (c == 0xE2 || c == 0xE3 || c == 0xEF || c == 0xC2) && s.size() - i < 3;
}

bool abbreviation_before(std::string_view s, std::size_t dot) {
  std::size_t b = dot;
  while (b > 0 && (std::isalpha(static_cast<unsigned char>(s[b - 1])) || s[b - 1] == '.')) --b;
  std::string word;
  for (std::size_t i = b; i < dot; ++i) word += lower(s[i]);
  if (word.empty()) return false;
  if (word.size() == 1 && std::isupper(static_cast<unsigned char>(s[b]))) return true;  // initials
  static constexpr std::array<std::string_view, 22> kAbbrev = {
      "mr",  "mrs", "ms",   "dr",  "st", "jr",  "sr",  "prof", "vs",  "etc",    "e.g",
      "i.e", "mt",  "capt", "sgt", "lt", "col", "gen", "rev",  "fig", "approx", "no"};
  return std::find(kAbbrev.begin(), kAbbrev.end(), word) != kAbbrev.end();
}

using text::utf8_length;

}  // namespace

// ---------------------------------------------------------------------------- ThinkSplitter

ThinkSplitter::Parts ThinkSplitter::push(std::string_view text) {
  held_.append(text);
  Parts out;
  std::size_t i = 0;
  while (i < held_.size()) {
    const std::size_t lt = held_.find('<', i);
    std::string& side = in_thinking_ ? out.thinking : out.spoken;
    if (lt == std::string::npos) {
      side.append(held_, i, std::string::npos);
      i = held_.size();
      break;
    }
    side.append(held_, i, lt - i);
    const std::string_view rest = std::string_view(held_).substr(lt);
    const auto& tags = in_thinking_ ? kCloseTags : kOpenTags;
    bool matched = false;
    bool partial = false;
    for (std::string_view tag : tags) {
      if (rest.size() >= tag.size() && iequals_prefix(rest, tag)) {
        matched = true;
        i = lt + tag.size();
        in_thinking_ = !in_thinking_;
        break;
      }
      if (rest.size() < tag.size() && iequals_prefix(tag, rest)) partial = true;
    }
    if (matched) continue;
    if (partial) {  // may still become a tag: wait for more text
      i = lt;
      held_.erase(0, i);
      return out;
    }
    side.push_back('<');
    i = lt + 1;
  }
  held_.clear();
  return out;
}

ThinkSplitter::Parts ThinkSplitter::finish() {
  Parts out;
  (in_thinking_ ? out.thinking : out.spoken) = std::move(held_);
  held_.clear();
  return out;
}

// ---------------------------------------------------------------------------- NamePrefix

std::string NamePrefix::push(std::string_view text) {
  if (decided_ || name_.empty()) return std::string(text);
  held_.append(text);
  std::size_t start = 0;
  while (start < held_.size() && is_space(held_[start])) ++start;
  const std::string_view rest = std::string_view(held_).substr(start);
  const std::string prefix = name_ + ":";
  if (rest.size() < prefix.size()) {
    if (iequals_prefix(prefix, rest)) return {};  // could still be "Name:"
    decided_ = true;
    return std::move(held_);
  }
  decided_ = true;
  std::string out;
  if (iequals_prefix(rest, prefix)) {
    out.assign(rest.substr(prefix.size()));
  } else {
    out = std::move(held_);
  }
  held_.clear();
  return out;
}

std::string NamePrefix::finish() {
  decided_ = true;
  std::string out = std::move(held_);
  held_.clear();
  return out;
}

// ---------------------------------------------------------------------------- SentenceSplitter

void SentenceSplitter::emit(std::size_t end, std::vector<std::string>& out) {
  const std::string_view piece = trim(std::string_view(buf_).substr(0, end));
  if (!piece.empty()) out.emplace_back(piece);
  buf_.erase(0, end);
  scanned_ = 0;
}

void SentenceSplitter::scan(std::vector<std::string>& out, bool at_end) {
  std::size_t i = scanned_;
  while (i < buf_.size()) {
    const std::string_view s = buf_;
    std::size_t len = 0;
    const char c = s[i];
    if (c == '\n' || c == '\r') {
      emit(i + 1, out);
      i = 0;
      continue;
    }
    if (!at_end && maybe_incomplete_mark(s, i)) {
      scanned_ = i;
      return;
    }
    if (is_cjk_terminator(s, i, len)) {
      std::size_t j = i + len;
      std::size_t cl = 0;
      while (j < s.size() && is_closer(s, j, cl)) j += cl;
      emit(j, out);
      i = 0;
      continue;
    }
    if (is_terminator(s, i, len)) {
      std::size_t j = i;
      std::size_t tl = 0;
      while (j < s.size() && is_terminator(s, j, tl)) j += tl;
      const std::size_t run_end = j;
      std::size_t cl = 0;
      while (j < s.size() && is_closer(s, j, cl)) j += cl;
      if (j >= s.size() || (!at_end && maybe_incomplete_mark(s, j))) {
        if (!at_end) {  // the next character decides
          scanned_ = i;
          return;
        }
        emit(j, out);
        i = 0;
        continue;
      }
      const bool single_dot = c == '.' && run_end == i + 1;
      if (is_space(s[j]) && !(single_dot && abbreviation_before(s, i))) {
        emit(j, out);
        i = 0;
        continue;
      }
      i = j;
      continue;
    }
    if (opt_.mode == SplitMode::clause) {
      std::size_t end = 0;
      bool wait = false;
      if (c == ',' || c == ';' || c == ':') {
        if (i + 1 < s.size()) {
          if (is_space(s[i + 1])) end = i + 1;
        } else {
          wait = !at_end;  // the next character decides
        }
      } else if (c == ' ') {
        // A dash between spaces: " - ", " — ", " – ".
        const std::string_view rest = s.substr(i + 1);
        for (std::string_view dash : {"-", "\xE2\x80\x94", "\xE2\x80\x93"}) {
          const std::string pattern = std::string(dash) + " ";
          if (rest.size() >= pattern.size()) {
            if (rest.substr(0, pattern.size()) == pattern) end = i + 1 + dash.size();
          } else if (std::string_view(pattern).substr(0, rest.size()) == rest) {
            wait = wait || !at_end;
          }
        }
      }
      if (end > 0 && utf8_length(trim(s.substr(0, end))) >= opt_.min_clause_chars) {
        emit(end, out);
        i = 0;
        continue;
      }
      if (end == 0 && wait) {
        scanned_ = i;
        return;
      }
    }
    ++i;
  }
  scanned_ = i;
  // Too long without a boundary: cut at the last space, so speech is never starved.
  if (utf8_length(buf_) > opt_.max_chars) {
    std::size_t limit = 0;
    for (std::size_t chars = 0; limit < buf_.size(); ++limit) {
      if ((static_cast<unsigned char>(buf_[limit]) & 0xC0) != 0x80 && chars++ == opt_.max_chars) {
        break;
      }
    }
    const std::size_t sp = buf_.find_last_of(" \t", limit);
    if (sp != std::string::npos && sp > 0) {
      emit(sp, out);
      scan(out, at_end);
    }
  }
}

std::vector<std::string> SentenceSplitter::push(std::string_view text) {
  std::vector<std::string> out;
  buf_.append(text);
  scan(out, false);
  return out;
}

std::vector<std::string> SentenceSplitter::finish() {
  std::vector<std::string> out;
  scan(out, true);
  emit(buf_.size(), out);
  return out;
}

}  // namespace chimera::banter
