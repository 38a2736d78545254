// `chimeraforge generate`: one request, streamed, then its figures; `chimeraforge agent`: the
// tool loop on the same flags, each tool call run by a command.
#include "commands.hpp"
#include "connection_flags.hpp"
#include "option_flags.hpp"
#include "signals.hpp"

#include <chimera/backends/backend.hpp>
#include <chimera/engine/tool_loop.hpp>
#include <chimera/metrics/figures.hpp>
#include <chimera/model/synthetic_model.hpp>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <fmt/format.h>

#include <fcntl.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <future>
#include <sstream>

namespace chimera::cli {

namespace {

struct GenerateArgs {
  std::string endpoint;
  std::string backend = "auto";
  std::string model;
  std::string prompt;
  std::string messages_file;
  std::string system;
  std::string api = "chat";
  Options options;  // one flag per option of the table (option_flags.hpp)
  std::optional<int> slot;
  std::optional<std::string> keep_alive, format, tool_choice;
  std::string tools_file;
  bool think = false;
  bool no_think = false;
  bool cache_prompt = false;
  bool no_stream = false;
  bool json = false;
  bool quiet = false;
  int64_t connect_timeout_ms = 5'000;
  int64_t first_token_timeout_ms = 120'000;
  int64_t idle_timeout_ms = 30'000;
  int64_t total_timeout_ms = 900'000;
  int64_t min_rate = Timeouts{}.min_rate_bytes_per_s;
  int64_t min_rate_window_ms = Timeouts{}.min_rate_window_ms;
  ConnectionFlags connection;  // --api-key, --ca-file, --client-cert, --client-key, --insecure
  std::vector<std::string> logit_bias;  // TOKEN=BIAS
  // agent only
  std::string exec;
  int max_steps = 8;
  int64_t tool_timeout_ms = 30'000;
  int max_parallel = 8;
};

// The text of a file, or false with `error` naming the file and the flag.
bool read_text_file(const std::string& path, std::string_view what, std::string& text,
                    std::string& error) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    error = fmt::format("cannot read {} file '{}': {}", what, path, std::strerror(errno));
    return false;
  }
  std::stringstream ss;
  ss << in.rdbuf();
  text = ss.str();
  return true;
}

std::string json_string(const boost::json::object& o, std::string_view key) {
  const auto* v = o.if_contains(key);
  return v && v->is_string() ? std::string(v->get_string()) : std::string();
}

// An assistant message's tool calls, OpenAI's shape ({id, function: {name, arguments}}, the
// arguments JSON text or an object as Ollama writes them).
std::vector<ToolCall> read_tool_calls(const boost::json::array& calls) {
  std::vector<ToolCall> out;
  for (const auto& v : calls) {
    const auto* o = v.if_object();
    if (o == nullptr) continue;
    ToolCall t;
    t.id = json_string(*o, "id");
    if (const auto* fn = o->if_contains("function"); fn && fn->is_object()) {
      t.name = json_string(fn->get_object(), "name");
      if (const auto* args = fn->get_object().if_contains("arguments")) {
        t.arguments_json =
            args->is_string() ? std::string(args->get_string()) : boost::json::serialize(*args);
      }
    }
    out.push_back(std::move(t));
  }
  return out;
}

// One message: role and content (content may be null beside tool_calls), and the tool fields.
bool read_message(const boost::json::value& v, Message& m) {
  const auto* o = v.if_object();
  if (o == nullptr) return false;
  const auto* role = o->if_contains("role");
  const auto* content = o->if_contains("content");
  const auto* calls = o->if_contains("tool_calls");
  const bool has_calls = calls && calls->is_array();
  if (!role || !role->is_string()) return false;
  if (!(content && content->is_string()) && !(has_calls && (!content || content->is_null()))) {
    return false;
  }
  m.role = role->get_string();
  m.content = json_string(*o, "content");
  m.thinking = json_string(*o, "thinking");
  m.tool_name = json_string(*o, "tool_name");
  m.tool_call_id = json_string(*o, "tool_call_id");
  if (has_calls) m.tool_calls = read_tool_calls(calls->get_array());
  return true;
}

