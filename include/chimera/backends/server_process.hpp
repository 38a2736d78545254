// A llama-server process this program starts and owns: for tests, benchmarks and endpoint pools.
//
// The server listens on 127.0.0.1 on a port chosen here (free when chosen), with its output in a
// log file. The destructor stops it (SIGTERM, then SIGKILL after 2 s): no orphans.
//
// Example:
//   chimera::ServerProcess s({.model = "tiny.gguf", .parallel = 4});
//   if (!s.ok()) std::fprintf(stderr, "%s\n", s.error().c_str());
//   // ... talk to s.url() ...
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace chimera {

struct ServerOptions {
  std::string binary;              // llama-server; empty: the one this build was made with
  std::string model;               // GGUF file
  int port = 0;                    // 0: a free loopback port
  int parallel = 1;                // -np: slots
  int ctx = 2048;                  // -c: context shared by the slots
  int threads = 0;                 // -t; 0: llama-server's default
  int gpu_layers = 0;              // -ngl
  std::vector<std::string> extra;  // more flags, passed as they are
  int ready_timeout_ms = 60'000;   // how long to wait for /health
};

class ServerProcess {
 public:
  explicit ServerProcess(ServerOptions options);
  ~ServerProcess();
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  bool ok() const { return ok_; }
  const std::string& error() const { return error_; }  // why it is not ok, with its log's tail
  std::string url() const;
  int port() const { return port_; }
  pid_t pid() const { return pid_; }
  void stop();  // SIGTERM, wait up to 2 s, then SIGKILL
  void kill();  // SIGKILL at once, as if it crashed
  std::string log_tail(std::size_t bytes = 4000) const;

 private:
  int port_ = 0;
  pid_t pid_ = -1;
  bool ok_ = false;
  std::string error_;
  std::string log_;
};

// A TCP port on 127.0.0.1 that nothing listens on now.
int free_loopback_port();

// A blocking HTTP/1.1 GET of `path` on 127.0.0.1:port with Connection: close, for readiness
// and slot checks. Returns the status (0 when nothing answered) and, if asked, the body.
int loopback_get(int port, const std::string& path, std::string* body = nullptr,
                 int timeout_ms = 2000);

// The llama-server this build was made with.
const char* default_llama_server();

}  // namespace chimera
