#include "backends/llama_engine.hpp"

#include "backends/llama_top_k.hpp"
#include "backends/stream_state.hpp"
#include "backends/text_stream.hpp"

#include <chimera/core/install_paths.hpp>

#include <fmt/format.h>
#include <llama.h>
#ifdef CHIMERA_GGML_BACKEND_DL
#include <ggml-backend.h>
#endif

#ifdef CHIMERA_HAVE_LLAMA_COMMON
#include <json-schema-to-grammar.h>
#include <json.h>
#endif

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <optional>
#include <thread>

// ThreadSanitizer cannot see libgomp's barriers (libgomp is not instrumented): a sanitized build
// runs none of this file's own OpenMP regions.
#if defined(__SANITIZE_THREAD__)
#define CHIMERA_THREAD_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define CHIMERA_THREAD_SANITIZER 1
#endif
#endif
#ifndef CHIMERA_THREAD_SANITIZER
#define CHIMERA_THREAD_SANITIZER 0
#endif

namespace chimera::backends {

namespace {

// llama.cpp logs to stderr by default. We keep quiet, remember the last errors (to explain a
// failed load), and print everything when CHIMERA_LLAMA_LOG=1.
std::mutex g_log_mu;
std::string g_last_errors;

void log_callback(ggml_log_level level, const char* text, void*) {
  static const bool verbose = [] {
    const char* v = std::getenv("CHIMERA_LLAMA_LOG");
    return v != nullptr && *v != '\0' && *v != '0';
  }();
  if (verbose) std::fputs(text, stderr);
  if (level == GGML_LOG_LEVEL_ERROR) {
    std::lock_guard lock(g_log_mu);
    g_last_errors += text;
    if (g_last_errors.size() > 2000) g_last_errors.erase(0, g_last_errors.size() - 2000);
  }
}

void init_llama_once() {
  static std::once_flag once;
  std::call_once(once, [] {
    llama_log_set(log_callback, nullptr);
    llama_backend_init();
#ifdef CHIMERA_GGML_BACKEND_DL
    // A portable llama.cpp keeps its CPU kernels in loadable modules, one per instruction set,
    // and ggml loads the best one this CPU runs. They are installed beside llama-server, which a
    // host program (a game linking libchimera_c.so) does not sit next to.
    if (const auto dir = ggml_backend_dir(); !dir.empty()) {
      ggml_backend_load_all_from_path(dir.c_str());
    }
    if (ggml_backend_dev_count() == 0) ggml_backend_load_all();
#endif
  });
}

// How many tokens `a` and `b` share from their start.
std::size_t common_prefix(const std::vector<int32_t>& a, const std::vector<int32_t>& b) {
  const auto n = std::min(a.size(), b.size());
  return static_cast<std::size_t>(
      std::mismatch(a.begin(), a.begin() + static_cast<std::ptrdiff_t>(n), b.begin()).first -
      a.begin());
}

// The vocabulary, scored for one draw: a buffer per thread that draws (the engine thread and,
// under OpenMP, a step's compute threads), kept for the thread's life so that no draw allocates
// one.
std::vector<llama_token_data>& draw_buffer() {
  static thread_local std::vector<llama_token_data> buffer;
  return buffer;
}

}  // namespace

// Wakes the engine's loop. Shared with request handles, which may outlive the engine.
struct Inbox {
  std::mutex mu;
  std::condition_variable cv;
  bool poked = false;
  void poke() {
    {
      std::lock_guard lock(mu);
      poked = true;
    }
    cv.notify_one();
  }
};

// One request: the handle the caller holds, and its state in the engine.
class LlamaJob final : public StreamState {
 public:
  LlamaJob(Request r, TokenCallback t, DoneCallback d, std::shared_ptr<Inbox> inbox)
      : StreamState(std::move(t), std::move(d)),
        req(std::move(r)),
        stop(req.options.stop),
        inbox_(std::move(inbox)) {}

  Request req;
  // Engine thread only.
  Completion& c = completion();
  std::string prompt_text;
  std::vector<int32_t> prompt;
  std::size_t prompt_done = 0;  // prompt tokens whose KV cells exist
  int n_ctx = 0;                // context limit of this request (num_ctx, capped)
  llama_sampler* sampler = nullptr;
  int leading_top_k = 0;     // the k of a chain that starts with top-k (top_k_candidates), else 0
  bool greedy_only = false;  // the chain is llama.cpp's greedy sampler alone (greedy_choice)
  std::unique_ptr<ChatStream> chat;  // set when the output is parsed by the chat template
  bool generating = false;
  int32_t next_token = -1;          // sampled, to be decoded in the next step
  std::vector<std::string> pieces;  // raw piece of each decoded generated token
  int64_t admitted = 0;
  int64_t t_first_sample = 0;
  int64_t t_last_sample = 0;
  Utf8Assembler utf8;
  StopMatcher stop;

 private:
  void wake() override { inbox_->poke(); }

