// `chimeraforge serve`, run as a user runs it (a real process on a free port), with real clients
// (curl, Python's httpx, a raw socket) in front and real backends behind it: a llama-server and
// the in-process engine, both on the tiny synthetic model.
#include "support/test_support.hpp"

#include <chimera/serve/server.hpp>
#include <chimera/synth/server.hpp>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <memory>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

namespace fs = std::filesystem;
namespace json = boost::json;
using namespace std::chrono_literals;

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// A `chimeraforge serve` process on a free port: started with --port 0, ready once it printed
// its URL; killed by the destructor if it is still running.
class ServeProcess {
 public:
  explicit ServeProcess(const std::vector<std::string>& args) {
    int out[2];
    if (::pipe(out) != 0) return;
    err_path_ = fs::temp_directory_path() / ("chimera-serve-test-" + std::to_string(::getpid()) +
                                             "-" + std::to_string(counter_++) + ".err");
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(out[1], 1);
      const int err = ::open(err_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      ::dup2(err, 2);
      const int null = ::open("/dev/null", O_RDONLY);
      ::dup2(null, 0);
      std::vector<std::string> all{CHIMERA_CLI, "serve", "--port", "0"};
      all.insert(all.end(), args.begin(), args.end());
      std::vector<char*> argv;
      for (auto& a : all) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(CHIMERA_CLI, argv.data());
      ::_exit(127);
    }
    ::close(out[1]);
    out_fd_ = out[0];
    // Its first line names the URL.
    const std::regex listening(R"(serve listening on https?://127\.0\.0\.1:(\d+))");
    const auto deadline = std::chrono::steady_clock::now() + 120s;
    while (std::chrono::steady_clock::now() < deadline) {
      std::smatch m;
      if (std::regex_search(out_, m, listening)) {
        port_ = std::stoi(m[1]);
        return;
      }
      // A quiet second is a slow start (a model loading on a busy machine), not an end: only
      // the pipe's end (the process exited) stops the wait before the deadline.
      if (!read_some(1000) && closed_) break;
    }
  }
  ~ServeProcess() {
    if (pid_ > 0 && !exited_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    if (out_fd_ >= 0) ::close(out_fd_);
    std::error_code ec;
    fs::remove(err_path_, ec);
  }
  ServeProcess(const ServeProcess&) = delete;
  ServeProcess& operator=(const ServeProcess&) = delete;

  bool ok() const { return port_ > 0; }
  int port() const { return port_; }
  pid_t pid() const { return pid_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  std::string output() {
    while (read_some(0)) {
    }
    return out_;
  }
  std::string errors() const {
    std::ifstream in(err_path_);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  // Its exit code after it exits (waits up to `limit`); -1 when it did not exit normally.
  int wait_exit(std::chrono::seconds limit) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        exited_ = true;
        output();
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      }
      read_some(50);
    }
    return -1;
  }

 private:
  bool read_some(int timeout_ms) {
    pollfd p{out_fd_, POLLIN, 0};
    if (::poll(&p, 1, timeout_ms) <= 0) return false;
    char buf[4096];
    const ssize_t n = ::read(out_fd_, buf, sizeof buf);
    if (n <= 0) {
      closed_ = true;
      return false;
    }
    out_.append(buf, static_cast<std::size_t>(n));
    return true;
  }

  static inline int counter_ = 0;
  pid_t pid_ = -1;
  int out_fd_ = -1;
  int port_ = 0;
  bool exited_ = false;
  bool closed_ = false;  // its standard output reached its end
  std::string out_;
  fs::path err_path_;
};

// A shell command's standard output (and error).
std::string run(const std::string& cmd) {
  std::string out;
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  if (p == nullptr) return out;
  char buf[4096];
  std::size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  ::pclose(p);
  return out;
}

std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) {
    if (c == '\'') {
      q += "'\\''";
    } else {
      q += c;
    }
  }
  return q + "'";
}

struct CurlResult {
  int status = 0;
  std::string body;
};
// curl as a user runs it: -N (no buffering), the body as given; the status from -w.
CurlResult curl(const std::string& url, const std::string& body = {},
                const std::string& extra = {}) {
  std::string cmd = "curl -sS -N --max-time 120 " + extra + " -w '\\n%{http_code}' ";
  if (!body.empty()) cmd += "-H 'Content-Type: application/json' -d " + shell_quote(body) + " ";
  cmd += shell_quote(url);
  std::string out = run(cmd);
  CurlResult r;
  const auto nl = out.rfind('\n');
  if (nl == std::string::npos) return {0, out};
  r.status = std::atoi(out.c_str() + nl + 1);
  r.body = out.substr(0, nl);
  return r;
}

// The JSON objects of an SSE body's data lines, [DONE] left out (and counted).
std::vector<json::object> sse_events(const std::string& body, int* done = nullptr) {
  std::vector<json::object> out;
  std::istringstream in(body);
  std::string line;
  while (std::getline(in, line)) {
    if (!line.starts_with("data: ")) continue;
    const std::string data = line.substr(6);
    if (data == "[DONE]") {
      if (done) ++*done;
      continue;
    }
    boost::system::error_code ec;
    auto v = json::parse(data, ec);
    if (!ec && v.is_object()) out.push_back(v.get_object());
  }
  return out;
}

std::vector<json::object> ndjson_lines(const std::string& body) {
  std::vector<json::object> out;
  std::istringstream in(body);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    boost::system::error_code ec;
    auto v = json::parse(line, ec);
    if (!ec && v.is_object()) out.push_back(v.get_object());
  }
  return out;
}

// A raw client: writes a request and reads what comes, so that a test can stop reading, close
// the connection mid-stream, or read to the end.
class RawClient {
 public:
  // `receive_buffer` (bytes, 0: the kernel's default) caps what the kernel takes in for it
  // while it does not read.
  explicit RawClient(int port, int receive_buffer = 0) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    if (receive_buffer > 0) {
      ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof receive_buffer);
    }
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      ::close(fd_);
      fd_ = -1;
    }
  }
  ~RawClient() { close(); }
  bool ok() const { return fd_ >= 0; }
  void post(const std::string& path, const std::string& body, const std::string& headers = {}) {
    const std::string req =
        "POST " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n" +
        headers + "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
    (void)::send(fd_, req.data(), req.size(), MSG_NOSIGNAL);
  }
  void send(const std::string& bytes) {
    (void)::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
  }
  // Reads until `needle` has arrived (true) or the connection ends or `limit` passes (false).
  bool read_until(const std::string& needle, std::chrono::seconds limit = 120s) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!contains(got_, needle)) {
      if (std::chrono::steady_clock::now() >= deadline) return false;
      if (!read_some(200) && eof_) return false;
    }
    return true;
  }
  // Reads until the server closes the connection (true) or `limit` passes.
  bool read_to_end(std::chrono::seconds limit = 120s) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!eof_) {
      if (std::chrono::steady_clock::now() >= deadline) return false;
      read_some(200);
    }
    return true;
  }
  const std::string& got() const { return got_; }
  void clear() { got_.clear(); }
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  bool read_some(int timeout_ms) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, timeout_ms) <= 0) return false;
    char buf[4096];
    const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    if (n <= 0) {
      eof_ = true;
      return false;
    }
    got_.append(buf, static_cast<std::size_t>(n));
    return true;
  }

  int fd_ = -1;
  bool eof_ = false;
  std::string got_;
};

// Runs a Python script with Debian's python3 (which has httpx); returns what it printed.
std::string python(const std::string& script, const std::string& url) {
  const fs::path file =
      fs::temp_directory_path() / ("chimera-serve-httpx-" + std::to_string(::getpid()) + ".py");
  {
    std::ofstream out(file);
    out << script;
  }
  std::string out = run("/usr/bin/python3 " + file.string() + " " + url);
  fs::remove(file);
  return out;
}

constexpr const char* kHttpxStream = R"(
import json, sys, httpx
url = sys.argv[1]
body = {"model": "x", "messages": [{"role": "user", "content": "Hello"}], "stream": True,
        "max_tokens": 6, "stream_options": {"include_usage": True}}
chunks, done, usage = [], False, None
with httpx.Client(timeout=120) as c:
    with c.stream("POST", url + "/v1/chat/completions", json=body) as r:
        assert r.status_code == 200, r.status_code
        assert r.headers["content-type"].startswith("text/event-stream"), r.headers
        for line in r.iter_lines():
            line = line.rstrip("\r\n")  # httpx 0.23 keeps the line ending
            if not line.startswith("data: "):
                continue
            data = line[6:]
            if data == "[DONE]":
                done = True
                continue
            ev = json.loads(data)
            if ev.get("usage"):
                usage = ev["usage"]
            for ch in ev["choices"]:
                if ch["delta"].get("content"):
                    chunks.append(ch["delta"]["content"])
    whole = c.post(url + "/v1/completions", json={"prompt": "Once", "max_tokens": 4}).json()
print(json.dumps({"chunks": len(chunks), "done": done, "usage": usage,
                  "whole_finish": whole["choices"][0]["finish_reason"],
                  "whole_tokens": whole["usage"]["completion_tokens"]}))
)";

