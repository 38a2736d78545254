// A scripted HTTP/1.1 fixture for tests (see fixture_server.hpp: it is a fixture, and why).
#include "support/fixture_server.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <random>
#include <stdexcept>

namespace chimera::test {

namespace {

using Clock = std::chrono::steady_clock;
constexpr int kTickMs = 100;  // the longest any poll waits before checking for a stop

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) {
    s.remove_suffix(1);
  }
  return std::string(s);
}

std::string json_escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(c);
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(c));
      out += buf;
    } else {
      out.push_back(c);
    }
  }
  return out;
}

std::vector<Piece> to_pieces(const std::vector<std::string>& parts, int delay_ms) {
  std::vector<Piece> out;
  out.reserve(parts.size());
  for (const auto& p : parts) out.push_back({p, delay_ms});
  return out;
}

}  // namespace

// ---- Script ------------------------------------------------------------------------------------

const char* reason_phrase(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 204:
      return "No Content";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 429:
      return "Too Many Requests";
    case 500:
      return "Internal Server Error";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    default:
      return "Status";
  }
}

Script Script::json(int status, std::string body) {
  Script s;
  s.status = status;
  s.reason = reason_phrase(status);
  s.headers = {{"Content-Type", "application/json; charset=utf-8"}};
  s.framing = Framing::content_length;
  s.pieces = {{std::move(body), 0}};
  return s;
}

Script Script::text(int status, std::string body) {
  Script s = json(status, std::move(body));
  s.headers = {{"Content-Type", "text/plain; charset=utf-8"}};
  return s;
}

Script Script::ndjson(const std::vector<std::string>& pieces, int delay_ms) {
  Script s;
  s.headers = {{"Content-Type", "application/x-ndjson"}};
  s.framing = Framing::chunked;
  s.pieces = to_pieces(pieces, delay_ms);
  return s;
}

Script Script::sse(const std::vector<std::string>& pieces, int delay_ms) {
  Script s;
  s.headers = {{"Content-Type", "text/event-stream"}, {"Cache-Control", "no-cache"}};
  s.framing = Framing::chunked;
  s.pieces = to_pieces(pieces, delay_ms);
  return s;
}

std::string Script::body() const {
  std::string out;
  for (const auto& p : pieces) out += p.bytes;
  return out;
}

Script& Script::with_delay(int delay_ms) {
  for (auto& p : pieces) p.delay_ms = delay_ms;
  return *this;
}

// ---- splitting ---------------------------------------------------------------------------------

std::vector<std::string> split_awkwardly(std::string_view body, uint32_t seed) {
  const std::size_t n = body.size();
  std::set<std::size_t> cuts;
  auto cut = [&](std::size_t p) {
    if (p > 0 && p < n) cuts.insert(p);
  };
  bool in_string = false;
  bool escaped = false;
  std::size_t string_start = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const auto c = static_cast<unsigned char>(body[i]);
    if (c == '\n') {
      // A record boundary (just after the '\n') and one byte either side; cutting at i also
      // separates a "\r\n" when the line ends with one.
      cut(i);
      cut(i + 1);
      cut(i + 2);
      if (i > 0) cut(i - 1);
    }
    if (c == '\r') cut(i + 1);  // between '\r' and whatever follows
    if (c >= 0xC0) {
      // Inside a multi-byte UTF-8 character: after its lead byte, and after its second byte
      // when it has three or four.
      cut(i + 1);
      if (c >= 0xE0) cut(i + 2);
      if (c >= 0xF0) cut(i + 3);
    }
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
        cut(i + 1);  // between a backslash and the character it escapes
      } else if (c == '"') {
        in_string = false;
        cut((string_start + i) / 2 + 1);  // in the middle of the string
      }
    } else if (c == '"') {
      in_string = true;
      string_start = i;
      cut(i + 1);  // just inside the opening quote
    }
  }
  std::mt19937 rng(seed);
  if (n > 1) {
    std::uniform_int_distribution<std::size_t> pos(1, n - 1);
    for (std::size_t k = 0; k < n / 24 + 1; ++k) cut(pos(rng));
  }
  // Every awkward place is always cut, so any seed covers all of them; the seed adds random
  // cuts on top, which move where the remaining pieces end.
  std::vector<std::string> out;
  std::size_t prev = 0;
  for (std::size_t p : cuts) {
    out.emplace_back(body.substr(prev, p - prev));
    prev = p;
  }
  if (prev < n) out.emplace_back(body.substr(prev));
  return out;
}

