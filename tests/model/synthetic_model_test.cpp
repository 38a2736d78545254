// Tests for chimera::model::synthesize: the `tiny` preset (~17 MB) is written into a temporary
// directory, loaded with llama.cpp and run. The llama-1b and llama-3b presets are too big for
// unit tests: their shapes are checked through a header-only file (metadata, no weights).

#include "chimera/model/synthetic_model.hpp"

#include "chimera/core/install_paths.hpp"

#include <ggml-backend.h>
#include <gguf.h>
#include <gtest/gtest.h>
#include <llama.h>

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace fs = std::filesystem;
using chimera::model::SynthOptions;
using chimera::model::SynthResult;

namespace {

bool valid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len = 0;
    uint32_t cp = 0;
    uint32_t min = 0;
    if ((c & 0xE0) == 0xC0) {
      len = 2, cp = c & 0x1F, min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3, cp = c & 0x0F, min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4, cp = c & 0x07, min = 0x10000;
    } else {
      return false;
    }
    if (i + len > s.size()) return false;
    for (size_t k = 1; k < len; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += len;
  }
  return true;
}

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::string piece(const llama_vocab* vocab, llama_token tok, bool special) {
  std::string out(64, '\0');
  int n =
      llama_token_to_piece(vocab, tok, out.data(), static_cast<int32_t>(out.size()), 0, special);
  if (n < 0) {
    out.resize(static_cast<size_t>(-n));
    n = llama_token_to_piece(vocab, tok, out.data(), static_cast<int32_t>(out.size()), 0, special);
  }
  out.resize(static_cast<size_t>(n < 0 ? 0 : n));
  return out;
}

std::vector<llama_token> tokenize(const llama_vocab* vocab, const std::string& text,
                                  bool add_special) {
  std::vector<llama_token> toks(text.size() + 8);
  int n = llama_tokenize(vocab, text.data(), static_cast<int32_t>(text.size()), toks.data(),
                         static_cast<int32_t>(toks.size()), add_special, false);
  if (n < 0) {
    toks.resize(static_cast<size_t>(-n));
    n = llama_tokenize(vocab, text.data(), static_cast<int32_t>(text.size()), toks.data(),
                       static_cast<int32_t>(toks.size()), add_special, false);
  }
  toks.resize(static_cast<size_t>(n < 0 ? 0 : n));
  return toks;
}

void quiet_log(ggml_log_level level, const char* text, void*) {
  if (level == GGML_LOG_LEVEL_ERROR) fputs(text, stderr);
}

struct ModelDeleter {
  void operator()(llama_model* m) const { llama_model_free(m); }
};
using ModelPtr = std::unique_ptr<llama_model, ModelDeleter>;

ModelPtr load(const fs::path& path, bool vocab_only = false) {
  llama_model_params mp = llama_model_default_params();
  mp.n_gpu_layers = 0;
  mp.vocab_only = vocab_only;
  return ModelPtr(llama_model_load_from_file(path.c_str(), mp));
}

class SynthTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    llama_log_set(quiet_log, nullptr);
    llama_backend_init();
#ifdef CHIMERA_GGML_BACKEND_DL
    // A portable llama.cpp keeps its CPU kernels in loadable modules (as the engine loads them).
    if (const auto dir = chimera::ggml_backend_dir(); !dir.empty()) {
      ggml_backend_load_all_from_path(dir.c_str());
    }
#endif
    dir_ = fs::path(::testing::TempDir()) / ("chimera-synth-test-" + std::to_string(::getpid()));
    fs::create_directories(dir_);
    SynthOptions o;
    o.preset = "tiny";
    o.output = dir_ / "tiny.gguf";
    o.seed = 42;
    tiny_ = new SynthResult(chimera::model::synthesize(o));
  }
  static void TearDownTestSuite() {
    delete tiny_;
    tiny_ = nullptr;
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  void SetUp() override {
    ASSERT_TRUE(tiny_->ok) << tiny_->error;
  }

  static fs::path tiny_path() {
    return dir_ / "tiny.gguf";
  }

  static fs::path dir_;
  static SynthResult* tiny_;
};

