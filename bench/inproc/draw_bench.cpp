// What one draw of the next token costs the in-process engine, against llama.cpp's own CPU path,
// for the sampler chain of a completion at a temperature (top-k 40, top-p 0.95, min-p 0.05,
// temperature 0.8, the seeded draw): llama.cpp writes a candidate per token of the vocabulary
// and applies the chain; the engine finds the top-k's candidates first (top_k_candidates,
// src/backends/llama_top_k.hpp) and applies the same chain to them. The logits are random
// (normal, sd 3), one array read again and again (a lone agent's, in cache) or 16 in turn (a
// step of 16 agents, 2 MB and more, mostly outside the core's cache).
//
//   chimera_draw_bench [--vocab 32000 128256 151936] [--draws 2000] [--reps 5]
//                      [--out bench/results/draw.jsonl]
//
// Prints microseconds per draw (the median of the repetitions) and appends one JSON record per
// vocabulary and layout to --out.
#include "backends/llama_top_k.hpp"
#include "provenance.hpp"

#include <chimera/core/request.hpp>
#include <chimera/metrics/figures.hpp>

#include <CLI/CLI.hpp>
#include <boost/json/serialize.hpp>
#include <fmt/format.h>
#include <llama.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <vector>

namespace {

using chimera::now_ns;
using chimera::backends::chain_choice;
using chimera::backends::top_k_candidates;

llama_sampler* completion_chain(uint32_t seed) {
  llama_sampler* chain = llama_sampler_chain_init(llama_sampler_chain_default_params());
  llama_sampler_chain_add(chain, llama_sampler_init_top_k(40));
  llama_sampler_chain_add(chain, llama_sampler_init_top_p(0.95f, 1));
  llama_sampler_chain_add(chain, llama_sampler_init_min_p(0.05f, 1));
  llama_sampler_chain_add(chain, llama_sampler_init_temp(0.8f));
  llama_sampler_chain_add(chain, llama_sampler_init_dist(seed));
  return chain;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "One draw of the next token: the in-process engine's (the top-k's candidates found first) "
      "against llama.cpp's CPU path (a candidate per token of the vocabulary), same chain, "
      "random logits."};
  std::vector<int> vocabs{32000, 128256, 151936};
  int draws = 2000;
  int reps = 5;
  std::string out_path = "bench/results/draw.jsonl";
  app.add_option("--vocab", vocabs, "Vocabulary sizes (the tiny model's, Llama 3's, Qwen's)")
      ->capture_default_str()
      ->check(CLI::Range(64, 1 << 20));
  app.add_option("--draws", draws, "Draws timed per repetition")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000000));
  app.add_option("--reps", reps, "Repetitions (the median is printed)")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000));
  app.add_option("--out", out_path, "Results file (JSON lines, appended)")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  chimera::bench::Provenance provenance(argc, argv);
  std::filesystem::create_directories(std::filesystem::path(out_path).parent_path());
  std::ofstream out(out_path, std::ios::app);
  fmt::print("microseconds per draw, median of {} repetitions of {} draws\n", reps, draws);
  fmt::print("{:>8} {:>10} {:>12} {:>12} {:>8} {:>10}\n", "vocab", "arrays", "llama.cpp", "engine",
             "ratio", "fallbacks");

  std::mt19937 rng(42);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  for (const int n : vocabs) {
    std::vector<std::vector<float>> logits(16, std::vector<float>(static_cast<std::size_t>(n)));
    for (auto& a : logits) {
      for (auto& x : a) x = normal(rng);
    }
    for (const int arrays : {1, 16}) {
      std::vector<llama_token_data> all(static_cast<std::size_t>(n));
      std::vector<llama_token_data> cand;
      // llama.cpp's CPU path: every token of the vocabulary a candidate.
      const auto whole = [&](const float* l) {
        for (llama_token t = 0; t < n; ++t) all[t] = {t, l[t], 0.0f};
        return llama_token_data_array{all.data(), all.size(), -1, false};
      };
      std::vector<double> theirs, ours;
      int64_t fallbacks = 0;
      for (int r = 0; r < reps + 1; ++r) {  // the first repetition warms up and is not counted
        llama_sampler* slow = completion_chain(1234);
        llama_sampler* fast = completion_chain(1234);
        int64_t t0 = now_ns();
        for (int d = 0; d < draws; ++d) {
          llama_token_data_array a = whole(logits[static_cast<std::size_t>(d % arrays)].data());
          llama_sampler_accept(slow, chain_choice(slow, a));
        }
        const double slow_us = static_cast<double>(now_ns() - t0) / 1e3 / draws;
        t0 = now_ns();
        for (int d = 0; d < draws; ++d) {
          const float* l = logits[static_cast<std::size_t>(d % arrays)].data();
          llama_token_data_array a{};
          if (top_k_candidates(l, n, 40, cand)) {
            a = {cand.data(), cand.size(), -1, true};
          } else {  // the engine's own fallback: llama.cpp's path
            ++fallbacks;
            a = whole(l);
          }
          llama_sampler_accept(fast, chain_choice(fast, a));
        }
        const double fast_us = static_cast<double>(now_ns() - t0) / 1e3 / draws;
        llama_sampler_free(slow);
        llama_sampler_free(fast);
        if (r > 0) {
          theirs.push_back(slow_us);
          ours.push_back(fast_us);
        }
      }
      const double a = chimera::metrics::percentile(theirs, 50);
      const double b = chimera::metrics::percentile(ours, 50);
      fmt::print("{:>8} {:>10} {:>12.2f} {:>12.2f} {:>7.1f}x {:>10}\n", n, arrays, a, b, a / b,
                 fallbacks);
      boost::json::object rec{{"bench", "draw"},
                              {"vocab", n},
                              {"arrays", arrays},
                              {"draws", draws},
                              {"reps", reps},
                              {"llama_cpp_us_median", a},
                              {"engine_us_median", b},
                              {"ratio", a / b},
                              {"fallbacks", fallbacks},
                              {"chain", "top_k 40, top_p 0.95, min_p 0.05, temp 0.8, dist"},
                              {"logits", "normal, sd 3"},
                              {"source", "measured"}};
      rec["provenance"] = provenance.stamp();
      out << boost::json::serialize(rec) << "\n" << std::flush;
    }
  }
  fmt::print("\nresults appended to {}\n", out_path);
  return 0;
}
