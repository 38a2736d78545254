// What llama.cpp's decode alone allows the in-process engine: N sequences, one token each per
// step, timed around llama_decode and the logits read, with nothing else in the process (no
// sampling, no callbacks, no engine). The context is set up as the engine sets up its own
// (one KV stream per sequence, flash attention off, the same threads), so its tokens/s at N
// against N = 1 is the ceiling of the engine's aggregate scaling on this machine and build:
// the engine's own figures (chimera_inproc_bench) can come near it, never above it.
//
//   chimera_decode_ceiling [--model FILE] [--threads 2] [--batches 1 2 4 8 16] [--steps 64]
//                          [--reps 5] [--ctx-per-seq N] [--out bench/results/decode-ceiling.jsonl]
//
// Prints one line per batch size and appends one JSON record per run to --out.
#include "backends/llama_engine.hpp"
#include "provenance.hpp"

#include <chimera/core/request.hpp>
#include <chimera/metrics/figures.hpp>
#include <chimera/model/synthetic_model.hpp>

#include <CLI/CLI.hpp>
#include <boost/json/serialize.hpp>
#include <fmt/format.h>
#include <llama.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <vector>

namespace {

using chimera::now_ns;

double median(std::vector<double> v) {
  return chimera::metrics::percentile(std::move(v), 50);
}

void quiet(ggml_log_level, const char*, void*) {}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "The decode ceiling: llama.cpp's llama_decode alone, N sequences one token each per step "
      "(no sampling, no engine), set up as the in-process engine sets up its context. Its "
      "tokens/s at N against N = 1 bounds the engine's aggregate scaling."};
  std::string model;
  int threads = 2;
  std::vector<int> batches{1, 2, 4, 8, 16};
  int steps = 64;
  int reps = 5;
  int ctx_option = 0;
  std::string out_path = "bench/results/decode-ceiling.jsonl";
  app.add_option("--model", model, "GGUF model (default: the tiny synthetic model)");
  app.add_option("--threads", threads, "CPU threads for the decode")
      ->capture_default_str()
      ->check(CLI::Range(1, 256));
  app.add_option("--batches", batches,
                 "Sequences decoded together, one token each per step (the first is the "
                 "reference of the last column)")
      ->capture_default_str()
      ->check(CLI::Range(1, 256));
  app.add_option("--steps", steps, "Decode steps timed per repetition")
      ->capture_default_str()
      ->check(CLI::Range(1, 4096));
  app.add_option("--reps", reps, "Repetitions per batch size (the median is printed)")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000));
  app.add_option("--ctx-per-seq", ctx_option,
                 "Context of each sequence, in tokens, at least what the timed steps need "
                 "(16 + steps + 16, also what 0 gives); the engine's default is 2048")
      ->capture_default_str()
      ->check(CLI::Range(0, 1 << 20));
  app.add_option("--out", out_path, "Results file (JSON lines, appended)")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  if (model.empty()) {
    bool created = false;
    std::string error;
    model = chimera::model::cached_tiny_model(created, error).string();
    if (model.empty()) {
      fmt::print(stderr, "{}\n", error);
      return 1;
    }
  }
  const int max_n = *std::max_element(batches.begin(), batches.end());
  constexpr int kPrompt = 16;  // tokens each sequence holds before the timed steps
  const int ctx_per_seq = std::max(ctx_option, kPrompt + steps + 16);

  llama_log_set(quiet, nullptr);
  llama_backend_init();
  llama_model_params mp = llama_model_default_params();
  llama_model* m = llama_model_load_from_file(model.c_str(), mp);
  if (m == nullptr) {
    fmt::print(stderr, "decode_ceiling: llama.cpp could not load '{}'\n", model);
    return 1;
  }
  llama_context_params cp = llama_context_default_params();
  cp.n_seq_max = static_cast<uint32_t>(max_n);
  cp.n_ctx = static_cast<uint32_t>(ctx_per_seq * max_n);
  cp.n_batch = static_cast<uint32_t>(max_n * kPrompt);  // every prompt in one batch
  cp.n_ubatch = cp.n_batch;
  cp.n_threads = threads;
  cp.n_threads_batch = threads;
  cp.kv_unified = false;  // as the engine: one KV stream per sequence
  cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
  cp.no_perf = true;
  llama_context* ctx = llama_init_from_model(m, cp);
  if (ctx == nullptr) {
    fmt::print(stderr, "decode_ceiling: llama.cpp could not create a context ({} x {} tokens)\n",
               max_n, ctx_per_seq);
    llama_model_free(m);
    return 1;
  }
  const llama_vocab* vocab = llama_model_get_vocab(m);
  const int n_vocab = llama_vocab_n_tokens(vocab);
  llama_batch batch = llama_batch_init(static_cast<int32_t>(cp.n_batch), 0, 1);
  using chimera::backends::add_to_batch;
  // Any tokens do: the work of a step does not depend on which.
  auto token = [&](int seq, int pos) {
    return static_cast<llama_token>((seq * 31 + pos * 7 + 100) % n_vocab);
  };

  chimera::bench::Provenance provenance(argc, argv);
  provenance.set_model(model);
  std::filesystem::create_directories(std::filesystem::path(out_path).parent_path());
  std::ofstream out(out_path, std::ios::app);

  const bool invariant = chimera::backends::LlamaEngine::cpu_kernels_batch_invariant();
  fmt::print(
      "model {}\nllama.cpp build {} ({}), {} threads, {} steps per repetition, median of {} "
      "repetitions\n\n",
      model, CHIMERA_LLAMA_BUILD,
      invariant ? "batch-invariant kernels"
                : "llamafile's tiled kernels for 2 rows or more, ggml's dot product for 1",
      threads, steps, reps);
  fmt::print("{:>8} {:>14} {:>14} {:>12}\n", "batch", "ms per step", "tokens/s", "vs batch 1");
  double base_tps = 0;
  for (int n : batches) {
    std::vector<double> step_ms;
    for (int r = 0; r < reps + 1; ++r) {  // the first repetition warms up and is not counted
      llama_memory_clear(llama_get_memory(ctx), true);
      batch.n_tokens = 0;
      for (int s = 0; s < n; ++s) {
        for (int p = 0; p < kPrompt; ++p) add_to_batch(batch, token(s, p), p, s, p + 1 == kPrompt);
      }
      if (llama_decode(ctx, batch) != 0) {
        fmt::print(stderr, "decode_ceiling: the prompts' decode failed at batch {}\n", n);
        return 1;
      }
      std::vector<double> ms;
      for (int k = 0; k < steps; ++k) {
        batch.n_tokens = 0;
        for (int s = 0; s < n; ++s)
          add_to_batch(batch, token(s, kPrompt + k), kPrompt + k, s, true);
        const int64_t t0 = now_ns();
        if (llama_decode(ctx, batch) != 0) {
          fmt::print(stderr, "decode_ceiling: a step's decode failed at batch {}\n", n);
          return 1;
        }
        // The logits as a sampler reads them (the step's output copied out and reordered).
        for (int s = 0; s < n; ++s) (void)llama_get_logits_ith(ctx, s);
        ms.push_back(static_cast<double>(now_ns() - t0) / 1e6);
      }
      if (r > 0) step_ms.push_back(median(ms));
    }
    const double ms = median(step_ms);
    const double tps = n / ms * 1000.0;
    if (n == batches.front()) base_tps = tps / n;  // tokens/s of one sequence, from the first
    const double vs_one = base_tps > 0 ? tps / base_tps : 0;
    fmt::print("{:>8} {:>14.3f} {:>14.0f} {:>11.2f}x\n", n, ms, tps, vs_one);
    boost::json::object rec{{"bench", "decode_ceiling"},
                            {"batch", n},
                            {"threads", threads},
                            {"steps", steps},
                            {"ctx_per_seq", ctx_per_seq},
                            {"reps", reps},
                            {"step_ms_median", ms},
                            {"tokens_per_s", tps},
                            {"vs_batch_1", vs_one},
                            {"llama_build", CHIMERA_LLAMA_BUILD},
                            {"batch_invariant_kernels", invariant},
                            {"source", "measured"}};
    rec["provenance"] = provenance.stamp();
    out << boost::json::serialize(rec) << "\n" << std::flush;
  }
  fmt::print("\nresults appended to {}\n", out_path);
  llama_batch_free(batch);
  llama_free(ctx);
  llama_model_free(m);
  llama_backend_free();
  return 0;
}
