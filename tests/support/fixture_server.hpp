// A FIXTURE, not a server: a scripted HTTP/1.1 responder on a free 127.0.0.1 port, for tests.
//
// Why it exists: no Ollama server can be installed where the tests run, so the Ollama tests
// replay responses exactly as Ollama's API documentation (docs/api.md) shows them; and the fault
// tests need failures that no real server produces on demand (a connection cut mid-body, a
// stall after the headers, a record over the size limit, a stale keep-alive connection).
// Nothing here tells whether the client works against a real Ollama; it tells whether the
// client handles what the documentation says Ollama sends, split in every awkward way, and
// every way a response can go wrong.
//
// It is deliberately independent of the client under test: plain POSIX sockets and threads, no
// Beast, no Asio. One thread accepts; each connection gets its own thread, which reads requests
// one after another (keep-alive) and answers each from the Script routed to its method and
// target. Each body piece goes out with its own send() on a TCP_NODELAY socket, after its
// optional delay, so pieces reach the client as separate reads (the client may still coalesce
// pieces it reads late). Everything received is recorded for the test to check.
//
// Example:
//   chimera::test::FixtureServer srv;
//   srv.route("POST", "/api/chat",
//             chimera::test::Script::ndjson(chimera::test::split_awkwardly(body, 7)));
//   ... make_backend({.url = srv.url(), .kind = BackendKind::ollama}, rt) ...
//   EXPECT_EQ(srv.connections(), 1);
//   EXPECT_EQ(srv.requests()[0].target, "/api/chat");
//
// Thread safety: every member is thread-safe; route() may be called at any time, and a request
// is answered by the script routed when it arrives. The destructor stops every thread without
// waiting on the client: sockets are shut down and every wait polls with a short timeout.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace chimera::test {

// How the response body is delimited on the wire.
enum class Framing {
  content_length,   // "Content-Length: <sum of the pieces>" (even when the script cuts it short)
  chunked,          // "Transfer-Encoding: chunked": each non-empty piece is one chunk
  close_delimited,  // neither: the body ends when the connection closes (HTTP/1.0 style)
  raw,              // no framing header at all, pieces written verbatim (the script frames them)
};

// How the exchange ends.
enum class Ending {
  complete,     // the whole body, then wait for the next request on the connection (keep-alive)
  close,        // the whole body, then close the connection (says so only if announce_close)
  abort,        // close abruptly after `stop_after` pieces, mid-body (a crash, a killed server)
  stall,        // stop sending after `stop_after` pieces; hold the connection open, silent
  no_response,  // read the request and never answer; hold the connection open
  drop,         // read the request and close the connection at once, without a byte
};

struct Piece {
  std::string bytes;
  int delay_ms = 0;  // wait this long before sending it
};

struct Script {
  int status = 200;
  std::string reason = "OK";
  std::vector<std::pair<std::string, std::string>> headers;  // besides the framing header
  Framing framing = Framing::content_length;
  std::vector<Piece> pieces;
  Ending ending = Ending::complete;
  std::size_t stop_after = 0;   // for abort and stall: how many pieces go out first
  bool headers_sent = true;     // for stall/abort: false = not even the status line
  bool announce_close = false;  // add "Connection: close" (close and close_delimited endings)
  bool reset = false;           // close with a TCP RST (SO_LINGER 0) instead of a FIN
  // Written verbatim before the status line, each with its own send(): interim responses
  // ("HTTP/1.1 100 Continue\r\n\r\n") that no server here sends unasked.
  std::vector<std::string> interim;

  // A whole JSON document with Content-Length.
  static Script json(int status, std::string body);
  // A plain-text body with Content-Length.
  static Script text(int status, std::string body);
  // An NDJSON stream (Ollama's application/x-ndjson), chunked, one piece per element.
  static Script ndjson(const std::vector<std::string>& pieces, int delay_ms = 0);
  // A Server-Sent Events stream (text/event-stream), chunked, one piece per element.
  static Script sse(const std::vector<std::string>& pieces, int delay_ms = 0);

  // The whole body (all pieces joined).
  std::string body() const;
  // Sets every piece's delay.
  Script& with_delay(int delay_ms);
};

// The standard reason phrase of a status code ("Not Found"), or "Status".
const char* reason_phrase(int status);

// Cuts `body` into pieces at awkward places: inside JSON strings, inside multi-byte UTF-8
// characters, between '\r' and '\n', at every record boundary (a '\n') and one byte either side
// of it, plus `seed`-chosen random cuts. Joining the pieces gives `body` back; no piece is empty.
std::vector<std::string> split_awkwardly(std::string_view body, uint32_t seed);
// Cuts `body` into pieces of `n` bytes (the last may be shorter).
std::vector<std::string> split_every(std::string_view body, std::size_t n);
// Joins NDJSON records, each followed by "\n".
std::string ndjson_lines(const std::vector<std::string>& records);

// One request as the fixture received it.
struct ReceivedRequest {
  int connection = 0;  // 1 for the first connection accepted, 2 for the next, ...
  std::string method;
  std::string target;
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased
  std::string body;
  // The value of a header (name matched case-insensitively), or "" when absent.
  std::string header(std::string_view name) const;
};

class FixtureServer {
 public:
  FixtureServer();  // binds 127.0.0.1:0 and starts accepting
  ~FixtureServer();
  FixtureServer(const FixtureServer&) = delete;
  FixtureServer& operator=(const FixtureServer&) = delete;

  // Every request for `method` `target` gets this script.
  void route(std::string method, std::string target, Script script);
  // Successive requests get successive scripts; the last one repeats.
  void route(std::string method, std::string target, std::vector<Script> scripts);

  int port() const { return port_; }
  std::string url() const;  // "http://127.0.0.1:PORT"

  // TCP connections accepted so far.
  int connections() const;
  // Connections whose peer closed (or reset) them while the fixture was answering, stalled or
  // waiting for the next request.
  int connections_closed_by_peer() const;
  // Every request received so far, in arrival order.
  std::vector<ReceivedRequest> requests() const;
  // Waits until `n` requests have arrived; false on timeout.
  bool wait_for_requests(std::size_t n, int timeout_ms) const;
  // Waits until `n` connections were closed by the peer; false on timeout.
  bool wait_for_peer_closes(int n, int timeout_ms) const;

 private:
  struct Route {
    std::vector<Script> scripts;
    std::size_t next = 0;
  };
  void accept_loop();
  void serve(int fd, int connection_no);
  // Reads one request; false when the connection ended (or the fixture stops) first.
  bool read_request(int fd, std::string& buffer, ReceivedRequest& out);
  // Writes one response; returns false when the connection must close afterwards.
  bool respond(int fd, const ReceivedRequest& req, const Script& script);
  // Waits `ms` (or forever when < 0) unless the fixture stops or the peer closes `fd`.
  // Returns false when the wait was cut short.
  bool pause(int fd, int ms);
  bool send_all(int fd, std::string_view bytes);
  void note_peer_closed(int fd);
  Script script_for(const std::string& method, const std::string& target);

  int listen_fd_ = -1;
  int wake_[2] = {-1, -1};  // a pipe: written to on stop, to wake every poll
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::thread acceptor_;

  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  std::map<std::pair<std::string, std::string>, Route> routes_;
  std::vector<std::thread> workers_;
  std::set<int> open_fds_;
  std::set<int> peer_closed_fds_;
  std::vector<ReceivedRequest> received_;
  int connections_ = 0;
  int peer_closes_ = 0;
};

}  // namespace chimera::test
