// `chimeraforge endpoints`: check endpoints; start a local pool of llama-servers (`up`) and stop
// it (`down`). docs/endpoints.md is the manual for `up` and `down`.
#include "commands.hpp"
#include "connection_flags.hpp"
#include "signals.hpp"

#include <chimera/backends/backend.hpp>
#include <chimera/backends/server_process.hpp>
#include <chimera/core/install_paths.hpp>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <fmt/chrono.h>
#include <fmt/format.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <thread>

namespace chimera::cli {

namespace {

namespace fs = std::filesystem;

// ---------------------------------------------------------------------------------------------
// check

struct CheckArgs {
  std::vector<std::string> urls;
  std::string backend = "auto";
  int64_t timeout_ms = 3'000;
  bool json = false;
  ConnectionFlags connection;
};

// `bad_url` tells a URL that cannot be used at all (a usage error) from an endpoint that is down.
EndpointInfo check_one(const CheckArgs& a, const std::string& url, bool& bad_url) {
  Runtime& rt = Runtime::shared();
  EndpointInfo info;
  info.url = redact_url(url);
  EndpointConfig cfg;
  cfg.url = url;
  // --timeout bounds every request of the check, whichever way the API is chosen.
  cfg.timeouts.connect_ms = a.timeout_ms;
  cfg.timeouts.check_ms = a.timeout_ms;
  cfg.kind = BackendKind::ollama;  // the key detection may send
  apply_connection_flags(a.connection, cfg);
  if (const auto kind = parse_backend_kind(a.backend)) {
    cfg.kind = *kind;
  } else {  // "auto"
    auto d = detect_backend(cfg, rt, a.timeout_ms);
    if (d.error) {
      info.detail = d.error.message;
      bad_url = d.error.kind == ErrorKind::bad_request;
      return info;
    }
    cfg.kind = d.kind;
  }
  cfg.api_key = resolve_api_key(a.connection.api_key, cfg.kind);
  try {
    return make_backend(cfg, rt)->check();
  } catch (const std::invalid_argument& e) {
    info.detail = e.what();
    bad_url = true;
    return info;
  }
}

int run_check(const CheckArgs& a) {
  if (a.timeout_ms < 1 || a.timeout_ms > kMaxTimeoutMs) {
    fmt::print(stderr,
               "chimeraforge endpoints check: --timeout is {}; it must be from 1 to {} ms\n",
               a.timeout_ms, kMaxTimeoutMs);
    return kUsage;
  }
  int unhealthy = 0;
  int bad_urls = 0;
  for (const auto& url : a.urls) {
    bool bad_url = false;
    const EndpointInfo info = check_one(a, url, bad_url);
    if (!info.healthy) ++unhealthy;
    if (bad_url) ++bad_urls;
    if (a.json) {
      boost::json::array models;
      for (const auto& m : info.models) models.emplace_back(m);
      boost::json::object o{{"url", info.url},
                            {"healthy", info.healthy},
                            {"api", info.healthy ? to_string(info.kind) : ""},
                            {"server", info.server},
                            {"version", info.version},
                            {"models", std::move(models)},
                            {"detail", info.detail},
                            {"latency_ms", static_cast<double>(info.latency_ns) / 1e6}};
      fmt::print("{}\n", boost::json::serialize(o));
      continue;
    }
    if (!info.healthy) {
      fmt::print("{}  DOWN  {}\n", info.url, info.detail);
      continue;
    }
    fmt::print("{}  UP  api={} server={}{}  {:.1f} ms  {}\n", info.url, to_string(info.kind),
               info.server, info.version.empty() ? "" : " version=" + info.version,
               static_cast<double>(info.latency_ns) / 1e6, info.detail);
    fmt::print("  models: {}\n", info.models.empty()
                                     ? "(none listed)"
                                     : fmt::format("{}", fmt::join(info.models, ", ")));
  }
  if (bad_urls > 0) return kUsage;
  return unhealthy == 0 ? kOk : kFailed;
}

// ---------------------------------------------------------------------------------------------
// Processes, seen through /proc. A zombie counts as gone: it runs nothing and holds no port, and
// only its parent can reap it (a test harness, or a PID 1 that does not reap).

constexpr const char* kStateProgram = "chimeraforge endpoints up";

// The state letter of /proc/PID/stat (R, S, D, Z, ...), or 0 when there is no such process.
char proc_state(pid_t pid) {
  if (pid <= 0) return 0;
  std::ifstream in(fmt::format("/proc/{}/stat", pid));
  std::string line;
  std::getline(in, line);
  const auto paren = line.rfind(')');  // the command name may hold spaces and parentheses
  if (paren == std::string::npos || paren + 2 >= line.size()) return 0;
  return line[paren + 2];
}

bool alive(pid_t pid) {
  const char s = proc_state(pid);
  return s != 0 && s != 'Z' && s != 'X';
}

std::vector<std::string> proc_cmdline(pid_t pid) {
  std::ifstream in(fmt::format("/proc/{}/cmdline", pid), std::ios::binary);
  std::vector<std::string> argv;
  std::string arg;
  while (std::getline(in, arg, '\0')) argv.push_back(arg);
  return argv;
}

// Is `pid` still the `endpoints up` named in a state file (and not a process that got its pid)?
bool is_endpoints_up(pid_t pid) {
  const auto argv = proc_cmdline(pid);
  for (std::size_t i = 0; i + 1 < argv.size(); ++i) {
    if (argv[i] == "endpoints" && argv[i + 1] == "up") return true;
  }
  return false;
}

// Is `pid` still a llama-server (by its name, or the binary the state file recorded)?
bool is_llama_server(pid_t pid, const std::string& binary) {
  const auto argv = proc_cmdline(pid);
  if (argv.empty()) return false;
  return argv[0] == binary ||
         fs::path(argv[0]).filename().string().find("llama-server") != std::string::npos ||
         (fs::path(binary).filename() == "ollama" && fs::path(argv[0]).filename() == "ollama");
}

// ---------------------------------------------------------------------------------------------
// The state file: what `up` runs, for `down` (and for people) to find.

struct StateServer {
  pid_t pid = -1;
  int port = 0;
  std::string url;
  std::string log;
};

struct State {
  pid_t pid = -1;
  std::string status;  // "starting", "running"
  std::string started;
  std::string model;
  std::string binary;
  std::vector<StateServer> servers;
};

fs::path default_state_file() {
  if (const char* r = std::getenv("XDG_RUNTIME_DIR"); r != nullptr && *r != '\0') {
    return fs::path(r) / "chimeraforge" / "endpoints.json";
  }
  return user_cache_dir() / "endpoints.json";
}

// Written whole to a temporary file and renamed over the old one: a reader never sees half.
bool write_state(const fs::path& path, const State& s, std::string& error) {
  boost::json::array servers;
  for (const auto& e : s.servers) {
    servers.push_back(
        boost::json::object{{"pid", e.pid}, {"port", e.port}, {"url", e.url}, {"log", e.log}});
  }
  const boost::json::object o{
      {"program", kStateProgram},     {"pid", s.pid},     {"status", s.status},
      {"started", s.started},         {"model", s.model}, {"binary", s.binary},
      {"servers", std::move(servers)}};
  const fs::path tmp = path.string() + fmt::format(".tmp{}", ::getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << boost::json::serialize(o) << '\n';
    if (!out.flush()) {
      error =
          fmt::format("cannot write the state file '{}': {}", tmp.string(), std::strerror(errno));
      return false;
    }
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) {
    error = fmt::format("cannot write the state file '{}': {}", path.string(), ec.message());
    fs::remove(tmp, ec);
    return false;
  }
  return true;
}

// False with `error` when the file cannot be read or was not written by `endpoints up`.
bool read_state(const fs::path& path, State& s, std::string& error) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    error = fmt::format("cannot read '{}': {}", path.string(), std::strerror(errno));
    return false;
  }
  std::stringstream ss;
  ss << in.rdbuf();
  boost::system::error_code ec;
  const auto v = boost::json::parse(ss.str(), ec);
  const boost::json::object* o = ec ? nullptr : v.if_object();
  const boost::json::value* program = o ? o->if_contains("program") : nullptr;
  if (program == nullptr || !program->is_string() || program->get_string() != kStateProgram) {
    error = fmt::format("'{}' is not a state file written by `{}`", path.string(), kStateProgram);
    return false;
  }
  // A pid from the file is range-checked before use: a wrapped one (4294967297 read as 1)
  // would make `down` signal another process.
  auto pid_of = [&](const boost::json::value& v) {
    const int64_t n = v.to_number<int64_t>();
    if (n < 1 || n > std::numeric_limits<pid_t>::max()) {
      throw std::out_of_range(fmt::format("pid {} is not a process id", n));
    }
    return static_cast<pid_t>(n);
  };
  auto port_of = [&](const boost::json::value& v) {
    const int64_t n = v.to_number<int64_t>();
    if (n < 1 || n > 65535) throw std::out_of_range(fmt::format("port {} is out of range", n));
    return static_cast<int>(n);
  };
  try {
    s.pid = pid_of(o->at("pid"));
    s.status = o->at("status").as_string().c_str();
    s.started = o->at("started").as_string().c_str();
    s.model = o->at("model").as_string().c_str();
    s.binary = o->at("binary").as_string().c_str();
    for (const auto& e : o->at("servers").as_array()) {
      const auto& so = e.as_object();
      s.servers.push_back({.pid = pid_of(so.at("pid")),
                           .port = port_of(so.at("port")),
                           .url = so.at("url").as_string().c_str(),
                           .log = so.at("log").as_string().c_str()});
    }
  } catch (const std::exception& e) {
    error = fmt::format("the state file '{}' is damaged: {}", path.string(), e.what());
    return false;
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// up

struct UpArgs {
  int count = 0;
  std::string model;
  int port = 0;  // 0: free ports
  int gpu_layers = 0;
  int ctx = 4096;
  int parallel = 1;
  int threads = 0;
  std::string server;
  std::string state;
  std::string name = "local";
  int ready_timeout_s = 300;
  bool json = false;
  std::vector<std::string> server_args;
  CLI::Option* port_option = nullptr;
  CLI::Option* gpu_option = nullptr;
  CLI::Option* ctx_option = nullptr;
  CLI::Option* threads_option = nullptr;
  bool ollama() const { return server == "ollama"; }
  const char* noun() const { return ollama() ? "ollama" : "llama-server"; }
  const char* nouns() const { return ollama() ? "ollama instances" : "llama-servers"; }
};

constexpr const char* kUp = "chimeraforge endpoints up";
constexpr int kMaxCount = 256;

// Empty when the flags are usable; otherwise what is wrong, naming the flag.
std::string check_up_flags(const UpArgs& a) {
  if (a.count < 1) return fmt::format("--count must be at least 1 (got {})", a.count);
  if (a.count > kMaxCount) {
    return fmt::format("--count {} is more than {} servers; is that what you meant?", a.count,
                       kMaxCount);
  }
  if (a.ollama()) {
    // Ollama's server flags are its environment; GPU layers and threads are per-request options
    // there (num_gpu, num_thread), so a value given here would have nowhere to go.
    for (const auto* o : {a.gpu_option, a.threads_option}) {
      if (o != nullptr && o->count() > 0) {
        return fmt::format(
            "{} has no meaning for `--server ollama`: Ollama takes {} with each request ({}), "
            "not when it starts",
            o->get_name(), o == a.gpu_option ? "GPU layers" : "threads",
            o == a.gpu_option ? "num_gpu" : "num_thread");
      }
    }
    if (!a.server_args.empty()) {
      return "flags after `--` go to llama-server; `ollama serve` takes none (it reads "
             "OLLAMA_* variables, which the instances inherit)";
    }
  }
  std::error_code ec;
  const auto st = fs::status(a.model, ec);
  if (a.ollama()) {
    // A model name for Ollama (the pool's `model`), or nothing.
  } else if (a.model.empty()) {
    return "--model FILE is required: the GGUF file every llama-server loads";
  } else if (!fs::exists(st)) {
    return fmt::format("--model '{}': no such file", a.model);
  } else if (!fs::is_regular_file(st)) {
    return fmt::format("--model '{}' is not a file", a.model);
  }
  if (!a.ollama()) {
    std::ifstream in(a.model, std::ios::binary);
    char magic[4] = {};
    if (!in.read(magic, 4)) {
      return fmt::format("--model '{}' cannot be read or is too short to be a GGUF model", a.model);
    }
    if (std::memcmp(magic, "GGUF", 4) != 0) {
      return fmt::format(
          "--model '{}' is not a GGUF model (it does not start with \"GGUF\"); "
          "llama-server loads GGUF files only",
          a.model);
    }
  }
  if (a.port_option != nullptr && a.port_option->count() > 0) {
    if (a.port < 1 || a.port > 65535) {
      return fmt::format("--port {} is out of range: a port is from 1 to 65535", a.port);
    }
    if (a.port + a.count - 1 > 65535) {
      return fmt::format("--port {} with --count {} needs ports up to {}, beyond 65535", a.port,
                         a.count, a.port + a.count - 1);
    }
  }
  if (a.parallel < 1 || a.parallel > kMaxParallel) {
    return fmt::format("--parallel must be from 1 to {} (got {})", kMaxParallel, a.parallel);
  }
  if (a.ctx < 0 || a.ctx > kMaxNumCtx * kMaxParallel) {
    return fmt::format("--ctx must be 0 (the model's own) to {} (got {})",
                       kMaxNumCtx * kMaxParallel, a.ctx);
  }
  if (a.threads < 0) return fmt::format("--threads must be 0 (llama-server's choice) or more");
  if (a.gpu_layers < 0) return fmt::format("--gpu-layers must be 0 or more (99: all layers)");
  // In seconds; multiplied into ms (an int) later, so bounded well below that.
  if (a.ready_timeout_s < 1 || a.ready_timeout_s > 86'400) {
    return fmt::format("--ready-timeout is {}; it must be from 1 to 86400 seconds",
                       a.ready_timeout_s);
  }
  if (a.name.empty() || a.name.find_first_not_of(
                            "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") !=
                            std::string::npos) {
    return fmt::format("--name '{}': use letters, digits, '-' and '_'", a.name);
  }
  if (!a.server.empty() && !a.ollama() && ::access(a.server.c_str(), X_OK) != 0) {
    return fmt::format("--server '{}' is not an executable file: {}", a.server,
                       std::strerror(errno));
  }
  return {};
}

bool port_in_use(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  const bool taken = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0;
  ::close(fd);
  return taken;
}

struct Running {
  std::unique_ptr<ServerProcess> process;
  pid_t pid = -1;  // kept: the process forgets its pid once reaped
  bool ready = false;
  bool live = true;
};

std::string plural(std::size_t n, const char* one, const char* many) {
  return fmt::format("{} {}", n, n == 1 ? one : many);
}

// Every server at once: SIGTERM to all first, so the 2 s grace of stop() runs concurrently.
void stop_all(std::vector<Running>& servers) {
  for (auto& s : servers) {
    if (s.process->pid() > 0) ::kill(s.process->pid(), SIGTERM);
  }
  for (auto& s : servers) {
    s.process->stop();
    s.live = false;
  }
}

State make_state(const UpArgs& a, const std::string& binary, const std::string& started,
                 const std::vector<Running>& servers, const char* status) {
  State st;
  st.pid = ::getpid();
  st.status = status;
  st.started = started;
  st.model = a.ollama() ? a.model : fs::absolute(a.model).string();
  st.binary = binary;
  for (const auto& s : servers) {
    if (!s.live) continue;
    st.servers.push_back({.pid = s.pid,
                          .port = s.process->port(),
                          .url = s.process->url(),
                          .log = s.process->log_path()});
  }
  return st;
}

std::string pool_toml(const UpArgs& a, const std::vector<Running>& servers) {
  std::string t = fmt::format(
      "# {} {} started by `chimeraforge endpoints up` ({}); stop them with Ctrl-C or "
      "`chimeraforge endpoints down`\n[[pool]]\nname = \"{}\"\nrouting = \"least-outstanding\"\n",
      servers.size(), servers.size() == 1 ? a.noun() : a.nouns(),
      a.ollama() ? (a.model.empty() ? "ollama serve" : a.model)
                 : fs::path(a.model).filename().string(),
      a.name);
  for (const auto& s : servers) {
    t +=
        fmt::format("\n[[pool.endpoint]]\nurl = \"{}\"\nbackend = \"{}\"\nmax_concurrency = {}\n{}",
                    s.process->url(), a.ollama() ? "ollama" : "openai", a.parallel,
                    a.ollama() && !a.model.empty() ? fmt::format("model = \"{}\"\n", a.model) : "");
  }
  return t;
}

std::string pool_json(const UpArgs& a, const std::vector<Running>& servers) {
  boost::json::array endpoints;
  for (const auto& s : servers) {
    boost::json::object e{{"url", s.process->url()},
                          {"backend", a.ollama() ? "ollama" : "openai"},
                          {"max_concurrency", a.parallel}};
    if (a.ollama() && !a.model.empty()) e["model"] = a.model;
    endpoints.push_back(std::move(e));
  }
  boost::json::array pools;
  pools.push_back(boost::json::object{
      {"name", a.name}, {"routing", "least-outstanding"}, {"endpoint", std::move(endpoints)}});
  return boost::json::serialize(boost::json::object{{"pool", std::move(pools)}});
}

// The llama-server to run: --server, or the one this build was made with. Empty (reported) when
// the built one cannot be run; --server was checked with the flags.
std::string runnable_server(const UpArgs& a) {
  if (a.ollama()) {
    // `ollama` on PATH, as a shell finds it.
    const char* path = std::getenv("PATH");
    std::stringstream dirs(path != nullptr ? path : "");
    for (std::string dir; std::getline(dirs, dir, ':');) {
      const fs::path candidate = fs::path(dir.empty() ? "." : dir) / "ollama";
      std::error_code ec;
      if (fs::is_regular_file(candidate, ec) && ::access(candidate.c_str(), X_OK) == 0) {
        return fs::absolute(candidate).string();
      }
    }
    fmt::print(stderr,
               "{}: --server ollama: no `ollama` executable on PATH ({}); install Ollama "
               "(https://ollama.com/download), or start its instances yourself and give their "
               "URLs to the commands that use them\n",
               kUp, path != nullptr ? path : "PATH is unset");
    return {};
  }
  std::string binary = a.server.empty() ? default_llama_server() : a.server;
  if (a.server.empty() && ::access(binary.c_str(), X_OK) != 0) {
    fmt::print(stderr,
               "{}: the llama-server this build was made with ('{}') cannot be run: {}; "
               "name one with --server PATH\n",
               kUp, binary, std::strerror(errno));
    return {};
  }
  return binary;
}

// The state file may be written: it is absent or stale, and its folder exists. Otherwise the
// exit code, reported.
std::optional<int> claim_state_file(const UpArgs& a, const fs::path& state_path) {
  std::error_code ec;
  if (fs::exists(state_path, ec)) {
    State old;
    std::string error;
    if (!read_state(state_path, old, error)) {
      fmt::print(stderr, "{}: --state: {}; not overwriting it\n", kUp, error);
      return kUsage;
    }
    if (alive(old.pid) && is_endpoints_up(old.pid)) {
      fmt::print(stderr,
                 "{}: endpoints are already running (pid {}, state file '{}'); stop them with "
                 "`chimeraforge endpoints down{}`, or give this set its own --state FILE\n",
                 kUp, old.pid, state_path.string(),
                 a.state.empty() ? "" : " --state " + state_path.string());
      return kFailed;
    }
    fmt::print(stderr, "{}: replacing the stale state file '{}' (pid {} is gone)\n", kUp,
               state_path.string(), old.pid);
  }
  fs::create_directories(
      state_path.parent_path().empty() ? fs::path(".") : state_path.parent_path(), ec);
  if (ec) {
    fmt::print(stderr, "{}: cannot create the folder of the state file '{}': {}\n", kUp,
               state_path.string(), ec.message());
    return kFailed;
  }
  return std::nullopt;
}

// --port and the ports after it, each free; or free ports. False (reported) when a given port is
// taken.
bool choose_ports(const UpArgs& a, std::vector<int>& ports) {
  if (a.port_option->count() > 0) {
    for (int i = 0; i < a.count; ++i) {
      if (port_in_use(a.port + i)) {
        fmt::print(stderr, "{}: port {} on 127.0.0.1 is in use; choose another --port\n", kUp,
                   a.port + i);
        return false;
      }
      ports.push_back(a.port + i);
    }
  } else {
    std::set<int> seen;
    while (ports.size() < static_cast<std::size_t>(a.count)) {
      const int p = free_loopback_port();
      if (seen.insert(p).second) ports.push_back(p);
    }
  }
  return true;
}

// The running pool of `up`: its servers and its state file, from the start to the stop.
class UpPool {
 public:
  UpPool(const UpArgs& a, std::string binary, fs::path state_path)
      : a_(a), binary_(std::move(binary)), state_path_(std::move(state_path)) {}

  // The stop signals are taken with sigtimedwait() from here on, never by a handler. The servers
  // unblock them (ServerProcess does) and sit in process groups of their own, so a Ctrl-C
  // reaches only this process, which then stops them in order.
  void block_stop_signals() { stop_signals_ = StopSignals({SIGINT, SIGTERM, SIGHUP}); }

  // One llama-server per port, not waited for; the state file says "starting". False (reported,
  // servers stopped) when the state file cannot be written.
  bool launch(const std::vector<int>& ports) {
    t0_ = std::chrono::steady_clock::now();
    started_ = fmt::format("{:%Y-%m-%dT%H:%M:%SZ}", fmt::gmtime(std::time(nullptr)));
    if (a_.ollama()) {
      const char* models = std::getenv("OLLAMA_MODELS");
      fmt::print(stderr,
                 "{}: starting {} (`{} serve`, OLLAMA_HOST one port each, OLLAMA_NUM_PARALLEL "
                 "{}; models shared from {})\n",
                 kUp, plural(ports.size(), "ollama instance", "ollama instances"), binary_,
                 a_.parallel,
                 models != nullptr && *models != '\0' ? fmt::format("OLLAMA_MODELS={}", models)
                                                      : std::string("Ollama's default folder"));
    } else {
      fmt::print(stderr, "{}: starting {} with {} ({} each, ctx {}, {} GPU layers)\n", kUp,
                 plural(ports.size(), "llama-server", "llama-servers"), a_.model,
                 plural(static_cast<std::size_t>(a_.parallel), "slot", "slots"), a_.ctx,
                 a_.gpu_layers);
    }
    for (const int port : ports) servers_.push_back(start_server(port));
    std::string error;
    if (!write_state(state_path_, make_state(a_, binary_, started_, servers_, "starting"), error)) {
      fmt::print(stderr, "{}: {}\n", kUp, error);
      stop_all(servers_);
      return false;
    }
    return true;
  }

  // Starting: each server's readiness as it comes, the first failure ends it all. The exit code
  // when it ended.
  std::optional<int> wait_until_ready() {
    std::size_t ready = 0;
    while (ready < servers_.size()) {
      if (const int sig = stop_signals_.wait(50); sig != 0) {
        fmt::print(stderr, "{}: {} before every server was ready; stopping them\n", kUp,
                   signal_name(sig));
        cleanup();
        return kInterrupted;
      }
      for (std::size_t i = 0; i < servers_.size(); ++i) {
        Running& s = servers_[i];
        if (s.ready || !s.process->poll_ready()) continue;
        if (!s.process->ok()) {
          report_start_failure(i);
          return kFailed;
        }
        s.ready = true;
        ++ready;
        const double secs =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
        fmt::print(stderr, "  [{}/{}] {} ready (pid {}, {:.1f} s)\n", ready, servers_.size(),
                   s.process->url(), s.pid, secs);
      }
    }
    return std::nullopt;
  }

  // The state file says "running" and the pool configuration goes to stdout. False (reported,
  // servers stopped) when the state file cannot be written.
  bool announce() {
    std::string error;
    if (!write_state(state_path_, make_state(a_, binary_, started_, servers_, "running"), error)) {
      fmt::print(stderr, "{}: {}\n", kUp, error);
      cleanup();
      return false;
    }
    fmt::print("{}\n", a_.json ? pool_json(a_, servers_) : pool_toml(a_, servers_));
    std::fflush(stdout);
    const std::string down_cmd =
        a_.state.empty()
            ? "chimeraforge endpoints down"
            : fmt::format("chimeraforge endpoints down --state {}", state_path_.string());
    fmt::print(stderr, "{}: {} running (state file {}). Press Ctrl-C to stop them, or run `{}`.\n",
               kUp,
               a_.ollama() ? plural(servers_.size(), "ollama instance is", "ollama instances are")
                           : plural(servers_.size(), "llama-server is", "llama-servers are"),
               state_path_.string(), down_cmd);
    return true;
  }

  // Serving: until a stop signal. A server that dies is reported; the others go on.
  int serve_until_stopped() {
    for (;;) {
      if (const int sig = stop_signals_.wait(250); sig != 0) {
        fmt::print(stderr, "{}: {}; stopping {}\n", kUp, signal_name(sig),
                   plural(live_count(), a_.noun(), a_.nouns()));
        cleanup();
        fmt::print(stderr, "{}: stopped\n", kUp);
        return kOk;
      }
      if (!note_dead_servers()) continue;
      const std::size_t live = live_count();
      if (live == 0) {
        fmt::print(stderr, "{}: every {} has died; nothing is left to serve\n", kUp, a_.noun());
        std::error_code ec;
        fs::remove(state_path_, ec);
        return kFailed;
      }
      fmt::print(stderr, "{}: {} {} still running; the pool routes around the dead one\n", kUp,
                 plural(live, a_.noun(), a_.nouns()), live == 1 ? "is" : "are");
      std::string error;
      if (!write_state(state_path_, make_state(a_, binary_, started_, servers_, "running"),
                       error)) {
        fmt::print(stderr, "{}: {}\n", kUp, error);
      }
    }
  }

 private:
  Running start_server(int port) const {
    ServerOptions o;
    o.binary = binary_;
    o.model = a_.model;
    o.port = port;
    o.parallel = a_.parallel;
    o.ctx = a_.ctx;
    o.threads = a_.threads;
    o.gpu_layers = a_.gpu_layers;
    o.extra = a_.server_args;
    o.ready_timeout_ms = a_.ready_timeout_s * 1000;
    if (a_.ollama()) {
      o.command = {binary_, "serve"};
      o.env = {fmt::format("OLLAMA_HOST=127.0.0.1:{}", port),
               fmt::format("OLLAMA_NUM_PARALLEL={}", a_.parallel)};
      if (a_.ctx_option != nullptr && a_.ctx_option->count() > 0) {
        o.env.push_back(fmt::format("OLLAMA_CONTEXT_LENGTH={}", a_.ctx));
      }
      o.ready_path = "/api/version";
      o.name = "ollama";
    }
    o.wait_until_ready = false;
    o.own_process_group = true;
    Running r;
    r.process = std::make_unique<ServerProcess>(std::move(o));
    r.pid = r.process->pid();
    return r;
  }

  void cleanup() {
    stop_all(servers_);
    std::error_code ec;
    fs::remove(state_path_, ec);
  }

  // Server `i` failed to start: everything stops.
  void report_start_failure(std::size_t i) {
    Running& s = servers_[i];
    s.live = false;
    const std::string why = s.process->error();
    cleanup();
    fmt::print(stderr, "{}: {} {} of {} (port {}, pid {}) failed to start: {}\n", kUp, a_.noun(),
               i + 1, servers_.size(), s.process->port(), s.pid, why);
    if (servers_.size() > 1) {
      fmt::print(stderr, "{}: stopped the other {}\n", kUp,
                 servers_.size() == 2 ? "server" : fmt::format("{} servers", servers_.size() - 1));
    }
  }

  // Reports the servers that died since the last look; true when there were any.
  bool note_dead_servers() {
    bool changed = false;
    for (std::size_t i = 0; i < servers_.size(); ++i) {
      Running& s = servers_[i];
      if (!s.live || s.process->running()) continue;
      s.live = false;
      changed = true;
      fmt::print(stderr, "{}: {} {} of {} at {} (pid {}) has died: {}\n", kUp, a_.noun(), i + 1,
                 servers_.size(), s.process->url(), s.pid, s.process->error());
    }
    return changed;
  }

  std::size_t live_count() const {
    std::size_t live = 0;
    for (const auto& s : servers_) live += s.live ? 1 : 0;
    return live;
  }

  const UpArgs& a_;
  const std::string binary_;
  const fs::path state_path_;
  StopSignals stop_signals_{{}};  // none until block_stop_signals()
  std::chrono::steady_clock::time_point t0_;
  std::string started_;
  std::vector<Running> servers_;
};

int run_up(const UpArgs& a) {
  if (const std::string bad = check_up_flags(a); !bad.empty()) {
    fmt::print(stderr, "{}: {}\n", kUp, bad);
    return kUsage;
  }
  std::string binary = runnable_server(a);
  if (binary.empty()) return kFailed;
  fs::path state_path = a.state.empty() ? default_state_file() : fs::path(a.state);
  if (const auto code = claim_state_file(a, state_path)) return *code;
  std::vector<int> ports;
  if (!choose_ports(a, ports)) return kFailed;

  UpPool pool(a, std::move(binary), std::move(state_path));
  pool.block_stop_signals();
  if (!pool.launch(ports)) return kFailed;
  if (const auto code = pool.wait_until_ready()) return *code;
  if (!pool.announce()) return kFailed;
  return pool.serve_until_stopped();
}

// ---------------------------------------------------------------------------------------------
// down

struct DownArgs {
  std::string state;
};

constexpr const char* kDown = "chimeraforge endpoints down";

int run_down(const DownArgs& a) {
  const fs::path state_path = a.state.empty() ? default_state_file() : fs::path(a.state);
  std::error_code ec;
  if (!fs::exists(state_path, ec)) {
    fmt::print("nothing is running (no state file at {})\n", state_path.string());
    return kOk;
  }
  State st;
  std::string error;
  if (!read_state(state_path, st, error)) {
    fmt::print(stderr, "{}: {}; leaving it alone\n", kDown, error);
    return kFailed;
  }

  const bool up_was_running = alive(st.pid) && is_endpoints_up(st.pid);
  const auto server_alive = [&](const StateServer& s) {
    return alive(s.pid) && is_llama_server(s.pid, st.binary);
  };
  std::size_t servers_running = 0;
  for (const auto& s : st.servers) servers_running += server_alive(s) ? 1 : 0;

  if (up_was_running) ::kill(st.pid, SIGTERM);  // it stops its own servers
  const auto all_gone = [&] {
    if (alive(st.pid) && is_endpoints_up(st.pid)) return false;
    for (const auto& s : st.servers) {
      if (server_alive(s)) return false;
    }
    return true;
  };
  const auto wait_gone = [&](std::chrono::milliseconds limit) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!all_gone() && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return all_gone();
  };

  std::vector<std::string> killed;
  if (!wait_gone(std::chrono::seconds(5))) {
    if (alive(st.pid) && is_endpoints_up(st.pid) && ::kill(st.pid, SIGKILL) == 0) {
      killed.push_back(fmt::format("endpoints up (pid {})", st.pid));
    }
    for (const auto& s : st.servers) {
      if (server_alive(s) && ::kill(s.pid, SIGKILL) == 0) {
        killed.push_back(fmt::format("llama-server {} (pid {})", s.url, s.pid));
      }
    }
    wait_gone(std::chrono::seconds(2));
  }
  fs::remove(state_path, ec);
  // `up` deletes its servers' logs when it stops them; after a SIGKILL nobody did.
  std::size_t logs_removed = 0;
  for (const auto& s : st.servers) {
    if (!server_alive(s) && fs::remove(s.log, ec)) ++logs_removed;
  }

  if (up_was_running) {
    fmt::print("stopped endpoints up (pid {}) and its {}:\n", st.pid,
               plural(st.servers.size(), "llama-server", "llama-servers"));
  } else {
    fmt::print("the state file {} was stale: endpoints up (pid {}) had already exited{}\n",
               state_path.string(), st.pid,
               servers_running == 0 ? ", and its llama-servers with it" : "");
  }
  for (const auto& s : st.servers) fmt::print("  {}  pid {}\n", s.url, s.pid);
  if (!killed.empty()) {
    fmt::print("did not stop within 5 s, killed with SIGKILL: {}\n", fmt::join(killed, ", "));
  }
  fmt::print("removed {}{}\n", state_path.string(),
             logs_removed == 0 ? ""
                               : fmt::format(" and {} left behind",
                                             plural(logs_removed, "server log", "server logs")));

  std::vector<std::string> left;
  if (alive(st.pid) && is_endpoints_up(st.pid)) left.push_back(fmt::format("pid {}", st.pid));
  for (const auto& s : st.servers) {
    if (server_alive(s)) left.push_back(fmt::format("pid {} ({})", s.pid, s.url));
  }
  if (!left.empty()) {
    fmt::print(stderr, "{}: still running, could not stop: {}\n", kDown, fmt::join(left, ", "));
    return kFailed;
  }
  return kOk;
}

}  // namespace

