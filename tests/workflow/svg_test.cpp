// The report's SVG charts: well-formed, escaped, numbers without float32 artefacts.
#include <chimera/workflow/svg.hpp>

#include <gtest/gtest.h>

#include <cmath>
#include <regex>
#include <string>

namespace {

namespace svg = chimera::workflow::svg;

std::size_t count(const std::string& s, const std::string& what) {
  std::size_t n = 0;
  for (auto at = s.find(what); at != std::string::npos; at = s.find(what, at + 1)) ++n;
  return n;
}

// Every element opened is closed (a light check of well-formedness without an XML parser).
void expect_balanced(const std::string& s) {
  EXPECT_EQ(s.rfind("<svg ", 0), 0u);
  EXPECT_EQ(count(s, "<svg "), count(s, "</svg>"));
  EXPECT_EQ(count(s, "<text "), count(s, "</text>"));
  EXPECT_EQ(count(s, "<title>"), count(s, "</title>"));
  EXPECT_EQ(count(s, "<"), count(s, ">"));
}

}  // namespace

TEST(Svg, BarChartWithErrorBars) {
  const std::vector<svg::Bar> bars = {{"60", 41.66, 40.68, 42.64, "n=30"},
                                      {"80", 49.74, 48.77, 50.72, "n=30"},
                                      {"<100 & more>", 57.899999618530273, 56.88, 58.9, "n=30"}};
  const std::string s = svg::bar_chart("throughput by num_gpu", "tokens/s", "GPU layers", bars);
  expect_balanced(s);
  EXPECT_EQ(count(s, "class=\"bar\""), 3u);
  EXPECT_EQ(count(s, "class=\"error\""), 3u);
  EXPECT_NE(s.find("&lt;100 &amp; more&gt;"), std::string::npos);
  EXPECT_NE(s.find(">57.9<"), std::string::npos);  // the float32 value as its float
  EXPECT_FALSE(std::regex_search(s, std::regex(R"(\d\.\d{5,})")));
  // Taller bar for the larger value: its top is higher on the page (smaller y).
  std::smatch m;
  std::vector<double> tops;
  std::string rest = s;
  const std::regex bar(R"re(class="bar" x="[^"]+" y="([^"]+)")re");
  while (std::regex_search(rest, m, bar)) {
    tops.push_back(std::stod(m[1]));
    rest = m.suffix();
  }
  ASSERT_EQ(tops.size(), 3u);
  EXPECT_GT(tops[0], tops[1]);
  EXPECT_GT(tops[1], tops[2]);
}

TEST(Svg, HeatMapMarksMissingCells) {
  svg::HeatMap h;
  h.title = "ttft by runtime and num_gpu";
  h.row_label = "runtime";
  h.col_label = "num_gpu";
  h.rows = {"tokio", "smol"};
  h.cols = {"60", "100"};
  h.values = {120.5, 110.25, NAN, 180};
  h.unit = "ms";
  h.higher_is_better = false;
  const std::string s = svg::heat_map(h);
  expect_balanced(s);
  EXPECT_EQ(count(s, "class=\"cell\""), 4u);
  EXPECT_EQ(count(s, "fill=\"#eee\""), 1u);  // the missing cell
  EXPECT_NE(s.find(">110.2<"), std::string::npos);
  EXPECT_NE(s.find(">tokio<"), std::string::npos);
}

TEST(Svg, EmptyChartsAreStillValid) {
  expect_balanced(svg::bar_chart("none", "", "", {}));
  expect_balanced(svg::heat_map({}));
}
