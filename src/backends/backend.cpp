#include "backends/inprocess.hpp"
#include "backends/ollama.hpp"
#include "backends/openai.hpp"
#include "core/runtime_impl.hpp"
#include "http/client.hpp"

#include <chimera/backends/backend.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/json/parse.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <future>
#include <stdexcept>
#include <utility>

namespace chimera {

namespace bhttp = boost::beast::http;

std::string validate(const LlamaConfig& c) {
  auto out_of = [](const char* name, int v, int lo, int hi) {
    return fmt::format("in-process setting {} is {}; it must be from {} to {}", name, v, lo, hi);
  };
  if (c.parallel < 1 || c.parallel > kMaxParallel) {
    return out_of("parallel", c.parallel, 1, kMaxParallel);
  }
  if (c.ctx_per_seq < 16 || c.ctx_per_seq > kMaxNumCtx) {
    return out_of("ctx_per_seq (num_ctx)", c.ctx_per_seq, 16, kMaxNumCtx);
  }
  if (c.batch < 1 || c.batch > kMaxBatch) return out_of("batch", c.batch, 1, kMaxBatch);
  if (c.prefill_chunk < 1 || c.prefill_chunk > kMaxBatch) {
    return out_of("prefill_chunk", c.prefill_chunk, 1, kMaxBatch);
  }
  if (c.threads < 0 || c.threads > 4'096) return out_of("threads", c.threads, 0, 4'096);
  if (c.gpu_layers < -1 || c.gpu_layers > 100'000) {
    return out_of("gpu_layers", c.gpu_layers, -1, 100'000);
  }
  return {};
}

const char* to_string(BackendKind k) {
  switch (k) {
    case BackendKind::ollama:
      return "ollama";
    case BackendKind::openai:
      return "openai";
    case BackendKind::llama:
      return "llama";
  }
  return "unknown";
}

std::optional<BackendKind> parse_backend_kind(std::string_view name) {
  for (BackendKind k : {BackendKind::ollama, BackendKind::openai, BackendKind::llama}) {
    if (name == to_string(k)) return k;
  }
  return std::nullopt;
}

std::unique_ptr<Backend> make_backend(const EndpointConfig& config, Runtime& runtime) {
  if (auto e = validate(config.timeouts); !e.empty()) {
    throw std::invalid_argument(fmt::format("{}: {}", redact_url(config.url), e));
  }
  // The key goes into a header line: a control character would end it and start another.
  if (std::any_of(config.api_key.begin(), config.api_key.end(),
                  [](char ch) { return static_cast<unsigned char>(ch) < 0x20 || ch == 0x7f; })) {
    throw std::invalid_argument(
        fmt::format("{}: the API key holds a control character (a line break?); give the key alone",
                    redact_url(config.url)));
  }
  if (auto e = validate(config.retry); !e.empty()) {
    throw std::invalid_argument(fmt::format("{}: {}", redact_url(config.url), e));
  }
  if (auto e = validate_headers(config.headers); !e.empty()) {
    throw std::invalid_argument(fmt::format("{}: {}", redact_url(config.url), e));
  }
  if (config.kind == BackendKind::llama) {
    if (config.url.empty()) {
      throw std::invalid_argument("the in-process backend needs a GGUF model file");
    }
    if (auto e = validate(config.llama); !e.empty()) {
      throw std::invalid_argument(fmt::format("{}: {}", config.url, e));
    }
    return backends::make_llama_backend(config);
  }
  http::EndpointUrl url;
  std::string error;
  if (!http::parse_endpoint_url(config.url, url, error)) throw std::invalid_argument(error);
  switch (config.kind) {
    case BackendKind::ollama:
      return std::make_unique<backends::OllamaBackend>(config, runtime, std::move(url));
    case BackendKind::openai:
      return std::make_unique<backends::OpenAIBackend>(config, runtime, std::move(url));
    case BackendKind::llama:
      break;
  }
  throw std::invalid_argument(
      fmt::format("unknown backend kind {}", static_cast<int>(config.kind)));
}

DetectResult detect_backend(const std::string& url, Runtime& runtime, int64_t timeout_ms) {
  EndpointConfig cfg;
  cfg.url = url;
  return detect_backend(cfg, runtime, timeout_ms);
}

DetectResult detect_backend(const EndpointConfig& config, Runtime& runtime, int64_t timeout_ms) {
  DetectResult out;
  EndpointConfig cfg = config;
  cfg.kind = BackendKind::ollama;
  cfg.timeouts.connect_ms = timeout_ms;
  std::unique_ptr<Backend> b;
  try {
    b = make_backend(cfg, runtime);
  } catch (const std::invalid_argument& e) {
    out.error = {ErrorKind::bad_request, e.what()};
    return out;
  }
  auto& hb = static_cast<backends::HttpBackend&>(*b);
  std::string body;
  auto r = hb.fetch_blocking({bhttp::verb::get, "/api/version", "", "", "application/json"}, body,
                             timeout_ms);
  if (r.error && r.error.kind != ErrorKind::protocol) {
    out.error = r.error;
    return out;
  }
  boost::system::error_code ec;
  if (!r.error && r.status == 200) {
    auto v = boost::json::parse(body, ec);
    if (!ec && v.is_object() && v.get_object().contains("version")) {
      out.kind = BackendKind::ollama;
      return out;
    }
  }
  body.clear();
  r = hb.fetch_blocking({bhttp::verb::get, "/v1/models", "", "", "application/json"}, body,
                        timeout_ms);
  if (!r.error && r.status == 200 && backends::is_model_list(body)) {
    out.kind = BackendKind::openai;
    return out;
  }
  out.error = {
      ErrorKind::protocol,
      fmt::format("{}: cannot tell which API it speaks: neither /api/version (Ollama: "
                  "{{\"version\": ...}}) nor /v1/models (OpenAI-compatible: "
                  "{{\"data\": [...]}}) answered as that API does{}; pass --backend",
                  hb.endpoint(),
                  r.error           ? fmt::format(" ({})", r.error.message)
                  : r.status != 200 ? fmt::format(" (/v1/models: HTTP {})", r.status)
                                    : fmt::format(" (/v1/models: {})",
                                                  backends::describe_body(r.content_type, body)))};
  return out;
}

}  // namespace chimera
