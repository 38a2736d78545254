// An endpoint pool: several inference endpoints behind one Backend.
//
// "Dual Ollama" (one server per agent pool) is two pools of one endpoint each; a pool of several
// endpoints spreads its agents over them. A Pool is itself a Backend, so everything that runs on
// a backend (the workflow, `generate`, banter, the Python module) runs on a pool unchanged.
//
// What a pool does for a request:
// - routing (router.hpp): pinned, round-robin, least-outstanding (default), session-affinity;
// - a per-endpoint concurrency limit (match the server's slots: llama-server `-np`, Ollama's
//   OLLAMA_NUM_PARALLEL) with a fair queue in front of it;
// - health: periodic checks (`/health`, `/api/version`); an endpoint that fails is taken out
//   (circuit breaker with back-off) and put back when a check answers;
// - failover: a request that fails before its first token is retried on another endpoint of the
//   pool; one that fails after its first token ends with a clear error (its tokens were already
//   handed to the caller, so a retry would repeat them);
// - hedging (optional): no first token after `hedge_after_ms`, the same request goes to a second
//   endpoint; the first to answer is kept and the other cancelled (its server slot freed).
//
// Threading: as for every Backend (backend.hpp). A pool may hold several "lanes": copies of each
// endpoint's backend on different Runtimes (event loops), so that agents pinned to one event loop
// do their I/O on it (Engine's executors); routing, limits and health are shared by the lanes.
#pragma once

#include <chimera/backends/backend.hpp>
#include <chimera/pool/router.hpp>

#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace chimera::pool {

// Bounds of a pool's settings (pool files and PoolConfig alike; Pool's constructor checks them).
inline constexpr int kMaxRetries = 1'000;
inline constexpr int64_t kMaxHedgeAfterMs = 600'000;         // 10 minutes
inline constexpr int64_t kMaxHealthIntervalMs = 86'400'000;  // a day
inline constexpr int kMaxConcurrency = 1'000'000;
inline constexpr int64_t kMinResolveIntervalMs = 100;
inline constexpr int64_t kMaxResolveIntervalMs = 86'400'000;  // a day

struct PoolEndpoint {
  EndpointConfig config;    // URL and kind (ollama, openai, or llama in-process: url = GGUF file)
  int max_concurrency = 0;  // requests in flight at once (per address with expand = "dns");
                            // 0: no limit
  // "dns": the URL's host is a name that may resolve to several addresses (a Kubernetes
  // headless service, a round-robin DNS name); each address becomes an endpoint of the pool
  // (connecting there, with the URL's host kept for Host, SNI and certificates), and the name is
  // resolved again every resolve_interval_ms: new addresses join, addresses gone leave (requests
  // already on them finish there; none fails for it). "" : one endpoint, resolved per
  // connection.
  std::string expand;
  int64_t resolve_interval_ms = 5'000;  // kMinResolveIntervalMs to kMaxResolveIntervalMs
};

// The addresses a name resolves to (A and AAAA, as text), for expand = "dns"; false with `error`
// when it cannot be resolved. The default is the system's resolver (getaddrinfo).
using Resolver =
    std::function<bool(const std::string& host, std::vector<std::string>& out, std::string& error)>;
bool system_resolve(const std::string& host, std::vector<std::string>& out, std::string& error);

struct PoolConfig {
  std::string name = "default";
  Routing routing = Routing::least_outstanding;
  std::vector<PoolEndpoint> endpoints;
  std::string model;                   // model name sent when a request names none (HTTP backends)
  int retries = -1;                    // retries on other endpoints before the first token;
                                       // -1: as many as the pool has other endpoints
  int64_t hedge_after_ms = 0;          // 0: no hedging
  int64_t health_interval_ms = 2'000;  // checks of healthy endpoints; 0: none (down endpoints
                                       // are still probed when their back-off runs out)
  BreakerConfig breaker;
  // Another pool's name: a request goes there when no endpoint of this pool can take it (all
  // down or excluded) or every attempt here failed before the first token. "" for none.
  std::string fallback;
  Resolver resolver;  // for expand = "dns"; empty: system_resolve
};

