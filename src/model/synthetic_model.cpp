// Random-weight GGUF models of real architectures. See include/chimera/model/synthetic_model.hpp
// and docs/synthetic-models.md.
//
// The file is written in one streaming pass: the GGUF metadata (KV pairs and tensor infos, built
// with ggml's gguf API from tensors of a no_alloc ggml context) and then each tensor's data,
// generated chunk by chunk and padded to the GGUF alignment exactly as gguf.cpp lays it out
// (tensor i starts at data_offset + gguf_get_tensor_offset(i); every tensor is padded to the
// alignment). Peak memory is the metadata plus one chunk, so the 1B preset needs no more than a
// few megabytes. The data goes to a temporary file next to the output, renamed over it at the end.

#include "chimera/model/synthetic_model.hpp"

#include <chimera/core/install_paths.hpp>
#include <chimera/core/text.hpp>

#include <fmt/format.h>
#include <ggml.h>
#include <gguf.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <fstream>
#include <memory>
#include <sstream>
#include <string_view>
#include <system_error>
#include <utility>

namespace chimera::model {

namespace {

// ---------------------------------------------------------------------------------------------
// Deterministic random numbers: splitmix64 seeds xoshiro256**; both are fully specified, unlike
// std:: distributions. Each chunk of kChunkElems elements of each tensor has its own stream,
// seeded from (options.seed, tensor name, chunk index).

constexpr uint64_t kChunkElems = uint64_t{1} << 20;
constexpr float kWeightScale = 0.02f;  // matrices are uniform in [-scale, scale)

uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

uint64_t fnv1a64(std::string_view s) {
  uint64_t h = 0xCBF29CE484222325ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001B3ull;
  }
  return h;
}

class Xoshiro256ss {
 public:
  explicit Xoshiro256ss(uint64_t seed) {
    uint64_t sm = seed;
    for (auto& w : s_) w = splitmix64(sm);
  }
  uint64_t next() {
    const uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
  }

