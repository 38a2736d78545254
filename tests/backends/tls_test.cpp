// https:// endpoints through a real nginx, started here as a TLS-terminating reverse proxy in
// front of a real llama-server (tiny model), with a CA, server and client certificates made here
// by the openssl command. Skips, saying so, when nginx or openssl is not installed
// (scripts/setup.sh installs both).
#include "backends/http_backend.hpp"
#include "support/test_support.hpp"

#include <chimera/backends/backend.hpp>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace chimera;
namespace fs = std::filesystem;
using chimera::test::LlamaServer;

std::string find_binary(const std::vector<std::string>& candidates) {
  for (const auto& c : candidates) {
    if (::access(c.c_str(), X_OK) == 0) return c;
  }
  return {};
}

int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

bool accepts(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

// A child process (argv[0] a path), killed with its parent and stopped by the destructor.
class Child {
 public:
  Child(const std::vector<std::string>& argv, const fs::path& log) {
    pid_ = ::fork();
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      std::FILE* out = std::freopen(log.c_str(), "w", stdout);
      if (out != nullptr) ::dup2(::fileno(stdout), 2);
      std::vector<char*> args;
      for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
      args.push_back(nullptr);
      ::execv(args[0], args.data());
      ::_exit(127);
    }
  }
  ~Child() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    int status = 0;
    ::waitpid(pid_, &status, 0);
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  bool running() const { return pid_ > 0 && ::waitpid(pid_, nullptr, WNOHANG) == 0; }

 private:
  pid_t pid_ = -1;
};

// Runs a shell command; true when it exits 0.
bool sh(const std::string& command) {
  return std::system(command.c_str()) == 0;
}

// The certificates, made with the openssl command in `dir`: a CA, a second CA the servers do
// not use, server certificates (good, expired, for another name) and a client certificate.
bool make_certificates(const std::string& openssl, const fs::path& dir) {
  const std::string d = dir.string();
  const std::string ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
  auto ca = [&](const std::string& name) {
    return sh(
        fmt::format("{} req -x509 {} -keyout {}/{}.key -out {}/{}.pem -days 2 -subj "
                    "'/CN=Chimeraforge test {}' >/dev/null 2>&1",
                    openssl, ec, d, name, d, name, name));
  };
  auto leaf = [&](const std::string& name, const std::string& san, int days) {
    std::ofstream(dir / (name + ".ext")) << (san.empty() ? "" : "subjectAltName=" + san + "\n");
    return sh(fmt::format(
        "{} req {} -keyout {}/{}.key -out {}/{}.csr -subj '/CN={}' "
        ">/dev/null 2>&1 && {} x509 -req -in {}/{}.csr -CA {}/ca.pem -CAkey "
        "{}/ca.key -CAcreateserial -out {}/{}.pem -days {} -extfile {}/{}.ext "
        ">/dev/null 2>&1",
        openssl, ec, d, name, d, name, name, openssl, d, name, d, d, d, name, days, d, name));
  };
  return ca("ca") && ca("other-ca") && leaf("server", "DNS:localhost,IP:127.0.0.1", 2) &&
         leaf("expired", "DNS:localhost,IP:127.0.0.1", -1) &&
         leaf("wrong-name", "DNS:wrong.example", 2) && leaf("client", "", 2);
}

// nginx in front of `upstream`: one TLS port per server certificate, and one that asks for a
// client certificate (mutual TLS). Each passes / to the upstream and /llm/ to its root, and
// /team/ too, but only with the header "X-Team: red".
struct NginxPorts {
  int good = 0, expired = 0, wrong_name = 0, mutual = 0;
};

std::string server_block(const fs::path& dir, int port, const std::string& cert, int upstream,
                         bool mutual) {
  const std::string d = dir.string();
  const std::string proxy = fmt::format(
      "proxy_http_version 1.1; proxy_set_header Connection \"\"; proxy_buffering off; ");
  return fmt::format(
      "server {{ listen 127.0.0.1:{} ssl; ssl_certificate {}/{}.pem; ssl_certificate_key "
      "{}/{}.key; {} keepalive_requests 10000; "
      "location / {{ {} proxy_pass http://127.0.0.1:{}; }} "
      "location /llm/ {{ {} proxy_pass http://127.0.0.1:{}/; }} "
      "location /team/ {{ if ($http_x_team != \"red\") {{ return 403; }} {} proxy_pass "
      "http://127.0.0.1:{}/; }} }}\n",
      port, d, cert, d, cert,
      mutual ? fmt::format("ssl_client_certificate {}/ca.pem; ssl_verify_client on;", d) : "",
      proxy, upstream, proxy, upstream, proxy, upstream);
}

