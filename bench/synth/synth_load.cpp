// Capacity of the synthetic server (chimeraforge synth-server): N concurrent streams at R
// tokens/s, K tokens each, and how late the server sent each chunk.
//
// For every token chunk it reads two figures:
//   lateness     = server_sent_ns - scheduled_ns   (both written by the server into the chunk):
//                  how far behind its own schedule the server was when it wrote the chunk;
//   delivery_lag = time this client handed the chunk on - server_sent_ns (METRICS.md): loopback,
//                  kernel and this client's own delay.
// The server keeps up when lateness stays small (p99 well under one token interval) at the load;
// then whatever a client loses against it is the client's.
//
// This client is deliberately lean (raw sockets, Beast's parser, the project's NDJSON/SSE
// framers, a field scan instead of a JSON parse per chunk), so that on a shared 2-core machine it
// takes as little CPU as it can from the server it measures. By default it starts the server
// itself (`chimeraforge synth-server --port 0`) as a separate process, so the two do not share
// a file-descriptor limit: 10,000 streams are 10,000 sockets on each side.
//
// Streams connect first (all N), then start their requests spread evenly over --ramp-ms (by
// default one token interval, so that token times are spread like independent agents'; 0 makes
// every stream tick at the same instant, the worst case).
#include "provenance.hpp"

#include <chimera/http/framing.hpp>

#include <CLI/CLI.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <fmt/format.h>

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace json = boost::json;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
      .count();
}

int64_t cpu_ns_self() {
  rusage ru{};
  ::getrusage(RUSAGE_SELF, &ru);
  return (static_cast<int64_t>(ru.ru_utime.tv_sec) + ru.ru_stime.tv_sec) * 1'000'000'000 +
         (static_cast<int64_t>(ru.ru_utime.tv_usec) + ru.ru_stime.tv_usec) * 1000;
}

using chimera::bench::cpu_model;

// The 1-minute load average: this machine is shared, and a busy neighbour shows in lateness.
double load_average() {
  std::ifstream in("/proc/loadavg");
  double l = -1;
  in >> l;
  return l;
}

// Busy time of the whole machine so far, in seconds of CPU (all cores, from /proc/stat): with
// our two processes' own CPU time it tells how much a neighbour took during a run.
double machine_busy_s() {
  std::ifstream in("/proc/stat");
  std::string cpu;
  long long user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0;
  in >> cpu >> user >> nice >> system >> idle >> iowait >> irq >> softirq >> steal;
  return static_cast<double>(user + nice + system + irq + softirq + steal) /
         static_cast<double>(::sysconf(_SC_CLK_TCK));
}

// The integer after `"key":` in a record, if there is one.
std::optional<int64_t> find_int(std::string_view rec, std::string_view key) {
  const auto at = rec.find(key);
  if (at == std::string_view::npos) return std::nullopt;
  const char* p = rec.data() + at + key.size();
  int64_t v = 0;
  const auto r = std::from_chars(p, rec.data() + rec.size(), v);
  if (r.ec != std::errc()) return std::nullopt;
  return v;
}

// Nearest-rank percentile of sorted values.
double pct(const std::vector<int64_t>& sorted, double p) {
  if (sorted.empty()) return 0;
  auto rank = static_cast<std::size_t>(std::ceil(p / 100.0 * static_cast<double>(sorted.size())));
  rank = std::clamp<std::size_t>(rank, 1, sorted.size());
  return static_cast<double>(sorted[rank - 1]);
}

struct Scenario {
  int streams = 1000;
  double tokens_per_s = 50;
  int tokens = 100;
  double ttft_ms = 0;
  double ramp_ms = -1;  // < 0: one token interval
};

struct Config {
  std::string host = "127.0.0.1";
  std::string port;
  std::string api = "ollama";
  int threads = 1;
  int connect_concurrency = 256;
};

struct Stream {
  explicit Stream(const asio::any_io_executor& ex) : sock(ex) {}
  tcp::socket sock;
  std::vector<int64_t> lateness;  // ns, one per token chunk
  std::vector<int64_t> lag;       // ns, one per token chunk
  int64_t t_send = 0;
  int64_t t_first = 0;  // first token chunk handed on
  int64_t t_last = 0;
  int64_t first_lateness = 0;
  bool connected = false;
  bool done = false;
  std::string error;
};

