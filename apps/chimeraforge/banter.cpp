// `chimeraforge banter`: a scene of characters talking, in batch or with the player.
#include "commands.hpp"
#include "connection_flags.hpp"
#include "signals.hpp"

#include <chimera/banter/scene.hpp>
#include <chimera/metrics/figures.hpp>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <fmt/format.h>

#include <poll.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <fstream>
#include <iostream>
#include <mutex>

namespace chimera::cli {

namespace {

struct BanterArgs {
  std::string scene;
  std::optional<int> lines;
  std::string model;
  bool interactive = false;
  bool json = false;
  std::string out;
  std::optional<int64_t> budget_ms;
  bool no_warm_up = false;
  bool no_sessions = false;
  int threads = 0;
  int replies = 2;
  ConnectionFlags connection;  // defaults for every endpoint of the scene's pools
};

double ms(int64_t ns) {
  return static_cast<double>(ns) / 1e6;
}

std::string opt_ms(const std::optional<int64_t>& ns) {
  return ns ? fmt::format("{:.1f} ms", ms(*ns)) : std::string("-");
}

std::string budget_word(const banter::LineRecord& r) {
  if (!r.budget_held) return "n/a";
  return *r.budget_held ? "held" : "MISSED";
}

// The figures of one line, on one line of text.
std::string figures_text(const banter::LineRecord& r) {
  const Figures& f = r.completion.figures;
  std::string s =
      fmt::format("ttft_client {}  ttft_line {}  budget {} ms {}", opt_ms(f.ttft_client_ns),
                  opt_ms(r.ttft_line_ns), r.budget_ms, budget_word(r));
  s += fmt::format("  tokens {}", f.tokens_out ? std::to_string(*f.tokens_out) : "-");
  s += fmt::format("  cached {}/{}",
                   f.prompt_tokens_cached ? std::to_string(*f.prompt_tokens_cached) : "-",
                   f.tokens_in ? std::to_string(*f.tokens_in) : "-");
  if (f.e2e_ns) s += fmt::format("  e2e {:.1f} ms", ms(*f.e2e_ns));
  if (r.director_ns > 0) s += fmt::format("  director {:.1f} ms", ms(r.director_ns));
  if (r.hedged) s += "  hedged";
  if (r.interrupted) s += "  interrupted";
  if (r.completion.error && !r.interrupted) s += "  error: " + r.completion.error.message;
  return s;
}

// One JSON object per line: the METRICS.md names (as `generate --json` prints them) plus the
// line's own figures.
std::string line_json(const banter::LineRecord& r, const std::string& backend) {
  boost::json::value v = boost::json::parse(metrics::completion_json(r.completion, backend));
  boost::json::object& o = v.as_object();
  o["type"] = "line";
  o["line"] = r.index;
  o["speaker"] = r.speaker;
  o["text"] = r.text;
  o["thinking"] = r.thinking;
  o["interrupted"] = r.interrupted;
  o["budget_ms"] = r.budget_ms;
  if (r.budget_held) {
    o["budget_held"] = *r.budget_held;
  } else {
    o["budget_held"] = nullptr;
  }
  auto put_ms = [&](const char* key, const std::optional<int64_t>& ns) {
    if (ns) {
      o[key] = ms(*ns);
    } else {
      o[key] = nullptr;
    }
  };
  put_ms("ttft_line", r.ttft_line_ns);
  put_ms("first_sentence", r.first_sentence_ns);
  o["director"] = ms(r.director_ns);
  o["scheduled"] = ms(r.scheduled_ns);
  o["sentences"] = r.sentences;
  o["hedged"] = r.hedged;
  o["attempts"] = r.completion.figures.attempts;
  auto& sources = o["sources"].as_object();
  for (const char* k : {"ttft_line", "first_sentence", "director", "scheduled"}) {
    sources[k] = "measured";
  }
  return boost::json::serialize(o);
}

struct Summary {
  int lines = 0;
  int held = 0;
  int judged = 0;
  std::vector<double> ttft_line, ttft_client;
  std::vector<double> cached;
  int errors = 0;