std::function<int()> add_endpoints(CLI::App& app) {
  auto* cmd =
      app.add_subcommand("endpoints", "Inspect inference endpoints; start and stop a local pool");
  cmd->require_subcommand(1);

  auto a = std::make_shared<CheckArgs>();
  auto* check = cmd->add_subcommand(
      "check",
      "For each URL: is it up, which API it speaks (Ollama or OpenAI-compatible), its version and "
      "its models. Exits 1 when any is down.\n\n"
      "Example:\n  chimeraforge endpoints check http://127.0.0.1:11434 http://127.0.0.1:8080\n\n" +
          connection_env_help());
  check->add_option("urls", a->urls, "Endpoint URLs")->required();
  check->add_option("--backend,-b", a->backend, "auto, ollama or openai")
      ->check(CLI::IsMember({"auto", "ollama", "openai"}))
      ->capture_default_str();
  check->add_option("--timeout", a->timeout_ms, "Per-request timeout, ms")->capture_default_str();
  check->add_flag("--json", a->json, "One JSON object per endpoint");
  add_connection_flags(check, a->connection);

  auto u = std::make_shared<UpArgs>();
  auto* up = cmd->add_subcommand(
      "up",
      "Start N llama-servers on this machine, one endpoint pool, and keep them running.\n\n"
      "Each server loads --model and listens on 127.0.0.1: on ports --port, --port+1, ... or, "
      "without --port, on free ports. Progress goes to stderr as each server answers /health; "
      "then the pool's configuration (a [[pool]] section with one [[pool.endpoint]] per server; "
      "--json: the same as JSON) is printed on stdout, to paste into a configuration or redirect "
      "to a file. The command stays in the foreground until Ctrl-C, SIGTERM or `chimeraforge "
      "endpoints down`, stops every server (SIGTERM, SIGKILL after 2 s) and exits 0. The servers "
      "die with it even if it is killed with SIGKILL. A server that dies meanwhile is reported "
      "by name, with its log.\n\n"
      "While it runs, a state file lists its pid and each server's pid, port, URL and log: "
      "$XDG_RUNTIME_DIR/chimeraforge/endpoints.json, or, when XDG_RUNTIME_DIR is unset, "
      "~/.cache/chimeraforge/endpoints.json ($XDG_CACHE_HOME in place of ~/.cache when set); "
      "--state FILE chooses another, for a second pool. Flags after `--` go to llama-server as "
      "they are.\n\n"
      "Exit codes: 0 stopped on request; 1 a server failed to start (its log tail is shown), or "
      "every server died; 2 a bad flag; 130 stopped before every server was ready.\n\n"
      "Examples:\n"
      "  chimeraforge endpoints up --count 2 --model model.gguf --port 18080 --parallel 4\n"
      "  chimeraforge endpoints up --count 4 --model model.gguf --gpu-layers 99 > pool.toml\n"
      "  chimeraforge endpoints up --count 2 --model model.gguf -- --cache-ram 0\n"
      "  chimeraforge endpoints up --server ollama --count 2 --model gemma3   # Dual Ollama\n"
      "  chimeraforge endpoints down      # from another terminal: stops them all");
  up->add_option("--count,-n", u->count, "How many llama-servers to start (1 or more)")->required();
  up->add_option("--model,-m", u->model,
                 "GGUF model file every llama-server loads (required for llama-server); with "
                 "--server ollama, the Ollama model name the printed pool uses (optional)");
  u->port_option = up->add_option("--port,-p", u->port,
                                  "First port; server i listens on PORT+i (default: free ports)");
  u->gpu_option = up->add_option("--gpu-layers", u->gpu_layers,
                                 "Layers each server puts on the GPU (-ngl); 99: all")
                      ->capture_default_str();
  u->ctx_option =
      up->add_option(
            "--ctx,-c", u->ctx,
            "Context of each server, shared by its slots (-c; each slot gets CTX/PARALLEL); "
            "0: the model's own")
          ->capture_default_str();
  up->add_option("--parallel", u->parallel,
                 "Slots per server (-np): requests it serves at once; the pool's max_concurrency")
      ->capture_default_str();
  u->threads_option = up->add_option("--threads,-t", u->threads,
                                     "CPU threads per server (-t); 0: llama-server's choice")
                          ->capture_default_str();
  up->add_option("--server", u->server,
                 "The llama-server binary (default: the one this build uses), or `ollama`: start "
                 "N `ollama serve` instances from PATH instead, one OLLAMA_HOST port each, models "
                 "shared (OLLAMA_MODELS as set here), each waited for on /api/version; --parallel "
                 "becomes OLLAMA_NUM_PARALLEL, --ctx OLLAMA_CONTEXT_LENGTH");
  up->add_option("--state", u->state, "State file (default: see above)");
  up->add_option("--name", u->name, "The pool's name in the printed configuration")
      ->capture_default_str();
  up->add_option("--ready-timeout", u->ready_timeout_s,
                 "Seconds each server may take to load its model and answer /health")
      ->capture_default_str();
  up->add_flag("--json", u->json, "Print the pool's configuration as one JSON object");
  up->add_option("server-args", u->server_args, "Flags for llama-server itself, after `--`");

  auto d = std::make_shared<DownArgs>();
  auto* down = cmd->add_subcommand(
      "down",
      "Stop the llama-servers that `chimeraforge endpoints up` started.\n\n"
      "Reads the state file, sends SIGTERM to the `up` process (which stops its servers), waits "
      "up to 5 s for it and its servers to be gone, kills with SIGKILL whatever is left (a pid "
      "is killed only while /proc says it is still that `up` or a llama-server), removes the "
      "state file and says what it stopped. With no state file it says nothing is running and "
      "exits 0; a stale one (its processes already gone) is removed.\n\n"
      "Example:\n  chimeraforge endpoints down\n  chimeraforge endpoints down --state "
      "/tmp/pool-b.json");
  down->add_option("--state", d->state,
                   "State file written by `up` (default: $XDG_RUNTIME_DIR/chimeraforge/"
                   "endpoints.json, or ~/.cache/chimeraforge/endpoints.json)");

  return [a, u, d, up, down]() {
    if (up->parsed()) return run_up(*u);
    if (down->parsed()) return run_down(*d);
    return run_check(*a);
  };
}

}  // namespace chimera::cli
