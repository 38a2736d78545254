#include "core/runtime_impl.hpp"
#include "engine/loop_affinity.hpp"

#include <chimera/engine/engine.hpp>

#include <boost/asio/steady_timer.hpp>
#include <fmt/format.h>

#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <future>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <utility>
#include <vector>

namespace chimera {

const char* to_string(ExecutorKind e) {
  switch (e) {
    case ExecutorKind::single:
      return "single";
    case ExecutorKind::shared:
      return "shared";
    case ExecutorKind::per_core:
      return "per-core";
    case ExecutorKind::thread_per_agent:
      return "thread-per-agent";
  }
  return "?";
}

std::optional<ExecutorKind> parse_executor(std::string_view name) {
  std::string n(name);
  std::replace(n.begin(), n.end(), '_', '-');
  for (ExecutorKind e : {ExecutorKind::single, ExecutorKind::shared, ExecutorKind::per_core,
                         ExecutorKind::thread_per_agent}) {
    if (n == to_string(e)) return e;
  }
  return std::nullopt;
}

namespace detail {

// Where an agent's coroutine resumes.
struct AgentCore {
  virtual ~AgentCore() = default;
  virtual void post(std::function<void()> fn) = 0;
  // Runs `fn` at `t_ns` (steady clock), or soon after.
  virtual void post_at(int64_t t_ns, std::function<void()> fn) = 0;
};

}  // namespace detail

namespace {

// An event loop's thread(s): the agent resumes there.
//
// On a loop with one thread, the resumes wait in a queue of the core's own and run at most
// kResumesPerTurn at a time, the loop looking at its sockets in between. Asio looks at the
// sockets once per pass through everything queued, and a burst of completions (many agents'
// streams ending together) queued as many resumes, each of which starts the agent's next
// request: the replies to the first requests of the burst then waited until the last request
// had gone out (at 1,000 agents, the first token of an agent's second request was read 3.5 -
// 8.9 ms after the server wrote it at p50, every later token 0.03 ms; 0.69 - 0.78 ms with the
// limit: bench/results/compare-burst-{before,after}-first-lag.txt). Tokio does the same with its
// event_interval (the I/O driver polled every 61 tasks). 4, 8, 16, 32 and 64 were tried: the
// fewer, the sooner those first tokens, and the later the burst's last agents start their next
// requests (the replies of the first are read before them), which `efficiency` at 1,000 agents
// counts: with 16 it was 0.5 - 3.3 points below its 99% goal in the rounds that compared the
// limits and at it in the README's run at 43a89cc, without a limit about at it, with `stall_rate`
// then above the Rust peer's (docs/performance.md, "A burst of resumes").
struct LoopCore final : detail::AgentCore {
  static constexpr int kResumesPerTurn = 16;
  struct Resumes {
    std::mutex mu;
    std::deque<std::function<void()>> queue;
    bool scheduled = false;  // a drain() is posted or running
  };
  explicit LoopCore(Runtime* r)
      : rt(r), resumes(r->threads() == 1 ? std::make_shared<Resumes>() : nullptr) {}
  void post(std::function<void()> fn) override {
    if (!resumes) {
      rt->post(std::move(fn));
      return;
    }
    {
      std::lock_guard lock(resumes->mu);
      resumes->queue.push_back(std::move(fn));
      if (resumes->scheduled) return;
      resumes->scheduled = true;
    }
    rt->post([rt = rt, r = resumes] { drain(rt, r); });
  }
  // Posts itself again only while resumes wait: once the last agent has finished nothing of the
  // engine is touched (the state is the handler's own), so that the engine may go.
  static void drain(Runtime* rt, const std::shared_ptr<Resumes>& r) {
    for (int ran = 0;; ++ran) {
      std::function<void()> fn;
      {
        std::lock_guard lock(r->mu);
        if (r->queue.empty()) {
          r->scheduled = false;
          return;
        }
        if (ran == kResumesPerTurn) break;
        fn = std::move(r->queue.front());
        r->queue.pop_front();
      }
      fn();
    }
    rt->post([rt, r] { drain(rt, r); });
  }
  void post_at(int64_t t_ns, std::function<void()> fn) override {
    auto timer = std::make_shared<boost::asio::steady_timer>(RuntimeAccess::io(*rt));
    timer->expires_at(std::chrono::steady_clock::time_point(std::chrono::nanoseconds(t_ns)));
    timer->async_wait([timer, fn = std::move(fn)](const boost::system::error_code&) { fn(); });
  }
  Runtime* rt;
  std::shared_ptr<Resumes> resumes;  // null on a loop with several threads
};

// The agent's own thread (thread-per-agent): it sleeps until its call completes.
struct ThreadCore final : detail::AgentCore {
  // post() and finish() notify while holding the lock: the agent's thread may otherwise run
  // the last task, finish, and have the ThreadCore destroyed (Engine::run returns) between the
  // unlock and notify_one(), which then signals a freed condition variable.
  void post(std::function<void()> fn) override {
    std::lock_guard lock(mu);
    queue.push_back(std::move(fn));
    cv.notify_one();
  }
  void post_at(int64_t t_ns, std::function<void()> fn) override {
    // The agent's own thread has nothing else to do: it sleeps, then runs fn.
    post([t_ns, fn = std::move(fn)] {
      std::this_thread::sleep_until(
          std::chrono::steady_clock::time_point(std::chrono::nanoseconds(t_ns)));
      fn();
    });
  }
  void run() {
    std::unique_lock lock(mu);
    while (true) {
      cv.wait(lock, [this] { return !queue.empty() || finished; });
      if (queue.empty() && finished) return;
      auto fn = std::move(queue.front());
      queue.pop_front();
      lock.unlock();
      fn();
      lock.lock();
    }
  }
  void finish() {
    std::lock_guard lock(mu);
    finished = true;
    cv.notify_one();
  }
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::function<void()>> queue;
  bool finished = false;
};

// A coroutine that starts at once and frees itself when done: the root of one agent.
struct Detached {
  struct promise_type {
    Detached get_return_object() noexcept { return {}; }
    std::suspend_never initial_suspend() noexcept { return {}; }
    std::suspend_never final_suspend() noexcept { return {}; }
    void return_void() noexcept {}
    void unhandled_exception() noexcept { std::terminate(); }
  };
};

Detached drive(const Engine::AgentBody& body, Agent& agent,
               std::function<void(std::exception_ptr)> done) {
  std::exception_ptr error;
  try {
    co_await body(agent);
  } catch (...) {
    error = std::current_exception();
  }
  done(error);
}

// A thread with a small stack: thread-per-agent starts thousands of them. Coroutine frames live
// on the heap, so an agent's thread needs little stack of its own.
pthread_t start_small_thread(std::function<void()>* fn) {
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, 256 * 1024);
  pthread_t t{};
  const int rc = pthread_create(
      &t, &attr,
      [](void* arg) -> void* {
        auto* f = static_cast<std::function<void()>*>(arg);
        (*f)();
        return nullptr;
      },
      fn);
  pthread_attr_destroy(&attr);
  if (rc != 0) {
    throw std::runtime_error(fmt::format("cannot start an agent thread: {}", std::strerror(rc)));
  }
  return t;
}

}  // namespace

