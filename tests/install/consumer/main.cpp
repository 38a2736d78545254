// Streams one in-process request through the installed C++ library (chimera::chimera) and asks
// the installed C ABI (chimera::c) for its version: what a program built with
// find_package(chimera) does.
#include <chimera.h>
#include <chimera/backends/backend.hpp>
#include <chimera/core/runtime.hpp>
#include <chimera/version.h>

#include <cstdio>
#include <cstring>

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: consumer MODEL.gguf\n");
    return 2;
  }
  if (std::strcmp(chimera_version(), CHIMERA_VERSION_STRING) != 0) {
    std::fprintf(stderr, "consumer: libchimera_c says %s, the headers %s\n", chimera_version(),
                 CHIMERA_VERSION_STRING);
    return 1;
  }
  chimera::Runtime rt;
  chimera::EndpointConfig endpoint;
  endpoint.url = argv[1];
  endpoint.kind = chimera::BackendKind::llama;
  endpoint.llama.parallel = 1;
  endpoint.llama.ctx_per_seq = 512;
  auto backend = chimera::make_backend(endpoint, rt);

  chimera::Request req;
  req.kind = chimera::RequestKind::completion;
  req.prompt = "Once upon a time";
  req.options.num_predict = 16;
  req.options.seed = 42;
  int chunks = 0;
  chimera::Completion c = backend->generate(req, [&](const chimera::TokenEvent& t) {
    std::fwrite(t.text.data(), 1, t.text.size(), stdout);
    ++chunks;
    return true;
  });
  std::printf("\n");
  if (!c.ok()) {
    std::fprintf(stderr, "consumer: the request failed: %s\n", c.error.message.c_str());
    return 1;
  }
  std::fprintf(stderr, "consumer: chimeraforge %s, %d chunks streamed in-process\n",
               CHIMERA_VERSION_STRING, chunks);
  return chunks > 0 ? 0 : 1;
}