  void add(const banter::LineRecord& r) {
    ++lines;
    if (r.budget_held) {
      ++judged;
      if (*r.budget_held) ++held;
    }
    if (r.ttft_line_ns) ttft_line.push_back(ms(*r.ttft_line_ns));
    if (r.completion.figures.ttft_client_ns) {
      ttft_client.push_back(ms(*r.completion.figures.ttft_client_ns));
    }
    if (r.completion.figures.prompt_tokens_cached) {
      cached.push_back(static_cast<double>(*r.completion.figures.prompt_tokens_cached));
    }
    if (!r.ok()) ++errors;
  }
  double mean_cached() const {
    double s = 0;
    for (double c : cached) s += c;
    return cached.empty() ? 0 : s / static_cast<double>(cached.size());
  }
  std::string text() const {
    return fmt::format(
        "{} lines  ttft_line p50 {:.1f} ms p99 {:.1f} ms  ttft_client p50 {:.1f} ms p99 {:.1f} ms  "
        "budget held {}/{} ({:.0f}%)  cached prompt tokens per line {:.0f}{}",
        lines, metrics::percentile(ttft_line, 50), metrics::percentile(ttft_line, 99),
        metrics::percentile(ttft_client, 50), metrics::percentile(ttft_client, 99), held, judged,
        judged ? 100.0 * held / judged : 0.0, mean_cached(),
        errors ? fmt::format("  {} failed", errors) : "");
  }
  std::string json() const {
    boost::json::object o;
    o["type"] = "summary";
    o["lines"] = lines;
    o["ttft_line_p50"] = metrics::percentile(ttft_line, 50);
    o["ttft_line_p99"] = metrics::percentile(ttft_line, 99);
    o["ttft_client_p50"] = metrics::percentile(ttft_client, 50);
    o["ttft_client_p99"] = metrics::percentile(ttft_client, 99);
    o["budget_held"] = held;
    o["budget_judged"] = judged;
    o["budget_hit_rate"] = judged ? static_cast<double>(held) / judged : 0.0;
    o["prompt_tokens_cached_mean"] = mean_cached();
    o["failed"] = errors;
    o["units"] = boost::json::object{{"time", "ms"}};
    return boost::json::serialize(o);
  }
};

// Prints a streaming line: "Name: " once the speaker is known, then the spoken text.
struct Printer {
  std::mutex mu;
  bool quiet = false;
  banter::LineOptions options() {
    banter::LineOptions o;
    if (quiet) return o;
    o.on_start = [this](std::string_view speaker) {
      std::lock_guard lock(mu);
      fmt::print("{}: ", speaker);
      std::fflush(stdout);
    };
    o.on_text = [this](std::string_view text) {
      std::lock_guard lock(mu);
      std::fwrite(text.data(), 1, text.size(), stdout);
      std::fflush(stdout);
      return !StopFlag::raised();
    };
    return o;
  }
};

void print_header(const banter::Scene& scene, const BanterArgs& a, const std::string& backend) {
  const auto& c = scene.config();
  std::vector<std::string> names;
  for (const auto& ch : c.characters) names.push_back(ch.name);
  fmt::print(stderr, "scene: {} ({}; turns {}; budget {} ms; {}{}{})\n",
             c.title.empty() ? a.scene : c.title, fmt::join(names, ", "), to_string(c.turns),
             c.budget_ms, backend, c.sessions ? "" : "; no sessions",
             c.warm_up ? "" : "; no warm-up");
}

std::string backend_of(const banter::SceneConfig& c, const BanterArgs& a) {
  if (!a.model.empty()) return "in-process " + a.model;
  const auto& p = c.characters.front().placement;
  if (!p.pool.empty()) return "pool " + p.pool;
  return "in-process " + (p.model.empty() ? std::string("tiny") : p.model);
}

void print_warm(const banter::WarmUpReport& w, bool json) {
  if (w.entries.empty()) return;
  int64_t tokens = 0;
  for (const auto& e : w.entries) tokens += e.tokens;
  if (json) {
    boost::json::object o;
    o["type"] = "warm_up";
    o["prompts"] = w.entries.size();
    o["tokens"] = tokens;
    o["wall"] = ms(w.wall_ns);
    boost::json::array errs;
    for (const auto& e : w.entries) {
      if (!e.error.empty()) errs.push_back(boost::json::string(e.who + ": " + e.error));
    }
    o["errors"] = std::move(errs);
    fmt::print("{}\n", boost::json::serialize(o));
  } else {
    fmt::print(stderr, "warm-up: {} prompts, {} tokens prefilled, {:.1f} ms\n", w.entries.size(),
               tokens, ms(w.wall_ns));
    for (const auto& e : w.entries) {
      if (!e.error.empty()) fmt::print(stderr, "warm-up of {} failed: {}\n", e.who, e.error);
    }
  }
}

void write_markdown(const std::string& path, const banter::Scene& scene,
                    const std::vector<banter::LineRecord>& lines, const Summary& sum) {
  std::ofstream out(path);
  if (!out) throw std::runtime_error(fmt::format("cannot write '{}'", path));
  const auto& c = scene.config();
  out << "# " << (c.title.empty() ? "Banter" : c.title) << "\n\n";
  for (const auto& r : scene.transcript()) {
    out << "**" << r.speaker << ":** " << r.text << (r.interrupted ? " —" : "") << "\n\n";
  }
  out << "## Figures per line\n\n"
      << "| line | speaker | ttft_client ms | ttft_line ms | budget | tokens_out | "
         "prompt_tokens_cached | tokens_in | e2e ms |\n"
      << "| ---: | --- | ---: | ---: | --- | ---: | ---: | ---: | ---: |\n";
  for (const auto& r : lines) {
    const Figures& f = r.completion.figures;
    auto num = [](const auto& o) { return o ? fmt::format("{}", *o) : std::string("-"); };
    auto tms = [](const std::optional<int64_t>& o) {
      return o ? fmt::format("{:.1f}", ms(*o)) : std::string("-");
    };
    out << fmt::format("| {} | {} | {} | {} | {} | {} | {} | {} | {} |\n", r.index, r.speaker,
                       tms(f.ttft_client_ns), tms(r.ttft_line_ns), budget_word(r),
                       num(f.tokens_out), num(f.prompt_tokens_cached), num(f.tokens_in),
                       tms(f.e2e_ns));
  }
  out << "\n" << sum.text() << "\n";
}

// Waits for a line while watching stdin: a line typed meanwhile interrupts it.
// Returns the typed text, or nullopt when none came.
std::optional<std::string> wait_watching_stdin(banter::Line& line, bool& eof) {
  for (;;) {
    if (line.wait_for(20)) return std::nullopt;
    if (StopFlag::raised()) {
      line.cancel();
      line.wait();
      return std::nullopt;
    }
    pollfd p{STDIN_FILENO, POLLIN, 0};
    if (::poll(&p, 1, 0) > 0 && (p.revents & (POLLIN | POLLHUP)) != 0) {
      std::string typed;
      if (!std::getline(std::cin, typed)) {
        eof = true;
        return std::nullopt;
      }
      return typed;
    }
  }
}

int run_interactive(banter::Scene& scene, const BanterArgs& a, const std::string& backend) {
  Printer printer;
  Summary sum;
  const auto& c = scene.config();
  fmt::print(
      "{}\nType a line and press Enter; the characters answer. Type while one speaks to "
      "interrupt. An empty line lets them go on; /quit ends.\n",
      c.title);
  if (!c.opening.empty()) fmt::print("{}: {}\n", c.narrator, c.opening);
  std::optional<std::string> pending;
  bool eof = false;
  while (!StopFlag::raised() && !eof) {
    std::string typed;
    if (pending) {
      typed = std::move(*pending);
      pending.reset();
    } else {
      fmt::print("> ");
      std::fflush(stdout);
      if (!std::getline(std::cin, typed)) break;
    }
    if (typed == "/quit" || typed == "/exit") break;
    if (auto bad = banter::validate_line(typed); !bad.empty()) {
      fmt::print(stderr, "chimeraforge banter: {}; say it in shorter lines\n", bad);
      continue;
    }
    if (!typed.empty()) scene.say(typed);
    for (int i = 0; i < std::max(1, a.replies) && !StopFlag::raised(); ++i) {
      auto line = scene.start_line(printer.options());
      pending = wait_watching_stdin(*line, eof);
      const auto r = line->wait();
      fmt::print("\n");
      if (a.json) {
        fmt::print("{}\n", line_json(r, backend));
      } else {
        fmt::print(stderr, "   {}\n", figures_text(r));
      }
      sum.add(r);
      if (pending || eof) break;  // the player spoke over it
    }
  }
  fmt::print(stderr, "{}\n", sum.text());
  return StopFlag::raised() ? kInterrupted : kOk;
}

int run_banter(const BanterArgs& a) {
  banter::SceneConfig cfg;
  std::string error;
  if (!banter::load_scene(a.scene, cfg, error)) {
    fmt::print(stderr, "chimeraforge banter: {}\n", error);
    return kUsage;
  }
  if (a.budget_ms) cfg.budget_ms = *a.budget_ms;
  for (auto& pc : cfg.pools) {
    for (auto& e : pc.endpoints) apply_connection_flags(a.connection, e.config);
  }
  if (a.threads < 0 || a.threads > 4'096) {
    fmt::print(stderr, "chimeraforge banter: --threads is {}; it must be from 0 to 4096\n",
               a.threads);
    return kUsage;
  }
  if (auto bad = banter::validate_scene(cfg); !bad.empty()) {
    fmt::print(stderr, "chimeraforge banter: {}\n", bad);
    return kUsage;
  }
  if (a.no_warm_up) cfg.warm_up = false;
  if (a.no_sessions) cfg.sessions = false;
  const std::string backend = backend_of(cfg, a);
  banter::SceneOptions so;
  so.model_override = a.model;
  so.threads = a.threads;
  std::unique_ptr<banter::Scene> scene;
  try {
    scene = std::make_unique<banter::Scene>(cfg, so);
  } catch (const std::invalid_argument& e) {
    fmt::print(stderr, "chimeraforge banter: {}\n", e.what());
    return kFailed;
  }
  if (!a.json) print_header(*scene, a, backend);
  if (cfg.warm_up) print_warm(scene->warm_up(), a.json);

  std::optional<StopFlag> interrupt;
  interrupt.emplace();  // Ctrl-C ends the scene after the line in progress
  int rc = kOk;
  if (a.interactive) {
    rc = run_interactive(*scene, a, backend);
  } else {
    Printer printer;
    printer.quiet = a.json;
    if (!a.json && !cfg.opening.empty()) fmt::print("{}: {}\n", cfg.narrator, cfg.opening);
    const int n = a.lines.value_or(cfg.lines);
    Summary sum;
    std::vector<banter::LineRecord> records;
    for (int i = 0; i < n && !StopFlag::raised(); ++i) {
      const auto r = scene->line(printer.options());
      if (a.json) {
        fmt::print("{}\n", line_json(r, backend));
      } else {
        fmt::print("\n");
        std::fflush(stdout);
        fmt::print(stderr, "   {}\n", figures_text(r));
      }
      sum.add(r);
      records.push_back(r);
    }
    if (a.json) {
      fmt::print("{}\n", sum.json());
    } else {
      fmt::print(stderr, "summary: {}\n", sum.text());
    }
    if (!a.out.empty()) write_markdown(a.out, *scene, records, sum);
    if (sum.errors > 0) rc = kFailed;
    if (StopFlag::raised()) rc = kInterrupted;
  }
  interrupt.reset();
  return rc;
}

}  // namespace

std::function<int()> add_banter(CLI::App& app) {
  auto a = std::make_shared<BanterArgs>();
  auto* cmd = app.add_subcommand(
      "banter",
      "Run a scene of characters talking (docs/banter.md): each line's first token within a "
      "latency budget, every character a session that prefills only what is new.\n\n"
      "Examples:\n"
      "  chimeraforge banter --scene examples/scenes/tavern.toml --lines 8\n"
      "  chimeraforge banter --scene examples/scenes/heist.toml --interactive\n"
      "  chimeraforge banter --scene examples/scenes/tavern.toml --json > lines.jsonl\n\n" +
          connection_env_help());
  add_connection_flags(cmd, a->connection);
  cmd->add_option("--scene,-s", a->scene, "The scene file (TOML)")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--lines,-n", a->lines, "Lines to produce in batch mode (default: the scene's)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--model,-m", a->model,
                  "A GGUF file every character runs on, in this process (overrides the scene)")
      ->check(CLI::ExistingFile);
  cmd->add_flag("--interactive,-i", a->interactive,
                "The player types lines and the characters answer, streaming");
  cmd->add_flag("--json", a->json,
                "One JSON object per line (METRICS.md names), then a summary object");
  cmd->add_option("--out", a->out, "Also write the transcript and its figures as Markdown");
  cmd->add_option("--budget-ms", a->budget_ms, "Latency budget to a line's first token")
      ->check(CLI::PositiveNumber);
  cmd->add_flag("--no-warm-up", a->no_warm_up, "Do not prefill the personas before the first line");
  cmd->add_flag("--no-sessions", a->no_sessions,
                "Send every line as a fresh request (no cached prompts; for comparison)");
  cmd->add_option("--threads", a->threads, "In-process decode threads (0: all)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--replies", a->replies, "Interactive: lines the characters say per player line")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  return [a]() -> int { return run_banter(*a); };
}

}  // namespace chimera::cli