struct Engine::Impl {
  EngineOptions options;
  int threads = 1;
  std::vector<std::unique_ptr<Runtime>> runtimes;
  std::vector<std::unique_ptr<LoopCore>> loops;  // one per runtime
  // single, with pin_threads: holds the loop's thread on one CPU while agents run.
  std::unique_ptr<detail::LoopAffinity> affinity;
  int lanes = 1;
  std::vector<std::unique_ptr<pool::Pool>> pools;

  // The blocking thread pool (Agent::blocking). Its threads start as work arrives, one whenever
  // more steps wait than threads are idle, up to `bmax`: a run without blocking steps starts
  // none (each thread costs its stack's and its thread-local storage's resident pages).
  std::mutex bmu;
  std::condition_variable bcv;
  std::deque<std::function<void()>> bqueue;
  bool bstop = false;
  int bmax = 1;
  int bidle = 0;  // threads waiting in bcv
  std::vector<std::thread> bthreads;

  void offload(std::function<void()> fn) {
    {
      std::lock_guard lock(bmu);
      bqueue.push_back(std::move(fn));
      if (!bstop && std::cmp_greater(bqueue.size(), bidle) &&
          std::cmp_less(bthreads.size(), bmax)) {
        bthreads.emplace_back([this] { blocking_worker(); });
      }
    }
    bcv.notify_one();
  }

