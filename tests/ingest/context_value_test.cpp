// Context values that are numbers are stored as the shortest text of their number, so that a
// float32 setting written out as a double ("0.800000011920929") groups with "0.8". Values that
// are already that text skip the parse and the printing; these tests hold that shortcut to the
// full path on every shape of number it could misjudge.
#include "ingest/internal.hpp"

#include <gtest/gtest.h>

#include <charconv>
#include <string>
#include <vector>

namespace d = chimera::ingest::detail;

namespace {

// What the full path gives: the parsed number's shortest text, or the text itself.
std::string full_path(const std::string& text) {
  double v = 0;
  std::string_view unit;
  if (d::parse_number(text, &v, &unit) && unit.empty()) return d::shortest_number_text(v);
  return text;
}

std::string normalized(const std::string& text) {
  char buf[40];
  return std::string(d::normalize_context_value(text, buf));
}

void expect_same_as_full_path(const std::string& text) {
  EXPECT_EQ(normalized(text), full_path(text)) << "value: " << text;
}

}  // namespace

TEST(ContextValue, IntegersMatchTheFullPath) {
  for (long i = -1000; i <= 1000; ++i) expect_same_as_full_path(std::to_string(i));
  // Around the point where the exponent form becomes shorter ("100000" -> "1e+05").
  for (long base : {9990L, 99990L, 100000L, 120000L, 999990L, 1000000L, 16777210L}) {
    for (long i = base; i < base + 20; ++i) {
      expect_same_as_full_path(std::to_string(i));
      expect_same_as_full_path("-" + std::to_string(i));
    }
  }
  for (const char* s : {"0", "-0", "00", "007", "+5", "5.", ".5", "-", "1e3", "80x"})
    expect_same_as_full_path(s);
}

TEST(ContextValue, DecimalsMatchTheFullPath) {
  std::vector<std::string> values;
  for (const char* s : {"0.6",
                        "0.8",
                        "0.9",
                        "1.1",
                        "0.95",
                        "12.25",
                        "0.05",
                        "0.005",
                        "0.0005",
                        "0.00005",
                        "0.001",
                        "0.0001",
                        "-0.5",
                        "-0.0",
                        "0.10",
                        "1.50",
                        "1.0",
                        "123456.5",
                        "12345.6",
                        "1234.56",
                        "0.123456",
                        "0.1234567",
                        "0.00123456",
                        "99999.9",
                        "0.800000011920929",
                        "0.8999999761581421",
                        "3.14159",
                        "3.141593",
                        "2.7182818"})
    values.emplace_back(s);
  // Every decimal of up to four digits after the point, for a few integer parts.
  for (int ip : {0, 1, 7, 42, 512, 9999}) {
    for (int frac = 1; frac < 10000; frac += 7) {
      for (int width = 1; width <= 4; ++width) {
        std::string f = std::to_string(frac);
        if (static_cast<int>(f.size()) > width) continue;
        values.push_back(std::to_string(ip) + "." + std::string(width - f.size(), '0') + f);
      }
    }
  }
  for (const auto& v : values) {
    expect_same_as_full_path(v);
    expect_same_as_full_path("-" + v);
  }
}

TEST(ContextValue, FloatNoiseIsStillRemoved) {
  EXPECT_EQ(normalized("0.800000011920929"), "0.8");
  EXPECT_EQ(normalized(" 0.6 "), "0.6");
  EXPECT_EQ(normalized("512"), "512");
  EXPECT_EQ(normalized("1.50"), "1.5");
  EXPECT_EQ(normalized("llama3:8b"), "llama3:8b");
}
