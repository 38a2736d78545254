// chimeraforge._native: the pybind11 module. The package `chimeraforge` wraps it; use that.
#include "native.hpp"

#include <chimera/version.h>

namespace chimera::python {

namespace {

// The package's exception types, set once at import. Kept as owned references for the life of
// the process (never released: no Python call may happen during interpreter teardown).
PyObject* g_chimera_error = nullptr;
PyObject* g_bad_input = nullptr;

}  // namespace

void set_error_types(py::handle chimera_error, py::handle bad_input) {
  Py_XINCREF(chimera_error.ptr());
  Py_XINCREF(bad_input.ptr());
  g_chimera_error = chimera_error.ptr();
  g_bad_input = bad_input.ptr();
}

}  // namespace chimera::python

namespace py = pybind11;

PYBIND11_MODULE(_native, m) {
  namespace cp = chimera::python;
  m.doc() = "The chimeraforge engine (C++), as the chimeraforge package uses it.";
  m.attr("__version__") = CHIMERA_VERSION_STRING;

  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const cp::BadInput& e) {
      PyErr_SetString(cp::g_bad_input ? cp::g_bad_input : PyExc_ValueError, e.what());
    } catch (const std::invalid_argument& e) {
      // The engine throws these for configurations it cannot use (a pool, an endpoint, a model
      // file), naming what is wrong.
      PyErr_SetString(cp::g_bad_input ? cp::g_bad_input : PyExc_ValueError, e.what());
    } catch (const cp::Failure& e) {
      PyErr_SetString(cp::g_chimera_error ? cp::g_chimera_error : PyExc_RuntimeError, e.what());
    }
  });

  m.def("set_error_types", &cp::set_error_types, py::arg("chimera_error"), py::arg("bad_input"),
        "Installs the package's exception types (chimeraforge.errors); called at import.");
  cp::register_results(m);
  cp::register_bridge(m);
  cp::register_engine(m);
  cp::register_runs(m);
  cp::register_convert(m);
}
