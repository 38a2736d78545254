// Endpoint URLs: what is refused (control characters, NUL, bad hosts and ports), what the request
// target becomes (the path as written, never decoded), and credentials (sent as Basic
// authentication, never shown).
#include "http/client.hpp"

#include <chimera/backends/backend.hpp>

#include <gtest/gtest.h>

#include <string>

namespace {

using chimera::http::EndpointUrl;
using chimera::http::parse_endpoint_url;

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

std::string refused(const std::string& url) {
  EndpointUrl out;
  std::string error;
  EXPECT_FALSE(parse_endpoint_url(url, out, error)) << url << " was accepted";
  return error;
}

TEST(EndpointUrl, PercentEncodedLineBreaksCannotInjectAHeader) {
  // The reproduction: decoded into the request line, this URL added a header of its choosing.
  const std::string e =
      refused("http://127.0.0.1:8080/x%20HTTP/1.1%0d%0aX-Injected:%20yes%0d%0aFoo:%20bar");
  EXPECT_TRUE(contains(e, "control character 0x0d")) << e;
  EXPECT_TRUE(contains(e, "percent-encoded")) << e;
  EXPECT_FALSE(contains(e, "\r")) << "the message itself must not carry the control character";
}

TEST(EndpointUrl, NulAndRawControlCharactersAreRefused) {
  EXPECT_TRUE(contains(refused("http://127.0.0.1:8080/v1%00x"), "0x00"));
  EXPECT_TRUE(contains(refused(std::string("http://127.0.0.1:8080/v1\0x", 25)), "0x00"));
  const std::string e = refused("http://127.0.0.1:8080/a\r\nX-Injected: yes");
  EXPECT_TRUE(contains(e, "raw")) << e;
  EXPECT_TRUE(contains(e, "\\x0d")) << e;  // shown escaped
  EXPECT_TRUE(contains(refused("http://127.0.0.1:8080/a b"), "a space"));
  EXPECT_TRUE(contains(refused("http://127.0.0.1:8080/%7f"), "0x7f"));
}

TEST(EndpointUrl, ThePathIsSentAsWrittenNeverDecoded) {
  EndpointUrl out;
  std::string error;
  ASSERT_TRUE(parse_endpoint_url("http://127.0.0.1:8080/x%20HTTP%2F1.1/", out, error)) << error;
  EXPECT_EQ(out.base_path, "/x%20HTTP%2F1.1");
  ASSERT_TRUE(parse_endpoint_url("http://127.0.0.1:8080/proxy/ollama", out, error)) << error;
  EXPECT_EQ(out.base_path, "/proxy/ollama");
  EXPECT_EQ(out.host_header, "127.0.0.1:8080");
}

TEST(EndpointUrl, PortsOutsideOneTo65535AreRefused) {
  for (const char* url : {"http://127.0.0.1:0", "http://127.0.0.1:65536",
                          "http://127.0.0.1:99999999999", "http://127.0.0.1:/"}) {
    EXPECT_TRUE(contains(refused(url), "1 to 65535")) << url;
  }
  EndpointUrl out;
  std::string error;
  ASSERT_TRUE(parse_endpoint_url("http://127.0.0.1:65535", out, error)) << error;
  EXPECT_EQ(out.port, "65535");
  ASSERT_TRUE(parse_endpoint_url("http://localhost", out, error)) << error;
  EXPECT_EQ(out.port, "80");
}

TEST(EndpointUrl, AHostMustBeANameOrAnAddress) {
  EXPECT_TRUE(contains(refused("http://exa%41mple:80"), "not a host name"));
  EndpointUrl out;
  std::string error;
  ASSERT_TRUE(parse_endpoint_url("http://[::1]:8080", out, error)) << error;
  EXPECT_EQ(out.host_header, "[::1]:8080");
}

TEST(EndpointUrl, CredentialsBecomeBasicAuthenticationAndAreNeverShown) {
  EndpointUrl out;
  std::string error;
  ASSERT_TRUE(parse_endpoint_url("http://user:secret@127.0.0.1:8080/", out, error)) << error;
  EXPECT_EQ(out.authorization, "Basic dXNlcjpzZWNyZXQ=");  // base64("user:secret")
  EXPECT_EQ(out.url, "http://user:***@127.0.0.1:8080");
  ASSERT_TRUE(parse_endpoint_url("http://us%40er:p%3Ass@127.0.0.1:8080", out, error)) << error;
  EXPECT_EQ(out.authorization, "Basic dXNAZXI6cDpzcw==");  // base64("us@er:p:ss"), decoded first
  ASSERT_TRUE(parse_endpoint_url("http://127.0.0.1:8080", out, error)) << error;
  EXPECT_EQ(out.authorization, "");
  // An error about a URL with a password does not show the password either.
  const std::string e = refused("http://user:secret@127.0.0.1:0");
  EXPECT_FALSE(contains(e, "secret")) << e;
  EXPECT_TRUE(contains(e, "user:***@")) << e;
}

TEST(EndpointUrl, RedactUrlHidesOnlyThePassword) {
  EXPECT_EQ(chimera::redact_url("http://u:p@h:1/x"), "http://u:***@h:1/x");
  EXPECT_EQ(chimera::redact_url("http://u@h:1/x"), "http://u@h:1/x");
  EXPECT_EQ(chimera::redact_url("http://h:1/a@b"), "http://h:1/a@b");  // '@' in the path
  EXPECT_EQ(chimera::redact_url("http://u:p:q@h:1"), "http://u:***@h:1");
  EXPECT_EQ(chimera::redact_url("model.gguf"), "model.gguf");
}

}  // namespace