 private:
  static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  uint64_t s_[4];
};

uint64_t chunk_seed(uint64_t seed, uint64_t name_hash, uint64_t chunk) {
  uint64_t sm = seed;
  uint64_t a = splitmix64(sm);
  sm = a ^ name_hash;
  uint64_t b = splitmix64(sm);
  sm = b ^ (chunk * 0xD1342543DE82EF95ull + 1);
  return splitmix64(sm);
}

// Uniform in [-scale, scale): 24 random bits, exact float arithmetic, so identical everywhere.
void fill_uniform(float* out, uint64_t n, uint64_t seed, float scale) {
  Xoshiro256ss rng(seed);
  const float step = scale / 8388608.0f;  // 2^23
  for (uint64_t i = 0; i < n; ++i) {
    const int32_t r = static_cast<int32_t>(rng.next() >> 40) - 8388608;
    out[i] = static_cast<float>(r) * step;
  }
}

// ---------------------------------------------------------------------------------------------
// UTF-8 and llama.cpp's token rendering.

using text::valid_utf8;  // strict RFC 3629

// Decodes valid UTF-8 into code points (call only on valid_utf8 text).
std::vector<uint32_t> code_points(std::string_view s) {
  std::vector<uint32_t> out;
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    size_t len = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : 4;
    uint32_t cp = len == 1 ? c : len == 2 ? (c & 0x1F) : len == 3 ? (c & 0x0F) : (c & 0x07);
    for (size_t k = 1; k < len; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
    out.push_back(cp);
    i += len;
  }
  return out;
}

// GPT-2 byte-level BPE: the code point that stands for each byte, inverted (as
// unicode_utf8_to_byte_map in llama.cpp's unicode.cpp). Code points that stand for no byte: -1.
std::vector<int> gpt2_codepoint_to_byte() {
  std::vector<int> map(512, -1);
  std::vector<bool> direct(256, false);
  for (int ch = 0x21; ch <= 0x7E; ++ch) direct[ch] = true;
  for (int ch = 0xA1; ch <= 0xAC; ++ch) direct[ch] = true;
  for (int ch = 0xAE; ch <= 0xFF; ++ch) direct[ch] = true;
  int n = 0;
  for (int ch = 0; ch < 256; ++ch) {
    if (direct[ch]) {
      map[ch] = ch;
    } else {
      map[256 + n] = ch;
      ++n;
    }
  }
  return map;
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// As llama_decode_text in llama-vocab.cpp: each code point back to its byte; a code point that
// stands for no byte becomes "[UNK_BYTE_0x<hex>" + text + "]".
std::string gpt2_decode(std::string_view text, const std::vector<int>& cp_to_byte) {
  std::string out;
  for (uint32_t cp : code_points(text)) {
    if (cp < cp_to_byte.size() && cp_to_byte[cp] >= 0) {
      out += static_cast<char>(cp_to_byte[cp]);
    } else {
      std::string utf8;
      append_utf8(utf8, cp);
      out += "[UNK_BYTE_0x";
      static const char* hex = "0123456789abcdef";
      for (unsigned char c : utf8) {
        out += hex[c >> 4];
        out += hex[c & 15];
      }
      out += text;
      out += "]";
    }
  }
  return out;
}

std::string replace_all(std::string s, std::string_view from, std::string_view to) {
  size_t pos = 0;
  while ((pos = s.find(from, pos)) != std::string::npos) {
    s.replace(pos, from.size(), to);
    pos += to.size();
  }
  return s;
}

// llama_token_type values (llama.h).
enum : int32_t {
  kTokUndefined = 0,
  kTokNormal = 1,
  kTokUnknown = 2,
  kTokControl = 3,
  kTokUserDefined = 4,
  kTokUnused = 5,
  kTokByte = 6,
};

enum class VocabKind { spm, bpe };

// Whether the bytes llama.cpp's token_to_piece gives for this token are complete UTF-8 on their
// own. Tokens it renders as empty (unknown, control without `special`, unused, undefined) are
// fine as long as their text is valid UTF-8 (control tokens are rendered verbatim with `special`).
bool renders_valid_utf8(std::string_view text, int32_t type, VocabKind kind,
                        bool escape_whitespaces, const std::vector<int>& cp_to_byte) {
  if (!valid_utf8(text)) return false;
  switch (type) {
    case kTokNormal:
      if (kind == VocabKind::spm || escape_whitespaces) {
        return valid_utf8(replace_all(std::string(text), "\xE2\x96\x81", " "));
      }
      return valid_utf8(gpt2_decode(text, cp_to_byte));
    case kTokByte: {
      // token_to_byte: strtol of the two characters after "<0x".
      if (text.size() < 5) return false;
      const std::string hex(text.substr(3, 2));
      const long byte = std::strtol(hex.c_str(), nullptr, 16);
      return byte >= 0 && byte < 0x80;
    }
    default:
      return true;  // user-defined: verbatim text, checked above; others render empty
  }
}

// ---------------------------------------------------------------------------------------------
// Files.

std::string errno_text(int err) {
  return std::error_code(err, std::generic_category()).message();
}

bool write_all(int fd, const void* data, size_t n, int& err) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = ::write(fd, p, std::min<size_t>(n, size_t{1} << 30));
    if (w < 0) {
      if (errno == EINTR) continue;
      err = errno;
      return false;
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

// A temporary file beside the output; removed unless committed.
class TempFile {
 public:
  ~TempFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!path_.empty() && !committed_) ::unlink(path_.c_str());
  }
  bool create(const std::filesystem::path& output, std::string& error) {
    static std::atomic<uint64_t> counter{0};
    const std::filesystem::path dir = output.has_parent_path() ? output.parent_path() : ".";
    for (int attempt = 0; attempt < 100; ++attempt) {
      const std::string name = "." + output.filename().string() + ".tmp." +
                               std::to_string(::getpid()) + "." +
                               std::to_string(counter.fetch_add(1));
      const std::filesystem::path p = dir / name;
      const int fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
      if (fd >= 0) {
        fd_ = fd;
        path_ = p;
        return true;
      }
      if (errno != EEXIST) {
        error = "cannot write " + output.string() + ": cannot create a file in " + dir.string() +
                ": " + errno_text(errno);
        return false;
      }
    }
    error = "cannot write " + output.string() + ": no free temporary file name in " + dir.string();
    return false;
  }
  int fd() const { return fd_; }
  const std::filesystem::path& path() const { return path_; }
  bool commit(const std::filesystem::path& output, std::string& error) {
    if (::fsync(fd_) != 0) {
      error = "cannot write " + output.string() + ": " + errno_text(errno);
      return false;
    }
    const int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) {
      error = "cannot write " + output.string() + ": " + errno_text(errno);
      return false;
    }
    if (::rename(path_.c_str(), output.c_str()) != 0) {
      error = "cannot write " + output.string() + ": " + errno_text(errno);
      return false;
    }
    committed_ = true;
    return true;
  }

