// The C ABI's engine configuration (chimera_engine_create: [engine] and [[pool]] tables). Any
// text gives CHIMERA_OK and an engine, or a configuration error with a message; never
// CHIMERA_ERR_INTERNAL (reserved for out of memory and bugs) and never a crash. Models load
// when a scene first needs one, so nothing here touches llama.cpp.
#include <chimera.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);  // C strings end at a NUL
  chimera_engine* engine = nullptr;
  const chimera_status status = chimera_engine_create(text.c_str(), nullptr, &engine);
  if (status == CHIMERA_OK) {
    if (engine == nullptr) {
      std::fprintf(stderr, "CHIMERA_OK without an engine\n");
      std::abort();
    }
    chimera_engine_destroy(engine);
    return 0;
  }
  const char* error = chimera_last_error();
  if (engine != nullptr || status == CHIMERA_ERR_INTERNAL || error == nullptr ||
      std::strlen(error) == 0) {
    std::fprintf(stderr, "chimera_engine_create: %s, message '%s'\n", chimera_status_name(status),
                 error ? error : "(null)");
    std::abort();
  }
  return 0;
}
