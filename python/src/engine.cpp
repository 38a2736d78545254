// Engine, Call and Bridge.
#include "engine.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <chrono>

namespace chimera::python {

namespace {

// The Python Bridge object: closes its core (releasing the loop) when dropped.
struct PyBridge {
  std::shared_ptr<BridgeCore> core;
  ~PyBridge() {
    if (core) core->close();
  }
};

// Waits, GIL released, until pred() holds under st.mu or `timeout_s` passes (< 0: no limit).
// Looks for signals (Ctrl-C) every 100 ms and raises them (only the main thread gets any).
template <class Pred>
bool wait_state(CallState& st, Pred pred, double timeout_s) {
  using clock = std::chrono::steady_clock;
  const bool limited = timeout_s >= 0;
  const auto deadline =
      clock::now() + std::chrono::duration_cast<clock::duration>(
                         std::chrono::duration<double>(limited ? timeout_s : 0.0));
  while (true) {
    {
      py::gil_scoped_release nogil;
      std::unique_lock lock(st.mu);
      auto slice = clock::now() + std::chrono::milliseconds(100);
      if (limited && deadline < slice) slice = deadline;
      if (st.cv.wait_until(lock, slice, pred)) return true;
      if (limited && clock::now() >= deadline) return false;
    }
    if (PyErr_CheckSignals() != 0) throw py::error_already_set();
  }
}

py::list chunk_list(std::deque<ChunkData>&& chunks) {
  py::list out;
  for (auto& c : chunks) out.append(py::cast(std::move(c)));
  return out;
}

py::dict info_to_dict(const EndpointInfo& i) {
  py::dict d;
  d["url"] = i.url;
  d["healthy"] = i.healthy;
  d["backend"] = to_string(i.kind);
  d["server"] = i.server;
  d["version"] = i.version;
  d["models"] = i.models;
  d["detail"] = i.detail;
  d["latency_ms"] = static_cast<double>(i.latency_ns) / 1e6;
  return d;
}

}  // namespace

pool::Pool& find_pool(Engine& e, const std::string& name) {
  if (pool::Pool* p = e.find_pool(name)) return *p;
  throw BadInput(
      fmt::format("no pool named '{}' (pools: {})", name, fmt::join(e.pool_names(), ", ")));
}

NativeEngine::NativeEngine(const py::handle& pools, const std::string& executor, int threads,
                           bool pin_threads, int blocking_threads) {
  EngineOptions o;
  o.pools = pools_from(pools);
  auto e = parse_executor(executor);
  if (!e) {
    throw BadInput(
        fmt::format("unknown executor '{}' (single, shared, per-core, "
                    "thread-per-agent)",
                    executor));
  }
  o.executor = *e;
  o.threads = threads;
  o.pin_threads = pin_threads;
  o.blocking_threads = blocking_threads;
  py::gil_scoped_release nogil;
  engine_ = std::make_unique<Engine>(std::move(o));
}

NativeEngine::~NativeEngine() {
  close();
}

void NativeEngine::close() {
  std::unique_ptr<Engine> doomed;
  py::gil_scoped_release nogil;
  {
    std::unique_lock lock(mu_);
    doomed = std::move(engine_);
  }
  // Outside the lock: the engine's destructor waits for requests in flight, whose callbacks
  // may need the GIL (released here) but never this lock.
  doomed.reset();
}

bool NativeEngine::closed() const {
  std::shared_lock lock(mu_);
  return !engine_;
}

void register_bridge(py::module_& m) {
  py::class_<PyBridge>(
      m, "Bridge",
      "The wake-up path from the engine's threads to one asyncio event loop (one per loop). "
      "Engine threads take the GIL only to call loop.call_soon_threadsafe, at most once per "
      "batch of ready requests.")
      .def(py::init([](py::object loop, bool direct) {
             auto b = std::make_unique<PyBridge>();
             b->core = std::make_shared<BridgeCore>(std::move(loop), direct);
             b->core->start();
             return b;
           }),
           py::arg("loop"), py::arg("direct") = false,
           "direct=True: the engine's I/O threads take the GIL themselves to wake the loop "
           "(one thread hand-off less, but they stall while the GIL is busy); default: a "
           "notifier thread does it.")
      .def_property_readonly("direct", [](const PyBridge& b) { return b.core->direct(); })
      .def_property_readonly("loop", [](const PyBridge& b) { return b.core->loop(); })
      .def_property_readonly(
          "wakeups", [](const PyBridge& b) { return b.core->wakeups(); },
          "How many times the engine woke the loop (diagnostics).")
      .def_property_readonly(
          "gil_wait_ns", [](const PyBridge& b) { return b.core->gil_wait_ns(); },
          "Time the engine's threads waited for the GIL to wake the loop, ns "
          "(diagnostics).")
      .def("close", [](PyBridge& b) { b.core->close(); });
}

void register_engine(py::module_& m) {
  py::class_<PyCall>(
      m, "Call", "A request in flight. Dropping it cancels the request when it has not finished.")
      .def_property_readonly(
          "done",
          [](PyCall& c) {
            std::lock_guard lock(c.state->mu);
            return c.state->done;
          },
          "True once the request has ended (its Completion is ready).")
      .def_property_readonly(
          "merged",
          [](PyCall& c) {
            std::lock_guard lock(c.state->mu);
            return c.state->merged;
          },
          "Pieces merged into earlier chunks because the consumer fell behind.")
      .def(
          "park", [](PyCall& c, py::object future) { return c.state->park(std::move(future)); },
          py::arg("future"),
          "Parks an asyncio.Future that the engine resolves (with None, or with the Completion "
          "for a result call) when there is news; False when there already is.")
      .def(
          "unpark",
          [](PyCall& c) {
            c.state->waiter = py::object();
            std::lock_guard lock(c.state->mu);
            c.state->waiting = false;
          },
          "Forgets a parked future (its task was cancelled).")
      .def(
          "take",
          [](PyCall& c) -> py::object {
            bool finished = false;
            auto chunks = c.state->take(finished);
            if (finished) return py::none();
            return chunk_list(std::move(chunks));
          },
          "The chunks buffered so far (possibly none), or None once the stream has ended and "
          "every chunk was taken.")
      .def(
          "wait_chunks",
          [](PyCall& c, double timeout_s) -> py::object {
            CallState& st = *c.state;
            wait_state(
                st, [&st] { return st.done || !st.chunks.empty(); }, timeout_s);
            bool finished = false;
            auto chunks = st.take(finished);
            if (finished) return py::none();
            return chunk_list(std::move(chunks));
          },
          py::arg("timeout") = -1.0,
          "Blocks (GIL released) until chunks arrive or the stream ends; then as take().")
      .def(
          "wait",
          [](PyCall& c, double timeout_s) {
            CallState& st = *c.state;
            return wait_state(
                st, [&st] { return st.done; }, timeout_s);
          },
          py::arg("timeout") = -1.0,
          "Blocks (GIL released) until the request ends; False when `timeout` (s) ran out.")
      .def(
          "result",
          [](PyCall& c) -> py::object {
            {
              std::lock_guard lock(c.state->mu);
              if (!c.state->done) throw Failure("the request has not finished yet");
            }
            return make_completion(*c.state);
          },
          "The Completion of a finished request.")
      .def(
          "cancel",
          [](PyCall& c) {
            py::gil_scoped_release nogil;
            c.state->cancel();
          },
          "Cancels the request: the connection is closed, so the server stops generating and "
          "frees its slot. Idempotent.");

  py::class_<NativeEngine>(m, "Engine",
                           "The C++ engine: executors (event-loop threads) and endpoint pools.")
      .def(py::init<const py::handle&, const std::string&, int, bool, int>(), py::arg("pools"),
           py::arg("executor") = "single", py::arg("threads") = 0, py::arg("pin_threads") = true,
           py::arg("blocking_threads") = 4)
      .def("close", &NativeEngine::close,
           "Cancels every request in flight, waits for them, and stops the engine's threads.")
      .def_property_readonly("closed", &NativeEngine::closed)
      .def_property_readonly(
          "executor",
          [](NativeEngine& n) {
            return n.with_engine([](Engine& e) { return std::string(to_string(e.executor())); });
          })
      .def_property_readonly(
          "loops",
          [](NativeEngine& n) { return n.with_engine([](Engine& e) { return e.loops(); }); })
      .def_property_readonly(
          "lanes",
          [](NativeEngine& n) { return n.with_engine([](Engine& e) { return e.lanes(); }); })
      .def("pool_names",
           [](NativeEngine& n) { return n.with_engine([](Engine& e) { return e.pool_names(); }); })
      .def(
          "pool_config",
          [](NativeEngine& n, const std::string& name) {
            pool::PoolConfig pc =
                n.with_engine([&](Engine& e) { return find_pool(e, name).config(); });
            return pool_to_dict(pc);
          },
          py::arg("pool"))
      .def(
          "pool_status",
          [](NativeEngine& n, const std::string& name) {
            auto st = n.with_engine([&](Engine& e) { return find_pool(e, name).status(); });
            py::list out;
            for (const auto& s : st) {
              py::dict d;
              d["url"] = s.url;
              d["address"] = s.address;  // expand = "dns": the address it connects to
              d["backend"] = to_string(s.kind);
              d["up"] = s.up;
              d["outstanding"] = s.outstanding;
              d["limit"] = s.limit;
              d["dispatched"] = s.dispatched;
              d["failures"] = s.failures;
              d["last_error"] = s.last_error;
              out.append(d);
            }
            return out;
          },
          py::arg("pool"))
      .def(
          "check",
          [](NativeEngine& n, const std::string& name) {
            EndpointInfo info =
                n.with_engine([&](Engine& e) { return find_pool(e, name).check(); });
            return info_to_dict(info);
          },
          py::arg("pool"), "Health, version and models of a pool's endpoints (blocks).")
      .def(
          "drop_session",
          [](NativeEngine& n, const std::string& name, const std::string& session) {
            n.with_engine([&](Engine& e) {
              find_pool(e, name).drop_session(session);
              return 0;
            });
          },
          py::arg("pool"), py::arg("session"))
      .def(
          "start",
          [](NativeEngine& n, const std::string& pool_name, const py::dict& request,
             const py::object& bridge, bool stream, std::size_t max_buffer, bool record_lags,
             int lane, py::object future) {
            Request r = request_from(request);
            auto st = std::make_shared<CallState>();
            st->mode = stream ? CallMode::stream : CallMode::result;
            st->max_buffer = std::max<std::size_t>(1, max_buffer);
            st->record_lags = record_lags;
            if (!bridge.is_none()) st->bridge = bridge.cast<PyBridge&>().core;
            auto call = std::make_unique<PyCall>();
            call->state = st;
            // Parked before the request starts, so that once it is sent the caller has nothing
            // left to do but await (Python work right after the send competes with the I/O
            // thread for a core just when the first token may come).
            if (!future.is_none()) {
              if (!st->bridge) throw BadInput("a future needs a bridge");
              st->park(std::move(future));
            }
            // Starting is a non-blocking hand-off (a queue and a wake-up of the I/O thread, a
            // few microseconds), so the GIL is kept: releasing and re-taking it would cost more
            // than the call, and on a busy machine would make the event loop queue for the GIL
            // behind other threads. No engine thread ever waits for the GIL, so this cannot
            // deadlock; with a direct bridge one does, and the GIL is released.
            auto launch = [&](Engine& e) {
              pool::Pool& p = find_pool(e, pool_name);
              st->backend = to_string(p.kind());
              std::weak_ptr<CallState> weak = st;
              TokenCallback on_token = [weak](const TokenEvent& ev) {
                if (auto s = weak.lock()) return s->on_token(ev);
                return false;  // nobody holds the call any more: stop
              };
              DoneCallback on_done = [weak](Completion c) {
                if (auto s = weak.lock()) s->on_done(std::move(c));
              };
              auto h = lane < 0 ? p.start(std::move(r), std::move(on_token), std::move(on_done))
                                : p.start_on(lane, std::move(r), std::move(on_token),
                                             std::move(on_done));
              std::lock_guard lock(st->mu);
              st->handle = std::move(h);
              return 0;
            };
            if (st->bridge && st->bridge->direct()) {
              n.with_engine(launch);
            } else {
              n.use_engine(launch);
            }
            return call;
          },
          py::arg("pool"), py::arg("request"), py::arg("bridge") = py::none(),
          py::arg("stream") = false, py::arg("max_buffer") = 1024, py::arg("record_lags") = false,
          py::arg("lane") = -1, py::arg("future") = py::none(),
          "Starts a request on a pool and returns its Call at once. With a Bridge, parked "
          "futures are resolved on that Bridge's loop (`future`: one parked before the request "
          "starts); without one, use wait()/wait_chunks().");
}

}  // namespace chimera::python