 private:
  int fd_ = -1;
  std::filesystem::path path_;
  bool committed_ = false;
};

struct GgufDeleter {
  void operator()(gguf_context* c) const { gguf_free(c); }
};
struct GgmlDeleter {
  void operator()(ggml_context* c) const { ggml_free(c); }
};
using GgufPtr = std::unique_ptr<gguf_context, GgufDeleter>;
using GgmlPtr = std::unique_ptr<ggml_context, GgmlDeleter>;

// Copies one KV pair (scalar or array) from src to dst, under the same key.
void copy_kv(gguf_context* dst, const gguf_context* src, int64_t id) {
  const char* key = gguf_get_key(src, id);
  switch (gguf_get_kv_type(src, id)) {
    case GGUF_TYPE_UINT8:
      gguf_set_val_u8(dst, key, gguf_get_val_u8(src, id));
      break;
    case GGUF_TYPE_INT8:
      gguf_set_val_i8(dst, key, gguf_get_val_i8(src, id));
      break;
    case GGUF_TYPE_UINT16:
      gguf_set_val_u16(dst, key, gguf_get_val_u16(src, id));
      break;
    case GGUF_TYPE_INT16:
      gguf_set_val_i16(dst, key, gguf_get_val_i16(src, id));
      break;
    case GGUF_TYPE_UINT32:
      gguf_set_val_u32(dst, key, gguf_get_val_u32(src, id));
      break;
    case GGUF_TYPE_INT32:
      gguf_set_val_i32(dst, key, gguf_get_val_i32(src, id));
      break;
    case GGUF_TYPE_FLOAT32:
      gguf_set_val_f32(dst, key, gguf_get_val_f32(src, id));
      break;
    case GGUF_TYPE_UINT64:
      gguf_set_val_u64(dst, key, gguf_get_val_u64(src, id));
      break;
    case GGUF_TYPE_INT64:
      gguf_set_val_i64(dst, key, gguf_get_val_i64(src, id));
      break;
    case GGUF_TYPE_FLOAT64:
      gguf_set_val_f64(dst, key, gguf_get_val_f64(src, id));
      break;
    case GGUF_TYPE_BOOL:
      gguf_set_val_bool(dst, key, gguf_get_val_bool(src, id));
      break;
    case GGUF_TYPE_STRING:
      gguf_set_val_str(dst, key, gguf_get_val_str(src, id));
      break;
    case GGUF_TYPE_ARRAY: {
      const gguf_type at = gguf_get_arr_type(src, id);
      const size_t n = gguf_get_arr_n(src, id);
      if (at == GGUF_TYPE_STRING) {
        std::vector<const char*> strs(n);
        for (size_t i = 0; i < n; ++i) strs[i] = gguf_get_arr_str(src, id, i);
        gguf_set_arr_str(dst, key, strs.data(), n);
      } else if (at != GGUF_TYPE_ARRAY) {
        gguf_set_arr_data(dst, key, at, gguf_get_arr_data(src, id), n);
      }
      break;  // nested arrays: none in tokenizer metadata; skipped
    }
    default:
      break;
  }
}

