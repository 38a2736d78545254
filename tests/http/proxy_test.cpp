// Which proxy a request goes through (http/proxy.hpp), from an explicit setting or a given
// environment, as curl reads it.
#include "http/proxy.hpp"

#include <gtest/gtest.h>

#include <map>
#include <string>

namespace {

using namespace chimera::http;

Getenv env(std::map<std::string, std::string> vars) {
  return [vars = std::move(vars)](const char* name) -> const char* {
    const auto it = vars.find(name);
    return it == vars.end() ? nullptr : it->second.c_str();
  };
}

TEST(Proxy, TheSchemesVariableLowerCaseFirstThenAllProxy) {
  const auto e = env({{"https_proxy", "http://lower:1"},
                      {"HTTPS_PROXY", "http://upper:1"},
                      {"HTTP_PROXY", "http://plain:2"},
                      {"ALL_PROXY", "http://all:3"}});
  EXPECT_EQ(choose_proxy("", true, "api.example.com", "443", e), "http://lower:1");
  EXPECT_EQ(choose_proxy("", false, "api.example.com", "80", e), "http://plain:2");
  EXPECT_EQ(choose_proxy("", true, "api.example.com", "443", env({{"ALL_PROXY", "h:3"}})), "h:3");
  EXPECT_EQ(choose_proxy("", true, "api.example.com", "443", env({})), "");
}

TEST(Proxy, LoopbackOnlyWhenAsked) {
  const auto e = env({{"HTTPS_PROXY", "http://p:1"}, {"HTTP_PROXY", "http://p:1"}});
  for (const char* host : {"localhost", "127.0.0.1", "127.1.2.3", "::1", "[::1]", "a.localhost"}) {
    EXPECT_EQ(choose_proxy("", true, host, "443", e), "") << host;
  }
  EXPECT_EQ(choose_proxy("http://p:1", true, "127.0.0.1", "443", e), "http://p:1");
  EXPECT_EQ(choose_proxy("direct", true, "api.example.com", "443", e), "");
}

TEST(Proxy, NoProxyNamesHostsSuffixesBlocksAndPorts) {
  EXPECT_TRUE(no_proxy_matches("*", "anything", "80"));
  EXPECT_TRUE(no_proxy_matches("example.com", "example.com", "443"));
  EXPECT_TRUE(no_proxy_matches("example.com", "api.example.com", "443"));
  EXPECT_TRUE(no_proxy_matches(".example.com", "api.example.com", "443"));
  EXPECT_TRUE(no_proxy_matches("*.example.com", "api.example.com", "443"));
  EXPECT_FALSE(no_proxy_matches("example.com", "badexample.com", "443"));
  EXPECT_TRUE(no_proxy_matches("foo, EXAMPLE.com ,bar", "Api.Example.COM", "443"));
  EXPECT_TRUE(no_proxy_matches("10.0.0.0/8", "10.1.2.3", "80"));
  EXPECT_FALSE(no_proxy_matches("10.0.0.0/8", "11.1.2.3", "80"));
  EXPECT_TRUE(no_proxy_matches("192.168.1.0/24", "192.168.1.77", "80"));
  EXPECT_TRUE(no_proxy_matches("fd00::/8", "fd12::1", "80"));
  EXPECT_TRUE(no_proxy_matches("10.1.2.3", "10.1.2.3", "80"));
  EXPECT_TRUE(no_proxy_matches("example.com:8443", "example.com", "8443"));
  EXPECT_FALSE(no_proxy_matches("example.com:8443", "example.com", "443"));
  EXPECT_TRUE(no_proxy_matches("[fd00::1]:8080", "fd00::1", "8080"));
  EXPECT_FALSE(no_proxy_matches("", "example.com", "80"));
  const auto e = env({{"https_proxy", "http://p:1"}, {"NO_PROXY", "internal.example"}});
  EXPECT_EQ(choose_proxy("", true, "llm.internal.example", "443", e), "");
  EXPECT_EQ(choose_proxy("", true, "api.example.com", "443", e), "http://p:1");
}

TEST(Proxy, UrlsWithCredentialsAndDefaults) {
  ProxyUrl p;
  std::string error;
  ASSERT_TRUE(parse_proxy_url("http://user:s3cret@proxy.example:3128", p, error)) << error;
  EXPECT_EQ(p.host, "proxy.example");
  EXPECT_EQ(p.port, "3128");
  EXPECT_EQ(p.authorization, "Basic dXNlcjpzM2NyZXQ=");
  EXPECT_EQ(p.url.find("s3cret"), std::string::npos) << p.url;
  ASSERT_TRUE(parse_proxy_url("proxy.example", p, error)) << error;
  EXPECT_EQ(p.port, "1080");
  EXPECT_FALSE(parse_proxy_url("socks5://proxy.example:1080", p, error));
  EXPECT_NE(error.find("socks5"), std::string::npos) << error;
}

}  // namespace
