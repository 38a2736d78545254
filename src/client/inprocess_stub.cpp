// chimeraforge-client's stand-ins for the parts that need llama.cpp (src/CMakeLists.txt,
// chimera_client): the in-process backend and model synthesis refuse with an error that names
// the program that has them, instead of linking llama.cpp into a process that talks to servers.
#include "backends/inprocess.hpp"

#include <chimera/model/synthetic_model.hpp>

#include <stdexcept>

namespace chimera {

namespace {
constexpr const char* kWhy =
    "this program (chimeraforge-client) talks to servers only: the in-process backend "
    "(llama.cpp) and model synthesis are in chimeraforge; run the same command with chimeraforge";
}  // namespace

namespace backends {

std::unique_ptr<Backend> make_llama_backend(const EndpointConfig& config) {
  throw std::invalid_argument(config.url + ": " + kWhy);
}

}  // namespace backends

namespace model {

const std::vector<Shape>& presets() {
  static const std::vector<Shape> none;
  return none;
}

const Shape* find_preset(const std::string&) {
  return nullptr;
}

SynthResult synthesize(const SynthOptions&) {
  SynthResult r;
  r.error = kWhy;
  return r;
}

std::filesystem::path default_vocab_file(const std::string&) {
  return {};
}

bool find_chat_template(const std::string&, std::string&, std::string& error) {
  error = kWhy;
  return false;
}

}  // namespace model

}  // namespace chimera