struct TensorPlan {
  std::string name;
  int64_t ne0 = 0;
  int64_t ne1 = 1;  // 1: a vector
  bool is_norm = false;
};

std::vector<TensorPlan> plan_tensors(const Shape& s, uint32_t n_vocab) {
  const int64_t embd = s.n_embd;
  const int64_t head_dim = s.n_embd / s.n_head;
  const int64_t q_dim = head_dim * s.n_head;
  const int64_t kv_dim = head_dim * s.n_head_kv;
  std::vector<TensorPlan> t;
  t.push_back({"token_embd.weight", embd, n_vocab, false});
  t.push_back({"output_norm.weight", embd, 1, true});
  if (!s.tied_embeddings) t.push_back({"output.weight", embd, n_vocab, false});
  for (uint32_t i = 0; i < s.n_layer; ++i) {
    const std::string b = "blk." + std::to_string(i) + ".";
    t.push_back({b + "attn_norm.weight", embd, 1, true});
    t.push_back({b + "attn_q.weight", embd, q_dim, false});
    t.push_back({b + "attn_k.weight", embd, kv_dim, false});
    t.push_back({b + "attn_v.weight", embd, kv_dim, false});
    t.push_back({b + "attn_output.weight", q_dim, embd, false});
    t.push_back({b + "ffn_norm.weight", embd, 1, true});
    t.push_back({b + "ffn_gate.weight", embd, s.n_ff, false});
    t.push_back({b + "ffn_up.weight", embd, s.n_ff, false});
    t.push_back({b + "ffn_down.weight", s.n_ff, embd, false});
  }
  return t;
}

std::string preset_names() {
  std::string out;
  for (const auto& p : presets()) {
    if (!out.empty()) out += ", ";
    out += p.name;
  }
  return out;
}

// Writes one synthetic model in phases that share the vocabulary, the GGUF header being built
// and the output file. Each phase returns false, with the result's error set, when it fails.
class SynthWriter {
 public:
  explicit SynthWriter(const SynthOptions& options) : options_(options) {}

  bool choose_shape() {
    shape_ = find_preset(options_.preset);
    if (shape_ == nullptr) {
      return fail("unknown preset '" + options_.preset + "'; valid presets: " + preset_names());
    }
    if (options_.output.empty()) return fail("no output file given");
    if (shape_->n_head == 0 || shape_->n_embd % shape_->n_head != 0 || shape_->n_head_kv == 0 ||
        shape_->n_head % shape_->n_head_kv != 0) {
      return fail("preset '" + shape_->name + "' has an invalid head layout");
    }
    return true;
  }

