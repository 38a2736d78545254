#include <chimera/core/install_paths.hpp>

#include <dlfcn.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <string_view>
#include <system_error>

// Set for this file only (src/CMakeLists.txt), so that nothing else can depend on the build tree.
#ifndef CHIMERA_INSTALL_DATA_REL
#error "CHIMERA_INSTALL_DATA_REL must be defined by the build"
#endif

namespace chimera {

namespace fs = std::filesystem;

namespace {

std::optional<fs::path> env_path(const char* name) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return std::nullopt;
  return fs::path(v);
}

bool is_dir(const fs::path& p) {
  std::error_code ec;
  return fs::is_directory(p, ec);
}

bool is_file(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec);
}

// The first executable file named `name` in $PATH.
std::optional<fs::path> find_on_path(std::string_view name) {
  const char* path = std::getenv("PATH");
  if (path == nullptr) return std::nullopt;
  std::string_view rest(path);
  while (!rest.empty()) {
    const auto colon = rest.find(':');
    const std::string_view dir = rest.substr(0, colon);
    rest = colon == std::string_view::npos ? std::string_view{} : rest.substr(colon + 1);
    if (dir.empty()) continue;
    const fs::path candidate = fs::path(dir) / name;
    if (is_file(candidate) && ::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return std::nullopt;
}

}  // namespace

fs::path this_module_path() {
  Dl_info info{};
  // Any function defined in this file: dladdr names the object it was loaded from.
  if (::dladdr(reinterpret_cast<const void*>(&this_module_path), &info) == 0 ||
      info.dli_fname == nullptr || *info.dli_fname == '\0') {
    return {};
  }
  std::error_code ec;
  fs::path p = fs::canonical(info.dli_fname, ec);
  if (ec) {
    // The main program may be reported by the name it was started with; /proc knows better.
    p = fs::canonical("/proc/self/exe", ec);
    if (ec) return {};
  }
  return p;
}

std::optional<fs::path> install_prefix() {
  if (auto p = env_path("CHIMERA_PREFIX")) return *p;
  const fs::path module = this_module_path();
  if (module.empty()) return std::nullopt;
  fs::path dir = module.parent_path();
  for (int level = 0; level <= 4 && !dir.empty(); ++level) {
    if (is_dir(dir / CHIMERA_INSTALL_DATA_REL)) return dir;
    if (dir == dir.root_path()) break;
    dir = dir.parent_path();
  }
  return std::nullopt;
}

fs::path vocab_dir() {
  if (auto p = env_path("CHIMERA_VOCAB_DIR")) return *p;
  if (auto prefix = install_prefix()) return *prefix / CHIMERA_INSTALL_DATA_REL / "vocab";
  return CHIMERA_BUILD_VOCAB_DIR;
}

fs::path llama_server_path() {
  if (auto p = env_path("CHIMERA_LLAMA_SERVER")) return *p;
  if (auto prefix = install_prefix()) return *prefix / CHIMERA_INSTALL_PRIVATE_REL / "llama-server";
  fs::path built = CHIMERA_BUILD_LLAMA_SERVER;
  if (!built.empty() && is_file(built)) return built;
  if (auto on_path = find_on_path("llama-server")) return *on_path;
  return built.empty() ? fs::path("llama-server") : built;
}

fs::path ggml_backend_dir() {
  fs::path built = CHIMERA_BUILD_GGML_BACKEND_DIR;
  if (built.empty()) return {};
  if (auto prefix = install_prefix()) return *prefix / CHIMERA_INSTALL_PRIVATE_REL;
  return built;
}

fs::path user_cache_dir() {
  fs::path base;
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x != nullptr && *x != '\0') {
    base = x;
  } else if (const char* h = std::getenv("HOME"); h != nullptr && *h != '\0') {
    base = fs::path(h) / ".cache";
  } else {
    base = fs::temp_directory_path();
  }
  return base / "chimeraforge";
}

}  // namespace chimera
