// serve's request bodies, the bytes any client on the network sends: parse_request reads them for
// each of the four APIs without a crash or a sanitizer report. A body it refuses gets an error
// that names what is wrong and makes a JSON error body; a body it takes gives options that pass
// chimera::validate, and the responses written for it (a token, the end, an in-stream error, a
// whole response, Ollama's load reply), each record of them JSON that names the client's model as
// it was given (the name is the client's, and must never break out of its string).
//
// Input: [api byte][body...].
#include "serve/protocol.hpp"

#include <chimera/core/request.hpp>

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

namespace {

namespace json = boost::json;
using chimera::serve::Api;

[[noreturn]] void fail(const char* what, std::string_view detail) {
  std::fprintf(stderr, "%s: %.*s\n", what, static_cast<int>(detail.size()), detail.data());
  std::abort();
}

json::value parse_or_fail(std::string_view text, const char* what) {
  boost::system::error_code ec;
  json::value v = json::parse(json::string_view(text.data(), text.size()), ec);
  if (ec) fail(what, text);
  return v;
}

// Every record of `out` (SSE events for OpenAI, NDJSON lines for Ollama; one JSON body when not
// streamed) is JSON; those that name a model name `model`.
void check_records(Api api, bool stream, std::string_view out, const std::string& model) {
  const auto check = [&model](std::string_view record) {
    const json::value v = parse_or_fail(record, "a record that is not JSON");
    if (const auto* m = v.is_object() ? v.as_object().if_contains("model") : nullptr) {
      if (!m->is_string() || m->as_string() != model) fail("a record naming another model", record);
    }
  };
  if (!stream) {
    check(out);
    return;
  }
  const bool sse = chimera::serve::is_openai(api);
  const std::string_view end = sse ? "\n\n" : "\n";
  while (!out.empty()) {
    const auto at = out.find(end);
    if (at == std::string_view::npos) fail("a record without its end", out);
    std::string_view record = out.substr(0, at);
    out.remove_prefix(at + end.size());
    if (sse) {
      if (!record.starts_with("data: ")) fail("an event without data", record);
      record.remove_prefix(6);
      if (record == "[DONE]") continue;
    }
    check(record);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const auto api = static_cast<Api>(data[0] % 4);
  const std::string_view body(reinterpret_cast<const char*>(data + 1), size - 1);
  chimera::serve::Parsed parsed;
  const std::string error = chimera::serve::parse_request(api, body, parsed);
  const bool openai = chimera::serve::is_openai(api);
  if (!error.empty()) {
    parse_or_fail(chimera::serve::error_body(openai, error, "invalid_request_error"),
                  "an error body that is not JSON");
    return 0;
  }
  const chimera::Request& r = parsed.request;
  if (const auto why = chimera::validate(r.options); !why.empty()) {
    fail("options taken that validate refuses", why);
  }
  const std::string model = parsed.model.empty() ? "pool" : parsed.model;
  if (const auto reply = chimera::serve::ollama_load_reply(api, r, model)) {
    if (openai) fail("a load reply to an OpenAI request", *reply);
    if (!reply->ends_with("\n")) fail("a load reply that is not one line", *reply);
    check_records(api, false, std::string_view(*reply).substr(0, reply->size() - 1), model);
  }

  chimera::Completion done;
  done.text = "Hello, \"world\"\n";
  done.figures.tokens_out = 2;
  done.figures.tokens_in = 3;
  chimera::TokenEvent ev;
  ev.text = "Hello, ";
  chimera::TokenEvent second;
  second.text = "\"world\"\n";
  second.index = 1;
  {
    chimera::serve::Encoder enc(api, r.stream, model, parsed.include_usage);
    std::string out;
    if (r.stream) {
      enc.token(ev, out);
      enc.token(second, out);
      enc.finish(done, out);
    } else {
      out = enc.whole(done);
    }
    check_records(api, r.stream, out, model);
  }
  if (r.stream) {
    chimera::serve::Encoder enc(api, true, model, parsed.include_usage);
    std::string out;
    enc.token(ev, out);
    enc.stream_error(error.empty() ? std::string_view("upstream \"failed\"\n") : error, out);
    check_records(api, true, out, model);
  }
  return 0;
}
