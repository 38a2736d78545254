// Pools from TOML (see pool.hpp for the format).
#include <chimera/pool/pool.hpp>

#include "core/toml_reader.hpp"

#include <fmt/format.h>
#include <toml++/toml.h>

#include <fstream>
#include <sstream>

namespace chimera::pool {

using detail::Reader;
using detail::where;

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
    Reader r(t, source, error);
    if (!r.known({"name", "routing", "model", "retries", "hedge_after_ms", "health_interval_ms",
                  "endpoint"},
                 "[[pool]]")) {
      return false;
    }
    PoolConfig pc;
    if (!r.str("name", pc.name)) return false;
    std::string routing = to_string(pc.routing);
    if (!r.str("routing", routing)) return false;
    if (auto r = parse_routing(routing)) {
      pc.routing = *r;
    } else {
      error = fmt::format("{}: pool '{}': unknown routing '{}' (pinned, round-robin, "
                          "least-outstanding, session-affinity)",
                          where(source, *t.get("routing")), pc.name, routing);
      return false;
    }
    if (!r.str("model", pc.model) || !r.integer("retries", pc.retries) ||
        !r.integer("hedge_after_ms", pc.hedge_after_ms) ||
        !r.integer("health_interval_ms", pc.health_interval_ms)) {
      return false;
    }
    const toml::node* eps = t.get("endpoint");
    if (eps == nullptr || !eps->is_array_of_tables() || eps->as_array()->empty()) {
      error = fmt::format("{}: pool '{}' has no [[pool.endpoint]]", where(source, node), pc.name);
      return false;
    }
    for (const auto& en : *eps->as_array()) {
      Reader er(*en.as_table(), source, error);
      if (!er.known({"url", "backend", "max_concurrency", "api_key"}, "[[pool.endpoint]]")) {
        return false;
      }
      PoolEndpoint pe;
      if (!er.str("url", pe.config.url)) return false;
      if (pe.config.url.empty()) {
        error = fmt::format("{}: pool '{}': an endpoint needs a url", where(source, en), pc.name);
        return false;
      }
      std::string backend = "openai";
      if (!er.str("backend", backend)) return false;
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
      if (!er.integer("max_concurrency", limit)) return false;
      if (limit < 0) {
        error = fmt::format("{}: max_concurrency must be 0 (no limit) or more",
                            where(source, en));
        return false;
      }
      pe.max_concurrency = static_cast<int>(limit);
      if (!er.str("api_key", pe.config.api_key)) return false;
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
