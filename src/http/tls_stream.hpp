// A TLS client stream in which OpenSSL reads and writes the TCP socket itself (private to the
// library).
//
// Asio's ssl::stream runs OpenSSL over a memory BIO pair and copies every byte between the pair
// and the socket through two buffers of its own: four 17 KiB buffers a connection besides
// OpenSSL's own, two of them zero-filled and so resident for the connection's whole life. With
// hundreds of streams at once they were most of the client's memory over https (docs/http.md).
// Here OpenSSL's record layer reads and writes the non-blocking socket through a small BIO
// (recv, and send with MSG_NOSIGNAL so that a closed peer never raises SIGPIPE in the host
// process); when it would block, the operation waits for the socket with async_wait and runs
// again. Nothing is buffered outside OpenSSL, whose own record buffers are released between
// records (SSL_MODE_RELEASE_BUFFERS).
//
// The socket stays the TCP stream's: cancelling or closing it (deadlines, cancellation) ends a
// pending wait with operation_aborted, and once it is closed no OpenSSL call touches the
// descriptor. A read hands over what one TLS record decrypts to, as Asio's stream did, so the
// per-read timing is that of plain HTTP. Errors are those of Asio's stream: eof after the peer's
// close_notify, ssl::error::stream_truncated for a TCP end without it, the socket's own error
// (connection_reset, ...), else OpenSSL's reason in Asio's ssl category.
//
// Satisfies Beast's AsyncReadStream and AsyncWriteStream. Not movable (OpenSSL keeps a pointer
// into it); every operation must run on the socket's executor (the endpoint's executor), one read
// and one write at a time.
#pragma once

#include <boost/asio/associated_executor.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/compose.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/system/error_code.hpp>

#include <openssl/ssl.h>

#include <cstddef>
#include <cstring>
#include <memory>

namespace chimera::http {

class TlsStream {
 public:
  using socket_type = boost::asio::ip::tcp::socket;
  using executor_type = socket_type::executor_type;

  // A client connection on `socket` (connected) with `ctx`'s settings; the socket is made
  // non-blocking. Throws std::runtime_error when OpenSSL cannot make the connection object.
  TlsStream(socket_type& socket, SSL_CTX* ctx);
  ~TlsStream();
  TlsStream(const TlsStream&) = delete;
  TlsStream& operator=(const TlsStream&) = delete;

  executor_type get_executor() { return socket_.get_executor(); }
  SSL* native_handle() { return ssl_; }

  // The client handshake (SSL_connect). Completes with (error_code).
  template <class Token>
  auto async_handshake(Token&& token) {
    return boost::asio::async_compose<Token, void(boost::system::error_code)>(
        Op<true>(*this, Kind::handshake, nullptr, 0), token, socket_);
  }

  template <class MutableBufferSequence, class Token>
  auto async_read_some(const MutableBufferSequence& buffers, Token&& token) {
    boost::asio::mutable_buffer first;
    for (auto it = boost::asio::buffer_sequence_begin(buffers);
         it != boost::asio::buffer_sequence_end(buffers); ++it) {
      first = *it;
      if (first.size() != 0) break;
    }
    return boost::asio::async_compose<Token, void(boost::system::error_code, std::size_t)>(
        Op<false>(*this, Kind::read, first.data(), first.size()), token, socket_);
  }

  // Writes from the first buffer of the sequence; a sequence of several buffers (an HTTP
  // request's header fields and body) up to kCoalesce bytes in all is copied into one, so that
  // it goes out as one TLS record and one segment instead of one of each per buffer.
  template <class ConstBufferSequence, class Token>
  auto async_write_some(const ConstBufferSequence& buffers, Token&& token) {
    const auto begin = boost::asio::buffer_sequence_begin(buffers);
    const auto end = boost::asio::buffer_sequence_end(buffers);
    std::size_t total = 0;
    std::size_t count = 0;
    boost::asio::const_buffer first;
    for (auto it = begin; it != end; ++it) {
      const boost::asio::const_buffer b = *it;
      if (b.size() == 0) continue;
      if (count++ == 0) first = b;
      total += b.size();
    }
    std::unique_ptr<char[]> copy;
    if (count > 1 && total <= kCoalesce) {
      copy = std::make_unique_for_overwrite<char[]>(total);
      std::size_t at = 0;
      for (auto it = begin; it != end; ++it) {
        const boost::asio::const_buffer b = *it;
        if (b.size() != 0) std::memcpy(copy.get() + at, b.data(), b.size());
        at += b.size();
      }
      first = boost::asio::const_buffer(copy.get(), total);
    }
    return boost::asio::async_compose<Token, void(boost::system::error_code, std::size_t)>(
        Op<false>(*this, Kind::write, const_cast<void*>(first.data()), first.size(),
                  std::move(copy)),
        token, socket_);
  }

  static constexpr std::size_t kCoalesce = 16 * 1024;  // one TLS record's plaintext

 private:
  enum class Kind { handshake, read, write };
  enum class Want { nothing, read, write };

  // One OpenSSL call: SSL_connect, SSL_read_ex or SSL_write_ex. Returns what it waits for, or
  // nothing when it is done (`ec` and `n` then hold the outcome).
  Want step(Kind kind, void* data, std::size_t size, std::size_t& n, boost::system::error_code& ec);

  template <bool Handshake>
  struct Op {
    Op(TlsStream& stream, Kind k, void* d, std::size_t n, std::unique_ptr<char[]> c = {})
        : s(stream), kind(k), data(d), size(n), copy(std::move(c)) {}
    TlsStream& s;
    Kind kind;
    void* data;
    std::size_t size;
    std::unique_ptr<char[]> copy;  // a write's buffers made one
    enum class State { start, waiting, posted } state = State::start;
    boost::system::error_code result;
    std::size_t done = 0;

    template <class Self>
    void operator()(Self& self, boost::system::error_code ec = {}) {
      if (state == State::posted) return finish(self, result, done);
      if (state == State::waiting && ec) return finish(self, ec, 0);  // cancelled, closed
      std::size_t n = 0;
      const Want want = s.step(kind, data, size, n, ec);
      if (want == Want::nothing) {
        if (state == State::waiting) return finish(self, ec, n);
        // Done at once: the handler must not run inside the initiating call.
        state = State::posted;
        result = ec;
        done = n;
        const auto ex = boost::asio::get_associated_executor(self, s.get_executor());
        boost::asio::post(ex, std::move(self));
        return;
      }
      state = State::waiting;
      s.socket_.async_wait(want == Want::read ? socket_type::wait_read : socket_type::wait_write,
                           std::move(self));
    }

    template <class Self>
    void finish(Self& self, const boost::system::error_code& ec, std::size_t n) {
      copy.reset();
      if constexpr (Handshake) {
        (void)n;
        self.complete(ec);
      } else {
        self.complete(ec, n);
      }
    }
  };

  // What the BIO needs between OpenSSL's calls: the socket (its descriptor is read at each
  // call, so a closed socket is never touched) and the errno of the last failed call.
  struct Transport {
    socket_type* socket = nullptr;
    int error = 0;
  };

  socket_type& socket_;
  Transport transport_;
  SSL* ssl_ = nullptr;
};

}  // namespace chimera::http