fs::path SynthTest::dir_;
SynthResult* SynthTest::tiny_ = nullptr;

TEST(SynthPresets, TinyAndLlama1b) {
  const auto* tiny = chimera::model::find_preset("tiny");
  ASSERT_NE(tiny, nullptr);
  EXPECT_EQ(tiny->vocab, "llama-spm");
  EXPECT_EQ(tiny->n_embd, 128u);
  EXPECT_EQ(tiny->n_layer, 2u);
  EXPECT_EQ(tiny->n_head, 4u);
  EXPECT_EQ(tiny->n_head_kv, 2u);
  EXPECT_EQ(tiny->n_ff, 352u);
  EXPECT_EQ(tiny->n_ctx_train, 2048u);
  EXPECT_FALSE(tiny->tied_embeddings);

  const auto* l1b = chimera::model::find_preset("llama-1b");
  ASSERT_NE(l1b, nullptr);
  EXPECT_EQ(l1b->vocab, "llama-bpe");
  EXPECT_EQ(l1b->n_embd, 2048u);
  EXPECT_EQ(l1b->n_layer, 16u);
  EXPECT_EQ(l1b->n_head, 32u);
  EXPECT_EQ(l1b->n_head_kv, 8u);
  EXPECT_EQ(l1b->n_ff, 8192u);
  EXPECT_EQ(l1b->n_ctx_train, 8192u);
  EXPECT_FLOAT_EQ(l1b->rope_freq_base, 500000.0f);
  EXPECT_TRUE(l1b->tied_embeddings);

  EXPECT_EQ(chimera::model::find_preset("nope"), nullptr);
  EXPECT_GE(chimera::model::presets().size(), 2u);
}

TEST(SynthPresets, Llama3b) {
  const auto* l3b = chimera::model::find_preset("llama-3b");
  ASSERT_NE(l3b, nullptr);
  EXPECT_EQ(l3b->vocab, "llama-bpe");
  EXPECT_EQ(l3b->n_embd, 3072u);
  EXPECT_EQ(l3b->n_layer, 28u);
  EXPECT_EQ(l3b->n_head, 24u);
  EXPECT_EQ(l3b->n_head_kv, 8u);
  EXPECT_EQ(l3b->n_ff, 8192u);
  EXPECT_FLOAT_EQ(l3b->rope_freq_base, 500000.0f);
  EXPECT_TRUE(l3b->tied_embeddings);
}

