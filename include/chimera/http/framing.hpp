// Incremental record framing for streamed HTTP bodies: NDJSON (Ollama) and Server-Sent Events
// (OpenAI-compatible servers).
//
// HTTP chunk boundaries are not record boundaries: a read may end in the middle of a record, of
// a UTF-8 character, or between the '\r' and '\n' of a line ending. These framers take bytes in
// whatever pieces they arrive and hand out whole records, identically for any split.
//
// Thread safety: none; one framer per stream.
//
// Example:
//   chimera::http::NdjsonFramer f(1 << 20);
//   f.feed(bytes, [](std::string_view line) { handle(line); return true; });
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>

namespace chimera::http {

enum class FrameStatus {
  ok,        // all bytes consumed
  too_long,  // a record grew past the limit; the stream cannot be trusted any more
  stopped,   // the record callback returned false
};

// Newline-delimited JSON: one record per line. "\n" and "\r\n" end a line; empty lines are
// skipped. The record excludes the line ending.
class NdjsonFramer {
 public:
  using OnRecord = std::function<bool(std::string_view line)>;
  explicit NdjsonFramer(std::size_t max_record_bytes) : max_(max_record_bytes) {}

  FrameStatus feed(std::string_view bytes, const OnRecord& on_record);
  // At end of stream: a last line without its newline is still a record.
  FrameStatus finish(const OnRecord& on_record);
  std::size_t buffered() const { return line_.size(); }

 private:
  std::size_t max_;
  std::string line_;
};

// One Server-Sent Event.
struct SseEvent {
  std::string_view event;  // the `event:` field; empty means "message"
  std::string_view data;   // `data:` lines joined with '\n'
  std::string_view id;
};

// Server-Sent Events per the WHATWG HTML standard: lines end with "\r\n", "\n" or "\r"; an empty
// line dispatches the event; "data:" lines accumulate; lines starting with ':' are comments; one
// space after the colon is dropped. Events with no data line are not dispatched.
class SseFramer {
 public:
  using OnEvent = std::function<bool(const SseEvent& event)>;
  explicit SseFramer(std::size_t max_record_bytes) : max_(max_record_bytes) {}

  FrameStatus feed(std::string_view bytes, const OnEvent& on_event);
  // At end of stream. Returns true when an event had started but was never terminated by an
  // empty line (the standard drops it; callers may report a truncated stream).
  bool has_unterminated_event() const { return !line_.empty() || has_data_ || !event_.empty(); }

 private:
  FrameStatus on_line(std::string_view line, const OnEvent& on_event);

  std::size_t max_;
  std::string line_;
  std::string data_;
  std::string event_;
  std::string id_;
  bool has_data_ = false;
  bool after_cr_ = false;  // the previous byte was '\r': a following '\n' belongs to it
};

}  // namespace chimera::http
