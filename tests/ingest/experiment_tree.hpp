// Writes a results tree with planted effects: 3 runtimes x 3 GPU-layer settings x 2 context
// sizes x 5 runs, a JSON and a Markdown file per run (or a CSV row), in one of three naming
// styles. Throughput moves most with GPU layers, TTFT with the runtime; the noise is Gaussian
// with a fixed seed, so every tree is the same on every machine.
#pragma once

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

namespace chimera::test {

enum class TreeStyle {
  folders,    // results/runtime-tokio/gpu80_ctx512/run_3/{metrics.json,report.md}
  key_value,  // bench/runtime=tokio_gpu_layers=80_ctx=512_rep=3.{json,md}
  columns,    // sweep.csv: runtime,gpu_layers,ctx,run,tokens_per_second,...
};

struct PlantedTree {
  std::vector<std::string> runtimes = {"async-std", "smol", "tokio"};
  std::vector<int> gpu_layers = {60, 80, 100};
  std::vector<int> contexts = {512, 1024};
  int runs = 5;
  // tokens/s = 40 + gpu + runtime + context effects + N(0, 1)
  double gpu_effect(int g) const { return g == 60 ? 0 : g == 80 ? 8 : 16; }
  double runtime_tps(const std::string& r) const { return r == "smol" ? -2 : r == "tokio" ? 3 : 0; }
  double context_tps(int c) const { return c == 512 ? 3 : 0; }
  // TTFT ms = 150 + runtime + gpu effects + N(0, 4)
  double runtime_ttft(const std::string& r) const {
    return r == "smol" ? 30 : r == "tokio" ? -40 : 0;
  }
  double gpu_ttft(int g) const { return g == 60 ? 10 : g == 80 ? 5 : 0; }
  // The planted best for throughput.
  std::string best_label = "num_gpu=100 num_ctx=512 runtime=tokio";
};

inline void write_file(const std::filesystem::path& p, const std::string& text) {
  std::filesystem::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << text;
}

inline std::string run_json(double tps, double ttft_ms) {
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "{\n  \"throughput_tps\": %.3f,\n  \"ttft_ms\": %.3f,\n"
                "  \"tokens\": 256\n}\n",
                tps, ttft_ms);
  return buf;
}

inline std::string run_markdown(double tps, double ttft_ms) {
  char buf[512];
  std::snprintf(buf, sizeof buf,
                "# Run report\n\nThe agent answered every prompt.\n\n| Metric | Value |\n"
                "| --- | --- |\n| Throughput (tok/s) | %.3f |\n| TTFT (s) | %.6f |\n",
                tps, ttft_ms / 1000.0);
  return buf;
}

inline void write_planted_tree(const std::filesystem::path& root, TreeStyle style,
                               const PlantedTree& t = {}) {
  std::filesystem::remove_all(root);
  std::mt19937 rng(12345);
  std::normal_distribution<double> noise(0.0, 1.0);
  std::string csv = "runtime,gpu_layers,ctx,run,tokens_per_second,time_to_first_token_s\n";
  for (const auto& rt : t.runtimes) {
    for (int g : t.gpu_layers) {
      for (int c : t.contexts) {
        for (int run = 1; run <= t.runs; ++run) {
          const double tps =
              40 + t.gpu_effect(g) + t.runtime_tps(rt) + t.context_tps(c) + noise(rng);
          const double ttft = 150 + t.runtime_ttft(rt) + t.gpu_ttft(g) + 4 * noise(rng);
          switch (style) {
            case TreeStyle::folders: {
              auto dir = root / "results" / ("runtime-" + rt) /
                         ("gpu" + std::to_string(g) + "_ctx" + std::to_string(c)) /
                         ("run_" + std::to_string(run));
              write_file(dir / "metrics.json", run_json(tps, ttft));
              write_file(dir / "report.md", run_markdown(tps, ttft));
              break;
            }
            case TreeStyle::key_value: {
              const std::string stem = "runtime=" + rt + "_gpu_layers=" + std::to_string(g) +
                                       "_ctx=" + std::to_string(c) + "_rep=" + std::to_string(run);
              write_file(root / "bench" / (stem + ".json"), run_json(tps, ttft));
              write_file(root / "bench" / (stem + ".md"), run_markdown(tps, ttft));
              break;
            }
            case TreeStyle::columns: {
              char row[160];
              std::snprintf(row, sizeof row, "%s,%d,%d,%d,%.3f,%.6f\n", rt.c_str(), g, c, run, tps,
                            ttft / 1000.0);
              csv += row;
              break;
            }
          }
        }
      }
    }
  }
  if (style == TreeStyle::columns) write_file(root / "sweep.csv", csv);
}

}  // namespace chimera::test
