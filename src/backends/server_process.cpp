#include <chimera/backends/server_process.hpp>

#include <fmt/format.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

namespace chimera {

int loopback_get(int port, const std::string& path, std::string* body, int timeout_ms) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return 0;
  }
  const std::string req =
      "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
  if (::send(fd, req.data(), req.size(), MSG_NOSIGNAL) < 0) {
    ::close(fd);
    return 0;
  }
  std::string resp;
  char buf[8192];
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (std::chrono::steady_clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    const auto n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    resp.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  int status = 0;
  if (resp.rfind("HTTP/1.", 0) == 0 && resp.size() > 12) status = std::atoi(resp.c_str() + 9);
  if (body != nullptr) {
    const auto pos = resp.find("\r\n\r\n");
    *body = pos == std::string::npos ? "" : resp.substr(pos + 4);
  }
  return status;
}

const char* default_llama_server() { return CHIMERA_LLAMA_SERVER; }

int free_loopback_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  const int port = ntohs(addr.sin_port);
  ::close(fd);
  return port;
}

ServerProcess::ServerProcess(ServerOptions o) {
  port_ = o.port > 0 ? o.port : free_loopback_port();
  const std::string binary = o.binary.empty() ? default_llama_server() : o.binary;
  log_ = (std::filesystem::temp_directory_path() /
          fmt::format("chimera-llama-server-{}-{}.log", ::getpid(), port_))
             .string();
  std::vector<std::string> args = {binary, "-m", o.model, "--host", "127.0.0.1",
                                   "--port", std::to_string(port_), "-c", std::to_string(o.ctx),
                                   "-np", std::to_string(o.parallel), "-ngl",
                                   std::to_string(o.gpu_layers), "--no-webui"};
  if (o.threads > 0) {
    args.push_back("-t");
    args.push_back(std::to_string(o.threads));
  }
  args.insert(args.end(), o.extra.begin(), o.extra.end());
  pid_ = ::fork();
  if (pid_ == 0) {
    const int fd = ::open(log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
      ::dup2(fd, 1);
      ::dup2(fd, 2);
    }
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    std::fprintf(stderr, "cannot run %s: %s\n", argv[0], std::strerror(errno));
    ::_exit(127);
  }
  if (pid_ < 0) {
    error_ = fmt::format("cannot start {}: fork failed: {}", binary, std::strerror(errno));
    return;
  }
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(o.ready_timeout_ms);
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      error_ = fmt::format("llama-server exited before it was ready; its log:\n{}", log_tail());
      return;
    }
    if (loopback_get(port_, "/health", nullptr, 500) == 200) {  // 503 while loading
      ok_ = true;
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  error_ = fmt::format("llama-server was not ready after {} ms; its log:\n{}", o.ready_timeout_ms,
                       log_tail());
  stop();
}

ServerProcess::~ServerProcess() {
  stop();
  std::error_code ec;
  std::filesystem::remove(log_, ec);
}

void ServerProcess::stop() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGTERM);
  for (int i = 0; i < 100; ++i) {
    if (::waitpid(pid_, nullptr, WNOHANG) == pid_) {
      pid_ = -1;
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  kill();
}

void ServerProcess::kill() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  ::waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

std::string ServerProcess::url() const { return fmt::format("http://127.0.0.1:{}", port_); }

std::string ServerProcess::log_tail(std::size_t bytes) const {
  std::ifstream in(log_);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string s = ss.str();
  return s.size() > bytes ? s.substr(s.size() - bytes) : s;
}

}  // namespace chimera