  void blocking_worker() {
    std::unique_lock lock(bmu);
    while (true) {
      ++bidle;
      bcv.wait(lock, [this] { return bstop || !bqueue.empty(); });
      --bidle;
      if (bqueue.empty()) return;
      auto fn = std::move(bqueue.front());
      bqueue.pop_front();
      lock.unlock();
      fn();
      lock.lock();
    }
  }
};

Agent::Agent(Engine* e, int id, int lane, detail::AgentCore* core)
    : engine_(e), id_(id), lane_(lane), name_(fmt::format("agent-{}", id)), core_(core) {}

struct Agent::Generate::State {
  Completion result;
};

void Agent::Generate::await_suspend(std::coroutine_handle<> h) {
  state_ = std::make_shared<State>();
  auto st = state_;
  detail::AgentCore* core = agent_->core();
  if (pool_ == nullptr) {
    // Resumed from the loop like any call. (Completing in await_ready instead trips a GCC 12
    // bug that destroys the awaiter's members twice.)
    core->post([h] { h.resume(); });
    return;
  }
  if (request_.agent.empty()) request_.agent = agent_->name();
  // Nothing of *this may be touched once start_on() has been called: the coroutine may already
  // have resumed on another thread.
  pool_->start_on(agent_->lane(), std::move(request_), std::move(on_token_),
                  [st, core, h](Completion c) {
                    st->result = std::move(c);
                    core->post([h] { h.resume(); });
                  });
}

void Agent::Sleep::await_suspend(std::coroutine_handle<> h) {
  agent->core()->post_at(t_ns, [h] { h.resume(); });
}

Completion Agent::Generate::await_resume() {
  if (pool_ == nullptr) {  // no such pool: nothing was sent
    Completion c;
    c.error = {ErrorKind::bad_request, fmt::format("no pool named '{}' (pools: {})", request_.model,
                                                   fmt::join(agent_->engine().pool_names(), ", "))};
    c.finish = FinishReason::error;
    return c;
  }
  return std::move(state_->result);
}

Agent::Generate Agent::generate(std::string_view pool, const Request& request,
                                TokenCallback on_token) {
  // Never throws: GCC 12 destroys a by-value argument twice when a call inside a co_await
  // expression throws. An unknown pool completes at once with an error instead.
  pool::Pool* p = engine_->find_pool(pool);
  if (p == nullptr) {
    Request named;
    named.model = std::string(pool);  // carries the name to the error message
    return Generate(this, nullptr, std::move(named), {});
  }
  return Generate(this, p, request, std::move(on_token));
}

void Agent::offload(std::function<void()> work, std::coroutine_handle<> resume) {
  detail::AgentCore* core = core_;
  engine_->impl_->offload([work = std::move(work), core, resume] {
    work();
    core->post([resume] { resume.resume(); });
  });
}

