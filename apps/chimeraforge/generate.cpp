// `chimeraforge generate`: one request, streamed, then its figures.
#include "commands.hpp"
#include "connection_flags.hpp"
#include "option_flags.hpp"
#include "signals.hpp"

#include <chimera/backends/backend.hpp>
#include <chimera/metrics/figures.hpp>
#include <chimera/model/synthetic_model.hpp>

#include <boost/json/parse.hpp>
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
  std::optional<std::string> keep_alive, format;
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
};

// Reads chat messages: a JSON array of {role, content} objects, or {"messages": [...]}.
bool read_messages(const std::string& path, std::vector<Message>& out, std::string& error) {
  ConnectionFlags connection;  // --api-key, --ca-file, --client-cert, --client-key, --insecure
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    error = fmt::format("cannot read messages file '{}': {}", path, std::strerror(errno));
    return false;
  }
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();
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
    const auto* o = (*arr)[i].if_object();
    const boost::json::value* role = o ? o->if_contains("role") : nullptr;
    const boost::json::value* content = o ? o->if_contains("content") : nullptr;
    if (!role || !role->is_string() || !content || !content->is_string()) {
      error = fmt::format(
          "messages file '{}': message {} needs string fields \"role\" and "
          "\"content\"",
          path, i);
      return false;
    }
    out.push_back(
        {std::string(role->get_string()), std::string(content->get_string()), {}, {}, {}});
  }
  if (out.empty()) {
    error = fmt::format("messages file '{}' holds no messages", path);
    return false;
  }
  return true;
}

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
  req.slot_id = a.slot;
  if (a.cache_prompt) req.cache_prompt = true;

  const bool print_tokens = !a.json && !a.quiet;
  std::promise<Completion> done;
  auto fut = done.get_future();
  bool in_thinking = false;
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
        if (t.tool_call != nullptr) {
          fmt::print("\n[tool call] {} {}", t.tool_call->name, t.tool_call->arguments_json);
        }
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

  if (cfg.kind != BackendKind::llama) cfg.api_key = resolve_api_key(a.connection.api_key, cfg.kind);
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
      "--num-predict 64 --json\n\n"
      "Environment: CHIMERA_ENDPOINT (the default --endpoint). " +
          connection_env_help());
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
  return [a, cmd]() -> int {
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
  add_connection_flags(cmd, a->connection);
    if (a->backend != "llama" && a->endpoint.empty()) {
      a->endpoint = endpoint_from_environment(a->backend);
    }
