// `chimeraforge endpoints up` and `down`, run as a user runs them: real processes, real
// llama-servers, real signals. Every test checks that no process is left behind.
#include "support/test_support.hpp"

#include <boost/json/parse.hpp>
#include <gtest/gtest.h>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <regex>
#include <sstream>
#include <thread>

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

fs::path scratch() {
  const fs::path dir =
      fs::temp_directory_path() / ("chimera-endpoints-test-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  return dir;
}

// Removes the scratch folder once every test has run.
class ScratchCleanup : public ::testing::Environment {
 public:
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(scratch(), ec);
  }
};
[[maybe_unused]] ::testing::Environment* const scratch_cleanup =
    ::testing::AddGlobalTestEnvironment(new ScratchCleanup);  // gtest owns it

// Running means: it exists and is not a zombie. A server whose parent was SIGKILLed is
// re-parented to PID 1, which may never reap it; a zombie runs nothing and holds no port.
bool running(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line)) return false;
  const auto paren = line.rfind(')');
  if (paren == std::string::npos || paren + 2 >= line.size()) return false;
  const char state = line[paren + 2];
  return state != 'Z' && state != 'X';
}

bool gone_within(pid_t pid, std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (running(pid)) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(20ms);
  }
  return true;
}

using chimera::test::CliRun;
using chimera::test::run_cli;

// `endpoints up` as a child: stdout through a pipe (read as it comes), stderr to a file.
class UpProcess {
 public:
  explicit UpProcess(std::vector<std::string> args)
      : err_(scratch() / ("up-err" + std::to_string(next_++))) {
    args.insert(args.begin(), {CHIMERA_CLI, "endpoints", "up"});
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    const std::string err = err_.string();
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) return;
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(fds[1], 1);
      const int e = ::open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      ::dup2(e, 2);
      const int in = ::open("/dev/null", O_RDONLY);
      ::dup2(in, 0);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    ::close(fds[1]);
    out_ = fds[0];
  }
  ~UpProcess() {
    // A failed test must not leave `up` behind; its servers die with it (PDEATHSIG).
    if (pid_ > 0 && !status_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    if (out_ >= 0) ::close(out_);
  }

  pid_t pid() const { return pid_; }
  std::string err() const { return slurp(err_); }

  // Reads stdout until `done(text)` holds, EOF, or the limit.
  std::string read_until(const std::function<bool(const std::string&)>& done,
                         std::chrono::milliseconds limit = 60s) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!done(out_text_) && std::chrono::steady_clock::now() < deadline) {
      pollfd p{out_, POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      char buf[4096];
      const auto n = ::read(out_, buf, sizeof buf);
      if (n <= 0) break;
      out_text_.append(buf, static_cast<std::size_t>(n));
    }
    return out_text_;
  }

  // The exit status once it has exited within the limit.
  std::optional<int> wait(std::chrono::milliseconds limit) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!status_) {
      int st = 0;
      if (::waitpid(pid_, &st, WNOHANG) == pid_) {
        status_ = st;
        break;
      }
      if (std::chrono::steady_clock::now() > deadline) break;
      std::this_thread::sleep_for(20ms);
    }
    return status_;
  }

 private:
  static inline int next_ = 0;
  fs::path err_;
  pid_t pid_ = -1;
  int out_ = -1;
  std::string out_text_;
  std::optional<int> status_;
};

