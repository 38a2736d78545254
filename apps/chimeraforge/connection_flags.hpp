// How a command reaches its endpoints: the API key, extra headers and the TLS settings, as flags
// shared by every command that sends requests (generate, run, endpoints check, multi).
#pragma once

#include <chimera/backends/backend.hpp>
#include <chimera/backends/environment.hpp>
#include <chimera/http/settings.hpp>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace chimera::cli {

struct ConnectionFlags {
  std::string api_key;
  std::vector<std::string> headers;  // "Name: value", checked when parsed
  Tls tls;
  std::optional<int> retry_attempts;
  std::optional<int64_t> retry_budget_ms;
  std::string proxy;
};

// The environment variables a command that sends requests reads, for its --help.
inline std::string connection_env_help(std::string_view first = {}) {
  return fmt::format("Environment: {}{}; the flags come first.", first, kEndpointEnvironment);
}

inline void add_connection_flags(CLI::App* cmd, ConnectionFlags& flags) {
  cmd->add_option("--api-key", flags.api_key,
                  "Sent as 'Authorization: Bearer KEY' (default: $CHIMERA_API_KEY, then "
                  "$OPENAI_API_KEY for OpenAI-compatible endpoints); never printed");
  cmd->add_option("--header,-H", flags.headers,
                  "Extra request header 'Name: value' (repeat it); its value is never printed")
      ->check(CLI::Validator(
          [](std::string& line) {
            std::pair<std::string, std::string> header;
            std::string error;
            return parse_header(line, header, error) ? std::string() : error;
          },
          "NAME: VALUE"));
  cmd->add_option("--retry-attempts", flags.retry_attempts,
                  fmt::format("Tries on the same endpoint before the first token, after a refused "
                              "or reset connection, a 429 or a 503 (default {}; 1: no retry)",
                              Retry{}.attempts));
  cmd->add_option("--retry-budget", flags.retry_budget_ms,
                  fmt::format("No retry starts later than this after the first try, ms "
                              "(default {})",
                              Retry{}.budget_ms));
  cmd->add_option("--proxy", flags.proxy,
                  "Forward proxy http://[user:password@]host:port for every endpoint, loopback "
                  "too; 'direct' for none (default: $https_proxy, $http_proxy, $all_proxy, "
                  "$no_proxy as curl reads them, never for loopback)");
  cmd->add_option("--ca-file", flags.tls.ca_file,
                  "https: PEM file of the CA certificates to trust instead of the system's");
  cmd->add_option("--client-cert", flags.tls.client_cert,
                  "https: PEM client certificate for mutual TLS (with --client-key)");
  cmd->add_option("--client-key", flags.tls.client_key, "https: PEM private key of --client-cert");
  cmd->add_flag("--insecure", flags.tls.insecure,
                "https: do not verify the server's certificate nor its name (warned on stderr)");
}

// The key an endpoint of `kind` is sent: the flag, else $CHIMERA_API_KEY, else (OpenAI-compatible
// endpoints) $OPENAI_API_KEY; "" for none.
inline std::string resolve_api_key(const std::string& flag, BackendKind kind) {
  return flag.empty() ? api_key_from_environment(kind) : flag;
}

// The endpoint when no --endpoint is given: the environment's for the backend named (OLLAMA_HOST
// with Ollama's default, OPENAI_BASE_URL); for "auto", OLLAMA_HOST when set, else
// OPENAI_BASE_URL; "" when none.
inline std::string endpoint_from_environment(const std::string& backend) {
  if (backend == "auto") {
    if (std::getenv("OLLAMA_HOST") != nullptr) {
      return chimera::endpoint_from_environment(BackendKind::ollama);
    }
    return chimera::endpoint_from_environment(BackendKind::openai);
  }
  const auto kind = parse_backend_kind(backend);
  return kind ? chimera::endpoint_from_environment(*kind) : std::string();
}

// This process's command line for a record's header, with what must never be printed taken
// out: the value of --api-key, a header's value (--header/-H "Name: ***"), and the password of
// any URL (redact_url).
inline std::vector<std::string> redacted_command_line() {
  std::vector<std::string> argv;
  std::ifstream in("/proc/self/cmdline", std::ios::binary);
  for (std::string arg; std::getline(in, arg, '\0');) argv.push_back(std::move(arg));
  enum class Next { plain, key, header };
  Next next = Next::plain;
  auto header = [](const std::string& line) {
    const auto colon = line.find(':');
    return colon == std::string::npos ? std::string("***") : line.substr(0, colon) + ": ***";
  };
  for (auto& arg : argv) {
    if (next == Next::key) {
      arg = "***";
    } else if (next == Next::header) {
      arg = header(arg);
    } else if (arg.rfind("--api-key=", 0) == 0) {
      arg = "--api-key=***";
    } else if (arg.rfind("--header=", 0) == 0) {
      arg = "--header=" + header(arg.substr(9));
    } else if (arg.rfind("-H", 0) == 0 && arg.size() > 2) {
      arg = "-H" + header(arg.substr(2));
    } else if (arg.find("://") != std::string::npos) {
      const auto eq = arg.rfind("--", 0) == 0 ? arg.find('=') : std::string::npos;
      arg = eq == std::string::npos ? redact_url(arg)
                                    : arg.substr(0, eq + 1) + redact_url(arg.substr(eq + 1));
    }
    next = arg == "--api-key"                 ? Next::key
           : arg == "--header" || arg == "-H" ? Next::header
                                              : Next::plain;
  }
  return argv;
}

// Fills in what an endpoint's configuration leaves unset (a pool file's own settings win).
inline void apply_connection_flags(const ConnectionFlags& flags, EndpointConfig& config) {
  if (config.kind == BackendKind::llama) return;
  if (config.api_key.empty()) config.api_key = resolve_api_key(flags.api_key, config.kind);
  for (const auto& line : flags.headers) {
    std::pair<std::string, std::string> header;
    std::string error;
    if (parse_header(line, header, error)) config.headers.push_back(std::move(header));
  }
  Tls& tls = config.tls;
  if (tls.ca_file.empty()) tls.ca_file = flags.tls.ca_file;
  if (tls.client_cert.empty() && tls.client_key.empty()) {
    tls.client_cert = flags.tls.client_cert;
    tls.client_key = flags.tls.client_key;
  }
  tls.insecure = tls.insecure || flags.tls.insecure;
  if (config.proxy.empty()) config.proxy = flags.proxy;
  if (flags.retry_attempts) config.retry.attempts = *flags.retry_attempts;
  if (flags.retry_budget_ms) config.retry.budget_ms = *flags.retry_budget_ms;
}

}  // namespace chimera::cli
