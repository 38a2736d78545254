// llama.cpp in-process (private header): one model, one context, one decode loop that batches
// every active sequence.
//
// Each step of the loop builds one llama_batch holding the next token of every sequence that is
// generating and, after them, prompt chunks of sequences that are reading their prompt (oldest
// arrival first, at most `prefill_chunk` tokens each, `batch` tokens in all). A request that
// arrives goes into the very next step; running streams never wait for a whole long prompt.
// Requests beyond `parallel` sequences wait in a queue, in arrival order.
//
// Sessions: a sequence that served a request with a session id keeps its KV cells, and the
// session's tokens; the session's next request reuses the longest common prefix and prefills
// only the rest. Idle sessions are evicted least-recently-used when a sequence is needed.
//
// Thread safety: submit(), drop_session() and cancellation are thread-safe; callbacks run on the
// engine's thread.
#pragma once

#include "backends/llama_chat.hpp"

#include <chimera/backends/backend.hpp>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

struct llama_model;
struct llama_context;
struct llama_vocab;
struct llama_sampler;
struct llama_batch;
struct ggml_threadpool;

namespace chimera::backends {

// Appends one token of sequence `seq` at position `pos` to `batch` (made by llama_batch_init with
// room for it), its logits computed when `logits`; returns the token's index in the batch.
int add_to_batch(llama_batch& batch, int32_t token, int pos, int seq, bool logits);

class LlamaJob;
struct Inbox;

class LlamaEngine {
 public:
  // Loads the model (memory-mapped) and creates the context. Throws std::invalid_argument with
  // a clear message when the file cannot be loaded.
  LlamaEngine(std::string model_path, const LlamaConfig& config);
  ~LlamaEngine();
  LlamaEngine(const LlamaEngine&) = delete;
  LlamaEngine& operator=(const LlamaEngine&) = delete;

  std::shared_ptr<RequestHandle> submit(Request request, TokenCallback on_token,
                                        DoneCallback on_done);
  void drop_session(const std::string& session);

  const std::string& model_path() const { return path_; }
  const LlamaConfig& config() const { return config_; }
  int ctx_per_seq() const { return ctx_per_seq_; }
  std::string describe() const;
  // What the loaded file says of its model (read once, at load).
  const ModelFacts& facts() const { return facts_; }
  // Sequences and KV cells in use, as of the decode loop's last pass. Thread-safe.
  EngineLoad load() const;

  // Whether llama.cpp's CPU backend computes a sequence's numbers the same alone and in a batch:
  // false when llama.cpp as it ships takes llamafile's tiled matrix kernels for two rows or more
  // and ggml's dot product for one (CHIMERA_LLAMA_BATCH_INVARIANT=OFF, or an installed llama.cpp
  // built with them). True for the pinned build, whose single rows take the tiled kernels too.
  // Otherwise asks the backend's registry, so a CPU backend loaded as a module answers too.
  static bool cpu_kernels_batch_invariant();

  // The engine shared by every backend made for this file and configuration.
  static std::shared_ptr<LlamaEngine> shared(const std::string& model_path,
                                             const LlamaConfig& config);

 private:
  struct Seq;
  void loop();
  void warm_up();
  void admit();
  bool prepare(LlamaJob& job, Seq& seq);
  bool prepare_prompt(LlamaJob& job, const Seq* seq);
  void bind(LlamaJob& job, Seq& seq);
  void step();
  void finish(Seq& seq, ErrorKind kind = ErrorKind::none, std::string message = {});
  // One sequence's next token, drawn from the logits at `index` of the step's batch.
  struct Draw {
    Seq* seq = nullptr;
    int index = 0;
    const float* logits = nullptr;
    int32_t token = -1;
    std::string error;  // why no token was drawn ("" when one was)
  };
  void sample_all(std::vector<Draw>& draws);
  void emit_token(Seq& seq, int32_t token);
  std::vector<int32_t> tokenize(const std::string& text, bool add_special) const;
  bool prepare_chat(LlamaJob& job, std::string& error) const;
  // Hands generated text to the caller: as it is, or parsed by the chat template's format
  // (content, reasoning, tool calls). `final`: the end of the output. False when cancelled.
  bool deliver_text(LlamaJob& job, std::string_view text, bool final) const;
  // The request's sampler chain; leading_top_k: its top-k's k when the chain starts with it
  // (and a draw may use top_k_candidates), else 0; greedy_only: the chain is the greedy sampler
  // alone (a draw may use greedy_choice).
  llama_sampler* make_sampler(const Request& request, int& leading_top_k, bool& greedy_only,
                              std::string& error) const;
  int64_t tick() { return ++clock_; }
  void publish_load();  // engine thread: refreshes what load() reads
  void attach_thread_pool(int threads);

  std::string path_;
  LlamaConfig config_;
  int ctx_per_seq_ = 0;
  int threads_ = 1;  // the context's compute threads
  llama_model* model_ = nullptr;
  ModelFacts facts_;
  llama_context* ctx_ = nullptr;
  // ggml's thread pool for the context's graphs (see attach_thread_pool); null under OpenMP's
  // threads or when the CPU backend does not offer one.
  struct ggml_threadpool* pool_ = nullptr;
  void (*free_pool_)(struct ggml_threadpool*) = nullptr;
  const llama_vocab* vocab_ = nullptr;
  std::unique_ptr<ChatTemplates> chat_;

  std::shared_ptr<Inbox> inbox_;
  std::mutex mu_;
  std::deque<std::shared_ptr<LlamaJob>> incoming_;
  std::vector<std::string> drops_;
  bool stopping_ = false;

  // Engine thread only.
  std::deque<std::shared_ptr<LlamaJob>> waiting_;
  std::vector<std::unique_ptr<Seq>> seqs_;
  int64_t clock_ = 0;
  std::thread thread_;

  // What load() reads, written by the engine thread.
  std::atomic<int> busy_{0};
  std::atomic<int> sessions_{0};
  std::atomic<int64_t> kv_used_{0};
};

}  // namespace chimera::backends