void expect_httpx_stream(const std::string& url) {
  const std::string out = python(kHttpxStream, url);
  boost::system::error_code ec;
  auto v = json::parse(
      out.substr(out.rfind('{', out.find_last_of('}')) == std::string::npos ? 0 : out.find('{')),
      ec);
  ASSERT_FALSE(ec) << out;
  const auto& o = v.as_object();
  // Streamed: one chunk per token, except that a token ending inside a UTF-8 character is held
  // back and sent with the next (text is always whole characters). The random model samples
  // such byte tokens now and then, so a reply of 6 tokens may come in fewer chunks.
  EXPECT_GE(o.at("chunks").as_int64(), 2) << out;
  EXPECT_LE(o.at("chunks").as_int64(), 6) << out;
  EXPECT_TRUE(o.at("done").as_bool()) << out;
  EXPECT_EQ(o.at("usage").as_object().at("completion_tokens").as_int64(), 6) << out;
  EXPECT_EQ(o.at("whole_finish").as_string(), "length") << out;
  EXPECT_EQ(o.at("whole_tokens").as_int64(), 4) << out;
}

// The sum of a counter's samples whose labels include every one of `labels`.
double metric_sum(const std::string& text, const std::string& name,
                  const std::vector<std::string>& labels) {
  double sum = 0;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#' || !line.starts_with(name)) continue;
    const auto sp = line.rfind(' ');
    const std::string series = line.substr(0, sp);
    if (series != name && !series.starts_with(name + "{")) continue;
    bool all = true;
    for (const auto& l : labels) all = all && contains(series, l);
    if (all) sum += std::stod(line.substr(sp + 1));
  }
  return sum;
}

const std::string kChat = R"({"messages":[{"role":"user","content":"Hello"}]})";

// ---- in front of the in-process engine -------------------------------------------------------

class ServeInProcess : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    server_ = new ServeProcess({"--model", chimera::test::tiny_model().string(), "--name", "tiny",
                                "--parallel", "4", "--model-threads", "2", "--body-limit", "4096"});
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  void SetUp() override { ASSERT_TRUE(server_->ok()) << server_->output() << server_->errors(); }
  static inline ServeProcess* server_ = nullptr;
};

TEST_F(ServeInProcess, CurlStreamsAnOpenAIChatAsServerSentEvents) {
  const auto r = curl(server_->url() + "/v1/chat/completions",
                      R"({"model":"tiny","messages":[{"role":"user","content":"Hello"}],)"
                      R"("stream":true,"max_tokens":5,"stream_options":{"include_usage":true}})");
  ASSERT_EQ(r.status, 200) << r.body;
  int done = 0;
  const auto events = sse_events(r.body, &done);
  EXPECT_EQ(done, 1) << r.body;
  int content = 0;
  std::int64_t completion_tokens = -1;
  std::string finish;
  for (const auto& ev : events) {
    EXPECT_EQ(ev.at("object").as_string(), "chat.completion.chunk");
    EXPECT_EQ(ev.at("model").as_string(), "tiny");
    if (const auto* usage = ev.if_contains("usage"); usage && usage->is_object())
      completion_tokens = usage->at("completion_tokens").as_int64();
    const auto& choices = ev.at("choices").as_array();
    if (choices.empty()) continue;  // the usage chunk
    const auto& ch = choices.at(0).as_object();
    if (ch.at("delta").as_object().contains("content")) ++content;
    if (ch.at("finish_reason").is_string()) finish = ch.at("finish_reason").as_string();
  }
  // Five tokens, one content chunk each, except that a token ending inside a UTF-8 character is
  // held back and sent with the next: the random model samples such byte tokens now and then.
  EXPECT_EQ(completion_tokens, 5) << r.body;
  EXPECT_GE(content, 2) << r.body;
  EXPECT_LE(content, 5) << r.body;
  EXPECT_EQ(finish, "length");
  EXPECT_EQ(events.front().at("choices").as_array()[0].at("delta").at("role").as_string(),
            "assistant");
}

TEST_F(ServeInProcess, HttpxStreamsAndReadsAWholeCompletion) {
  expect_httpx_stream(server_->url());
}

TEST_F(ServeInProcess, OllamaChatAndGenerateStreamAsNdjsonAndWhole) {
  auto r = curl(server_->url() + "/api/chat",
                R"({"model":"tiny","messages":[{"role":"user","content":"Hi"}],)"
                R"("options":{"num_predict":4,"temperature":0}})");
  ASSERT_EQ(r.status, 200) << r.body;
  auto lines = ndjson_lines(r.body);
  ASSERT_EQ(lines.size(), 5u) << r.body;  // four tokens and the closing line
  for (std::size_t i = 0; i + 1 < lines.size(); ++i) {
    EXPECT_FALSE(lines[i].at("done").as_bool());
    EXPECT_EQ(lines[i].at("message").at("role").as_string(), "assistant");
  }
  EXPECT_TRUE(lines.back().at("done").as_bool());
  EXPECT_EQ(lines.back().at("eval_count").as_int64(), 4);
  EXPECT_EQ(lines.back().at("done_reason").as_string(), "length");

  r = curl(server_->url() + "/api/generate",
           R"({"prompt":"Once","stream":false,"options":{"num_predict":3}})");
  ASSERT_EQ(r.status, 200) << r.body;
  const auto whole = json::parse(r.body).as_object();
  EXPECT_TRUE(whole.at("done").as_bool());
  EXPECT_FALSE(whole.at("response").as_string().empty());
  EXPECT_EQ(whole.at("eval_count").as_int64(), 3);
}

TEST_F(ServeInProcess, MalformedOrUnmappableRequestsAre400InTheProtocolsShape) {
  struct Case {
    const char* path;
    std::string body;
    const char* says;
  };
  const std::vector<Case> cases = {
      {"/v1/chat/completions", "{not json", "not valid JSON"},
      {"/v1/chat/completions", "[1,2]", "must be a JSON object"},
      {"/v1/chat/completions", R"({"messages":"hi"})", "'messages'"},
      {"/v1/chat/completions", R"({"messages":[{"content":"x"}]})", "messages[0].role"},
      {"/v1/chat/completions", kChat.substr(0, kChat.size() - 1) + R"(,"n":3})", "'n'"},
      {"/v1/chat/completions", kChat.substr(0, kChat.size() - 1) + R"(,"temperature":"hot"})",
       "'temperature'"},
      {"/v1/chat/completions", kChat.substr(0, kChat.size() - 1) + R"(,"temperature":500})",
       "temperature"},
      {"/v1/chat/completions", kChat.substr(0, kChat.size() - 1) + R"(,"logprobs":true})",
       "'logprobs'"},
      {"/v1/completions", R"({"max_tokens":3})", "'prompt'"},
      {"/api/chat", kChat.substr(0, kChat.size() - 1) + R"(,"options":{"mirostat":2}})",
       "options.mirostat"},
      {"/api/chat", kChat.substr(0, kChat.size() - 1) + R"(,"options":{"num_predict":1.5}})",
       "options.num_predict"},
      {"/api/generate", R"({"prompt":"x","images":["aGk="]})", "'images'"},
  };
  for (const auto& c : cases) {
    const auto r = curl(server_->url() + c.path, c.body);
    EXPECT_EQ(r.status, 400) << c.path << " " << c.body << "\n" << r.body;
    boost::system::error_code ec;
    auto v = json::parse(r.body, ec);
    ASSERT_FALSE(ec) << r.body;
    const bool openai = std::string_view(c.path).starts_with("/v1/");
    const json::value& err = v.as_object().at("error");
    const std::string message(openai ? err.at("message").as_string() : err.as_string());
    EXPECT_TRUE(contains(message, c.says)) << c.body << " -> " << message;
    if (openai) EXPECT_EQ(err.at("type").as_string(), "invalid_request_error");
  }
  // Over the body limit (--body-limit 4096): 413, named.
  const auto big =
      curl(server_->url() + "/api/generate", R"({"prompt":")" + std::string(8000, 'a') + R"("})");
  EXPECT_EQ(big.status, 413) << big.body;
  EXPECT_TRUE(contains(big.body, "4096")) << big.body;
  // Unknown routes and methods.
  EXPECT_EQ(curl(server_->url() + "/v2/nothing").status, 404);
  const auto get = curl(server_->url() + "/api/chat");
  EXPECT_EQ(get.status, 405) << get.body;
}

TEST_F(ServeInProcess, ListsItsModelsAndAnswersHealthAndVersion) {
  auto r = curl(server_->url() + "/v1/models");
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(json::parse(r.body).at("data").as_array().at(0).at("id").as_string(), "tiny");
  r = curl(server_->url() + "/api/tags");
  ASSERT_EQ(r.status, 200);
  const auto tag = json::parse(r.body).at("models").as_array().at(0).as_object();
  EXPECT_EQ(tag.at("name").as_string(), "tiny");
  EXPECT_GT(tag.at("size").to_number<int64_t>(), 16'000'000) << r.body;  // the tensors' bytes
  EXPECT_EQ(tag.at("details").at("family").as_string(), "llama") << r.body;
  r = curl(server_->url() + "/api/version");
  ASSERT_EQ(r.status, 200);
  EXPECT_TRUE(json::parse(r.body).as_object().contains("version"));
  EXPECT_EQ(curl(server_->url() + "/health").status, 200);
}

