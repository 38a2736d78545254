// The fault soak (docs/fault-matrix.md): N agents for M minutes on chimera::Engine over one pool
// of three endpoints that fail in every way we can make them fail:
//   - synthetic server A (Ollama protocol) injecting `mix:0` at the fault rate: drops, stalls,
//     errors and 503s before the first token, which the pool must retry on another endpoint;
//   - synthetic server B (OpenAI protocol) injecting `mix:K`: the same faults after K tokens,
//     which must end the request with a clear error (a retry would deliver tokens twice);
//   - a real llama-server (the tiny synthetic model), killed with SIGKILL and restarted every
//     --restart-s seconds.
// Every request is accounted for: it completes (none lost), ok or with an error that has a
// kind and a message, and the text handed to the caller is exactly the completion's text, which
// for the synthetic servers must be "tok1 tok2 ..." with no token repeated or missing (nothing
// delivered twice). The client's RSS and open descriptors are sampled every second and must be
// flat after warm-up. A watchdog fails the run when no request completes for --watchdog-s.
//
// Appends one JSON line to --results (bench/results/soak.jsonl) and prints a summary; exits 0
// when the run passed, 1 when it did not, 2 on a usage error. bench/soak/run.sh builds and runs
// it.
#include "provenance.hpp"

#include <chimera/backends/server_process.hpp>
#include <chimera/engine/engine.hpp>
#include <chimera/model/synthetic_model.hpp>
#include <chimera/pool/pool.hpp>

#include <CLI/CLI.hpp>
#include <boost/json.hpp>
#include <fmt/format.h>

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#ifndef CHIMERA_CLI
#error "CHIMERA_CLI must name the chimeraforge binary (bench/soak/CMakeLists.txt defines it)"
#endif

namespace {

namespace json = boost::json;
using Clock = std::chrono::steady_clock;

int64_t now_ns() {
  return Clock::now().time_since_epoch().count();
}

// ---- the synthetic servers: child processes of this one -----------------------------------

class SynthProcess {
 public:
  SynthProcess(const std::string& name, const std::vector<std::string>& args) : name_(name) {
    int out[2];
    if (::pipe2(out, O_CLOEXEC) != 0)
      throw std::runtime_error("pipe: " + std::string(strerror(errno)));
    pid_ = ::fork();
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the soak
      ::dup2(out[1], STDOUT_FILENO);
      std::vector<char*> argv;
      argv.push_back(const_cast<char*>(CHIMERA_CLI));
      for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      ::execv(CHIMERA_CLI, argv.data());
      std::perror("exec " CHIMERA_CLI);
      std::_Exit(127);
    }
    ::close(out[1]);
    out_ = ::fdopen(out[0], "r");
    // "synth-server listening on http://127.0.0.1:PORT (...)"
    char line[1024];
    if (std::fgets(line, sizeof line, out_) == nullptr) {
      throw std::runtime_error(name + ": the synthetic server exited before listening");
    }
    const std::string text = line;
    const auto at = text.find("http://");
    url_ = text.substr(at, text.find(' ', at) - at);
    std::fputs(text.c_str(), stderr);
  }
  ~SynthProcess() { stop(); }

  const std::string& url() const { return url_; }

  // Stops the server (SIGTERM) and returns the /stats JSON it prints on the way out.
  json::object stop() {
    if (pid_ <= 0) return stats_;
    ::kill(pid_, SIGTERM);
    char line[65536];
    while (std::fgets(line, sizeof line, out_) != nullptr) {
      if (line[0] != '{') continue;
      boost::system::error_code ec;
      auto v = json::parse(line, ec);
      if (!ec && v.is_object()) stats_ = v.as_object();
    }
    std::fclose(out_);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
    return stats_;
  }

 private:
  std::string name_;
  pid_t pid_ = -1;
  FILE* out_ = nullptr;
  std::string url_;
  json::object stats_;
};

// ---- what the client saw --------------------------------------------------------------------

struct Sample {
  double t_s;
  double rss_mb;
  int fds;
  int64_t completed;
};

double rss_mb() {
  std::ifstream in("/proc/self/status");
  std::string key;
  while (in >> key) {
    if (key == "VmRSS:") {
      double kb = 0;
      in >> kb;
      return kb / 1024;
    }
    in.ignore(1 << 12, '\n');
  }
  return 0;
}

