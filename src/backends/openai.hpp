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

// The decoder of an OpenAI-compatible response body (`chat`: /v1/chat/completions, else
// /v1/completions; `stream`: Server-Sent Events). `scan` false parses every streamed record
// whole, never through StreamChunkScanner (stream_chunk.hpp): the tests compare the two. `relay`:
// Request::relay (the events handed on as they came; Emitter::relay).
std::unique_ptr<StreamDecoder> make_openai_decoder(bool chat, bool stream, std::size_t max_record,
                                                   std::string url, bool scan = true,
                                                   bool relay = false);
// The token event StreamDecoder::warm decodes: one token, "a", of a chat or completions stream.
std::string_view openai_warm_record(bool chat);

}  // namespace chimera::backends
