#include <chimera/backends/environment.hpp>

#include <fmt/format.h>

#include <cstdlib>

namespace chimera {

namespace {

std::string getenv_or_empty(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr ? std::string(v) : std::string();
}

std::string_view trim_slashes(std::string_view s) {
  while (!s.empty() && s.back() == '/') s.remove_suffix(1);
  while (!s.empty() && s.front() == '/') s.remove_prefix(1);
  return s;
}

}  // namespace

std::string ollama_host_url(std::string_view value) {
  std::string_view scheme = "http";
  std::string_view rest = value;
  std::string default_port = "11434";
  if (const auto sep = value.find("://"); sep != std::string_view::npos) {
    scheme = value.substr(0, sep);
    rest = value.substr(sep + 3);
    if (scheme == "http") default_port = "80";
    if (scheme == "https") default_port = "443";
  }
  const auto slash = rest.find('/');
  const std::string_view authority = rest.substr(0, slash);
  const std::string_view path =
      slash == std::string_view::npos ? std::string_view() : trim_slashes(rest.substr(slash));
  std::string_view host = authority;
  std::string port = default_port;
  // An IPv6 address is bracketed ("[::1]:11434"); otherwise the last ':' starts the port.
  const auto bracket = authority.rfind(']');
  const auto colon = authority.rfind(':');
  if (colon != std::string_view::npos && (bracket == std::string_view::npos || colon > bracket)) {
    host = authority.substr(0, colon);
    if (colon + 1 < authority.size()) port = std::string(authority.substr(colon + 1));
  }
  if (host.empty()) host = "127.0.0.1";
  std::string url = fmt::format("{}://{}:{}", scheme, host, port);
  if (!path.empty()) url += fmt::format("/{}", path);
  return url;
}

std::string openai_base_url(std::string_view base_url) {
  std::string_view s = base_url;
  while (!s.empty() && s.back() == '/') s.remove_suffix(1);
  if (s.size() >= 3 && s.substr(s.size() - 3) == "/v1") s.remove_suffix(3);
  while (!s.empty() && s.back() == '/') s.remove_suffix(1);
  return std::string(s);
}

std::string endpoint_from_environment(BackendKind kind) {
  switch (kind) {
    case BackendKind::ollama: {
      // Set but empty is Ollama's default address; unset leaves the choice to the caller.
      const char* v = std::getenv("OLLAMA_HOST");
      return v != nullptr ? ollama_host_url(v) : std::string();
    }
    case BackendKind::openai: {
      const std::string v = getenv_or_empty("OPENAI_BASE_URL");
      return v.empty() ? std::string() : openai_base_url(v);
    }
    case BackendKind::llama:
      break;
  }
  return {};
}

std::string api_key_from_environment(BackendKind kind) {
  if (kind == BackendKind::llama) return {};
  if (std::string key = getenv_or_empty("CHIMERA_API_KEY"); !key.empty()) return key;
  if (kind == BackendKind::openai) return getenv_or_empty("OPENAI_API_KEY");
  return {};
}

}  // namespace chimera