// What a llama-3b file says about itself, read back from its header (the 6.4 GB of weights are
// not written): llama.cpp reads these keys and tensor shapes to build the model.
TEST(SynthHeaderOnly, Llama3bWritesItsHyperParametersAndShapes) {
  const fs::path dir =
      fs::path(::testing::TempDir()) / ("chimera-synth-3b-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  SynthOptions o;
  o.preset = "llama-3b";
  o.output = dir / "llama-3b-header.gguf";
  o.header_only = true;
  const SynthResult r = chimera::model::synthesize(o);
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.n_vocab, 128256u);
  // Embeddings 128256 x 3072 (tied: no output.weight), the output norm, and 28 blocks of
  // q, o 3072x3072, k, v 3072x1024, gate, up, down 3072x8192 and two norms.
  const uint64_t block = 2 * 3072ull * 3072 + 2 * 3072ull * 1024 + 3 * 3072ull * 8192 + 2 * 3072;
  const uint64_t n_params = 128256ull * 3072 + 3072 + 28 * block;
  EXPECT_EQ(r.n_params, n_params);
  // f16 weights, f32 norms.
  EXPECT_EQ(r.tensor_bytes, 2 * n_params + 2 * (3072 + 28 * 2 * 3072ull));
  EXPECT_EQ(r.file_bytes, fs::file_size(o.output));
  EXPECT_LT(r.file_bytes, 16u << 20) << "a header-only file holds no weights";

  gguf_context* g =
      gguf_init_from_file(o.output.c_str(), gguf_init_params{/*no_alloc=*/true, nullptr});
  ASSERT_NE(g, nullptr);
  auto u32 = [g](const char* key) {
    const int64_t id = gguf_find_key(g, key);
    return id < 0 ? 0u : gguf_get_val_u32(g, id);
  };
  auto f32 = [g](const char* key) {
    const int64_t id = gguf_find_key(g, key);
    return id < 0 ? 0.0f : gguf_get_val_f32(g, id);
  };
  EXPECT_STREQ(gguf_get_val_str(g, gguf_find_key(g, "general.architecture")), "llama");
  EXPECT_EQ(u32("general.file_type"), 1u);  // mostly f16
  EXPECT_EQ(u32("llama.embedding_length"), 3072u);
  EXPECT_EQ(u32("llama.block_count"), 28u);
  EXPECT_EQ(u32("llama.attention.head_count"), 24u);
  EXPECT_EQ(u32("llama.attention.head_count_kv"), 8u);
  EXPECT_EQ(u32("llama.feed_forward_length"), 8192u);
  EXPECT_EQ(u32("llama.rope.dimension_count"), 128u);
  EXPECT_EQ(u32("llama.vocab_size"), 128256u);
  EXPECT_FLOAT_EQ(f32("llama.rope.freq_base"), 500000.0f);
  EXPECT_EQ(gguf_get_n_tensors(g), 2 + 28 * 9);
  EXPECT_LT(gguf_find_tensor(g, "output.weight"), 0);
  const int64_t embd = gguf_find_tensor(g, "token_embd.weight");
  ASSERT_GE(embd, 0);
  EXPECT_EQ(gguf_get_tensor_type(g, embd), GGML_TYPE_F16);
  EXPECT_EQ(gguf_get_tensor_size(g, embd), 128256ull * 3072 * 2);
  const int64_t k = gguf_find_tensor(g, "blk.27.attn_k.weight");
  ASSERT_GE(k, 0);
  EXPECT_EQ(gguf_get_tensor_size(g, k), 3072ull * 1024 * 2);
  gguf_free(g);
  std::error_code ec;
  fs::remove_all(dir, ec);
}

TEST(SynthVocab, DefaultVocabFileHonoursEnvironment) {
  const char* old = std::getenv("CHIMERA_VOCAB_DIR");
  const std::string saved = old ? old : "";
  ::setenv("CHIMERA_VOCAB_DIR", "/some/where", 1);
  EXPECT_EQ(chimera::model::default_vocab_file("llama-bpe"),
            fs::path("/some/where/ggml-vocab-llama-bpe.gguf"));
  ::unsetenv("CHIMERA_VOCAB_DIR");
#ifdef CHIMERA_VOCAB_DIR
  EXPECT_EQ(chimera::model::default_vocab_file("llama-spm"),
            fs::path(CHIMERA_VOCAB_DIR) / "ggml-vocab-llama-spm.gguf");
#endif
  if (old) ::setenv("CHIMERA_VOCAB_DIR", saved.c_str(), 1);
}

TEST_F(SynthTest, ResultDescribesTheFile) {
  EXPECT_EQ(tiny_->n_vocab, 32000u);
  // 128*32000*2 (embeddings, output) + 2 blocks + output norm.
  EXPECT_EQ(tiny_->n_params, 8561280u);
  EXPECT_EQ(tiny_->file_bytes, fs::file_size(tiny_path()));
  // SPM byte tokens <0x80>..<0xFF> are the only pieces of the llama SPM vocabulary that are not
  // UTF-8 on their own.
  EXPECT_EQ(tiny_->n_tokens_unused, 128u);
  // No temporary files left behind.
  size_t n_files = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir_)) ++n_files;
  EXPECT_EQ(n_files, 1u);
}

TEST_F(SynthTest, LoadsWithLlamaCpp) {
  ModelPtr model = load(tiny_path());
  ASSERT_TRUE(model);
  const llama_vocab* vocab = llama_model_get_vocab(model.get());
  EXPECT_EQ(llama_vocab_n_tokens(vocab), 32000);
  EXPECT_EQ(llama_vocab_type(vocab), LLAMA_VOCAB_TYPE_SPM);
  EXPECT_EQ(llama_model_n_embd(model.get()), 128);
  EXPECT_EQ(llama_model_n_layer(model.get()), 2);
  EXPECT_EQ(llama_model_n_head(model.get()), 4);
  EXPECT_EQ(llama_model_n_head_kv(model.get()), 2);
  EXPECT_EQ(llama_model_n_ctx_train(model.get()), 2048);
  EXPECT_EQ(llama_model_n_params(model.get()), tiny_->n_params);
}

