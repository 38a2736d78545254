// Whole runs: the agent workflow and the multi-agent scenarios, and the concurrency figures
// computed from per-request records by the same code `chimeraforge multi` uses.
#include "engine.hpp"

#include <fmt/format.h>
#include <pybind11/stl/filesystem.h>

#include <condition_variable>
#include <deque>
#include <thread>

namespace chimera::python {

namespace {

[[noreturn]] void bad(const std::string& message) {
  throw BadInput(message);
}

template <class T>
void take(py::dict& d, const char* key, T& out) {
  if (!d.contains(key)) return;
  py::object v = d[key];
  PyDict_DelItemString(d.ptr(), key);
  if (v.is_none()) return;
  try {
    out = v.cast<T>();
  } catch (const py::cast_error&) {
    bad(fmt::format("'{}' has the wrong type ({})", key,
                    py::str(py::type::handle_of(v).attr("__name__")).cast<std::string>()));
  }
}

void no_more_keys(const py::dict& d, const char* what) {
  for (const auto& [k, v] : d) {
    (void)v;
    bad(fmt::format("{}: unknown option '{}'", what, py::str(k).cast<std::string>()));
  }
}

py::object completion_object(const Completion& c, const std::string& backend) {
  auto pc = std::make_shared<PyCompletion>();
  pc->c = c;
  pc->backend = backend;
  return py::cast(pc);
}

py::dict run_to_dict(const workflow::RunRecord& r, const std::string& backend) {
  py::dict d;
  d["config"] = r.config;
  d["run"] = r.run;
  d["ingest_ms"] = r.ingest_ms;
  d["digest_ms"] = r.digest_ms;
  d["analysis_ms"] = r.analysis_ms;
  d["report_ms"] = r.report_ms;
  d["write_ms"] = r.write_ms;
  d["total_ms"] = r.total_ms;
  d["files"] = r.files;
  d["records"] = r.records;
  d["file_errors"] = r.file_errors;
  d["error_values"] = r.error_values;
  d["bytes"] = r.bytes;
  d["digest_tokens"] = r.digest_tokens;
  d["digest_budget"] = r.digest_budget;
  d["analysis"] = completion_object(r.analysis.completion, backend);
  d["analysis_prompt"] = r.analysis.prompt;
  d["report"] = completion_object(r.report.completion, backend);
  d["report_prompt"] = r.report.prompt;
  d["sections_found"] = r.sections_found;
  d["sections_missing"] = r.sections_missing;
  d["report_file"] = r.report_file.string();
  return d;
}

py::dict progress_to_dict(const workflow::ProgressEvent& e) {
  static const char* kinds[] = {"stage_started", "stage_done", "tokens", "message"};
  py::dict d;
  d["kind"] = kinds[static_cast<int>(e.kind)];
  d["config"] = e.config;
  d["run"] = e.run;
  d["runs"] = e.runs;
  d["stage"] = e.stage;
  d["text"] = e.text;
  d["tokens"] = e.tokens;
  return d;
}

py::dict run_workflow(NativeEngine& n, py::dict o, const py::object& on_progress) {
  workflow::WorkflowOptions wo;
  std::string pool_name;
  std::vector<std::string> data;
  std::string out_dir = "out";
  py::object configs = py::none();
  take(o, "data", data);
  take(o, "pool", pool_name);
  take(o, "model", wo.model);
  take(o, "runs", wo.runs);
  take(o, "out_dir", out_dir);
  if (o.contains("configs")) {
    configs = o["configs"];
    PyDict_DelItemString(o.ptr(), "configs");
  }
  no_more_keys(o, "run_workflow");
  if (data.empty()) bad("run_workflow: give `data`, the folders or files to ingest");
  for (const auto& p : data) wo.data.emplace_back(p);
  wo.out_dir = out_dir;
  if (configs.is_none()) {
    wo.configs = {workflow::chimera_config()};
  } else if (py::isinstance<py::str>(configs) || py::isinstance<py::dict>(configs)) {
    wo.configs = {workflow_config_from(configs)};
  } else {
    for (const auto& c : configs) wo.configs.push_back(workflow_config_from(c));
  }
  if (wo.configs.empty()) bad("run_workflow: `config` names no configuration");
  if (wo.runs < 1) bad("run_workflow: `runs` must be at least 1");

  // The workflow blocks on its calls: it runs on a thread of its own while this thread (GIL
  // released) waits for it and hands progress events to `on_progress`, with the GIL, here.
  struct Shared {
    std::mutex mu;
    std::condition_variable cv;
    std::deque<workflow::ProgressEvent> events;
    bool finished = false;
    workflow::WorkflowResult result;
    std::string backend;
  };
  auto sh = std::make_shared<Shared>();
  const bool want_progress = !on_progress.is_none();
  if (want_progress) {
    wo.on_progress = [sh](const workflow::ProgressEvent& e) {
      {
        std::lock_guard lock(sh->mu);
        sh->events.push_back(e);
      }
      sh->cv.notify_one();
    };
  }
  std::thread worker;
  n.with_engine([&](Engine& e) {
    pool::Pool& p =
        pool_name.empty() ? find_pool(e, e.pool_names().front()) : find_pool(e, pool_name);
    wo.backend = &p;
    wo.endpoint.kind = p.kind();
    sh->backend = to_string(p.kind());
    worker = std::thread([sh, wo = std::move(wo), &n] {
      workflow::WorkflowResult r;
      try {
        // The engine stays open while the workflow uses its pool (close() waits for this lock).
        n.use_engine([&](Engine&) { r = workflow::run_workflow(wo); });
      } catch (const std::exception& ex) {
        r.ok = false;
        r.error = ex.what();
      }
      {
        std::lock_guard lock(sh->mu);
        sh->result = std::move(r);
        sh->finished = true;
      }
      sh->cv.notify_one();
    });
    return 0;
  });
  std::exception_ptr error;
  while (true) {
    std::deque<workflow::ProgressEvent> events;
    bool finished = false;
    {
      py::gil_scoped_release nogil;
      std::unique_lock lock(sh->mu);
      sh->cv.wait(lock, [&] { return sh->finished || !sh->events.empty(); });
      events.swap(sh->events);
      finished = sh->finished;
    }
    for (const auto& e : events) {
      if (error) break;
      try {
        on_progress(progress_to_dict(e));
      } catch (...) {
        error = std::current_exception();  // raised once the workflow has ended
      }
    }
    if (finished) break;
  }
  {
    py::gil_scoped_release nogil;
    worker.join();
  }
  if (error) std::rethrow_exception(error);
  const workflow::WorkflowResult& r = sh->result;
  py::dict d;
  d["ok"] = r.ok;
  d["error"] = r.error;
  py::list runs;
  for (const auto& run : r.runs) runs.append(run_to_dict(run, sh->backend));
  d["runs"] = runs;
  py::list written;
  for (const auto& p : r.written) written.append(p.string());
  d["written"] = written;
  return d;
}

py::dict run_multi(NativeEngine& n, py::dict o) {
  multi::MultiOptions mo;
  std::string scenario = "homogeneous";
  std::vector<std::string> data;
  std::string workflow_out = "out/multi";
  std::string program = "python-engine";
  bool calibrate = true;
  take(o, "scenario", scenario);
  take(o, "agents", mo.agents);
  take(o, "requests_per_agent", mo.requests_per_agent);
  take(o, "duration_s", mo.duration_s);
  take(o, "pool", mo.pool);
  take(o, "model", mo.model);
  take(o, "prompt", mo.prompt);
  take(o, "max_tokens", mo.max_tokens);
  take(o, "temperature", mo.temperature);
  take(o, "workflow_data", data);
  take(o, "workflow_out", workflow_out);
  take(o, "record_lags", mo.record_lags);
  take(o, "stagger_ms", mo.stagger_ms);
  take(o, "calibrate", calibrate);
  take(o, "program", program);
  no_more_keys(o, "run_multi");
  auto s = multi::parse_scenario(scenario);
  if (!s) bad(fmt::format("unknown scenario '{}' (homogeneous, personas, workflow)", scenario));
  mo.scenario = *s;
  if (mo.agents < 1) bad("agents must be at least 1");
  if (mo.requests_per_agent < 1) bad("requests_per_agent must be at least 1");
  if (!data.empty()) {
    mo.workflow_data.clear();
    for (const auto& p : data) mo.workflow_data.emplace_back(p);
  }
  mo.workflow_out = workflow_out;

  struct Out {
    multi::MultiResult result;
    std::optional<double> lone_tps, lone_system_tps;
    std::optional<int64_t> floor;
    std::string calibration_error;
  } out;
  n.with_engine([&](Engine& e) {
    std::unique_lock run_lock(n.run_mutex(), std::try_to_lock);
    if (!run_lock.owns_lock()) {
      throw Failure("another run_multi is running on this engine; one at a time");
    }
    // A lone agent first, as `chimeraforge multi` does: its decode rate is efficiency's
    // denominator and its median delivery lag contention's loopback floor (METRICS.md).
    if (calibrate && mo.scenario != multi::Scenario::workflow) {
      multi::MultiOptions lone = mo;
      lone.agents = 1;
      lone.duration_s = 0;
      lone.requests_per_agent = std::min(mo.requests_per_agent, 5);
      lone.record_lags = true;
      lone.stagger_ms = 0;
      const auto r = multi::run_multi(e, lone);
      const auto f = multi::concurrency_figures(r.records, 1, std::nullopt, std::nullopt);
      if (f.errors > 0) {
        out.calibration_error = r.records.empty() ? "no request" : r.records.front().error;
      } else {
        if (f.decode_tps_client > 0) out.lone_tps = f.decode_tps_client;
        if (f.system_tps > 0) out.lone_system_tps = f.system_tps;
        out.floor = multi::median_lag(r.records);
      }
    }
    if (out.calibration_error.empty()) out.result = multi::run_multi(e, mo);
    return 0;
  });
  if (!out.calibration_error.empty()) {
    throw Failure("the lone-agent calibration failed: " + out.calibration_error);
  }
  const auto f = multi::concurrency_figures(out.result.records, mo.agents, out.lone_tps, out.floor);
  py::dict d;
  py::list records;
  for (const auto& r : out.result.records) records.append(record_to_dict(r, program));
  d["records"] = records;
  py::dict figures = figures_to_dict(f);
  figures["scaling"] =
      out.lone_system_tps
          ? py::object(py::float_(f.system_tps / (mo.agents * *out.lone_system_tps)))
          : py::object(py::none());
  figures["lone_decode_tps_client"] = out.lone_tps;
  figures["loopback_floor_ms"] = out.floor
                                     ? py::object(py::float_(static_cast<double>(*out.floor) / 1e6))
                                     : py::object(py::none());
  figures["rss_peak"] = out.result.rss_peak_bytes;
  d["figures"] = figures;
  d["agents_failed"] = out.result.run.failed;
  d["agent_errors"] = out.result.run.errors;
  d["wall_s"] = static_cast<double>(out.result.run.wall_ns) / 1e9;
  d["rss_peak"] = out.result.rss_peak_bytes;
  return d;
}

}  // namespace

void register_runs(py::module_& m) {
  m.def("run_workflow", &run_workflow, py::arg("engine"), py::arg("options"),
        py::arg("on_progress") = py::none(),
        "Runs the agent workflow (ingest -> analysis -> report) on one of the engine's pools. "
        "Blocks (GIL released); progress events reach `on_progress` on this thread.");
  m.def("run_multi", &run_multi, py::arg("engine"), py::arg("options"),
        "Runs a multi-agent scenario on the engine (homogeneous, personas, workflow) with a "
        "lone-agent calibration first, as `chimeraforge multi` does. Blocks (GIL released).");
  m.def(
      "concurrency_figures",
      [](const py::list& records, int agents, std::optional<double> lone_decode_tps,
         std::optional<int64_t> loopback_floor_ns) {
        std::vector<multi::RequestRecord> recs;
        recs.reserve(records.size());
        for (const auto& r : records) recs.push_back(record_from(r));
        multi::ConcurrencyFigures f;
        {
          py::gil_scoped_release nogil;
          f = multi::concurrency_figures(recs, agents, lone_decode_tps, loopback_floor_ns);
        }
        return figures_to_dict(f);
      },
      py::arg("records"), py::arg("agents"), py::arg("lone_decode_tps") = py::none(),
      py::arg("loopback_floor_ns") = py::none(),
      "The concurrency figures of METRICS.md over per-request records (docs/records.md), "
      "computed by the engine's own code.");
  m.def(
      "median_lag_ns",
      [](const py::list& records) {
        std::vector<multi::RequestRecord> recs;
        for (const auto& r : records) recs.push_back(record_from(r));
        return multi::median_lag(recs);
      },
      py::arg("records"),
      "The median delivery lag over the records' lags_ns (the loopback floor).");
  m.def(
      "record_json",
      [](const py::dict& record, const std::string& program) {
        return multi::record_json(record_from(record), program);
      },
      py::arg("record"), py::arg("program") = "python-engine",
      "One record as the JSON line docs/records.md defines.");
  m.def("rss_peak_bytes", &multi::rss_peak_bytes,
        "Peak resident set of this process (VmHWM), bytes.");
  m.def("now_ns", &now_ns, "The engine's clock: CLOCK_MONOTONIC nanoseconds.");
}

}  // namespace chimera::python