TEST_F(ServeInProcess, ShowDescribesTheModelFileAsOllamaDoes) {
  // Ollama clients ask /api/show before they chat (LlamaIndex reads the context length from
  // model_info, Open WebUI the capabilities); an in-process pool answers from its GGUF file.
  auto r = curl(server_->url() + "/api/show", R"({"model":"tiny"})");
  ASSERT_EQ(r.status, 200) << r.body;
  const auto show = json::parse(r.body).as_object();
  const auto& details = show.at("details").as_object();
  EXPECT_EQ(details.at("format").as_string(), "gguf") << r.body;
  EXPECT_EQ(details.at("family").as_string(), "llama") << r.body;
  EXPECT_EQ(details.at("quantization_level").as_string(), "F16") << r.body;
  EXPECT_EQ(details.at("parameter_size").as_string(), "8.6M") << r.body;
  const auto& info = show.at("model_info").as_object();
  EXPECT_EQ(info.at("general.architecture").as_string(), "llama") << r.body;
  EXPECT_EQ(info.at("general.name").as_string(), "chimera-synth-tiny") << r.body;
  // The tiny preset's shape (src/model/synthetic_model.cpp).
  EXPECT_EQ(info.at("llama.context_length").to_number<int64_t>(), 2048) << r.body;
  EXPECT_EQ(info.at("llama.embedding_length").to_number<int64_t>(), 128) << r.body;
  EXPECT_EQ(info.at("llama.block_count").to_number<int64_t>(), 2) << r.body;
  EXPECT_EQ(info.at("llama.attention.head_count").to_number<int64_t>(), 4) << r.body;
  EXPECT_EQ(info.at("llama.attention.head_count_kv").to_number<int64_t>(), 2) << r.body;
  EXPECT_GT(info.at("general.parameter_count").to_number<int64_t>(), 8'000'000) << r.body;
  // The context a sequence gets here, in Ollama's parameter text.
  EXPECT_EQ(show.at("parameters").as_string(), "num_ctx 2048") << r.body;
  EXPECT_EQ(show.at("capabilities").as_array(), json::array{"completion"}) << r.body;
  // The older "name", and any other name, as a chat naming it would be routed (the first pool).
  EXPECT_EQ(curl(server_->url() + "/api/show", R"({"name":"tiny"})").body, r.body);
  EXPECT_EQ(curl(server_->url() + "/api/show", R"({"model":"llama3.2:latest"})").body, r.body);

  // What is not a request to show a model.
  r = curl(server_->url() + "/api/show", "{}");
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_TRUE(
      contains(std::string(json::parse(r.body).at("error").as_string()), "'model' is required"))
      << r.body;
  r = curl(server_->url() + "/api/show", R"({"model":7})");
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_TRUE(contains(r.body, "'model' must be a non-empty string")) << r.body;
  r = curl(server_->url() + "/api/show", "[1,2");
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_TRUE(contains(r.body, "not a JSON object")) << r.body;
  EXPECT_EQ(curl(server_->url() + "/api/show").status, 405);
}

TEST_F(ServeInProcess, OllamasCliFindsTheServerAndItsLoadedModel) {
  // `ollama` checks the server with HEAD / first, lists loaded models with /api/ps, and loads a
  // model with an empty generate before `ollama run` sends its prompt.
  auto r = curl(server_->url() + "/", {}, "-I");
  EXPECT_EQ(r.status, 200) << r.body;
  r = curl(server_->url() + "/");
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_TRUE(contains(r.body, "running")) << r.body;
  r = curl(server_->url() + "/api/ps");
  ASSERT_EQ(r.status, 200) << r.body;
  const auto ps = json::parse(r.body).at("models").as_array();
  ASSERT_EQ(ps.size(), 1U) << r.body;
  EXPECT_EQ(ps.at(0).at("name").as_string(), "tiny") << r.body;
  EXPECT_GT(ps.at(0).at("size").to_number<int64_t>(), 16'000'000) << r.body;
  // A load is answered at once, generating nothing (no counts), streamed or not.
  for (const char* body : {R"({"model":"tiny"})", R"({"model":"tiny","stream":false})"}) {
    r = curl(server_->url() + "/api/generate", body);
    ASSERT_EQ(r.status, 200) << r.body;
    const auto v = json::parse(r.body).as_object();
    EXPECT_EQ(v.at("done_reason").as_string(), "load") << r.body;
    EXPECT_FALSE(v.contains("eval_count")) << r.body;
  }
  r = curl(server_->url() + "/api/chat", R"({"model":"tiny","keep_alive":0})");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(json::parse(r.body).at("done_reason").as_string(), "unload") << r.body;
  // The model is still there for the next request (serve keeps its models loaded).
  r = curl(server_->url() + "/api/generate",
           R"({"model":"tiny","prompt":"Hi","stream":false,"options":{"num_predict":2}})");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(json::parse(r.body).at("eval_count").to_number<int64_t>(), 2) << r.body;
}

TEST_F(ServeInProcess, OpenAIsModelRetrieveFindsEveryNameARequestWould) {
  auto r = curl(server_->url() + "/v1/models/tiny");
  ASSERT_EQ(r.status, 200) << r.body;
  auto m = json::parse(r.body).as_object();
  EXPECT_EQ(m.at("id").as_string(), "tiny") << r.body;
  EXPECT_EQ(m.at("object").as_string(), "model") << r.body;
  r = curl(server_->url() + "/v1/models/gpt-4o");  // routed to the first pool, as a chat would be
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(json::parse(r.body).at("id").as_string(), "gpt-4o") << r.body;
  r = curl(server_->url() + "/v1/models/tiny", "{}");
  EXPECT_EQ(r.status, 405) << r.body;
  EXPECT_EQ(json::parse(r.body).at("error").at("type").as_string(), "invalid_request_error");
}

TEST_F(ServeInProcess, HeadIsAnsweredWithTheHeaderAndNoBody) {
  // Two requests on one connection: if the HEAD's answer carried a body, the GET's answer would
  // not start where its Content-Length says the first ends.
  RawClient c(server_->port());
  ASSERT_TRUE(c.ok());
  c.send(
      "HEAD /api/version HTTP/1.1\r\nHost: x\r\n\r\nGET /api/version HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_TRUE(c.read_until("\"version\"")) << c.got();
  const std::string& got = c.got();
  const auto first_end = got.find("\r\n\r\n");
  ASSERT_NE(first_end, std::string::npos) << got;
  const std::string first = got.substr(0, first_end);
  EXPECT_TRUE(first.starts_with("HTTP/1.1 200")) << got;
  EXPECT_TRUE(contains(first, "Content-Length: ")) << got;
  EXPECT_FALSE(contains(first, "Content-Length: 0\r\n")) << got;  // the GET's length
  EXPECT_TRUE(got.substr(first_end + 4).starts_with("HTTP/1.1 200")) << got;
  const auto r = curl(server_->url() + "/health", {}, "-I");
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_FALSE(contains(r.body, "status")) << r.body;
}

TEST_F(ServeInProcess, AClientThatExpectsContinueGetsItBeforeItSendsTheBody) {
  // curl sends "Expect: 100-continue" with a body over 1 MiB and holds the body back until a 100
  // comes (a second otherwise): serve sends it once the head is read, then reads the body.
  const std::string body =
      R"({"model":"tiny","messages":[{"role":"user","content":"Hi"}],"max_tokens":2})";
  RawClient c(server_->port());
  ASSERT_TRUE(c.ok());
  c.send(
      "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
      "Expect: 100-continue\r\nContent-Length: " +
      std::to_string(body.size()) + "\r\n\r\n");
  ASSERT_TRUE(c.read_until("\r\n\r\n", 10s)) << c.got();
  EXPECT_TRUE(c.got().starts_with("HTTP/1.1 100 Continue\r\n\r\n")) << c.got();
  c.send(body);
  ASSERT_TRUE(c.read_until("\"finish_reason\"")) << c.got();
  EXPECT_TRUE(contains(c.got(), "HTTP/1.1 200 OK")) << c.got();
  // A body over the limit is refused from its head alone (413), without the 100.
  RawClient big(server_->port());
  ASSERT_TRUE(big.ok());
  big.send(
      "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
      "Content-Length: 100000\r\n\r\n");
  ASSERT_TRUE(big.read_until("\r\n\r\n", 10s)) << big.got();
  EXPECT_TRUE(big.got().starts_with("HTTP/1.1 413")) << big.got();
}

TEST_F(ServeInProcess, ARequestWhoseBodyComesInPiecesAfterItsHeadIsReadWhole) {
  // The head alone, then the body in two parts with pauses between: serve reads what has come
  // at once and waits for the rest, on a kept-alive connection's first and second request.
  const std::string body =
      R"({"model":"tiny","messages":[{"role":"user","content":"Hi"}],"max_tokens":2,)"
      R"("stream":true})";
  const std::string head =
      "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
      "Content-Length: " +
      std::to_string(body.size()) + "\r\n\r\n";
  RawClient c(server_->port());
  ASSERT_TRUE(c.ok());
  for (int i = 0; i < 2; ++i) {
    c.clear();
    c.send(head);
    std::this_thread::sleep_for(50ms);
    c.send(body.substr(0, 20));
    std::this_thread::sleep_for(50ms);
    c.send(body.substr(20));
    ASSERT_TRUE(c.read_until("\r\n0\r\n\r\n")) << c.got();  // the chunked body's end
    EXPECT_TRUE(c.got().starts_with("HTTP/1.1 200 OK\r\n")) << c.got();
    EXPECT_TRUE(contains(c.got(), "data: [DONE]")) << c.got();
  }
}