// One request, read to the end of its response.
asio::awaitable<void> run_stream(Stream& s, const Config& cfg, const std::string& request,
                                 Clock::time_point start_at) {
  asio::steady_timer timer(s.sock.get_executor());
  timer.expires_at(start_at);
  co_await timer.async_wait(use_tuple);
  s.t_send = now_ns();
  auto [wec, wn] = co_await asio::async_write(s.sock, asio::buffer(request), use_tuple);
  if (wec) {
    s.error = "write: " + wec.message();
    co_return;
  }
  const bool sse = cfg.api == "openai";
  beast::flat_buffer buf;
  bhttp::response_parser<bhttp::buffer_body> parser;
  parser.body_limit(std::numeric_limits<std::uint64_t>::max());
  auto [hec, hn] = co_await bhttp::async_read_header(s.sock, buf, parser, use_tuple);
  if (hec) {
    s.error = "reading the response head: " + hec.message();
    co_return;
  }
  if (parser.get().result_int() != 200) {
    s.error = fmt::format("HTTP {}", parser.get().result_int());
    co_return;
  }
  chimera::http::NdjsonFramer ndjson(1 << 20);
  chimera::http::SseFramer events(1 << 20);
  int64_t t_read = 0;
  auto on_record = [&](std::string_view rec) {
    if (rec == "[DONE]" || rec.find("\"done\":true") != std::string_view::npos) {
      s.done = true;
      return true;
    }
    if (rec.find("\"error\"") != std::string_view::npos) {
      s.error = "error record: " + std::string(rec.substr(0, 200));
      return false;
    }
    const auto sent = find_int(rec, "\"server_sent_ns\":");
    const auto scheduled = find_int(rec, "\"scheduled_ns\":");
    if (!sent || !scheduled) return true;  // finish and usage chunks carry no token
    if (s.lateness.empty()) {
      s.t_first = t_read;
      s.first_lateness = *sent - *scheduled;
    }
    s.t_last = t_read;
    s.lateness.push_back(*sent - *scheduled);
    s.lag.push_back(t_read - *sent);
    return true;
  };
  std::array<char, 4096> chunk{};
  while (!parser.is_done()) {
    parser.get().body().data = chunk.data();
    parser.get().body().size = chunk.size();
    auto [rec, rn] = co_await bhttp::async_read_some(s.sock, buf, parser, use_tuple);
    if (rec == bhttp::error::need_buffer) rec = {};
    t_read = now_ns();
    const std::size_t got = chunk.size() - parser.get().body().size;
    const std::string_view bytes(chunk.data(), got);
    chimera::http::FrameStatus st = chimera::http::FrameStatus::ok;
    if (sse) {
      st =
          events.feed(bytes, [&](const chimera::http::SseEvent& ev) { return on_record(ev.data); });
    } else {
      st = ndjson.feed(bytes, on_record);
    }
    if (st != chimera::http::FrameStatus::ok) {
      if (s.error.empty()) s.error = "framing failed";
      co_return;
    }
    if (rec) {
      s.error = "reading the body: " + rec.message();
      co_return;
    }
  }
  if (!s.done && s.error.empty()) s.error = "the stream ended without its final record";
  // The connection stays open (as a keep-alive client's would) until every stream has ended:
  // closing it now would make the server close thousands of sockets while the last streams
  // still run, and their lateness would measure that instead.
}

// A small blocking GET (the server's /stats), on its own connection.
std::optional<json::object> get_json(const Config& cfg, const std::string& target) {
  try {
    asio::io_context io;
    tcp::socket sock(io);
    sock.connect(tcp::endpoint(asio::ip::make_address(cfg.host),
                               static_cast<unsigned short>(std::stoi(cfg.port))));
    bhttp::request<bhttp::string_body> req{bhttp::verb::get, target, 11};
    req.set(bhttp::field::host, cfg.host);
    req.keep_alive(false);
    bhttp::write(sock, req);
    beast::flat_buffer buf;
    bhttp::response<bhttp::string_body> res;
    bhttp::read(sock, buf, res);
    auto v = json::parse(res.body());
    if (v.is_object()) return v.get_object();
  } catch (const std::exception&) {
  }
  return std::nullopt;
}

