#include "support/test_support.hpp"

#include <chimera/model/synthetic_model.hpp>

#include <boost/json/parse.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <sstream>

namespace chimera::test {

namespace {

// Writes `o` (its output named `file` in the build tree's test-models/ folder) unless the file is
// there: several test processes may ask at once (the writer replaces the file atomically).
// `chat_template`: the name of one of llama.cpp's templates, or empty.
std::filesystem::path synthesized(const std::string& file, model::SynthOptions o,
                                  const std::string& chat_template = {}) {
  const std::filesystem::path dir = CHIMERA_TEST_MODEL_DIR;
  const auto path = dir / file;
  if (std::filesystem::exists(path)) return path;
  std::filesystem::create_directories(dir);
  o.output = path;
  std::string error;
  if (!chat_template.empty() && !model::find_chat_template(chat_template, o.chat_template, error)) {
    throw std::runtime_error("cannot read the chat template " + chat_template + " for " + file +
                             ": " + error);
  }
  const auto r = model::synthesize(o);
  if (!r.ok) throw std::runtime_error("cannot write the test model " + file + ": " + r.error);
  return path;
}

}  // namespace

std::filesystem::path tiny_model() {
  return synthesized("tiny-seed42.gguf", {.preset = "tiny", .seed = 42});
}

std::filesystem::path tool_model() {
  // Qwen's own vocabulary: the template's markers (<|im_start|>, <tool_call>) are its tokens.
  return synthesized(
      "tiny-qwen2-tools-seed42.gguf",
      {.preset = "tiny", .vocab_file = model::default_vocab_file("qwen2"), .seed = 42},
      kToolTemplate);
}

std::filesystem::path tool_call_model() {
  return synthesized(
      "tiny-llama3-tools-seed42.gguf",
      {.preset = "tiny", .vocab_file = model::default_vocab_file("llama-bpe"), .seed = 42},
      kToolCallTemplate);
}

std::filesystem::path qwen2_model(const std::string& chat_template) {
  return synthesized(
      "tiny-qwen2-" + chat_template + "-seed42.gguf",
      {.preset = "tiny", .vocab_file = model::default_vocab_file("qwen2"), .seed = 42},
      chat_template);
}

LlamaServer::LlamaServer(const std::filesystem::path& model, Options options) {
  ServerOptions o;
  o.model = model.string();
  o.parallel = options.parallel;
  o.ctx = options.ctx;
  o.threads = 2;
  o.extra = {"--no-warmup", "--cache-ram", "0"};
  o.extra.insert(o.extra.end(), options.extra.begin(), options.extra.end());
  process_ = std::make_unique<ServerProcess>(std::move(o));
}

bool valid_utf8(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    int n = 0;
    if (c < 0x80)
      n = 0;
    else if ((c >> 5) == 0x6 && c >= 0xC2)
      n = 1;
    else if ((c >> 4) == 0xE)
      n = 2;
    else if ((c >> 3) == 0x1E && c <= 0xF4)
      n = 3;
    else
      return false;
    if (i + static_cast<std::size_t>(n) >= s.size()) return false;  // a cut-off sequence
    for (int k = 1; k <= n; ++k) {
      if ((static_cast<unsigned char>(s[i + k]) >> 6) != 0x2) return false;
    }
    i += static_cast<std::size_t>(n) + 1;
  }
  return true;
}

bool slots_idle(int port) {
  std::string body;
  if (loopback_get(port, "/slots", &body) != 200) return false;
  boost::system::error_code ec;
  auto v = boost::json::parse(body, ec);
  if (ec || !v.is_array()) return false;
  for (const auto& s : v.get_array()) {
    const auto* p = s.as_object().if_contains("is_processing");
    if (p && p->is_bool() && p->get_bool()) return false;
  }
  return true;
}

}  // namespace chimera::test

namespace chimera::test {

CliRun run_cli(const std::string& args, const std::string& shell_prefix) {
  static std::atomic<int> n{0};
  const auto dir =
      std::filesystem::temp_directory_path() / ("chimera-cli-run-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const int k = n++;
  const auto out = dir / ("out" + std::to_string(k));
  const auto err = dir / ("err" + std::to_string(k));
  const std::string cmd = shell_prefix + std::string(CHIMERA_CLI) + " " + args + " >" +
                          out.string() + " 2>" + err.string() + " </dev/null";
  const int status = std::system(cmd.c_str());
  auto slurp = [](const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  };
  CliRun r;
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = slurp(out);
  r.err = slurp(err);
  std::error_code ec;
  std::filesystem::remove(out, ec);
  std::filesystem::remove(err, ec);
  return r;
}

}  // namespace chimera::test