void write_nginx_conf(const fs::path& dir, const NginxPorts& p, int upstream) {
  const std::string d = dir.string();
  std::ofstream conf(dir / "nginx.conf");
  conf << fmt::format(
      "daemon off; master_process off; worker_processes 1; pid {0}/nginx.pid; "
      "error_log {0}/error.log warn;\nevents {{ worker_connections 256; }}\nhttp {{ "
      "access_log off; client_body_temp_path {0}/body; proxy_temp_path {0}/proxy; "
      "fastcgi_temp_path {0}/fastcgi; uwsgi_temp_path {0}/uwsgi; scgi_temp_path {0}/scgi;\n",
      d);
  conf << server_block(dir, p.good, "server", upstream, false)
       << server_block(dir, p.expired, "expired", upstream, false)
       << server_block(dir, p.wrong_name, "wrong-name", upstream, false)
       << server_block(dir, p.mutual, "server", upstream, true) << "}\n";
}

class TlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    nginx_ = find_binary({"/usr/sbin/nginx", "/usr/bin/nginx", "/usr/local/sbin/nginx"});
    openssl_ = find_binary({"/usr/bin/openssl", "/usr/local/bin/openssl"});
    if (nginx_.empty() || openssl_.empty()) return;
    dir_ = fs::temp_directory_path() / fmt::format("chimera-tls-{}", ::getpid());
    fs::create_directories(dir_);
    if (!make_certificates(openssl_, dir_)) {
      setup_error_ = "openssl could not make the test certificates";
      return;
    }
    // The tests count tokens: the random model's end token, sampled now and then, would end a
    // reply early.
    server_ = std::make_unique<LlamaServer>(test::tiny_model(),
                                            LlamaServer::Options{.extra = {"--ignore-eos"}});
    if (!server_->ok()) {
      setup_error_ = server_->error();
      return;
    }
    ports_ = {free_port(), free_port(), free_port(), free_port()};
    write_nginx_conf(dir_, ports_, server_->port());
    nginx_process_ = std::make_unique<Child>(
        std::vector<std::string>{nginx_, "-e", (dir_ / "error.log").string(), "-p", dir_.string(),
                                 "-c", (dir_ / "nginx.conf").string()},
        dir_ / "nginx.out");
    for (int i = 0; i < 200 && !accepts(ports_.mutual); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
    if (!accepts(ports_.mutual)) setup_error_ = "nginx did not start; see " + dir_.string();
  }
  static void TearDownTestSuite() {
    nginx_process_.reset();
    server_.reset();
    if (!dir_.empty() && setup_error_.empty()) fs::remove_all(dir_);
  }

  void SetUp() override {
    if (nginx_.empty() || openssl_.empty()) {
      GTEST_SKIP() << "nginx or openssl is not installed (scripts/setup.sh installs both)";
    }
    ASSERT_TRUE(setup_error_.empty()) << setup_error_;
  }

  static std::string url(int port, const std::string& path = "") {
    return fmt::format("https://localhost:{}{}", port, path);
  }
  static std::string file(const char* name) { return (dir_ / name).string(); }

  EndpointConfig config(const std::string& u, const std::string& ca = "ca.pem") const {
    EndpointConfig cfg;
    cfg.url = u;
    cfg.kind = BackendKind::openai;
    if (!ca.empty()) cfg.tls.ca_file = file(ca.c_str());
    cfg.timeouts.first_token_ms = 30'000;
    cfg.timeouts.total_ms = 60'000;
    return cfg;
  }

  static Request chat(int n) {
    Request r;
    r.messages = {{"user", "Tell me something.", {}, {}, {}}};
    r.options.num_predict = n;
    return r;
  }

  // A request that must fail: its error, and how long it took.
  std::pair<Error, double> failure(const EndpointConfig& cfg) {
    auto b = make_backend(cfg, runtime_);
    const auto t0 = std::chrono::steady_clock::now();
    const Completion c = b->generate(chat(4));
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_FALSE(c.ok());
    return {c.error, ms};
  }

  static std::string nginx_, openssl_, setup_error_;
  static fs::path dir_;
  static NginxPorts ports_;
  static std::unique_ptr<LlamaServer> server_;
  static std::unique_ptr<Child> nginx_process_;
  Runtime runtime_{1};
};

