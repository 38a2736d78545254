// Scene files (docs/banter.md): any text is either a scene whose every option is usable
// (chimera::validate) and whose sizes are in range, or a message naming the file and the line.
#include <chimera/banter/scene_config.hpp>
#include <chimera/core/request.hpp>

#include <cstdio>
#include <cstdlib>
#include <string>

namespace {

void check_options(const chimera::Options& o, const std::string& who) {
  const std::string problem = chimera::validate(o);
  if (!problem.empty()) {
    std::fprintf(stderr, "scene accepted %s with unusable options: %s\n", who.c_str(),
                 problem.c_str());
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  chimera::banter::SceneConfig scene;
  std::string error;
  if (!chimera::banter::parse_scene(text, "fuzz.toml", scene, error)) {
    if (error.find("fuzz.toml") == std::string::npos) {
      std::fprintf(stderr, "error does not name the file: %s\n", error.c_str());
      std::abort();
    }
    return 0;
  }
  if (scene.lines < 0 || scene.budget_ms < 0 || scene.max_concurrent < 0 ||
      scene.characters.size() > 256) {
    std::fprintf(stderr, "scene accepted with lines %d, budget %lld ms, %zu characters\n",
                 scene.lines, static_cast<long long>(scene.budget_ms), scene.characters.size());
    std::abort();
  }
  for (const auto& c : scene.characters) {
    if (!c.options.num_ctx || !c.options.num_predict) {
      std::fprintf(stderr, "character '%s' without num_ctx or num_predict\n", c.name.c_str());
      std::abort();
    }
    check_options(c.options, "character '" + c.name + "'");
  }
  check_options(scene.director.options, "the director");
  return 0;
}