std::vector<std::string> split_every(std::string_view body, std::size_t n) {
  std::vector<std::string> out;
  for (std::size_t i = 0; i < body.size(); i += n) out.emplace_back(body.substr(i, n));
  return out;
}

std::string ndjson_lines(const std::vector<std::string>& records) {
  std::string out;
  for (const auto& r : records) {
    out += r;
    out += '\n';
  }
  return out;
}

// ---- ReceivedRequest ---------------------------------------------------------------------------

std::string ReceivedRequest::header(std::string_view name) const {
  const std::string key = lower(name);
  for (const auto& [k, v] : headers) {
    if (k == key) return v;
  }
  return {};
}

// ---- FixtureServer -----------------------------------------------------------------------------

FixtureServer::FixtureServer() {
  if (::pipe2(wake_, O_CLOEXEC | O_NONBLOCK) != 0) throw std::runtime_error("fixture: pipe2");
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listen_fd_ < 0) throw std::runtime_error("fixture: socket");
  int one = 1;
  ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;  // the kernel picks a free port: no race with other tests
  if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(listen_fd_, 64) != 0) {
    ::close(listen_fd_);
    throw std::runtime_error("fixture: cannot listen on 127.0.0.1");
  }
  socklen_t len = sizeof addr;
  ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
  port_ = ntohs(addr.sin_port);
  acceptor_ = std::thread([this] { accept_loop(); });
}

FixtureServer::~FixtureServer() {
  stopping_.store(true);
  const char b = 'x';
  [[maybe_unused]] auto w = ::write(wake_[1], &b, 1);  // never drained: every poll wakes
  if (acceptor_.joinable()) acceptor_.join();
  {
    std::lock_guard lock(mu_);
    // Unblocks a worker stuck in send() or recv(); it closes its own descriptor.
    for (int fd : open_fds_) ::shutdown(fd, SHUT_RDWR);
  }
  for (auto& t : workers_) {
    if (t.joinable()) t.join();
  }
  ::close(listen_fd_);
  ::close(wake_[0]);
  ::close(wake_[1]);
}

std::string FixtureServer::url() const {
  return "http://127.0.0.1:" + std::to_string(port_);
}

void FixtureServer::route(std::string method, std::string target, Script script) {
  route(std::move(method), std::move(target), std::vector<Script>{std::move(script)});
}

void FixtureServer::route(std::string method, std::string target, std::vector<Script> scripts) {
  std::lock_guard lock(mu_);
  routes_[{std::move(method), std::move(target)}] = Route{std::move(scripts), 0};
}

int FixtureServer::connections() const {
  std::lock_guard lock(mu_);
  return connections_;
}

int FixtureServer::connections_closed_by_peer() const {
  std::lock_guard lock(mu_);
  return peer_closes_;
}

std::vector<ReceivedRequest> FixtureServer::requests() const {
  std::lock_guard lock(mu_);
  return received_;
}

bool FixtureServer::wait_for_requests(std::size_t n, int timeout_ms) const {
  std::unique_lock lock(mu_);
  return cv_.wait_for(lock, std::chrono::milliseconds(timeout_ms),
                      [&] { return received_.size() >= n; });
}

bool FixtureServer::wait_for_peer_closes(int n, int timeout_ms) const {
  std::unique_lock lock(mu_);
  return cv_.wait_for(lock, std::chrono::milliseconds(timeout_ms),
                      [&] { return peer_closes_ >= n; });
}