std::string TlsTest::nginx_, TlsTest::openssl_, TlsTest::setup_error_;
fs::path TlsTest::dir_;
NginxPorts TlsTest::ports_;
std::unique_ptr<LlamaServer> TlsTest::server_;
std::unique_ptr<Child> TlsTest::nginx_process_;

TEST_F(TlsTest, StreamsThroughNginxAndReusesTheConnection) {
  auto b = make_backend(config(url(ports_.good)), runtime_);
  for (int i = 0; i < 3; ++i) {
    int tokens = 0;
    const Completion c = b->generate(chat(16), [&](const TokenEvent&) {
      ++tokens;
      return true;
    });
    ASSERT_TRUE(c.ok()) << c.error.message;
    EXPECT_EQ(c.figures.tokens_out.value_or(-1), 16);
    EXPECT_GT(tokens, 1);  // streamed, not one block
    ASSERT_TRUE(c.figures.ttft_client_ns.has_value());
    EXPECT_GT(*c.figures.ttft_client_ns, 0);
    EXPECT_EQ(c.figures.itl_ns.size(), static_cast<std::size_t>(*c.figures.chunks - 1));
  }
  auto& ep = static_cast<backends::HttpBackend&>(*b).http_endpoint();
  EXPECT_EQ(ep.connections_opened(), 1) << "nginx keeps the TLS connection alive";
}

TEST_F(TlsTest, AnAddressUrlIsCheckedAgainstTheCertificatesAddress) {
  const Completion c =
      make_backend(config(fmt::format("https://127.0.0.1:{}", ports_.good)), runtime_)
          ->generate(chat(4));
  ASSERT_TRUE(c.ok()) << c.error.message;
}

TEST_F(TlsTest, PathPrefixIsKeptOnEveryRequest) {
  auto b = make_backend(config(url(ports_.good, "/llm")), runtime_);
  const Completion c = b->generate(chat(8));
  ASSERT_TRUE(c.ok()) << c.error.message;
  EXPECT_EQ(c.figures.tokens_out.value_or(-1), 8);
  const EndpointInfo info = b->check();
  EXPECT_TRUE(info.healthy) << info.detail;
}

TEST_F(TlsTest, ExtraHeadersAreSentOnEveryRequest) {
  EndpointConfig cfg = config(url(ports_.good, "/team"));
  const auto [error, ms] = failure(cfg);
  EXPECT_EQ(error.http_status, 403) << error.message;
  cfg.headers = {{"X-Team", "red"}};
  const Completion c = make_backend(cfg, runtime_)->generate(chat(4));
  ASSERT_TRUE(c.ok()) << c.error.message;
}