bool post_reset(const Config& cfg) {
  try {
    asio::io_context io;
    tcp::socket sock(io);
    sock.connect(tcp::endpoint(asio::ip::make_address(cfg.host),
                               static_cast<unsigned short>(std::stoi(cfg.port))));
    bhttp::request<bhttp::string_body> req{bhttp::verb::post, "/stats/reset", 11};
    req.set(bhttp::field::host, cfg.host);
    req.keep_alive(false);
    req.prepare_payload();
    bhttp::write(sock, req);
    beast::flat_buffer buf;
    bhttp::response<bhttp::string_body> res;
    bhttp::read(sock, buf, res);
    return res.result_int() == 200;
  } catch (const std::exception&) {
    return false;
  }
}

struct Result {
  Scenario sc;
  int ok = 0;
  int failed = 0;
  int connect_failed = 0;
  std::vector<std::string> errors;  // the first few
  std::size_t chunks = 0;
  std::vector<int64_t> lateness, lag, first_lateness;
  std::vector<double> p99_by_token;  // lateness p99 (ns) of token i over all streams: when the
                                     // server fell behind (start-up burst or steady state)
  double wall_s = 0;
  double system_tps = 0;
  double client_cpu = 0;   // share of one core
  double server_cpu = -1;  // share of one core, from /stats cpu_ns
  int64_t server_peak = -1;
  double connect_s = 0;
  double load_before = -1;  // 1-minute load average when the run started
  double machine_cpu = -1;  // cores busy on the whole machine during the run (all processes,
                            // kernel work included)
};