  std::shared_ptr<Inbox> inbox_;
};

struct LlamaEngine::Seq {
  int id = 0;
  std::shared_ptr<LlamaJob> job;
  std::vector<int32_t> cached;  // tokens whose KV cells this sequence holds, from position 0
  std::string session;          // the session that owns the cells ("" when none)
  std::string session_text;     // the text those cached tokens came from
  bool drop_after = false;      // drop the session when its running request ends
  int64_t last_used = 0;
};

namespace {

// A GGUF metadata value as text ("" when the file has no such key).
std::string meta(const llama_model* model, const char* key) {
  char buf[512] = {};
  const int32_t n = llama_model_meta_val_str(model, key, buf, sizeof buf);
  return n < 0 ? std::string() : std::string(buf);
}

// A GGUF metadata value that is an integer; none when the file has no such key or it is not one.
std::optional<int64_t> meta_int(const llama_model* model, const std::string& key) {
  const std::string v = meta(model, key.c_str());
  int64_t out = 0;
  const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
  if (ec != std::errc{} || end != v.data() + v.size()) return std::nullopt;
  return out;
}

// The weights' type (general.file_type) as Ollama names it in /api/show's details.
std::string file_type_name(std::optional<int64_t> file_type) {
  if (!file_type) return {};
  switch (static_cast<llama_ftype>(*file_type)) {
    case LLAMA_FTYPE_ALL_F32:
      return "F32";
    case LLAMA_FTYPE_MOSTLY_F16:
      return "F16";
    case LLAMA_FTYPE_MOSTLY_BF16:
      return "BF16";
    case LLAMA_FTYPE_MOSTLY_Q4_0:
      return "Q4_0";
    case LLAMA_FTYPE_MOSTLY_Q4_1:
      return "Q4_1";
    case LLAMA_FTYPE_MOSTLY_Q5_0:
      return "Q5_0";
    case LLAMA_FTYPE_MOSTLY_Q5_1:
      return "Q5_1";
    case LLAMA_FTYPE_MOSTLY_Q8_0:
      return "Q8_0";
    case LLAMA_FTYPE_MOSTLY_Q2_K:
      return "Q2_K";
    case LLAMA_FTYPE_MOSTLY_Q2_K_S:
      return "Q2_K_S";
    case LLAMA_FTYPE_MOSTLY_Q3_K_S:
      return "Q3_K_S";
    case LLAMA_FTYPE_MOSTLY_Q3_K_M:
      return "Q3_K_M";
    case LLAMA_FTYPE_MOSTLY_Q3_K_L:
      return "Q3_K_L";
    case LLAMA_FTYPE_MOSTLY_Q4_K_S:
      return "Q4_K_S";
    case LLAMA_FTYPE_MOSTLY_Q4_K_M:
      return "Q4_K_M";
    case LLAMA_FTYPE_MOSTLY_Q5_K_S:
      return "Q5_K_S";
    case LLAMA_FTYPE_MOSTLY_Q5_K_M:
      return "Q5_K_M";
    case LLAMA_FTYPE_MOSTLY_Q6_K:
      return "Q6_K";
    case LLAMA_FTYPE_MOSTLY_IQ4_NL:
      return "IQ4_NL";
    case LLAMA_FTYPE_MOSTLY_IQ4_XS:
      return "IQ4_XS";
    default:
      return {};
  }
}

ModelFacts read_facts(const llama_model* model, const ChatTemplates& chat, int ctx_per_seq) {
  ModelFacts f;
  f.architecture = meta(model, "general.architecture");
  f.name = meta(model, "general.name");
  f.file_type = file_type_name(meta_int(model, "general.file_type"));
  f.parameters = llama_model_n_params(model);
  f.file_bytes = llama_model_size(model);
  f.context_length = llama_model_n_ctx_train(model);
  f.context_served = ctx_per_seq;
  f.embedding_length = llama_model_n_embd(model);
  f.block_count = llama_model_n_layer(model);
  f.head_count = llama_model_n_head(model);
  f.head_count_kv = f.architecture.empty()
                        ? 0
                        : meta_int(model, f.architecture + ".attention.head_count_kv").value_or(0);
  f.tool_calls = chat.tool_calls();
  f.thinking = chat.thinking();
  return f;
}

}  // namespace

LlamaEngine::LlamaEngine(std::string model_path, const LlamaConfig& config)
    : path_(std::move(model_path)), config_(config), inbox_(std::make_shared<Inbox>()) {
  init_llama_once();
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::exists(path_, ec)) {
    throw std::invalid_argument(fmt::format(
        "model file '{}' does not exist (make one with `chimeraforge model synth`)", path_));
  }
  {
    std::ifstream in(path_, std::ios::binary);
    char magic[4] = {};
    in.read(magic, 4);
    if (!in || std::string_view(magic, 4) != "GGUF") {
      throw std::invalid_argument(fmt::format("'{}' is not a GGUF model file", path_));
    }
  }
  if (config_.parallel < 1 || config_.ctx_per_seq < 16 || config_.batch < 1 ||
      config_.prefill_chunk < 1) {
    throw std::invalid_argument(
        fmt::format("in-process settings out of range: parallel {} (>= 1), ctx_per_seq {} "
                    "(>= 16), batch {} (>= 1), prefill_chunk {} (>= 1)",
                    config_.parallel, config_.ctx_per_seq, config_.batch, config_.prefill_chunk));
  }
  {
    std::lock_guard lock(g_log_mu);
    g_last_errors.clear();
  }
  llama_model_params mp = llama_model_default_params();
  mp.n_gpu_layers = config_.gpu_layers;
  mp.load_mode = LLAMA_LOAD_MODE_MMAP;  // one mapped copy, shared with the page cache
  model_ = llama_model_load_from_file(path_.c_str(), mp);
  if (model_ == nullptr) {
    std::lock_guard lock(g_log_mu);
    throw std::invalid_argument(fmt::format("llama.cpp could not load '{}': {}", path_,
                                            g_last_errors.empty() ? "no detail" : g_last_errors));
  }
  vocab_ = llama_model_get_vocab(model_);
  chat_ = std::make_unique<ChatTemplates>(model_);

  const int threads = config_.threads > 0
                          ? config_.threads
                          : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  llama_context_params cp = llama_context_default_params();
  cp.n_seq_max = static_cast<uint32_t>(config_.parallel);
  cp.n_ctx = static_cast<uint32_t>(config_.ctx_per_seq * config_.parallel);
  cp.n_batch = static_cast<uint32_t>(config_.batch + config_.parallel);
  cp.n_ubatch = cp.n_batch;
  cp.n_threads = threads;
  cp.n_threads_batch = threads;
  // One KV stream per sequence: a sequence's attention never scans the others' cells, and a
  // sequence computes the same numbers whether it runs alone or beside others.
  cp.kv_unified = false;
  cp.flash_attn_type =
      config_.flash_attention ? LLAMA_FLASH_ATTN_TYPE_ENABLED : LLAMA_FLASH_ATTN_TYPE_DISABLED;
  cp.no_perf = true;
  ctx_ = llama_init_from_model(model_, cp);
  if (ctx_ == nullptr) {
    llama_model_free(model_);
    std::lock_guard lock(g_log_mu);
    throw std::invalid_argument(
        fmt::format("llama.cpp could not create a context for '{}' ({} sequences x {} tokens): {}",
                    path_, config_.parallel, config_.ctx_per_seq,
                    g_last_errors.empty() ? "no detail" : g_last_errors));
  }
  attach_thread_pool(threads);
  threads_ = threads;
  ctx_per_seq_ = static_cast<int>(llama_n_ctx_seq(ctx_));
  facts_ = read_facts(model_, *chat_, ctx_per_seq_);
  for (int i = 0; i < config_.parallel; ++i) {
    auto s = std::make_unique<Seq>();
    s->id = i;
    seqs_.push_back(std::move(s));
  }
  std::promise<void> warm;
  std::future<void> warmed = warm.get_future();
  thread_ = std::thread([this, &warm] {
    warm_up();
    warm.set_value();
    loop();
  });
  warmed.wait();
}

