// Pools from TOML (see pool.hpp for the format).
#include <chimera/pool/pool.hpp>

#include <fmt/format.h>
#include <toml++/toml.h>

#include <fstream>
#include <sstream>

namespace chimera::pool {

namespace {

std::string where(const std::string& source, const toml::node& n) {
  const auto& s = n.source();
  if (s.begin.line == 0) return source;
  return fmt::format("{}:{}", source, s.begin.line);
}

// Reads an optional integer key; false (with error) when it is there but not an integer.
bool read_int(const toml::table& t, const char* key, const std::string& source, int64_t& out,
              std::string& error) {
  const toml::node* n = t.get(key);
  if (n == nullptr) return true;
  if (auto v = n->value<int64_t>(); v && n->is_integer()) {
    out = *v;
    return true;
  }
  error = fmt::format("{}: '{}' must be an integer", where(source, *n), key);
  return false;
}

bool read_string(const toml::table& t, const char* key, const std::string& source,
                 std::string& out, std::string& error) {
  const toml::node* n = t.get(key);
  if (n == nullptr) return true;
  if (!n->is_string()) {
    error = fmt::format("{}: '{}' must be a string", where(source, *n), key);
    return false;
  }
  out = *n->value<std::string>();
  return true;
}

bool known_keys(const toml::table& t, std::initializer_list<std::string_view> keys,
                const std::string& source, const char* what, std::string& error) {
  for (const auto& [k, v] : t) {
    if (std::find(keys.begin(), keys.end(), k.str()) == keys.end()) {
      error = fmt::format("{}: unknown key '{}' in {} (known: {})", where(source, v), k.str(),
                          what, fmt::join(keys, ", "));
      return false;
    }
  }
  return true;
}

}  // namespace

bool parse_pools(std::string_view text, const std::string& source, std::vector<PoolConfig>& out,
                 std::string& error) {
  toml::table root;
  try {
    root = toml::parse(text, source);
  } catch (const toml::parse_error& e) {
    error = fmt::format("{}:{}:{}: {}", source, e.source().begin.line, e.source().begin.column,
                        e.description());
    return false;
  }
  const toml::node* pools = root.get("pool");
  if (pools == nullptr || !pools->is_array_of_tables()) {
    error = fmt::format("{}: no [[pool]] table; a pool file looks like\n"
                        "  [[pool]]\n  name = \"default\"\n  [[pool.endpoint]]\n"
                        "  url = \"http://127.0.0.1:11434\"\n  backend = \"ollama\"",
                        source);
    return false;
  }
  std::vector<PoolConfig> result;
  for (const auto& node : *pools->as_array()) {
    const auto& t = *node.as_table();
    if (!known_keys(t,
                    {"name", "routing", "model", "retries", "hedge_after_ms",
                     "health_interval_ms", "endpoint"},
                    source, "[[pool]]", error)) {
      return false;
    }
    PoolConfig pc;
    if (!read_string(t, "name", source, pc.name, error)) return false;
    std::string routing = to_string(pc.routing);
    if (!read_string(t, "routing", source, routing, error)) return false;
    if (auto r = parse_routing(routing)) {
      pc.routing = *r;
    } else {
      error = fmt::format("{}: pool '{}': unknown routing '{}' (pinned, round-robin, "
                          "least-outstanding, session-affinity)",
                          where(source, *t.get("routing")), pc.name, routing);
      return false;
    }
    if (!read_string(t, "model", source, pc.model, error)) return false;
    int64_t retries = pc.retries;
    if (!read_int(t, "retries", source, retries, error)) return false;
    pc.retries = static_cast<int>(retries);
    if (!read_int(t, "hedge_after_ms", source, pc.hedge_after_ms, error)) return false;
    if (!read_int(t, "health_interval_ms", source, pc.health_interval_ms, error)) return false;
    const toml::node* eps = t.get("endpoint");
    if (eps == nullptr || !eps->is_array_of_tables() || eps->as_array()->empty()) {
      error = fmt::format("{}: pool '{}' has no [[pool.endpoint]]", where(source, node), pc.name);
      return false;
    }
    for (const auto& en : *eps->as_array()) {
      const auto& et = *en.as_table();
      if (!known_keys(et, {"url", "backend", "max_concurrency", "api_key"}, source,
                      "[[pool.endpoint]]", error)) {
        return false;
      }
      PoolEndpoint pe;
      if (!read_string(et, "url", source, pe.config.url, error)) return false;
      if (pe.config.url.empty()) {
        error = fmt::format("{}: pool '{}': an endpoint needs a url", where(source, en), pc.name);
        return false;
      }
      std::string backend = "openai";
      if (!read_string(et, "backend", source, backend, error)) return false;
      if (backend == "ollama") {
        pe.config.kind = BackendKind::ollama;
      } else if (backend == "openai") {
        pe.config.kind = BackendKind::openai;
      } else if (backend == "llama") {
        pe.config.kind = BackendKind::llama;
      } else {
        error = fmt::format("{}: pool '{}': unknown backend '{}' (ollama, openai, llama)",
                            where(source, en), pc.name, backend);
        return false;
      }
      int64_t limit = 0;
      if (!read_int(et, "max_concurrency", source, limit, error)) return false;
      if (limit < 0) {
        error = fmt::format("{}: max_concurrency must be 0 (no limit) or more",
                            where(source, en));
        return false;
      }
      pe.max_concurrency = static_cast<int>(limit);
      if (!read_string(et, "api_key", source, pe.config.api_key, error)) return false;
      pc.endpoints.push_back(std::move(pe));
    }
    for (const auto& other : result) {
      if (other.name == pc.name) {
        error = fmt::format("{}: two pools are named '{}'", where(source, node), pc.name);
        return false;
      }
    }
    result.push_back(std::move(pc));
  }
  out = std::move(result);
  return true;
}

bool load_pools(const std::filesystem::path& file, std::vector<PoolConfig>& out,
                std::string& error) {
  std::ifstream in(file);
  if (!in) {
    error = fmt::format("cannot read pool file '{}'", file.string());
    return false;
  }
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_pools(ss.str(), file.string(), out, error);
}

}  // namespace chimera::pool