int open_fds() {
  int n = 0;
  if (DIR* d = ::opendir("/proc/self/fd")) {
    while (const dirent* e = ::readdir(d)) n += e->d_name[0] != '.';
    ::closedir(d);
    --n;  // the directory being read
  }
  return n;
}

// "tok1 tok2 ... tokK " for some K >= 0: the synthetic server's tokens, each once, in order.
bool synth_sequence(std::string_view text, int* tokens) {
  int k = 0;
  while (!text.empty()) {
    const std::string expected = fmt::format("tok{} ", k + 1);
    if (text.substr(0, expected.size()) != expected) return false;
    text.remove_prefix(expected.size());
    ++k;
  }
  *tokens = k;
  return true;
}

struct Ledger {
  std::atomic<int64_t> started{0}, completed{0}, ok{0};
  std::atomic<int64_t> last_done_ns{0};
  std::atomic<int64_t> max_gap_ns{0};
  std::mutex mu;
  std::map<std::string, std::map<std::string, int64_t>> outcomes;  // endpoint -> outcome -> n
  std::vector<std::string> violations;
  int64_t violation_count = 0;
  std::map<int, int64_t> llama_ok_by_epoch;  // restarts so far -> ok requests it served

  void violation(std::string what) {
    std::lock_guard lock(mu);
    ++violation_count;
    if (violations.size() < 20) violations.push_back(std::move(what));
  }
};

// "ok" or the error's kind ("truncated", "timeout", ...).
const char* outcome_name(chimera::ErrorKind k) {
  return k == chimera::ErrorKind::none ? "ok" : chimera::to_string(k);
}

struct Args {
  double minutes = 10;
  int agents = 256;
  double fault_rate = 0.05;
  int tokens = 8;
  int fault_after = 2;
  double think_ms = 500;
  double restart_s = 60;
  double warmup_s = -1;
  double watchdog_s = 10;
  int llama_parallel = 4;
  std::string label = "soak";
  std::string results = std::string(CHIMERA_SOURCE_DIR) + "/bench/results/soak.jsonl";
};