// Before the first request, on the engine's thread, as llama-server warms up at start: a few
// tokens decoded (their cells then dropped) and two samples drawn. The first decode faults the
// model's mapped pages in, starts the compute threads (OpenMP makes a team per calling thread) and
// allocates the graph's buffers; a batch of several tokens touches more of the buffers a prompt
// needs than one token's graph does. A sampler keeps one candidate per vocabulary token (384 KiB
// for 32k tokens), and each request makes its own: glibc maps the first such block and unmaps it
// when freed, then serves the next from the thread's heap, which it grows and keeps; sampling
// twice leaves that memory in the heap for the first request. Each page a first request touches
// for the first time costs 10-13 us here: `perf trace -F all` of serve --model tiny.gguf over its
// first request counted about 270 page faults with a one-token warm-up, 138-164 with this one
// (43 with 32 tokens, but a larger model would spend a noticeable part of a second at load on
// them, where 8 cost it little).
void LlamaEngine::warm_up() {
  // The draw buffer of each thread that draws, written now: the first draws on each would
  // otherwise fault in its pages (tens of microseconds each on a virtual machine) in a request's
  // way.
  const auto n_vocab = static_cast<std::size_t>(llama_vocab_n_tokens(vocab_));
  const auto size_draw_buffer = [n_vocab] {
    auto& b = draw_buffer();
    if (b.size() < n_vocab) b.assign(n_vocab, llama_token_data{0, 0.0f, 0.0f});
  };
  size_draw_buffer();
#if defined(_OPENMP) && !CHIMERA_THREAD_SANITIZER
  if (threads_ > 1) {
#pragma omp parallel num_threads(threads_)
    size_draw_buffer();
  }
#endif
  llama_token token = llama_vocab_bos(vocab_);
  if (token == LLAMA_TOKEN_NULL) token = 0;
  const int n = std::max(1, std::min({8, ctx_per_seq_, static_cast<int>(llama_n_batch(ctx_))}));
  std::vector<llama_token> prompt(static_cast<std::size_t>(n), token);
  llama_batch batch = llama_batch_get_one(prompt.data(), n);
  if (llama_decode(ctx_, batch) == 0) {
    llama_synchronize(ctx_);
    for (int i = 0; i < 2; ++i) {
      llama_sampler* chain = llama_sampler_chain_init(llama_sampler_chain_default_params());
      llama_sampler_chain_add(chain, llama_sampler_init_top_k(40));
      llama_sampler_chain_add(chain, llama_sampler_init_dist(LLAMA_DEFAULT_SEED));
      llama_sampler_sample(chain, ctx_, -1);
      llama_sampler_free(chain);
    }
  }
  llama_memory_clear(llama_get_memory(ctx_), true);

  // A prompt's batch is larger than those few tokens, and a larger batch than any before grows
  // the CPU backend's work buffer (a new allocation whose pages fault in as the step writes
  // them) and touches more of the compute buffer: the first request paid for those faults in
  // its decode (docs/inproc.md, "The first chat request").
  // One larger batch now, as large as takes about kWarmBatchBudgetNs at the speed of those few
  // tokens decoded again (a few tokens of a small model on a CPU make it 256; a large model on
  // a CPU stays at those few). Again, because the first decode ran cold: timed, it made the
  // batch too small to cover a prompt in some starts, and the first request's page faults came
  // back.
  constexpr int64_t kWarmBatchBudgetNs = 50'000'000;
  const int64_t t0 = now_ns();
  if (llama_decode(ctx_, llama_batch_get_one(prompt.data(), n)) == 0) llama_synchronize(ctx_);
  const int64_t per_token = std::max<int64_t>(1, (now_ns() - t0) / n);
  llama_memory_clear(llama_get_memory(ctx_), true);
  const int big =
      static_cast<int>(std::min<int64_t>({256, kWarmBatchBudgetNs / per_token, ctx_per_seq_ - 1,
                                          static_cast<int64_t>(llama_n_batch(ctx_))}));
  if (big > n) {
    prompt.assign(static_cast<std::size_t>(big), token);
    if (llama_decode(ctx_, llama_batch_get_one(prompt.data(), big)) == 0) llama_synchronize(ctx_);
    llama_memory_clear(llama_get_memory(ctx_), true);
  }

  // A chat request's first steps, once: the template rendered (llama.cpp's Jinja engine runs
  // its code and builds its tables the first time) and its output tokenized with the special
  // tokens. Without it the first chat request of a process pays for them (docs/inproc.md,
  // "The first chat request").
  Request chat;
  chat.messages.push_back({"user", "hi"});
  ChatPrompt rendered;
  std::string error;
  if (chat_->apply(chat, rendered, error)) (void)tokenize(rendered.prompt, true);
}

LlamaEngine::~LlamaEngine() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  inbox_->poke();
  if (thread_.joinable()) thread_.join();
  if (ctx_) llama_free(ctx_);
  if (pool_ != nullptr) free_pool_(pool_);
  if (model_) llama_model_free(model_);
}

// Without a pool of its own, a llama.cpp built with ggml's threads (GGML_OPENMP=OFF) starts and
// joins `threads` threads for every graph, that is for every decode step. One pool for the
// engine's life, as llama-server keeps one, with its default polling level (50: a worker spins a
// little before it sleeps). Under OpenMP ggml uses the pool only for its settings, so this is
// harmless there. The functions come from the CPU backend's registry, so that a build that loads
// the CPU backend as a module (the portable build) finds them too.
void LlamaEngine::attach_thread_pool(int threads) {
  ggml_backend_dev_t cpu = ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU);
  if (cpu == nullptr) return;
  ggml_backend_reg_t reg = ggml_backend_dev_backend_reg(cpu);
  using NewPool = ggml_threadpool* (*)(ggml_threadpool_params*);
  using FreePool = void (*)(ggml_threadpool*);
  auto make =
      reinterpret_cast<NewPool>(ggml_backend_reg_get_proc_address(reg, "ggml_threadpool_new"));
  auto release =
      reinterpret_cast<FreePool>(ggml_backend_reg_get_proc_address(reg, "ggml_threadpool_free"));
  if (make == nullptr || release == nullptr) return;
  ggml_threadpool_params params = ggml_threadpool_params_default(threads);
  params.poll = 50;
  pool_ = make(&params);
  if (pool_ == nullptr) return;  // ggml then makes one per graph, as before
  free_pool_ = release;
  llama_attach_threadpool(ctx_, pool_, nullptr);
}

