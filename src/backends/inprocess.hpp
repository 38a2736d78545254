// The in-process backend's constructor, kept apart from its class (private header).
//
// Defined by backends/llama_factory.cpp, which brings in llama.cpp; a program built without the
// in-process backend (chimeraforge-client) links src/client/inprocess_stub.cpp instead, whose
// definition refuses with an error naming the program that has it. backend.cpp calls this, so
// that constructing an HTTP backend never pulls llama.cpp into a program.
#pragma once

#include <chimera/backends/backend.hpp>

#include <memory>

namespace chimera::backends {

// The config is checked already (make_backend): its url is the GGUF file.
std::unique_ptr<Backend> make_llama_backend(const EndpointConfig& config);

}  // namespace chimera::backends