Engine::Engine(EngineOptions options) : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.options = std::move(options);
  // Loops and threads for the CPUs this process may use, and per-core loops pinned among them:
  // pinned by the machine's numbering, a process limited to some CPUs had loops moved out of its
  // set (where the kernel allowed it) and more loops than CPUs.
  const std::vector<int> cpus = detail::allowed_cpus();
  m.threads = m.options.threads > 0 ? m.options.threads : static_cast<int>(cpus.size());
  switch (m.options.executor) {
    case ExecutorKind::single:
      m.runtimes.push_back(std::make_unique<Runtime>(1, m.options.busy_poll_us));
      m.lanes = 1;
      if (m.options.pin_threads) {
        m.affinity = std::make_unique<detail::LoopAffinity>(*m.runtimes.back());
      }
      break;
    case ExecutorKind::shared:
    case ExecutorKind::thread_per_agent:
      m.runtimes.push_back(std::make_unique<Runtime>(m.threads, m.options.busy_poll_us));
      // An endpoint's backend runs its requests on one strand; several lanes per endpoint let
      // the loop's threads share one endpoint's streams.
      m.lanes = m.threads == 1 ? 1 : 4 * m.threads;
      break;
    case ExecutorKind::per_core:
      for (int i = 0; i < m.threads; ++i) {
        m.runtimes.push_back(std::make_unique<Runtime>(1, m.options.busy_poll_us));
        if (m.options.pin_threads) {
          const int cpu = cpus[static_cast<std::size_t>(i) % cpus.size()];
          m.runtimes.back()->post([cpu] { detail::hold_thread_on(cpu); });  // best effort
        }
      }
      m.lanes = m.threads;
      break;
  }
  for (auto& rt : m.runtimes) m.loops.push_back(std::make_unique<LoopCore>(rt.get()));
  std::vector<Runtime*> rts;
  for (auto& rt : m.runtimes) rts.push_back(rt.get());
  for (const auto& pc : m.options.pools) {
    for (const auto& existing : m.pools) {
      if (existing->config().name == pc.name) {
        throw std::invalid_argument(fmt::format("two pools are named '{}'", pc.name));
      }
    }
    m.pools.push_back(std::make_unique<pool::Pool>(pc, rts, m.lanes));
  }
  {
    std::vector<pool::Pool*> all;
    for (auto& p : m.pools) all.push_back(p.get());
    pool::link_fallbacks(all);  // throws naming an unknown fallback or a loop
  }
  m.bmax = std::max(1, m.options.blocking_threads);
}

Engine::~Engine() {
  Impl& m = *impl_;
  {
    std::lock_guard lock(m.bmu);
    m.bstop = true;
  }
  m.bcv.notify_all();
  std::vector<std::thread> threads;
  {
    std::lock_guard lock(m.bmu);
    threads.swap(m.bthreads);
  }
  for (auto& t : threads) t.join();
  for (auto& p : m.pools) p->set_fallback(nullptr);  // none may forward to one destroyed
  m.pools.clear();                                   // before the runtimes their backends run on
  m.loops.clear();
  m.affinity.reset();
  m.runtimes.clear();
}

ExecutorKind Engine::executor() const {
  return impl_->options.executor;
}
int Engine::loops() const {
  return static_cast<int>(impl_->runtimes.size());
}
int Engine::lanes() const {
  return impl_->lanes;
}

pool::Pool* Engine::find_pool(std::string_view name) {
  for (auto& p : impl_->pools) {
    if (p->config().name == name) return p.get();
  }
  return nullptr;
}

pool::Pool& Engine::pool(std::string_view name) {
  if (auto* p = find_pool(name)) return *p;
  throw std::invalid_argument(
      fmt::format("no pool named '{}' (pools: {})", name, fmt::join(pool_names(), ", ")));
}

std::vector<std::string> Engine::pool_names() const {
  std::vector<std::string> out;
  for (const auto& p : impl_->pools) out.push_back(p->config().name);
  return out;
}