// Reads chat messages: a JSON array of {role, content} objects, or {"messages": [...]}; assistant
// messages may carry tool_calls, tool results tool_call_id and tool_name.
bool read_messages(const std::string& path, std::vector<Message>& out, std::string& error) {
  std::string text;
  if (!read_text_file(path, "messages", text, error)) return false;
  boost::system::error_code ec;
  auto v = boost::json::parse(text, ec);
  if (ec) {
    error = fmt::format("messages file '{}' is not valid JSON: {}", path, ec.message());
    return false;
  }
  const boost::json::array* arr = v.if_array();
  if (arr == nullptr && v.is_object()) {
    if (const auto* m = v.get_object().if_contains("messages")) arr = m->if_array();
  }
  if (arr == nullptr) {
    error = fmt::format(
        "messages file '{}': expected a JSON array of {{\"role\", \"content\"}} "
        "objects, or an object with a \"messages\" array",
        path);
    return false;
  }
  for (std::size_t i = 0; i < arr->size(); ++i) {
    Message m;
    if (!read_message((*arr)[i], m)) {
      error = fmt::format(
          "messages file '{}': message {} needs string fields \"role\" and "
          "\"content\" (content may be null beside \"tool_calls\")",
          path, i);
      return false;
    }
    out.push_back(std::move(m));
  }
  if (out.empty()) {
    error = fmt::format("messages file '{}' holds no messages", path);
    return false;
  }
  return true;
}

// Reads tool definitions: a JSON array, as OpenAI and Ollama take them
// ([{"type": "function", "function": {"name", "description", "parameters"}}]).
bool read_tools(const std::string& path, std::string& out, std::string& error) {
  std::string text;
  if (!read_text_file(path, "tools", text, error)) return false;
  boost::system::error_code ec;
  auto v = boost::json::parse(text, ec);
  if (ec || !v.is_array()) {
    error = fmt::format(
        "tools file '{}' is not a JSON array of tool definitions ({}); expected "
        "[{{\"type\": \"function\", \"function\": {{\"name\": ..., \"parameters\": ...}}}}]",
        path, ec ? ec.message() : "not an array");
    return false;
  }
  out = boost::json::serialize(v);
  return true;
}

// Prints a streamed tool call: its name when it first appears, then its arguments as they come.
class ToolCallPrinter {
 public:
  void print(const TokenEvent& t) {
    if (t.tool_call_index != shown_) {
      shown_ = t.tool_call_index;
      fmt::print("\n[tool call {}] {}{} ", t.tool_call_index, t.tool_call->name,
                 t.tool_call->id.empty() ? "" : fmt::format(" (id {})", t.tool_call->id));
    }
    std::fwrite(t.arguments_delta.data(), 1, t.arguments_delta.size(), stdout);
  }

 private:
  int shown_ = -1;
};

// The model `--backend llama` uses when none is given: the tiny synthetic one, made on first use.
std::string default_model(bool quiet, std::string& error) {
  bool created = false;
  const auto path = model::cached_tiny_model(created, error);
  if (path.empty()) return {};
  if (!quiet) {
    fmt::print(stderr,
               "note: no --model given; using the tiny synthetic model {}{} (random weights: its "
               "text is noise, its timings are real)\n",
               path.string(), created ? ", written just now" : "");
  }
  return path.string();
}

// validate(Options)'s message names the option ("top_p is 7; ..."); on the command line the
// flag is what the user typed, so it is named first ("--top-p: top_p is 7; ...").
std::string with_flag(const std::string& message) {
  const std::string option = message.substr(0, message.find(' '));
  if (option.empty() ||
      option.find_first_not_of("abcdefghijklmnopqrstuvwxyz_") != std::string::npos) {
    return message;
  }
  std::string flag = "--" + option;
  std::replace(flag.begin(), flag.end(), '_', '-');
  return fmt::format("{}: {}", flag, message);
}

// --logit-bias TOKEN=BIAS, each; false with `error` naming the flag's value.
bool parse_logit_bias(const std::vector<std::string>& flags, std::vector<LogitBias>& out,
                      std::string& error) {
  for (const auto& f : flags) {
    const auto eq = f.find('=');
    LogitBias b;
    const auto [tp, tec] = std::from_chars(f.data(), f.data() + std::min(eq, f.size()), b.token);
    bool ok = eq != std::string::npos && tec == std::errc() && tp == f.data() + eq;
    if (ok) {
      const std::string value = f.substr(eq + 1);
      char* vend = nullptr;
      b.bias = std::strtod(value.c_str(), &vend);
      ok = !value.empty() && vend == value.c_str() + value.size();
    }
    if (!ok) {
      error = fmt::format(
          "--logit-bias '{}' is not TOKEN=BIAS (a token id and a number, e.g. "
          "128009=60)",
          f);
      return false;
    }
    out.push_back(b);
  }
  if (auto e = validate(out); !e.empty()) {
    error = "--logit-bias: " + e;
    return false;
  }
  return true;
}

