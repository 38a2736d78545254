// A streamed record read by StreamChunkScanner (without the JSON tree) and parsed whole must give
// the same tokens, figures, warnings and errors (the OpenAI-compatible and Ollama decoders with
// their scanner on and off, src/backends/stream_chunk.hpp). Aborts on the first difference.
//
// Input: the record's bytes, read four ways: as the OpenAI-compatible body
// "data: <input>\n\ndata: [DONE]\n\n" of a chat and of a completions stream, and as the Ollama
// body "<input>\n" of a chat and of a generate stream.
#include "backends/ollama.hpp"
#include "backends/openai.hpp"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

namespace {

namespace cb = chimera::backends;

// What the decoder handed on, as one string to compare.
class Trace final : public cb::Emitter {
 public:
  bool token(std::string_view text, std::string_view thinking,
             const chimera::ToolCall* call) override {
    out += "T " + std::string(text) + '\x1f' + std::string(thinking) + '\x1f' +
           (call != nullptr ? call->name : "") + '\n';
    return true;
  }
  bool tool_call(std::size_t index, std::string_view delta) override {
    out += "C " + std::to_string(index) + ' ' + std::string(delta) + '\n';
    return true;
  }
  chimera::Completion& completion() override { return c; }
  void server_sent(int64_t ns) override { out += "S " + std::to_string(ns) + '\n'; }

  std::string done() {
    out += "M " + c.model + "\nF " + std::to_string(static_cast<int>(c.finish)) + ' ' +
           c.finish_raw + "\nE " + c.error.message + '\n';
    if (c.server.slot_id) out += "slot " + std::to_string(*c.server.slot_id) + '\n';
    if (c.figures.tokens_out) out += "out " + std::to_string(*c.figures.tokens_out) + '\n';
    for (const auto& w : c.warnings) out += "W " + w + '\n';
    return out;
  }

  std::string out;
  chimera::Completion c;
};

std::string decode(const std::string& body, bool ollama, bool chat, bool scan) {
  auto d = ollama ? cb::make_ollama_decoder(chat, /*stream=*/true, 1 << 16, "http://fuzz", scan)
                  : cb::make_openai_decoder(chat, /*stream=*/true, 1 << 16, "http://fuzz", scan);
  Trace t;
  if (d->on_bytes(body, t)) d->on_end(t);
  return t.done();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string record(reinterpret_cast<const char*>(data), size);
  const std::string sse = "data: " + record + "\n\ndata: [DONE]\n\n";
  const std::string ndjson = record + "\n";
  for (const bool ollama : {false, true}) {
    for (const bool chat : {true, false}) {
      const std::string& body = ollama ? ndjson : sse;
      const std::string scanned = decode(body, ollama, chat, true);
      const std::string whole = decode(body, ollama, chat, false);
      if (scanned != whole) {
        std::fprintf(stderr,
                     "stream_chunk_differential: the paths differ (%s, %s)\n--- scanned\n%s"
                     "--- whole\n%s",
                     ollama ? "ollama" : "openai", chat ? "chat" : "not chat", scanned.c_str(),
                     whole.c_str());
        std::abort();
      }
    }
  }
  return 0;
}
