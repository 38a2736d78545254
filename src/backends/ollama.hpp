// The Ollama backend (private header).
#pragma once

#include "backends/http_backend.hpp"

namespace chimera::backends {

class OllamaBackend final : public HttpBackend {
 public:
  OllamaBackend(const EndpointConfig& config, Runtime& runtime, http::EndpointUrl url);
  EndpointInfo check() override;

 protected:
  bool build(const Request& request, http::HttpRequest& out, std::string& error) override;
  std::unique_ptr<StreamDecoder> make_decoder(const Request& request) override;
};

}  // namespace chimera::backends
