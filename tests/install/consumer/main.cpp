// Streams one in-process request through the installed C++ library (chimera::chimera), asks
// the installed C ABI (chimera::c) for its version, and serves the model over HTTP with the
// installed serve library (chimera::serve), asking it for one completion over a socket: what a
// program built with find_package(chimera) does.
#include <chimera.h>
#include <chimera/backends/backend.hpp>
#include <chimera/core/runtime.hpp>
#include <chimera/pool/pool.hpp>
#include <chimera/serve/server.hpp>
#include <chimera/version.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>

namespace {

// One HTTP/1.1 request with "Connection: close"; the whole response.
std::string http(int port, const std::string& request) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string out;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      ::send(fd, request.data(), request.size(), 0) == static_cast<ssize_t>(request.size())) {
    char buf[4096];
    ssize_t n = 0;
    while ((n = ::recv(fd, buf, sizeof buf, 0)) > 0) out.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return out;
}

}  // namespace

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
  if (chunks == 0) return 1;

  chimera::pool::PoolConfig pc;
  pc.name = "tiny";
  pc.endpoints.push_back({.config = endpoint});
  chimera::pool::Pool pool(pc, rt);
  chimera::serve::Server server({.port = 0, .runtime = &rt}, {{.name = "tiny", .pool = &pool}});
  server.start();
  const std::string body = R"({"prompt":"Once upon a time","max_tokens":4})";
  const std::string got = http(server.port(),
                               "POST /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                               "Content-Type: application/json\r\nContent-Length: " +
                                   std::to_string(body.size()) + "\r\n\r\n" + body);
  server.stop();
  if (got.rfind("HTTP/1.1 200", 0) != 0 ||
      got.find("\"completion_tokens\":4") == std::string::npos) {
    std::fprintf(stderr, "consumer: serve answered: %s\n", got.c_str());
    return 1;
  }
  std::fprintf(stderr, "consumer: chimeraforge %s, %d chunks streamed in-process, one served\n",
               CHIMERA_VERSION_STRING, chunks);
  return 0;
}
