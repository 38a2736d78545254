// `chimeraforge study`: the study's experiments (TR110-TR115, the white paper in ../shared/seed)
// re-run with one command, and study.md written beside them. docs/study-reproduction.md explains
// its output.
//
// Each experiment runs through the commands that measure it elsewhere (`multi`, `sweep`, the
// runtime ablation when it is built), started from this binary as child processes against
// servers started here: the synthetic server (exact timing: contention and TTFT rows), 1-slot
// llama-servers with the model (single and Dual topology rows), Ollama instances when given or
// when `ollama` is on PATH. Every figure is read back from what those commands wrote.
#include "commands.hpp"

#include <chimera/backends/server_process.hpp>
#include <chimera/model/synthetic_model.hpp>
#include <chimera/workflow/svg.hpp>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <fmt/chrono.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <thread>

namespace chimera::cli {

namespace {

namespace fs = std::filesystem;
namespace json = boost::json;
using Clock = std::chrono::steady_clock;

constexpr const char* kWho = "chimeraforge study";
constexpr double kAnomalyMs = 3000;    // the study's TTFT anomaly (TR110/TR114)
constexpr double kLineBudgetMs = 200;  // a banter line's first word (docs/banter.md budget_ms)

struct StudyArgs {
  std::string out = "out/study";
  std::string model;                // GGUF for llama-servers and the sweep
  std::vector<std::string> ollama;  // Ollama instances given
  std::string ollama_model;         // the model they serve
  std::string ablation;             // the ablation command (default: found in bench/ablation)
  std::string num_gpu;              // a num_gpu axis for the sweep ("60,80,999"), GPU builds
  int runs = 3;
  int requests = 5;  // calls per agent per run
  int tokens = 64;   // num_predict per call
  bool quick = false;
};

// ---------------------------------------------------------------------------------------------
// Numbers

struct Stat {
  std::vector<double> v;
  void add(const json::value* x) {
    if (x != nullptr && x->is_number()) v.push_back(x->to_number<double>());
  }
  bool empty() const { return v.empty(); }
  double mean() const {
    double s = 0;
    for (double x : v) s += x;
    return v.empty() ? 0 : s / static_cast<double>(v.size());
  }
  double sd() const {
    if (v.size() < 2) return 0;
    const double m = mean();
    double s = 0;
    for (double x : v) s += (x - m) * (x - m);
    return std::sqrt(s / static_cast<double>(v.size() - 1));
  }
  json::value to_json() const {
    if (v.empty()) return nullptr;
    json::array a;
    for (double x : v) a.emplace_back(x);
    return json::object{{"mean", mean()}, {"sd", sd()}, {"n", v.size()}, {"values", a}};
  }
};

std::string num(double x) {
  const double a = std::fabs(x);
  if (a >= 1000) return fmt::format("{:.0f}", x);
  if (a >= 100) return fmt::format("{:.1f}", x);
  if (a >= 10) return fmt::format("{:.2f}", x);
  return fmt::format("{:.3f}", x);
}

// "12.3 ± 0.40 ms (n=3)", or the reason it was not measured.
std::string cell(const Stat& s, std::string_view unit, double scale = 1,
                 std::string_view why = "not measured") {
  if (s.empty()) return std::string(why);
  return fmt::format("{} ± {}{}{} (n={})", num(s.mean() * scale), num(s.sd() * scale),
                     unit.empty() ? "" : " ", unit, s.v.size());
}

// ---------------------------------------------------------------------------------------------
// Child processes

struct Child {
  int rc = -1;
  std::string out;
  std::string err;
  double seconds = 0;
};

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string tail(const std::string& s, std::size_t n = 600) {
  std::string t = s.size() > n ? "..." + s.substr(s.size() - n) : s;
  while (!t.empty() && (t.back() == '\n' || t.back() == ' ')) t.pop_back();
  for (auto& c : t) {
    if (c == '\n' || c == '|') c = ' ';
  }
  return t;
}

// Runs argv (argv[0] a path) with stdout and stderr into files under `logs` named `tag`,
// killed after `timeout_s`.
Child run_child(const std::vector<std::string>& args, const fs::path& logs, const std::string& tag,
                int timeout_s) {
  Child c;
  const fs::path out = logs / (tag + ".out");
  const fs::path err = logs / (tag + ".err");
  std::vector<std::string> copy = args;
  std::vector<char*> argv;
  for (auto& a : copy) argv.push_back(a.data());
  argv.push_back(nullptr);
  const std::string out_s = out.string();
  const std::string err_s = err.string();
  const auto t0 = Clock::now();
  const pid_t pid = ::fork();
  if (pid == 0) {
    const int o = ::open(out_s.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const int e = ::open(err_s.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const int in = ::open("/dev/null", O_RDONLY);
    if (o >= 0) ::dup2(o, 1);
    if (e >= 0) ::dup2(e, 2);
    if (in >= 0) ::dup2(in, 0);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  if (pid < 0) {
    c.err = "fork failed";
    return c;
  }
  int status = 0;
  for (;;) {
    const pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) break;
    if (Clock::now() - t0 > std::chrono::seconds(timeout_s)) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      c.err = fmt::format("did not finish within {} s; ", timeout_s);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  c.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  c.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  c.out = slurp(out);
  c.err += slurp(err);
  return c;
}

std::string self_exe() {
  std::error_code ec;
  const auto p = fs::read_symlink("/proc/self/exe", ec);
  return ec ? std::string("chimeraforge") : p.string();
}

std::string find_on_path(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path != nullptr ? path : "");
  for (std::string dir; std::getline(dirs, dir, ':');) {
    const fs::path c = fs::path(dir.empty() ? "." : dir) / name;
    std::error_code ec;
    if (fs::is_regular_file(c, ec) && ::access(c.c_str(), X_OK) == 0) return c.string();
  }
  return {};
}

// ---------------------------------------------------------------------------------------------
// Progress: one line per step on stderr, with the time spent and an estimate of the time left
// from the plan's weights, scaled by how fast the finished steps went.

class Progress {
 public:
  explicit Progress(std::vector<std::pair<std::string, double>> plan) : plan_(std::move(plan)) {}
  void step(std::size_t i, std::string_view detail = {}) {
    const double elapsed = std::chrono::duration<double>(Clock::now() - t0_).count();
    double done = 0, left = 0;
    for (std::size_t k = 0; k < plan_.size(); ++k) (k < i ? done : left) += plan_[k].second;
    const double scale = done > 0 && elapsed > 1 ? elapsed / done : 1.0;
    fmt::print(stderr, "[study {}/{}] {}{}{} ({:.0f} s so far, about {:.0f} s left)\n", i + 1,
               plan_.size(), plan_[i].first, detail.empty() ? "" : ": ", detail, elapsed,
               left * scale);
  }
  void note(std::string_view text) { fmt::print(stderr, "  {}\n", text); }
  double elapsed() const { return std::chrono::duration<double>(Clock::now() - t0_).count(); }

 private:
  std::vector<std::pair<std::string, double>> plan_;
  Clock::time_point t0_ = Clock::now();
};

// ---------------------------------------------------------------------------------------------
// Runs of `multi`

struct MultiRuns {
  std::map<std::string, Stat> figures;  // the figures of multi --json, over the runs
  Stat anomaly_runs;                    // 1 when a request of the run exceeded kAnomalyMs
  Stat budget_runs;                     // 1 when one exceeded kLineBudgetMs
  int64_t requests = 0, over_anomaly = 0, over_budget = 0, errors = 0;
  int runs_ok = 0, runs = 0;
  std::string first_error;
};

// The TTFT of every request of a records file (a failed request counts with the time it ran).
std::vector<double> record_ttfts(const fs::path& records, int64_t& errors) {
  std::vector<double> out;
  std::ifstream in(records);
  for (std::string line; std::getline(in, line);) {
    boost::system::error_code ec;
    const auto v = json::parse(line, ec);
    const auto* o = ec ? nullptr : v.if_object();
    if (o == nullptr || !o->contains("t_send_ns")) continue;
    const auto t0 = o->at("t_send_ns").to_number<int64_t>();
    const auto* first = o->if_contains("t_first_token_ns");
    if (first != nullptr && first->is_number()) {
      out.push_back(static_cast<double>(first->to_number<int64_t>() - t0) / 1e6);
    } else {
      ++errors;
      out.push_back(static_cast<double>(o->at("t_done_ns").to_number<int64_t>() - t0) / 1e6);
    }
  }
  return out;
}

const char* kMultiFigures[] = {"decode_tps_client",    "ttft_client_p50_ms", "ttft_client_p99_ms",
                               "overhead_ttft_p50_ms", "e2e_p50_ms",         "rss_peak",
                               "system_tps",           "efficiency",         "scaling",
                               "contention",           "stall_rate",         "balance",
                               "delivery_lag_p99_ms",  "itl_p50_ms"};

MultiRuns run_multi_runs(const StudyArgs& a, const std::string& self, const fs::path& logs,
                         const std::string& tag, std::vector<std::string> endpoint_args, int agents,
                         bool calibrate, Progress& progress) {
  MultiRuns m;
  for (int run = 1; run <= a.runs; ++run) {
    const fs::path records = logs / fmt::format("{}-run{}.jsonl", tag, run);
    std::vector<std::string> args = {self,
                                     "multi",
                                     "--agents",
                                     std::to_string(agents),
                                     "--requests-per-agent",
                                     std::to_string(a.requests),
                                     "--max-tokens",
                                     std::to_string(a.tokens),
                                     "--records",
                                     records.string(),
                                     "--json",
                                     "--quiet"};
    if (calibrate) args.emplace_back("--record-lags");
    if (!calibrate) args.emplace_back("--no-calibrate");
    args.insert(args.end(), endpoint_args.begin(), endpoint_args.end());
    const Child c = run_child(args, logs, fmt::format("{}-run{}", tag, run), 300);
    ++m.runs;
    boost::system::error_code ec;
    const auto v = json::parse(c.out, ec);
    const auto* o = ec ? nullptr : v.if_object();
    if (c.rc != 0 || o == nullptr) {
      const std::string why = tail(c.err.empty() ? c.out : c.err);
      if (m.first_error.empty()) {
        m.first_error =
            fmt::format("`multi` exited {}: {}", c.rc, why.empty() ? "(no output)" : why);
      }
      progress.note(fmt::format("{} run {}/{}: failed ({})", tag, run, a.runs, tail(why, 200)));
      continue;
    }
    ++m.runs_ok;
    for (const char* f : kMultiFigures) m.figures[f].add(o->if_contains(f));
    int64_t errors = 0;
    const auto ttfts = record_ttfts(records, errors);
    m.errors += errors;
    int64_t over_a = 0, over_b = 0;
    for (double t : ttfts) {
      over_a += t > kAnomalyMs ? 1 : 0;
      over_b += t > kLineBudgetMs ? 1 : 0;
    }
    m.requests += static_cast<int64_t>(ttfts.size());
    m.over_anomaly += over_a;
    m.over_budget += over_b;
    m.anomaly_runs.v.push_back(over_a > 0 ? 1 : 0);
    m.budget_runs.v.push_back(over_b > 0 ? 1 : 0);
    progress.note(fmt::format(
        "{} run {}/{}: ttft p50 {} ms, {} tokens/s system, {:.1f} s", tag, run, a.runs,
        num(o->if_contains("ttft_client_p50_ms") ? o->at("ttft_client_p50_ms").to_number<double>()
                                                 : 0),
        num(o->if_contains("system_tps") ? o->at("system_tps").to_number<double>() : 0),
        c.seconds));
  }
  return m;
}

std::string runs_share(const Stat& s) {
  if (s.empty()) return "not measured";
  int k = 0;
  for (double x : s.v) k += x > 0 ? 1 : 0;
  return fmt::format("{:.1f}% ({} of {} runs)", 100.0 * k / static_cast<double>(s.v.size()), k,
                     s.v.size());
}

std::string requests_share(int64_t k, int64_t n) {
  if (n == 0) return "not measured";
  return fmt::format("{:.2f}% ({} of {} requests)",
                     100.0 * static_cast<double>(k) / static_cast<double>(n), k, n);
}

json::object multi_json(const MultiRuns& m) {
  json::object figures;
  for (const auto& [k, s] : m.figures) figures[k] = s.to_json();
  return json::object{{"runs", m.runs},
                      {"runs_ok", m.runs_ok},
                      {"requests", m.requests},
                      {"errors", m.errors},
                      {"figures", std::move(figures)},
                      {"ttft_over_3s_requests", m.over_anomaly},
                      {"ttft_over_budget_requests", m.over_budget},
                      {"runs_with_ttft_over_3s", m.anomaly_runs.to_json()},
                      {"runs_with_ttft_over_budget", m.budget_runs.to_json()},
                      {"first_error", m.first_error}};
}

const Stat& fig(const MultiRuns& m, const std::string& name) {
  static const Stat none;
  const auto it = m.figures.find(name);
  return it == m.figures.end() ? none : it->second;
}

// A figure of a run set, or why it is missing (the run set's failure, or `why`).
std::string mcell(const MultiRuns& m, const std::string& name, std::string_view unit,
                  double scale = 1, std::string_view why = "not measured") {
  if (m.runs_ok == 0) {
    return fmt::format("not measurable here: {}",
                       m.first_error.empty() ? std::string(why) : m.first_error);
  }
  return cell(fig(m, name), unit, scale, why);
}

// ---------------------------------------------------------------------------------------------
// Markdown

struct Table {
  std::vector<std::string> head;
  std::vector<std::vector<std::string>> rows;
  std::string md() const {
    std::string s = "| " + fmt::format("{}", fmt::join(head, " | ")) + " |\n|";
    for (std::size_t i = 0; i < head.size(); ++i) s += " --- |";
    s += "\n";
    for (const auto& r : rows) {
      std::vector<std::string> cells = r;
      for (auto& c : cells) {
        if (c.empty()) c = "not measured";
      }
      s += "| " + fmt::format("{}", fmt::join(cells, " | ")) + " |\n";
    }
    return s;
  }
};

// ---------------------------------------------------------------------------------------------
// The run

struct Servers {
  std::unique_ptr<ServerProcess> synth;
  std::vector<std::unique_ptr<ServerProcess>> llama;   // 1-slot llama-servers
  std::vector<std::unique_ptr<ServerProcess>> ollama;  // instances we started
  std::string synth_error, llama_error, ollama_why;
  std::vector<std::string> ollama_urls;
};

std::string model_path(const StudyArgs& a, std::string& error) {
  if (!a.model.empty()) {
    if (!fs::exists(a.model)) error = fmt::format("--model '{}': no such file", a.model);
    return a.model;
  }
  bool created = false;
  const fs::path p = model::cached_tiny_model(created, error);
  return p.string();
}

void start_servers(const StudyArgs& a, const std::string& self, const std::string& model,
                   const fs::path& logs, Servers& s, Progress& progress) {
  {
    ServerOptions o;
    o.port = free_loopback_port();
    o.command = {self,
                 "synth-server",
                 "--port",
                 std::to_string(o.port),
                 "--ttft-ms",
                 "10",
                 "--tokens-per-s",
                 "200",
                 "--tokens",
                 std::to_string(a.tokens)};
    o.ready_path = "/health";
    o.name = "synth-server";
    o.ready_timeout_ms = 30'000;
    s.synth = std::make_unique<ServerProcess>(std::move(o));
    if (!s.synth->ok()) s.synth_error = tail(s.synth->error());
  }
  for (int i = 0; i < 2; ++i) {
    ServerOptions o;
    o.model = model;
    o.parallel = 1;
    o.ctx = 1024;
    o.threads = 1;
    o.extra = {"--no-warmup", "--cache-ram", "0"};
    o.wait_until_ready = false;
    o.ready_timeout_ms = 120'000;
    s.llama.push_back(std::make_unique<ServerProcess>(std::move(o)));
  }
  for (auto& l : s.llama) {
    while (!l->poll_ready()) std::this_thread::sleep_for(std::chrono::milliseconds(25));
    if (!l->ok() && s.llama_error.empty()) s.llama_error = "llama-server: " + tail(l->error());
  }
  // One call each, not measured: the first request of a server started with --no-warmup pays
  // for its first graph, which would land on whichever experiment came first.
  for (std::size_t i = 0; s.llama_error.empty() && i < s.llama.size(); ++i) {
    (void)run_child({self, "multi", "--agents", "1", "--endpoint", s.llama[i]->url(), "--backend",
                     "openai", "--max-tokens", "8", "--no-calibrate", "--quiet"},
                    logs, fmt::format("warm-up-{}", i + 1), 120);
  }
  // Ollama: the instances given, else two started from PATH when a model is named.
  if (!a.ollama.empty()) {
    s.ollama_urls = a.ollama;
  } else if (const std::string bin = find_on_path("ollama"); bin.empty()) {
    s.ollama_why =
        "no `ollama` on PATH and no --ollama URL given (Ollama cannot be installed on this "
        "machine)";
  } else if (a.ollama_model.empty()) {
    s.ollama_why = "`ollama` is on PATH but no --ollama-model names a model it has";
  } else {
    for (int i = 0; i < 2; ++i) {
      ServerOptions o;
      o.port = free_loopback_port();
      o.command = {bin, "serve"};
      o.env = {fmt::format("OLLAMA_HOST=127.0.0.1:{}", o.port), "OLLAMA_NUM_PARALLEL=1"};
      o.ready_path = "/api/version";
      o.name = "ollama";
      o.wait_until_ready = true;
      s.ollama.push_back(std::make_unique<ServerProcess>(std::move(o)));
      if (!s.ollama.back()->ok()) {
        s.ollama_why = "ollama serve: " + tail(s.ollama.back()->error());
        break;
      }
      s.ollama_urls.push_back(s.ollama.back()->url());
    }
    if (!s.ollama_why.empty()) s.ollama_urls.clear();
  }
  progress.note(fmt::format(
      "servers: synthetic {}, llama-servers {}, Ollama {}",
      s.synth_error.empty() ? s.synth->url() : "FAILED: " + s.synth_error,
      s.llama_error.empty() ? s.llama[0]->url() + " " + s.llama[1]->url()
                            : "FAILED: " + s.llama_error,
      s.ollama_urls.empty() ? s.ollama_why : fmt::format("{}", fmt::join(s.ollama_urls, " "))));
}

// The ablation command: --ablation, else bench/ablation's entry point under the working folder.
std::vector<std::string> ablation_command(const StudyArgs& a, std::string& why) {
  if (!a.ablation.empty()) return {"/bin/sh", "-c", a.ablation + " \"$@\"", "ablation"};
  for (const char* p : {"bench/ablation/ablation.py", "bench/ablation/run.sh"}) {
    if (fs::exists(p)) {
      if (std::string_view(p).ends_with(".py")) return {"/usr/bin/python3", fs::absolute(p)};
      return {"/bin/sh", fs::absolute(p)};
    }
  }
  why =
      "the runtime ablation command (bench/ablation, docs/ablation.md) is not in this tree; give "
      "it with --ablation CMD";
  return {};
}

// The table of ablation.json (docs/ablation.md): one row per variant, its figures over the
// repetitions (fractions shown in percent), or why it did not run.
std::string pct(const json::value* f) {
  const auto* o = f != nullptr ? f->if_object() : nullptr;
  if (o == nullptr || !o->contains("mean") || !o->at("mean").is_number()) return {};
  const auto get = [&](const char* k) {
    const auto* v = o->if_contains(k);
    return v != nullptr && v->is_number() ? std::optional<double>(v->to_number<double>())
                                          : std::nullopt;
  };
  std::string t = fmt::format("{}%", num(*get("mean") * 100));
  if (const auto sd = get("sd")) t += fmt::format(" ± {} pp", num(*sd * 100));
  if (const auto lo = get("min"), hi = get("max"); lo && hi) {
    t += fmt::format(" ({}-{}%)", num(*lo * 100), num(*hi * 100));
  }
  return t;
}

Table ablation_table(const json::value& doc) {
  Table t{{"variant", "runtime", "client", "efficiency", "contention", "scaling", "stall_rate", "n",
           "the study (TR115)"},
          {}};
  const auto* o = doc.if_object();
  const auto* variants = o != nullptr ? o->if_contains("variants") : nullptr;
  if (variants == nullptr || !variants->is_array()) return t;
  const auto str = [](const json::object& v, const char* k) {
    const auto* x = v.if_contains(k);
    return x != nullptr && x->is_string() ? tail(std::string(x->get_string()), 300) : std::string();
  };
  for (const auto& e : variants->get_array()) {
    const auto* v = e.if_object();
    if (v == nullptr) continue;
    const auto* figs = v->if_contains("figures");
    const auto* fo = figs != nullptr ? figs->if_object() : nullptr;
    const auto fig = [&](const char* k) { return fo != nullptr ? pct(fo->if_contains(k)) : ""; };
    const std::string status = str(*v, "status");
    const std::string reason = str(*v, "reason");
    const std::string why = "not measurable here: " + (reason.empty() ? status : reason);
    std::string study = "no figure in the study";
    if (const auto* sv = v->if_contains("study"); sv != nullptr && sv->is_object()) {
      const auto& so = sv->get_object();
      const auto* eff = so.if_contains("efficiency");
      study = eff != nullptr && eff->is_number()
                  ? fmt::format("{}%; {}", num(eff->to_number<double>() * 100), str(so, "verdict"))
                  : str(so, "verdict");
      if (study.empty()) study = "no figure in the study";
    }
    const std::string e_ = fig("efficiency");
    const auto* n = fo != nullptr ? fo->if_contains("efficiency") : nullptr;
    std::string n_text = why;
    if (n != nullptr && n->is_object() && n->get_object().contains("n")) {
      n_text = json::serialize(n->get_object().at("n"));
    }
    t.rows.push_back({str(*v, "name"), str(*v, "runtime"), str(*v, "client"), e_.empty() ? why : e_,
                      fig("contention").empty() ? why : fig("contention"),
                      fig("scaling").empty() ? why : fig("scaling"),
                      fig("stall_rate").empty() ? why : fig("stall_rate"), n_text, study});
  }
  return t;
}

int run_study(const StudyArgs& in) {
  StudyArgs a = in;
  if (a.quick) {
    a.runs = std::min(a.runs, 1);
    a.requests = std::min(a.requests, 2);
    a.tokens = std::min(a.tokens, 16);
  }
  if (a.runs < 1 || a.runs > 100 || a.requests < 1 || a.tokens < 1) {
    fmt::print(stderr, "{}: --runs must be 1 to 100, --requests and --tokens at least 1\n", kWho);
    return kUsage;
  }
  if (a.ollama.size() == 1) {
    fmt::print(stderr,
               "{}: --ollama was given once; the Dual topology needs two instances (give "
               "--ollama twice)\n",
               kWho);
    return kUsage;
  }
  if (!a.ollama.empty() && a.ollama_model.empty()) {
    fmt::print(stderr, "{}: --ollama needs --ollama-model NAME (a model the instances have)\n",
               kWho);
    return kUsage;
  }
  std::string error;
  const std::string model = model_path(a, error);
  if (!error.empty()) {
    fmt::print(stderr, "{}: {}\n", kWho, error);
    return a.model.empty() ? kFailed : kUsage;
  }
  const fs::path out = a.out;
  const fs::path logs = out / "logs";
  std::error_code ec;
  fs::create_directories(logs, ec);
  if (ec) {
    fmt::print(stderr, "{}: cannot create '{}': {}\n", kWho, logs.string(), ec.message());
    return kFailed;
  }
  const std::string self = self_exe();
  const double r = a.runs;
  Progress progress({{"start the servers", 3},
                     {"single agent (TR112)", 4 * r + 2},
                     {"two concurrent agents (TR110/TR114)", 5 * r},
                     {"Dual Ollama topology (TR110/TR114)", 6 * r},
                     {"runtime ablation (TR115)", 20 * r},
                     {"parameter sweep (TR111)", 6 * r},
                     {"write study.md", 1}});
  fmt::print(stderr,
             "{}: {} run(s) of each experiment, {} calls per agent, {} tokens per call; "
             "model {}; output in {}\n",
             kWho, a.runs, a.requests, a.tokens, model, out.string());

  progress.step(0);
  Servers sv;
  start_servers(a, self, model, logs, sv, progress);
  const bool synth_ok = sv.synth_error.empty();
  const bool llama_ok = sv.llama_error.empty();
  const std::string synth_why = "the synthetic server did not start: " + sv.synth_error;
  const std::string llama_why = "the llama-servers did not start: " + sv.llama_error;
  const auto on = [](const std::string& url, const char* backend) {
    std::vector<std::string> v{"--endpoint", url, "--backend", backend};
    if (std::string_view(backend) == "ollama") v.insert(v.end(), {"--model", "synth"});
    return v;
  };
  MultiRuns failed_synth, failed_llama, failed_ollama;
  failed_synth.first_error = synth_why;
  failed_llama.first_error = llama_why;
  failed_ollama.first_error = sv.ollama_why;

  // 1. Single agent.
  progress.step(1);
  MultiRuns single_synth = synth_ok
                               ? run_multi_runs(a, self, logs, "single-synth",
                                                on(sv.synth->url(), "ollama"), 1, false, progress)
                               : failed_synth;
  MultiRuns single_llama =
      llama_ok ? run_multi_runs(a, self, logs, "single-llama", on(sv.llama[0]->url(), "openai"), 1,
                                false, progress)
               : failed_llama;
  MultiRuns single_ollama = failed_ollama;
  if (!sv.ollama_urls.empty()) {
    std::vector<std::string> args = {"--endpoint", sv.ollama_urls[0], "--backend",
                                     "ollama",     "--model",         a.ollama_model};
    single_ollama = run_multi_runs(a, self, logs, "single-ollama", args, 1, false, progress);
  }
  Stat startup;  // spawn to exit of `chimeraforge --version`
  for (int i = 0; i < std::max(3, a.runs); ++i) {
    const Child c = run_child({self, "--version"}, logs, "startup", 30);
    if (c.rc == 0) startup.v.push_back(c.seconds * 1000);
  }

  // 2. Two concurrent agents on the synthetic server (exact pacing: what the client loses).
  progress.step(2);
  MultiRuns two_synth = synth_ok ? run_multi_runs(a, self, logs, "two-synth",
                                                  on(sv.synth->url(), "ollama"), 2, true, progress)
                                 : failed_synth;

  // 3. Topology: two agents on one 1-slot server (shared) or one server each (dual).
  progress.step(3);
  MultiRuns shared_llama = failed_llama, dual_llama = failed_llama;
  if (llama_ok) {
    shared_llama = run_multi_runs(a, self, logs, "shared-llama", on(sv.llama[0]->url(), "openai"),
                                  2, false, progress);
    auto dual = on(sv.llama[0]->url(), "openai");
    dual.insert(dual.end(), {"--endpoint", sv.llama[1]->url(), "--max-concurrency", "1"});
    dual_llama = run_multi_runs(a, self, logs, "dual-llama", dual, 2, false, progress);
  }
  MultiRuns shared_ollama = failed_ollama, dual_ollama = failed_ollama;
  if (!sv.ollama_urls.empty()) {
    std::vector<std::string> shared = {"--endpoint", sv.ollama_urls[0], "--backend",
                                       "ollama",     "--model",         a.ollama_model};
    shared_ollama = run_multi_runs(a, self, logs, "shared-ollama", shared, 2, false, progress);
    auto dual = shared;
    dual.insert(dual.end(), {"--endpoint", sv.ollama_urls[1], "--max-concurrency", "1"});
    dual_ollama = run_multi_runs(a, self, logs, "dual-ollama", dual, 2, false, progress);
  }

  // 4. The runtime ablation.
  progress.step(4);
  std::string ablation_why;
  json::value ablation_doc;
  Table ablation_rows;
  double ablation_s = 0;
  {
    auto cmd = ablation_command(a, ablation_why);
    if (!cmd.empty() && !synth_ok) ablation_why = synth_why;
    if (!cmd.empty() && synth_ok) {
      const fs::path dir = out / "ablation";
      cmd.insert(cmd.end(), {"--runs", std::to_string(a.runs), "--agents", "2", "--out",
                             dir.string(), "--synth-url", sv.synth->url(), "--cli", self});
      const Child c = run_child(cmd, logs, "ablation", 600);
      ablation_s = c.seconds;
      boost::system::error_code jec;
      // Exit 1: some variant could not run; its row says why (docs/ablation.md).
      const bool wrote = (c.rc == 0 || c.rc == 1) && fs::exists(dir / "ablation.json");
      if (wrote) ablation_doc = json::parse(slurp(dir / "ablation.json"), jec);
      if (!wrote || jec) {
        const std::string why = tail(c.err.empty() ? c.out : c.err);
        ablation_why = fmt::format("the ablation command exited {}{}", c.rc,
                                   why.empty() ? " with no output" : ": " + why);
      } else {
        ablation_rows = ablation_table(ablation_doc);
        if (ablation_rows.rows.empty()) {
          ablation_why = "ablation.json holds no rows this command can read";
        }
      }
      progress.note(ablation_why.empty() ? fmt::format("ablation: {:.1f} s", ablation_s)
                                         : "ablation: " + ablation_why);
    }
  }

  // 5. The sweep, in-process (the model reloaded per context size).
  progress.step(5);
  const bool gpu = !a.num_gpu.empty();
  std::vector<std::string> sweep_args = {self,           "sweep",
                                         "--backend",    "llama",
                                         "--model",      model,
                                         "--grid",       "num_ctx=256,512",
                                         "--runs",       std::to_string(a.runs),
                                         "--max-tokens", std::to_string(std::min(a.tokens, 32)),
                                         "--out",        (out / "sweep").string()};
  if (!a.quick) sweep_args.insert(sweep_args.end(), {"--grid", "temperature=0.6,0.8"});
  if (gpu) sweep_args.insert(sweep_args.end(), {"--grid", "num_gpu=" + a.num_gpu});
  fs::remove_all(out / "sweep", ec);
  const Child sweep_child = run_child(sweep_args, logs, "sweep", 600);
  json::value sweep_doc;
  std::string sweep_why;
  {
    boost::system::error_code jec;
    if (sweep_child.rc == 0) sweep_doc = json::parse(slurp(out / "sweep" / "sweep.json"), jec);
    if (sweep_child.rc != 0 || jec || !sweep_doc.is_object()) {
      sweep_why = fmt::format("`sweep` exited {}: {}", sweep_child.rc, tail(sweep_child.err));
    }
  }
  progress.note(sweep_why.empty() ? fmt::format("sweep: {:.1f} s", sweep_child.seconds)
                                  : "sweep: " + sweep_why);

  // ---- study.md
  progress.step(6);
  std::string md;
  const std::string when = fmt::format("{:%Y-%m-%d %H:%M:%S} UTC", fmt::gmtime(std::time(nullptr)));
  double load[3] = {0, 0, 0};
  (void)::getloadavg(load, 3);
  md += fmt::format(
      "# The study re-run: {}\n\n"
      "Written by `chimeraforge study` ({} runs of each experiment, {} calls per agent, {} "
      "tokens per call{}). Model: `{}`. Load average at the end {:.2f} (this machine is shared: "
      "absolute times are noisy). The study's figures are quoted from its white paper "
      "(`../shared/seed/000_e50ba627883fb695.txt`) and its reports TR110-TR115 with their "
      "source; ours are measured now by this run, mean ± sample sd over the runs (n). "
      "`docs/study-reproduction.md` explains every row. Every cell is filled: a figure, or "
      "\"not measurable here\" with the reason.\n\n"
      "Servers: the synthetic server (Ollama's protocol, first token after 10 ms, 200 tokens/s "
      "per stream: a client can only lose time against it), two llama-servers with 1 slot and "
      "1 thread each, and Ollama: {}.\n\n",
      when, a.runs, a.requests, a.tokens, a.quick ? ", --quick" : "", model, load[0],
      sv.ollama_urls.empty()
          ? "not measurable here: " + sv.ollama_why
          : fmt::format("{} ({})", fmt::join(sv.ollama_urls, ", "), a.ollama_model));

  // Table 1
  {
    Table t{{"row", "the study's definition", "study: Python", "study: Rust", "source",
             "our definition", "ours: synthetic server", "ours: llama-server", "ours: Ollama"},
            {}};
    const std::string why_ollama = "not measurable here: " + sv.ollama_why;
    auto ol = [&](const std::string& f, std::string_view unit, double scale = 1) {
      return sv.ollama_urls.empty() ? why_ollama : mcell(single_ollama, f, unit, scale);
    };
    t.rows.push_back({"throughput", "`tokens / eval_duration` reported by Ollama", "~99 tok/s",
                      "114.5 tok/s", "TR112 v2 (white paper 4.1)",
                      "`decode_tps_client`: tokens ÷ (last token − first token) at the client",
                      mcell(single_synth, "decode_tps_client", "tok/s"),
                      mcell(single_llama, "decode_tps_client", "tok/s"),
                      ol("decode_tps_client", "tok/s")});
    t.rows.push_back({"TTFT", "request start to first token at the client (warm in the paper)",
                      "~200 ms", "84 ms", "TR112 v2 (white paper 4.1)",
                      "`ttft_client` p50: send to first token at the client",
                      mcell(single_synth, "ttft_client_p50_ms", "ms"),
                      mcell(single_llama, "ttft_client_p50_ms", "ms"),
                      ol("ttft_client_p50_ms", "ms")});
    t.rows.push_back({"client's share of TTFT", "not defined by the study", "not reported",
                      "not reported", "—",
                      "`overhead_ttft` p50: first token at the client − the server's send time",
                      mcell(single_synth, "overhead_ttft_p50_ms", "ms"),
                      "not measurable here: llama-server does not send its send time",
                      sv.ollama_urls.empty() ? why_ollama
                                             : "not measurable here: Ollama does not send its "
                                               "send time"});
    t.rows.push_back({"memory", "process memory (estimated)", "~300 MB", "~100 MB",
                      "TR112 v2 (white paper 4.1)",
                      "`rss_peak`: VmHWM of the `multi` process after the run",
                      mcell(single_synth, "rss_peak", "MB", 1e-6),
                      mcell(single_llama, "rss_peak", "MB", 1e-6), ol("rss_peak", "MB", 1e-6)});
    t.rows.push_back({"startup", "process initialization (no method given)", "~1.50 s", "~0.25 s",
                      "TR112 v2 (white paper 4.1)",
                      "spawn to exit of `chimeraforge --version` (no server involved)",
                      cell(startup, "ms"), "the same figure: no server is involved",
                      "the same figure: no server is involved"});
    md += "## 1. Single agent (TR112)\n\n" + t.md() +
          "\nThe study's columns are two programs (Python, Rust); ours is one program "
          "(chimeraforge) against three servers. Earlier measurements of the Python and Rust "
          "peers beside chimeraforge (`bench/compare`, 2026-11-27, not re-run here): "
          "`docs/study-reproduction.md`, \"Earlier measurements\" (client overhead on the first "
          "token 0.14 ms chimeraforge, 0.23 ms Rust, 0.79 ms Python; peak memory 9.3, 4.9 and "
          "38.6 MB; start-up 13.9, 9.3 and 343 ms).\n\n";
  }
  // Table 2
  {
    Table t{{"row", "the study's definition", "study: Python (TR110)", "study: Rust (TR114 v2)",
             "our definition", "ours: 2 agents, synthetic server"},
            {}};
    t.rows.push_back({"parallel efficiency", "`speedup / 2` (how evenly two agents finish)",
                      "95.8% mean", "98.28% mean, 99.40% best config",
                      "`balance`: Σ agent durations ÷ (N × longest)",
                      mcell(two_synth, "balance", "%", 100)});
    t.rows.push_back(
        {"(the same, as throughput)", "—", "not reported", "not reported",
         std::string("`scaling`: system_tps(2) ÷ (2 × a lone agent's); `efficiency`: "
                     "system_tps ÷ (N × lone decode_tps_client)"),
         fmt::format("scaling {}; efficiency {}", mcell(two_synth, "scaling", "%", 100),
                     mcell(two_synth, "efficiency", "%", 100))});
    t.rows.push_back({"contention (the study's)", "share of runs with a TTFT anomaly over 3 s",
                      "~10-15%", "0.74% (1 of 135 runs)",
                      "share of runs with a request whose TTFT exceeded 3 s (and of requests)",
                      two_synth.runs_ok == 0
                          ? "not measurable here: " + two_synth.first_error
                          : runs_share(two_synth.anomaly_runs) + "; " +
                                requests_share(two_synth.over_anomaly, two_synth.requests)});
    t.rows.push_back(
        {"TTFT over the line budget", "not defined by the study", "not reported", "not reported",
         std::string("share of runs (and requests) whose TTFT exceeded a banter line's 200 ms "
                     "budget"),
         two_synth.runs_ok == 0 ? "not measurable here: " + two_synth.first_error
                                : runs_share(two_synth.budget_runs) + "; " +
                                      requests_share(two_synth.over_budget, two_synth.requests)});
    t.rows.push_back(
        {"contention (ours)",
         std::string("time waiting for the scheduler rather than I/O "
                     "(white paper 4.2's wording; no formula given)"),
         "10-15%", "0.74%",
         std::string("`contention`: Σ (delivery lag − a lone agent's floor) ÷ Σ request time; "
                     "`stall_rate`: chunks later than 1 ms"),
         fmt::format("contention {}; stall_rate {}", mcell(two_synth, "contention", "%", 100),
                     mcell(two_synth, "stall_rate", "%", 100))});
    t.rows.push_back({"per-agent throughput", "tokens/s per agent in the concurrent run",
                      "~40-45 tok/s", "40-44 tok/s", "`system_tps` ÷ 2 (server paces 200/s)",
                      mcell(two_synth, "system_tps", "tok/s", 0.5)});
    md += "## 2. Two concurrent agents (TR110, TR114)\n\n" + t.md() + "\n";
  }
  // Table 3
  {
    Table t{{"topology", "the study's finding (TR110/TR114, white paper 3.2)", "our definition",
             "ours: llama-server (1 slot each)", "ours: Ollama"},
            {}};
    const auto row = [&](const char* name, const char* study, const MultiRuns& l,
                         const MultiRuns& o) {
      const std::string why_o = "not measurable here: " + sv.ollama_why;
      t.rows.push_back(
          {name, study, "system tokens/s; TTFT p50 and p99 (2 agents)",
           fmt::format("{} ; ttft p50 {}; p99 {}", mcell(l, "system_tps", "tok/s"),
                       mcell(l, "ttft_client_p50_ms", "ms"), mcell(l, "ttft_client_p99_ms", "ms")),
           sv.ollama_urls.empty()
               ? why_o
               : fmt::format("{} ; ttft p50 {}; p99 {}", mcell(o, "system_tps", "tok/s"),
                             mcell(o, "ttft_client_p50_ms", "ms"),
                             mcell(o, "ttft_client_p99_ms", "ms"))});
    };
    row("shared: both agents on one server",
        "a single Ollama serialized the agents and masked the client's concurrency", shared_llama,
        shared_ollama);
    row("dual: one server per agent", "dedicated endpoints per agent pool exposed the runtimes",
        dual_llama, dual_ollama);
    Stat ratio;
    const auto& ds = fig(dual_llama, "system_tps");
    const auto& ss = fig(shared_llama, "system_tps");
    for (std::size_t i = 0; i < std::min(ds.v.size(), ss.v.size()); ++i) {
      if (ss.v[i] > 0) ratio.v.push_back(ds.v[i] / ss.v[i]);
    }
    t.rows.push_back(
        {"dual ÷ shared", "not quantified in the white paper",
         "system_tps(dual) ÷ system_tps(shared), per run",
         llama_ok ? cell(ratio, "x", 1, "not measurable here: a run failed")
                  : "not measurable here: " + llama_why,
         "not measurable here: " +
             (sv.ollama_urls.empty() ? sv.ollama_why : std::string("see the rows above"))});
    md += "## 3. Dual Ollama topology (TR110, TR114)\n\n" + t.md() +
          "\nA 1-slot llama-server decodes one request at a time, as the study's single Ollama "
          "did for its agents; the dual layout gives each agent its own server (a pool of two, "
          "one request each).\n\n";
  }
  // Table 4
  {
    Table t{{"runtime", "study: efficiency mean", "study: σ", "study: verdict", "source"}, {}};
    t.rows.push_back(
        {"tokio default (multi-thread)", "98.72%", "1.21 pp", "recommended", "TR115 v2"});
    t.rows.push_back(
        {"tokio LocalSet", "97.95%", "4.03 pp", "failed (load imbalance)", "TR115 v2"});
    t.rows.push_back({"smol (1 KB reads)", "98.61%", "1.32 pp", "viable", "TR115 v2"});
    t.rows.push_back({"smol", "97.72%", "4.87 pp", "viable, more variance", "TR115 v2"});
    t.rows.push_back({"async-std (reqwest through a tokio bridge)", "50.00%", "0",
                      "failed (serialized)", "TR115 v2"});
    md +=
        "## 4. Runtime ablation (TR115)\n\nThe study's figures (parallel efficiency, "
        "`speedup / 2`, two agents):\n\n" +
        t.md() +
        "\nOurs (the runtime ablation command, same workload and harness for every "
        "Rust runtime variant and chimeraforge executor):\n\n";
    if (ablation_why.empty()) {
      md += ablation_rows.md() +
            fmt::format(
                "\nFrom `ablation/ablation.json` and `ablation/ablation.md` ({:.0f} s; "
                "efficiency mean ± sd over the repetitions, min-max in brackets; "
                "definitions in `docs/ablation.md`).\n\n",
                ablation_s);
    } else {
      Table n{{"runtime", "ours"}, {}};
      n.rows.push_back({"every variant", "not measurable here: " + ablation_why});
      md += n.md() + "\n";
    }
  }
  // Table 5
  {
    Table t{{"setting", "the study's advice (TR111 v2, white paper 5.2)", "our grid",
             "ours: best configuration (mean, n)"},
            {}};
    std::map<std::string, std::string> best;
    if (const auto* o = sweep_doc.if_object()) {
      if (const auto* b = o->if_contains("best"); b != nullptr && b->is_array()) {
        for (const auto& e : b->get_array()) {
          const auto& eo = e.as_object();
          best[std::string(eo.at("metric").as_string())] =
              fmt::format("{} ({}, n={})", std::string(eo.at("config").as_string()),
                          num(eo.at("mean").to_number<double>()), eo.at("n").to_number<int64_t>());
        }
      }
    }
    const auto b = [&](const char* metric) {
      if (!sweep_why.empty()) return "not measurable here: " + sweep_why;
      const auto it = best.find(metric);
      return it == best.end() ? std::string("not measurable here: the sweep did not measure it")
                              : it->second;
    };
    t.rows.push_back({"GPU layers (num_gpu)", "60-80 (partial offload); 999 raised contention",
                      gpu ? "num_gpu=" + a.num_gpu : std::string("none"),
                      gpu ? "TTFT p50: " + b("ttft_client_p50_ms")
                          : std::string("not measurable here: no GPU was named (--num-gpu "
                                        "60,80,999 on a machine with one); on a CPU GPU layers "
                                        "change nothing")});
    t.rows.push_back({"context (num_ctx)", "256-512 tokens", "num_ctx=256,512 (model reloaded)",
                      "TTFT p50: " + b("ttft_client_p50_ms")});
    t.rows.push_back({"throughput", "not stated per setting",
                      a.quick ? "num_ctx" : "num_ctx × temperature=0.6,0.8",
                      "system tokens/s: " + b("system_tps")});
    t.rows.push_back({"TTFT anomalies (over 3 s)", "the contention signal", "every configuration",
                      "lowest share: " + b("ttft_anomaly")});
    md += "## 5. Parameter sweep (TR111)\n\n" + t.md() +
          "\nThe whole sweep (every configuration, mean ± sd, n; charts): "
          "[`sweep/summary.md`](sweep/summary.md). The in-process engine on this machine's CPU "
          "with a random-weight model: the advice needs a GPU and a real model to be tested.\n\n";
  }
  // Definitions and charts
  md +=
      "## Charts\n\n![TTFT p50 by setup](plot-ttft.svg)\n\n![Throughput by "
      "topology](plot-topology.svg)\n\n";
  {
    std::vector<workflow::svg::Bar> ttft, topo;
    const auto bar = [](std::vector<workflow::svg::Bar>& v, const char* label, const Stat& s) {
      if (s.empty()) return;
      v.push_back(
          {label, s.mean(), s.mean() - s.sd(), s.mean() + s.sd(), fmt::format("n={}", s.v.size())});
    };
    bar(ttft, "single, synthetic", fig(single_synth, "ttft_client_p50_ms"));
    bar(ttft, "single, llama-server", fig(single_llama, "ttft_client_p50_ms"));
    bar(ttft, "2 agents, synthetic", fig(two_synth, "ttft_client_p50_ms"));
    bar(ttft, "2 agents, shared", fig(shared_llama, "ttft_client_p50_ms"));
    bar(ttft, "2 agents, dual", fig(dual_llama, "ttft_client_p50_ms"));
    bar(topo, "shared (llama-server)", fig(shared_llama, "system_tps"));
    bar(topo, "dual (llama-server)", fig(dual_llama, "system_tps"));
    bar(topo, "shared (Ollama)", fig(shared_ollama, "system_tps"));
    bar(topo, "dual (Ollama)", fig(dual_ollama, "system_tps"));
    std::ofstream(out / "plot-ttft.svg")
        << workflow::svg::bar_chart("TTFT p50 by setup (mean ± sd over runs)", "ms", "setup", ttft);
    std::ofstream(out / "plot-topology.svg") << workflow::svg::bar_chart(
        "System throughput, 2 agents (mean ± sd over runs)", "tokens/s", "topology", topo);
  }
  md += fmt::format("Took {:.0f} s. Child processes' output: `logs/`.\n", progress.elapsed());

  json::object doc{
      {"program", "chimeraforge study"},
      {"written", when},
      {"model", model},
      {"runs", a.runs},
      {"requests_per_agent", a.requests},
      {"tokens", a.tokens},
      {"quick", a.quick},
      {"anomaly_ms", kAnomalyMs},
      {"line_budget_ms", kLineBudgetMs},
      {"single_agent", json::object{{"synthetic", multi_json(single_synth)},
                                    {"llama_server", multi_json(single_llama)},
                                    {"ollama", multi_json(single_ollama)},
                                    {"startup_ms", startup.to_json()}}},
      {"two_agents", json::object{{"synthetic", multi_json(two_synth)}}},
      {"topology", json::object{{"shared_llama_server", multi_json(shared_llama)},
                                {"dual_llama_server", multi_json(dual_llama)},
                                {"shared_ollama", multi_json(shared_ollama)},
                                {"dual_ollama", multi_json(dual_ollama)},
                                {"ollama_not_measurable", sv.ollama_why}}},
      {"ablation", ablation_why.empty()
                       ? ablation_doc
                       : json::value(json::object{{"not_measurable", ablation_why}})},
      {"sweep",
       sweep_why.empty() ? sweep_doc : json::value(json::object{{"not_measurable", sweep_why}})},
      {"seconds", progress.elapsed()}};
  std::ofstream(out / "study.json") << json::serialize(doc) << '\n';
  {
    std::ofstream f(out / "study.md");
    f << md;
    if (!f.flush()) {
      fmt::print(stderr, "{}: cannot write {}\n", kWho, (out / "study.md").string());
      return kFailed;
    }
  }
  fmt::print("wrote {}\nwrote {}\n", (out / "study.md").string(), (out / "study.json").string());
  fmt::print(stderr, "{}: done in {:.0f} s\n", kWho, progress.elapsed());
  return kOk;
}

}  // namespace

std::function<int()> add_study(CLI::App& app) {
  auto a = std::make_shared<StudyArgs>();
  auto* cmd = app.add_subcommand(
      "study",
      "Re-run the study's experiments and write study.md: single agent (TR112), two concurrent "
      "agents (TR110/TR114), the Dual Ollama topology, the runtime ablation (TR115) and a "
      "parameter sweep (TR111), each table with the study's figures (quoted with their source), "
      "ours measured now and the definitions side by side; study.json and SVG charts beside "
      "it.\n\n"
      "It starts what it measures: the synthetic server, two 1-slot llama-servers with --model "
      "(default: the tiny synthetic model), and two Ollama instances when `ollama` is on PATH "
      "and --ollama-model is given (or uses the --ollama instances given). A row that cannot "
      "be measured here says why. Progress on stderr with the time left.\n\n"
      "Examples:\n"
      "  chimeraforge study --out out/study\n"
      "  chimeraforge study --quick --out /tmp/study\n"
      "  chimeraforge study --ollama http://127.0.0.1:11434 --ollama http://127.0.0.1:11435 "
      "--ollama-model gemma3:latest");
  cmd->add_option("--out,-o", a->out, "Output folder")->capture_default_str();
  cmd->add_option("--model,-m", a->model,
                  "GGUF model for the llama-servers and the sweep (default: the tiny synthetic "
                  "model)");
  cmd->add_option("--ollama", a->ollama, "An Ollama instance to use (give two)");
  cmd->add_option("--ollama-model", a->ollama_model, "The model the Ollama instances serve");
  cmd->add_option("--ablation", a->ablation,
                  "The runtime ablation command (default: bench/ablation's, when present)");
  cmd->add_option("--num-gpu", a->num_gpu,
                  "GPU layers to sweep, e.g. 60,80,999 (a machine with a GPU and a GPU build)");
  cmd->add_option("--runs,-n", a->runs, "Runs of each experiment")->capture_default_str();
  cmd->add_option("--requests", a->requests, "Calls per agent per run")->capture_default_str();
  cmd->add_option("--tokens", a->tokens, "Tokens per call (num_predict)")->capture_default_str();
  cmd->add_flag("--quick", a->quick, "One run, 2 calls of 16 tokens, a 2-configuration sweep");
  return [a]() { return run_study(*a); };
}

}  // namespace chimera::cli