Script FixtureServer::script_for(const std::string& method, const std::string& target) {
  std::lock_guard lock(mu_);
  auto it = routes_.find({method, target});
  if (it == routes_.end() || it->second.scripts.empty()) {
    return Script::json(404, "{\"error\":\"fixture: no route for " + json_escape(method) + " " +
                                 json_escape(target) + "\"}");
  }
  Route& r = it->second;
  const std::size_t i = std::min(r.next, r.scripts.size() - 1);
  ++r.next;
  return r.scripts[i];
}

void FixtureServer::accept_loop() {
  while (!stopping_.load()) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {wake_[0], POLLIN, 0}};
    const int rc = ::poll(fds, 2, kTickMs);
    if (rc <= 0 || (fds[1].revents & POLLIN) != 0) continue;
    if ((fds[0].revents & POLLIN) == 0) continue;
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    int one = 1;
    // Every piece goes out at once, as its own segment (tokens are tiny writes).
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    std::lock_guard lock(mu_);
    const int no = ++connections_;
    open_fds_.insert(fd);
    workers_.emplace_back([this, fd, no] { serve(fd, no); });
  }
}

void FixtureServer::note_peer_closed(int fd) {
  {
    std::lock_guard lock(mu_);
    if (!peer_closed_fds_.insert(fd).second) return;
    ++peer_closes_;
  }
  cv_.notify_all();
}

