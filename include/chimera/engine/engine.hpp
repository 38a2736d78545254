// The Engine: N agents at once (1 to 10,000 in one process) over endpoint pools.
//
// Each agent is a coroutine (Task<void>) that runs its steps: LLM calls on the engine's pools
// (`co_await agent.generate(...)`), blocking work such as file I/O or a whole workflow run
// (`co_await agent.blocking(...)`, on a separate thread pool), and other Tasks. An agent that
// waits never blocks the others.
//
// Executors, chosen per Engine, decide which threads run the agents and their I/O; the results
// are the same, the figures differ (the counterpart of the runtime ablation in TR115):
//   single            one thread, one event loop: agents and I/O together (Python asyncio);
//                     while it is busy, its thread stays on one CPU (pin_threads)
//   shared            one event loop run by a pool of threads, work shared across them
//                     (tokio's multi-threaded runtime)
//   per-core          one event loop per core, its thread pinned to the core, each agent pinned
//                     to one loop with its own connections (tokio LocalSet per core)
//   thread-per-agent  one OS thread per agent that blocks on each call; I/O on a shared loop
//                     (the classic blocking client)
//
// Example:
//   chimera::Engine engine({.pools = pools, .executor = chimera::ExecutorKind::per_core});
//   engine.run(16, [](chimera::Agent& a) -> chimera::Task<void> {
//     chimera::Request r;
//     r.messages = {{.role = "user", .content = "Hello"}};
//     chimera::Completion c = co_await a.generate("default", r);
//   });
#pragma once

#include <chimera/backends/backend.hpp>
#include <chimera/engine/task.hpp>
#include <chimera/pool/pool.hpp>

#include <coroutine>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace chimera {

enum class ExecutorKind { single, shared, per_core, thread_per_agent };
const char* to_string(ExecutorKind e);
// "single", "shared", "per-core", "thread-per-agent" (underscores also accepted).
std::optional<ExecutorKind> parse_executor(std::string_view name);

struct EngineOptions {
  std::vector<pool::PoolConfig> pools;
  ExecutorKind executor = ExecutorKind::single;
  int threads = 0;           // shared: loop threads; per-core: loops; thread-per-agent: I/O
                             // threads. 0: one per CPU the process may use
  bool pin_threads = true;   // per-core: pin each loop's thread to its core; single: hold the
                             // loop's thread on its CPU while it is busy and calm there, giving
                             // it back to the kernel when it waits (docs/multi.md)
  int blocking_threads = 4;  // threads for Agent::blocking steps
  int busy_poll_us = 0;      // each loop thread polls this long before it sleeps (Runtime)
};

class Engine;

namespace detail {
struct AgentCore;  // where an agent runs (private)
}

class Agent {
 public:
  int id() const { return id_; }
  const std::string& name() const { return name_; }  // "agent-<id>"
  int lane() const { return lane_; }
  Engine& engine() { return *engine_; }

  // An LLM call on a pool. Completes with the Completion (errors inside it, never thrown; an
  // unknown pool is a bad_request error naming the pools); `on_token` runs on an I/O thread as
  // tokens arrive. The request's `agent` field (the fair queue's key) is set to this agent's
  // name when empty.
  //
  // With GCC 12, pass a named Request: a braced temporary inside a co_await expression
  // (`co_await a.generate("p", Request{})`) is destroyed twice by that compiler.
  class Generate {
   public:
    bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<> h);
    Completion await_resume();

   private:
    friend class Agent;
    struct State;
    Generate(Agent* a, pool::Pool* p, Request r, TokenCallback t)
        : agent_(a), pool_(p), request_(std::move(r)), on_token_(std::move(t)) {}
    Agent* agent_;
    pool::Pool* pool_;
    Request request_;
    TokenCallback on_token_;
    std::shared_ptr<State> state_;
  };
  Generate generate(std::string_view pool, const Request& request, TokenCallback on_token = {});

  // Resumes the agent at `t_ns` (steady clock) without blocking its loop.
  struct Sleep {
    Agent* agent;
    int64_t t_ns;
    bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<> h);
    void await_resume() const noexcept {}
  };
  Sleep sleep_until(int64_t t_ns) { return Sleep{this, t_ns}; }

  // Runs `fn` on the engine's blocking thread pool and resumes with its result (or its
  // exception). For steps that block: file I/O, a whole workflow run, a CPU-heavy tool.
  template <class F>
  auto blocking(F fn) {
    using R = std::invoke_result_t<F&>;
    struct Awaiter {
      Agent* agent;
      F fn;
      std::conditional_t<std::is_void_v<R>, bool, std::optional<R>> value{};
      std::exception_ptr error;
      bool await_ready() const noexcept { return false; }
      void await_suspend(std::coroutine_handle<> h) {
        agent->offload(
            [this] {
              try {
                if constexpr (std::is_void_v<R>) {
                  fn();
                } else {
                  value.emplace(fn());
                }
              } catch (...) {
                error = std::current_exception();
              }
            },
            h);
      }
      R await_resume() {
        if (error) std::rethrow_exception(error);
        if constexpr (!std::is_void_v<R>) return std::move(*value);
      }
    };
    return Awaiter{this, std::move(fn), {}, {}};
  }

  // For the engine.
  Agent(Engine* e, int id, int lane, detail::AgentCore* core);
  void offload(std::function<void()> work, std::coroutine_handle<> resume);
  detail::AgentCore* core() const { return core_; }

 private:
  Engine* engine_;
  int id_;
  int lane_;
  std::string name_;
  detail::AgentCore* core_;
};

// What a run of agents did.
struct AgentRun {
  int agents = 0;
  int failed = 0;                   // agents whose Task threw
  std::vector<std::string> errors;  // the first few of their messages
  int64_t wall_ns = 0;              // from the first agent's start to the last one's end
};

class Engine {
 public:
  // Throws std::invalid_argument (with the pool and endpoint named) when a pool cannot be made.
  explicit Engine(EngineOptions options);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  ExecutorKind executor() const;
  int loops() const;  // event loops (per-core: one per core)
  int lanes() const;  // backends per endpoint (one per loop; more for a shared loop)
  pool::Pool& pool(std::string_view name);  // throws std::invalid_argument naming the pools
  pool::Pool* find_pool(std::string_view name);
  std::vector<std::string> pool_names() const;

  using AgentBody = std::function<Task<void>(Agent&)>;
  // Runs `agents` agents, agent i running body(agent i), and returns when all have ended.
  // The body is called on the agent's own loop. Not reentrant: one run at a time.
  AgentRun run(int agents, const AgentBody& body);

  struct Impl;

 private:
  friend class Agent;
  std::unique_ptr<Impl> impl_;
};

}  // namespace chimera