  // --- the vocabulary -----------------------------------------------------------------------
  bool open_vocabulary() {
    vocab_path_ =
        options_.vocab_file.empty() ? default_vocab_file(shape_->vocab) : options_.vocab_file;
    std::error_code ec;
    if (!std::filesystem::is_regular_file(vocab_path_, ec)) {
      return fail("vocabulary file " + vocab_path_.string() + " (for '" + shape_->vocab +
                  "') not found; set CHIMERA_VOCAB_DIR to llama.cpp's models/ directory (it holds "
                  "ggml-vocab-" +
                  shape_->vocab + ".gguf) or pass the file with --vocab");
    }
    vocab_.reset(
        gguf_init_from_file(vocab_path_.c_str(), gguf_init_params{/*no_alloc=*/true, nullptr}));
    if (!vocab_) return fail("cannot read " + vocab_path_.string() + " as a GGUF file");

    const int64_t id_model = gguf_find_key(vocab_.get(), "tokenizer.ggml.model");
    id_tokens_ = gguf_find_key(vocab_.get(), "tokenizer.ggml.tokens");
    if (id_model < 0 || gguf_get_kv_type(vocab_.get(), id_model) != GGUF_TYPE_STRING ||
        id_tokens_ < 0 || gguf_get_kv_type(vocab_.get(), id_tokens_) != GGUF_TYPE_ARRAY ||
        gguf_get_arr_type(vocab_.get(), id_tokens_) != GGUF_TYPE_STRING) {
      return fail(vocab_path_.string() +
                  " holds no tokenizer (tokenizer.ggml.model, tokenizer.ggml.tokens)");
    }
    const std::string tok_model = gguf_get_val_str(vocab_.get(), id_model);
    if (tok_model == "llama") {
      kind_ = VocabKind::spm;
    } else if (tok_model == "gpt2") {
      kind_ = VocabKind::bpe;
    } else {
      return fail(vocab_path_.string() + ": tokenizer model '" + tok_model +
                  "' is not supported (supported: llama (SPM), gpt2 (byte-level BPE))");
    }
    escape_whitespaces_ = kind_ == VocabKind::spm;
    if (const int64_t id_pre = gguf_find_key(vocab_.get(), "tokenizer.ggml.pre");
        kind_ == VocabKind::bpe && id_pre >= 0 &&
        gguf_get_kv_type(vocab_.get(), id_pre) == GGUF_TYPE_STRING) {
      const std::string pre = gguf_get_val_str(vocab_.get(), id_pre);
      escape_whitespaces_ =
          pre == "gemma4" || pre == "granite-embed-multi-311m" || pre == "sarvam-moe";
    }

    n_vocab_ = gguf_get_arr_n(vocab_.get(), id_tokens_);
    if (n_vocab_ == 0 || n_vocab_ > INT32_MAX)
      return fail(vocab_path_.string() + ": bad vocabulary size");
    result_.n_vocab = static_cast<uint32_t>(n_vocab_);
    return true;
  }

  // Token types, with tokens that would not render as complete UTF-8 marked UNUSED.
  bool read_token_types() {
    types_.assign(n_vocab_, kTokNormal);
    id_types_ = gguf_find_key(vocab_.get(), "tokenizer.ggml.token_type");
    if (id_types_ >= 0) {
      if (gguf_get_kv_type(vocab_.get(), id_types_) != GGUF_TYPE_ARRAY ||
          gguf_get_arr_type(vocab_.get(), id_types_) != GGUF_TYPE_INT32 ||
          gguf_get_arr_n(vocab_.get(), id_types_) != n_vocab_) {
        return fail(vocab_path_.string() + ": tokenizer.ggml.token_type is not an int32 array of " +
                    std::to_string(n_vocab_) + " entries");
      }
      const auto* src = static_cast<const int32_t*>(gguf_get_arr_data(vocab_.get(), id_types_));
      std::copy(src, src + n_vocab_, types_.begin());
    }
    const std::vector<int> cp_to_byte = gpt2_codepoint_to_byte();
    for (size_t i = 0; i < n_vocab_; ++i) {
      if (types_[i] == kTokUnused) continue;
      const char* text = gguf_get_arr_str(vocab_.get(), id_tokens_, i);
      if (!renders_valid_utf8(text, types_[i], kind_, escape_whitespaces_, cp_to_byte)) {
        types_[i] = kTokUnused;
        ++result_.n_tokens_unused;
      }
    }
    return true;
  }

