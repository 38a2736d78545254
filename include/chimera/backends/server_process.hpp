// A llama-server process this program starts and owns: for tests, benchmarks and endpoint pools.
//
// The server listens on 127.0.0.1 on a port chosen here (free when chosen), with its output in a
// log file and its stdin on /dev/null. The destructor stops it (SIGTERM, then SIGKILL after 2 s).
//
// No orphans, even when this process is killed with SIGKILL: the server is started with
// PR_SET_PDEATHSIG = SIGKILL, so the kernel kills it when its parent goes. Linux ties that signal
// to the *thread* that started the server, not the process: create a ServerProcess on a thread
// that outlives it (the main thread, in the usual case), or the server dies with that thread.
//
// Not thread-safe: one thread uses a ServerProcess at a time.
//
// Example (blocking until ready):
//   chimera::ServerProcess s({.model = "tiny.gguf", .parallel = 4});
//   if (!s.ok()) std::fprintf(stderr, "%s\n", s.error().c_str());
//   // ... talk to s.url() ...
//
// Example (several at once: start them all, then poll):
//   std::vector<std::unique_ptr<chimera::ServerProcess>> v;
//   for (int i = 0; i < 4; ++i)
//     v.push_back(std::make_unique<chimera::ServerProcess>(
//         chimera::ServerOptions{.model = "m.gguf", .wait_until_ready = false}));
//   for (auto& s : v) while (!s->poll_ready()) std::this_thread::sleep_for(25ms);
#pragma once

#include <sys/types.h>

#include <chrono>
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
  // true: the constructor returns once the server answers /health (or failed). false: it returns
  // as soon as the process is started; call poll_ready() until it returns true.
  bool wait_until_ready = true;
  // true: the server gets a process group of its own, so a Ctrl-C at the terminal reaches only
  // this process, which then stops the server in order (see `chimeraforge endpoints up`).
  bool own_process_group = false;
  // Another server than llama-server (`ollama serve` for `endpoints up --server ollama`): when
  // `command` is not empty it is run as it is (command[0] a path) instead of llama-server's
  // command line, with `env` ("NAME=value") added to this process's environment, and readiness
  // is a 200 from `ready_path`. `name` is what messages call it.
  std::vector<std::string> command;
  std::vector<std::string> env;
  std::string ready_path = "/health";
  std::string name = "llama-server";
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
  pid_t pid() const { return pid_; }  // -1 once stopped, killed or reaped
  void stop();                        // SIGTERM, wait up to 2 s, then SIGKILL
  void kill();                        // SIGKILL at once, as if it crashed
  std::string log_tail(std::size_t bytes = 4000) const;
  const std::string& log_path() const { return log_; }  // removed by the destructor

  // For a server started with wait_until_ready = false: one non-blocking look (one /health
  // request). True once settled: ok() (it answers /health with 200) or failed (error() says why:
  // it exited, or was not ready within ready_timeout_ms, in which case it is stopped).
  bool poll_ready();
  // False once the process has exited (it is reaped, pid() becomes -1, ok() false and error()
  // says how it ended, with its log's tail). Non-blocking.
  bool running();

 private:
  void reaped(int wait_status, const char* when);
  std::string log_note() const;  // "; its log:\n<tail>", or that it is empty

  int port_ = 0;
  pid_t pid_ = -1;
  bool ok_ = false;
  std::string error_;
  std::string log_;
  std::chrono::steady_clock::time_point ready_deadline_;
  int ready_timeout_ms_ = 0;
  std::string ready_path_ = "/health";
  std::string name_ = "llama-server";
};

// A TCP port on 127.0.0.1 that nothing listens on now. Throws std::system_error when no
// socket can be bound.
int free_loopback_port();

// A blocking HTTP/1.1 GET of `path` on 127.0.0.1:port with Connection: close, for readiness
// and slot checks. Returns the status (0 when nothing answered) and, if asked, the body.
int loopback_get(int port, const std::string& path, std::string* body = nullptr,
                 int timeout_ms = 2000);

// The llama-server this build was made with.
const char* default_llama_server();

}  // namespace chimera
