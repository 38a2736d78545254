// Scene files: the shipped examples parse; mistakes are reported with the line and the key.
#include <chimera/banter/scene_config.hpp>

#include <gtest/gtest.h>

#include <filesystem>

namespace {

using namespace chimera::banter;

// CHIMERA_TEST_DATA is <source>/tests/data.
const std::filesystem::path kExamples =
    std::filesystem::path(CHIMERA_TEST_DATA).parent_path().parent_path() / "examples/scenes";

TEST(SceneConfig, ShippedExamplesParse) {
  for (const char* name : {"tavern.toml", "heist.toml"}) {
    SceneConfig c;
    std::string error;
    ASSERT_TRUE(load_scene(kExamples / name, c, error)) << error;
    EXPECT_GE(c.characters.size(), 3u) << name;
    EXPECT_EQ(c.budget_ms, 200);
    for (const auto& ch : c.characters) {
      EXPECT_FALSE(ch.persona.empty());
      ASSERT_TRUE(ch.options.num_ctx.has_value());
      EXPECT_GE(*ch.options.num_ctx, 256);
      EXPECT_LE(*ch.options.num_ctx, 512);
      EXPECT_EQ(ch.placement.model, "tiny");
    }
  }
}

TEST(SceneConfig, DefaultsAndOverrides) {
  SceneConfig c;
  std::string error;
  ASSERT_TRUE(parse_scene(R"(
[scene]
turns = "director"
[defaults]
temperature = 0.5
[[character]]
name = "A"
temperature = 0.9
num_ctx = 512
[[character]]
name = "B"
pool = "p"
[[pool]]
name = "p"
[[pool.endpoint]]
url = "http://127.0.0.1:1"
)",
                          "t.toml", c, error))
      << error;
  EXPECT_EQ(c.turns, TurnPolicy::director);
  EXPECT_EQ(*c.characters[0].options.temperature, 0.9);
  EXPECT_EQ(*c.characters[0].options.num_ctx, 512);
  EXPECT_EQ(*c.characters[1].options.temperature, 0.5);
  EXPECT_EQ(*c.characters[1].options.num_ctx, kDefaultNumCtx);
  EXPECT_EQ(*c.characters[1].options.num_predict, kDefaultNumPredict);
  EXPECT_EQ(c.characters[1].placement.pool, "p");
  EXPECT_EQ(c.pools.size(), 1u);
  EXPECT_FALSE(c.director.prompt.empty());
  EXPECT_EQ(*c.director.options.temperature, 0.0);
}

struct Bad {
  const char* text;
  const char* says;
};

TEST(SceneConfig, MistakesNameTheLineAndTheKey) {
  const Bad cases[] = {
      {"[scene]\nturns = \"chaos\"\n[[character]]\nname = \"A\"\n",
       "t.toml:2: unknown turns 'chaos'"},
      {"[scene]\nbudjet_ms = 5\n", "t.toml:2: unknown key 'budjet_ms' in [scene]"},
      {"[[character]]\nname = \"A\"\nnum_ctx = \"big\"\n",
       "t.toml:3: 'num_ctx' must be an integer"},
      {"[[character]]\nname = \"A\"\nnum_ctx = 8\n", "'num_ctx' is 8; it must be between 64"},
      {"[[character]]\nname = \"A\"\n[[character]]\nname = \"A\"\n",
       "two characters are named 'A'"},
      {"[[character]]\nname = \"Player\"\n", "has the name of the player"},
      {"[scene]\ntitle = \"x\"\n", "no [[character]]"},
      {"[[character]]\npersona = \"x\"\n", "needs a name"},
      {"[scene\n", "t.toml:1:"},
      {"[[character]]\nname = \"A\"\n[[pool]]\nname = \"p\"\n",
       "pool 'p' has no [[pool.endpoint]]"},
      {"[[character]]\nname = \"A\"\n[extra]\n", "unknown key 'extra' in the scene file"},
  };
  for (const auto& b : cases) {
    SceneConfig c;
    std::string error;
    EXPECT_FALSE(parse_scene(b.text, "t.toml", c, error)) << b.text;
    EXPECT_NE(error.find(b.says), std::string::npos) << "got: " << error << "\nwanted: " << b.says;
  }
}

}  // namespace
