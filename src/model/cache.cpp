#include <chimera/model/synth.hpp>

#include <cstdlib>

namespace chimera::model {

std::filesystem::path cached_tiny_model(bool& created, std::string& error) {
  namespace fs = std::filesystem;
  created = false;
  fs::path base;
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x != nullptr && *x != '\0') {
    base = x;
  } else if (const char* h = std::getenv("HOME"); h != nullptr && *h != '\0') {
    base = fs::path(h) / ".cache";
  } else {
    base = fs::temp_directory_path();
  }
  const fs::path dir = base / "chimeraforge" / "models";
  const fs::path path = dir / "tiny-seed42.gguf";
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