Result run_scenario(const Config& cfg, const Scenario& sc) {
  Result r;
  r.sc = sc;
  const double ramp_ms = sc.ramp_ms < 0 ? 1000.0 / sc.tokens_per_s : sc.ramp_ms;
  const std::string target = cfg.api == "openai" ? "/v1/chat/completions" : "/api/chat";
  const std::string body = fmt::format(
      R"({{"model":"synth","messages":[{{"role":"user","content":"hello"}}],"stream":true,)"
      R"("synth":{{"ttft_ms":{},"tokens_per_s":{},"tokens":{}}}}})",
      sc.ttft_ms, sc.tokens_per_s, sc.tokens);
  const std::string request = fmt::format(
      "POST {} HTTP/1.1\r\nHost: {}:{}\r\nContent-Type: application/json\r\nContent-Length: "
      "{}\r\n\r\n{}",
      target, cfg.host, cfg.port, body.size(), body);

  post_reset(cfg);
  r.load_before = load_average();
  asio::io_context io(cfg.threads);
  auto executor = [&]() -> asio::any_io_executor {
    if (cfg.threads > 1) return asio::make_strand(io);
    return io.get_executor();
  };
  std::vector<std::unique_ptr<Stream>> streams;
  streams.reserve(static_cast<std::size_t>(sc.streams));
  for (int i = 0; i < sc.streams; ++i) streams.push_back(std::make_unique<Stream>(executor()));
  for (auto& s : streams) {
    s->lateness.reserve(static_cast<std::size_t>(sc.tokens));
    s->lag.reserve(static_cast<std::size_t>(sc.tokens));
  }
  const tcp::endpoint ep(asio::ip::make_address(cfg.host),
                         static_cast<unsigned short>(std::stoi(cfg.port)));

  // 1. Connect every stream, a bounded number at a time (the listen backlog is finite).
  const int64_t t_connect = now_ns();
  std::atomic<std::size_t> next{0};
  for (int w = 0; w < cfg.connect_concurrency; ++w) {
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
          for (;;) {
            const std::size_t i = next++;
            if (i >= streams.size()) co_return;
            Stream& s = *streams[i];
            auto [ec] = co_await s.sock.async_connect(ep, use_tuple);
            if (ec) {
              s.error = "connect: " + ec.message();
              continue;
            }
            beast::error_code oec;
            s.sock.set_option(tcp::no_delay(true), oec);
            s.connected = true;
          }
        },
        asio::detached);
  }
  {
    std::vector<std::thread> threads;
    for (int t = 0; t < cfg.threads; ++t) threads.emplace_back([&] { io.run(); });
    for (auto& t : threads) t.join();
  }
  io.restart();
  r.connect_s = static_cast<double>(now_ns() - t_connect) / 1e9;

  // 2. Start the requests, spread over the ramp; a watchdog ends a hung run.
  const auto json_before = get_json(cfg, "/stats");
  const int64_t cpu_before = cpu_ns_self();
  const double machine_before = machine_busy_s();
  const int64_t t_measure = now_ns();
  const auto t0 = Clock::now() + std::chrono::milliseconds(100);
  std::mutex done_mu;
  std::condition_variable done_cv;
  int started = 0;
  int finished = 0;
  for (std::size_t i = 0; i < streams.size(); ++i) {
    Stream& s = *streams[i];
    if (!s.connected) {
      ++r.connect_failed;
      continue;
    }
    const auto offset = std::chrono::nanoseconds(static_cast<int64_t>(
        ramp_ms * 1e6 * static_cast<double>(i) / static_cast<double>(streams.size())));
    ++started;
    asio::co_spawn(
        s.sock.get_executor(),
        [&, offset]() -> asio::awaitable<void> {
          co_await run_stream(s, cfg, request, t0 + offset);
          std::lock_guard lock(done_mu);
          if (++finished == started) done_cv.notify_all();
        },
        asio::detached);
  }
  const double expected_s =
      sc.ttft_ms / 1e3 + ramp_ms / 1e3 + static_cast<double>(sc.tokens) / sc.tokens_per_s;
  {
    // The I/O threads return when every stream has ended; a stream that hangs past the
    // expected time plus 30 s is closed, so a broken run still ends.
    std::vector<std::thread> threads;
    for (int t = 0; t < cfg.threads; ++t) threads.emplace_back([&] { io.run(); });
    {
      std::unique_lock lock(done_mu);
      const auto deadline =
          t0 + std::chrono::milliseconds(static_cast<int64_t>(expected_s * 1e3) + 30'000);
      if (!done_cv.wait_until(lock, deadline, [&] { return finished == started; })) {
        for (auto& s : streams) {
          asio::post(s->sock.get_executor(), [&s] {
            beast::error_code cec;
            s->sock.close(cec);
          });
        }
      }
    }
    for (auto& t : threads) t.join();
  }
  const int64_t t_end = now_ns();
  const auto json_after = get_json(cfg, "/stats");
  const int64_t cpu_after = cpu_ns_self();
  const double machine_after = machine_busy_s();
  const int64_t t_measure_end = now_ns();
  for (auto& s : streams) {
    beast::error_code ec;
    s->sock.close(ec);
  }
  // Let the server see every connection end before anything else is measured.
  std::this_thread::sleep_for(std::chrono::milliseconds(300 + sc.streams / 20));

  int64_t first_send = std::numeric_limits<int64_t>::max();
  int64_t last_token = 0;
  int64_t tokens = 0;
  for (auto& s : streams) {
    if (!s->connected) {
      if (r.errors.size() < 5) r.errors.push_back(s->error);
      continue;
    }
    if (s->error.empty() && s->done && s->lateness.size() == static_cast<std::size_t>(sc.tokens)) {
      ++r.ok;
    } else {
      ++r.failed;
      if (r.errors.size() < 5) {
        r.errors.push_back(s->error.empty()
                               ? fmt::format("{} of {} tokens", s->lateness.size(), sc.tokens)
                               : s->error);
      }
    }
    first_send = std::min(first_send, s->t_send);
    last_token = std::max(last_token, s->t_last);
    tokens += static_cast<int64_t>(s->lateness.size());
    r.lateness.insert(r.lateness.end(), s->lateness.begin(), s->lateness.end());
    r.lag.insert(r.lag.end(), s->lag.begin(), s->lag.end());
    if (!s->lateness.empty()) r.first_lateness.push_back(s->first_lateness);
  }
  for (int i = 0; i < sc.tokens; ++i) {
    std::vector<int64_t> at_i;
    at_i.reserve(streams.size());
    for (auto& s : streams) {
      if (static_cast<std::size_t>(i) < s->lateness.size()) at_i.push_back(s->lateness[i]);
    }
    std::sort(at_i.begin(), at_i.end());
    r.p99_by_token.push_back(pct(at_i, 99));
  }
  r.chunks = r.lateness.size();
  std::sort(r.lateness.begin(), r.lateness.end());
  std::sort(r.lag.begin(), r.lag.end());
  std::sort(r.first_lateness.begin(), r.first_lateness.end());
  r.wall_s = static_cast<double>(t_end - first_send) / 1e9;
  if (last_token > first_send) {
    r.system_tps = static_cast<double>(tokens) * 1e9 / static_cast<double>(last_token - first_send);
  }
  const double span = static_cast<double>(t_measure_end - t_measure);
  r.client_cpu = static_cast<double>(cpu_after - cpu_before) / span;
  r.machine_cpu = (machine_after - machine_before) * 1e9 / span;
  if (json_before && json_after) {
    auto num = [](const json::object& o, const char* k) -> int64_t {
      const auto* v = o.if_contains(k);
      return v && v->is_int64() ? v->get_int64() : 0;
    };
    r.server_cpu = static_cast<double>(num(*json_after, "cpu_ns") - num(*json_before, "cpu_ns")) /
                   static_cast<double>(num(*json_after, "now_ns") - num(*json_before, "now_ns"));
    r.server_peak = num(*json_after, "streams_peak");
  }
  return r;
}