TEST_F(SynthTest, SameSeedSameBytesOtherSeedOtherBytes) {
  SynthOptions o;
  o.preset = "tiny";
  o.seed = 42;
  o.output = dir_ / "again.gguf";
  uint64_t last_done = 0, last_total = 0;
  bool monotonic = true;
  o.on_progress = [&](uint64_t done, uint64_t total) {
    monotonic = monotonic && done >= last_done && done <= total;
    last_done = done;
    last_total = total;
  };
  const SynthResult again = chimera::model::synthesize(o);
  ASSERT_TRUE(again.ok) << again.error;
  EXPECT_TRUE(monotonic);
  EXPECT_GT(last_total, 0u);
  EXPECT_EQ(last_done, last_total);
  const std::string a = read_file(tiny_path());
  EXPECT_TRUE(read_file(o.output) == a) << "same preset and seed must give a byte-identical file";

  o.seed = 43;
  o.on_progress = nullptr;
  const SynthResult other = chimera::model::synthesize(o);  // replaces again.gguf
  ASSERT_TRUE(other.ok) << other.error;
  const std::string b = read_file(o.output);
  EXPECT_EQ(b.size(), a.size());
  EXPECT_FALSE(b == a);
}

TEST_F(SynthTest, F32WeightsLoad) {
  SynthOptions o;
  o.preset = "tiny";
  o.type = chimera::model::WeightType::f32;
  o.output = dir_ / "tiny-f32.gguf";
  const SynthResult r = chimera::model::synthesize(o);
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.n_params, tiny_->n_params);
  EXPECT_GT(r.file_bytes, tiny_->file_bytes + tiny_->n_params);  // about 2 more bytes a weight
  ModelPtr model = load(o.output);
  ASSERT_TRUE(model);
  EXPECT_EQ(llama_model_n_params(model.get()), r.n_params);
}

TEST_F(SynthTest, EveryTokenPieceIsValidUtf8) {
  ModelPtr model = load(tiny_path(), /*vocab_only=*/true);
  ASSERT_TRUE(model);
  const llama_vocab* vocab = llama_model_get_vocab(model.get());
  const int n = llama_vocab_n_tokens(vocab);
  int n_empty = 0;
  for (llama_token t = 0; t < n; ++t) {
    const std::string p = piece(vocab, t, /*special=*/false);
    ASSERT_TRUE(valid_utf8(p)) << "token " << t << " (" << llama_vocab_get_text(vocab, t) << ")";
    ASSERT_TRUE(valid_utf8(piece(vocab, t, /*special=*/true))) << "token " << t;
    n_empty += p.empty();
  }
  // The 128 high byte tokens plus <unk>, <s>, </s>.
  EXPECT_EQ(n_empty, 131);
  // ASCII byte tokens keep their byte: the newline token still renders as a newline.
  EXPECT_EQ(piece(vocab, tokenize(vocab, "\n", false).back(), false), "\n");
}

TEST_F(SynthTest, TokenizesLikeTheOriginalVocabulary) {
  ModelPtr synth = load(tiny_path(), true);
  ModelPtr orig = load(chimera::model::default_vocab_file("llama-spm"), true);
  ASSERT_TRUE(synth);
  ASSERT_TRUE(orig);
  // Characters outside the vocabulary fall back to byte tokens, which are found by their text.
  const std::string text = "Hello, world!\n\tÜnïcödé text with a llama 🦙 and 漢字.";
  const auto a = tokenize(llama_model_get_vocab(synth.get()), text, true);
  const auto b = tokenize(llama_model_get_vocab(orig.get()), text, true);
  EXPECT_FALSE(a.empty());
  EXPECT_EQ(a, b);
}

