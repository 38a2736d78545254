// What decoding a streamed record costs: the OpenAI-compatible and Ollama decoders with their
// StreamChunkScanner (no JSON tree; src/backends/stream_chunk.hpp) and without it (every record
// parsed into a boost::json::value and looked up key by key), over the records real servers
// send: llama-server's and the synthetic server's token records and final records, and Ollama's.
//
// Each case decodes one stream of --records records, --reps times, alternating the paths;
// prints the median time per record of each and their ratio. For OpenAI's token records, a
// third path: the decoder that also keeps each event as it came for the token that it brings
// (Request::relay, `serve --relay`).
//
//   chimera_stream_chunk_bench [--records 10000] [--reps 15]
#include "backends/ollama.hpp"
#include "backends/openai.hpp"

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

namespace {

using namespace chimera;
using namespace chimera::backends;

// Takes what a decoder hands on and keeps nothing but a count, as cheaply as a caller can.
class CountingEmitter final : public Emitter {
 public:
  bool token(std::string_view text, std::string_view thinking, const ToolCall*) override {
    bytes += text.size() + thinking.size();
    return true;
  }
  bool tool_call(std::size_t, std::string_view) override { return true; }
  Completion& completion() override { return c; }
  void server_sent(int64_t ns) override { sent += ns; }
  void relay(std::string_view events) override { relayed += events.size(); }

  std::size_t bytes = 0;
  std::size_t relayed = 0;
  int64_t sent = 0;
  Completion c;
};

struct Case {
  const char* name;
  bool ollama;
  bool token;          // a token record (else a final one)
  std::string record;  // one record, without its framing
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Nanoseconds per record for one pass over `body` (`records` records).
double decode_ns(const Case& c, const std::string& body, int records, bool scan,
                 bool relay = false) {
  auto d = c.ollama ? make_ollama_decoder(true, true, 1 << 20, "http://bench", scan)
                    : make_openai_decoder(true, true, 1 << 20, "http://bench", scan, relay);
  CountingEmitter e;
  const auto t0 = std::chrono::steady_clock::now();
  const bool ok = d->on_bytes(body, e);
  const auto t1 = std::chrono::steady_clock::now();
  if (!ok || e.c.error) {
    fmt::print(stderr, "chunk_bench: {} failed: {}\n", c.name, e.c.error.message);
    std::exit(1);
  }
  return std::chrono::duration<double, std::nano>(t1 - t0).count() / records;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Streamed-record decoding with and without StreamChunkScanner"};
  int records = 10000;
  int reps = 15;
  app.add_option("--records", records, "Records per stream")->check(CLI::Range(1, 10000000));
  app.add_option("--reps", reps, "Repetitions of each path, alternating")
      ->check(CLI::Range(1, 1000));
  CLI11_PARSE(app, argc, argv);

  const std::vector<Case> cases = {
      {"llama-server token", false, true,
       R"({"choices":[{"finish_reason":null,"index":0,"delta":{"content":" once"}}],"created":1764950000,"id":"chatcmpl-Vb1x","model":"tiny","system_fingerprint":"b6700-80fb11a","object":"chat.completion.chunk"})"},
      {"llama-server final", false, false,
       R"({"choices":[{"finish_reason":"length","index":0,"delta":{}}],"created":1764950000,"id":"chatcmpl-Vb1x","model":"tiny","system_fingerprint":"b6700-80fb11a","object":"chat.completion.chunk","usage":{"completion_tokens":16,"prompt_tokens":12,"total_tokens":28},"timings":{"cache_n":0,"prompt_n":12,"prompt_ms":1.9,"prompt_per_token_ms":0.16,"prompt_per_second":6300.0,"predicted_n":16,"predicted_ms":15.2,"predicted_per_token_ms":0.95,"predicted_per_second":1052.6}})"},
      {"synth-server token", false, true,
       R"({"id":"chatcmpl-synth-0","object":"chat.completion.chunk","created":1796499978,"model":"synth","choices":[{"index":0,"delta":{"content":"tok2 "},"finish_reason":null}],"server_sent_ns":1667559763521,"scheduled_ns":1667559698035})"},
      {"ollama token", true, true,
       R"({"model":"llama3.2:1b","created_at":"2026-12-05T20:00:00.123456789Z","message":{"role":"assistant","content":" once"},"done":false})"},
      {"synth-server ollama token", true, true,
       R"({"model":"synth","created_at":"2026-12-05T20:00:00Z","message":{"role":"assistant","content":"tok2 "},"done":false,"server_sent_ns":1667559763521})"},
      {"ollama final", true, false,
       R"({"model":"llama3.2:1b","created_at":"2026-12-05T20:00:01.5Z","message":{"role":"assistant","content":""},"done_reason":"stop","done":true,"total_duration":1523466917,"load_duration":20361458,"prompt_eval_count":26,"prompt_eval_duration":129000000,"eval_count":290,"eval_duration":1372000000})"},
  };

  fmt::print("{:<28} {:>12} {:>12} {:>8} {:>12}\n", "record", "scanned ns", "whole ns", "ratio",
             "relayed ns");
  for (const auto& c : cases) {
    std::string body;
    for (int i = 0; i < records; ++i)
      body += c.ollama ? c.record + "\n" : "data: " + c.record + "\n\n";
    std::vector<double> scanned;
    std::vector<double> whole;
    std::vector<double> relayed;
    for (int r = 0; r < reps; ++r) {
      scanned.push_back(decode_ns(c, body, records, true));
      whole.push_back(decode_ns(c, body, records, false));
      // (A final record brings no token: a stream of them would only pile its events up.)
      if (!c.ollama && c.token) relayed.push_back(decode_ns(c, body, records, true, true));
    }
    const double s = median(scanned);
    const double w = median(whole);
    const std::string r = relayed.empty() ? "-" : fmt::format("{:.0f}", median(relayed));
    fmt::print("{:<28} {:>12.0f} {:>12.0f} {:>7.2f}x {:>12}\n", c.name, s, w, w / s, r);
  }
  fmt::print("(median of {} repetitions of {} records each, the paths alternating)\n", reps,
             records);
  return 0;
}