// `chimeraforge synth-server --port 0`, started and stopped by this program.
class ServerChild {
 public:
  bool start(int threads, std::string& url, std::string& error) {
    int fds[2];
    if (::pipe(fds) != 0) {
      error = "pipe failed";
      return false;
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
    posix_spawn_file_actions_addclose(&fa, fds[0]);
    const std::string th = std::to_string(threads);
    std::vector<std::string> args = {CHIMERA_CLI, "synth-server", "--port", "0", "--threads",
                                     th,          "--quiet"};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    const int rc = ::posix_spawn(&pid_, CHIMERA_CLI, &fa, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    ::close(fds[1]);
    if (rc != 0) {
      ::close(fds[0]);
      error = fmt::format("cannot start {}: {}", CHIMERA_CLI, std::strerror(rc));
      pid_ = -1;
      return false;
    }
    out_ = ::fdopen(fds[0], "r");
    char line[512];
    if (std::fgets(line, sizeof line, out_) == nullptr) {
      error = "the server exited before it was ready";
      return false;
    }
    const std::string s(line);
    const auto at = s.find("http://");
    if (at == std::string::npos) {
      error = "unexpected first line from the server: " + s;
      return false;
    }
    url = s.substr(at, s.find(' ', at) - at);
    return true;
  }
  // Stops it; returns its last words and peak RSS (KiB).
  std::string stop(long& maxrss_kib) {
    maxrss_kib = 0;
    if (pid_ <= 0) return {};
    ::kill(pid_, SIGTERM);
    std::string rest;
    char line[4096];
    while (out_ != nullptr && std::fgets(line, sizeof line, out_) != nullptr) rest += line;
    int status = 0;
    rusage ru{};
    ::wait4(pid_, &status, 0, &ru);
    maxrss_kib = ru.ru_maxrss;
    pid_ = -1;
    return rest;
  }
  ~ServerChild() {
    long ignored = 0;
    stop(ignored);
    if (out_ != nullptr) std::fclose(out_);
  }

 private:
  pid_t pid_ = -1;
  FILE* out_ = nullptr;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "Capacity of chimeraforge synth-server: N concurrent streams at R tokens/s, K tokens each;\n"
      "reports the server's lateness against its own schedule and the delivery lag, per chunk.\n"
      "Without --streams it runs the two standard loads: 1000 streams at 50 tokens/s (100 tokens)\n"
      "and 10000 streams at 5 tokens/s (20 tokens). Without --url it starts the server itself.\n\n"
      "Example:\n"
      "  ./build/bench/synth/synth_load --out bench/results/synth.jsonl\n"
      "  ./build/bench/synth/synth_load --url http://127.0.0.1:11500 --streams 200 "
      "--tokens-per-s 20 --tokens 40"};
  Config cfg;
  std::string url;
  Scenario custom;
  std::optional<int> streams;
  int server_threads = 1;
  int runs = 1;
  std::string out_path = "bench/results/synth.jsonl";
  app.add_option("--url", url, "A running synth-server (default: start one)");
  app.add_option("--api", cfg.api, "ollama (/api/chat NDJSON) or openai (/v1/chat/completions SSE)")
      ->check(CLI::IsMember({"ollama", "openai"}))
      ->capture_default_str();
  app.add_option("--streams,-n", streams, "Concurrent streams (one custom load)");
  app.add_option("--tokens-per-s", custom.tokens_per_s, "Pace of each stream")
      ->capture_default_str();
  app.add_option("--tokens", custom.tokens, "Tokens per stream")->capture_default_str();
  app.add_option("--ttft-ms", custom.ttft_ms, "Scheduled time to first token")
      ->capture_default_str();
  app.add_option("--ramp-ms", custom.ramp_ms,
                 "Spread the streams' starts over this long (default: one token interval; 0: all "
                 "at once)");
  app.add_option("--threads", cfg.threads, "Client I/O threads")->capture_default_str();
  app.add_option("--server-threads", server_threads, "Server I/O threads (when started here)")
      ->capture_default_str();
  app.add_option("--connect-concurrency", cfg.connect_concurrency, "Connects in flight at once")
      ->capture_default_str();
  bool by_token = false;
  app.add_flag("--by-token", by_token, "Also print the lateness p99 of each token index");
  app.add_option("--runs", runs, "Runs of each load")->capture_default_str();
  app.add_option("--out", out_path, "Results file (JSON lines, appended; '' for none)")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  // Both sides hold a descriptor per stream.
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &rl);
  }

  std::vector<Scenario> scenarios;
  if (streams) {
    custom.streams = *streams;
    scenarios.push_back(custom);
  } else {
    Scenario a;
    a.streams = 1000;
    a.tokens_per_s = 50;
    a.tokens = 100;
    a.ramp_ms = custom.ramp_ms;
    Scenario b;
    b.streams = 10000;
    b.tokens_per_s = 5;
    b.tokens = 20;
    b.ramp_ms = custom.ramp_ms;
    scenarios = {a, b};
  }
  for (const auto& sc : scenarios) {
    if (static_cast<rlim_t>(sc.streams) + 64 > rl.rlim_cur) {
      fmt::print(stderr, "synth_load: {} streams need as many descriptors; the limit is {}\n",
                 sc.streams, static_cast<long long>(rl.rlim_cur));
      return 2;
    }
  }

  ServerChild child;
  if (url.empty()) {
    std::string error;
    if (!child.start(server_threads, url, error)) {
      fmt::print(stderr, "synth_load: {}\n", error);
      return 1;
    }
  }
  {
    const auto scheme = url.find("://");
    std::string rest = scheme == std::string::npos ? url : url.substr(scheme + 3);
    if (const auto slash = rest.find('/'); slash != std::string::npos) rest.resize(slash);
    const auto colon = rest.rfind(':');
    if (colon == std::string::npos) {
      fmt::print(stderr, "synth_load: --url needs http://HOST:PORT, got '{}'\n", url);
      return 2;
    }
    cfg.host = rest.substr(0, colon);
    cfg.port = rest.substr(colon + 1);
  }
  if (!get_json(cfg, "/stats")) {
    fmt::print(stderr, "synth_load: {} does not answer /stats; is it a synth-server?\n", url);
    return 1;
  }

  const chimera::bench::Provenance provenance(argc, argv);
  std::ofstream out;
  if (!out_path.empty()) {
    const auto parent = std::filesystem::path(out_path).parent_path();
    if (!parent.empty()) std::filesystem::create_directories(parent);
    out.open(out_path, std::ios::app);
  }
  fmt::print("server {} ({} threads), client {} thread(s), api {}; CPU {} ({} cores)\n", url,
             server_threads, cfg.threads, cfg.api, cpu_model(),
             std::thread::hardware_concurrency());
  fmt::print(
      "{:>6} {:>6} {:>5} {:>7} | {:>7} {:>7} {:>7} | {:>7} {:>7} {:>7} | {:>9} {:>6} "
      "{:>6} {:>6} {:>5} {:>5}\n",
      "N", "tok/s", "K", "ok", "late50", "late99", "lateMax", "lag50", "lag99", "lagMax",
      "sys tok/s", "srvCPU", "cliCPU", "peak", "load", "all");
  int failures = 0;
  for (const auto& sc : scenarios) {
    for (int run = 0; run < runs; ++run) {
      const Result r = run_scenario(cfg, sc);
      failures += r.failed + r.connect_failed;
      const double ms = 1e6;
      fmt::print(
          "{:>6} {:>6} {:>5} {:>7} | {:>7.2f} {:>7.2f} {:>7.2f} | {:>7.2f} {:>7.2f} "
          "{:>7.2f} | {:>9.0f} {:>5.0f}% {:>5.0f}% {:>6} {:>5.2f} {:>4.0f}%\n",
          sc.streams, sc.tokens_per_s, sc.tokens, r.ok, pct(r.lateness, 50) / ms,
          pct(r.lateness, 99) / ms, pct(r.lateness, 100) / ms, pct(r.lag, 50) / ms,
          pct(r.lag, 99) / ms, pct(r.lag, 100) / ms, r.system_tps, r.server_cpu * 100,
          r.client_cpu * 100, r.server_peak, r.load_before, r.machine_cpu * 100);
      for (const auto& e : r.errors) fmt::print("    error: {}\n", e);
      if (by_token) {
        fmt::print("    lateness p99 by token (ms):");
        for (double v : r.p99_by_token) fmt::print(" {:.1f}", v / ms);
        fmt::print("\n");
      }
      if (out.is_open()) {
        const double ramp_ms = sc.ramp_ms < 0 ? 1000.0 / sc.tokens_per_s : sc.ramp_ms;
        json::object o{
            {"bench", "synth_load"},
            {"streams", sc.streams},
            {"tokens_per_s", sc.tokens_per_s},
            {"tokens", sc.tokens},
            {"ttft_ms", sc.ttft_ms},
            {"ramp_ms", ramp_ms},
            {"api", cfg.api},
            {"ok", r.ok},
            {"failed", r.failed + r.connect_failed},
            {"chunks", r.chunks},
            {"connect_s", r.connect_s},
            {"lateness_ms", json::object{{"p50", pct(r.lateness, 50) / ms},
                                         {"p90", pct(r.lateness, 90) / ms},
                                         {"p99", pct(r.lateness, 99) / ms},
                                         {"max", pct(r.lateness, 100) / ms},
                                         {"source", "measured: server_sent_ns - scheduled_ns"}}},
            {"first_token_lateness_ms", json::object{{"p50", pct(r.first_lateness, 50) / ms},
                                                     {"p99", pct(r.first_lateness, 99) / ms},
                                                     {"max", pct(r.first_lateness, 100) / ms}}},
            {"lateness_p99_by_token_ms",
             [&] {
               json::array a;
               for (double v : r.p99_by_token) a.push_back(v / ms);
               return a;
             }()},
            {"delivery_lag_ms", json::object{{"p50", pct(r.lag, 50) / ms},
                                             {"p90", pct(r.lag, 90) / ms},
                                             {"p99", pct(r.lag, 99) / ms},
                                             {"max", pct(r.lag, 100) / ms},
                                             {"source", "measured: t_read - server_sent_ns"}}},
            {"system_tps", r.system_tps},
            {"system_tps_scheduled", sc.streams * sc.tokens_per_s},
            {"wall_s", r.wall_s},
            {"server_cpu_share", r.server_cpu},
            {"client_cpu_share", r.client_cpu},
            {"server_streams_peak", r.server_peak},
            {"load_average_1m", r.load_before},
            {"machine_cpu_cores", r.machine_cpu},
            {"server_threads", server_threads},
            {"client_threads", cfg.threads},
            {"provenance", provenance.stamp()}};
        out << json::serialize(o) << "\n";
        out.flush();
      }
    }
  }
  long rss_kib = 0;
  const std::string last = child.stop(rss_kib);
  if (rss_kib > 0) fmt::print("server peak RSS {:.1f} MiB\n", static_cast<double>(rss_kib) / 1024);
  return failures == 0 ? 0 : 1;
}
