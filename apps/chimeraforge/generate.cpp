// `chimeraforge generate`: one request, streamed, then its figures.
#include "commands.hpp"
#include "connection_flags.hpp"
#include "option_flags.hpp"
#include "signals.hpp"

#include <chimera/backends/backend.hpp>
#include <chimera/metrics/figures.hpp>
#include <chimera/model/synthetic_model.hpp>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstdlib>
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

int run_generate(const GenerateArgs& a) {
  // Checked before anything starts, not only by the backend, so that a bad flag is a usage
  // error (exit 2) and never sizes an in-process context.
  if (auto e = validate(a.options); !e.empty()) {
    fmt::print(stderr, "chimeraforge generate: {}\n", with_flag(e));
    return kUsage;
  }
  if (a.slot && (*a.slot < 0 || *a.slot > 65'535)) {
    fmt::print(stderr, "chimeraforge generate: --slot is {}; it must be from 0 to 65535\n",
               *a.slot);
    return kUsage;
  }
  Runtime& rt = Runtime::shared();
  EndpointConfig cfg;
  cfg.url = a.endpoint;
  cfg.timeouts.connect_ms = a.connect_timeout_ms;
  cfg.timeouts.first_token_ms = a.first_token_timeout_ms;
  cfg.timeouts.idle_ms = a.idle_timeout_ms;
  cfg.timeouts.total_ms = a.total_timeout_ms;
  cfg.timeouts.min_rate_bytes_per_s = a.min_rate;
  cfg.timeouts.min_rate_window_ms = a.min_rate_window_ms;
  if (auto e = validate(cfg.timeouts); !e.empty()) {
    fmt::print(stderr, "chimeraforge generate: {}\n", e);
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
        fmt::print(stderr, "chimeraforge generate: {}\n", error);
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
      fmt::print(stderr, "chimeraforge generate: {}\n", d.error.message);
      return d.error.kind == ErrorKind::bad_request ? kUsage : kFailed;
    }
    cfg.kind = d.kind;
  }
  if (cfg.kind != BackendKind::llama) cfg.api_key = resolve_api_key(a.connection.api_key, cfg.kind);
  std::unique_ptr<Backend> backend;
  try {
    backend = make_backend(cfg, rt);
  } catch (const std::invalid_argument& e) {
    fmt::print(stderr, "chimeraforge generate: {}\n", e.what());
    return cfg.kind == BackendKind::llama ? kFailed : kUsage;
  }
  if (cfg.kind == BackendKind::openai && !a.quiet &&
      (a.options.num_ctx || a.options.num_gpu || a.options.num_thread || a.keep_alive)) {
    fmt::print(stderr,
               "note: --num-ctx, --num-gpu, --num-thread and --keep-alive are server settings for "
               "OpenAI-compatible servers (llama-server -c/-ngl/-t) and are not sent\n");
  }

  Request req;
  req.model = a.model;
  req.kind = a.api == "completion" ? RequestKind::completion : RequestKind::chat;
  if (req.kind == RequestKind::chat) {
    if (!a.messages_file.empty()) {
      std::string error;
      if (!read_messages(a.messages_file, req.messages, error)) {
        fmt::print(stderr, "chimeraforge generate: {}\n", error);
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
      fmt::print(stderr, "chimeraforge generate: --tools: {}\n", error);
      return kUsage;
    }
    req.tools_json = std::move(tools);
  }
  req.slot_id = a.slot;
  if (a.cache_prompt) req.cache_prompt = true;

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
  if (const char* env = std::getenv("CHIMERA_ENDPOINT")) a->endpoint = env;
  cmd->add_option("--endpoint,-e", a->endpoint,
                  "Server URL, e.g. http://127.0.0.1:11434 (default: $CHIMERA_ENDPOINT); not "
                  "used with --backend llama");
  cmd->add_option("--backend,-b", a->backend,
                  "ollama, openai (llama-server, vLLM), auto (ask the server), or llama "
                  "(llama.cpp in this process; no server)")
      ->check(CLI::IsMember({"auto", "ollama", "openai", "llama"}))
      ->capture_default_str();
  cmd->add_option("--model,-m", a->model,
                  "Model name (Ollama needs one; llama-server ignores it); with --backend llama, "
                  "a GGUF file (default: the tiny synthetic model, made on first use)");
  cmd->add_option("--prompt,-p", a->prompt,
                  "The user's message (or the raw prompt with --api completion)");
  cmd->add_option("--messages", a->messages_file,
                  "JSON file with chat messages: [{\"role\": \"user\", \"content\": \"...\"}]")
      ->check(CLI::ExistingFile);
  cmd->add_option("--system", a->system, "System prompt");
  cmd->add_option("--api", a->api,
                  "chat (/api/chat, /v1/chat/completions) or completion (/api/generate, "
                  "/v1/completions)")
      ->check(CLI::IsMember({"chat", "completion"}))
      ->capture_default_str();
  // Ranges are checked by validate(Options) after parsing (the same bounds as every front end;
  // CLI11's Range lets nan through).
  add_option_flags(cmd, a->options, {{"num_predict", "-n"}});
  cmd->add_option("--keep-alive", a->keep_alive,
                  "How long Ollama keeps the model loaded: 5m, 0, -1");
  cmd->add_option("--format", a->format, "Structured output: a JSON schema (JSON text) or 'json'");
  cmd->add_option("--tools", a->tools_file,
                  "JSON file with tool definitions the model may call: [{\"type\": \"function\", "
                  "\"function\": {\"name\", \"description\", \"parameters\"}}]; calls are "
                  "printed as they stream")
      ->check(CLI::ExistingFile);
  cmd->add_option("--tool-choice", a->tool_choice,
                  "auto (the model chooses), required (it must call a tool; not Ollama) or none")
      ->check(CLI::IsMember({"auto", "required", "none"}));
  auto* think = cmd->add_flag("--think", a->think,
                              "Ask a thinking model to think (Ollama's think; "
                              "chat_template_kwargs.enable_thinking on OpenAI-compatible servers; "
                              "in-process, the template's); thinking is printed apart");
  cmd->add_flag("--no-think", a->no_think, "Ask a thinking model not to think")->excludes(think);
  cmd->add_option("--slot", a->slot, "llama-server: the slot to use (id_slot)");
  cmd->add_flag("--cache-prompt", a->cache_prompt, "llama-server: reuse the slot's cached prompt");
  cmd->add_flag("--no-stream", a->no_stream, "Ask for one response at the end instead of a stream");
  cmd->add_flag("--json", a->json,
                "Print one JSON object (text and the METRICS.md figures) instead of the stream");
  cmd->add_flag("--quiet,-q", a->quiet, "Print only the figures line");
  cmd->add_option("--connect-timeout", a->connect_timeout_ms, "Connect timeout, ms")
      ->capture_default_str();
  cmd->add_option("--first-token-timeout", a->first_token_timeout_ms,
                  "Timeout from sending to the first token, ms")
      ->capture_default_str();
  cmd->add_option("--idle-timeout", a->idle_timeout_ms, "Timeout between tokens, ms")
      ->capture_default_str();
  cmd->add_option("--total-timeout", a->total_timeout_ms, "Timeout for the whole request, ms")
      ->capture_default_str();
  cmd->add_option("--min-rate", a->min_rate,
                  "Once tokens flow, fail a stream slower than this many bytes/s over "
                  "--min-rate-window (curl's --speed-limit); 0: no minimum")
      ->capture_default_str();
  cmd->add_option("--min-rate-window", a->min_rate_window_ms,
                  "The window of --min-rate, ms (curl's --speed-time)")
      ->capture_default_str();
  add_connection_flags(cmd, a->connection);
  return [a, cmd]() -> int {
    if (a->backend != "llama" && a->endpoint.empty()) {
      a->endpoint = endpoint_from_environment(a->backend);
    }
    if (a->backend != "llama" && a->endpoint.empty()) {
      fmt::print(stderr,
                 "chimeraforge generate: --endpoint URL is required (or set "
                 "$CHIMERA_ENDPOINT, $OLLAMA_HOST or $OPENAI_BASE_URL, or use --backend llama)\n");
      return kUsage;
    }
    if (a->prompt.empty() && a->messages_file.empty()) {
      fmt::print(stderr, "chimeraforge generate: give --prompt TEXT or --messages FILE\n\n{}",
                 cmd->help());
      return kUsage;
    }
    if (a->api == "completion" && !a->messages_file.empty()) {
      fmt::print(stderr, "chimeraforge generate: --messages needs --api chat\n");
      return kUsage;
    }
    return run_generate(*a);
  };
}

}  // namespace chimera::cli