// Flat after warm-up: the last quarter of the samples after warm-up against the first quarter.
struct Trend {
  double first = 0, last = 0, max = 0;
  bool flat = true;
};
template <class Get>
Trend trend(const std::vector<Sample>& s, double warmup_s, Get get, double slack_ratio,
            double slack_abs, bool use_max) {
  std::vector<double> v;
  for (const auto& x : s) {
    if (x.t_s >= warmup_s) v.push_back(get(x));
  }
  Trend t;
  if (v.size() < 8) return t;
  const std::size_t q = v.size() / 4;
  auto summary = [&](std::size_t from, std::size_t to) {
    double acc = 0;
    for (std::size_t i = from; i < to; ++i) acc = use_max ? std::max(acc, v[i]) : acc + v[i];
    return use_max ? acc : acc / static_cast<double>(to - from);
  };
  t.first = summary(0, q);
  t.last = summary(v.size() - q, v.size());
  t.max = *std::max_element(v.begin(), v.end());
  t.flat = t.last <= t.first * (1 + slack_ratio) + slack_abs;
  return t;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  CLI::App app{"The fault soak: agents over failing servers, every request accounted for"};
  app.add_option("--minutes", a.minutes, "How long the agents run")->check(CLI::Range(0.1, 600.0));
  app.add_option("--agents", a.agents, "Agents at once")->check(CLI::Range(1, 10000));
  app.add_option("--fault-rate", a.fault_rate,
                 "Share of each synthetic server's requests that fault")
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--tokens", a.tokens, "Tokens per request")->check(CLI::Range(1, 1000));
  app.add_option("--fault-after", a.fault_after, "Server B's faults come after this many tokens")
      ->check(CLI::Range(1, 1000));
  app.add_option("--think-ms", a.think_ms, "Mean pause of an agent between two requests")
      ->check(CLI::Range(0.0, 60000.0));
  app.add_option("--restart-s", a.restart_s,
                 "Kill and restart the llama-server this often; 0: never")
      ->check(CLI::Range(0.0, 3600.0));
  app.add_option("--warmup-s", a.warmup_s,
                 "Samples before this are warm-up (default: a fifth of the run, at most 60 s)");
  app.add_option("--watchdog-s", a.watchdog_s, "Fail when no request completes for this long")
      ->check(CLI::Range(1.0, 600.0));
  app.add_option("--label", a.label, "Names the run in the results");
  app.add_option("--results", a.results, "Append the result (JSON line) here");
  CLI11_PARSE(app, argc, argv);
  const double run_s = a.minutes * 60;
  if (a.warmup_s < 0) a.warmup_s = std::min(60.0, run_s / 5);
  const chimera::bench::Provenance provenance(argc, argv);
  std::signal(SIGPIPE, SIG_IGN);

  // 1. The servers.
  const std::string rate = fmt::format("{}", a.fault_rate);
  SynthProcess synth_a("synth A", {"synth-server", "--port", "0", "--tokens-per-s", "100",
                                   "--fault", "mix:0", "--fault-rate", rate, "--seed", "1"});
  SynthProcess synth_b("synth B",
                       {"synth-server", "--port", "0", "--tokens-per-s", "100", "--fault",
                        fmt::format("mix:{}", a.fault_after), "--fault-rate", rate, "--seed", "2"});
  bool created = false;
  std::string model_error;
  const auto model = chimera::model::cached_tiny_model(created, model_error);
  if (model.empty()) {
    std::fprintf(stderr, "soak: cannot make the tiny model: %s\n", model_error.c_str());
    return 1;
  }
  chimera::ServerOptions llama_opts{.model = model.string(),
                                    .parallel = a.llama_parallel,
                                    .ctx = 512 * a.llama_parallel,
                                    .threads = 1};
  auto llama = std::make_unique<chimera::ServerProcess>(llama_opts);
  if (!llama->ok()) {
    std::fprintf(stderr, "soak: llama-server did not start: %s\n", llama->error().c_str());
    return 1;
  }
  llama_opts.port = llama->port();  // restarts come back on the same port
  const std::string llama_url = llama->url();

  // 2. The pool: every endpoint with tight timeouts, so that a stall costs seconds, not minutes.
  chimera::pool::PoolConfig pool;
  pool.name = "soak";
  pool.model = "synth";
  pool.health_interval_ms = 1'000;
  auto endpoint = [](const std::string& url, chimera::BackendKind kind, int limit) {
    chimera::pool::PoolEndpoint e;
    e.config.url = url;
    e.config.kind = kind;
    e.config.timeouts = {
        .connect_ms = 1'000, .first_token_ms = 3'000, .idle_ms = 2'000, .total_ms = 30'000};
    e.max_concurrency = limit;
    return e;
  };
  pool.endpoints = {endpoint(synth_a.url(), chimera::BackendKind::ollama, 0),
                    endpoint(synth_b.url(), chimera::BackendKind::openai, 0),
                    endpoint(llama_url, chimera::BackendKind::openai, a.llama_parallel)};

  // 3. The agents, on their own thread; this one samples, watches and restarts llama-server.
  Ledger ledger;
  std::atomic<int> restarts{0};
  const int64_t t0 = now_ns();
  const int64_t end_ns = t0 + static_cast<int64_t>(run_s * 1e9);
  ledger.last_done_ns = t0;
  auto account = [&](const chimera::Completion& c, const std::string& delivered) {
    const int64_t t = now_ns();
    const int64_t gap = t - ledger.last_done_ns.exchange(t);
    int64_t prev = ledger.max_gap_ns.load();
    while (gap > prev && !ledger.max_gap_ns.compare_exchange_weak(prev, gap)) {
    }
    ++ledger.completed;
    const std::string& where = c.endpoint.empty() ? std::string("(none)") : c.endpoint;
    if (delivered != c.text) {
      ledger.violation(fmt::format("{}: delivered {} bytes, completion holds {} ({})", where,
                                   delivered.size(), c.text.size(), c.error.message));
    }
    if (!c.ok() && c.error.message.empty()) {
      ledger.violation(fmt::format("{}: an error of kind {} without a message", where,
                                   outcome_name(c.error.kind)));
    }
    const bool from_llama = c.endpoint == llama_url;
    int tokens = 0;
    if (!from_llama && !c.endpoint.empty() && !synth_sequence(delivered, &tokens)) {
      ledger.violation(fmt::format("{}: tokens repeated or out of order: '{}'", where,
                                   delivered.substr(0, 200)));
    } else if (!from_llama && c.ok() && tokens != a.tokens) {
      ledger.violation(fmt::format("{}: ok with {} of {} tokens", where, tokens, a.tokens));
    }
    if (c.ok()) ++ledger.ok;
    std::lock_guard lock(ledger.mu);
    ++ledger.outcomes[where][outcome_name(c.error.kind)];
    // Served here after failing elsewhere first (the pool's retries before the first token).
    if (c.figures.attempts > 1)
      ++ledger.outcomes[where][c.ok() ? "ok_after_retry" : "failed_after_retry"];
    if (from_llama && c.ok()) ++ledger.llama_ok_by_epoch[restarts.load()];
  };

  chimera::Engine engine(
      {.pools = {pool}, .executor = chimera::ExecutorKind::single, .threads = 1});
  chimera::AgentRun agent_run;
  std::thread agents([&] {
    agent_run = engine.run(a.agents, [&](chimera::Agent& agent) -> chimera::Task<void> {
      std::mt19937 rng(static_cast<unsigned>(agent.id()) * 7919u + 1);
      std::uniform_real_distribution<double> pause(0, 2 * a.think_ms * 1e6);
      // Spread the starts over one pause so the agents do not move in lockstep.
      co_await agent.sleep_until(now_ns() + static_cast<int64_t>(pause(rng)));
      while (now_ns() < end_ns) {
        chimera::Request req;
        req.messages = {{.role = "user", .content = "Tell me about the harbour."}};
        req.options.num_predict = a.tokens;
        req.options.temperature = 0.8;
        std::string delivered;
        ++ledger.started;
        chimera::Completion c =
            co_await agent.generate("soak", req, [&delivered](const chimera::TokenEvent& t) {
              delivered.append(t.text);
              return true;
            });
        account(c, delivered);
        co_await agent.sleep_until(now_ns() + static_cast<int64_t>(pause(rng)));
      }
    });
  });

  std::vector<Sample> samples;
  bool watchdog_fired = false;
  int restart_failures = 0;
  std::string restart_error;
  int64_t next_restart = a.restart_s > 0 ? t0 + static_cast<int64_t>(a.restart_s * 1e9) : INT64_MAX;
  std::atomic<bool> agents_done{false};
  std::thread joiner([&] {
    agents.join();
    agents_done = true;
  });
  int64_t next_print = t0 + 10'000'000'000;
  while (!agents_done) {
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
    const int64_t t = now_ns();
    if (samples.empty() || t - t0 >= static_cast<int64_t>((samples.back().t_s + 1) * 1e9)) {
      samples.push_back({(t - t0) / 1e9, rss_mb(), open_fds(), ledger.completed.load()});
    }
    if (t - ledger.last_done_ns.load() > static_cast<int64_t>(a.watchdog_s * 1e9)) {
      watchdog_fired = true;
      std::fprintf(stderr,
                   "soak: WATCHDOG: no request completed for %.0f s (%lld started, %lld "
                   "completed)\n",
                   a.watchdog_s, static_cast<long long>(ledger.started.load()),
                   static_cast<long long>(ledger.completed.load()));
      break;
    }
    if (t >= next_restart && t < end_ns) {
      llama->kill();
      llama.reset();
      llama = std::make_unique<chimera::ServerProcess>(llama_opts);
      ++restarts;
      if (!llama->ok()) {
        ++restart_failures;
        restart_error = llama->error();
      }
      next_restart += static_cast<int64_t>(a.restart_s * 1e9);
    }
    if (t >= next_print) {
      std::fprintf(stderr,
                   "soak: %5.0f s  started %lld  completed %lld  ok %lld  rss %.1f MB  fds %d  "
                   "restarts %d\n",
                   (t - t0) / 1e9, static_cast<long long>(ledger.started.load()),
                   static_cast<long long>(ledger.completed.load()),
                   static_cast<long long>(ledger.ok.load()), samples.back().rss_mb,
                   samples.back().fds, restarts.load());
      next_print += 10'000'000'000;
    }
  }

  // 4. The verdict.
  const json::object stats_a = synth_a.stop();
  const json::object stats_b = synth_b.stop();
  llama.reset();
  const double drain_s = (now_ns() - end_ns) / 1e9;
  const Trend rss = trend(
      samples, a.warmup_s, [](const Sample& s) { return s.rss_mb; }, 0.10, 4.0, false);
  const Trend fds = trend(
      samples, a.warmup_s, [](const Sample& s) { return double(s.fds); }, 0.0, 32.0, true);
  const int64_t started = ledger.started.load();
  const int64_t completed = ledger.completed.load();
  const int64_t lost = started - completed;
  std::lock_guard lock(ledger.mu);
  // Every restart of llama-server must be followed by requests it served again.
  int epochs_without_service = 0;
  for (int e = 0; e <= restarts.load(); ++e) {
    if (ledger.llama_ok_by_epoch[e] == 0) ++epochs_without_service;
  }
  const bool passed = !watchdog_fired && lost == 0 && ledger.violation_count == 0 && rss.flat &&
                      fds.flat && restart_failures == 0 && epochs_without_service == 0 &&
                      agent_run.failed == 0;

  json::object outcomes;
  for (const auto& [where, counts] : ledger.outcomes) {
    json::object o;
    for (const auto& [k, n] : counts) o[k] = n;
    const std::string name = where == synth_a.url()   ? "synth_a (" + where + ")"
                             : where == synth_b.url() ? "synth_b (" + where + ")"
                             : where == llama_url     ? "llama_server (" + where + ")"
                                                      : where;
    outcomes[name] = std::move(o);
  }
  json::array by_epoch;
  for (const auto& [e, n] : ledger.llama_ok_by_epoch) by_epoch.push_back(n);
  auto faults_of = [](const json::object& stats) -> json::value {
    if (const auto* f = stats.if_contains("faults_injected")) return *f;
    return nullptr;
  };
  json::object rec{
      {"kind", "soak"},
      {"label", a.label},
      {"passed", passed},
      {"minutes", a.minutes},
      {"agents", a.agents},
      {"tokens_per_request", a.tokens},
      {"think_ms_mean", a.think_ms},
      {"fault_rate", a.fault_rate},
      {"faults",
       json::object{{"synth_a", "mix:0 (drop, stall, error, 503 before the first token)"},
                    {"synth_b", fmt::format("mix:{} (the same after {} tokens)", a.fault_after,
                                            a.fault_after)},
                    {"llama_server", fmt::format("SIGKILL and restart every {} s", a.restart_s)}}},
      {"requests", json::object{{"started", started},
                                {"completed", completed},
                                {"lost", lost},
                                {"ok", ledger.ok.load()},
                                {"failed", completed - ledger.ok.load()}}},
      {"violations", ledger.violation_count},
      {"violation_examples", json::value_from(ledger.violations)},
      {"outcomes_by_endpoint", std::move(outcomes)},
      {"faults_injected",
       json::object{{"synth_a", faults_of(stats_a)}, {"synth_b", faults_of(stats_b)}}},
      {"llama_restarts", restarts.load()},
      {"llama_restart_failures", restart_failures},
      {"llama_ok_per_restart_epoch", std::move(by_epoch)},
      {"watchdog_s", a.watchdog_s},
      {"watchdog_fired", watchdog_fired},
      {"max_gap_between_completions_ms", ledger.max_gap_ns.load() / 1e6},
      {"drain_s", drain_s},
      {"warmup_s", a.warmup_s},
      {"rss_mb", json::object{{"first_quarter_mean", rss.first},
                              {"last_quarter_mean", rss.last},
                              {"max", rss.max},
                              {"flat", rss.flat}}},
      {"open_fds", json::object{{"first_quarter_max", fds.first},
                                {"last_quarter_max", fds.last},
                                {"max", fds.max},
                                {"flat", fds.flat}}},
      {"samples", static_cast<int64_t>(samples.size())},
      {"agent_task_failures", agent_run.failed},
      {"provenance", provenance.stamp()}};
  if (!restart_error.empty()) rec["llama_restart_error"] = restart_error;
  {
    std::ofstream out(a.results, std::ios::app);
    out << json::serialize(rec) << '\n';
    if (!out) {
      std::fprintf(stderr, "soak: cannot append to %s\n", a.results.c_str());
      return 1;
    }
  }
  std::printf("%s\n", json::serialize(rec).c_str());
  std::fprintf(stderr,
               "soak %s: %s. %lld requests, %lld ok, %lld failed with an error, %lld lost, %lld "
               "violations; llama-server restarted %d times; rss %.1f -> %.1f MB; fds %g -> %g; "
               "longest gap %.0f ms\n",
               a.label.c_str(), passed ? "PASSED" : "FAILED", static_cast<long long>(started),
               static_cast<long long>(ledger.ok.load()),
               static_cast<long long>(completed - ledger.ok.load()), static_cast<long long>(lost),
               static_cast<long long>(ledger.violation_count), restarts.load(), rss.first, rss.last,
               fds.first, fds.last, ledger.max_gap_ns.load() / 1e6);
  if (watchdog_fired) std::_Exit(1);  // agents are stuck: do not wait for them
  joiner.join();
  return passed ? 0 : 1;
}