// After a step that gave a request of a batch of up to this many its first token, the engine
// pauses for kReaderPause so that the token's readers run (LlamaEngine::loop).
constexpr std::size_t kReaderPauseUpTo = 2;
constexpr auto kReaderPause = std::chrono::microseconds(150);

int add_to_batch(llama_batch& batch, int32_t token, int pos, int seq, bool logits) {
  const int i = batch.n_tokens++;
  batch.token[i] = token;
  batch.pos[i] = pos;
  batch.n_seq_id[i] = 1;
  batch.seq_id[i][0] = seq;
  batch.logits[i] = logits ? 1 : 0;
  return i;
}

bool LlamaEngine::cpu_kernels_batch_invariant() {
#ifdef CHIMERA_LLAMAFILE_EVERY_ROW
  // The pinned build sends single rows through llamafile's kernels too (cmake/ChimeraLlama.cmake).
  return true;
#else
  init_llama_once();
  ggml_backend_dev_t cpu = ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU);
  if (cpu == nullptr) return true;
  ggml_backend_reg_t reg = ggml_backend_dev_backend_reg(cpu);
  auto features = reinterpret_cast<ggml_backend_get_features_t>(
      ggml_backend_reg_get_proc_address(reg, "ggml_backend_get_features"));
  if (features == nullptr) return true;
  for (const ggml_backend_feature* f = features(reg); f->name != nullptr; ++f) {
    if (std::string_view(f->name) == "LLAMAFILE") return std::string_view(f->value) != "1";
  }
  return true;
#endif
}

std::string LlamaEngine::describe() const {
  char desc[256] = {};
  llama_model_desc(model_, desc, sizeof desc);
  return fmt::format("{} ({}), {} sequences x {} tokens", path_, desc, config_.parallel,
                     ctx_per_seq_);
}

std::shared_ptr<LlamaEngine> LlamaEngine::shared(const std::string& model_path,
                                                 const LlamaConfig& c) {
  static std::mutex mu;
  static std::map<std::string, std::weak_ptr<LlamaEngine>> engines;
  std::error_code ec;
  const auto canonical = std::filesystem::weakly_canonical(model_path, ec).string();
  const std::string key = fmt::format("{}|{}|{}|{}|{}|{}|{}|{}", ec ? model_path : canonical,
                                      c.gpu_layers, c.ctx_per_seq, c.parallel, c.threads, c.batch,
                                      c.prefill_chunk, c.flash_attention);
  std::lock_guard lock(mu);
  if (auto e = engines[key].lock()) return e;
  auto e = std::make_shared<LlamaEngine>(model_path, c);
  engines[key] = e;
  return e;
}

std::shared_ptr<RequestHandle> LlamaEngine::submit(Request request, TokenCallback on_token,
                                                   DoneCallback on_done) {
  auto job = std::make_shared<LlamaJob>(std::move(request), std::move(on_token), std::move(on_done),
                                        inbox_);
  job->c.endpoint = path_;
  job->c.model = path_;
  job->c.figures.t_send_ns = now_ns();  // in-process: before the request is queued
  {
    std::lock_guard lock(mu_);
    incoming_.push_back(job);
  }
  inbox_->poke();
  return job;
}

void LlamaEngine::drop_session(const std::string& session) {
  {
    std::lock_guard lock(mu_);
    drops_.push_back(session);
  }
  inbox_->poke();
}

std::vector<int32_t> LlamaEngine::tokenize(const std::string& text, bool add_special) const {
  std::vector<int32_t> out(text.size() + 8);
  int n = llama_tokenize(vocab_, text.data(), static_cast<int32_t>(text.size()), out.data(),
                         static_cast<int32_t>(out.size()), add_special, /*parse_special=*/true);
  if (n < 0) {
    out.resize(static_cast<std::size_t>(-n));
    n = llama_tokenize(vocab_, text.data(), static_cast<int32_t>(text.size()), out.data(),
                       static_cast<int32_t>(out.size()), add_special, true);
  }
  out.resize(static_cast<std::size_t>(std::max(0, n)));
  return out;
}

bool LlamaEngine::prepare_chat(LlamaJob& job, std::string& error) const {
  const Request& r = job.req;
  ChatPrompt p;
  if (!chat_->apply(r, p, error)) return false;
  if (!chat_->warning().empty()) job.c.warnings.push_back(chat_->warning());
  job.prompt_text = std::move(p.prompt);
  if (!p.stops.empty()) {
    std::vector<std::string> stops = r.options.stop;
    stops.insert(stops.end(), p.stops.begin(), p.stops.end());
    job.stop = StopMatcher(std::move(stops));
  }
  if (p.parse) {
    job.chat = ChatStream::make(model_, p, r.options, r.logit_bias, error);
    if (!job.chat) return false;
  }
  return true;
}

bool LlamaEngine::deliver_text(LlamaJob& j, std::string_view text, bool final) const {
  if (!j.chat) return text.empty() || j.deliver(text, {}, nullptr);
  std::vector<ChatDelta> deltas;
  j.chat->push(text, final, deltas, j.c.tool_calls);
  for (const auto& d : deltas) {
    if ((!d.content.empty() || !d.thinking.empty()) && !j.deliver(d.content, d.thinking, nullptr)) {
      return false;
    }
    if (d.tool_call_index >= 0 &&
        !j.deliver({}, {}, &j.c.tool_calls.at(static_cast<std::size_t>(d.tool_call_index)),
                   d.tool_call_index, d.arguments_delta)) {
      return false;
    }
  }
  return true;
}

