// SVG charts for the report. See svg.hpp for why we write SVG ourselves.
#include <chimera/ingest/experiment.hpp>
#include <chimera/workflow/svg.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>

namespace chimera::workflow::svg {

namespace {

using ingest::format_number;

// Coordinates with one decimal: exact enough for a screen, no long fractions in the file.
std::string px(double v) {
  return fmt::format("{:.1f}", v);
}

std::string header(int width, int height, std::string_view title) {
  return fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" "
      "viewBox=\"0 0 {0} {1}\" font-family=\"sans-serif\" font-size=\"12\">\n"
      "<title>{2}</title>\n<rect width=\"{0}\" height=\"{1}\" fill=\"white\"/>\n"
      "<text x=\"{3}\" y=\"20\" text-anchor=\"middle\" font-size=\"14\" "
      "font-weight=\"bold\">{2}</text>\n",
      width, height, escape(title), width / 2);
}

// A "nice" axis step: 1, 2 or 5 times a power of ten, about `ticks` steps over `range`.
double nice_step(double range, int ticks) {
  if (range <= 0) return 1;
  const double raw = range / ticks;
  const double p = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (raw <= m * p) return m * p;
  return 10 * p;
}

}  // namespace

std::string escape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&apos;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string bar_chart(std::string_view title, std::string_view y_label, std::string_view x_label,
                      const std::vector<Bar>& bars) {
  const int left = 70, right = 20, top = 40, bottom = 70;
  const int bar_w = 48, gap = 24;
  const int plot_w = std::max(240, static_cast<int>(bars.size()) * (bar_w + gap) + gap);
  const int plot_h = 260;
  const int width = left + plot_w + right, height = top + plot_h + bottom;
  double lo = 0, hi = 0;
  for (const auto& b : bars) {
    lo = std::min({lo, b.value, b.low});
    hi = std::max({hi, b.value, b.high});
  }
  if (hi <= lo) hi = lo + 1;
  const double step = nice_step(hi - lo, 5);
  lo = std::floor(lo / step) * step;
  hi = std::ceil(hi / step) * step;
  auto y = [&](double v) { return top + plot_h * (hi - v) / (hi - lo); };

  std::string s = header(width, height, title);
  // Axes, grid and tick labels.
  for (double t = lo; t <= hi + step / 2; t += step) {
    s += fmt::format("<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#ddd\"/>\n", left,
                     px(y(t)), left + plot_w, px(y(t)));
    s += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\n", left - 6,
                     px(y(t) + 4), escape(format_number(t)));
  }
  s += fmt::format("<line x1=\"{0}\" y1=\"{1}\" x2=\"{0}\" y2=\"{2}\" stroke=\"black\"/>\n", left,
                   top, top + plot_h);
  s += fmt::format("<line x1=\"{0}\" y1=\"{1}\" x2=\"{2}\" y2=\"{1}\" stroke=\"black\"/>\n", left,
                   px(y(std::max(lo, 0.0))), left + plot_w);
  s += fmt::format(
      "<text x=\"16\" y=\"{0}\" text-anchor=\"middle\" transform=\"rotate(-90 16 "
      "{0})\">{1}</text>\n",
      top + plot_h / 2, escape(y_label));
  s += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n", left + plot_w / 2,
                   height - 10, escape(x_label));
  // Bars, error bars and labels.
  for (std::size_t i = 0; i < bars.size(); ++i) {
    const Bar& b = bars[i];
    const double x0 = left + gap + static_cast<double>(i) * (bar_w + gap);
    const double base = y(std::max(lo, 0.0));
    const double yv = y(b.value);
    s += fmt::format(
        "<rect class=\"bar\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"#4a7ab5\">"
        "<title>{}: {}</title></rect>\n",
        px(x0), px(std::min(yv, base)), bar_w, px(std::fabs(base - yv)), escape(b.label),
        escape(format_number(b.value)));
    if (b.high > b.low) {
      const double cx = x0 + bar_w / 2.0;
      s += fmt::format(
          "<path class=\"error\" d=\"M{0} {1}V{2}M{3} {1}H{4}M{3} {2}H{4}\" stroke=\"black\" "
          "fill=\"none\"/>\n",
          px(cx), px(y(b.high)), px(y(b.low)), px(cx - 8), px(cx + 8));
    }
    s += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n",
                     px(x0 + bar_w / 2.0), px(std::min(yv, y(b.high)) - 4),
                     escape(format_number(b.value)));
    s += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n",
                     px(x0 + bar_w / 2.0), top + plot_h + 16, escape(b.label));
    if (!b.note.empty())
      s += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"#666\">{}</text>\n",
                       px(x0 + bar_w / 2.0), top + plot_h + 32, escape(b.note));
  }
  s += "</svg>\n";
  return s;
}

std::string heat_map(const HeatMap& m) {
  const int cell_w = 90, cell_h = 34, left = 110, top = 60;
  const int width = left + static_cast<int>(m.cols.size()) * cell_w + 20;
  const int height = top + static_cast<int>(m.rows.size()) * cell_h + 50;
  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
  for (double v : m.values) {
    if (std::isnan(v)) continue;
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  }
  std::string s = header(width, height, m.title);
  s += fmt::format("<text x=\"{}\" y=\"42\" text-anchor=\"middle\">{}</text>\n",
                   left + static_cast<int>(m.cols.size()) * cell_w / 2, escape(m.col_label));
  s += fmt::format("<text x=\"10\" y=\"{}\">{}</text>\n", top - 6, escape(m.row_label));
  for (std::size_t c = 0; c < m.cols.size(); ++c)
    s += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n",
                     left + static_cast<int>(c) * cell_w + cell_w / 2, top - 6, escape(m.cols[c]));
  for (std::size_t r = 0; r < m.rows.size(); ++r) {
    const int y0 = top + static_cast<int>(r) * cell_h;
    s += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\n", left - 8,
                     y0 + cell_h / 2 + 4, escape(m.rows[r]));
    for (std::size_t c = 0; c < m.cols.size(); ++c) {
      const std::size_t i = r * m.cols.size() + c;
      const double v = i < m.values.size() ? m.values[i] : NAN;
      const int x0 = left + static_cast<int>(c) * cell_w;
      if (std::isnan(v)) {
        s += fmt::format(
            "<rect class=\"cell\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" "
            "fill=\"#eee\"/>\n",
            x0, y0, cell_w, cell_h);
        continue;
      }
      // 0 (worst) .. 1 (best): light to dark blue.
      double t = hi > lo ? (v - lo) / (hi - lo) : 0.5;
      if (!m.higher_is_better) t = 1 - t;
      const int shade = static_cast<int>(std::lround(235 - t * 160));
      s += fmt::format(
          "<rect class=\"cell\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" "
          "fill=\"rgb({},{},255)\" stroke=\"white\"/>\n",
          x0, y0, cell_w, cell_h, shade, shade);
      s += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"{}\">{}</text>\n",
                       x0 + cell_w / 2, y0 + cell_h / 2 + 4, t > 0.6 ? "white" : "black",
                       escape(format_number(v)));
    }
  }
  s += fmt::format(
      "<text x=\"10\" y=\"{}\" fill=\"#666\">mean {} over runs; darker is better"
      "</text>\n",
      height - 14, escape(m.unit));
  s += "</svg>\n";
  return s;
}

}  // namespace chimera::workflow::svg
