// What the tool loop itself costs: run_tool_loop (chimera/engine/tool_loop.hpp) against the
// same model calls made by hand in a plain sequence, in-process with the tiny model carrying
// Llama 3.2's tool-calling chat template (no network in the way).
//
// Each repetition is one conversation of two steps: the model calls get_weather (tool_choice
// required and two logit biases steer the random weights into a real call, as the tests do:
// docs/tools.md), the tool returns at once, and the model answers. Measured per step: the loop's
// own time (step time less model and tool time: building the request, copying the conversation,
// reading the calls, starting the tool's thread and recording), and its share of the step,
// apart for the steps that held a tool call and those that did not. The plain sequence
// (generate, call the function, generate) gives the same steps' time without the loop.
//
//   chimera_tool_loop_bench [--reps 30] [--tokens 96] [--model FILE]
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

// The tests' tool_call_model (tests/support/test_support.hpp): the tiny shape, Llama 3's
// vocabulary, Llama 3.2's template.
std::string tool_model(const std::filesystem::path& dir) {
  const auto path = dir / "tiny-llama3-tools-seed42.gguf";
  if (std::filesystem::exists(path)) return path.string();
  model::SynthOptions o;
  o.preset = "tiny";
  o.output = path;
  o.vocab_file = model::default_vocab_file("llama-bpe");
  std::string error;
  if (!model::find_chat_template("meta-llama-Llama-3.2-3B-Instruct", o.chat_template, error) ||
      !model::synthesize(o).ok) {
    throw std::runtime_error("cannot write the tool model: " + error);
  }
  return path.string();
}

// Greedy, a call required, "{" (90) and "<|eot_id|>" (128009) biased: the model opens a call at
// once and ends its turn when the call is whole (docs/tools.md).
Request question(int tokens) {
  Request r;
  r.messages = {{.role = "user", .content = "What is the weather in Paris?"}};
  r.tool_choice = "required";
  r.options.temperature = 0.0;
  r.options.seed = 42;
  r.options.num_predict = tokens;
  r.logit_bias = {{90, 30.0}, {128009, 60.0}};
  return r;
}

struct Spread {
  std::vector<double> own_us, share_pct;
  void add(const chimera::LoopStep& s) {
    const double own = static_cast<double>(s.step_ns - s.model_ns - s.tools_ns);
    own_us.push_back(own / 1e3);
    share_pct.push_back(100.0 * own / static_cast<double>(s.step_ns));
  }
  void print(const char* what) const {
    if (own_us.empty()) {
      fmt::print("{}: none\n", what);
      return;
    }
    const double mean_share = std::accumulate(share_pct.begin(), share_pct.end(), 0.0) /
                              static_cast<double>(share_pct.size());
    fmt::print(
        "{} ({}): loop's own time median {:.1f} us, max {:.1f} us; share of the step "
        "median {:.5f}%, mean {:.5f}%, max {:.5f}%\n",
        what, own_us.size(), median(own_us), *std::max_element(own_us.begin(), own_us.end()),
        median(share_pct), mean_share, *std::max_element(share_pct.begin(), share_pct.end()));
  }
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"The tool loop's own cost per step, against a plain sequence of the same calls"};
  int reps = 30;
  int tokens = 96;
  std::string model_file;
  app.add_option("--reps", reps, "Conversations (two steps each)")->capture_default_str();
  app.add_option("--tokens", tokens, "Most tokens per model call")->capture_default_str();
  app.add_option("--model", model_file,
                 "GGUF with Llama 3's vocabulary and a Llama 3.x tool-calling chat template "
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

  Spread with_call, without_call;
  std::vector<double> tool_ms, loop_ms, plain_ms;
  int calls = 0;
  for (int i = 0; i < reps; ++i) {
    // The loop.
    int64_t t0 = now_ns();
    const LoopResult r = run_tool_loop(*backend, question(tokens), tools, {.max_steps = 2});
    loop_ms.push_back(static_cast<double>(now_ns() - t0) / 1e6);
    if (r.end != LoopEnd::answer && r.end != LoopEnd::max_steps) {
      fmt::print(stderr, "the loop ended with {}: {}\n", to_string(r.end), r.error.message);
      return 1;
    }
    if (r.steps.empty() || r.steps[0].tools.empty()) {
      fmt::print(stderr, "the model did not call the tool (is this the tiny Llama 3 model?)\n");
      return 1;
    }
    for (const auto& s : r.steps) {
      (s.tools.empty() ? without_call : with_call).add(s);
      if (!s.tools.empty()) tool_ms.push_back(static_cast<double>(s.tools_ns) / 1e6);
      calls += static_cast<int>(s.tools.size());
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
  fmt::print(
      "tool loop, in-process, {} ({} conversations, {} tool calls, up to {} tokens a call)\n",
      model_file, reps, calls, tokens);
  with_call.print("steps with a tool call");
  without_call.print("steps without");
  fmt::print(
      "the tool's wall time in a step (a function that returns at once, on its thread): "
      "median {:.3f} ms\n",
      median(tool_ms));
  fmt::print("conversation: loop median {:.2f} ms, plain sequence median {:.2f} ms\n",
             median(loop_ms), median(plain_ms));
  return 0;
}
