// Scene files and their bounds: every integer is range-checked in its own type before it is
// used (4294967298 is never 2), every number is finite, and what sizes memory (num_ctx, the
// characters, the text) is bounded before anything is loaded.
#include <chimera/banter/scene_config.hpp>

#include <gtest/gtest.h>

#include <limits>
#include <string>

namespace {

using namespace chimera::banter;

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// The error of a scene with these [scene] keys and one character with these keys; "" when it
// parses.
std::string scene_error(const std::string& scene_table, const std::string& character = {}) {
  SceneConfig c;
  std::string error;
  const std::string text =
      "[scene]\n" + scene_table + "\n[[character]]\nname = \"A\"\n" + character + "\n";
  if (parse_scene(text, "s.toml", c, error)) return {};
  EXPECT_FALSE(error.empty());
  return error;
}

TEST(SceneBounds, IntegersAreCheckedBeforeTheyAreNarrowed) {
  // 4294967298 read into an int used to become 2 and pass the range check.
  std::string e = scene_error("lines = 4294967298");
  EXPECT_TRUE(contains(e, "'lines' is 4294967298")) << e;
  EXPECT_TRUE(contains(e, "s.toml:2")) << e;
  e = scene_error("lines = 99999999999");
  EXPECT_TRUE(contains(e, "is 99999999999")) << e;  // not "is 1215752191"
  e = scene_error("max_concurrent = 4294967297");
  EXPECT_TRUE(contains(e, "4294967297")) << e;
  e = scene_error("", "num_ctx = 4294967808");
  EXPECT_TRUE(contains(e, "4294967808")) << e;
  e = scene_error("", "seed = -1");  // a seed takes any int64
  EXPECT_TRUE(e.empty()) << e;
}

TEST(SceneBounds, NumbersMustBeFiniteAndInRange) {
  for (const char* bad :
       {"temperature = nan", "temperature = inf", "temperature = -0.5", "top_p = 7.5",
        "min_p = -inf", "repeat_penalty = nan", "top_k = -5", "num_predict = -5"}) {
    const std::string e = scene_error("", bad);
    const std::string key(bad, std::string(bad).find(' '));
    EXPECT_TRUE(contains(e, key)) << bad << ": " << e;
    EXPECT_TRUE(contains(e, "s.toml:")) << bad << ": " << e;
  }
  const std::string e = scene_error("", "");  // the same scene without a bad key parses
  EXPECT_TRUE(e.empty()) << e;
}

TEST(SceneBounds, TooManyCharactersIsAClearError) {
  // 1,000 characters used to reach llama.cpp as "n_seq_max must be <= 256".
  std::string text = "[scene]\n";
  for (int i = 0; i < 1000; ++i) text += "[[character]]\nname = \"C" + std::to_string(i) + "\"\n";
  SceneConfig c;
  std::string error;
  EXPECT_FALSE(parse_scene(text, "s.toml", c, error));
  EXPECT_TRUE(contains(error, "1000 characters")) << error;
  EXPECT_TRUE(contains(error, std::to_string(kMaxCharacters))) << error;
}

TEST(SceneBounds, AHugePersonaIsRefusedAtOnce) {
  // A 10 MB persona used to take 15 s and 810 MB before an error: now the parser refuses it
  // before anything is tokenized or loaded.
  const std::string e = scene_error("", "persona = \"" + std::string(10 << 20, 'x') + "\"");
  EXPECT_TRUE(contains(e, "'persona'")) << e.substr(0, 300);
  EXPECT_TRUE(contains(e, std::to_string(kMaxSceneTextBytes))) << e.substr(0, 300);
}

TEST(SceneBounds, ValidateSceneHoldsConfigsMadeInCode) {
  SceneConfig sc;
  CharacterConfig c;
  c.name = "A";
  c.options.num_ctx = 1 << 30;  // what the C ABI was given
  sc.characters.push_back(c);
  std::string e = validate_scene(sc);
  EXPECT_TRUE(contains(e, "num_ctx is 1073741824")) << e;
  sc.characters[0].options.num_ctx = 512;
  sc.characters[0].options.temperature = std::numeric_limits<double>::quiet_NaN();
  e = validate_scene(sc);
  EXPECT_TRUE(contains(e, "temperature")) << e;
  sc.characters[0].options.temperature = 0.7;
  EXPECT_EQ(validate_scene(sc), "");
  sc.characters.resize(kMaxCharacters + 1, sc.characters[0]);
  EXPECT_FALSE(validate_scene(sc).empty());
}

TEST(SceneBounds, APlayerLineHasABound) {
  EXPECT_EQ(validate_line("Another round, please."), "");
  const std::string e = validate_line(std::string(10 << 20, 'x'));
  EXPECT_TRUE(contains(e, std::to_string(kMaxLineBytes))) << e;
}

}  // namespace
