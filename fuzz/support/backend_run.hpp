// Runs one request of each shape through the real Ollama or OpenAI-compatible backend against
// the loopback server, and checks what every caller relies on: the request ends (no hang), and
// the text the completion reports is exactly the text the token callback was given (nothing
// lost, nothing delivered twice), whatever the server sent.
#pragma once

#include "loopback_server.hpp"

#include <chimera/backends/backend.hpp>
#include <chimera/core/runtime.hpp>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

namespace chimera::fuzz {

struct RequestShape {
  BackendKind kind = BackendKind::openai;
  RequestKind request = RequestKind::chat;
  bool stream = true;
};

// The first byte of an input picks the shape.
inline RequestShape shape_from(std::uint8_t b) {
  return {.kind = (b & 1) != 0 ? BackendKind::ollama : BackendKind::openai,
          .request = (b & 2) != 0 ? RequestKind::completion : RequestKind::chat,
          .stream = (b & 4) == 0};
}

class BackendRun {
 public:
  BackendRun() {
    for (BackendKind kind : {BackendKind::ollama, BackendKind::openai}) {
      EndpointConfig cfg{.url = server_.url(), .kind = kind};
      // Every response ends at the server's close; these only bound a broken client.
      cfg.timeouts = {
          .connect_ms = 2'000, .first_token_ms = 5'000, .idle_ms = 5'000, .total_ms = 10'000};
      cfg.limits.max_record_bytes = 64 << 10;
      cfg.limits.max_body_bytes = 1 << 20;
      backends_[kind == BackendKind::ollama ? 0 : 1] = make_backend(cfg, runtime_);
    }
  }

  Completion run(const RequestShape& shape, std::string response) {
    server_.set_response(std::move(response));
    Request req;
    req.kind = shape.request;
    req.model = "fuzz";
    req.stream = shape.stream;
    if (shape.request == RequestKind::chat) {
      req.messages = {{.role = "user", .content = "hi"}};
    } else {
      req.prompt = "hi";
    }
    std::string delivered;
    Backend& backend = *backends_[shape.kind == BackendKind::ollama ? 0 : 1];
    Completion c = backend.generate(req, [&](const TokenEvent& t) {
      delivered.append(t.text);
      return true;
    });
    if (shape.stream && c.text != delivered) {
      std::fprintf(stderr,
                   "completion text (%zu bytes) differs from the delivered text (%zu bytes)\n",
                   c.text.size(), delivered.size());
      std::abort();
    }
    if (!c.ok() && c.error.message.empty()) {
      std::fprintf(stderr, "a failed request without a message\n");
      std::abort();
    }
    return c;
  }

 private:
  Runtime runtime_;
  LoopbackServer server_;
  std::unique_ptr<Backend> backends_[2];
};

}  // namespace chimera::fuzz
