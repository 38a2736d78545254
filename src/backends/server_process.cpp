#include <chimera/backends/server_process.hpp>
#include <chimera/core/install_paths.hpp>

#include <fmt/format.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <system_error>
#include <thread>

extern char** environ;  // NOLINT: POSIX

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

const char* default_llama_server() {
  // Resolved once: the path outlives every caller, and the environment is read at first use.
  static const std::string path = llama_server_path().string();
  return path.c_str();
}

int free_loopback_port() {
  // Unchecked, a failed socket() or bind() (no descriptors left, say) returned port 0, which
  // the caller then handed to llama-server or a URL as if it were a real port.
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::system_error(errno, std::generic_category(), "free_loopback_port: socket");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    const int err = errno;
    ::close(fd);
    throw std::system_error(err, std::generic_category(), "free_loopback_port: bind");
  }
  const int port = ntohs(addr.sin_port);
  ::close(fd);
  return port;
}

ServerProcess::ServerProcess(ServerOptions o) {
  port_ = o.port > 0 ? o.port : free_loopback_port();
  ready_path_ = o.ready_path;
  name_ = o.name;
  const std::string binary = !o.command.empty() ? o.command[0]
                             : o.binary.empty() ? default_llama_server()
                                                : o.binary;
  log_ = (std::filesystem::temp_directory_path() /
          fmt::format("chimera-{}-{}-{}.log", o.command.empty() ? "llama-server" : "server",
                      ::getpid(), port_))
             .string();
  std::vector<std::string> args = {binary,
                                   "-m",
                                   o.model,
                                   "--host",
                                   "127.0.0.1",
                                   "--port",
                                   std::to_string(port_),
                                   "-c",
                                   std::to_string(o.ctx),
                                   "-np",
                                   std::to_string(o.parallel),
                                   "-ngl",
                                   std::to_string(o.gpu_layers),
                                   "--no-webui"};
  if (o.threads > 0) {
    args.push_back("-t");
    args.push_back(std::to_string(o.threads));
  }
  args.insert(args.end(), o.extra.begin(), o.extra.end());
  if (!o.command.empty()) args = o.command;
  // The environment, with `env` over it, made before fork() like everything else.
  std::vector<std::string> env_text;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string_view entry(*e);
    const auto name = entry.substr(0, entry.find('='));
    bool replaced = false;
    for (const auto& add : o.env) {
      if (std::string_view(add).substr(0, add.find('=')) == name) replaced = true;
    }
    if (!replaced) env_text.emplace_back(entry);
  }
  env_text.insert(env_text.end(), o.env.begin(), o.env.end());
  std::vector<char*> envp;
  for (auto& e : env_text) envp.push_back(e.data());
  envp.push_back(nullptr);
  // Everything the child touches is made before fork(): in a program with threads, the child may
  // only make async-signal-safe calls (no malloc) until it execs.
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  const std::string exec_failed = fmt::format("cannot run {}: ", binary);
  const pid_t parent = ::getpid();
  pid_ = ::fork();
  if (pid_ == 0) {
    // Die with the parent, even when it is killed with SIGKILL. If it died before prctl took
    // effect we are already an orphan (getppid() changed): go now.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    if (o.own_process_group) ::setpgid(0, 0);
    // The parent may block signals it waits for with sigtimedwait(); the mask survives exec, and
    // a server that cannot receive SIGTERM cannot shut down in order.
    sigset_t none;
    ::sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    if (const int in = ::open("/dev/null", O_RDONLY); in >= 0) ::dup2(in, 0);
    const int fd = ::open(log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
      ::dup2(fd, 1);
      ::dup2(fd, 2);
    }
    ::execve(argv[0], argv.data(), envp.data());
    const char* why = std::strerror(errno);
    (void)!::write(2, exec_failed.data(), exec_failed.size());
    (void)!::write(2, why, std::strlen(why));
    (void)!::write(2, "\n", 1);
    ::_exit(127);
  }
  if (pid_ < 0) {
    error_ = fmt::format("cannot start {}: fork failed: {}", binary, std::strerror(errno));
    return;
  }
  if (o.own_process_group) ::setpgid(pid_, pid_);  // also here, so no signal finds it half-done
  ready_timeout_ms_ = o.ready_timeout_ms;
  ready_deadline_ =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(o.ready_timeout_ms);
  if (!o.wait_until_ready) return;
  while (!poll_ready()) std::this_thread::sleep_for(std::chrono::milliseconds(25));
}

bool ServerProcess::poll_ready() {
  if (ok_ || pid_ <= 0) return true;
  if (!running()) return true;
  if (loopback_get(port_, ready_path_, nullptr, 500) == 200) {  // 503 while loading
    ok_ = true;
    return true;
  }
  if (std::chrono::steady_clock::now() < ready_deadline_) return false;
  error_ = fmt::format("{} was not ready after {} ms{}", name_, ready_timeout_ms_, log_note());
  stop();
  return true;
}

bool ServerProcess::running() {
  if (pid_ <= 0) return false;
  int status = 0;
  const pid_t r = ::waitpid(pid_, &status, WNOHANG);
  if (r == 0) return true;
  if (r == pid_) {
    reaped(status, ok_ ? "while it was running" : "before it was ready");
  } else {  // not our child any more (SIGCHLD ignored elsewhere): it is gone all the same
    pid_ = -1;
    ok_ = false;
    error_ = fmt::format("{} on port {} is gone (waitpid: {})", name_, port_, std::strerror(errno));
  }
  return false;
}

void ServerProcess::reaped(int wait_status, const char* when) {
  std::string how = "exited";
  if (WIFEXITED(wait_status) && WEXITSTATUS(wait_status) != 0) {
    how = fmt::format("exited with status {}", WEXITSTATUS(wait_status));
  } else if (WIFSIGNALED(wait_status)) {
    how = fmt::format("was killed by signal {} ({})", WTERMSIG(wait_status),
                      ::strsignal(WTERMSIG(wait_status)));
  }
  pid_ = -1;
  ok_ = false;
  error_ = fmt::format("{} {} {}{}", name_, how, when, log_note());
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

std::string ServerProcess::url() const {
  return fmt::format("http://127.0.0.1:{}", port_);
}

std::string ServerProcess::log_note() const {
  const std::string tail = log_tail();
  if (tail.empty()) return fmt::format("; its log ({}) is empty", log_);
  return "; its log:\n" + tail;
}

std::string ServerProcess::log_tail(std::size_t bytes) const {
  std::ifstream in(log_);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string s = ss.str();
  return s.size() > bytes ? s.substr(s.size() - bytes) : s;
}

}  // namespace chimera