TEST_F(ServeInProcess, ABrowserPageOfThisMachineMayCallItAndOthersMayNot) {
  // A browser asks first (a preflight) before it lets a page of another origin send JSON, then
  // shows the page the response only when it names the page's origin.
  const std::string preflight =
      "-X OPTIONS -H 'Access-Control-Request-Method: POST' "
      "-H 'Access-Control-Request-Headers: content-type,x-stainless-os' -D - ";
  auto r = curl(server_->url() + "/v1/chat/completions", {},
                preflight + "-H 'Origin: http://localhost:8080'");
  EXPECT_EQ(r.status, 204) << r.body;
  EXPECT_TRUE(contains(r.body, "Access-Control-Allow-Origin: http://localhost:8080\r\n")) << r.body;
  EXPECT_TRUE(contains(r.body, "Access-Control-Allow-Methods: POST, OPTIONS\r\n")) << r.body;
  EXPECT_TRUE(contains(r.body, "Access-Control-Allow-Headers: content-type,x-stainless-os\r\n"))
      << r.body;
  r = curl(server_->url() + "/v1/chat/completions", {},
           preflight + "-H 'Origin: https://elsewhere.example'");
  EXPECT_EQ(r.status, 403) << r.body;
  EXPECT_TRUE(contains(r.body, "--cors-origin https://elsewhere.example")) << r.body;
  EXPECT_FALSE(contains(r.body, "Access-Control-Allow-Origin")) << r.body;

  // The streamed response itself names the page's origin; another origin's does not.
  r = curl(server_->url() + "/v1/chat/completions",
           R"({"model":"tiny","messages":[{"role":"user","content":"Hi"}],"stream":true,)"
           R"("max_tokens":2})",
           "-D - -H 'Origin: http://127.0.0.1:5173'");
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_TRUE(contains(r.body, "Access-Control-Allow-Origin: http://127.0.0.1:5173\r\n")) << r.body;
  EXPECT_TRUE(contains(r.body, "data: [DONE]")) << r.body;
  r = curl(server_->url() + "/api/tags", {}, "-D - -H 'Origin: https://elsewhere.example'");
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_FALSE(contains(r.body, "Access-Control-Allow-Origin")) << r.body;
  // Without an Origin, OPTIONS lists the route's methods.
  r = curl(server_->url() + "/api/tags", {}, "-X OPTIONS -D -");
  EXPECT_EQ(r.status, 204) << r.body;
  EXPECT_TRUE(contains(r.body, "Allow: GET, HEAD, OPTIONS\r\n")) << r.body;
}

TEST_F(ServeInProcess, ASessionKeepsItsKvCacheBetweenTurns) {
  // Turn one, then turn two extending it (the reply and a new message) under the same
  // X-Session-Id: the engine reads only what is new, and says how much came from the cache.
  auto turn = [&](const std::string& messages, const std::string& session) {
    const auto r = curl(server_->url() + "/v1/chat/completions",
                        R"({"messages":)" + messages + R"(,"max_tokens":4,"temperature":0})",
                        "-H 'X-Session-Id: " + session + "'");
    EXPECT_EQ(r.status, 200) << r.body;
    return json::parse(r.body).as_object();
  };
  const std::string first = R"([{"role":"user","content":"Tell me about the tavern"}])";
  const auto one = turn(first, "kv-keeper");
  const std::string reply(
      one.at("choices").as_array().at(0).at("message").at("content").as_string());
  const int64_t prompt_one = one.at("usage").at("prompt_tokens").as_int64();
  ASSERT_GT(prompt_one, 0);
  json::array msgs = json::parse(first).as_array();
  msgs.push_back(json::object{{"role", "assistant"}, {"content", reply}});
  msgs.push_back(json::object{{"role", "user"}, {"content", "And the innkeeper?"}});
  const std::string second = json::serialize(msgs);
  const auto two = turn(second, "kv-keeper");
  const auto& usage = two.at("usage").as_object();
  ASSERT_TRUE(usage.contains("prompt_tokens_details")) << json::serialize(two);
  const int64_t cached = usage.at("prompt_tokens_details").at("cached_tokens").as_int64();
  // At least the first turn's prompt came from the session's cells, not read again.
  EXPECT_GE(cached, prompt_one) << json::serialize(two);
  EXPECT_LT(cached, usage.at("prompt_tokens").as_int64());
  // The same second turn under a session the engine has never seen reads everything.
  const auto fresh = turn(second, "kv-stranger");
  EXPECT_EQ(fresh.at("usage").at("prompt_tokens_details").at("cached_tokens").as_int64(), 0)
      << json::serialize(fresh);
  // /metrics shows the sessions kept and the KV cells they hold.
  const auto m = curl(server_->url() + "/metrics").body;
  EXPECT_GE(metric_sum(m, "chimera_inproc_sessions_cached", {}), 2) << m;
  EXPECT_EQ(metric_sum(m, "chimera_inproc_sequences", {"state=\"total\""}), 4) << m;
  EXPECT_EQ(metric_sum(m, "chimera_inproc_sequences", {"state=\"busy\""}), 0) << m;
  EXPECT_GE(metric_sum(m, "chimera_inproc_kv_cells", {"state=\"used\""}), cached) << m;
  EXPECT_GT(metric_sum(m, "chimera_inproc_kv_cells", {"state=\"total\""}),
            metric_sum(m, "chimera_inproc_kv_cells", {"state=\"used\""}))
      << m;
}

TEST(ServeMetrics, CountsEqualTheRequestsMade) {
  ServeProcess server({"--model", chimera::test::tiny_model().string(), "--model-threads", "2"});
  ASSERT_TRUE(server.ok()) << server.output() << server.errors();
  constexpr int kStreamed = 3;
  constexpr int kWhole = 2;
  for (int i = 0; i < kStreamed; ++i) {
    ASSERT_EQ(curl(server.url() + "/v1/chat/completions",
                   R"({"messages":[{"role":"user","content":"Hi"}],"stream":true,"max_tokens":3})")
                  .status,
              200);
  }
  for (int i = 0; i < kWhole; ++i) {
    ASSERT_EQ(curl(server.url() + "/api/generate",
                   R"({"prompt":"Hi","stream":false,"options":{"num_predict":2}})")
                  .status,
              200);
  }
  ASSERT_EQ(curl(server.url() + "/api/chat", "{bad").status, 400);
  const auto r = curl(server.url() + "/metrics");
  ASSERT_EQ(r.status, 200);
  const std::string& m = r.body;
  EXPECT_EQ(metric_sum(m, "chimera_serve_http_requests_total",
                       {"path=\"/v1/chat/completions\"", "code=\"200\""}),
            kStreamed)
      << m;
  EXPECT_EQ(metric_sum(m, "chimera_serve_http_requests_total",
                       {"path=\"/api/generate\"", "code=\"200\""}),
            kWhole);
  EXPECT_EQ(
      metric_sum(m, "chimera_serve_http_requests_total", {"path=\"/api/chat\"", "code=\"400\""}),
      1);
  EXPECT_EQ(metric_sum(m, "chimera_serve_generations_total", {"outcome=\"ok\""}),
            kStreamed + kWhole);
  EXPECT_EQ(metric_sum(m, "chimera_serve_ttft_seconds_count", {}), kStreamed + kWhole);
  // Token-bearing chunks: one per token, except that a token ending inside a UTF-8 character
  // goes out with the next (text is always whole characters), so at most one per token.
  const double chunks = metric_sum(m, "chimera_serve_tokens_total", {});
  EXPECT_GE(chunks, kStreamed + kWhole) << m;
  EXPECT_LE(chunks, kStreamed * 3 + kWhole * 2) << m;
  EXPECT_EQ(metric_sum(m, "chimera_pool_endpoint_up", {}), 1);
  EXPECT_EQ(metric_sum(m, "chimera_serve_streams_active", {}), 0);
  // One pool, nothing retried or hedged: both series are there, at zero.
  EXPECT_TRUE(contains(m, "chimera_serve_retries_total{pool=")) << m;
  EXPECT_TRUE(contains(m, "chimera_serve_hedges_total{pool=")) << m;
  EXPECT_EQ(metric_sum(m, "chimera_serve_retries_total", {}) +
                metric_sum(m, "chimera_serve_hedges_total", {}),
            0);
}

