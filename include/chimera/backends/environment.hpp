// What the environment says about endpoints, read the way the usual clients read it
// (ollama-python, openai-python, httpx), for every front end that takes an endpoint.
#pragma once

#include <chimera/backends/backend.hpp>

#include <string>
#include <string_view>

namespace chimera {

// OLLAMA_HOST as Ollama's clients read it: scheme optional (http), host 127.0.0.1 and port 11434
// by default, 80 or 443 when a scheme is given without a port, a path prefix kept.
// "" -> "http://127.0.0.1:11434", "example.com" -> "http://example.com:11434",
// ":8000" -> "http://127.0.0.1:8000", "https://example.com/ollama" ->
// "https://example.com:443/ollama".
std::string ollama_host_url(std::string_view ollama_host);

// OPENAI_BASE_URL as openai-python reads it ("https://host/v1"), as this client's endpoint: its
// trailing "/v1" dropped (the client adds /v1/... itself), trailing '/' too.
std::string openai_base_url(std::string_view base_url);

// The endpoint the environment names for `kind` when none is given: OLLAMA_HOST for Ollama (read
// by ollama_host_url), OPENAI_BASE_URL for OpenAI-compatible servers; "" when the variable is
// unset, and for the in-process backend.
std::string endpoint_from_environment(BackendKind kind);

// The API key the environment gives `kind`: CHIMERA_API_KEY for any endpoint, else
// OPENAI_API_KEY for OpenAI-compatible ones; "" when none.
std::string api_key_from_environment(BackendKind kind);

// The environment variables the two functions above read, for --help texts.
inline constexpr const char* kEndpointEnvironment =
    "OLLAMA_HOST (the Ollama endpoint, e.g. 127.0.0.1:11434), OPENAI_BASE_URL (the "
    "OpenAI-compatible endpoint, e.g. https://host/v1), CHIMERA_API_KEY (the API key for any "
    "endpoint), OPENAI_API_KEY (the API key for OpenAI-compatible endpoints), HTTPS_PROXY, "
    "HTTP_PROXY, ALL_PROXY, NO_PROXY (and their lower-case forms: the forward proxy, never for "
    "loopback)";

}  // namespace chimera