  // --- metadata --------------------------------------------------------------------------------
  bool set_metadata() {
    out_.reset(gguf_init_empty());
    gguf_context* g = out_.get();
    const Shape& s = *shape_;
    gguf_set_val_str(g, "general.architecture", "llama");
    gguf_set_val_str(g, "general.type", "model");
    gguf_set_val_str(g, "general.name", ("chimera-synth-" + s.name).c_str());
    gguf_set_val_str(g, "general.description",
                     ("Synthetic model: random weights of the '" + s.name +
                      "' shape, for timing and tests; its text is noise")
                         .c_str());
    gguf_set_val_u32(g, "general.file_type", f16() ? 1u : 0u);  // LLAMA_FTYPE_MOSTLY_F16 / ALL_F32
    gguf_set_val_u32(g, "llama.vocab_size", result_.n_vocab);
    gguf_set_val_u32(g, "llama.context_length", s.n_ctx_train);
    gguf_set_val_u32(g, "llama.embedding_length", s.n_embd);
    gguf_set_val_u32(g, "llama.block_count", s.n_layer);
    gguf_set_val_u32(g, "llama.feed_forward_length", s.n_ff);
    gguf_set_val_u32(g, "llama.attention.head_count", s.n_head);
    gguf_set_val_u32(g, "llama.attention.head_count_kv", s.n_head_kv);
    gguf_set_val_f32(g, "llama.rope.freq_base", s.rope_freq_base);
    gguf_set_val_f32(g, "llama.attention.layer_norm_rms_epsilon", s.rms_eps);
    gguf_set_val_u32(g, "llama.rope.dimension_count", s.n_embd / s.n_head);
    gguf_set_val_str(g, "chimera.synth.preset", s.name.c_str());
    gguf_set_val_u64(g, "chimera.synth.seed", options_.seed);
    gguf_set_val_u32(g, "chimera.synth.tokens_unused", result_.n_tokens_unused);
    return true;
  }

  // Only the tokenizer.* keys of the vocabulary file; its general.* and llama.* describe the
  // model it was cut from.
  bool copy_tokenizer() {
    gguf_context* g = out_.get();
    for (int64_t i = 0; i < gguf_get_n_kv(vocab_.get()); ++i) {
      if (std::string_view(gguf_get_key(vocab_.get(), i)).starts_with("tokenizer.") &&
          i != id_types_) {
        copy_kv(g, vocab_.get(), i);
      }
    }
    gguf_set_arr_data(g, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, types_.data(), n_vocab_);
    if (!options_.chat_template.empty()) {
      gguf_set_val_str(g, "tokenizer.chat_template", options_.chat_template.c_str());
    }
    vocab_.reset();
    return true;
  }

  // Tensor infos from a no_alloc ggml context (gguf_add_tensor copies the tensor header only).
  bool add_tensor_infos() {
    gguf_context* g = out_.get();
    plan_ = plan_tensors(*shape_, result_.n_vocab);
    meta_.reset(
        ggml_init(ggml_init_params{ggml_tensor_overhead() * (plan_.size() + 1), nullptr, true}));
    if (!meta_) return fail("out of memory");
    for (const auto& t : plan_) {
      const ggml_type type = t.is_norm || !f16() ? GGML_TYPE_F32 : GGML_TYPE_F16;
      ggml_tensor* tensor = t.ne1 == 1 && t.is_norm
                                ? ggml_new_tensor_1d(meta_.get(), type, t.ne0)
                                : ggml_new_tensor_2d(meta_.get(), type, t.ne0, t.ne1);
      ggml_set_name(tensor, t.name.c_str());
      gguf_add_tensor(g, tensor);
      total_bytes_ += ggml_nbytes(tensor);
      result_.n_params += static_cast<uint64_t>(ggml_nelements(tensor));
    }
    result_.tensor_bytes = total_bytes_;
    return true;
  }

  // --- data --------------------------------------------------------------------------------------
  bool write_header() {
    gguf_context* g = out_.get();
    meta_size_ = gguf_get_meta_size(g);
    std::vector<char> header(meta_size_);
    gguf_get_meta_data(g, header.data());
    alignment_ = gguf_get_alignment(g);

    std::string error;
    if (!file_.create(options_.output, error)) return fail(error);
    int err = 0;
    if (!write_all(file_.fd(), header.data(), header.size(), err)) return write_failed(err);
    offset_ = meta_size_;
    return true;
  }