TEST_F(TlsTest, WrongCaFailsFastNamingTheVerification) {
  const auto [error, ms] = failure(config(url(ports_.good), "other-ca.pem"));
  EXPECT_EQ(error.kind, ErrorKind::connect);
  EXPECT_NE(error.message.find("TLS certificate verification failed"), std::string::npos)
      << error.message;
  EXPECT_NE(error.message.find("local issuer"), std::string::npos) << error.message;
  EXPECT_LT(ms, 5'000) << "a refused certificate must not wait for a timeout";
}

TEST_F(TlsTest, SystemStoreDoesNotTrustAPrivateCa) {
  const auto [error, ms] = failure(config(url(ports_.good), ""));
  EXPECT_NE(error.message.find("TLS certificate verification failed"), std::string::npos)
      << error.message;
  EXPECT_LT(ms, 5'000);
}

TEST_F(TlsTest, WrongHostNameFailsFast) {
  const auto [error, ms] = failure(config(url(ports_.wrong_name)));
  EXPECT_NE(error.message.find("TLS certificate verification failed: hostname mismatch"),
            std::string::npos)
      << error.message;
  EXPECT_LT(ms, 5'000);
}

TEST_F(TlsTest, ExpiredCertificateFailsFast) {
  const auto [error, ms] = failure(config(url(ports_.expired)));
  EXPECT_NE(error.message.find("TLS certificate verification failed: certificate has expired"),
            std::string::npos)
      << error.message;
  EXPECT_LT(ms, 5'000);
}

TEST_F(TlsTest, InsecureSkipsVerification) {
  EndpointConfig cfg = config(url(ports_.expired), "other-ca.pem");
  cfg.tls.insecure = true;
  const Completion c = make_backend(cfg, runtime_)->generate(chat(4));
  ASSERT_TRUE(c.ok()) << c.error.message;
}

TEST_F(TlsTest, MutualTlsAcceptsTheClientCertificate) {
  EndpointConfig cfg = config(url(ports_.mutual));
  cfg.tls.client_cert = file("client.pem");
  cfg.tls.client_key = file("client.key");
  const Completion c = make_backend(cfg, runtime_)->generate(chat(4));
  ASSERT_TRUE(c.ok()) << c.error.message;
}

TEST_F(TlsTest, MutualTlsRefusesAClientWithoutCertificate) {
  const auto [error, ms] = failure(config(url(ports_.mutual)));
  EXPECT_EQ(error.kind, ErrorKind::http_status) << error.message;
  EXPECT_NE(error.message.find("400"), std::string::npos) << error.message;
  EXPECT_NE(error.message.find("SSL certificate"), std::string::npos) << error.message;
}

TEST_F(TlsTest, MutualTlsRefusesACertificateFromAnotherCa) {
  EndpointConfig cfg = config(url(ports_.mutual));
  cfg.tls.client_cert = file("other-ca.pem");  // self-signed, not issued by the server's CA
  cfg.tls.client_key = file("other-ca.key");
  const auto [error, ms] = failure(cfg);
  EXPECT_EQ(error.kind, ErrorKind::http_status) << error.message;
  EXPECT_NE(error.message.find("400"), std::string::npos) << error.message;
}

TEST_F(TlsTest, UnreadableFilesAreRefusedBeforeAnyIo) {
  EndpointConfig cfg = config(url(ports_.good), "no-such-ca.pem");
  try {
    make_backend(cfg, runtime_);
    FAIL() << "a missing CA file was accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("no-such-ca.pem"), std::string::npos) << e.what();
  }
  cfg = config(url(ports_.good));
  cfg.tls.client_cert = file("client.pem");
  EXPECT_THROW(make_backend(cfg, runtime_), std::invalid_argument);  // no key
  cfg.tls.client_key = file("client.csr");                           // not a key
  EXPECT_THROW(make_backend(cfg, runtime_), std::invalid_argument);
}

TEST_F(TlsTest, PlainHttpToATlsPortSaysSo) {
  const auto [error, ms] = failure(config(fmt::format("http://127.0.0.1:{}", ports_.good)));
  EXPECT_FALSE(error.message.empty());
}

// A port where the kernel completes the TCP handshake but nobody ever answers the TLS one.
class SilentListener {
 public:
  SilentListener() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 && ::listen(fd_, 16) == 0 &&
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
      port_ = ntohs(a.sin_port);
    }
  }
  ~SilentListener() { ::close(fd_); }
  SilentListener(const SilentListener&) = delete;
  SilentListener& operator=(const SilentListener&) = delete;
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
};

TEST_F(TlsTest, AHandshakeWithoutAnswerEndsAtTheConnectTimeout) {
  SilentListener silent;
  ASSERT_NE(silent.port(), 0);
  EndpointConfig cfg = config(url(silent.port()));
  cfg.timeouts.connect_ms = 300;
  const auto [error, ms] = failure(cfg);
  EXPECT_EQ(error.kind, ErrorKind::connect) << error.message;
  EXPECT_NE(error.message.find(url(silent.port()) + ": the TLS handshake timed out after 300 ms"),
            std::string::npos)
      << error.message;
}

TEST_F(TlsTest, CancelDuringTheHandshakeEndsTheRequest) {
  SilentListener silent;
  ASSERT_NE(silent.port(), 0);
  auto b = make_backend(config(url(silent.port())), runtime_);
  auto handle = b->start(chat(4), {}, [](Completion) {});
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // into the handshake, mostly
  handle->cancel();
  const Completion c = handle->wait();
  EXPECT_EQ(c.error.kind, ErrorKind::cancelled) << c.error.message;
  EXPECT_NE(c.error.message.find(url(silent.port())), std::string::npos) << c.error.message;
}

TEST_F(TlsTest, ARequestBodyLargerThanOneTlsRecordArrivesWhole) {
  // Some 64 KiB of prompt: written in several TLS records, several of them partial writes.
  // llama-server answers it (or refuses it as too long for its context: an HTTP answer
  // all the same, which needs the whole body read).
  Request r = chat(2);
  r.messages[0].content.clear();
  for (int i = 0; i < 8'000; ++i) r.messages[0].content += "word ";
  auto b = make_backend(config(url(ports_.good)), runtime_);
  const Completion c = b->generate(r);
  EXPECT_TRUE(c.ok() || c.error.kind == ErrorKind::http_status) << c.error.message;
  const Completion after = b->generate(chat(4));
  ASSERT_TRUE(after.ok()) << after.error.message;
}

TEST_F(TlsTest, CliGeneratesOverHttpsWithACaFile) {
  const auto run = test::run_cli(fmt::format(
      "generate --endpoint {} --backend auto --prompt hi --num-predict 4 --json --ca-file {}",
      url(ports_.good), file("ca.pem")));
  EXPECT_EQ(run.rc, 0) << run.err;
  EXPECT_NE(run.out.find("\"tokens_out\":4"), std::string::npos) << run.out;
  const auto refused = test::run_cli(fmt::format(
      "generate --endpoint {} --backend openai --prompt hi --num-predict 4", url(ports_.good)));
  EXPECT_EQ(refused.rc, 1);
  EXPECT_NE(refused.err.find("TLS certificate verification failed"), std::string::npos)
      << refused.err;
  const auto insecure = test::run_cli(
      fmt::format("generate --endpoint {} --backend openai --prompt hi --num-predict 4 --insecure",
                  url(ports_.good)));
  EXPECT_EQ(insecure.rc, 0) << insecure.err;
  EXPECT_NE(insecure.err.find("TLS verification is off"), std::string::npos) << insecure.err;
}

// A real tinyproxy, started here, as the forward proxy: CONNECT tunnels to nginx for https://,
// absolute-form requests for http://, and Basic credentials (a second instance requires them).
class ProxyTest : public TlsTest {
 protected:
  static void SetUpTestSuite() {
    TlsTest::SetUpTestSuite();
    tinyproxy_ = find_binary({"/usr/bin/tinyproxy", "/usr/sbin/tinyproxy"});
    if (tinyproxy_.empty() || !setup_error_.empty() || dir_.empty()) return;
    open_port_ = free_port();
    auth_port_ = free_port();
    open_ = start_proxy("open", open_port_, "");
    auth_ = start_proxy("auth", auth_port_, "BasicAuth chimera s3cret-proxy\n");
    for (int i = 0; i < 200 && !(accepts(open_port_) && accepts(auth_port_)); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
    if (!accepts(open_port_) || !accepts(auth_port_)) {
      proxy_error_ = "tinyproxy did not start; see " + dir_.string();
    }
  }
  static void TearDownTestSuite() {
    open_.reset();
    auth_.reset();
    TlsTest::TearDownTestSuite();
  }
  static std::unique_ptr<Child> start_proxy(const std::string& name, int port,
                                            const std::string& extra) {
    const fs::path conf = dir_ / (name + "-tinyproxy.conf");
    std::ofstream(conf) << fmt::format(
        "Port {}\nListen 127.0.0.1\nTimeout 60\nMaxClients 64\nAllow 127.0.0.1\n"
        "LogLevel Info\nLogFile \"{}/{}-tinyproxy.log\"\n{}",
        port, dir_.string(), name, extra);
    return std::make_unique<Child>(std::vector<std::string>{tinyproxy_, "-d", "-c", conf.string()},
                                   dir_ / (name + "-tinyproxy.out"));
  }
  void SetUp() override {
    TlsTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    if (tinyproxy_.empty())
      GTEST_SKIP() << "tinyproxy is not installed (scripts/setup.sh installs it)";
    ASSERT_TRUE(proxy_error_.empty()) << proxy_error_;
  }
  static std::string proxy(int port, const std::string& credentials = "") {
    return fmt::format("http://{}127.0.0.1:{}", credentials, port);
  }

  static std::string tinyproxy_, proxy_error_;
  static int open_port_, auth_port_;
  static std::unique_ptr<Child> open_, auth_;
};

std::string ProxyTest::tinyproxy_, ProxyTest::proxy_error_;
int ProxyTest::open_port_ = 0, ProxyTest::auth_port_ = 0;
std::unique_ptr<Child> ProxyTest::open_, ProxyTest::auth_;

TEST_F(ProxyTest, HttpsGoesThroughAConnectTunnel) {
  EndpointConfig cfg = config(url(ports_.good));
  cfg.proxy = proxy(open_port_);
  auto b = make_backend(cfg, runtime_);
  for (int i = 0; i < 2; ++i) {
    const Completion c = b->generate(chat(8));
    ASSERT_TRUE(c.ok()) << c.error.message;
  }
  EXPECT_EQ(static_cast<backends::HttpBackend&>(*b).http_endpoint().connections_opened(), 1);
}

TEST_F(ProxyTest, CredentialsInTheProxyUrl) {
  EndpointConfig cfg = config(url(ports_.good));
  cfg.proxy = proxy(auth_port_, "chimera:s3cret-proxy@");
  const Completion ok = make_backend(cfg, runtime_)->generate(chat(4));
  ASSERT_TRUE(ok.ok()) << ok.error.message;
  cfg.proxy = proxy(auth_port_);
  const auto [error, ms] = failure(cfg);
  EXPECT_EQ(error.kind, ErrorKind::connect) << error.message;
  EXPECT_NE(error.message.find("407"), std::string::npos) << error.message;
  EXPECT_EQ(error.message.find("s3cret-proxy"), std::string::npos) << error.message;
}

TEST_F(ProxyTest, PlainHttpGoesThroughTheProxyToo) {
  EndpointConfig cfg = config(server_->url(), "");
  cfg.proxy = proxy(auth_port_, "chimera:s3cret-proxy@");
  const Completion ok = make_backend(cfg, runtime_)->generate(chat(4));
  ASSERT_TRUE(ok.ok()) << ok.error.message;
  cfg.proxy = proxy(auth_port_);
  const auto [error, ms] = failure(cfg);
  // tinyproxy answers 407 and resets the connection without reading the request's body, so the
  // answer may be lost with the reset.
  EXPECT_TRUE(error.http_status == 407 || error.kind == ErrorKind::truncated) << error.message;
}

TEST_F(ProxyTest, EnvironmentProxiesSkipLoopbackAndNoProxy) {
  // Nothing listens on the proxy the environment names: a request that used it would fail.
  const int nowhere = free_port();
  const auto run = test::run_cli(
      fmt::format("generate --endpoint {} --backend openai --prompt hi --num-predict 4 --quiet "
                  "--ca-file {}",
                  url(ports_.good), file("ca.pem")),
      fmt::format("env HTTPS_PROXY=http://127.0.0.1:{} https_proxy= NO_PROXY= ", nowhere));
  EXPECT_EQ(run.rc, 0) << run.err;
  const auto asked = test::run_cli(
      fmt::format("generate --endpoint {} --backend openai --prompt hi --num-predict 4 --quiet "
                  "--ca-file {} --proxy http://127.0.0.1:{}",
                  url(ports_.good), file("ca.pem"), nowhere));
  EXPECT_EQ(asked.rc, 1);
  EXPECT_NE(asked.err.find("proxy"), std::string::npos) << asked.err;
}

}  // namespace
