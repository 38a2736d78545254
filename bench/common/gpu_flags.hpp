// The GPU flags the in-process and banter benchmarks share: how many layers go on the GPU (a
// CUDA build) and whether the in-process engine uses flash attention.
#pragma once

#include <CLI/CLI.hpp>

#include <string>

namespace chimera::bench {

struct GpuFlags {
  int layers = 0;
  std::string flash_attention = "auto";

  // `layers_help` says where the layers go in this benchmark.
  void add_to(CLI::App& app, const std::string& layers_help) {
    app.add_option("--gpu-layers", layers, layers_help)->capture_default_str();
    app.add_option("--flash-attention", flash_attention,
                   "In-process flash attention: on, off, or auto (on when --gpu-layers > 0, as "
                   "llama-server's auto does on a GPU)")
        ->check(CLI::IsMember({"on", "off", "auto"}))
        ->capture_default_str();
  }
  bool flash() const {
    return flash_attention == "on" || (flash_attention == "auto" && layers > 0);
  }
};

}  // namespace chimera::bench