// The backend and the request the flags describe (shared by generate and agent). Returns -1
// when both are ready, otherwise the exit code (the error printed, prefixed with `who`).
int prepare(const GenerateArgs& a, const char* who, EndpointConfig& cfg,
            std::unique_ptr<Backend>& backend, Request& req) {
  // Checked before anything starts, not only by the backend, so that a bad flag is a usage
  // error (exit 2) and never sizes an in-process context.
  if (auto e = validate(a.options); !e.empty()) {
    fmt::print(stderr, "{}: {}\n", who, with_flag(e));
    return kUsage;
  }
  std::vector<LogitBias> bias;
  if (std::string e; !parse_logit_bias(a.logit_bias, bias, e)) {
    fmt::print(stderr, "{}: {}\n", who, e);
    return kUsage;
  }
  if (a.slot && (*a.slot < 0 || *a.slot > 65'535)) {
    fmt::print(stderr, "{}: --slot is {}; it must be from 0 to 65535\n", who, *a.slot);
    return kUsage;
  }
  Runtime& rt = Runtime::shared();
  cfg.url = a.endpoint;
  cfg.timeouts.connect_ms = a.connect_timeout_ms;
  cfg.timeouts.first_token_ms = a.first_token_timeout_ms;
  cfg.timeouts.idle_ms = a.idle_timeout_ms;
  cfg.timeouts.total_ms = a.total_timeout_ms;
  cfg.timeouts.min_rate_bytes_per_s = a.min_rate;
  cfg.timeouts.min_rate_window_ms = a.min_rate_window_ms;
  if (auto e = validate(cfg.timeouts); !e.empty()) {
    fmt::print(stderr, "{}: {}\n", who, e);
    return kUsage;
  }
  cfg.kind = BackendKind::ollama;  // the key detection may send
  apply_connection_flags(a.connection, cfg);
  if (a.backend == "llama") {
    cfg.kind = BackendKind::llama;
    cfg.url = a.model;
    if (cfg.url.empty()) {
      std::string error;
      cfg.url = default_model(a.quiet || a.json, error);
      if (cfg.url.empty()) {
        fmt::print(stderr, "{}: {}\n", who, error);
        return kFailed;
      }
    }
    cfg.llama.parallel = 1;
    if (a.options.num_ctx) cfg.llama.ctx_per_seq = *a.options.num_ctx;
    if (a.options.num_gpu) cfg.llama.gpu_layers = *a.options.num_gpu;
    if (a.options.num_thread) cfg.llama.threads = *a.options.num_thread;
  } else if (const auto kind = parse_backend_kind(a.backend)) {
    cfg.kind = *kind;
  } else {  // "auto"
    auto d = detect_backend(cfg, rt, a.connect_timeout_ms);
    if (d.error) {
      fmt::print(stderr, "{}: {}\n", who, d.error.message);
      return d.error.kind == ErrorKind::bad_request ? kUsage : kFailed;
    }
    cfg.kind = d.kind;
  }
  if (cfg.kind != BackendKind::llama) cfg.api_key = resolve_api_key(a.connection.api_key, cfg.kind);
  try {
    backend = make_backend(cfg, rt);
  } catch (const std::invalid_argument& e) {
    fmt::print(stderr, "{}: {}\n", who, e.what());
    return cfg.kind == BackendKind::llama ? kFailed : kUsage;
  }
  if (cfg.kind == BackendKind::openai && (a.options.num_gpu || a.options.num_thread)) {
    fmt::print(stderr,
               "{}: {} cannot be applied: an OpenAI-compatible server takes it only as its own "
               "flag when it starts (llama-server {}), not with a request; start the server "
               "with it (`chimeraforge endpoints up`) or leave it out\n",
               who, a.options.num_gpu ? "--num-gpu" : "--num-thread",
               a.options.num_gpu ? "-ngl" : "-t");
    return kUsage;
  }
  if (cfg.kind == BackendKind::openai && !a.quiet && (a.options.num_ctx || a.keep_alive)) {
    fmt::print(stderr,
               "note: --num-ctx and --keep-alive are server settings for OpenAI-compatible "
               "servers (llama-server -c) and are not sent\n");
  }

  req.model = a.model;
  req.kind = a.api == "completion" ? RequestKind::completion : RequestKind::chat;
  if (req.kind == RequestKind::chat) {
    if (!a.messages_file.empty()) {
      std::string error;
      if (!read_messages(a.messages_file, req.messages, error)) {
        fmt::print(stderr, "{}: {}\n", who, error);
        return kUsage;
      }
    }
    if (!a.system.empty()) {
      req.messages.insert(req.messages.begin(), Message{"system", a.system, {}, {}, {}});
    }
    if (!a.prompt.empty()) req.messages.push_back({"user", a.prompt, {}, {}, {}});
  } else {
    req.prompt = a.prompt;
    req.system = a.system;
  }
  req.stream = !a.no_stream;
  req.options = a.options;
  req.keep_alive = a.keep_alive;
  req.format_json = a.format;
  req.tool_choice = a.tool_choice;
  if (a.think || a.no_think) req.think = a.think;
  if (!a.tools_file.empty()) {
    std::string tools, error;
    if (!read_tools(a.tools_file, tools, error)) {
      fmt::print(stderr, "{}: --tools: {}\n", who, error);
      return kUsage;
    }
    req.tools_json = std::move(tools);
  }
  req.slot_id = a.slot;
  if (a.cache_prompt) req.cache_prompt = true;
  req.logit_bias = std::move(bias);
  return -1;
}

int run_generate(const GenerateArgs& a) {
  EndpointConfig cfg;
  std::unique_ptr<Backend> backend;
  Request req;
  if (const int rc = prepare(a, "chimeraforge generate", cfg, backend, req); rc >= 0) return rc;

  const bool print_tokens = !a.json && !a.quiet;
  std::promise<Completion> done;
  auto fut = done.get_future();
  bool in_thinking = false;
  ToolCallPrinter calls;
  auto handle = backend->start(
      std::move(req),
      [&](const TokenEvent& t) {
        if (!print_tokens) return true;
        if (!t.thinking.empty()) {
          if (!in_thinking) std::fputs("[thinking] ", stdout);
          in_thinking = true;
          std::fwrite(t.thinking.data(), 1, t.thinking.size(), stdout);
        }
        if (!t.text.empty()) {
          if (in_thinking) std::fputs("\n[answer] ", stdout);
          in_thinking = false;
          std::fwrite(t.text.data(), 1, t.text.size(), stdout);
        }
        if (t.tool_call != nullptr) calls.print(t);
        std::fflush(stdout);
        return true;
      },
      [&done](Completion c) { done.set_value(std::move(c)); });

  std::optional<StopFlag> interrupt;
  interrupt.emplace();  // Ctrl-C cancels the stream
  while (fut.wait_for(std::chrono::milliseconds(50)) != std::future_status::ready) {
    if (StopFlag::raised()) handle->cancel();
  }
  interrupt.reset();
  Completion c = fut.get();

  if (a.json) {
    fmt::print("{}\n", metrics::completion_json(c, to_string(cfg.kind)));
  } else {
    if (print_tokens) fmt::print("\n");
    std::fflush(stdout);
    fmt::print(stderr, "{}\n", metrics::figures_line(c));
  }
  for (const auto& w : c.warnings) fmt::print(stderr, "chimeraforge generate: warning: {}\n", w);
  if (c.error) {
    fmt::print(stderr, "chimeraforge generate: {}\n", c.error.message);
    return c.error.kind == ErrorKind::cancelled && StopFlag::raised() ? kInterrupted : kFailed;
  }
  return kOk;
}

// ---- agent ------------------------------------------------------------------------------------

// Runs `command` (through /bin/sh) as a tool: the arguments JSON on its stdin, its stdout the
// result. Its own process group, killed with it at `timeout_ms`, so that no command outlives its
// call. Throws, saying why, when it exits non-zero, is killed, or prints more than 1 MiB.
std::string run_exec_tool(const std::string& command, const std::string& tool,
                          const std::string& args, int64_t timeout_ms) {
  constexpr std::size_t kMaxOutput = 1 << 20;
  int in[2], out[2], err[2];
  if (::pipe2(in, O_CLOEXEC) != 0) throw std::runtime_error("pipe failed");
  if (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0) {
    throw std::runtime_error("pipe failed");
  }
  // The child's environment, built before fork (only async-signal-safe calls after it).
  std::vector<std::string> env_text;
  for (char** e = environ; *e != nullptr; ++e) {
    if (std::strncmp(*e, "CHIMERA_TOOL_NAME=", 18) != 0) env_text.emplace_back(*e);
  }
  env_text.push_back("CHIMERA_TOOL_NAME=" + tool);
  std::vector<char*> envp;
  for (auto& e : env_text) envp.push_back(e.data());
  envp.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error(fmt::format("fork failed: {}", std::strerror(errno)));
  if (pid == 0) {
    ::setpgid(0, 0);
    ::dup2(in[0], 0);
    ::dup2(out[1], 1);
    ::dup2(err[1], 2);
    ::execle("/bin/sh", "sh", "-c", command.c_str(), static_cast<char*>(nullptr), envp.data());
    ::_exit(127);
  }
  ::setpgid(pid, pid);
  ::close(in[0]);
  ::close(out[1]);
  ::close(err[1]);
  std::string stdout_text, stderr_text;
  std::size_t written = 0;
  int fds[3] = {in[1], out[0], err[0]};
  for (int fd : fds) ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  if (args.empty()) {
    ::close(fds[0]);
    fds[0] = -1;
  }
  const int64_t deadline = now_ns() + timeout_ms * 1'000'000;
  bool timed_out = false;
  bool too_much = false;
  while (fds[1] >= 0 || fds[2] >= 0) {
    const int64_t left_ms = (deadline - now_ns()) / 1'000'000;
    if (left_ms <= 0) {
      timed_out = true;
      break;
    }
    pollfd p[3] = {{fds[0], POLLOUT, 0}, {fds[1], POLLIN, 0}, {fds[2], POLLIN, 0}};
    if (::poll(p, 3, static_cast<int>(std::min<int64_t>(left_ms, 1'000))) < 0 && errno != EINTR) {
      break;
    }
    if (fds[0] >= 0 && (p[0].revents & (POLLOUT | POLLERR | POLLHUP))) {
      const ssize_t n = ::write(fds[0], args.data() + written, args.size() - written);
      if (n > 0) written += static_cast<std::size_t>(n);
      if (n < 0 && errno != EAGAIN) written = args.size();  // it does not read: done
      if (written == args.size()) {
        ::close(fds[0]);
        fds[0] = -1;
      }
    }
    for (int k = 1; k < 3; ++k) {
      if (fds[k] < 0 || !(p[k].revents & (POLLIN | POLLERR | POLLHUP))) continue;
      char buf[8192];
      const ssize_t n = ::read(fds[k], buf, sizeof buf);
      if (n > 0) {
        std::string& to = k == 1 ? stdout_text : stderr_text;
        to.append(buf, static_cast<std::size_t>(n));
        if (to.size() > kMaxOutput) too_much = true;
      } else if (n == 0 || errno != EAGAIN) {
        ::close(fds[k]);
        fds[k] = -1;
      }
    }
    if (too_much) break;
  }
  for (int fd : fds) {
    if (fd >= 0) ::close(fd);
  }
  if (timed_out || too_much) ::kill(-pid, SIGKILL);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (timed_out) {
    throw std::runtime_error(fmt::format("the command was killed after {} ms", timeout_ms));
  }
  if (too_much) {
    throw std::runtime_error(fmt::format("the command printed more than {} bytes", kMaxOutput));
  }
  std::string why =
      stderr_text.size() > 2'000 ? stderr_text.substr(stderr_text.size() - 2'000) : stderr_text;
  while (!why.empty() && (why.back() == '\n' || why.back() == ' ')) why.pop_back();
  if (WIFSIGNALED(status)) {
    throw std::runtime_error(fmt::format("the command was killed by signal {}{}{}",
                                         WTERMSIG(status), why.empty() ? "" : ": ", why));
  }
  if (WEXITSTATUS(status) != 0) {
    throw std::runtime_error(fmt::format("the command exited with status {}{}{}",
                                         WEXITSTATUS(status), why.empty() ? "" : ": ", why));
  }
  while (!stdout_text.empty() && stdout_text.back() == '\n') stdout_text.pop_back();
  return stdout_text;
}

// The tools file's definitions as tools that run `command`.
bool exec_toolbox(const std::string& definitions, const std::string& command, int64_t timeout_ms,
                  Toolbox& tools, std::string& error) {
  const boost::json::value v = boost::json::parse(definitions);
  std::size_t i = 0;
  for (const auto& d : v.get_array()) {
    const auto* o = d.if_object();
    const auto* fn = o ? o->if_contains("function") : nullptr;
    const auto* f = fn && fn->is_object() ? &fn->get_object() : o;
    Tool t;
    if (f != nullptr) {
      t.name = json_string(*f, "name");
      t.description = json_string(*f, "description");
      if (const auto* params = f->if_contains("parameters")) {
        t.parameters_json = boost::json::serialize(*params);
      }
    }
    const std::string name = t.name;
    t.run = [command, name, timeout_ms](const std::string& args) {
      return run_exec_tool(command, name, args, timeout_ms);
    };
    try {
      tools.add(std::move(t));
    } catch (const std::invalid_argument& e) {
      error = fmt::format("definition {}: {}", i, e.what());
      return false;
    }
    ++i;
  }
  return true;
}

int run_agent(const GenerateArgs& a) {
  const char* who = "chimeraforge agent";
  if (a.max_steps < 1 || a.max_steps > 1'000) {
    fmt::print(stderr, "{}: --max-steps is {}; it must be from 1 to 1000\n", who, a.max_steps);
    return kUsage;
  }
  if (a.tool_timeout_ms < 1 || a.tool_timeout_ms > 86'400'000) {
    fmt::print(stderr, "{}: --tool-timeout is {}; it must be from 1 to 86400000 ms\n", who,
               a.tool_timeout_ms);
    return kUsage;
  }
  if (a.max_parallel < 1 || a.max_parallel > 256) {
    fmt::print(stderr, "{}: --max-parallel is {}; it must be from 1 to 256\n", who, a.max_parallel);
    return kUsage;
  }
  EndpointConfig cfg;
  std::unique_ptr<Backend> backend;
  Request req;
  if (const int rc = prepare(a, who, cfg, backend, req); rc >= 0) return rc;
  Toolbox tools;
  if (std::string e; !exec_toolbox(*req.tools_json, a.exec, a.tool_timeout_ms, tools, e)) {
    fmt::print(stderr, "{}: --tools: {}\n", who, e);
    return kUsage;
  }
  std::signal(SIGPIPE, SIG_IGN);  // a command that exits without reading its stdin
  const bool print_tokens = !a.json && !a.quiet;
  bool in_thinking = false;
  int last_step_index = -1;
  ToolCallPrinter calls;
  std::optional<StopFlag> interrupt;
  interrupt.emplace();  // Ctrl-C cancels the stream of the step that runs
  const LoopResult r =
      run_tool_loop(*backend, std::move(req), tools,
                    {.max_steps = a.max_steps,
                     .tool_timeout_ms = a.tool_timeout_ms,
                     .max_parallel = a.max_parallel},
                    [&](const TokenEvent& t) {
                      if (StopFlag::raised()) return false;
                      if (!print_tokens) return true;
                      if (t.index == 0 && last_step_index != 0) calls = ToolCallPrinter{};
                      last_step_index = t.index;
                      if (!t.thinking.empty()) {
                        if (!in_thinking) std::fputs("[thinking] ", stdout);
                        in_thinking = true;
                        std::fwrite(t.thinking.data(), 1, t.thinking.size(), stdout);
                      }
                      if (!t.text.empty()) {
                        if (in_thinking) std::fputs("\n[answer] ", stdout);
                        in_thinking = false;
                        std::fwrite(t.text.data(), 1, t.text.size(), stdout);
                      }
                      if (t.tool_call != nullptr) calls.print(t);
                      std::fflush(stdout);
                      return true;
                    });
  interrupt.reset();
  if (a.json) {
    fmt::print("{}\n", to_json(r));
  } else {
    if (print_tokens) fmt::print("\n");
    std::fflush(stdout);
    for (std::size_t i = 0; i < r.steps.size(); ++i) {
      const LoopStep& s = r.steps[i];
      fmt::print(stderr, "step {}: {}\n", i + 1, metrics::figures_line(s.completion));
      for (const auto& t : s.tools) {
        fmt::print(stderr, "  tool {} (id {}) {}, {:.1f} ms: {}\n", t.call.name, t.call.id,
                   to_string(t.outcome), static_cast<double>(t.elapsed_ns) / 1e6,
                   t.result.substr(0, 300));
      }
    }
    fmt::print(stderr, "{}: {} after {} step(s); the loop's own time {:.3f} ms\n", who,
               to_string(r.end), r.steps.size(), static_cast<double>(r.overhead_ns()) / 1e6);
  }
  for (const auto& s : r.steps) {
    for (const auto& w : s.completion.warnings) fmt::print(stderr, "{}: warning: {}\n", who, w);
  }
  switch (r.end) {
    case LoopEnd::answer:
      return kOk;
    case LoopEnd::max_steps:
      fmt::print(stderr, "{}: the model still asked for tools after --max-steps {} model calls\n",
                 who, a.max_steps);
      return kFailed;
    case LoopEnd::cancelled:
      return kInterrupted;
    case LoopEnd::model_error:
      fmt::print(stderr, "{}: {}\n", who, r.error.message);
      return kFailed;
  }
  return kFailed;
}

// The flags generate and agent share (`agent`: the agent's set: chat only, streamed, --tools
// required).
void add_request_flags(CLI::App* cmd, GenerateArgs& a, bool agent) {
  if (const char* env = std::getenv("CHIMERA_ENDPOINT")) a.endpoint = env;
  cmd->add_option("--endpoint,-e", a.endpoint,
                  "Server URL, e.g. http://127.0.0.1:11434 (default: $CHIMERA_ENDPOINT); not "
                  "used with --backend llama");
  cmd->add_option("--backend,-b", a.backend,
                  "ollama, openai (llama-server, vLLM), auto (ask the server), or llama "
                  "(llama.cpp in this process; no server)")
      ->check(CLI::IsMember({"auto", "ollama", "openai", "llama"}))
      ->capture_default_str();
  cmd->add_option("--model,-m", a.model,
                  "Model name (Ollama needs one; llama-server ignores it); with --backend llama, "
                  "a GGUF file (default: the tiny synthetic model, made on first use)");
  cmd->add_option("--prompt,-p", a.prompt,
                  "The user's message (or the raw prompt with --api completion)");
  cmd->add_option("--messages", a.messages_file,
                  "JSON file with chat messages: [{\"role\": \"user\", \"content\": \"...\"}]")
      ->check(CLI::ExistingFile);
  cmd->add_option("--system", a.system, "System prompt");
  if (!agent) {
    cmd->add_option("--api", a.api,
                    "chat (/api/chat, /v1/chat/completions) or completion (/api/generate, "
                    "/v1/completions)")
        ->check(CLI::IsMember({"chat", "completion"}))
        ->capture_default_str();
  }
  // Ranges are checked by validate(Options) after parsing (the same bounds as every front end;
  // CLI11's Range lets nan through).
  add_option_flags(cmd, a.options, {{"num_predict", "-n"}});
  cmd->add_option("--keep-alive", a.keep_alive,
                  "How long Ollama keeps the model loaded: 5m, 0, -1");
  if (!agent) {
    cmd->add_option("--format", a.format, "Structured output: a JSON schema (JSON text) or 'json'");
  }
  auto* tools = cmd->add_option("--tools", a.tools_file,
                                "JSON file with tool definitions the model may call: [{\"type\": "
                                "\"function\", \"function\": {\"name\", \"description\", "
                                "\"parameters\"}}]; calls are printed as they stream")
                    ->check(CLI::ExistingFile);
  if (agent) tools->required();
  cmd->add_option("--tool-choice", a.tool_choice,
                  "auto (the model chooses), required (it must call a tool; not Ollama) or none")
      ->check(CLI::IsMember({"auto", "required", "none"}));
  auto* think = cmd->add_flag("--think", a.think,
                              "Ask a thinking model to think (Ollama's think; "
                              "chat_template_kwargs.enable_thinking on OpenAI-compatible servers; "
                              "in-process, the template's); thinking is printed apart");
  cmd->add_flag("--no-think", a.no_think, "Ask a thinking model not to think")->excludes(think);
  cmd->add_option("--slot", a.slot, "llama-server: the slot to use (id_slot)");
  cmd->add_flag("--cache-prompt", a.cache_prompt, "llama-server: reuse the slot's cached prompt");
  cmd->add_option("--logit-bias", a.logit_bias,
                  "TOKEN=BIAS: add BIAS (-100 to 100) to the logit of token id TOKEN (OpenAI's "
                  "logit_bias; OpenAI-compatible servers and in-process, not Ollama); repeatable")
      ->take_all();
  if (!agent) {
    cmd->add_flag("--no-stream", a.no_stream,
                  "Ask for one response at the end instead of a stream");
  }
  cmd->add_flag("--json", a.json,
                agent ? "Print the loop's record as one JSON object (docs/tools.md) instead of "
                        "the stream"
                      : "Print one JSON object (text and the METRICS.md figures) instead of the "
                        "stream");
  cmd->add_flag("--quiet,-q", a.quiet, "Print only the figures line");
  cmd->add_option("--connect-timeout", a.connect_timeout_ms, "Connect timeout, ms")
      ->capture_default_str();
  cmd->add_option("--first-token-timeout", a.first_token_timeout_ms,
                  "Timeout from sending to the first token, ms")
      ->capture_default_str();
  cmd->add_option("--idle-timeout", a.idle_timeout_ms, "Timeout between tokens, ms")
      ->capture_default_str();
  cmd->add_option("--total-timeout", a.total_timeout_ms, "Timeout for the whole request, ms")
      ->capture_default_str();
  cmd->add_option("--min-rate", a.min_rate,
                  "Once tokens flow, fail a stream slower than this many bytes/s over "
                  "--min-rate-window (curl's --speed-limit); 0: no minimum")
      ->capture_default_str();
  cmd->add_option("--min-rate-window", a.min_rate_window_ms,
                  "The window of --min-rate, ms (curl's --speed-time)")
      ->capture_default_str();
  add_connection_flags(cmd, a.connection);
}

// What `generate` and `agent` both need before they start: an endpoint (from the flags or the
// environment) unless the model runs in-process, and a prompt or a messages file. Prints the
// usage error naming `command` and returns false when one is missing.
bool endpoint_and_input_given(const char* command, GenerateArgs& a, const CLI::App& cmd) {
  if (a.backend != "llama" && a.endpoint.empty()) a.endpoint = endpoint_from_environment(a.backend);
  if (a.backend != "llama" && a.endpoint.empty()) {
    fmt::print(stderr,
               "chimeraforge {}: --endpoint URL is required (or set $CHIMERA_ENDPOINT, "
               "$OLLAMA_HOST or $OPENAI_BASE_URL, or use --backend llama)\n",
               command);
    return false;
  }
  if (a.prompt.empty() && a.messages_file.empty()) {
    fmt::print(stderr, "chimeraforge {}: give --prompt TEXT or --messages FILE\n\n{}", command,
               cmd.help());
    return false;
  }
  return true;
}

}  // namespace

std::function<int()> add_generate(CLI::App& app) {
  auto a = std::make_shared<GenerateArgs>();
  auto* cmd = app.add_subcommand(
      "generate",
      "Send one request to an endpoint, print tokens as they arrive, then one line of figures.\n"
      "Options are named after Ollama's; unset ones are not sent, so the server's defaults "
      "apply.\n\n"
      "Examples:\n"
      "  chimeraforge generate --endpoint http://127.0.0.1:11434 --model llama3.2:1b "
      "--prompt 'Hi'\n"
      "  chimeraforge generate --endpoint http://127.0.0.1:8080 --backend openai --prompt hi "
      "--num-predict 64 --json\n\n" +
          connection_env_help("CHIMERA_ENDPOINT (the default --endpoint), "));
  add_request_flags(cmd, *a, false);
  return [a, cmd]() -> int {
    if (!endpoint_and_input_given("generate", *a, *cmd)) return kUsage;
    if (a->api == "completion" && !a->messages_file.empty()) {
      fmt::print(stderr, "chimeraforge generate: --messages needs --api chat\n");
      return kUsage;
    }
    return run_generate(*a);
  };
}

std::function<int()> add_agent(CLI::App& app) {
  auto a = std::make_shared<GenerateArgs>();
  auto* cmd = app.add_subcommand(
      "agent",
      "Run the tool loop: call the model with the tools of --tools, run the calls it makes with "
      "--exec, send the results back under the calls' ids, and go on until the model answers "
      "or --max-steps model calls. The command runs through /bin/sh once per call: the "
      "arguments JSON on its stdin, $CHIMERA_TOOL_NAME the tool's name; what it prints is the "
      "result; a non-zero exit (its stderr), a timeout or an unknown tool goes back to the "
      "model as an error result (docs/tools.md).\n\n"
      "Example:\n"
      "  chimeraforge agent --endpoint http://127.0.0.1:8080 --tools tools.json \\\n"
      "      --exec 'python3 tools.py' --prompt 'Weather in Paris?'\n\n" +
          connection_env_help("CHIMERA_ENDPOINT (the default --endpoint), "));
  add_request_flags(cmd, *a, true);
  cmd->add_option("--exec", a->exec,
                  "Command that runs a tool call: arguments JSON on stdin, result on stdout, "
                  "$CHIMERA_TOOL_NAME the tool")
      ->required();
  cmd->add_option("--max-steps", a->max_steps, "Model calls at most (1-1000)")
      ->capture_default_str();
  cmd->add_option("--tool-timeout", a->tool_timeout_ms,
                  "Each call's time limit, ms; the command is killed at it")
      ->capture_default_str();
  cmd->add_option("--max-parallel", a->max_parallel, "Calls of one step that run at once (1-256)")
      ->capture_default_str();
  return [a, cmd]() -> int {
    if (!endpoint_and_input_given("agent", *a, *cmd)) return kUsage;
    return run_agent(*a);
  };
}

}  // namespace chimera::cli
