// The C ABI's string entry points, as a game engine would call them with a player's text and
// a modder's files: scene text (chimera_scene_open), character and player names, personas,
// styles and settings (chimera_session_open), player lines (chimera_scene_say,
// chimera_session_send) and speaker names (chimera_scene_next). Every call must return a
// status (never CHIMERA_ERR_INTERNAL, which means a bug) with a message on failure, and every
// line must end.
//
// The characters run on a pool whose only endpoint is a closed loopback port, so a line
// fails fast with CHIMERA_ERR_BACKEND instead of generating. Scene texts that could name a
// model file are skipped: loading one is not what this target is about, and the engine's
// default model is a file that does not exist.
#include <chimera.h>

#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace {

constexpr const char* kEngineConfig = R"(
[[pool]]
name = "p"
retries = 0
health_interval_ms = 0
[[pool.endpoint]]
url = "http://127.0.0.1:1"
backend = "openai"
)";

chimera_engine* make_engine() {
  chimera_engine_params params = chimera_engine_default_params();
  params.delivery = CHIMERA_DELIVERY_IMMEDIATE;
  params.model = "/nonexistent/chimera-fuzz.gguf";
  chimera_engine* engine = nullptr;
  if (chimera_engine_create(kEngineConfig, &params, &engine) != CHIMERA_OK) {
    std::fprintf(stderr, "cannot make the engine: %s\n", chimera_last_error());
    std::abort();
  }
  return engine;
}

void check(chimera_status status, const char* call) {
  if (status == CHIMERA_OK) return;
  const char* error = chimera_last_error();
  if (status == CHIMERA_ERR_INTERNAL || error == nullptr || *error == '\0') {
    std::fprintf(stderr, "%s: %s, message '%s'\n", call, chimera_status_name(status),
                 error ? error : "(null)");
    std::abort();
  }
}

bool names_a_model(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return text.find("model") != std::string::npos || text.find("llama") != std::string::npos ||
         text.find("gguf") != std::string::npos || text.find("tiny") != std::string::npos;
}

void run_line(chimera_line* line) {
  if (line == nullptr) return;
  if (chimera_line_wait(line, 20'000) != CHIMERA_OK) {
    std::fprintf(stderr, "a line against a closed port did not end within 20 s\n");
    std::abort();
  }
  chimera_line_figures figures;
  check(chimera_line_get_figures(line, &figures), "chimera_line_get_figures");
  (void)chimera_line_text(line);
  (void)chimera_line_error(line);
  chimera_line_destroy(line);
}

void fuzz_scene(chimera_engine* engine, FuzzedDataProvider& in) {
  const std::string scene_text = in.ConsumeRandomLengthString(2048);
  const std::string said = in.ConsumeRandomLengthString(256);
  const std::string speaker = in.ConsumeRandomLengthString(32);
  const bool interrupt = in.ConsumeBool();
  if (names_a_model(scene_text)) return;
  chimera_scene_params params = chimera_scene_default_params();
  params.warm_up = 0;
  chimera_scene* scene = nullptr;
  const chimera_status status = chimera_scene_open(engine, scene_text.c_str(), &params, &scene);
  check(status, "chimera_scene_open");
  if (scene == nullptr) return;
  const int count = chimera_scene_character_count(scene);
  for (int i = -1; i <= count; ++i) (void)chimera_scene_character_name(scene, i);
  check(chimera_scene_say(scene, speaker.empty() ? nullptr : speaker.c_str(), said.c_str(),
                          interrupt),
        "chimera_scene_say");
  chimera_line_params lp = chimera_line_default_params();
  lp.speaker = speaker.empty() ? nullptr : speaker.c_str();
  chimera_line* line = nullptr;
  check(chimera_scene_next(scene, &lp, &line), "chimera_scene_next");
  run_line(line);
  chimera_scene_destroy(scene);
}

void fuzz_session(chimera_engine* engine, FuzzedDataProvider& in) {
  const std::string name = in.ConsumeRandomLengthString(64);
  const std::string persona = in.ConsumeRandomLengthString(512);
  const std::string style = in.ConsumeRandomLengthString(128);
  const std::string setting = in.ConsumeRandomLengthString(256);
  const std::string player = in.ConsumeRandomLengthString(64);
  const std::string text = in.ConsumeRandomLengthString(512);
  chimera_session_params params = chimera_session_default_params();
  params.name = name.c_str();
  params.persona = persona.c_str();
  params.style = style.c_str();
  params.setting = setting.c_str();
  params.player = player.empty() ? nullptr : player.c_str();
  params.pool = "p";
  params.warm_up = false;
  chimera_session* session = nullptr;
  check(chimera_session_open(engine, &params, &session), "chimera_session_open");
  if (session == nullptr) return;
  chimera_line* line = nullptr;
  check(chimera_session_send(session, text.c_str(), nullptr, &line), "chimera_session_send");
  run_line(line);
  chimera_session_destroy(session);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static chimera_engine* engine = make_engine();
  FuzzedDataProvider in(data, size);
  if (in.ConsumeBool()) {
    fuzz_scene(engine, in);
  } else {
    fuzz_session(engine, in);
  }
  return 0;
}
