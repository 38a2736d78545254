#include "backends/llama_backend.hpp"
#include "backends/ollama.hpp"
#include "backends/openai.hpp"
#include "core/runtime_impl.hpp"
#include "http/client.hpp"

#include <chimera/backends/backend.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/json/parse.hpp>
#include <fmt/format.h>

#include <future>
#include <stdexcept>

namespace chimera {

namespace bhttp = boost::beast::http;

std::unique_ptr<Backend> make_backend(const EndpointConfig& config, Runtime& runtime) {
  if (config.kind == BackendKind::llama) {
    if (config.url.empty()) {
      throw std::invalid_argument("the in-process backend needs a GGUF model file");
    }
    return std::make_unique<backends::LlamaBackend>(config);
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
  throw std::invalid_argument(fmt::format("unknown backend kind {}", static_cast<int>(config.kind)));
}

DetectResult detect_backend(const std::string& url, Runtime& runtime, int64_t timeout_ms) {
  DetectResult out;
  EndpointConfig cfg;
  cfg.url = url;
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
  if (r.error) {
    out.error = r.error;
    return out;
  }
  boost::system::error_code ec;
  if (r.status == 200) {
    auto v = boost::json::parse(body, ec);
    if (!ec && v.is_object() && v.get_object().contains("version")) {
      out.kind = BackendKind::ollama;
      return out;
    }
  }
  body.clear();
  r = hb.fetch_blocking({bhttp::verb::get, "/v1/models", "", "", "application/json"}, body,
                        timeout_ms);
  if (!r.error && r.status == 200) {
    out.kind = BackendKind::openai;
    return out;
  }
  out.error = {ErrorKind::protocol,
               fmt::format("{}: cannot tell which API it speaks: /api/version (Ollama) and "
                           "/v1/models (OpenAI-compatible) both failed; pass --backend",
                           url)};
  return out;
}

}  // namespace chimera