TEST_F(SynthTest, GeneratedTextIsValidUtf8) {
  ModelPtr model = load(tiny_path());
  ASSERT_TRUE(model);
  const llama_vocab* vocab = llama_model_get_vocab(model.get());

  llama_context_params cp = llama_context_default_params();
  cp.n_ctx = 256;
  cp.n_batch = 256;
  cp.n_ubatch = 256;
  cp.n_threads = 2;
  cp.n_threads_batch = 2;
  llama_context* ctx = llama_init_from_model(model.get(), cp);
  ASSERT_NE(ctx, nullptr);

  llama_sampler* smpl = llama_sampler_chain_init(llama_sampler_chain_default_params());
  llama_sampler_chain_add(smpl, llama_sampler_init_dist(1234));

  std::vector<llama_token> prompt = tokenize(vocab, "Once upon a time, 🦙", true);
  ASSERT_FALSE(prompt.empty());
  ASSERT_EQ(
      llama_decode(ctx, llama_batch_get_one(prompt.data(), static_cast<int32_t>(prompt.size()))),
      0);

  std::string text;
  int n_generated = 0;
  for (int i = 0; i < 64; ++i) {
    llama_token tok = llama_sampler_sample(smpl, ctx, -1);
    if (llama_vocab_is_eog(vocab, tok)) break;
    const std::string p = piece(vocab, tok, false);
    EXPECT_TRUE(valid_utf8(p)) << "token " << tok;
    text += p;
    ++n_generated;
    ASSERT_EQ(llama_decode(ctx, llama_batch_get_one(&tok, 1)), 0);
  }
  EXPECT_GT(n_generated, 0);
  EXPECT_FALSE(text.empty());
  EXPECT_TRUE(valid_utf8(text));

  llama_sampler_free(smpl);
  llama_free(ctx);
}

TEST(SynthErrors, UnknownPresetListsTheValidOnes) {
  SynthOptions o;
  o.preset = "gpt-5";
  o.output = fs::path(::testing::TempDir()) / "never.gguf";
  const SynthResult r = chimera::model::synthesize(o);
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.error.find("gpt-5"), std::string::npos) << r.error;
  EXPECT_NE(r.error.find("tiny"), std::string::npos) << r.error;
  EXPECT_NE(r.error.find("llama-1b"), std::string::npos) << r.error;
  EXPECT_FALSE(fs::exists(o.output));
}

TEST(SynthErrors, MissingVocabularyNamesThePathAndTheFix) {
  SynthOptions o;
  o.preset = "tiny";
  o.vocab_file = "/nonexistent/ggml-vocab-llama-spm.gguf";
  o.output = fs::path(::testing::TempDir()) / "never.gguf";
  const SynthResult r = chimera::model::synthesize(o);
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.error.find("/nonexistent/ggml-vocab-llama-spm.gguf"), std::string::npos) << r.error;
  EXPECT_NE(r.error.find("CHIMERA_VOCAB_DIR"), std::string::npos) << r.error;
  EXPECT_FALSE(fs::exists(o.output));
}

TEST(SynthErrors, UnwritableOutputNamesThePath) {
  SynthOptions o;
  o.preset = "tiny";
  o.output = "/nonexistent-dir-for-synth/sub/tiny.gguf";
  const SynthResult r = chimera::model::synthesize(o);
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.error.find(o.output.string()), std::string::npos) << r.error;
  EXPECT_NE(r.error.find("No such file or directory"), std::string::npos) << r.error;
}

TEST(SynthErrors, NotAVocabularyFile) {
  const fs::path bogus =
      fs::path(::testing::TempDir()) / ("not-gguf-" + std::to_string(::getpid()));
  { std::ofstream(bogus) << "this is not a GGUF file"; }
  SynthOptions o;
  o.preset = "tiny";
  o.vocab_file = bogus;
  o.output = fs::path(::testing::TempDir()) / "never.gguf";
  llama_log_set(quiet_log, nullptr);
  const SynthResult r = chimera::model::synthesize(o);
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.error.find(bogus.string()), std::string::npos) << r.error;
  fs::remove(bogus);
}

}  // namespace
