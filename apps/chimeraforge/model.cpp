// `chimeraforge model synth`: random-weight GGUF models of real shapes, for timing and tests.
#include "commands.hpp"

#include <chimera/model/synthetic_model.hpp>

#include <fmt/format.h>

#include <chrono>
#include <filesystem>

namespace chimera::cli {

namespace {

struct SynthArgs {
  std::string preset = "tiny";
  std::string out;
  std::string vocab;
  std::string type = "f16";
  std::string chat_template;
  uint64_t seed = 42;
  bool quiet = false;
};

int run_synth(const SynthArgs& a) {
  model::SynthOptions o;
  o.preset = a.preset;
  o.output = a.out;
  o.vocab_file = a.vocab;
  // A name instead of a file: llama.cpp's models/ggml-vocab-<name>.gguf.
  if (!a.vocab.empty() && a.vocab.find('/') == std::string::npos &&
      !std::filesystem::exists(a.vocab)) {
    o.vocab_file = model::default_vocab_file(a.vocab);
  }
  o.seed = a.seed;
  o.type = a.type == "f32" ? model::WeightType::f32 : model::WeightType::f16;
  if (!a.chat_template.empty()) {
    std::string error;
    if (!model::find_chat_template(a.chat_template, o.chat_template, error)) {
      fmt::print(stderr, "chimeraforge model synth: --chat-template: {}\n", error);
      return kUsage;
    }
  }
  int last_pct = -1;
  if (!a.quiet) {
    o.on_progress = [&last_pct](uint64_t done, uint64_t total) {
      const int pct = total ? static_cast<int>(done * 100 / total) : 100;
      if (pct / 10 != last_pct / 10) {
        fmt::print(stderr, "\rwriting tensors: {:3d}%", pct);
        last_pct = pct;
      }
    };
  }
  const auto t0 = std::chrono::steady_clock::now();
  const auto r = model::synthesize(o);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!a.quiet && last_pct >= 0) fmt::print(stderr, "\n");
  if (!r.ok) {
    fmt::print(stderr, "chimeraforge model synth: {}\n", r.error);
    return kFailed;
  }
  fmt::print(
      "{}: preset {}, {:.1f}M parameters, {} tokens ({} marked unused so that streams stay "
      "valid UTF-8), {:.1f} MB, {:.1f} s\n",
      a.out, a.preset, static_cast<double>(r.n_params) / 1e6, r.n_vocab, r.n_tokens_unused,
      static_cast<double>(r.file_bytes) / 1e6, secs);
  return kOk;
}

}  // namespace

std::function<int()> add_model(CLI::App& app) {
  auto a = std::make_shared<SynthArgs>();
  auto* cmd = app.add_subcommand("model", "Make and inspect model files");
  cmd->require_subcommand(1);
  std::string presets;
  for (const auto& s : model::presets()) {
    presets += fmt::format("\n  {:10} {} layers, width {}, {} heads ({} kv), ffn {}, vocab {}",
                           s.name, s.n_layer, s.n_embd, s.n_head, s.n_head_kv, s.n_ff, s.vocab);
  }
  auto* synth = cmd->add_subcommand(
      "synth",
      "Write a random-weight GGUF of a real architecture (llama) with a real tokenizer "
      "vocabulary. It runs real inference at the real speed of its shape; its text is noise. "
      "Same preset and seed give the same file.\n\nPresets:" +
          presets +
          "\n\nExample:\n  chimeraforge model synth --preset tiny --out models/tiny.gguf");
  synth->add_option("--preset", a->preset, "Shape preset")->capture_default_str();
  synth->add_option("--out,-o", a->out, "GGUF file to write")->required();
  synth->add_option("--seed", a->seed, "Random seed")->capture_default_str();
  synth->add_option("--type", a->type, "Weight type: f16 or f32")
      ->check(CLI::IsMember({"f16", "f32"}))
      ->capture_default_str();
  synth->add_option("--vocab", a->vocab,
                    "Vocabulary GGUF, or the name of one of llama.cpp's "
                    "models/ggml-vocab-<name>.gguf (e.g. qwen2) (default: the preset's; "
                    "$CHIMERA_VOCAB_DIR overrides the folder)");
  synth->add_option("--chat-template", a->chat_template,
                    "Jinja chat template to write into the file (tokenizer.chat_template): a "
                    "file, or the name of one of llama.cpp's models/templates/*.jinja, e.g. "
                    "Qwen-Qwen2.5-7B-Instruct (a tool-calling template)");
  synth->add_flag("--quiet,-q", a->quiet, "No progress output");
  return [a]() { return run_synth(*a); };
}

}  // namespace chimera::cli
