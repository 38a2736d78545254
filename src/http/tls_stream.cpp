#include "http/tls_stream.hpp"

#include <boost/asio/error.hpp>
#include <boost/asio/ssl/error.hpp>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <sys/socket.h>

#include <cerrno>
#include <climits>
#include <stdexcept>

namespace chimera::http {

namespace {

namespace asio = boost::asio;

// A source/sink BIO on the socket of a TlsStream::Transport: recv and send (MSG_NOSIGNAL), a
// would-block answer marked for retry, any other errno kept for the error code.
template <class Transport>
struct SocketBio {
  static Transport& of(BIO* bio) { return *static_cast<Transport*>(BIO_get_data(bio)); }

  static int read(BIO* bio, char* buf, int len) {
    BIO_clear_retry_flags(bio);
    Transport& t = of(bio);
    const ssize_t n = ::recv(t.socket->native_handle(), buf, static_cast<std::size_t>(len), 0);
    if (n >= 0) return static_cast<int>(n);  // 0: the peer ended the TCP stream
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
      BIO_set_retry_read(bio);
    } else {
      t.error = errno;
    }
    return -1;
  }

  static int write(BIO* bio, const char* buf, int len) {
    BIO_clear_retry_flags(bio);
    Transport& t = of(bio);
    const ssize_t n =
        ::send(t.socket->native_handle(), buf, static_cast<std::size_t>(len), MSG_NOSIGNAL);
    if (n >= 0) return static_cast<int>(n);
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
      BIO_set_retry_write(bio);
    } else {
      t.error = errno;
    }
    return -1;
  }

  static long ctrl(BIO*, int cmd, long, void*) {
    // Flushing is a no-op (every write goes to the socket); nothing else is supported.
    return cmd == BIO_CTRL_FLUSH ? 1 : 0;
  }

  static int create(BIO* bio) {
    BIO_set_init(bio, 1);
    return 1;
  }

  static const BIO_METHOD* method() {
    static BIO_METHOD* const m = [] {
      BIO_METHOD* meth =
          BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "chimera tcp socket");
      if (meth == nullptr) return meth;
      BIO_meth_set_write(meth, &write);
      BIO_meth_set_read(meth, &read);
      BIO_meth_set_ctrl(meth, &ctrl);
      BIO_meth_set_create(meth, &create);
      return meth;
    }();
    return m;
  }
};

}  // namespace

TlsStream::TlsStream(socket_type& socket, SSL_CTX* ctx) : socket_(socket) {
  transport_.socket = &socket_;
  boost::system::error_code ec;
  socket_.non_blocking(true, ec);  // OpenSSL's calls must never block the event loop
  const BIO_METHOD* method = SocketBio<Transport>::method();
  ssl_ = ec ? nullptr : SSL_new(ctx);
  BIO* bio = ssl_ == nullptr || method == nullptr ? nullptr : BIO_new(method);
  if (bio == nullptr) {
    if (ssl_ != nullptr) SSL_free(ssl_);
    ERR_clear_error();
    throw std::runtime_error(ec ? "cannot make the socket non-blocking: " + ec.message()
                                : std::string("cannot make a TLS connection (out of memory)"));
  }
  BIO_set_data(bio, &transport_);
  SSL_set_bio(ssl_, bio, bio);  // the SSL owns the BIO now
  SSL_set_mode(ssl_, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                         SSL_MODE_RELEASE_BUFFERS);
  SSL_set_connect_state(ssl_);
}

TlsStream::~TlsStream() {
  SSL_free(ssl_);
}

TlsStream::Want TlsStream::step(Kind kind, void* data, std::size_t size, std::size_t& n,
                                boost::system::error_code& ec) {
  n = 0;
  ec = {};
  if (!socket_.is_open()) {
    ec = asio::error::bad_descriptor;  // closed by a cancel or a deadline: never touch the fd
    return Want::nothing;
  }
  if (kind != Kind::handshake && size == 0) return Want::nothing;
  ERR_clear_error();
  transport_.error = 0;
  int r = 0;
  switch (kind) {
    case Kind::handshake:
      r = SSL_connect(ssl_);
      break;
    case Kind::read:
      r = SSL_read_ex(ssl_, data, size, &n);
      break;
    case Kind::write:
      r = SSL_write_ex(ssl_, data, size, &n);
      break;
  }
  if (r > 0) return Want::nothing;
  n = 0;
  const int error = SSL_get_error(ssl_, r);
  const unsigned long reason = ERR_peek_error();
  ERR_clear_error();
  switch (error) {
    case SSL_ERROR_WANT_READ:
      return Want::read;
    case SSL_ERROR_WANT_WRITE:
      return Want::write;
    case SSL_ERROR_ZERO_RETURN:  // the peer's close_notify: a clean end
      ec = asio::error::eof;
      return Want::nothing;
    case SSL_ERROR_SYSCALL:
      if (transport_.error != 0) {
        ec = boost::system::error_code(transport_.error, boost::system::system_category());
      } else if (reason != 0) {
        ec = boost::system::error_code(static_cast<int>(reason), asio::error::get_ssl_category());
      } else {
        ec = asio::ssl::error::stream_truncated;  // the TCP stream ended without close_notify
      }
      return Want::nothing;
    case SSL_ERROR_SSL:
      if (transport_.error != 0) {
        ec = boost::system::error_code(transport_.error, boost::system::system_category());
      } else if (ERR_GET_REASON(reason) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
        ec = asio::ssl::error::stream_truncated;
      } else {
        ec = boost::system::error_code(static_cast<int>(reason), asio::error::get_ssl_category());
      }
      return Want::nothing;
    default:
      ec = asio::ssl::error::unspecified_system_error;
      return Want::nothing;
  }
}

}  // namespace chimera::http