AgentRun Engine::run(int n, const AgentBody& body) {
  Impl& m = *impl_;
  AgentRun result;
  result.agents = std::max(0, n);
  if (n <= 0) return result;

  std::mutex mu;
  std::condition_variable cv;
  int remaining = n;
  std::vector<std::unique_ptr<Agent>> agents;
  std::vector<std::unique_ptr<ThreadCore>> thread_cores;
  std::vector<std::unique_ptr<std::function<void()>>> thread_mains;
  std::vector<pthread_t> threads;
  agents.reserve(std::size_t(n));

  auto on_agent_done = [&](const std::exception_ptr& error, ThreadCore* tc) {
    std::string message;
    if (error) {
      try {
        std::rethrow_exception(error);
      } catch (const std::exception& e) {
        message = e.what();
      } catch (...) {
        message = "unknown exception";
      }
    }
    if (tc != nullptr) tc->finish();
    std::lock_guard lock(mu);
    if (error) {
      ++result.failed;
      if (result.errors.size() < 8) result.errors.push_back(std::move(message));
    }
    if (--remaining == 0) cv.notify_all();
  };

  const int64_t t0 = now_ns();
  const bool own_threads = m.options.executor == ExecutorKind::thread_per_agent;
  // A loop's agents start together, from one task posted once they all exist: posted one at a
  // time, the first agent's start ran while the rest were still being made, and it sent its
  // request and waited for its reply while the loop opened the others' connections (at 1,000
  // agents, its first token came 125 - 190 ms after it was sent, and every other request went out
  // that much after it).
  std::vector<std::pair<detail::AgentCore*, std::vector<std::function<void()>>>> batches;
  for (int i = 0; i < n; ++i) {
    const int lane = i % m.lanes;
    detail::AgentCore* core = nullptr;
    ThreadCore* tc = nullptr;
    if (own_threads) {
      thread_cores.push_back(std::make_unique<ThreadCore>());
      tc = thread_cores.back().get();
      core = tc;
    } else if (m.options.executor == ExecutorKind::per_core) {
      core = m.loops[std::size_t(lane) % m.loops.size()].get();
    } else {
      core = m.loops[0].get();
    }
    agents.push_back(std::make_unique<Agent>(this, i, lane, core));
    Agent* a = agents.back().get();
    auto start = [&body, a, tc, &on_agent_done] {
      drive(body, *a, [tc, &on_agent_done](const std::exception_ptr& e) { on_agent_done(e, tc); });
    };
    if (own_threads) {
      tc->post(std::move(start));
      thread_mains.push_back(std::make_unique<std::function<void()>>([tc] { tc->run(); }));
      try {
        threads.push_back(start_small_thread(thread_mains.back().get()));
      } catch (...) {
        // Out of threads: the agents already started finish; this one and the rest fail.
        thread_cores.pop_back();
        agents.pop_back();
        std::lock_guard lock(mu);
        const int missing = n - i;
        result.failed += missing;
        result.errors.push_back(fmt::format(
            "could not start a thread for agent {} (and {} more): out of threads", i, missing - 1));
        remaining -= missing;
        break;
      }
    } else {
      auto batch = std::find_if(batches.begin(), batches.end(),
                                [core](const auto& b) { return b.first == core; });
      if (batch == batches.end()) batch = batches.insert(batches.end(), {core, {}});
      batch->second.push_back(std::move(start));
    }
  }
  if (m.affinity) {
    detail::LoopAffinity* affinity = m.affinity.get();
    m.runtimes.front()->post([affinity] { affinity->start(); });  // before the agents start
  }
  for (auto& [core, starts] : batches) {
    core->post([starts = std::move(starts)] {
      for (const auto& start : starts) start();
    });
  }
  {
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return remaining == 0; });
  }
  result.wall_ns = now_ns() - t0;
  if (m.affinity) {  // the loop's thread gets its CPUs back before run() returns
    std::promise<void> released;
    detail::LoopAffinity* affinity = m.affinity.get();
    m.runtimes.front()->post([affinity, &released] {
      affinity->stop();
      released.set_value();
    });
    released.get_future().wait();
  }
  for (auto t : threads) pthread_join(t, nullptr);
  return result;
}

}  // namespace chimera
