// A streamed record read by StreamChunkScanner (without the JSON tree) and parsed whole must give
// the same tokens, figures, warnings and errors (the OpenAI-compatible and Ollama decoders with
// their scanner on and off, src/backends/stream_chunk.hpp); so must an OpenAI-compatible decoder
// that relays the events (Request::relay), which also hands each token the events that brought
// it. Aborts on the first difference.
//
// Input: the record's bytes, read four ways: as the OpenAI-compatible body
// "data: <input>\n\ndata: [DONE]\n\n" of a chat and of a completions stream, and as the Ollama
// body "<input>\n" of a chat and of a generate stream.
#include "backends/ollama.hpp"
#include "backends/openai.hpp"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>

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
  void relay(std::string_view events) override { relayed += events; }

  template <typename T>
  void figure(const char* name, const std::optional<T>& v) {
    if (!v) return;
    char buf[64];
    if constexpr (std::is_floating_point_v<T>) {
      std::snprintf(buf, sizeof buf, " %s=%.17g", name, *v);
    } else {
      std::snprintf(buf, sizeof buf, " %s=%lld", name, static_cast<long long>(*v));
    }
    out += buf;
  }

  std::string done() {
    out += "M " + c.model + "\nF " + std::to_string(static_cast<int>(c.finish)) + ' ' +
           c.finish_raw + "\nE " + c.error.message + "\nN";
    const auto& f = c.figures;
    const auto& s = c.server;
    figure("out", f.tokens_out);
    figure("in", f.tokens_in);
    figure("cached", f.prompt_tokens_cached);
    figure("ttft_server", f.ttft_server_ms);
    figure("tps_server", f.decode_tps_server);
    figure("slot", s.slot_id);
    figure("prompt_ms", s.prompt_ms);
    figure("predicted_ms", s.predicted_ms);
    figure("predicted_per_second", s.predicted_per_second);
    figure("cache_n", s.cache_n);
    figure("prompt_eval_count", s.prompt_eval_count);
    figure("eval_count", s.eval_count);
    figure("total", s.total_duration_ns);
    figure("load", s.load_duration_ns);
    figure("prompt_eval", s.prompt_eval_duration_ns);
    figure("eval", s.eval_duration_ns);
    out += '\n';
    for (const auto& w : c.warnings) out += "W " + w + '\n';
    return out;
  }

  std::string out;
  std::string relayed;  // the events handed to the tokens (relay only), not compared
  chimera::Completion c;
};

std::string decode(const std::string& body, bool ollama, bool chat, bool scan, bool relay = false) {
  auto d =
      ollama ? cb::make_ollama_decoder(chat, /*stream=*/true, 1 << 16, "http://fuzz", scan)
             : cb::make_openai_decoder(chat, /*stream=*/true, 1 << 16, "http://fuzz", scan, relay);
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
      const std::string relayed = ollama ? scanned : decode(body, ollama, chat, true, true);
      if (scanned != whole || relayed != scanned) {
        std::fprintf(stderr,
                     "stream_chunk_differential: the paths differ (%s, %s)\n--- scanned\n%s"
                     "--- whole\n%s--- relaying\n%s",
                     ollama ? "ollama" : "openai", chat ? "chat" : "not chat", scanned.c_str(),
                     whole.c_str(), relayed.c_str());
        std::abort();
      }
    }
  }
  return 0;
}
