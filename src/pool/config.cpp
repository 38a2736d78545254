// Pools from TOML (see pool.hpp for the format).
#include "core/toml_reader.hpp"
#include "pool/config_reader.hpp"

#include <chimera/backends/environment.hpp>
#include <chimera/pool/pool.hpp>

#include <fmt/format.h>
#include <toml++/toml.h>

namespace chimera::pool {

using chimera::detail::Reader;
using chimera::detail::where;

namespace {

// An endpoint's TLS settings (https:// only); files are read relative to the working folder.
bool read_tls(Reader& r, Tls& tls) {
  return r.str("ca_file", tls.ca_file) && r.str("client_cert", tls.client_cert) &&
         r.str("client_key", tls.client_key) && r.boolean("insecure", tls.insecure);
}

// Retries on the endpoint itself: retry_attempts, retry_budget_ms (settings.hpp's Retry).
bool read_retry(Reader& r, Retry& retry) {
  return r.integer("retry_attempts", retry.attempts, 1, kMaxAttempts) &&
         r.integer("retry_budget_ms", retry.budget_ms, 0, kMaxTimeoutMs);
}

// `headers = { "X-Team" = "red" }`: extra headers, each value a string.
bool read_headers(Reader& r, Headers& out) {
  const toml::node* n = r.table().get("headers");
  if (n == nullptr) return true;
  if (!n->is_table()) {
    r.error() = fmt::format("{}: 'headers' must be a table of strings ({{ \"X-Team\" = \"red\" }})",
                            r.location("headers"));
    return false;
  }
  for (const auto& [name, value] : *n->as_table()) {
    if (!value.is_string()) {
      r.error() =
          fmt::format("{}: header '{}' must be a string", r.location("headers"), name.str());
      return false;
    }
    out.emplace_back(std::string(name.str()), *value.value<std::string>());
  }
  if (auto e = validate_headers(out); !e.empty()) {
    r.error() = fmt::format("{}: {}", r.location("headers"), e);
    return false;
  }
  return true;
}

}  // namespace

// The [[pool]] tables of a document (a pool file, or a scene or engine file that holds pools).
bool detail::read_pools(const toml::table& root, const std::string& source,
                        std::vector<PoolConfig>& out, std::string& error) {
  const toml::node* pools = root.get("pool");
  if (pools == nullptr || !pools->is_array_of_tables()) {
    error = fmt::format(
        "{}: no [[pool]] table; a pool file looks like\n"
        "  [[pool]]\n  name = \"default\"\n  [[pool.endpoint]]\n"
        "  url = \"http://127.0.0.1:11434\"\n  backend = \"ollama\"",
        source);
    return false;
  }
  std::vector<PoolConfig> result;
  std::vector<std::string> fallback_at;  // where each pool's `fallback` is, for errors
  for (const auto& node : *pools->as_array()) {
    const auto& t = *node.as_table();
    Reader r(t, source, error);
    if (!r.known({"name", "routing", "model", "retries", "hedge_after_ms", "health_interval_ms",
                  "fallback", "endpoint"},
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
      error = fmt::format(
          "{}: pool '{}': unknown routing '{}' (pinned, round-robin, "
          "least-outstanding, session-affinity)",
          where(source, *t.get("routing")), pc.name, routing);
      return false;
    }
    if (!r.str("model", pc.model) || !r.str("fallback", pc.fallback) ||
        !r.integer("retries", pc.retries, -1, kMaxRetries) ||
        !r.integer("hedge_after_ms", pc.hedge_after_ms, 0, kMaxHedgeAfterMs) ||
        !r.integer("health_interval_ms", pc.health_interval_ms, 0, kMaxHealthIntervalMs)) {
      return false;
    }
    const toml::node* eps = t.get("endpoint");
    if (eps == nullptr || !eps->is_array_of_tables() || eps->as_array()->empty()) {
      error = fmt::format("{}: pool '{}' has no [[pool.endpoint]]", where(source, node), pc.name);
      return false;
    }
    for (const auto& en : *eps->as_array()) {
      Reader er(*en.as_table(), source, error);
      if (!er.known({"url", "backend", "max_concurrency", "api_key", "headers", "ca_file",
                     "client_cert", "client_key", "insecure", "retry_attempts", "retry_budget_ms",
                     "proxy", "expand", "resolve_interval_ms"},
                    "[[pool.endpoint]]")) {
        return false;
      }
      PoolEndpoint pe;
      if (!er.str("url", pe.config.url)) return false;
      std::string backend = "openai";
      if (!er.str("backend", backend)) return false;
      if (const auto kind = parse_backend_kind(backend)) {
        pe.config.kind = *kind;
      } else {
        error = fmt::format("{}: pool '{}': unknown backend '{}' (ollama, openai, llama)",
                            where(source, en), pc.name, backend);
        return false;
      }
      // No url: the environment's (OLLAMA_HOST, OPENAI_BASE_URL), as the usual clients do.
      if (pe.config.url.empty()) pe.config.url = endpoint_from_environment(pe.config.kind);
      if (pe.config.url.empty()) {
        error = fmt::format(
            "{}: pool '{}': an endpoint needs a url ($OLLAMA_HOST or $OPENAI_BASE_URL may give "
            "it)",
            where(source, en), pc.name);
        return false;
      }
      if (!er.integer("max_concurrency", pe.max_concurrency, 0, kMaxConcurrency) ||
          !er.str("expand", pe.expand) ||
          !er.integer("resolve_interval_ms", pe.resolve_interval_ms, kMinResolveIntervalMs,
                      kMaxResolveIntervalMs)) {
        return false;
      }
      if (!pe.expand.empty() && pe.expand != "dns") {
        error = fmt::format("{}: pool '{}': unknown expand '{}' (\"dns\", or leave it out)",
                            where(source, *en.as_table()->get("expand")), pc.name, pe.expand);
        return false;
      }
      if (!er.str("api_key", pe.config.api_key) || !er.str("proxy", pe.config.proxy) ||
          !read_tls(er, pe.config.tls) || !read_headers(er, pe.config.headers) ||
          !read_retry(er, pe.config.retry)) {
        return false;
      }
      pc.endpoints.push_back(std::move(pe));
    }
    for (const auto& other : result) {
      if (other.name == pc.name) {
        error = fmt::format("{}: two pools are named '{}'", where(source, node), pc.name);
        return false;
      }
    }
    const toml::node* fb = t.get("fallback");
    fallback_at.push_back(where(source, fb != nullptr ? *fb : node));
    result.push_back(std::move(pc));
  }
  {
    std::vector<const PoolConfig*> all;
    for (const auto& p : result) all.push_back(&p);
    std::size_t at = 0;
    if (auto e = check_fallbacks(all, &at); !e.empty()) {
      error = fmt::format("{}: {}", fallback_at[at], e);
      return false;
    }
  }
  out = std::move(result);
  return true;
}

bool parse_pools(std::string_view text, const std::string& source, std::vector<PoolConfig>& out,
                 std::string& error) {
  toml::table root;
  return chimera::detail::parse_toml(text, source, root, error) &&
         detail::read_pools(root, source, out, error);
}

bool load_pools(const std::filesystem::path& file, std::vector<PoolConfig>& out,
                std::string& error) {
  std::string text;
  if (!chimera::detail::read_config_file(file, "pool file", text, error)) return false;
  const std::string source = file.string();  // outlives the Reader, which keeps a reference
  toml::table root;
  if (!chimera::detail::parse_toml(text, source, root, error)) return false;
  // A pool file holds pools only: anything else is a typo ([pools], [[pool_endpoint]]) that
  // would otherwise be ignored without a word.
  Reader top(root, source, error);
  if (!top.known({"pool"}, "a pool file")) return false;
  return detail::read_pools(root, source, out, error);
}

bool detail::parse_engine_config(std::string_view text, const std::string& source, int max_threads,
                                 int max_io_threads, EngineFileConfig& out, std::string& error) {
  toml::table root;
  if (!chimera::detail::parse_toml(text, source, root, error)) return false;
  Reader top(root, source, error);
  if (!top.known({"engine", "pool"}, "the engine configuration")) return false;
  EngineFileConfig c;
  if (const toml::node* e = root.get("engine")) {
    if (!e->is_table()) {
      error = fmt::format("{}: 'engine' must be a table ([engine])", where(source, *e));
      return false;
    }
    Reader r(*e->as_table(), source, error);
    if (!r.known({"model", "threads", "io_threads"}, "[engine]") || !r.str("model", c.model) ||
        !r.integer("threads", c.threads, 0, max_threads) ||
        !r.integer("io_threads", c.io_threads, 1, max_io_threads)) {
      return false;
    }
  }
  if (root.contains("pool") && !read_pools(root, source, c.pools, error)) return false;
  out = std::move(c);
  return true;
}

}  // namespace chimera::pool
