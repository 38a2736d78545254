// What the tool loop itself costs: run_tool_loop (chimera/engine/tool_loop.hpp) against the
// same model calls made by hand in a plain sequence, in-process with the tiny model carrying a
// tool-calling chat template (no network in the way).
//
// Each repetition is one conversation of at most two steps (the random-weight model usually
// answers at once; a call it writes runs a tool that returns at once). Measured per step: the
// loop's own time (step
// time less model and tool time: building the request, copying the conversation, recording,
// starting the tool's thread), and its share of the step. The plain sequence (generate, call the
// function, generate) gives the same steps' time without the loop, for comparison.
//
//   chimera_tool_loop_bench [--reps 30] [--tokens 16] [--model FILE]
#include <chimera/backends/backend.hpp>
#include <chimera/engine/tool_loop.hpp>
#include <chimera/model/synthetic_model.hpp>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <numeric>
#include <vector>

namespace {

using namespace chimera;

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

std::string tool_model(const std::filesystem::path& dir) {
  const auto path = dir / "tiny-qwen2-tools-seed42.gguf";
  if (std::filesystem::exists(path)) return path.string();
  model::SynthOptions o;
  o.preset = "tiny";
  o.output = path;
  o.vocab_file = model::default_vocab_file("qwen2");
  std::string error;
  if (!model::find_chat_template("Qwen-Qwen2.5-7B-Instruct", o.chat_template, error) ||
      !model::synthesize(o).ok) {
    throw std::runtime_error("cannot write the tool model: " + error);
  }
  return path.string();
}

Request question(int tokens) {
  Request r;
  r.messages = {{.role = "user", .content = "What is the weather in Paris?"}};
  r.tool_choice = "required";
  r.options.temperature = 0.0;
  r.options.num_predict = tokens;
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"The tool loop's own cost per step, against a plain sequence of the same calls"};
  int reps = 30;
  int tokens = 48;
  std::string model_file;
  app.add_option("--reps", reps, "Conversations (at most two steps each)")->capture_default_str();
  app.add_option("--tokens", tokens, "Most tokens per model call")->capture_default_str();
  app.add_option("--model", model_file,
                 "GGUF with a tool-calling chat template "
                 "(default: the tiny one, written to /tmp on first use)");
  CLI11_PARSE(app, argc, argv);
  if (model_file.empty()) model_file = tool_model(std::filesystem::temp_directory_path());

  Runtime rt(1);
  EndpointConfig cfg;
  cfg.kind = BackendKind::llama;
  cfg.url = model_file;
  cfg.llama.parallel = 1;
  cfg.llama.ctx_per_seq = 2048;
  auto backend = make_backend(cfg, rt);
  Toolbox tools;
  const auto weather = [](const std::string&) { return std::string(R"({"temp_c": 18})"); };
  tools.add({.name = "get_weather",
             .description = "The weather in a city",
             .parameters_json = R"({"type":"object","properties":{"city":{"type":"string",)"
                                R"("enum":["Paris","Oslo"]}},"required":["city"]})",
             .run = weather});

  std::vector<double> overhead_us, share_pct, loop_ms, plain_ms;
  for (int i = 0; i < reps; ++i) {
    // The loop.
    int64_t t0 = now_ns();
    const LoopResult r = run_tool_loop(*backend, question(tokens), tools, {.max_steps = 2});
    loop_ms.push_back(static_cast<double>(now_ns() - t0) / 1e6);
    if (r.end != LoopEnd::answer && r.end != LoopEnd::max_steps) {
      fmt::print(stderr, "the loop ended with {}: {}\n", to_string(r.end), r.error.message);
      return 1;
    }
    for (const auto& s : r.steps) {
      const double own = static_cast<double>(s.step_ns - s.model_ns - s.tools_ns);
      overhead_us.push_back(own / 1e3);
      share_pct.push_back(100.0 * own / static_cast<double>(s.step_ns));
    }
    // The same calls by hand.
    t0 = now_ns();
    Request req = question(tokens);
    req.tools_json = tools.definitions_json();
    const Completion c1 = backend->generate(req);
    req.messages.push_back({.role = "assistant", .content = c1.text, .tool_calls = c1.tool_calls});
    for (const auto& call : c1.tool_calls) {
      req.messages.push_back({.role = "tool",
                              .content = weather(call.arguments_json),
                              .tool_name = call.name,
                              .tool_call_id = call.id});
    }
    req.tool_choice = "auto";
    backend->generate(req);
    plain_ms.push_back(static_cast<double>(now_ns() - t0) / 1e6);
  }
  const double mean_share = std::accumulate(share_pct.begin(), share_pct.end(), 0.0) /
                            static_cast<double>(share_pct.size());
  fmt::print("tool loop, in-process, {} ({} conversations, {} steps, up to {} tokens a call)\n",
             model_file, reps, overhead_us.size(), tokens);
  fmt::print("loop's own time per step: median {:.1f} us, max {:.1f} us\n", median(overhead_us),
             *std::max_element(overhead_us.begin(), overhead_us.end()));
  fmt::print("share of the step: median {:.5f}%, mean {:.5f}%, max {:.5f}%\n", median(share_pct),
             mean_share, *std::max_element(share_pct.begin(), share_pct.end()));
  fmt::print("conversation: loop median {:.2f} ms, plain sequence median {:.2f} ms\n",
             median(loop_ms), median(plain_ms));
  return 0;
}
