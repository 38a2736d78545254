// The report's computed sections about the experiment (structure, effects, best and worst
// configurations, anomalies), its charts, and its part of metrics.json.
#pragma once

#include <chimera/ingest/experiment.hpp>

#include <boost/json/object.hpp>

#include <string>
#include <utility>
#include <vector>

namespace chimera::workflow {

struct Chart {
  std::string file;  // name beside report.md ("chart-throughput-by-num_gpu.svg")
  std::string caption;
  std::string svg;
};

// A key metric by its top factor (level means with 95% intervals), and a heat map of the two
// top factors when both explain at least 10% of its variance.
std::vector<Chart> experiment_charts(const ingest::Experiment& x);

// "## Experiment structure", "## Effects", "## Metric tables" (best and worst configurations,
// best against runner-up), "## Anomalies". Every figure names its source.
std::string experiment_sections(const ingest::Experiment& x, const std::vector<Chart>& charts);

boost::json::object experiment_json(const ingest::Experiment& x);

// Text for a Markdown table cell: '|' escaped, line breaks as spaces.
std::string markdown_cell(std::string_view s);

}  // namespace chimera::workflow
