// A streamed record read without building its JSON tree (private header): OpenAI-compatible
// Server-Sent Events and Ollama's NDJSON.
//
// Nearly every record of a stream is a token: {"choices":[{"index":0,"delta":{"content":"..."},
// "finish_reason":null}],"model":"...",...} or {"model":"...","message":{"role":"assistant",
// "content":"..."},"done":false}. Parsing each into a boost::json::value and looking its keys up
// one by one was a third of the instructions `serve` spent per proxied request (callgrind).
// StreamChunkScanner reads such a record in one pass of boost::json's SAX parser, keeping only
// the fields a token needs (and an OpenAI stream's usage and timings, and Ollama's final
// statistics); any record it is not sure of (an error, tool calls, several choices, a repeated
// key, a value of an unusual type, malformed JSON) it declines, and the decoder parses that record
// whole as before. The two paths give the same tokens, figures and errors
// (tests/backends/stream_chunk_test.cpp and fuzz/stream_chunk_differential_fuzzer.cpp compare
// them).
#pragma once

#include <boost/json/value.hpp>

#include <memory>
#include <string>
#include <string_view>

namespace chimera::backends {

// The fields of one record. Numbers are kept as the JSON value the tree would hold (an int64,
// uint64, double, bool or null), so that the same checks apply to them; strings are unescaped.
struct StreamChunk {
  // Both protocols.
  boost::json::value server_sent_ns;  // null when absent
  bool has_model = false;             // "model" was a string
  std::string model;
  // OpenAI-compatible.
  boost::json::value id_slot;  // null when absent
  bool has_choice = false;     // "choices" held one object
  boost::json::value index;
  bool has_delta = false;  // the choice's "delta" was an object
  bool has_content = false;
  std::string content;
  bool has_reasoning_content = false;
  std::string reasoning_content;
  bool has_reasoning = false;
  std::string reasoning;
  bool has_text = false;  // the choice's "text" (completions)
  std::string text;
  bool has_finish = false;  // "finish_reason" was a string
  std::string finish;
  bool has_usage = false;  // "usage" was an object
  boost::json::value completion_tokens;
  boost::json::value prompt_tokens;
  bool has_usage_details = false;  // its "prompt_tokens_details" was an object
  boost::json::value cached_tokens;
  bool has_timings = false;  // llama-server's "timings" was an object
  boost::json::value prompt_ms;
  boost::json::value predicted_ms;
  boost::json::value predicted_per_second;
  boost::json::value cache_n;
  boost::json::value prompt_n;
  boost::json::value predicted_n;
  // Ollama.
  bool done = false;         // "done" was true: the final record, with the statistics below
  bool has_message = false;  // "message" was an object (chat)
  bool has_message_content = false;
  std::string message_content;
  bool has_message_thinking = false;
  std::string message_thinking;
  bool has_response = false;  // "response" (generate)
  std::string response;
  bool has_thinking = false;  // the record's own "thinking" (generate)
  std::string thinking;
  bool has_done_reason = false;  // "done_reason" was a string
  std::string done_reason;
  boost::json::value total_duration;  // null when absent
  boost::json::value load_duration;
  boost::json::value prompt_eval_count;
  boost::json::value prompt_eval_duration;
  boost::json::value eval_count;
  boost::json::value eval_duration;
};

enum class StreamProtocol { openai, ollama };

// Reads records one after another; keeps its buffers between them (no allocation per record
// once they have grown to the records' size).
class StreamChunkScanner {
 public:
  explicit StreamChunkScanner(StreamProtocol protocol);
  ~StreamChunkScanner();
  StreamChunkScanner(const StreamChunkScanner&) = delete;
  StreamChunkScanner& operator=(const StreamChunkScanner&) = delete;

  // True when `text` is one JSON object of the common shape, with its fields in `chunk()`;
  // false when the record must be parsed whole.
  bool scan(std::string_view text);
  const StreamChunk& chunk() const;

 private:
  struct Impl;
  // Made once per request and 1.4 KiB (boost::json's parser): its memory comes from a per-thread
  // list of freed blocks (core/recycling_allocator.hpp) rather than malloc's shared bins.
  struct Drop {
    void operator()(Impl* impl) const;
  };
  std::unique_ptr<Impl, Drop> impl_;
};

}  // namespace chimera::backends
