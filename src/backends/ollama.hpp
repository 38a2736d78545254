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

// The decoder of an Ollama response body (`chat`: /api/chat, else /api/generate; `stream`:
// NDJSON). `scan` false parses every streamed record whole, never through StreamChunkScanner
// (stream_chunk.hpp): the tests compare the two.
std::unique_ptr<StreamDecoder> make_ollama_decoder(bool chat, bool stream, std::size_t max_record,
                                                   std::string url, bool scan = true);
// The token record StreamDecoder::warm decodes: one token, "a", of a chat or generate stream.
std::string_view ollama_warm_record(bool chat);

}  // namespace chimera::backends