llama_sampler* LlamaEngine::make_sampler(const Request& r, int& leading_top_k, bool& greedy_only,
                                         std::string& error) const {
  const Options& o = r.options;
  leading_top_k = 0;
  greedy_only = false;
  llama_sampler* chain = llama_sampler_chain_init(llama_sampler_chain_default_params());
  if (r.format_json) {
#ifdef CHIMERA_HAVE_LLAMA_COMMON
    std::string grammar;
    try {
      const std::string schema = *r.format_json == "json" ? "{}" : *r.format_json;
      grammar = json_schema_to_grammar(common_json::parse(schema));
    } catch (const std::exception& e) {
      error = fmt::format("format is not a usable JSON schema: {}", e.what());
      llama_sampler_free(chain);
      return nullptr;
    }
    llama_sampler* g = llama_sampler_init_grammar(vocab_, grammar.c_str(), "root");
    if (g == nullptr) {
      error = "the JSON schema's grammar was rejected by llama.cpp";
      llama_sampler_free(chain);
      return nullptr;
    }
    llama_sampler_chain_add(chain, g);
#else
    error = "structured output needs llama.cpp's common library, which this build lacks";
    llama_sampler_free(chain);
    return nullptr;
#endif
  }
  if (!r.logit_bias.empty()) {
    std::vector<llama_logit_bias> bias;
    for (const auto& b : r.logit_bias) bias.push_back({b.token, static_cast<float>(b.bias)});
    llama_sampler_chain_add(
        chain, llama_sampler_init_logit_bias(llama_vocab_n_tokens(vocab_),
                                             static_cast<int32_t>(bias.size()), bias.data()));
  }
  if (o.repeat_penalty && *o.repeat_penalty != 1.0) {
    llama_sampler_chain_add(
        chain, llama_sampler_init_penalties(llama_vocab_n_tokens(vocab_), 64,
                                            static_cast<float>(*o.repeat_penalty), 0.0f, 0.0f));
  }
  const double temp = o.temperature.value_or(0.8);
  if (temp <= 0.0) {
    greedy_only = llama_sampler_chain_n(chain) == 0;
    llama_sampler_chain_add(chain, llama_sampler_init_greedy());
    return chain;
  }
  // A chain whose first sampler is top-k lets a draw take its candidates from top_k_candidates
  // (up to 128: llama.cpp's partial sort, whose result it reproduces, keeps that many).
  const int top_k = o.top_k.value_or(40);
  if (llama_sampler_chain_n(chain) == 0 && top_k >= 1 && top_k <= 128) leading_top_k = top_k;
  llama_sampler_chain_add(chain, llama_sampler_init_top_k(top_k));
  llama_sampler_chain_add(chain,
                          llama_sampler_init_top_p(static_cast<float>(o.top_p.value_or(0.95)), 1));
  llama_sampler_chain_add(chain,
                          llama_sampler_init_min_p(static_cast<float>(o.min_p.value_or(0.05)), 1));
  llama_sampler_chain_add(chain, llama_sampler_init_temp(static_cast<float>(temp)));
  const uint32_t seed = o.seed ? static_cast<uint32_t>(*o.seed) : LLAMA_DEFAULT_SEED;
  llama_sampler_chain_add(chain, llama_sampler_init_dist(seed));
  return chain;
}

EngineLoad LlamaEngine::load() const {
  EngineLoad l;
  l.sequences = config_.parallel;
  l.sequences_busy = busy_.load();
  l.sessions = sessions_.load();
  l.kv_cells_used = kv_used_.load();
  l.kv_cells = static_cast<int64_t>(config_.parallel) * ctx_per_seq_;
  return l;
}

void LlamaEngine::publish_load() {
  int busy = 0;
  int sessions = 0;
  int64_t used = 0;
  for (const auto& s : seqs_) {
    busy += s->job != nullptr ? 1 : 0;
    sessions += s->session.empty() ? 0 : 1;
    used += static_cast<int64_t>(s->cached.size());
  }
  busy_.store(busy);
  sessions_.store(sessions);
  kv_used_.store(used);
}

void LlamaEngine::loop() {
  Inbox* inbox = inbox_.get();
  llama_batch batch = llama_batch_init(config_.batch + config_.parallel, 0, 1);
  for (;;) {
    publish_load();
    {
      std::unique_lock lock(inbox->mu);
      const bool busy =
          std::any_of(seqs_.begin(), seqs_.end(), [](const auto& s) { return s->job != nullptr; });
      // Sleep only when nothing runs and nothing waits for a sequence.
      if (!busy && waiting_.empty()) inbox->cv.wait(lock, [&] { return inbox->poked; });
      inbox->poked = false;
    }
    std::vector<std::string> drops;
    {
      std::lock_guard lock(mu_);
      if (stopping_) break;
      while (!incoming_.empty()) {
        waiting_.push_back(std::move(incoming_.front()));
        incoming_.pop_front();
      }
      drops.swap(drops_);
    }
    for (const auto& d : drops) {
      for (auto& s : seqs_) {
        if (s->session != d) continue;
        if (s->job) {
          s->drop_after = true;
        } else {
          llama_memory_seq_rm(llama_get_memory(ctx_), s->id, -1, -1);
          s->cached.clear();
          s->session.clear();
          s->session_text.clear();
        }
      }
    }
    for (auto& s : seqs_) {
      if (s->job && s->job->cancel_requested()) finish(*s, ErrorKind::cancelled, "cancelled");
    }
    admit();
    publish_load();

    // One decode step: every generating sequence's next token first, then prompt chunks.
    struct Entry {
      Seq* seq;
      int n;       // tokens this sequence put in the batch
      int logits;  // batch index whose logits are sampled, or -1
    };
    std::vector<Entry> entries;
    batch.n_tokens = 0;
    for (auto& s : seqs_) {
      if (!s->job || !s->job->generating) continue;
      const int i =
          add_to_batch(batch, s->job->next_token, static_cast<int>(s->cached.size()), s->id, true);
      entries.push_back({s.get(), 1, i});
    }
    std::vector<Seq*> prefilling;
    for (auto& s : seqs_) {
      if (s->job && !s->job->generating) prefilling.push_back(s.get());
    }
    std::sort(prefilling.begin(), prefilling.end(),
              [](Seq* a, Seq* b) { return a->job->admitted < b->job->admitted; });
    int budget = config_.batch;
    for (Seq* s : prefilling) {
      if (budget <= 0) break;
      LlamaJob& j = *s->job;
      const int left = static_cast<int>(j.prompt.size() - j.prompt_done);
      const int n = std::min({config_.prefill_chunk, left, budget});
      int logits = -1;
      for (int k = 0; k < n; ++k) {
        const std::size_t p = j.prompt_done + static_cast<std::size_t>(k);
        const bool last = p + 1 == j.prompt.size();
        const int i = add_to_batch(batch, j.prompt[p], static_cast<int>(p), s->id, last);
        if (last) logits = i;
      }
      budget -= n;
      entries.push_back({s, n, logits});
    }
    if (batch.n_tokens == 0) continue;

    const int rc = llama_decode(ctx_, batch);
    if (rc != 0) {
      for (auto& e : entries) {
        finish(*e.seq, ErrorKind::server,
               fmt::format("llama_decode failed (code {}) with {} tokens in the batch", rc,
                           batch.n_tokens));
      }
      continue;
    }
    std::vector<Draw> draws;
    for (auto& e : entries) {
      Seq& s = *e.seq;
      LlamaJob& j = *s.job;
      if (j.generating) {
        s.cached.push_back(j.next_token);
      } else {
        s.cached.insert(s.cached.end(), j.prompt.begin() + static_cast<long>(j.prompt_done),
                        j.prompt.begin() + static_cast<long>(j.prompt_done) + e.n);
        j.prompt_done += static_cast<std::size_t>(e.n);
        if (j.prompt_done < j.prompt.size()) continue;  // more prompt next step
        j.generating = true;
        if (j.req.options.num_predict && *j.req.options.num_predict == 0) {
          finish(s);
          continue;
        }
      }
      if (j.cancel_requested()) {
        finish(s, ErrorKind::cancelled, "cancelled");
        continue;
      }
      Draw d;
      d.seq = &s;
      d.index = e.logits;
      draws.push_back(std::move(d));
    }
    sample_all(draws);
    bool first_token = false;
    for (auto& d : draws) {
      if (d.error.empty()) {
        first_token = first_token || d.seq->job->c.tokens.empty();
        emit_token(*d.seq, d.token);
      } else {
        finish(*d.seq, ErrorKind::server, fmt::format("sampling failed: {}", d.error));
      }
    }
    // A request's first token wakes its readers (a server's loop, then its client), and with
    // every core computing the next step they would wait for the end of a time slice,
    // milliseconds, before the kernel ran them. A short sleep leaves them this thread's CPU
    // now; the next step starts that much later, once per request. Only in a small batch: in a
    // larger one first tokens come every few steps, and the pauses would cost more than they
    // save. A sleep, not a yield: a yield would hand the CPU to any busy thread beside it (a
    // game's) for a whole time slice.
    if (first_token && draws.size() <= kReaderPauseUpTo) {
      std::this_thread::sleep_for(kReaderPause);
    }
  }
  llama_batch_free(batch);
  // Shutting down: nothing is left hanging.
  for (auto& s : seqs_) {
    if (s->job) finish(*s, ErrorKind::cancelled, "the in-process engine is shutting down");
  }
  std::lock_guard lock(mu_);
  for (auto& j : incoming_) waiting_.push_back(std::move(j));
  for (auto& j : waiting_) {
    j->c.error = {ErrorKind::cancelled, path_ + ": the in-process engine is shutting down"};
    j->c.finish = FinishReason::cancelled;
    j->complete();
  }
  waiting_.clear();
}