// serve in-process with a shutdown grace period of `grace_ms`: an Ollama generate of
// `num_predict` tokens is streamed, SIGTERM sent once its first token is in, and the response read
// to its end and the server to its exit.
struct MidStreamShutdown {
  bool started = false;  // the stream's first token came before the signal
  std::string got;       // the response, head and body
  int exit_code = -1;
  std::string output, errors;  // the server's
};
MidStreamShutdown sigterm_mid_stream(const std::string& grace_ms, int num_predict) {
  MidStreamShutdown r;
  ServeProcess server({"--model", chimera::test::tiny_model().string(), "--model-threads", "2",
                       "--shutdown-grace-ms", grace_ms});
  if (!server.ok()) {
    ADD_FAILURE() << server.output() << server.errors();
    return r;
  }
  RawClient c(server.port());
  if (!c.ok()) {
    ADD_FAILURE() << "no connection to serve";
    return r;
  }
  c.post("/api/generate", R"({"prompt":"Once upon a time","options":{"num_predict":)" +
                              std::to_string(num_predict) + "}}");
  if (!c.read_until("\"done\":false") || ::kill(server.pid(), SIGTERM) != 0) {
    ADD_FAILURE() << c.got();
    return r;
  }
  r.started = true;
  EXPECT_TRUE(c.read_to_end()) << c.got();
  r.got = c.got();
  r.exit_code = server.wait_exit(60s);
  r.output = server.output();
  r.errors = server.errors();
  return r;
}

TEST(ServeSignals, SigtermLetsAStreamInFlightFinish) {
  // New connections are refused from the signal on; the stream in flight runs to its end.
  const auto r = sigterm_mid_stream("120000", 64);
  ASSERT_TRUE(r.started);
  EXPECT_TRUE(contains(r.got, "\"done\":true")) << r.got;
  EXPECT_TRUE(contains(r.got, "\"eval_count\":64")) << r.got;
  EXPECT_TRUE(contains(r.got, "\r\n0\r\n\r\n")) << r.got;  // the chunked body's proper end
  EXPECT_EQ(r.exit_code, 0) << r.output << r.errors;
  EXPECT_TRUE(contains(r.output, "serve stopped")) << r.output;
}

TEST(ServeSignals, TheShutdownDeadlineCutsAStreamThatOutlivesIt) {
  // No limit (-1): the reply runs until the sequence's context is full, far beyond the grace
  // period, unless the random model samples its end-of-text token first (one run of this test
  // did, 397 tokens in). Such a reply ends well within the grace period and nothing is cut:
  // that run proves nothing, and a new server (its draws seeded afresh) is asked again.
  for (int attempt = 1;; ++attempt) {
    const auto r = sigterm_mid_stream("200", -1);
    ASSERT_TRUE(r.started);
    EXPECT_EQ(r.exit_code, 0) << r.output << r.errors;
    if (contains(r.got, "\"done_reason\":\"stop\"") && attempt < 3) continue;
    // Cut: the protocol's in-stream error as the last line, then the chunked body's end.
    EXPECT_FALSE(contains(r.got, "\"done\":true")) << r.got;
    const auto lines = ndjson_lines(r.got.substr(r.got.find("\r\n\r\n")));
    ASSERT_FALSE(lines.empty()) << r.got;
    EXPECT_TRUE(contains(r.got, "{\"error\":")) << r.got;
    EXPECT_TRUE(contains(r.got, "\r\n0\r\n\r\n")) << r.got;
    EXPECT_TRUE(contains(r.output, "1 cut at the deadline")) << r.output;
    return;
  }
}

// ---- in front of a real llama-server ---------------------------------------------------------

class ServeLlamaServer : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    upstream_ = new chimera::test::LlamaServer(chimera::test::tiny_model(), {.parallel = 1});
    if (upstream_->ok()) {
      server_ = new ServeProcess({"--endpoint", upstream_->url(), "--backend", "openai"});
      relay_ = new ServeProcess({"--endpoint", upstream_->url(), "--backend", "openai", "--relay"});
    }
  }
  static void TearDownTestSuite() {
    delete relay_;
    delete server_;
    delete upstream_;
    relay_ = nullptr;
    server_ = nullptr;
    upstream_ = nullptr;
  }
  void SetUp() override {
    ASSERT_TRUE(upstream_->ok()) << upstream_->error();
    ASSERT_TRUE(server_ != nullptr && server_->ok()) << server_->output() << server_->errors();
  }
  static inline chimera::test::LlamaServer* upstream_ = nullptr;
  static inline ServeProcess* server_ = nullptr;
  static inline ServeProcess* relay_ = nullptr;  // serve --relay
};

TEST_F(ServeLlamaServer, HttpxAndCurlStreamThroughServe) {
  expect_httpx_stream(server_->url());
  const auto r = curl(server_->url() + "/v1/chat/completions",
                      R"({"messages":[{"role":"user","content":"Hello"}],"stream":true,)"
                      R"("max_tokens":4,"user":"alice"})");
  ASSERT_EQ(r.status, 200) << r.body;
  int done = 0;
  // Four tokens and the finish; a token that ends inside a UTF-8 character goes with the next.
  const auto events = sse_events(r.body, &done).size();
  EXPECT_GE(events, 2u) << r.body;
  EXPECT_LE(events, 5u) << r.body;
  EXPECT_EQ(done, 1);
}

// The generated text of an SSE body: its chat deltas' content or its completions' text.
std::string sse_text(const std::vector<json::object>& events) {
  std::string text;
  for (const auto& ev : events) {
    const auto& choices = ev.at("choices").as_array();
    if (choices.empty()) continue;
    const auto& c = choices.front().as_object();
    const json::value* t = nullptr;
    if (const auto* d = c.if_contains("delta")) t = d->as_object().if_contains("content");
    if (const auto* x = c.if_contains("text")) t = x;
    if (t != nullptr && t->is_string()) text += std::string(t->as_string());
  }
  return text;
}

// serve --relay hands a streamed OpenAI request llama-server's own events: the same text as serve
// re-encoding them, with llama-server's fields (its system_fingerprint on every event, its
// usage and timings), its usage record only when the client asked for it, one [DONE]; a
// request that is not streamed, or in Ollama's protocol, is answered as without --relay; and
// the metrics count every request.
TEST_F(ServeLlamaServer, RelayPassesLlamaServersEventsOnAsTheyCame) {
  ASSERT_TRUE(relay_ != nullptr && relay_->ok()) << relay_->output() << relay_->errors();
  for (const bool chat : {true, false}) {
    const std::string path = chat ? "/v1/chat/completions" : "/v1/completions";
    const std::string input = chat ? R"("messages":[{"role":"user","content":"Hello there"}],)"
                                   : R"("prompt":"Once upon a time",)";
    for (const bool usage : {false, true}) {
      const std::string body = "{" + input + R"("stream":true,"max_tokens":8,"temperature":0)" +
                               (usage ? R"(,"stream_options":{"include_usage":true}})" : "}");
      const auto plain = curl(server_->url() + path, body);
      const auto relayed = curl(relay_->url() + path, body);
      ASSERT_EQ(plain.status, 200) << plain.body;
      ASSERT_EQ(relayed.status, 200) << relayed.body;
      int done = 0;
      const auto events = sse_events(relayed.body, &done);
      EXPECT_EQ(done, 1) << relayed.body;
      ASSERT_GE(events.size(), 2u) << relayed.body;
      EXPECT_EQ(sse_text(events), sse_text(sse_events(plain.body))) << relayed.body;
      EXPECT_FALSE(sse_text(events).empty()) << relayed.body;
      for (const auto& ev : events) {
        EXPECT_TRUE(ev.contains("system_fingerprint")) << relayed.body;  // llama-server's
      }
      // llama-server's usage record (no choices; its timings in a chat's) only when asked for.
      // Its completions put usage and timings in the finish record instead.
      bool usage_record = false;
      bool usage_given = false;
      bool timings = false;
      const json::object* finish = nullptr;
      for (const auto& ev : events) {
        usage_record = usage_record || ev.at("choices").as_array().empty();
        usage_given = usage_given || ev.contains("usage");
        timings = timings || ev.contains("timings");
        if (!ev.at("choices").as_array().empty()) finish = &ev;
      }
      EXPECT_EQ(usage_record, usage && chat) << relayed.body;
      if (usage) {
        EXPECT_TRUE(usage_given) << relayed.body;
        EXPECT_TRUE(timings) << relayed.body;
      }
      ASSERT_NE(finish, nullptr);
      EXPECT_TRUE(finish->at("choices").as_array().at(0).at("finish_reason").is_string())
          << relayed.body;
      EXPECT_EQ(sse_events(plain.body).front().at("model").as_string(), "default");
    }
  }
  // Not streamed, and Ollama's protocol: serve's own encoding.
  const auto whole =
      curl(relay_->url() + "/v1/chat/completions",
           R"({"messages":[{"role":"user","content":"Hi"}],"max_tokens":3,"stream":false})");
  ASSERT_EQ(whole.status, 200) << whole.body;
  EXPECT_EQ(json::parse(whole.body).at("model").as_string(), "default") << whole.body;
  const auto ollama =
      curl(relay_->url() + "/api/generate", R"({"prompt":"Hi","options":{"num_predict":3}})");
  ASSERT_EQ(ollama.status, 200) << ollama.body;
  EXPECT_TRUE(ndjson_lines(ollama.body).back().at("done").as_bool()) << ollama.body;
  const auto m = curl(relay_->url() + "/metrics").body;
  EXPECT_EQ(metric_sum(m, "chimera_serve_generations_total", {"outcome=\"ok\""}), 6) << m;
}

