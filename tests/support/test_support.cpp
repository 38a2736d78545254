#include "support/test_support.hpp"

#include <chimera/model/synth.hpp>

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
#include <fstream>
#include <sstream>
#include <thread>

namespace chimera::test {

int free_loopback_port() { return chimera::free_loopback_port(); }

std::filesystem::path tiny_model() {
  const std::filesystem::path dir = CHIMERA_TEST_MODEL_DIR;
  const auto path = dir / "tiny-seed42.gguf";
  if (std::filesystem::exists(path)) return path;
  std::filesystem::create_directories(dir);
  model::SynthOptions o;
  o.preset = "tiny";
  o.output = path;
  o.seed = 42;
  const auto r = model::synthesize(o);
  if (!r.ok) throw std::runtime_error("cannot write the tiny test model: " + r.error);
  return path;
}

LlamaServer::LlamaServer(const std::filesystem::path& model, Options options) {
  ServerOptions o;
  o.model = model.string();
  o.parallel = options.parallel;
  o.ctx = options.ctx;
  o.threads = 2;
  o.extra = {"--no-warmup", "--cache-ram", "0"};
  o.extra.insert(o.extra.end(), options.extra.begin(), options.extra.end());
  process_ = std::make_unique<ServerProcess>(std::move(o));
}

int http_get(int port, const std::string& path, std::string* body, int timeout_ms) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return 0;
  }
  const std::string req = "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
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
  if (body) {
    const auto pos = resp.find("\r\n\r\n");
    *body = pos == std::string::npos ? "" : resp.substr(pos + 4);
  }
  return status;
}

bool valid_utf8(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    int n = 0;
    if (c < 0x80) n = 0;
    else if ((c >> 5) == 0x6 && c >= 0xC2) n = 1;
    else if ((c >> 4) == 0xE) n = 2;
    else if ((c >> 3) == 0x1E && c <= 0xF4) n = 3;
    else return false;
    if (i + static_cast<std::size_t>(n) >= s.size()) return false;  // a cut-off sequence
    for (int k = 1; k <= n; ++k) {
      if ((static_cast<unsigned char>(s[i + k]) >> 6) != 0x2) return false;
    }
    i += static_cast<std::size_t>(n) + 1;
  }
  return true;
}

}  // namespace chimera::test
