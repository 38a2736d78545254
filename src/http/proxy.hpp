// Forward proxies as curl and the usual HTTP clients read them (private to the library): which
// proxy, if any, a request to an endpoint goes through, from an explicit setting or from the
// environment (https_proxy, http_proxy, all_proxy, no_proxy, lower case first, then upper case).
#pragma once

#include <functional>
#include <string>
#include <string_view>

namespace chimera::http {

// A parsed proxy URL: [http://][user[:password]@]host[:port] (port 1080 by default, as curl).
struct ProxyUrl {
  std::string url;  // as messages show it, its password as "***"
  std::string host;
  std::string port;
  std::string authorization;  // "Basic ..." for Proxy-Authorization, or ""
};

// False with `error` set when `text` is not a usable proxy URL (only http:// proxies are).
bool parse_proxy_url(std::string_view text, ProxyUrl& out, std::string& error);

// A variable's value, or nullptr (std::getenv in use; a map in tests).
using Getenv = std::function<const char*(const char*)>;

// The proxy URL for a request to host:port over http or https ("" for none).
// `explicit_proxy`: "" takes the environment's; "direct" (or "none") means no proxy; anything
// else is the proxy, even for loopback hosts. The environment's: https -> https_proxy,
// HTTPS_PROXY; http -> http_proxy, HTTP_PROXY; then all_proxy, ALL_PROXY. It never applies to a
// loopback host (localhost, 127.0.0.0/8, ::1) nor to one that no_proxy (NO_PROXY) names.
std::string choose_proxy(std::string_view explicit_proxy, bool tls, std::string_view host,
                         std::string_view port, const Getenv& getenv);

// Whether a no_proxy list names host:port: "*" (every host), a name or domain suffix
// ("example.com" and ".example.com" both match example.com and a.example.com), an address or a
// CIDR block ("10.0.0.0/8", "fd00::/8"), each optionally with ":port" ("[::1]:8080").
bool no_proxy_matches(std::string_view no_proxy, std::string_view host, std::string_view port);

// localhost, *.localhost, 127.0.0.0/8 or ::1.
bool is_loopback_host(std::string_view host);

// Standard base64 with padding, for `Authorization: Basic` and `Proxy-Authorization: Basic`.
std::string base64(std::string_view in);

}  // namespace chimera::http