TEST_F(ServeLlamaServer, AnOllamaClientIsServedByLlamaServer) {
  const auto r = curl(server_->url() + "/api/chat",
                      R"({"model":"llama3.2","messages":[{"role":"user","content":"Hi"}],)"
                      R"("options":{"num_predict":5,"seed":7}})",
                      "-H 'X-Session-Id: s1'");
  ASSERT_EQ(r.status, 200) << r.body;
  const auto lines = ndjson_lines(r.body);
  ASSERT_GE(lines.size(), 2u) << r.body;
  EXPECT_EQ(lines.front().at("model").as_string(), "llama3.2");
  EXPECT_TRUE(lines.back().at("done").as_bool()) << r.body;
  EXPECT_EQ(lines.back().at("eval_count").as_int64(), 5) << r.body;
  std::string text;
  for (const auto& l : lines) text += std::string(l.at("message").at("content").as_string());
  EXPECT_FALSE(text.empty());
}

TEST_F(ServeLlamaServer, DisconnectMidStreamFreesTheUpstreamSlot) {
  {
    RawClient c(server_->port());
    ASSERT_TRUE(c.ok());
    // No limit: the slot would decode until its context is full.
    c.post("/v1/completions", R"({"prompt":"Once upon a time","max_tokens":-1,"stream":true})");
    ASSERT_TRUE(c.read_until("data: {")) << c.got();
    EXPECT_FALSE(chimera::test::slots_idle(upstream_->port()));
  }  // the client goes away
  bool idle = false;
  for (int i = 0; i < 300 && !idle; ++i) {
    idle = chimera::test::slots_idle(upstream_->port());
    if (!idle) std::this_thread::sleep_for(100ms);
  }
  EXPECT_TRUE(idle) << "llama-server's slot still processing after the client left";
  const auto m = curl(server_->url() + "/metrics").body;
  bool counted = false;
  for (int i = 0; i < 100 && !counted; ++i) {
    counted = metric_sum(curl(server_->url() + "/metrics").body, "chimera_serve_generations_total",
                         {"outcome=\"client_gone\""}) == 1;
    if (!counted) std::this_thread::sleep_for(50ms);
  }
  EXPECT_TRUE(counted) << m;
}

TEST(ServeUpstream, AnUpstreamThatCannotBeReachedIsAnHttpErrorBeforeTheFirstByte) {
  // A port nothing listens on (the listener is closed before serve starts).
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  const int dead_port = ntohs(a.sin_port);
  ::close(fd);
  ServeProcess server({"--endpoint", "http://127.0.0.1:" + std::to_string(dead_port), "--backend",
                       "openai", "--retry-attempts", "1"});
  ASSERT_TRUE(server.ok()) << server.output() << server.errors();
  auto r = curl(server.url() + "/v1/chat/completions",
                R"({"messages":[{"role":"user","content":"Hi"}],"stream":true})");
  EXPECT_EQ(r.status, 502) << r.body;
  EXPECT_TRUE(contains(r.body, "\"error\"")) << r.body;
  r = curl(server.url() + "/api/chat", R"({"messages":[{"role":"user","content":"Hi"}]})");
  EXPECT_EQ(r.status, 502) << r.body;
  EXPECT_TRUE(json::parse(r.body).at("error").is_string()) << r.body;
}

TEST(ServeShow, AModelWhoseTemplateCallsToolsSaysSo) {
  // Qwen 2.5's template shows tools and its tool calls are parsed: clients that check the
  // capability before they send tools (Open WebUI's native tool calling) send them.
  ServeProcess server({"--model", chimera::test::tool_model().string(), "--name", "toolful"});
  ASSERT_TRUE(server.ok()) << server.output() << server.errors();
  const auto r = curl(server.url() + "/api/show", R"({"model":"toolful"})");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(json::parse(r.body).at("capabilities").as_array(), (json::array{"completion", "tools"}))
      << r.body;
}

TEST(ServeShow, AModelWhoseTemplateThinksSaysSo) {
  // Qwen 3's template turns the model's reasoning on and off (a request's `think`).
  ServeProcess server({"--model", chimera::test::qwen2_model("Qwen-Qwen3-0.6B").string()});
  ASSERT_TRUE(server.ok()) << server.output() << server.errors();
  const auto r = curl(server.url() + "/api/show", R"({"model":"any"})");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(json::parse(r.body).at("capabilities").as_array(),
            (json::array{"completion", "tools", "thinking"}))
      << r.body;
}

TEST(ServeCors, OriginsMatchExactlyOrOnAnyPortOrAll) {
  using chimera::serve::cors_allows;
  const std::vector<std::string> local = chimera::serve::Options{}.cors_origins;
  for (const char* o : {"http://localhost", "http://localhost:3000", "https://127.0.0.1:8443",
                        "http://[::1]:8080"}) {
    EXPECT_TRUE(cors_allows(local, o)) << o;
  }
  for (const char* o : {"", "null", "http://localhost.evil.example", "http://localhost:80x",
                        "http://localhost:", "https://game.example", "http://127.0.0.1.nip.io"}) {
    EXPECT_FALSE(cors_allows(local, o)) << o;
  }
  EXPECT_TRUE(cors_allows({"https://game.example"}, "https://game.example"));
  EXPECT_FALSE(cors_allows({"https://game.example"}, "https://game.example:8443"));
  EXPECT_FALSE(cors_allows({"https://game.example"}, "http://game.example"));
  EXPECT_TRUE(cors_allows({"*"}, "https://anything.example"));
  EXPECT_FALSE(cors_allows({}, "http://localhost:3000"));
  // What is not an origin is refused when serve starts, naming it.
  for (const char* bad : {"localhost:3000", "http://host/", "http://host/path", "http://a b",
                          "https://x.example,https://y.example"}) {
    chimera::serve::Options o;
    o.cors_origins = {bad};
    EXPECT_TRUE(contains(chimera::serve::validate(o), std::string("'") + bad + "'")) << bad;
  }
}

TEST(ServeCors, TheOriginsGivenReplaceTheDefaultAndNoneTurnsItOff) {
  const std::string preflight =
      "-X OPTIONS -H 'Access-Control-Request-Method: POST' -D - -H 'Origin: ";
  ServeProcess game({"--endpoint", "http://127.0.0.1:9", "--backend", "openai", "--cors-origin",
                     "https://game.example"});
  ASSERT_TRUE(game.ok()) << game.output() << game.errors();
  auto r = curl(game.url() + "/api/chat", {}, preflight + "https://game.example'");
  EXPECT_EQ(r.status, 204) << r.body;
  EXPECT_TRUE(contains(r.body, "Access-Control-Allow-Origin: https://game.example\r\n")) << r.body;
  EXPECT_EQ(curl(game.url() + "/api/chat", {}, preflight + "http://localhost:3000'").status, 403);
  ServeProcess closed(
      {"--endpoint", "http://127.0.0.1:9", "--backend", "openai", "--cors-origin", "none"});
  ASSERT_TRUE(closed.ok()) << closed.output() << closed.errors();
  EXPECT_EQ(curl(closed.url() + "/api/chat", {}, preflight + "http://localhost:3000'").status, 403);
  ServeProcess any(
      {"--endpoint", "http://127.0.0.1:9", "--backend", "openai", "--cors-origin", "*"});
  ASSERT_TRUE(any.ok()) << any.output() << any.errors();
  r = curl(any.url() + "/api/chat", {}, preflight + "https://anything.example'");
  EXPECT_EQ(r.status, 204) << r.body;
  EXPECT_TRUE(contains(r.body, "Access-Control-Allow-Origin: *\r\n")) << r.body;
}

TEST(ServeUpstream, ShowOfAPoolInFrontOfServersNamesNoMoreThanItKnows) {
  // serve does not ask its upstreams what they run: the answer is Ollama's shape with the
  // completion capability and no model facts, so that a client reading it gets no error.
  ServeProcess server({"--endpoint", "http://127.0.0.1:9", "--backend", "openai", "--name", "up"});
  ASSERT_TRUE(server.ok()) << server.output() << server.errors();
  const auto r = curl(server.url() + "/api/show", R"({"model":"up"})");
  ASSERT_EQ(r.status, 200) << r.body;
  const auto show = json::parse(r.body).as_object();
  EXPECT_TRUE(show.at("model_info").as_object().empty()) << r.body;
  EXPECT_EQ(show.at("details").at("format").as_string(), "") << r.body;
  EXPECT_EQ(show.at("capabilities").as_array(), json::array{"completion"}) << r.body;
}