void LlamaEngine::admit() {
  for (auto it = waiting_.begin(); it != waiting_.end();) {
    LlamaJob& job = **it;
    auto fail_unassigned = [&](ErrorKind kind, const std::string& msg) {
      job.c.error = {kind, fmt::format("{}: {}", path_, msg)};
      job.c.finish = kind == ErrorKind::cancelled ? FinishReason::cancelled : FinishReason::error;
      job.complete();
    };
    if (job.cancel_requested()) {
      fail_unassigned(ErrorKind::cancelled, "cancelled");
      it = waiting_.erase(it);
      continue;
    }
    Seq* seq = nullptr;
    bool session_busy = false;
    if (!job.req.session.empty()) {
      for (auto& s : seqs_) {
        if (s->session == job.req.session) {
          if (s->job) {
            session_busy = true;
          } else {
            seq = s.get();
          }
        }
      }
    }
    if (session_busy) {  // one turn of a session at a time; this one waits its turn
      ++it;
      continue;
    }
    if (seq == nullptr && job.req.session.empty() && job.req.cache_prompt.value_or(true)) {
      // Without a session, the idle sequence whose cells share the longest prefix with this
      // prompt (an agent's system prompt, the same request again), when that is at least half
      // of the prompt; otherwise the least recently used, so that a sequence holding a useful
      // prefix is not spent on a token or two in common. As llama-server picks a slot with
      // --slot-prompt-similarity 0.5 (its default, 0.1, goes with its host-memory prompt cache,
      // which keeps what a slot gives up; the engine has none). Only the rest of the prompt is
      // read.
      if (job.prompt.empty() && !prepare_prompt(job, nullptr)) {
        job.complete();
        it = waiting_.erase(it);
        continue;
      }
      std::size_t best = 0;
      Seq* oldest = nullptr;
      for (auto& s : seqs_) {
        if (s->job || !s->session.empty()) continue;
        const std::size_t common = common_prefix(s->cached, job.prompt);
        if (seq == nullptr || common > best || (common == best && s->last_used < seq->last_used)) {
          seq = s.get();
          best = common;
        }
        if (oldest == nullptr || s->last_used < oldest->last_used) oldest = s.get();
      }
      if (2 * best < job.prompt.size()) seq = oldest;
    }
    if (seq == nullptr) {
      for (auto& s : seqs_) {
        if (!s->job && s->session.empty()) {
          seq = s.get();
          break;
        }
      }
    }
    if (seq == nullptr) {  // evict the least recently used idle session
      for (auto& s : seqs_) {
        if (!s->job && (seq == nullptr || s->last_used < seq->last_used)) seq = s.get();
      }
      if (seq != nullptr) {
        llama_memory_seq_rm(llama_get_memory(ctx_), seq->id, -1, -1);
        seq->cached.clear();
        seq->session.clear();
        seq->session_text.clear();
      }
    }
    if (seq == nullptr) break;  // every sequence is busy: wait, in arrival order
    std::shared_ptr<LlamaJob> owned = *it;
    it = waiting_.erase(it);
    if (!prepare(job, *seq)) {
      job.complete();
      continue;
    }
    seq->job = std::move(owned);
  }
}

bool LlamaEngine::prepare(LlamaJob& job, Seq& seq) {
  if (job.prompt.empty() && !prepare_prompt(job, &seq)) return false;
  bind(job, seq);
  return true;
}

