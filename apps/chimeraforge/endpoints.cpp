// `chimeraforge endpoints check`: is each endpoint up, which API does it speak, what does it serve.
#include "commands.hpp"

#include <chimera/backends/backend.hpp>

#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <fmt/format.h>

namespace chimera::cli {

namespace {

struct CheckArgs {
  std::vector<std::string> urls;
  std::string backend = "auto";
  int64_t timeout_ms = 3'000;
  bool json = false;
};

EndpointInfo check_one(const CheckArgs& a, const std::string& url) {
  Runtime& rt = Runtime::shared();
  EndpointInfo info;
  info.url = url;
  EndpointConfig cfg;
  cfg.url = url;
  cfg.timeouts.connect_ms = a.timeout_ms;
  if (a.backend == "ollama") {
    cfg.kind = BackendKind::ollama;
  } else if (a.backend == "openai") {
    cfg.kind = BackendKind::openai;
  } else {
    auto d = detect_backend(url, rt, a.timeout_ms);
    if (d.error) {
      info.detail = d.error.message;
      return info;
    }
    cfg.kind = d.kind;
  }
  try {
    return make_backend(cfg, rt)->check();
  } catch (const std::invalid_argument& e) {
    info.detail = e.what();
    return info;
  }
}

int run_check(const CheckArgs& a) {
  int unhealthy = 0;
  for (const auto& url : a.urls) {
    const EndpointInfo info = check_one(a, url);
    if (!info.healthy) ++unhealthy;
    if (a.json) {
      boost::json::array models;
      for (const auto& m : info.models) models.emplace_back(m);
      boost::json::object o{{"url", info.url},
                            {"healthy", info.healthy},
                            {"api", info.healthy ? to_string(info.kind) : ""},
                            {"server", info.server},
                            {"version", info.version},
                            {"models", std::move(models)},
                            {"detail", info.detail},
                            {"latency_ms", static_cast<double>(info.latency_ns) / 1e6}};
      fmt::print("{}\n", boost::json::serialize(o));
      continue;
    }
    if (!info.healthy) {
      fmt::print("{}  DOWN  {}\n", info.url, info.detail);
      continue;
    }
    fmt::print("{}  UP  api={} server={}{}  {:.1f} ms  {}\n", info.url, to_string(info.kind),
               info.server, info.version.empty() ? "" : " version=" + info.version,
               static_cast<double>(info.latency_ns) / 1e6, info.detail);
    fmt::print("  models: {}\n", info.models.empty() ? "(none listed)"
                                                      : fmt::format("{}", fmt::join(info.models, ", ")));
  }
  return unhealthy == 0 ? kOk : kFailed;
}

}  // namespace

std::function<int()> add_endpoints(CLI::App& app) {
  auto a = std::make_shared<CheckArgs>();
  auto* cmd = app.add_subcommand("endpoints", "Inspect inference endpoints");
  cmd->require_subcommand(1);
  auto* check = cmd->add_subcommand(
      "check",
      "For each URL: is it up, which API it speaks (Ollama or OpenAI-compatible), its version and "
      "its models. Exits 1 when any is down.\n\n"
      "Example:\n  chimeraforge endpoints check http://127.0.0.1:11434 http://127.0.0.1:8080");
  check->add_option("urls", a->urls, "Endpoint URLs")->required();
  check->add_option("--backend,-b", a->backend, "auto, ollama or openai")
      ->check(CLI::IsMember({"auto", "ollama", "openai"}))
      ->capture_default_str();
  check->add_option("--timeout", a->timeout_ms, "Per-request timeout, ms")->capture_default_str();
  check->add_flag("--json", a->json, "One JSON object per endpoint");
  return [a]() { return run_check(*a); };
}

}  // namespace chimera::cli