void FixtureServer::serve(int fd, int connection_no) {
  std::string buffer;
  bool reset = false;
  while (!stopping_.load()) {
    ReceivedRequest req;
    req.connection = connection_no;
    if (!read_request(fd, buffer, req)) break;
    const Script script = script_for(req.method, req.target);
    {
      std::lock_guard lock(mu_);
      received_.push_back(req);
    }
    cv_.notify_all();
    reset = script.reset;
    if (!respond(fd, req, script)) break;
    if (lower(req.header("connection")) == "close") break;
  }
  if (reset) {
    linger l{1, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  }
  {
    std::lock_guard lock(mu_);
    open_fds_.erase(fd);
    peer_closed_fds_.erase(fd);
  }
  ::close(fd);
}

bool FixtureServer::read_request(int fd, std::string& buffer, ReceivedRequest& out) {
  auto fill = [&]() -> bool {
    while (!stopping_.load()) {
      pollfd fds[2] = {{fd, POLLIN, 0}, {wake_[0], POLLIN, 0}};
      const int rc = ::poll(fds, 2, kTickMs);
      if (rc < 0 && errno != EINTR) return false;
      if (rc <= 0) continue;
      if ((fds[1].revents & POLLIN) != 0) return false;
      char tmp[16 * 1024];
      const ssize_t n = ::recv(fd, tmp, sizeof tmp, 0);
      if (n > 0) {
        buffer.append(tmp, static_cast<std::size_t>(n));
        return true;
      }
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      note_peer_closed(fd);  // EOF or reset: the client closed the connection
      return false;
    }
    return false;
  };

  std::size_t end = std::string::npos;
  while ((end = buffer.find("\r\n\r\n")) == std::string::npos) {
    if (!fill()) return false;
  }
  const std::string head = buffer.substr(0, end);
  buffer.erase(0, end + 4);

  std::size_t line_end = head.find("\r\n");
  const std::string request_line = head.substr(0, line_end);
  const auto sp1 = request_line.find(' ');
  const auto sp2 = request_line.find(' ', sp1 + 1);
  out.method = request_line.substr(0, sp1);
  out.target = request_line.substr(sp1 + 1, sp2 - sp1 - 1);
  std::size_t pos = line_end == std::string::npos ? head.size() : line_end + 2;
  while (pos < head.size()) {
    std::size_t next = head.find("\r\n", pos);
    if (next == std::string::npos) next = head.size();
    const std::string_view line(head.data() + pos, next - pos);
    if (const auto colon = line.find(':'); colon != std::string_view::npos) {
      out.headers.emplace_back(lower(trim(line.substr(0, colon))), trim(line.substr(colon + 1)));
    }
    pos = next + 2;
  }
  std::size_t length = 0;
  if (const std::string cl = out.header("content-length"); !cl.empty()) {
    length = static_cast<std::size_t>(std::stoull(cl));
  }
  while (buffer.size() < length) {
    if (!fill()) return false;
  }
  out.body = buffer.substr(0, length);
  buffer.erase(0, length);
  return true;
}

bool FixtureServer::pause(int fd, int ms) {
  const auto deadline = Clock::now() + std::chrono::milliseconds(ms < 0 ? 0 : ms);
  while (!stopping_.load()) {
    int wait = kTickMs;
    if (ms >= 0) {
      const auto left_us =
          std::chrono::duration_cast<std::chrono::microseconds>(deadline - Clock::now()).count();
      if (left_us <= 0) return true;
      // Rounded up: a 1 ms delay must not become a 0 ms poll.
      wait = static_cast<int>(std::min<long long>((left_us + 999) / 1000, kTickMs));
    }
    // POLLRDHUP: the peer closed its side (a cancelled or timed-out client); POLLIN is not
    // asked for, so a request the client sends early does not count as a close.
    pollfd fds[2] = {{fd, POLLRDHUP, 0}, {wake_[0], POLLIN, 0}};
    const int rc = ::poll(fds, 2, wait);
    if (rc < 0 && errno != EINTR) return false;
    if (rc <= 0) continue;
    if ((fds[1].revents & POLLIN) != 0) return false;
    if ((fds[0].revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0) {
      note_peer_closed(fd);
      return false;
    }
  }
  return false;
}

bool FixtureServer::send_all(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (!stopping_.load()) note_peer_closed(fd);  // EPIPE, ECONNRESET: the client went away
      return false;
    }
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

bool FixtureServer::respond(int fd, const ReceivedRequest& /*req*/, const Script& s) {
  if (s.ending == Ending::drop) return false;
  if (s.ending == Ending::no_response ||
      (!s.headers_sent && (s.ending == Ending::stall || s.ending == Ending::abort))) {
    if (s.ending != Ending::abort) pause(fd, -1);
    return false;
  }

  for (const auto& interim : s.interim) {
    if (!send_all(fd, interim)) return false;
  }
  std::string head = "HTTP/1.1 " + std::to_string(s.status) + " " + s.reason + "\r\n";
  for (const auto& [k, v] : s.headers) head += k + ": " + v + "\r\n";
  switch (s.framing) {
    case Framing::content_length: {
      std::size_t total = 0;
      for (const auto& p : s.pieces) total += p.bytes.size();
      head += "Content-Length: " + std::to_string(total) + "\r\n";
      break;
    }
    case Framing::chunked:
      head += "Transfer-Encoding: chunked\r\n";
      break;
    case Framing::close_delimited:
    case Framing::raw:
      break;
  }
  if (s.announce_close) head += "Connection: close\r\n";
  head += "\r\n";
  if (!send_all(fd, head)) return false;

  const bool cut_short = s.ending == Ending::abort || s.ending == Ending::stall;
  for (std::size_t i = 0; i < s.pieces.size(); ++i) {
    if (cut_short && i == s.stop_after) break;
    const Piece& p = s.pieces[i];
    if (p.delay_ms > 0 && !pause(fd, p.delay_ms)) return false;
    if (p.bytes.empty()) continue;  // an empty chunk would end a chunked body
    if (s.framing == Framing::chunked) {
      char size[32];
      std::snprintf(size, sizeof size, "%zx\r\n", p.bytes.size());
      if (!send_all(fd, std::string(size) + p.bytes + "\r\n")) return false;
    } else if (!send_all(fd, p.bytes)) {
      return false;
    }
  }
  switch (s.ending) {
    case Ending::abort:
      return false;
    case Ending::stall:
      pause(fd, -1);
      return false;
    default:
      break;
  }
  if (s.framing == Framing::chunked && !send_all(fd, "0\r\n\r\n")) return false;
  if (s.framing == Framing::close_delimited || s.ending == Ending::close) {
    ::shutdown(fd, SHUT_WR);  // the FIN ends the body (or the connection, as scripted)
    return false;
  }
  return true;
}

}  // namespace chimera::test
