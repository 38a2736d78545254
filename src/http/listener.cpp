#include "http/listener.hpp"

#include <fmt/format.h>

#include <stdexcept>

namespace chimera::http {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

std::unique_ptr<tcp::acceptor> open_listener(const asio::any_io_executor& executor,
                                             const asio::ip::address& address, int port,
                                             int backlog, std::string_view who,
                                             std::string_view host) {
  auto acceptor = std::make_unique<tcp::acceptor>(executor);
  const tcp::endpoint endpoint(address, static_cast<unsigned short>(port));
  boost::system::error_code ec;
  auto fail = [&](const char* doing) {
    std::string hint;
    if (ec == asio::error::address_in_use) {
      hint = "; another process holds the port: choose another, or 0 for a free one";
    } else if (ec == asio::error::access_denied) {
      hint = "; ports below 1024 need privileges: choose a port above 1024";
    }
    throw std::runtime_error(
        fmt::format("{}: cannot {} {}:{}: {}{}", who, doing, host, port, ec.message(), hint));
  };
  acceptor->open(endpoint.protocol(), ec);
  if (ec) fail("open a socket for");
  acceptor->set_option(tcp::acceptor::reuse_address(true), ec);
  acceptor->bind(endpoint, ec);
  if (ec) fail("bind");
  acceptor->listen(backlog, ec);
  if (ec) fail("listen on");
  return acceptor;
}

}  // namespace chimera::http