// One endpoint as the pool sees it now.
struct EndpointStatus {
  std::string url;
  std::string address;  // the address it connects to (expand = "dns"); "" otherwise
  BackendKind kind = BackendKind::openai;
  bool up = true;
  int outstanding = 0;
  int limit = 0;
  uint64_t dispatched = 0;
  int failures = 0;
  std::string last_error;
  std::optional<EngineLoad> engine;  // in-process endpoints: sequences and KV cells in use
};

class Pool : public Backend {
 public:
  // Makes the endpoints' backends, `lanes` of each, lane i on runtimes[i % runtimes.size()].
  // Throws std::invalid_argument naming the pool and endpoint when one cannot be made.
  Pool(PoolConfig config, std::vector<Runtime*> runtimes, int lanes = 0);
  Pool(PoolConfig config, Runtime& runtime);
  ~Pool() override;

  BackendKind kind() const override;
  const std::string& endpoint() const override;  // "pool:NAME"
  // On lane 0 (or round-robin over the lanes).
  std::shared_ptr<RequestHandle> start(Request request, TokenCallback on_token,
                                       DoneCallback on_done) override;
  // On a given lane: callbacks run on that lane's Runtime.
  std::shared_ptr<RequestHandle> start_on(int lane, Request request, TokenCallback on_token,
                                          DoneCallback on_done);
  // Healthy when any endpoint is; `detail` lists each endpoint.
  EndpointInfo check() override;
  void drop_session(const std::string& session) override;
  // What the first in-process endpoint's engine knows of its model; none when no endpoint runs
  // in-process.
  std::optional<ModelFacts> model_facts() const override;

  const PoolConfig& config() const;
  int lanes() const;
  std::vector<EndpointStatus> status() const;
  // Checks every endpoint now (blocks), updating the breaker as the periodic checks do.
  void check_now();
  // The pool that takes requests this one cannot serve (PoolConfig::fallback); nullptr for none.
  // It must outlive this pool. link_fallbacks() sets it from the names.
  void set_fallback(Pool* other);
  Pool* fallback() const;

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

// "" when the pool's settings are within their bounds (above); otherwise what is wrong.
std::string validate(const PoolConfig& config);

// "" when every PoolConfig::fallback names another pool of `pools` and no chain of fallbacks
// comes back to where it started; otherwise what is wrong, naming the pools (and `*at` is the
// index of the pool at fault).
std::string check_fallbacks(const std::vector<const PoolConfig*>& pools, std::size_t* at = nullptr);
// Sets each pool's fallback from its PoolConfig::fallback; throws std::invalid_argument with
// check_fallbacks()'s message when a name is unknown or the fallbacks form a loop.
void link_fallbacks(const std::vector<Pool*>& pools);

// Pools from TOML:
//   [[pool]]
//   name = "collector"               # default "default"
//   routing = "least-outstanding"    # pinned | round-robin | least-outstanding | session-affinity
//   model = "llama3.2:1b"            # optional
//   hedge_after_ms = 150             # optional
//   retries = 1                      # optional
//   health_interval_ms = 2000        # optional
//   fallback = "other"               # optional: another [[pool]] of the same file
//   [[pool.endpoint]]
//   url = "http://127.0.0.1:11434"
//   backend = "ollama"               # ollama | openai | llama (url = a GGUF file)
//   max_concurrency = 4              # optional
//   expand = "dns"                   # optional: an endpoint per address the host resolves to
//   resolve_interval_ms = 5000       # optional, with expand: 100 to 86400000
// Every integer is read with its range (retries -1 to 1000, hedge_after_ms 0 to 600000,
// health_interval_ms 0 to 86400000, max_concurrency 0 to 1000000); a pool file holds [[pool]]
// tables only. Returns false with `error` naming the file, the line and the key.
bool load_pools(const std::filesystem::path& file, std::vector<PoolConfig>& out,
                std::string& error);
bool parse_pools(std::string_view toml_text, const std::string& source,
                 std::vector<PoolConfig>& out, std::string& error);

}  // namespace chimera::pool
