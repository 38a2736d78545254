// Turning token pieces into text a caller can use (private header; tested directly).
//
// Utf8Assembler: token pieces are bytes, and a multi-byte character may be split over several
// tokens. push() returns only complete, valid UTF-8; an incomplete tail waits for the next
// piece; bytes that can never become a valid character are dropped and counted.
//
// StopMatcher: holds back text that might be the start of a stop string, and cuts the text at
// the first stop string found.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace chimera::backends {

class Utf8Assembler {
 public:
  // Appends a piece and returns the text that is now complete.
  std::string push(std::string_view piece);
  // At the end of a stream: an incomplete tail can no longer complete; it is dropped.
  void finish();
  int64_t dropped_bytes() const { return dropped_; }

 private:
  std::string pending_;
  int64_t dropped_ = 0;
};

class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops);
  // Adds text; returns what can be released now. Sets stopped() when a stop string appeared:
  // the released text then ends just before it, and later input is ignored.
  std::string push(std::string_view text);
  // Releases what was held back (at the end of a stream that did not stop on a stop string).
  std::string flush();
  bool stopped() const { return stopped_; }

 private:
  std::vector<std::string> stops_;
  std::string held_;
  bool stopped_ = false;
};

}  // namespace chimera::backends
