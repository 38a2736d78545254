#include "http/proxy.hpp"

#include <chimera/http/settings.hpp>

#include <boost/asio/ip/address.hpp>
#include <boost/url/parse.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cctype>

namespace chimera::http {

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

std::string_view unbracket(std::string_view host) {
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    return host.substr(1, host.size() - 2);
  }
  return host;
}

// An address inside a CIDR block ("10.0.0.0/8"); false when either is not an address.
bool in_cidr(std::string_view block, std::string_view host) {
  const auto slash = block.find('/');
  boost::system::error_code ec1, ec2;
  const auto net = boost::asio::ip::make_address(std::string(block.substr(0, slash)), ec1);
  const auto addr = boost::asio::ip::make_address(std::string(host), ec2);
  if (ec1 || ec2 || net.is_v4() != addr.is_v4()) return false;
  const std::string bits_text(block.substr(slash + 1));
  if (bits_text.empty() || bits_text.find_first_not_of("0123456789") != std::string::npos ||
      bits_text.size() > 3) {
    return false;
  }
  const int bits = std::stoi(bits_text);
  auto bytes = [](const boost::asio::ip::address& a) {
    std::array<unsigned char, 16> out{};
    if (a.is_v4()) {
      const auto b = a.to_v4().to_bytes();
      std::copy(b.begin(), b.end(), out.begin());
    } else {
      const auto b = a.to_v6().to_bytes();
      std::copy(b.begin(), b.end(), out.begin());
    }
    return out;
  };
  const int width = net.is_v4() ? 32 : 128;
  if (bits > width) return false;
  const auto n = bytes(net);
  const auto h = bytes(addr);
  for (int i = 0; i < bits; ++i) {
    const int mask = 0x80 >> (i % 8);
    if ((n[i / 8] & mask) != (h[i / 8] & mask)) return false;
  }
  return true;
}

// One no_proxy entry split into its host part and its port ("" when none).
std::pair<std::string_view, std::string_view> split_entry(std::string_view entry) {
  if (!entry.empty() && entry.front() == '[') {
    const auto close = entry.find(']');
    if (close == std::string_view::npos) return {entry, {}};
    const std::string_view rest = entry.substr(close + 1);
    return {entry.substr(1, close - 1), rest.size() > 1 && rest[0] == ':' ? rest.substr(1) : ""};
  }
  if (std::count(entry.begin(), entry.end(), ':') == 1) {
    const auto colon = entry.find(':');
    return {entry.substr(0, colon), entry.substr(colon + 1)};
  }
  return {entry, {}};
}

bool entry_matches(std::string_view entry, std::string_view host, std::string_view port) {
  if (entry == "*") return true;
  auto [name, entry_port] = split_entry(entry);
  if (!entry_port.empty() && entry_port != port) return false;
  if (name.find('/') != std::string_view::npos) return in_cidr(name, host);
  if (name.substr(0, 2) == "*.") name.remove_prefix(2);
  if (!name.empty() && name.front() == '.') name.remove_prefix(1);
  if (name.empty()) return false;
  if (host == name) return true;
  return host.size() > name.size() && host.substr(host.size() - name.size()) == name &&
         host[host.size() - name.size() - 1] == '.';
}

const char* first_set(const Getenv& getenv, std::initializer_list<const char*> names) {
  for (const char* name : names) {
    const char* v = getenv(name);
    if (v != nullptr && *v != '\0') return v;
  }
  return nullptr;
}

}  // namespace

bool is_loopback_host(std::string_view host_in) {
  const std::string host = lower(unbracket(host_in));
  if (host == "localhost" || (host.size() > 10 && host.substr(host.size() - 10) == ".localhost")) {
    return true;
  }
  boost::system::error_code ec;
  const auto addr = boost::asio::ip::make_address(host, ec);
  return !ec && addr.is_loopback();
}

bool no_proxy_matches(std::string_view no_proxy, std::string_view host_in, std::string_view port) {
  const std::string host = lower(unbracket(host_in));
  std::string_view list = no_proxy;
  while (!list.empty()) {
    const auto comma = list.find(',');
    const std::string entry = lower(trim(list.substr(0, comma)));
    list = comma == std::string_view::npos ? std::string_view() : list.substr(comma + 1);
    if (!entry.empty() && entry_matches(entry, host, port)) return true;
  }
  return false;
}

std::string choose_proxy(std::string_view explicit_proxy, bool tls, std::string_view host,
                         std::string_view port, const Getenv& getenv) {
  if (explicit_proxy == "direct" || explicit_proxy == "none") return {};
  if (!explicit_proxy.empty()) return std::string(explicit_proxy);
  if (is_loopback_host(host)) return {};
  const char* proxy = tls ? first_set(getenv, {"https_proxy", "HTTPS_PROXY"})
                          : first_set(getenv, {"http_proxy", "HTTP_PROXY"});
  if (proxy == nullptr) proxy = first_set(getenv, {"all_proxy", "ALL_PROXY"});
  if (proxy == nullptr) return {};
  if (const char* no = first_set(getenv, {"no_proxy", "NO_PROXY"})) {
    if (no_proxy_matches(no, host, port)) return {};
  }
  return proxy;
}

bool parse_proxy_url(std::string_view text_in, ProxyUrl& out, std::string& error) {
  std::string text(trim(text_in));
  if (text.find("://") == std::string::npos) text = "http://" + text;
  const auto parsed = boost::urls::parse_uri(text);
  if (!parsed || parsed->host_address().empty()) {
    error = fmt::format("'{}' is not a proxy URL (expected http://[user:password@]host:port)",
                        redact_url(text));
    return false;
  }
  if (parsed->scheme_id() != boost::urls::scheme::http) {
    error = fmt::format(
        "proxy '{}': scheme '{}' is not supported; an http:// proxy is (https:// endpoints go "
        "through it with CONNECT)",
        redact_url(text), std::string(parsed->scheme()));
    return false;
  }
  out.host = parsed->host_address();
  out.port = parsed->has_port() && !parsed->port().empty() ? std::string(parsed->port()) : "1080";
  out.authorization.clear();
  if (parsed->has_userinfo()) {
    out.authorization =
        "Basic " + base64(std::string(parsed->user()) + ":" + std::string(parsed->password()));
  }
  out.url = redact_url(text);
  return true;
}

std::string base64(std::string_view in) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  for (std::size_t i = 0; i < in.size(); i += 3) {
    const std::size_t n = std::min<std::size_t>(3, in.size() - i);
    uint32_t v = 0;
    for (std::size_t k = 0; k < 3; ++k) {
      v = (v << 8) | (k < n ? static_cast<unsigned char>(in[i + k]) : 0u);
    }
    for (std::size_t k = 0; k < 4; ++k) {
      out.push_back(k <= n ? kAlphabet[(v >> (18 - 6 * k)) & 0x3f] : '=');
    }
  }
  return out;
}

}  // namespace chimera::http
