// chimeraforge._native: the engine as Python sees it.
//
// One register_x(module&) per bound group. The rules every file here follows:
// - the GIL is released (py::gil_scoped_release) around anything that blocks or takes an engine
//   lock: starting, cancelling and waiting for requests, closing an engine, whole runs;
// - engine callbacks run on the engine's I/O threads without the GIL; they store what arrived
//   in C++ state and wake Python through a Bridge (bridge.hpp), which is the only code that
//   takes the GIL on those threads, and only to call loop.call_soon_threadsafe;
// - Python objects held by C++ state are touched only with the GIL held.
#pragma once

#include <chimera/core/request.hpp>
#include <chimera/engine/engine.hpp>
#include <chimera/pool/pool.hpp>
#include <chimera/scenarios/multi.hpp>
#include <chimera/workflow/workflow.hpp>

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>  // in every file: the casters must be the same everywhere

#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace chimera::python {

namespace py = pybind11;

// A request or configuration the caller got wrong: raised as chimeraforge.BadInputError.
struct BadInput : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};
// Any other failure of a whole operation (the engine is closed, ...): chimeraforge.ChimeraError.
struct Failure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// What a request's callbacks record besides the Completion: the delivery lags of METRICS.md,
// measured on the engine's thread as each chunk is handed over (docs/records.md).
struct LagStats {
  int64_t sum_ns = 0;
  int64_t max_ns = 0;
  int64_t stalls = 0;           // chunks whose lag exceeds 1 ms
  std::vector<int64_t> all_ns;  // only when asked (record_lags)
  void add(int64_t lag_ns, bool keep);
};

// A finished request as Python sees it (chimeraforge.Result).
struct PyCompletion {
  Completion c;
  LagStats lags;
  std::string backend;         // "ollama", "openai", "llama"
  int64_t t_delivered_ns = 0;  // when the result reached the caller's thread (0: not recorded)
};

// Conversions (convert.cpp). Each throws BadInput naming the key that is wrong.
Request request_from(const py::dict& d);
std::vector<pool::PoolConfig> pools_from(const py::handle& list);
py::dict pool_to_dict(const pool::PoolConfig& pc);
workflow::WorkflowConfig workflow_config_from(const py::handle& h);
py::dict workflow_config_to_dict(const workflow::WorkflowConfig& c);
py::dict record_to_dict(const multi::RequestRecord& r, const std::string& program);
multi::RequestRecord record_from(const py::handle& h);
py::dict figures_to_dict(const multi::ConcurrencyFigures& f);

void register_results(py::module_& m);  // Completion, Chunk
void register_bridge(py::module_& m);   // Bridge
void register_engine(py::module_& m);   // Engine, Call
void register_runs(py::module_& m);     // run_workflow, run_multi, records and figures
void register_convert(py::module_& m);  // load_pools, parse_pools, workflow_config

// The Python exception types (chimeraforge.errors), installed by the package at import.
void set_error_types(py::handle chimera_error, py::handle bad_input);

}  // namespace chimera::python