TEST(ServeUpstream, AClientLeavingAKeptAliveConnectionIsNoticedBeforeTheFirstToken) {
  // serve watches a client's connection for its close while a response is in progress, on every
  // request of a kept-alive connection: here the client streams one answer from a quick pool,
  // then asks a pool whose server never sends a first token, and leaves. The request is
  // cancelled then, not when a token would find the connection gone (never, here).
  chimera::synth::Options quick;
  quick.tokens = 3;
  quick.tokens_per_s = 1000;
  chimera::synth::Options silent = quick;
  silent.fault.kind = chimera::synth::FaultKind::stall;  // after 0 tokens: silent, kept open
  chimera::synth::SynthServer a(quick);
  chimera::synth::SynthServer b(silent);
  a.start();
  b.start();
  const fs::path pools =
      fs::temp_directory_path() / ("chimera-serve-pools-" + std::to_string(::getpid()) + ".toml");
  {
    std::ofstream out(pools);
    out << "[[pool]]\nname = \"quick\"\n[[pool.endpoint]]\nurl = \"" << a.url()
        << "\"\nbackend = \"openai\"\n\n[[pool]]\nname = \"silent\"\n[[pool.endpoint]]\nurl = \""
        << b.url() << "\"\nbackend = \"openai\"\n";
  }
  ServeProcess server({"--pools", pools.string()});
  ASSERT_TRUE(server.ok()) << server.output() << server.errors();
  const auto gone = [&] {
    return metric_sum(curl(server.url() + "/metrics").body, "chimera_serve_generations_total",
                      {"outcome=\"client_gone\""});
  };
  {
    RawClient c(server.port());
    ASSERT_TRUE(c.ok());
    for (int i = 1; i <= 5; ++i) {
      c.post("/v1/chat/completions",
             R"({"model":"quick","messages":[{"role":"user","content":"Hi"}],"stream":true})");
      ASSERT_TRUE(c.read_until("chatcmpl-" + std::to_string(i), 10s)) << c.got();
      ASSERT_TRUE(c.read_until("data: [DONE]\n\n\r\n0\r\n\r\n", 10s)) << c.got();
      c.clear();
    }
    c.post("/v1/chat/completions",
           R"({"model":"silent","messages":[{"role":"user","content":"Hi"}],"stream":true})");
    for (int i = 0; i < 100 && b.stats().streams_active == 0; ++i) {
      std::this_thread::sleep_for(20ms);
    }
    ASSERT_EQ(b.stats().streams_active, 1) << "the second request never reached its server";
    EXPECT_EQ(gone(), 0);
  }  // the client goes away
  bool counted = false;
  for (int i = 0; i < 200 && !counted; ++i) {
    counted = gone() == 1;
    if (!counted) std::this_thread::sleep_for(50ms);
  }
  EXPECT_TRUE(counted) << "the client's close was not noticed";
  bool freed = false;
  for (int i = 0; i < 200 && !freed; ++i) {
    freed = b.stats().streams_active == 0;
    if (!freed) std::this_thread::sleep_for(50ms);
  }
  EXPECT_TRUE(freed) << "the upstream request was not cancelled";
  fs::remove(pools);
}

TEST(ServeUpstream, HedgesAreCountedApartFromRetries) {
  // Two upstreams slow to their first token: past --hedge-after-ms the request goes to the second
  // as well (a hedge, not a retry: nothing failed).
  chimera::synth::Options so;
  so.ttft_ms = 400;
  so.tokens = 3;
  so.tokens_per_s = 200;
  chimera::synth::SynthServer a(so);
  chimera::synth::SynthServer b(so);
  a.start();
  b.start();
  ServeProcess server({"--endpoint", a.url(), "--endpoint", b.url(), "--backend", "openai",
                       "--hedge-after-ms", "50"});
  ASSERT_TRUE(server.ok()) << server.output() << server.errors();
  const auto r = curl(server.url() + "/v1/chat/completions", kChat);
  ASSERT_EQ(r.status, 200) << r.body;
  const auto m = curl(server.url() + "/metrics").body;
  EXPECT_EQ(metric_sum(m, "chimera_serve_hedges_total", {}), 1) << m;
  EXPECT_EQ(metric_sum(m, "chimera_serve_retries_total", {}), 0) << m;
}

TEST(ServeUpstream, AStreamToAClientThatReadsLateArrivesWholeAndInOrder) {
  // A client that reads nothing until the upstream has sent every token: the client's receive
  // buffer is small and serve's send buffer fills (about 9 MB of records against the kernel's
  // 4 MB at most), so writes that the socket does not take whole wait for the client, and
  // records that arrive meanwhile queue behind them. The stream must still arrive whole, in
  // order, and end properly.
  // The buffer is small, not tiny: one under a loopback segment (64 KiB), such as 4 KiB, stalls
  // TCP itself now and then, whatever the sender does: the receiver, avoiding silly windows,
  // advertises no window until a segment's worth is free, and the sender falls back to probing
  // the zero window every 200 ms or more, a couple of KiB a probe (`ss -i`: the sending
  // socket's persist timer, rwnd_limited 100%), so that the last megabytes took minutes.
  constexpr int kTokens = 50000;
  chimera::synth::Options so;
  so.tokens = kTokens;
  so.tokens_per_s = 200000;
  chimera::synth::SynthServer up(so);
  up.start();
  ServeProcess server({"--endpoint", up.url(), "--backend", "openai"});
  ASSERT_TRUE(server.ok()) << server.output() << server.errors();
  RawClient c(server.port(), 256 * 1024);
  ASSERT_TRUE(c.ok());
  c.post("/v1/chat/completions",
         R"({"messages":[{"role":"user","content":"Hi"}],"stream":true,"max_tokens":)" +
             std::to_string(kTokens) + "}",
         "Connection: close\r\n");
  const auto deadline = std::chrono::steady_clock::now() + 120s;
  while (up.stats().tokens_sent < kTokens && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(50ms);
  }
  ASSERT_EQ(up.stats().tokens_sent, kTokens);
  ASSERT_TRUE(c.read_to_end()) << c.got().substr(0, 300);
  const std::string& got = c.got();
  ASSERT_TRUE(got.starts_with("HTTP/1.1 200 ")) << got.substr(0, 300);
  EXPECT_TRUE(got.ends_with("data: [DONE]\n\n\r\n0\r\n\r\n")) << got.substr(got.size() - 300);
  // Each chunk is one record, so the records can be read from the chunked body as it came.
  const std::regex token(R"re("content":"tok(\d+) ")re");
  int expected = 1;
  for (auto it = std::sregex_iterator(got.begin(), got.end(), token); it != std::sregex_iterator();
       ++it) {
    ASSERT_EQ(std::stoi((*it)[1]), expected) << "records out of order or missing";
    ++expected;
  }
  EXPECT_EQ(expected - 1, kTokens);
}

// Streams that end together give their upstream connections back together: serve keeps up to
// --upstream-idle of them open (256 by default) for the requests that follow, where a client
// library's default of 16 closed the rest and made the next wave connect again.
TEST(ServeUpstream, ConnectionsOfStreamsThatEndTogetherAreKeptForTheNext) {
  constexpr int kStreams = 40;
  chimera::synth::Options so;
  so.tokens = 40;
  so.tokens_per_s = 50;  // 0.8 s a stream: a wave's streams are all open at once
  // The upstream connections the second wave opened, and the first wave's streams at once.
  auto waves = [&](const std::vector<std::string>& extra) {
    chimera::synth::SynthServer up(so);
    up.start();
    std::vector<std::string> args{"--endpoint", up.url(), "--backend", "openai"};
    args.insert(args.end(), extra.begin(), extra.end());
    ServeProcess server(args);
    EXPECT_TRUE(server.ok()) << server.output() << server.errors();
    const std::string body = R"({"messages":[{"role":"user","content":"Hi"}],"stream":true})";
    int64_t after_first = 0;
    int64_t first_peak = 0;
    for (int wave = 0; wave < 2; ++wave) {
      std::vector<std::future<CurlResult>> streams;
      for (int i = 0; i < kStreams; ++i) {
        streams.push_back(std::async(
            std::launch::async, [&] { return curl(server.url() + "/v1/chat/completions", body); }));
      }
      for (auto& f : streams) EXPECT_EQ(f.get().status, 200);
      if (wave == 0) {
        after_first = up.stats().connections_accepted;
        first_peak = up.stats().streams_peak;
      }
    }
    return std::pair{up.stats().connections_accepted - after_first, first_peak};
  };
  const auto [kept_new, peak] = waves({});
  // The first wave had many streams at once; the second found their connections kept (a few
  // more at most, where it had more streams at once than the first).
  EXPECT_GE(peak, kStreams / 2);
  EXPECT_LE(kept_new, kStreams / 4)
      << "the second wave connected again (first wave: " << peak << " streams at once)";
  const auto [closed_new, closed_peak] = waves({"--upstream-idle", "0"});
  EXPECT_GE(closed_new, kStreams) << "with --upstream-idle 0 every request connects";
}

TEST(ServeKeys, KeysFromTheCommandLineOrTheEnvironmentAreRequired) {
  const std::string body = R"({"messages":[{"role":"user","content":"Hi"}],"max_tokens":2})";
  {
    ServeProcess server({"--model", chimera::test::tiny_model().string(), "--accept-key",
                         "sk-first", "--accept-key", "sk-second"});
    ASSERT_TRUE(server.ok()) << server.output() << server.errors();
    const std::string url = server.url() + "/v1/chat/completions";
    EXPECT_EQ(curl(url, body).status, 401);
    EXPECT_EQ(curl(url, body, "-H 'Authorization: Bearer sk-third'").status, 401);
    EXPECT_EQ(curl(url, body, "-H 'Authorization: Bearer sk-first'").status, 200);
    EXPECT_EQ(curl(url, body, "-H 'Authorization: Bearer sk-second'").status, 200);
  }
  {
    ::setenv("CHIMERA_SERVE_ACCEPT_KEY", "sk-from-env", 1);
    ServeProcess server({"--model", chimera::test::tiny_model().string()});
    ::unsetenv("CHIMERA_SERVE_ACCEPT_KEY");
    ASSERT_TRUE(server.ok()) << server.output() << server.errors();
    const std::string url = server.url() + "/api/chat";
    EXPECT_EQ(curl(url, body).status, 401);
    EXPECT_EQ(curl(url, body, "-H 'Authorization: Bearer sk-from-env'").status, 200);
  }
}

