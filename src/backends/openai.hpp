// The OpenAI-compatible backend (private header): llama-server, vLLM and others.
#pragma once

#include "backends/http_backend.hpp"

namespace chimera::backends {

class OpenAIBackend final : public HttpBackend {
 public:
  OpenAIBackend(const EndpointConfig& config, Runtime& runtime, http::EndpointUrl url);
  EndpointInfo check() override;

 protected:
  bool build(const Request& request, http::HttpRequest& out, std::string& error) override;
  std::unique_ptr<StreamDecoder> make_decoder(const Request& request) override;
};

}  // namespace chimera::backends
