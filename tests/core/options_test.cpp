// The option table (options.hpp) drives every reader of options: for every option of the table,
// each file type that takes options accepts its key and the value lands in Options, a value of
// the wrong type is an error naming the file, the line and the key, and an unknown key is an
// error naming the file, the line and the key. The same for the command-line flags, and for the
// files that hold no options (pools, the C ABI's engine configuration): their keys are checked
// by the same reader.
#include "../../apps/chimeraforge/option_flags.hpp"
#include "pool/config_reader.hpp"

#include <chimera/banter/scene_config.hpp>
#include <chimera/core/options.hpp>
#include <chimera/workflow/workflow.hpp>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <type_traits>
#include <vector>

namespace {

namespace fs = std::filesystem;
using namespace chimera;

bool contains(const std::string& s, std::string_view part) {
  return s.find(part) != std::string::npos;
}

// A value within the option's range (and within a scene's stricter ones): 100 for integers,
// half the upper bound for numbers, one stop string.
template <class Spec>
auto good_value(const Spec& spec) {
  using Field = std::remove_cvref_t<decltype(Options{}.*spec.member)>;
  if constexpr (kIsStringsOption<Field>) {
    return std::vector<std::string>{"END"};
  } else if constexpr (kIsNumberOption<Field>) {
    return spec.hi / 2;
  } else {
    return std::clamp<int64_t>(100, spec.lo, spec.hi);
  }
}

template <class Spec>
std::string toml_value(const Spec& spec) {
  const auto v = good_value(spec);
  if constexpr (std::is_same_v<decltype(v), const std::vector<std::string>>) {
    return R"(["END"])";
  } else {
    return fmt::format("{}", v);
  }
}

// True when `o` holds the good value of `spec` (and nothing else is set).
template <class Spec>
::testing::AssertionResult holds_good_value(const Spec& spec, const Options& o) {
  const auto& field = o.*spec.member;
  using Field = std::remove_cvref_t<decltype(field)>;
  int set = 0;
  for_each_set_option(o, [&set](std::string_view, const auto&) { ++set; });
  if (set != 1) return ::testing::AssertionFailure() << set << " options are set, not 1";
  if constexpr (kIsStringsOption<Field>) {
    if (field != good_value(spec)) {
      return ::testing::AssertionFailure()
             << spec.name << " is [" << fmt::format("{}", fmt::join(field, ",")) << "]";
    }
  } else {
    if (!field) return ::testing::AssertionFailure() << spec.name << " is unset";
    if (*field != good_value(spec)) {
      return ::testing::AssertionFailure() << spec.name << " is " << *field;
    }
  }
  return ::testing::AssertionSuccess();
}

// A value of the wrong type for the option: a string where a number or a list is wanted.
template <class Spec>
std::string wrong_toml_value(const Spec& spec) {
  using Field = std::remove_cvref_t<decltype(Options{}.*spec.member)>;
  if constexpr (kIsStringsOption<Field>) return "5";
  return R"("five")";
}

class TempDir {
 public:
  TempDir() : path_(fs::temp_directory_path() / fmt::format("chimera-options-{}", ::getpid())) {
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  fs::path write(const std::string& name, const std::string& text) const {
    const fs::path p = path_ / name;
    std::ofstream(p) << text;
    return p;
  }

 private:
  fs::path path_;
};

// --------------------------------------------------------------------------- the table itself

TEST(OptionTable, NamesAreUniqueAndEachHasDocAndRange) {
  std::vector<std::string_view> names = option_names();
  EXPECT_EQ(names.size(), kOptionCount);
  std::sort(names.begin(), names.end());
  EXPECT_EQ(std::adjacent_find(names.begin(), names.end()), names.end());
  for_each_option([](const auto& spec) {
    EXPECT_NE(std::string_view(spec.doc), "") << spec.name;
    EXPECT_LE(spec.lo, spec.hi) << spec.name;
    EXPECT_TRUE(contains(option_help(spec.name), spec.doc)) << spec.name;
  });
  EXPECT_EQ(option_flag("repeat_penalty"), "--repeat-penalty");
  EXPECT_EQ(option_names({"num_gpu", "num_thread"}).size(), kOptionCount - 2);
}

TEST(OptionTable, ValidateHoldsEveryOptionToItsRange) {
  for_each_option([](const auto& spec) {
    using Field = std::remove_cvref_t<decltype(Options{}.*spec.member)>;
    Options o;
    (o.*spec.member) = Field(good_value(spec));
    EXPECT_EQ(validate(o), "") << spec.name;
    if constexpr (kIsIntegerOption<Field>) {
      if (spec.hi < std::numeric_limits<int>::max()) {
        o.*spec.member = static_cast<typename Field::value_type>(spec.hi + 1);
        EXPECT_TRUE(validate(o).starts_with(fmt::format("{} is {}", spec.name, spec.hi + 1)))
            << validate(o);
      }
    } else if constexpr (kIsNumberOption<Field>) {
      o.*spec.member = spec.hi * 2 + 1;
      EXPECT_TRUE(validate(o).starts_with(spec.name)) << validate(o);
      o.*spec.member = std::numeric_limits<double>::quiet_NaN();
      EXPECT_TRUE(contains(validate(o), "finite")) << validate(o);
    } else {
      o.*spec.member = {""};
      EXPECT_EQ(validate(o), "a stop string is empty");
    }
  });
  Options o;
  o.num_predict = -5;
  EXPECT_EQ(validate(o),
            "num_predict is -5; it must be -1 (no limit), -2 (fill the context) or from 0 to "
            "131072");
}

// ------------------------------------------------------------------- workflow configurations

TEST(OptionFiles, WorkflowConfigurationTakesEveryOption) {
  TempDir dir;
  for_each_option([&](const auto& spec) {
    SCOPED_TRACE(spec.name);
    workflow::WorkflowConfig c;
    std::string error;
    const auto good =
        dir.write("good.toml", fmt::format("[options]\n{} = {}\n", spec.name, toml_value(spec)));
    ASSERT_TRUE(workflow::load_config(good, c, error)) << error;
    EXPECT_TRUE(holds_good_value(spec, c.options));

    const auto wrong = dir.write("wrong.toml", fmt::format("name = \"w\"\n[options]\n{} = {}\n",
                                                           spec.name, wrong_toml_value(spec)));
    EXPECT_FALSE(workflow::load_config(wrong, c, error));
    EXPECT_TRUE(contains(error, fmt::format("{}:3", wrong.string()))) << error;
    EXPECT_TRUE(contains(error, fmt::format("'{}'", spec.name))) << error;

    const auto unknown = dir.write(
        "unknown.toml",
        fmt::format("[options]\n{} = {}\n{}s = 1\n", spec.name, toml_value(spec), spec.name));
    EXPECT_FALSE(workflow::load_config(unknown, c, error));
    EXPECT_TRUE(contains(error, fmt::format("{}:3", unknown.string()))) << error;
    EXPECT_TRUE(contains(error, fmt::format("'{}s'", spec.name))) << error;
  });
}

// Out of range in a file: an error at the key's line, in validate()'s words.
TEST(OptionFiles, OutOfRangeIsAnErrorAtTheKey) {
  TempDir dir;
  workflow::WorkflowConfig c;
  std::string error;
  const auto f = dir.write("range.toml", "[options]\ntemperature = 0.5\nnum_predict = -7\n");
  EXPECT_FALSE(workflow::load_config(f, c, error));
  EXPECT_TRUE(contains(error, f.string() + ":3: num_predict is -7")) << error;
  const auto s = dir.write("stop.toml", "[options]\n\nstop = [\"\"]\n");
  EXPECT_FALSE(workflow::load_config(s, c, error));
  EXPECT_TRUE(contains(error, s.string() + ":3: a stop string is empty")) << error;
}

// ---------------------------------------------------------------------------------- scenes

// A scene's characters, director and [defaults] take the options, less num_gpu and num_thread
// (the engine's), with the scene's stricter ranges for num_ctx and num_predict.
TEST(OptionFiles, SceneTakesEveryOptionButTheEngines) {
  const std::vector<std::string_view> not_in_scenes = {"num_gpu", "num_thread"};
  for_each_option([&](const auto& spec) {
    SCOPED_TRACE(spec.name);
    const bool taken =
        std::find(not_in_scenes.begin(), not_in_scenes.end(), spec.name) == not_in_scenes.end();
    banter::SceneConfig sc;
    std::string error;
    const std::string good =
        fmt::format("[[character]]\nname = \"A\"\n{} = {}\n", spec.name, toml_value(spec));
    if (!taken) {
      EXPECT_FALSE(banter::parse_scene(good, "s.toml", sc, error));
      EXPECT_TRUE(contains(error, fmt::format("s.toml:3: unknown key '{}'", spec.name))) << error;
      return;
    }
    ASSERT_TRUE(banter::parse_scene(good, "s.toml", sc, error)) << error;
    const auto& field = sc.characters.at(0).options.*spec.member;
    if constexpr (kIsStringsOption<std::remove_cvref_t<decltype(field)>>) {
      EXPECT_EQ(field, good_value(spec));
    } else {
      ASSERT_TRUE(field.has_value());
      EXPECT_EQ(*field, good_value(spec));
    }

    for (const char* table : {"[[character]]\nname = \"A\"\n", "[defaults]\n\n"}) {
      const std::string wrong = fmt::format("{}{} = {}\n[[character]]\nname = \"B\"\n", table,
                                            spec.name, wrong_toml_value(spec));
      EXPECT_FALSE(banter::parse_scene(wrong, "s.toml", sc, error));
      EXPECT_TRUE(contains(error, fmt::format("s.toml:3: '{}'", spec.name))) << error;
    }

    const std::string unknown = fmt::format("[[character]]\nname = \"A\"\n{}_x = 1\n", spec.name);
    EXPECT_FALSE(banter::parse_scene(unknown, "s.toml", sc, error));
    EXPECT_TRUE(contains(error, fmt::format("s.toml:3: unknown key '{}_x'", spec.name))) << error;
  });
}

// ------------------------------------------------------- pools and the C ABI's engine file

// Pool files take no options: an option's key in a pool is an unknown key, and a pool's own
// keys are checked for their types, each with the file, the line and the key.
TEST(OptionFiles, PoolFilesCheckTheirKeysWithTheSameReader) {
  std::vector<pool::PoolConfig> pools;
  std::string error;
  const std::string pool = "[[pool]]\nname = \"p\"\n";
  const std::string endpoint = "[[pool.endpoint]]\nurl = \"http://127.0.0.1:1\"\n";
  ASSERT_TRUE(pool::parse_pools(pool + endpoint, "p.toml", pools, error)) << error;
  for_each_option([&](const auto& spec) {
    EXPECT_FALSE(
        pool::parse_pools(fmt::format("{}{} = {}\n{}", pool, spec.name, toml_value(spec), endpoint),
                          "p.toml", pools, error));
    EXPECT_TRUE(contains(error, fmt::format("p.toml:3: unknown key '{}'", spec.name))) << error;
  });
  EXPECT_FALSE(pool::parse_pools(pool + "retries = \"two\"\n" + endpoint, "p.toml", pools, error));
  EXPECT_TRUE(contains(error, "p.toml:3: 'retries' must be an integer")) << error;
  EXPECT_FALSE(
      pool::parse_pools(pool + endpoint + "max_concurrency = 1.5\n", "p.toml", pools, error));
  EXPECT_TRUE(contains(error, "p.toml:5: 'max_concurrency' must be an integer")) << error;
}

// The C ABI's engine configuration is read by the library (chimera_engine_create translates
// what parse_engine_config read).
TEST(OptionFiles, EngineConfigurationIsReadByTheLibrary) {
  pool::detail::EngineFileConfig c;
  std::string error;
  const std::string pools =
      "[[pool]]\nname = \"p\"\n[[pool.endpoint]]\nurl = \"tiny.gguf\"\nbackend = \"llama\"\n";
  ASSERT_TRUE(pool::detail::parse_engine_config(
      "[engine]\nmodel = \"m.gguf\"\nthreads = 3\nio_threads = 2\n" + pools, "engine config", 64, 8,
      c, error))
      << error;
  EXPECT_EQ(c.model, "m.gguf");
  EXPECT_EQ(c.threads, 3);
  EXPECT_EQ(c.io_threads, 2);
  ASSERT_EQ(c.pools.size(), 1u);
  EXPECT_EQ(c.pools[0].name, "p");

  const std::pair<const char*, const char*> bad[] = {
      {"[engine]\nmodel = \"m\"\nthreds = 3\n", "engine config:3: unknown key 'threds'"},
      {"[engine]\n\nthreads = \"3\"\n", "engine config:3: 'threads' must be an integer"},
      {"[engine]\n\nio_threads = 99\n", "engine config:3: 'io_threads' is 99"},
      {"[engine]\n\n[engines]\n", "engine config:3: unknown key 'engines'"},
      {"engine = 5\n", "engine config:1: 'engine' must be a table"},
      {"[engine]\ntemperature = 0.5\n", "engine config:2: unknown key 'temperature'"},
  };
  for (const auto& [text, want] : bad) {
    EXPECT_FALSE(pool::detail::parse_engine_config(text, "engine config", 64, 8, c, error)) << text;
    EXPECT_TRUE(contains(error, want)) << text << "\n" << error;
  }
}

// --------------------------------------------------------------------------------- the CLI

TEST(OptionFlags, EveryOptionIsAFlag) {
  for_each_option([](const auto& spec) {
    SCOPED_TRACE(spec.name);
    CLI::App app;
    Options o;
    cli::add_option_flags(&app, o, {{"num_predict", "-n"}});
    std::vector<std::string> args = {"prog", option_flag(spec.name)};
    const std::string value = toml_value(spec);
    args.push_back(value.starts_with("[") ? "END" : value);
    std::vector<const char*> argv;
    for (const auto& a : args) argv.push_back(a.c_str());
    ASSERT_NO_THROW(app.parse(static_cast<int>(argv.size()), argv.data()));
    EXPECT_TRUE(holds_good_value(spec, o));
    EXPECT_TRUE(contains(app.help(), option_help(spec.name))) << app.help();

    // A value of the wrong type is a usage error naming the flag.
    using Field = std::remove_cvref_t<decltype(o.*spec.member)>;
    if constexpr (!kIsStringsOption<Field>) {
      CLI::App again;
      Options p;
      cli::add_option_flags(&again, p);
      const std::string flag = option_flag(spec.name);
      const char* bad_argv[] = {"prog", flag.c_str(), "five"};
      try {
        again.parse(3, bad_argv);
        ADD_FAILURE() << "'five' was taken";
      } catch (const CLI::ParseError& e) {
        EXPECT_TRUE(contains(e.what(), flag)) << e.what();
      }
    }
  });
  CLI::App app;
  Options o;
  cli::add_option_flags(&app, o, {{"num_predict", "-n"}});
  const char* argv[] = {"prog", "-n", "12", "--stop", "a", "--stop", "b"};
  app.parse(7, argv);
  EXPECT_EQ(o.num_predict, 12);
  EXPECT_EQ(o.stop, (std::vector<std::string>{"a", "b"}));
}

}  // namespace
