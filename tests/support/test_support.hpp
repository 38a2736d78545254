// Helpers shared by the test binaries: a real llama-server started on a free loopback port,
// and the `tiny` synthetic model (written once per build tree).
#pragma once

#include <chimera/backends/server_process.hpp>

#include <sys/types.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

namespace chimera::test {

// The tiny synthetic model, written on first use into the build tree's test-models/ folder.
// Safe when several test processes ask at once (the writer replaces the file atomically).
std::filesystem::path tiny_model();

// The tiny shape with Qwen 2's vocabulary and a tool-calling Jinja chat template (kToolTemplate,
// one of the templates in llama.cpp's source: Hermes-style <tool_call> JSON), as a user's
// instruct model carries one.
inline constexpr const char* kToolTemplate = "Qwen-Qwen2.5-7B-Instruct";
std::filesystem::path tool_model();

// The tiny shape with Llama 3's vocabulary and Llama 3.2's chat template (kToolCallTemplate: a
// call is the JSON object {"name": ..., "parameters": ...}), for tests in which the model itself
// calls a tool. Its weights are random; the tests bias two tokens (kCallStartToken, the `{` a
// call starts with, and kEndOfTurnToken, `<|eot_id|>`, above it), so that under the grammar of
// tool_choice "required" the model opens a call at once, the grammar holds it to the tool's
// schema, and the model ends its turn when the call is whole, and answers at once when tools are
// not required.
inline constexpr const char* kToolCallTemplate = "meta-llama-Llama-3.2-3B-Instruct";
inline constexpr int32_t kCallStartToken = 90;      // "{"
inline constexpr int32_t kEndOfTurnToken = 128009;  // "<|eot_id|>"
std::filesystem::path tool_call_model();

// The tiny shape with Qwen 2's vocabulary and `chat_template`, one of llama.cpp's
// models/templates/*.jinja by name (e.g. "Qwen-Qwen3-0.6B").
std::filesystem::path qwen2_model(const std::string& chat_template);

// A real llama-server on a free loopback port, started by the test and stopped by the
// destructor (chimera::ServerProcess with the tests' flags: 2 threads, no warm-up, no host-RAM
// prompt cache).
class LlamaServer {
 public:
  struct Options {
    int parallel = 2;  // -np
    int ctx = 2048;    // -c (shared by the slots)
    std::vector<std::string> extra;
  };
  explicit LlamaServer(const std::filesystem::path& model, Options options);
  explicit LlamaServer(const std::filesystem::path& model) : LlamaServer(model, Options{}) {}

  bool ok() const { return process_->ok(); }
  const std::string& error() const { return process_->error(); }
  std::string url() const { return process_->url(); }
  int port() const { return process_->port(); }
  pid_t pid() const { return process_->pid(); }
  void kill() { process_->kill(); }  // SIGKILL, as if the server crashed
  std::string log_tail(std::size_t bytes = 4000) const { return process_->log_tail(bytes); }

 private:
  std::unique_ptr<ServerProcess> process_;
};

// True when no slot of the llama-server on 127.0.0.1:port is processing (its /slots).
bool slots_idle(int port);

// True when `s` is valid UTF-8.
bool valid_utf8(std::string_view s);

// One run of the chimeraforge command line, as a user runs it: a real process, stdin from
// /dev/null, stdout and stderr captured, the real exit code.
struct CliRun {
  int rc = -1;  // the exit code; -1 when it did not exit normally
  std::string out;
  std::string err;
};
// Runs `chimeraforge ARGS` through /bin/sh; `shell_prefix` goes before it in the same shell
// (e.g. "ulimit -n 128; ").
CliRun run_cli(const std::string& args, const std::string& shell_prefix = {});

}  // namespace chimera::test
