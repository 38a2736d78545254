// Endpoint URL parsing (the --endpoint flag, pool files, the Python and C front ends). An
// accepted URL must yield parts that can go into a request line and a Host header as they
// are: no control characters, spaces or NUL (they would let a URL write its own headers), a
// numeric port in 1..65535. A refused URL must say why.
#include "http/client.hpp"

#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

namespace {

void fail(const char* what, std::string_view value, const std::string& url) {
  std::fprintf(stderr, "accepted URL with a bad %s: '%.*s' (from %zu bytes)\n", what,
               static_cast<int>(value.size()), value.data(), url.size());
  std::abort();
}

bool wire_safe(std::string_view s) {
  for (unsigned char c : s) {
    if (c <= 0x20 || c == 0x7f) return false;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string url(reinterpret_cast<const char*>(data), size);
  chimera::http::EndpointUrl out;
  std::string error;
  if (!chimera::http::parse_endpoint_url(url, out, error)) {
    if (error.empty()) fail("error (empty)", error, url);
    return 0;
  }
  if (out.host.empty() || !wire_safe(out.host)) fail("host", out.host, url);
  if (!wire_safe(out.base_path)) fail("path", out.base_path, url);
  if (!wire_safe(out.host_header)) fail("Host header", out.host_header, url);
  if (out.port.empty() || out.port.size() > 5 ||
      out.port.find_first_not_of("0123456789") != std::string::npos) {
    fail("port", out.port, url);
  }
  const long port = std::strtol(out.port.c_str(), nullptr, 10);
  if (port < 1 || port > 65535) fail("port", out.port, url);
  return 0;
}