  bool write_tensors() {
    if (options_.header_only) return true;
    if (options_.on_progress) options_.on_progress(0, total_bytes_);
    f32_.resize(static_cast<size_t>(kChunkElems));
    f16buf_.resize(f16() ? static_cast<size_t>(kChunkElems) : 0);
    for (size_t ti = 0; ti < plan_.size(); ++ti) {
      if (!write_tensor(ti)) return false;
    }
    return true;
  }

  bool commit() {
    std::string error;
    if (!file_.commit(options_.output, error)) return fail(error);
    result_.file_bytes = offset_;
    std::error_code ec;
    const auto size_on_disk = std::filesystem::file_size(options_.output, ec);
    if (ec || size_on_disk != offset_) {
      return fail("cannot write " + options_.output.string() + ": the file has " +
                  std::to_string(size_on_disk) + " bytes, expected " + std::to_string(offset_));
    }
    result_.ok = true;
    return true;
  }

  SynthResult& result() { return result_; }

 private:
  bool fail(std::string msg) {
    result_.ok = false;
    result_.error = std::move(msg);
    return false;
  }

  bool write_failed(int err) {
    return fail("cannot write " + options_.output.string() + " (temporary file " +
                file_.path().string() + "): " + errno_text(err));
  }

  bool f16() const { return options_.type == WeightType::f16; }

  // One tensor's data in chunks of kChunkElems, then the padding up to the alignment.
  bool write_tensor(size_t ti) {
    static const char zeros[64] = {};
    const TensorPlan& t = plan_[ti];
    if (offset_ != meta_size_ + gguf_get_tensor_offset(out_.get(), static_cast<int64_t>(ti))) {
      return fail("internal error: tensor " + t.name + " would be written at the wrong offset");
    }
    const uint64_t n = static_cast<uint64_t>(t.ne0) * static_cast<uint64_t>(t.ne1);
    const uint64_t name_hash = fnv1a64(t.name);
    uint64_t nbytes = 0;
    int err = 0;
    for (uint64_t start = 0, chunk = 0; start < n; start += kChunkElems, ++chunk) {
      const uint64_t m = std::min(kChunkElems, n - start);
      const void* data = nullptr;
      size_t len = 0;
      if (t.is_norm) {
        std::fill_n(f32_.data(), m, 1.0f);
        data = f32_.data();
        len = m * sizeof(float);
      } else {
        fill_uniform(f32_.data(), m, chunk_seed(options_.seed, name_hash, chunk), kWeightScale);
        if (f16()) {
          ggml_fp32_to_fp16_row(f32_.data(), f16buf_.data(), static_cast<int64_t>(m));
          data = f16buf_.data();
          len = m * sizeof(ggml_fp16_t);
        } else {
          data = f32_.data();
          len = m * sizeof(float);
        }
      }
      if (!write_all(file_.fd(), data, len, err)) return write_failed(err);
      nbytes += len;
      done_ += len;
      if (options_.on_progress) options_.on_progress(done_, total_bytes_);
    }
    offset_ += nbytes;
    const uint64_t pad = (alignment_ - offset_ % alignment_) % alignment_;
    if (pad > 0 && !write_all(file_.fd(), zeros, static_cast<size_t>(pad), err))
      return write_failed(err);
    offset_ += pad;
    return true;
  }

  const SynthOptions& options_;
  SynthResult result_;
  const Shape* shape_ = nullptr;
  // The vocabulary, open until its tokenizer is copied.
  std::filesystem::path vocab_path_;
  GgufPtr vocab_;
  int64_t id_tokens_ = -1;
  int64_t id_types_ = -1;
  VocabKind kind_{};
  bool escape_whitespaces_ = false;
  size_t n_vocab_ = 0;
  std::vector<int32_t> types_;
  // The model: its GGUF header, its tensors and the file they go to.
  GgufPtr out_;
  std::vector<TensorPlan> plan_;
  GgmlPtr meta_;
  uint64_t total_bytes_ = 0;
  size_t meta_size_ = 0;
  size_t alignment_ = 0;
  TempFile file_;
  uint64_t offset_ = 0;  // bytes written so far
  uint64_t done_ = 0;    // tensor bytes written so far, for on_progress
  std::vector<float> f32_;
  std::vector<ggml_fp16_t> f16buf_;
};

