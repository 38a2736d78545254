// Random-weight GGUF models of real architectures, for timing and tests.
//
// A synthetic model has the real shape of a known model (layers, heads, feed-forward width) and a
// real tokenizer vocabulary copied from one of llama.cpp's `models/ggml-vocab-*.gguf` files, so
// llama.cpp loads it and runs real inference at the real speed of that shape. Its text is noise.
//
// Streams stay valid UTF-8: every token whose text would decode to bytes that are not complete
// UTF-8 (SPM byte tokens <0x80>..<0xFF>, byte-level BPE fragments of multi-byte characters) is
// marked UNUSED in `tokenizer.ggml.token_type`. llama.cpp renders UNUSED tokens as empty text,
// exactly as it renders control tokens, while the tokenizer still finds them by their text, so
// prompts tokenize as with the original vocabulary. See docs/synthetic-models.md.
//
// Thread safety: free functions, no shared state.
//
// Example:
//   chimera::model::SynthOptions o;
//   o.preset = "tiny";
//   o.vocab_file = "/path/to/ggml-vocab-llama-spm.gguf";
//   o.output = "tiny.gguf";
//   auto r = chimera::model::synthesize(o);
//   if (!r.ok) fmt::print(stderr, "{}\n", r.error);
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

namespace chimera::model {

// The shape of a llama-architecture model.
struct Shape {
  std::string name;          // preset name, e.g. "tiny"
  std::string vocab;         // which ggml-vocab-*.gguf it takes: "llama-spm" or "llama-bpe"
  uint32_t n_embd = 0;       // embedding width
  uint32_t n_layer = 0;      // transformer blocks
  uint32_t n_head = 0;       // attention heads
  uint32_t n_head_kv = 0;    // key/value heads (grouped-query attention)
  uint32_t n_ff = 0;         // feed-forward width
  uint32_t n_ctx_train = 0;  // context length written into the file
  float rope_freq_base = 10000.0f;
  float rms_eps = 1e-5f;
  bool tied_embeddings = false;  // no output.weight; the output reuses token_embd.weight
};

// The presets: "tiny" (about 8M parameters, 32k SPM vocabulary), "llama-1b" and "llama-3b" (the
// Llama 3.2 1B and 3B shapes with the Llama 3 BPE vocabulary). More may be added; names are
// stable.
const std::vector<Shape>& presets();

// Finds a preset by name; nullptr when there is none.
const Shape* find_preset(const std::string& name);

enum class WeightType { f32, f16 };

struct SynthOptions {
  std::string preset = "tiny";
  std::filesystem::path
      vocab_file;                // a ggml-vocab-*.gguf; empty: look it up (see default_vocab_file)
  std::filesystem::path output;  // the GGUF file to write (replaced atomically)
  uint64_t seed = 42;            // same seed, same preset, same vocabulary: byte-identical file
  WeightType type = WeightType::f16;
  // A Jinja chat template written as `tokenizer.chat_template` (the text itself; empty: none,
  // so llama.cpp and llama-server fall back to their default). See find_chat_template.
  std::string chat_template;
  // Progress, called now and then with bytes of tensor data written and the total.
  std::function<void(uint64_t done, uint64_t total)> on_progress;
  // Writes the GGUF header alone (metadata and tensor infos, no weights): a file of a few MB
  // that states the model's hyper-parameters and tensor shapes for a check, which llama.cpp
  // cannot load. SynthResult still counts the whole model's parameters and tensor bytes.
  bool header_only = false;
};

struct SynthResult {
  bool ok = false;
  std::string error;             // what went wrong and what to do, when !ok
  uint64_t n_params = 0;         // parameters written
  uint64_t file_bytes = 0;       // size of the written file
  uint64_t tensor_bytes = 0;     // the weights' bytes (also with header_only, which omits them)
  uint32_t n_vocab = 0;          // tokens in the vocabulary
  uint32_t n_tokens_unused = 0;  // tokens marked UNUSED so that every stream is valid UTF-8
};

// Writes the model. Never throws; errors come back in SynthResult::error.
SynthResult synthesize(const SynthOptions& options);

// Where the vocabulary for `vocab` ("llama-spm", "llama-bpe") is found: the pinned llama.cpp
// source's models/ directory recorded at build time, or $CHIMERA_VOCAB_DIR when set.
std::filesystem::path default_vocab_file(const std::string& vocab);

// Reads a chat template: `name_or_path` is a file, or the name of one of the templates in the
// pinned llama.cpp source's models/templates/ (e.g. "Qwen-Qwen2.5-7B-Instruct", next to the
// vocabularies). Returns false, with `error` naming what was tried, when it cannot be read.
bool find_chat_template(const std::string& name_or_path, std::string& text, std::string& error);

}  // namespace chimera::model

namespace chimera::model {

// The tiny synthetic model in the user's cache folder ($XDG_CACHE_HOME, else ~/.cache, then
// chimeraforge/models/tiny-seed42.gguf), written on first use; `created` says whether this call
// wrote it. Returns an empty path, with `error` set, when it cannot be written.
std::filesystem::path cached_tiny_model(bool& created, std::string& error);

}  // namespace chimera::model