std::vector<std::string> urls_in(const std::string& text) {
  static const std::regex url(R"re("url"\s*[:=]\s*"(http://127\.0\.0\.1:\d+)")re");
  static const std::regex toml_url(R"re(url = "(http://127\.0\.0\.1:\d+)")re");
  std::vector<std::string> out;
  for (const auto* re : {&toml_url, &url}) {
    for (std::sregex_iterator it(text.begin(), text.end(), *re), end; it != end; ++it) {
      out.push_back((*it)[1].str());
    }
    if (!out.empty()) break;
  }
  return out;
}

int port_of(const std::string& url) {
  return std::stoi(url.substr(url.rfind(':') + 1));
}

std::size_t count_of(const std::string& text, const std::string& needle) {
  std::size_t n = 0;
  for (auto p = text.find(needle); p != std::string::npos; p = text.find(needle, p + 1)) ++n;
  return n;
}

// The servers' pids, from the state file, checked against what `up` printed.
std::vector<pid_t> state_server_pids(const fs::path& state, pid_t up_pid,
                                     const std::vector<std::string>& urls) {
  const auto v = boost::json::parse(slurp(state));
  const auto& o = v.as_object();
  EXPECT_EQ(o.at("pid").as_int64(), up_pid);
  EXPECT_EQ(o.at("status").as_string(), "running");
  std::vector<pid_t> pids;
  const auto& servers = o.at("servers").as_array();
  EXPECT_EQ(servers.size(), urls.size());
  for (std::size_t i = 0; i < servers.size(); ++i) {
    const auto& s = servers[i].as_object();
    pids.push_back(static_cast<pid_t>(s.at("pid").as_int64()));
    if (i < urls.size()) {
      EXPECT_EQ(s.at("url").as_string(), urls[i]);
      EXPECT_EQ(s.at("port").as_int64(), port_of(urls[i]));
    }
    EXPECT_TRUE(fs::exists(std::string(s.at("log").as_string().c_str())));
  }
  return pids;
}

// Two tiny servers, gentle on a small machine; `-- --no-warmup` also checks the pass-through.
std::vector<std::string> up_args(const fs::path& state) {
  return {"--count",    "2",
          "--model",    chimera::test::tiny_model().string(),
          "--state",    state.string(),
          "--threads",  "1",
          "--ctx",      "512",
          "--parallel", "2",
          "--",         "--no-warmup"};
}

bool toml_complete(const std::string& s) {
  return count_of(s, "max_concurrency") >= 2;
}

TEST(EndpointsUp, UpPrintsThePoolAndDownStopsEverything) {
  const fs::path state = scratch() / "up-down.json";
  fs::remove(state);
  UpProcess up(up_args(state));
  ASSERT_GT(up.pid(), 0);
  const std::string out = up.read_until(toml_complete);
  ASSERT_TRUE(toml_complete(out)) << out << "\n" << up.err();
  EXPECT_TRUE(contains(out, "[[pool]]")) << out;
  EXPECT_TRUE(contains(out, "routing = \"least-outstanding\"")) << out;
  EXPECT_EQ(count_of(out, "[[pool.endpoint]]"), 2u) << out;
  EXPECT_EQ(count_of(out, "backend = \"openai\""), 2u) << out;
  EXPECT_EQ(count_of(out, "max_concurrency = 2"), 2u) << out;
  const auto urls = urls_in(out);
  ASSERT_EQ(urls.size(), 2u) << out;
  EXPECT_NE(urls[0], urls[1]);
  for (const auto& url : urls) {
    EXPECT_EQ(chimera::loopback_get(port_of(url), "/health"), 200) << url;
  }
  std::this_thread::sleep_for(100ms);  // the "running" line follows the configuration
  const std::string err = up.err();
  EXPECT_TRUE(contains(err, "[2/2]")) << err;
  EXPECT_TRUE(contains(err, "Ctrl-C")) << err;
  EXPECT_TRUE(contains(err, "endpoints down")) << err;

  ASSERT_TRUE(fs::exists(state));
  const auto pids = state_server_pids(state, up.pid(), urls);
  ASSERT_EQ(pids.size(), 2u);
  for (const pid_t p : pids) EXPECT_TRUE(running(p)) << p;

  // A second `up` on the same state file refuses while the first runs.
  const CliRun twice = run_cli("endpoints up --count 1 --model " +
                               chimera::test::tiny_model().string() + " --state " + state.string());
  EXPECT_EQ(twice.rc, 1) << twice.err;
  EXPECT_TRUE(contains(twice.err, "already running")) << twice.err;

  const CliRun down = run_cli("endpoints down --state " + state.string());
  EXPECT_EQ(down.rc, 0) << down.out << down.err;
  EXPECT_TRUE(contains(down.out, "stopped endpoints up")) << down.out;
  for (const auto& url : urls) EXPECT_TRUE(contains(down.out, url)) << down.out;

  const auto status = up.wait(5s);
  ASSERT_TRUE(status.has_value()) << "endpoints up did not exit after endpoints down";
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << *status << "\n" << up.err();
  for (const pid_t p : pids) {
    EXPECT_FALSE(running(p)) << "llama-server " << p << " outlived endpoints down";
    EXPECT_FALSE(fs::exists("/proc/" + std::to_string(p))) << p << " was not reaped by up";
  }
  EXPECT_FALSE(fs::exists(state));
  for (const auto& url : urls) EXPECT_EQ(chimera::loopback_get(port_of(url), "/health"), 0);

  const CliRun again = run_cli("endpoints down --state " + state.string());
  EXPECT_EQ(again.rc, 0);
  EXPECT_TRUE(contains(again.out, "nothing is running")) << again.out;
}

TEST(EndpointsUp, CtrlCStopsEverythingAndADeadServerIsReported) {
  const fs::path state = scratch() / "sigint.json";
  fs::remove(state);
  auto args = up_args(state);
  args.insert(args.begin(), "--json");
  UpProcess up(args);
  ASSERT_GT(up.pid(), 0);
  const auto complete = [](const std::string& s) { return contains(s, "}\n"); };
  const std::string out = up.read_until(complete);
  ASSERT_TRUE(complete(out)) << out << "\n" << up.err();
  boost::system::error_code ec;
  const auto v = boost::json::parse(out, ec);
  ASSERT_FALSE(ec) << out;
  const auto& pool = v.at("pool").as_array().at(0).as_object();
  EXPECT_EQ(pool.at("name").as_string(), "local");
  EXPECT_EQ(pool.at("routing").as_string(), "least-outstanding");
  const auto& endpoints = pool.at("endpoint").as_array();
  ASSERT_EQ(endpoints.size(), 2u);
  EXPECT_EQ(endpoints[0].at("backend").as_string(), "openai");
  EXPECT_EQ(endpoints[0].at("max_concurrency").as_int64(), 2);
  const auto urls = urls_in(out);
  ASSERT_EQ(urls.size(), 2u) << out;
  const auto pids = state_server_pids(state, up.pid(), urls);
  ASSERT_EQ(pids.size(), 2u);

  // One server dies: `up` names it and keeps the other.
  ::kill(pids[0], SIGKILL);
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (!contains(up.err(), "has died") && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(50ms);
  }
  const std::string err = up.err();
  EXPECT_TRUE(contains(err, "has died")) << err;
  EXPECT_TRUE(contains(err, urls[0])) << err;
  EXPECT_TRUE(contains(err, "signal 9")) << err;
  EXPECT_EQ(chimera::loopback_get(port_of(urls[1]), "/health"), 200);

  ::kill(up.pid(), SIGINT);
  const auto status = up.wait(5s);
  ASSERT_TRUE(status.has_value()) << "endpoints up did not exit on SIGINT";
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << *status << "\n" << up.err();
  for (const pid_t p : pids) {
    EXPECT_FALSE(fs::exists("/proc/" + std::to_string(p))) << "llama-server " << p << " is left";
  }
  EXPECT_FALSE(fs::exists(state));
}

TEST(EndpointsUp, ServersDieWhenUpIsKilled) {
  const fs::path state = scratch() / "sigkill.json";
  fs::remove(state);
  UpProcess up(up_args(state));
  ASSERT_GT(up.pid(), 0);
  const std::string out = up.read_until(toml_complete);
  ASSERT_TRUE(toml_complete(out)) << out << "\n" << up.err();
  const auto urls = urls_in(out);
  const auto pids = state_server_pids(state, up.pid(), urls);
  ASSERT_EQ(pids.size(), 2u);

  ::kill(up.pid(), SIGKILL);  // no chance to clean up: the kernel must (PR_SET_PDEATHSIG)
  ASSERT_TRUE(up.wait(5s).has_value());
  for (const pid_t p : pids) EXPECT_TRUE(gone_within(p, 5s)) << "llama-server " << p << " orphaned";

  // The state file and the logs stayed behind; `down` sees it is stale and removes them.
  ASSERT_TRUE(fs::exists(state));
  std::vector<std::string> logs;
  const auto saved = boost::json::parse(slurp(state));
  for (const auto& s : saved.at("servers").as_array()) {
    logs.emplace_back(s.at("log").as_string().c_str());
  }
  const CliRun down = run_cli("endpoints down --state " + state.string());
  EXPECT_EQ(down.rc, 0) << down.out << down.err;
  EXPECT_TRUE(contains(down.out, "stale")) << down.out;
  EXPECT_FALSE(fs::exists(state));
  for (const auto& log : logs) EXPECT_FALSE(fs::exists(log)) << log;
}

TEST(EndpointsUp, AServerThatCannotStartFailsWithItsLog) {
  const fs::path state = scratch() / "fail.json";
  fs::remove(state);
  const CliRun r =
      run_cli("endpoints up --count 2 --model " + chimera::test::tiny_model().string() +
              " --state " + state.string() + " --server /bin/false");
  EXPECT_EQ(r.rc, 1) << r.err;
  EXPECT_TRUE(contains(r.err, "failed to start")) << r.err;
  EXPECT_TRUE(contains(r.err, "exited with status 1")) << r.err;
  EXPECT_FALSE(fs::exists(state));
}

TEST(EndpointsUp, BadFlagsExitTwoNamingTheFlag) {
  const std::string model = chimera::test::tiny_model().string();
  const fs::path text = scratch() / "not-a-model.gguf";
  std::ofstream(text) << "this is not a model\n";
  struct Case {
    std::string args;
    std::vector<std::string> says;
  };
  const std::vector<Case> cases = {
      {"--count 0 --model " + model, {"--count", "at least 1"}},
      {"--count -3 --model " + model, {"--count"}},
      {"--count 2 --model /no/such/model.gguf", {"--model", "/no/such/model.gguf"}},
      {"--count 2 --model " + text.string(), {"--model", "GGUF"}},
      {"--count 2 --model " + scratch().string(), {"--model", "not a file"}},
      {"--count 2 --model " + model + " --port 70000", {"--port", "70000"}},
      {"--count 2 --model " + model + " --port 0", {"--port"}},
      {"--count 2 --model " + model + " --port 65535", {"--port", "65536"}},
      {"--count 2 --model " + model + " --parallel 0", {"--parallel"}},
      {"--count 2 --model " + model + " --server /no/such/llama-server", {"--server"}},
      {"--model " + model, {"--count"}},
      {"--count 2", {"--model"}},
  };
  for (const auto& c : cases) {
    const CliRun r = run_cli("endpoints up " + c.args);
    EXPECT_EQ(r.rc, 2) << c.args << "\n" << r.err;
    for (const auto& s : c.says) EXPECT_TRUE(contains(r.err, s)) << c.args << "\n" << r.err;
  }
  const CliRun help = run_cli("endpoints up --help");
  EXPECT_EQ(help.rc, 0);
  for (const char* s :
       {"--count", "--model", "--port", "--state", "Example", "endpoints down", "Ctrl-C"}) {
    EXPECT_TRUE(contains(help.out, s)) << s << "\n" << help.out;
  }
  const CliRun down_help = run_cli("endpoints down --help");
  EXPECT_EQ(down_help.rc, 0);
  EXPECT_TRUE(contains(down_help.out, "--state")) << down_help.out;

  const CliRun nothing = run_cli("endpoints down --state " + (scratch() / "none.json").string());
  EXPECT_EQ(nothing.rc, 0) << nothing.err;
  EXPECT_TRUE(contains(nothing.out, "nothing is running")) << nothing.out;

  // A file that is not a state file is neither used nor deleted.
  const CliRun foreign = run_cli("endpoints down --state " + text.string());
  EXPECT_EQ(foreign.rc, 1);
  EXPECT_TRUE(contains(foreign.err, "not a state file")) << foreign.err;
  EXPECT_TRUE(fs::exists(text));
  fs::remove(text);
}

}  // namespace

namespace {

// `--server ollama` with a stand-in: Ollama cannot be installed here (no package in Debian, no
// network), so a script named `ollama` on a PATH of the test's own runs `chimeraforge
// synth-server`, which speaks Ollama's API (/api/version, /api/chat), on the port its
// OLLAMA_HOST names, and writes down what it was given (its arguments, OLLAMA_HOST,
// OLLAMA_MODELS, OLLAMA_NUM_PARALLEL) so the test can check how it was started.
TEST(EndpointsUp, OllamaInstancesFromPathWithTheirOwnPorts) {
  const fs::path bin = scratch() / "ollama-bin";
  fs::create_directories(bin);
  const fs::path seen = scratch() / "ollama-seen";
  fs::create_directories(seen);
  {
    std::ofstream script(bin / "ollama");
    script << "#!/bin/sh\n"
              "# A stand-in for Ollama, which cannot be installed on this machine.\n"
              "port=${OLLAMA_HOST##*:}\n"
              "echo \"$* host=$OLLAMA_HOST models=$OLLAMA_MODELS parallel=$OLLAMA_NUM_PARALLEL\" > "
           << seen.string()
           << "/$port\n"
              "exec "
           << CHIMERA_CLI << " synth-server --port \"$port\"\n";
  }
  fs::permissions(bin / "ollama", fs::perms::owner_all);
  const char* old_path = std::getenv("PATH");
  const std::string saved = old_path != nullptr ? old_path : "";
  const char* old_models = std::getenv("OLLAMA_MODELS");
  const std::string saved_models = old_models != nullptr ? old_models : "";
  ::setenv("PATH", (bin.string() + ":" + saved).c_str(), 1);
  ::setenv("OLLAMA_MODELS", "/srv/models-shared", 1);
  const fs::path state = scratch() / "ollama.json";
  fs::remove(state);
  UpProcess up({"--server", "ollama", "--count", "2", "--model", "gemma3:latest", "--parallel", "2",
                "--state", state.string()});
  ::setenv("PATH", saved.c_str(), 1);
  if (old_models != nullptr) {
    ::setenv("OLLAMA_MODELS", saved_models.c_str(), 1);
  } else {
    ::unsetenv("OLLAMA_MODELS");
  }
  ASSERT_GT(up.pid(), 0);
  const std::string out = up.read_until(toml_complete);
  ASSERT_TRUE(toml_complete(out)) << out << "\n" << up.err();
  EXPECT_EQ(count_of(out, "backend = \"ollama\""), 2u) << out;
  EXPECT_EQ(count_of(out, "model = \"gemma3:latest\""), 2u) << out;
  const auto urls = urls_in(out);
  ASSERT_EQ(urls.size(), 2u) << out;
  EXPECT_NE(urls[0], urls[1]);
  for (const auto& url : urls) {
    EXPECT_EQ(chimera::loopback_get(port_of(url), "/api/version"), 200) << url;
    const std::string how = slurp(seen / std::to_string(port_of(url)));
    EXPECT_TRUE(contains(how, "serve host=127.0.0.1:" + std::to_string(port_of(url)))) << how;
    EXPECT_TRUE(contains(how, "models=/srv/models-shared parallel=2")) << how;
  }
  const auto pids = state_server_pids(state, up.pid(), urls);
  ASSERT_EQ(pids.size(), 2u);
  const CliRun down = run_cli("endpoints down --state " + state.string());
  EXPECT_EQ(down.rc, 0) << down.out << down.err;
  const auto status = up.wait(10s);
  ASSERT_TRUE(status.has_value()) << "endpoints up did not exit after endpoints down";
  for (const pid_t p : pids) EXPECT_TRUE(gone_within(p, 5s)) << p;
  EXPECT_FALSE(fs::exists(state));
}

// No `ollama` on PATH: a clear error before anything starts; and llama-server's flags that
// Ollama takes per request are refused.
TEST(EndpointsUp, OllamaMissingOrGivenLlamaServerFlags) {
  const fs::path empty = scratch() / "empty-path";
  fs::create_directories(empty);
  const CliRun r = run_cli(
      "endpoints up --server ollama --count 2 --state " + (scratch() / "none.json").string(),
      "PATH=" + empty.string() + " ");
  EXPECT_EQ(r.rc, 1) << r.err;
  EXPECT_TRUE(contains(r.err, "--server ollama: no `ollama` executable on PATH")) << r.err;
  const CliRun g = run_cli("endpoints up --server ollama --count 2 --gpu-layers 80");
  EXPECT_EQ(g.rc, 2) << g.err;
  EXPECT_TRUE(contains(g.err, "--gpu-layers has no meaning for `--server ollama`")) << g.err;
}

}  // namespace