// Checks the request and makes its prompt tokens. `seq`: the sequence it will run on, when it
// is known (a session's turn reuses the session's tokens); null for a request without one.
bool LlamaEngine::prepare_prompt(LlamaJob& job, const Seq* seq) {
  const Request& r = job.req;
  auto fail = [&](const std::string& msg) {
    job.c.error = {ErrorKind::bad_request, fmt::format("{}: {}", path_, msg)};
    job.c.finish = FinishReason::error;
    return false;
  };
  std::string error = validate(r.options);
  if (error.empty()) error = validate(r.logit_bias);
  if (!error.empty()) return fail(error);
  // GPU layers and threads are the model's load settings: a request may restate them, never
  // change them (one model serves every request at once).
  if (r.options.num_gpu && *r.options.num_gpu != config_.gpu_layers) {
    return fail(fmt::format(
        "num_gpu is {}, but the model was loaded with {} GPU layers: the in-process engine sets "
        "them when it loads the model (LlamaConfig::gpu_layers; `generate --num-gpu`, a sweep's "
        "num_gpu axis), not per request",
        *r.options.num_gpu, config_.gpu_layers));
  }
  const int threads = config_.threads > 0
                          ? config_.threads
                          : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  if (r.options.num_thread && *r.options.num_thread != threads) {
    return fail(fmt::format(
        "num_thread is {}, but the model was loaded with {} threads: the in-process engine sets "
        "them when it loads the model (LlamaConfig::threads; `generate --num-thread`, a sweep's "
        "num_thread axis), not per request",
        *r.options.num_thread, threads));
  }
  const int n_vocab = llama_vocab_n_tokens(vocab_);
  for (const auto& b : r.logit_bias) {
    if (b.token >= n_vocab) {
      return fail(fmt::format("logit_bias names token {}; the model's tokens are 0 to {}", b.token,
                              n_vocab - 1));
    }
  }
  if (r.kind == RequestKind::chat) {
    if (r.messages.empty()) return fail("a chat request needs at least one message");
    if (!prepare_chat(job, error)) return fail(error);
  } else {
    if (r.tools_json) return fail("tools need a chat request (messages), not a completion");
    job.prompt_text = r.system.empty() ? r.prompt : r.system + "\n\n" + r.prompt;
  }
  const bool same_session = seq != nullptr && !r.session.empty() && seq->session == r.session;
  if (same_session && !seq->session_text.empty() &&
      job.prompt_text.compare(0, seq->session_text.size(), seq->session_text) == 0) {
    // The new prompt extends what the session holds: tokenize only the new text, so the cached
    // tokens are reused exactly as they were generated.
    job.prompt = seq->cached;
    const auto rest = tokenize(job.prompt_text.substr(seq->session_text.size()), false);
    job.prompt.insert(job.prompt.end(), rest.begin(), rest.end());
  } else {
    job.prompt = tokenize(job.prompt_text, true);
  }
  if (job.prompt.empty()) return fail("the prompt is empty");
  job.n_ctx = ctx_per_seq_;
  if (r.options.num_ctx && *r.options.num_ctx > 0) {
    job.n_ctx = std::min(job.n_ctx, *r.options.num_ctx);
  }
  if (static_cast<int>(job.prompt.size()) >= job.n_ctx) {
    return fail(
        fmt::format("the prompt has {} tokens; the context per sequence is {} "
                    "(num_ctx, or LlamaConfig::ctx_per_seq)",
                    job.prompt.size(), job.n_ctx));
  }
  if (!job.chat) {
    job.sampler = make_sampler(r, job.leading_top_k, job.greedy_only, error);
    if (job.sampler == nullptr) return fail(error);
  }
  return true;
}

// Puts the prepared job on `seq`, reusing the longest common prefix of the cells the sequence
// holds: its session's, or, for a request without a session on a sequence without one, what
// the last request there left (unless the request says cache_prompt false). At least one
// prompt token is decoded again so that there are logits to sample from.
void LlamaEngine::bind(LlamaJob& job, Seq& seq) {
  const Request& r = job.req;
  // cache_prompt false (as llama-server reads it): a request without a session starts cold.
  const bool reuse = r.session.empty() ? seq.session.empty() && r.cache_prompt.value_or(true)
                                       : seq.session == r.session;
  if (!reuse && !seq.cached.empty()) {
    llama_memory_seq_rm(llama_get_memory(ctx_), seq.id, -1, -1);
    seq.cached.clear();
    seq.session_text.clear();
  }
  std::size_t keep = std::min(common_prefix(seq.cached, job.prompt), job.prompt.size() - 1);
  if (keep < seq.cached.size()) {
    llama_memory_seq_rm(llama_get_memory(ctx_), seq.id, static_cast<llama_pos>(keep), -1);
    seq.cached.resize(keep);
  }
  job.prompt_done = keep;
  job.admitted = tick();
  job.c.figures.tokens_in = static_cast<int64_t>(job.prompt.size());
  job.c.figures.prompt_tokens_cached = static_cast<int64_t>(keep);
  seq.session = r.session;
  seq.drop_after = false;
}

// Draws the next token of every sequence the step left generating. Each draw touches only its own
// request's sampler state, so with several the draws run on the step's compute threads (OpenMP's
// team, which ggml has just used for the decode and which would otherwise spin through this
// time); at 16 agents the serial draws took about a fifth of the engine thread (a top-k over the
// whole vocabulary each). The order of the draws never changes a token: each sampler keeps its
// own random state.
//
// The one state they share is the context. A completion's draw reads the logits fetched here,
// before the team starts, and calls no llama_context function; so does a chat's where its chain
// starts with a top-k (ChatStream::sample). Another chat's draw goes through llama.cpp's common
// sampler, which calls llama_synchronize and the logits getters itself: after the synchronize
// and the first logits read here, those calls find nothing left to do (no queued tokens, no
// output rows to reorder) and only read, or store the values already there.
//
// ThreadSanitizer cannot see libgomp's barriers (libgomp is not instrumented), so a sanitized
// build draws on this thread alone (CHIMERA_THREAD_SANITIZER, at the top of this file).

void LlamaEngine::sample_all(std::vector<Draw>& draws) {
  if (draws.empty()) return;
  llama_synchronize(ctx_);
  const int n_vocab = llama_vocab_n_tokens(vocab_);
  for (auto& d : draws) d.logits = llama_get_logits_ith(ctx_, d.index);
  auto draw = [&](Draw& d) {
    LlamaJob& j = *d.seq->job;
    try {
      if (d.logits == nullptr) throw std::runtime_error("llama.cpp returned no logits");
      if (j.chat) {
        d.token = j.chat->sample(ctx_, d.index, d.logits, n_vocab);
        return;
      }
      // llama_sampler_sample's CPU path (no backend sampler is configured), from the logits read
      // above: every token a candidate, the chain applied, the choice accepted. A chain that
      // starts with top-k gets its k candidates already sorted where they are unambiguous
      // (llama_top_k.hpp), which its top-k sampler keeps as they are: the same draw, without
      // writing and sorting an entry per token of the vocabulary.
      auto& cur = draw_buffer();
      llama_token_data_array a{};
      if (j.greedy_only) {  // its choice alone: the greedy sampler picks it again
        const llama_token t = greedy_choice(d.logits, n_vocab);
        cur.assign(1, llama_token_data{t, d.logits[t], 0.0f});
        a = {cur.data(), cur.size(), -1, false};
      } else if (j.leading_top_k > 0 && top_k_candidates(d.logits, n_vocab, j.leading_top_k, cur)) {
        a = {cur.data(), cur.size(), -1, true};
      } else {
        cur.resize(static_cast<std::size_t>(n_vocab));
        for (llama_token t = 0; t < n_vocab; ++t) cur[t] = llama_token_data{t, d.logits[t], 0.0f};
        a = {cur.data(), cur.size(), -1, false};
      }
      d.token = chain_choice(j.sampler, a);
      llama_sampler_accept(j.sampler, d.token);
    } catch (const std::exception& e) {
      d.error = e.what();
    }
  };
  const int n = static_cast<int>(draws.size());
#if defined(_OPENMP) && !CHIMERA_THREAD_SANITIZER
  if (n > 1 && threads_ > 1) {
#pragma omp parallel for num_threads(threads_) schedule(dynamic, 1)
    for (int i = 0; i < n; ++i) draw(draws[static_cast<std::size_t>(i)]);
    return;
  }
#endif
  for (int i = 0; i < n; ++i) draw(draws[static_cast<std::size_t>(i)]);
}

