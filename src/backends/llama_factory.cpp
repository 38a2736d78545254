// The in-process backend's constructor (backends/inprocess.hpp).
#include "backends/inprocess.hpp"
#include "backends/llama_backend.hpp"

namespace chimera::backends {

std::unique_ptr<Backend> make_llama_backend(const EndpointConfig& config) {
  return std::make_unique<LlamaBackend>(config);
}

}  // namespace chimera::backends
