#include <chimera/core/install_paths.hpp>
#include <chimera/model/synthetic_model.hpp>

#include <cstdlib>

namespace chimera::model {

std::filesystem::path cached_tiny_model(bool& created, std::string& error) {
  namespace fs = std::filesystem;
  created = false;
  const fs::path dir = user_cache_dir() / "models";
  fs::path path = dir / "tiny-seed42.gguf";
  std::error_code ec;
  if (fs::exists(path, ec)) return path;
  fs::create_directories(dir, ec);
  if (ec) {
    error = "cannot create the model cache folder '" + dir.string() + "': " + ec.message();
    return {};
  }
  SynthOptions o;
  o.preset = "tiny";
  o.seed = 42;
  o.output = path;
  const SynthResult r = synthesize(o);
  if (!r.ok) {
    error = r.error;
    return {};
  }
  created = true;
  return path;
}

}  // namespace chimera::model