void LlamaEngine::emit_token(Seq& seq, int32_t token) {
  LlamaJob& j = *seq.job;
  const int64_t t = now_ns();
  if (j.c.tokens.empty()) {
    j.t_first_sample = t;
    j.c.figures.ttft_server_ms = static_cast<double>(t - j.c.figures.t_send_ns) / 1e6;
  }
  j.t_last_sample = t;
  j.c.tokens.push_back(token);
  if (llama_vocab_is_eog(vocab_, token)) {
    j.c.finish_raw = "stop";
    j.c.finish = FinishReason::stop;
    finish(seq);
    return;
  }
  char buf[256];
  int n = llama_token_to_piece(vocab_, token, buf, sizeof buf, 0, /*special=*/false);
  std::string piece;
  if (n < 0) {
    piece.resize(static_cast<std::size_t>(-n));
    n = llama_token_to_piece(vocab_, token, piece.data(), -n, 0, false);
    piece.resize(static_cast<std::size_t>(std::max(0, n)));
  } else {
    piece.assign(buf, static_cast<std::size_t>(n));
  }
  const std::string text = j.stop.push(j.utf8.push(piece));
  j.pieces.push_back(std::move(piece));
  // The last token a request may have (num_predict, or its context full): the request ends right
  // after it, which its TokenEvent says (more), so that a server passing tokens on writes it
  // together with the end of its response. (Handed over as a burst of its own, whose end is
  // followed by the completion.)
  const auto& np = j.req.options.num_predict;
  const bool last = (np && *np > 0 && static_cast<int64_t>(j.c.tokens.size()) >= *np) ||
                    static_cast<int>(seq.cached.size()) + 1 >= j.n_ctx;
  if (last) j.begin_burst();
  bool go_on = deliver_text(j, text, false);
  if (last) go_on = j.end_burst(/*end_follows=*/true) && go_on;
  if (!go_on) {
    finish(seq, ErrorKind::cancelled,
           j.callback_error().empty() ? "cancelled" : j.callback_error());
    return;
  }
  if (j.stop.stopped()) {
    j.c.finish_raw = "stop";
    j.c.finish = FinishReason::stop;
    finish(seq);
    return;
  }
  if (last) {
    j.c.finish_raw = "length";
    j.c.finish = FinishReason::length;
    finish(seq);
    return;
  }
  j.next_token = token;
}

void LlamaEngine::finish(Seq& seq, ErrorKind kind, std::string message) {
  std::shared_ptr<LlamaJob> job = std::move(seq.job);
  seq.job = nullptr;
  LlamaJob& j = *job;
  Completion& c = j.c;
  if (kind == ErrorKind::none) {
    j.utf8.finish();
    deliver_text(j, j.stop.flush(), /*final=*/true);
    if (!c.tool_calls.empty() && c.finish == FinishReason::stop) {
      c.finish = FinishReason::tool_calls;
      c.finish_raw = "tool_calls";
    }
  } else {
    c.error = {kind, fmt::format("{}: {}", path_, message)};
    c.finish = kind == ErrorKind::cancelled ? FinishReason::cancelled : FinishReason::error;
  }
  Figures& f = c.figures;
  f.tokens_out = static_cast<int64_t>(c.tokens.size());
  f.bytes_dropped = j.utf8.dropped_bytes();
  if (c.tokens.size() > 1 && j.t_last_sample > j.t_first_sample) {
    f.decode_tps_server = static_cast<double>(c.tokens.size() - 1) * 1e9 /
                          static_cast<double>(j.t_last_sample - j.t_first_sample);
  }
  if (f.tokens_out && *f.tokens_out > 1 && f.t_first_token_ns && f.t_last_token_ns &&
      *f.t_last_token_ns > *f.t_first_token_ns) {
    f.decode_tps_client = static_cast<double>(*f.tokens_out - 1) * 1e9 /
                          static_cast<double>(*f.t_last_token_ns - *f.t_first_token_ns);
  }
  f.e2e_ns = now_ns() - f.t_send_ns;
  if (j.sampler) llama_sampler_free(j.sampler);
  j.sampler = nullptr;
  j.chat.reset();

  // Keep a session's cells (they hold exactly seq.cached); free everything else's. A request that
  // ended before its prompt was wholly read (cancelled mid-prefill) leaves cells that match no
  // text we could record as the session's, so the session is dropped rather than kept wrong.
  // A request without a session leaves its cells (exactly seq.cached, however it ended) for the
  // next request's common prefix, unless decoding failed.
  const bool prefilled = seq.cached.size() >= j.prompt.size();
  const bool keep =
      !seq.session.empty() && !seq.drop_after && kind != ErrorKind::server && prefilled;
  if (seq.session.empty() && kind != ErrorKind::server) {
    seq.session_text.clear();
  } else if (keep) {
    std::string text = j.prompt_text;
    const std::size_t decoded = seq.cached.size() - std::min(seq.cached.size(), j.prompt.size());
    for (std::size_t i = 0; i < decoded && i < j.pieces.size(); ++i) text += j.pieces[i];
    seq.session_text = std::move(text);
  } else {
    llama_memory_seq_rm(llama_get_memory(ctx_), seq.id, -1, -1);
    seq.cached.clear();
    seq.session.clear();
    seq.session_text.clear();
  }
  seq.drop_after = false;
  seq.last_used = tick();
  j.complete();
}

}  // namespace chimera::backends
