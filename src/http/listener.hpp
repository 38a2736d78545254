// The listening side shared by the servers in this project (serve, synth-server): a TCP
// listener opened with errors that say what to do, and an accept loop that hands each
// connection on and survives running out of descriptors.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <chrono>
#include <memory>
#include <string_view>

namespace chimera::http {

// Opens, binds and listens on address:port (0: a free port) with SO_REUSEADDR, on `executor`.
// Throws std::runtime_error "<who>: cannot bind <host>:<port>: <reason>", with a hint for a port
// in use or one that needs privileges; `host` is the address as the user wrote it.
std::unique_ptr<boost::asio::ip::tcp::acceptor> open_listener(
    const boost::asio::any_io_executor& executor, const boost::asio::ip::address& address, int port,
    int backlog, std::string_view who, std::string_view host);

// Accepts connections until the acceptor is closed. Each accepted socket is made on the executor
// `next_executor()` returns, gets TCP_NODELAY (a streamed token is a small write, sent at once)
// and goes to `on_accept(socket)`. A failed accept with the acceptor still open (out of
// descriptors, EMFILE, or of kernel memory) leaves the connection queued in the backlog; retrying
// at once would spin, so the loop waits 20 ms for connections to close.
template <class NextExecutor, class OnAccept>
boost::asio::awaitable<void> accept_loop(boost::asio::ip::tcp::acceptor& acceptor,
                                         NextExecutor next_executor, OnAccept on_accept) {
  namespace asio = boost::asio;
  constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
  asio::steady_timer backoff(acceptor.get_executor());
  for (;;) {
    auto ex = next_executor();
    auto [ec, sock] = co_await acceptor.async_accept(ex, use_tuple);
    if (ec) {
      if (ec == asio::error::operation_aborted || !acceptor.is_open()) co_return;
      backoff.expires_after(std::chrono::milliseconds(20));
      co_await backoff.async_wait(use_tuple);
      continue;
    }
    boost::system::error_code opt_ec;
    sock.set_option(asio::ip::tcp::no_delay(true), opt_ec);
    on_accept(std::move(sock));
  }
}

}  // namespace chimera::http