TEST(ServeKeys, KeysAreRequiredAndTheirLimitsHold) {
  const fs::path keys =
      fs::temp_directory_path() / ("chimera-serve-keys-" + std::to_string(::getpid()) + ".toml");
  {
    std::ofstream out(keys);
    out << "[[key]]\nkey = \"sk-one-at-a-time\"\nname = \"solo\"\nmax_concurrency = 1\n\n"
           "[[key]]\nkey = \"sk-two-a-minute\"\nname = \"slow\"\nrequests_per_minute = 2\n";
  }
  ServeProcess server({"--model", chimera::test::tiny_model().string(), "--model-threads", "2",
                       "--keys", keys.string()});
  ASSERT_TRUE(server.ok()) << server.output() << server.errors();
  const std::string url = server.url() + "/v1/chat/completions";
  const std::string body = R"({"messages":[{"role":"user","content":"Hi"}],"max_tokens":2})";
  // No key, or one the server does not know: 401 in the protocol's shape.
  auto r = curl(url, body);
  EXPECT_EQ(r.status, 401) << r.body;
  EXPECT_TRUE(contains(r.body, "authentication_error")) << r.body;
  r = curl(server.url() + "/api/generate", R"({"prompt":"x"})",
           "-H 'Authorization: Bearer sk-wrong'");
  EXPECT_EQ(r.status, 401) << r.body;
  EXPECT_TRUE(json::parse(r.body).at("error").is_string()) << r.body;
  // Two requests a minute: the third is refused, with Retry-After.
  const std::string slow = "-H 'Authorization: Bearer sk-two-a-minute'";
  EXPECT_EQ(curl(url, body, slow).status, 200);
  EXPECT_EQ(curl(url, body, slow).status, 200);
  r = curl(url, body, slow + " -i");
  EXPECT_EQ(r.status, 429) << r.body;
  EXPECT_TRUE(contains(r.body, "Retry-After:")) << r.body;
  EXPECT_TRUE(contains(r.body, "per minute")) << r.body;
  // One request at a time: a second while the first streams is refused; after it, admitted.
  const std::string solo = "-H 'Authorization: Bearer sk-one-at-a-time'";
  RawClient c(server.port());
  ASSERT_TRUE(c.ok());
  c.post("/api/generate", R"({"prompt":"Once","options":{"num_predict":400}})",
         "Authorization: Bearer sk-one-at-a-time\r\n");
  ASSERT_TRUE(c.read_until("\"done\":false")) << c.got();
  r = curl(url, body, solo);
  EXPECT_EQ(r.status, 429) << r.body;
  EXPECT_TRUE(contains(r.body, "in flight")) << r.body;
  ASSERT_TRUE(c.read_until("\"done\":true")) << c.got();
  EXPECT_EQ(curl(url, body, solo).status, 200);
  fs::remove(keys);
}

// ---- TLS on the listening side --------------------------------------------------------------

TEST(ServeTls, CurlStreamsOverTlsCheckingTheServersCertificate) {
  if (!fs::exists("/usr/bin/openssl")) GTEST_SKIP() << "openssl is not installed";
  const fs::path dir =
      fs::temp_directory_path() / ("chimera-serve-tls-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string d = dir.string();
  const std::string ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
  // A CA, and the server's certificate for 127.0.0.1 signed by it.
  std::ofstream(dir / "server.ext") << "subjectAltName=DNS:localhost,IP:127.0.0.1\n";
  run("/usr/bin/openssl req -x509 " + ec + " -keyout " + d + "/ca.key -out " + d +
      "/ca.pem -days 2 -subj '/CN=Chimeraforge serve test CA' && /usr/bin/openssl req " + ec +
      " -keyout " + d + "/server.key -out " + d + "/server.csr -subj '/CN=127.0.0.1' && " +
      "/usr/bin/openssl x509 -req -in " + d + "/server.csr -CA " + d + "/ca.pem -CAkey " + d +
      "/ca.key -CAcreateserial -out " + d + "/server.pem -days 2 -extfile " + d + "/server.ext");
  ASSERT_TRUE(fs::exists(dir / "server.pem") && fs::exists(dir / "server.key"));

  ServeProcess server({"--model", chimera::test::tiny_model().string(), "--model-threads", "2",
                       "--tls-cert", d + "/server.pem", "--tls-key", d + "/server.key"});
  ASSERT_TRUE(server.ok()) << server.output() << server.errors();
  EXPECT_TRUE(contains(server.output(), "https://127.0.0.1:")) << server.output();
  const std::string url = "https://127.0.0.1:" + std::to_string(server.port());
  auto r = curl(url + "/v1/chat/completions",
                R"({"messages":[{"role":"user","content":"Hi"}],"stream":true,"max_tokens":3})",
                "--cacert " + d + "/ca.pem");
  ASSERT_EQ(r.status, 200) << r.body;
  int done = 0;
  // Three tokens and the finish; a token that ends inside a UTF-8 character goes with the next.
  const auto events = sse_events(r.body, &done).size();
  EXPECT_GE(events, 2u) << r.body;
  EXPECT_LE(events, 4u) << r.body;
  EXPECT_EQ(done, 1);
  // A client that does not trust the CA refuses the server; plain HTTP gets no HTTP answer.
  r = curl(url + "/health");
  EXPECT_EQ(r.status, 0) << r.body;
  EXPECT_TRUE(contains(r.body, "certificate")) << r.body;
  r = curl(server.url() + "/health");
  EXPECT_EQ(r.status, 0) << r.body;
  // And the server goes on serving TLS clients after both.
  EXPECT_EQ(curl(url + "/health", {}, "--cacert " + d + "/ca.pem").status, 200);
  fs::remove_all(dir);
}

TEST(ServeCli, AHalfGivenTlsSettingIsAUsageError) {
  const fs::path cert =
      fs::temp_directory_path() / ("chimera-serve-cert-" + std::to_string(::getpid()) + ".pem");
  std::ofstream(cert) << "not a certificate\n";
  auto r = chimera::test::run_cli("serve --port 0 --model " + chimera::test::tiny_model().string() +
                                  " --tls-cert " + cert.string());
  EXPECT_EQ(r.rc, 2) << r.out << r.err;
  EXPECT_TRUE(contains(r.err, "--tls-key")) << r.err;
  r = chimera::test::run_cli("serve --port 0 --model " + chimera::test::tiny_model().string() +
                             " --tls-cert " + cert.string() + " --tls-key " + cert.string());
  EXPECT_NE(r.rc, 0);
  EXPECT_TRUE(contains(r.err, cert.string())) << r.err;
  fs::remove(cert);
}

TEST(ServeCli, UsageErrorsNameWhatIsWrong) {
  auto r = chimera::test::run_cli("serve --port 0");
  EXPECT_EQ(r.rc, 2);
  EXPECT_TRUE(contains(r.err, "--pools")) << r.err;
  r = chimera::test::run_cli("serve --port 0 --endpoint http://127.0.0.1:1");
  EXPECT_EQ(r.rc, 2);
  EXPECT_TRUE(contains(r.err, "--backend")) << r.err;
  const fs::path keys =
      fs::temp_directory_path() / ("chimera-serve-badkeys-" + std::to_string(::getpid()) + ".toml");
  {
    std::ofstream out(keys);
    out << "[[key]]\nkey = \"k\"\nmax_concurrency = -1\n";
  }
  r = chimera::test::run_cli("serve --port 0 --model x.gguf --keys " + keys.string());
  EXPECT_EQ(r.rc, 2);
  EXPECT_TRUE(contains(r.err, keys.string() + ":3")) << r.err;
  EXPECT_TRUE(contains(r.err, "max_concurrency")) << r.err;
  fs::remove(keys);
  // A key with a space in it, named as wrong and not printed.
  r = chimera::test::run_cli("serve --port 0 --model x.gguf --accept-key 'sk secret'");
  EXPECT_EQ(r.rc, 2);
  EXPECT_TRUE(contains(r.err, "--accept-key")) << r.err;
  EXPECT_FALSE(contains(r.err, "secret")) << r.err;
  r = chimera::test::run_cli("serve --help");
  EXPECT_EQ(r.rc, 0);
  EXPECT_TRUE(contains(r.out, "/v1/chat/completions")) << r.out;
}

TEST(ServeCli, APortInUseIsNamedWithWhatToDo) {
  chimera::synth::SynthServer holder(chimera::synth::Options{});
  holder.start();
  const std::string port = std::to_string(holder.port());
  const auto r = chimera::test::run_cli("serve --port " + port + " --endpoint " + holder.url() +
                                        " --backend openai");
  EXPECT_NE(r.rc, 0);
  const std::string all = r.out + r.err;
  EXPECT_TRUE(contains(all, "serve: cannot bind 127.0.0.1:" + port)) << all;
  EXPECT_TRUE(contains(all, "another process holds the port")) << all;
}

}  // namespace
