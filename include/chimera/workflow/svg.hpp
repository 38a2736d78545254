// Charts for report.md as standalone SVG files: a bar chart with error bars and a heat map.
//
// Why our own writer: Debian 12 has no C++ plotting library worth the dependency (the choices
// are gnuplot or matplotlib as external programs, or large GUI toolkits), and these two charts
// need about 200 lines of text output. SVG opens in every browser and renders inline on GitHub
// and GitLab when linked from Markdown. Numbers on the charts go through format_number (no
// float32 artefacts), text is XML-escaped.
//
//   std::vector<chimera::workflow::svg::Bar> bars = {{"60", 40.1, 39.5, 40.7}, ...};
//   std::string text = chimera::workflow::svg::bar_chart("throughput by num_gpu", "tokens/s",
//                                                        "num_gpu", bars);
//
// Pure functions; thread-safe.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace chimera::workflow::svg {

struct Bar {
  std::string label;
  double value = 0;
  double low = 0, high = 0;  // the error bar (e.g. the 95% interval); equal to value for none
  std::string note;          // under the label, e.g. "n=30"
};

// A vertical bar chart with error bars; the y axis starts at zero (or at the lowest value when
// values are negative).
std::string bar_chart(std::string_view title, std::string_view y_label, std::string_view x_label,
                      const std::vector<Bar>& bars);

struct HeatMap {
  std::string title;
  std::string row_label, col_label;  // the two factors
  std::vector<std::string> rows, cols;
  std::vector<double> values;  // rows.size() * cols.size(), row-major; NaN where no data
  std::string unit;
  bool higher_is_better = true;  // the better end is drawn darker
};

std::string heat_map(const HeatMap& map);

// &, <, >, " and ' as XML entities.
std::string escape(std::string_view text);

}  // namespace chimera::workflow::svg
