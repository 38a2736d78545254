// provenance.hpp against a scratch git repository: a record made from a clean tree says clean,
// one made from a dirty tree says dirty with the hash of its diff, and the object has every key
// bench/README.md promises. Prints the stamp for a dirty tree on stdout when given --print DIR,
// so that tests/bench/test_provenance.py can check that the C++ and Python helpers agree.
#include "provenance.hpp"

#include <boost/json/serialize.hpp>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>

namespace {

namespace fs = std::filesystem;
using chimera::bench::Provenance;

class ScratchRepo : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("chimera-provenance-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    write("a.txt", "one\n");
    ASSERT_EQ(sh("git init -q && git add a.txt && git -c user.name=t -c user.email=t@t "
                 "commit -qm first"),
              0);
  }
  void TearDown() override { fs::remove_all(dir_); }
  void write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ / name) << text;
  }
  int sh(const std::string& cmd) {
    return std::system(("cd '" + dir_.string() + "' && " + cmd + " >/dev/null 2>&1").c_str());
  }
  boost::json::object stamp() {
    char arg0[] = "bench";
    char arg1[] = "--runs";
    char arg2[] = "3";
    char* argv[] = {arg0, arg1, arg2};
    return Provenance(3, argv, dir_.string()).stamp();
  }
  fs::path dir_;
};

TEST_F(ScratchRepo, CleanTreeIsClean) {
  const auto p = stamp();
  const auto& git = p.at("git").as_object();
  EXPECT_EQ(git.at("commit").as_string().size(), 40u);
  EXPECT_FALSE(git.at("dirty").as_bool());
  EXPECT_FALSE(git.contains("diff_sha256"));
  EXPECT_EQ(p.at("command").as_string(), "bench --runs 3");
}

TEST_F(ScratchRepo, DirtyTreeSaysSoWithTheHashOfItsDiff) {
  write("a.txt", "two\n");
  write("new.txt", "untracked\n");
  const auto git = stamp().at("git").as_object();
  EXPECT_TRUE(git.at("dirty").as_bool());
  EXPECT_EQ(git.at("diff_sha256").as_string().size(), 64u);
  EXPECT_EQ(git.at("untracked_files").as_int64(), 1);
  write("a.txt", "three\n");  // another diff, another hash
  EXPECT_NE(stamp().at("git").as_object().at("diff_sha256"), git.at("diff_sha256"));
}

TEST_F(ScratchRepo, EveryPromisedKey) {
  const auto p = stamp();
  for (const char* key : {"schema", "git", "command", "machine", "loadavg_before", "loadavg_after",
                          "build", "started", "written"}) {
    EXPECT_TRUE(p.contains(key)) << key;
  }
  for (const char* key : {"cpu", "cores", "memory_bytes"}) {
    EXPECT_TRUE(p.at("machine").as_object().contains(key)) << key;
  }
  for (const char* key : {"compiler", "build_type", "flags", "llama_cpp_commit"}) {
    EXPECT_TRUE(p.at("build").as_object().contains(key)) << key;
  }
  EXPECT_EQ(p.at("loadavg_before").as_array().size(), 3u);
}

TEST_F(ScratchRepo, ModelHashIsTheWholeFilesSha256) {
  write("m.gguf", "abc");
  char arg0[] = "bench";
  char* argv[] = {arg0};
  Provenance prov(1, argv, dir_.string());
  prov.set_model((dir_ / "m.gguf").string());
  const auto model = prov.stamp().at("model").as_object();
  EXPECT_EQ(model.at("bytes").as_int64(), 3);
  // SHA-256("abc"), FIPS 180-2 appendix B.1
  EXPECT_EQ(model.at("hash").as_string(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 3 && std::string(argv[1]) == "--print") {  // for tests/bench/test_provenance.py
    std::cout << boost::json::serialize(Provenance(argc, argv, argv[2]).stamp()) << "\n";
    return 0;
  }
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