SynthResult synthesize_impl(const SynthOptions& options) {
  SynthWriter writer(options);
  for (const auto step :
       {&SynthWriter::choose_shape, &SynthWriter::open_vocabulary, &SynthWriter::read_token_types,
        &SynthWriter::set_metadata, &SynthWriter::copy_tokenizer, &SynthWriter::add_tensor_infos,
        &SynthWriter::write_header, &SynthWriter::write_tensors, &SynthWriter::commit}) {
    if (!(writer.*step)()) break;
  }
  return writer.result();
}

}  // namespace

const std::vector<Shape>& presets() {
  static const std::vector<Shape> kPresets = [] {
    std::vector<Shape> v;
    Shape tiny;
    tiny.name = "tiny";
    tiny.vocab = "llama-spm";
    tiny.n_embd = 128;
    tiny.n_layer = 2;
    tiny.n_head = 4;
    tiny.n_head_kv = 2;
    tiny.n_ff = 352;
    tiny.n_ctx_train = 2048;
    tiny.rope_freq_base = 10000.0f;
    tiny.rms_eps = 1e-5f;
    tiny.tied_embeddings = false;
    v.push_back(tiny);

    // Llama 3.2 1B (without its llama3 rope scaling, which changes no cost).
    Shape l1b;
    l1b.name = "llama-1b";
    l1b.vocab = "llama-bpe";
    l1b.n_embd = 2048;
    l1b.n_layer = 16;
    l1b.n_head = 32;
    l1b.n_head_kv = 8;
    l1b.n_ff = 8192;
    l1b.n_ctx_train = 8192;
    l1b.rope_freq_base = 500000.0f;
    l1b.rms_eps = 1e-5f;
    l1b.tied_embeddings = true;
    v.push_back(l1b);

    // Llama 3.2 3B: the 1B's vocabulary, rope and tied embeddings, wider and deeper.
    Shape l3b = l1b;
    l3b.name = "llama-3b";
    l3b.n_embd = 3072;
    l3b.n_layer = 28;
    l3b.n_head = 24;
    l3b.n_head_kv = 8;
    l3b.n_ff = 8192;
    v.push_back(l3b);
    return v;
  }();
  return kPresets;
}

const Shape* find_preset(const std::string& name) {
  for (const auto& p : presets()) {
    if (p.name == name) return &p;
  }
  return nullptr;
}

std::filesystem::path default_vocab_file(const std::string& vocab) {
  return vocab_dir() / ("ggml-vocab-" + vocab + ".gguf");
}

bool find_chat_template(const std::string& name_or_path, std::string& text, std::string& error) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::path path = name_or_path;
  if (!fs::is_regular_file(path, ec)) path = vocab_dir() / "templates" / (name_or_path + ".jinja");
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    error = fmt::format(
        "chat template '{}' is neither a file nor one of llama.cpp's templates ({} not found)",
        name_or_path, path.string());
    return false;
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  text = ss.str();
  if (text.empty()) {
    error = fmt::format("chat template {} is empty", path.string());
    return false;
  }
  return true;
}

SynthResult synthesize(const SynthOptions& options) {
  try {
    return synthesize_impl(options);
  } catch (const std::exception& e) {
    SynthResult r;
    r.error = std::string("model synth failed: ") + e.what();
    return r;
  } catch (...) {
    SynthResult r;
    r.error = "model synth failed: unknown error";
    return r;
  }
}

}  // namespace chimera::model
