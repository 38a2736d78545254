// A loopback HTTP server that answers every request with bytes the fuzzer chose.
//
// The HTTP response targets drive the real client (Beast's parser as the client configures it,
// then the backends' decoders) over a real socket, because that is the only way into that code
// that a user's server also takes. No real server sends arbitrary bytes on demand, so this one
// does: it reads one whole request (headers and a Content-Length body), writes `response`,
// and closes its side, so a response without framing ends at the close and no input can make
// the client wait for a timeout.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

namespace chimera::fuzz {

class LoopbackServer {
 public:
  LoopbackServer() {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (listen_fd_ < 0 || ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), len) != 0 ||
        ::listen(listen_fd_, 64) != 0 ||
        ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      std::perror("loopback server: cannot listen on 127.0.0.1");
      std::abort();
    }
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { serve(); });
    thread_.detach();  // lives as long as the fuzzing process
  }

  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

  // What every following request is answered with.
  void set_response(std::string response) {
    std::lock_guard lock(mu_);
    response_ = std::move(response);
  }

 private:
  void serve() {
    for (;;) {
      const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EINTR || errno == ECONNABORTED) continue;
        std::perror("loopback server: accept");
        std::abort();
      }
      answer(fd);
      ::close(fd);
    }
  }

  // Reads the request (so that closing sends FIN, not RST over unread bytes), then answers.
  void answer(int fd) {
    timeval tv{.tv_sec = 5, .tv_usec = 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    std::string in;
    char buf[8192];
    std::size_t need = std::string::npos;
    while (need == std::string::npos || in.size() < need) {
      const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) return;  // the client gave up or a connection check closed it
      in.append(buf, static_cast<std::size_t>(n));
      if (need == std::string::npos) {
        const auto end = in.find("\r\n\r\n");
        if (end == std::string::npos) continue;
        need = end + 4 + content_length(std::string_view(in).substr(0, end));
      }
    }
    std::string response;
    {
      std::lock_guard lock(mu_);
      response = response_;
    }
    std::string_view out = response;
    while (!out.empty()) {
      const ssize_t n = ::send(fd, out.data(), out.size(), MSG_NOSIGNAL);
      if (n <= 0) return;
      out.remove_prefix(static_cast<std::size_t>(n));
    }
    ::shutdown(fd, SHUT_WR);
  }

  static std::size_t content_length(std::string_view head) {
    for (std::size_t pos = 0; (pos = head.find('\n', pos)) != std::string_view::npos;) {
      ++pos;
      constexpr std::string_view key = "content-length:";
      if (head.size() - pos < key.size()) break;
      bool match = true;
      for (std::size_t i = 0; i < key.size() && match; ++i) {
        match = (head[pos + i] | 0x20) == key[i];
      }
      if (match) return std::strtoull(head.data() + pos + key.size(), nullptr, 10);
    }
    return 0;
  }

  int listen_fd_ = -1;
  int port_ = 0;
  std::thread thread_;
  std::mutex mu_;
  std::string response_;
};

}  // namespace chimera::fuzz
