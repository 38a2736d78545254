// Streaming text for speech: sentences and clauses, reasoning kept apart, the speaker's name.
#include <chimera/banter/speech.hpp>

#include <gtest/gtest.h>

namespace {

using namespace chimera::banter;

std::vector<std::string> split_all(std::string_view text, SplitterOptions o = {},
                                   std::size_t chunk = 1) {
  SentenceSplitter s(o);
  std::vector<std::string> out;
  for (std::size_t i = 0; i < text.size(); i += chunk) {
    for (auto& p : s.push(text.substr(i, chunk))) out.push_back(std::move(p));
  }
  for (auto& p : s.finish()) out.push_back(std::move(p));
  return out;
}

using V = std::vector<std::string>;

TEST(SentenceSplitter, SplitsOnTerminatorsFollowedBySpace) {
  EXPECT_EQ(split_all("Hello there. How are you? Fine!"),
            (V{"Hello there.", "How are you?", "Fine!"}));
}

TEST(SentenceSplitter, SameResultWhateverTheChunking) {
  const std::string text =
      "Mr. Smith paid 3.50 coins. \"Really?\" she asked. Wait... no! J. R. Hartley wrote it.\n"
      "Then (quietly.) he left";
  const V expected = {
      "Mr. Smith paid 3.50 coins.", "\"Really?\"",     "she asked.", "Wait...", "no!",
      "J. R. Hartley wrote it.",    "Then (quietly.)", "he left"};
  for (std::size_t chunk : {1u, 2u, 3u, 7u, 1000u}) {
    EXPECT_EQ(split_all(text, {}, chunk), expected) << "chunk " << chunk;
  }
}

TEST(SentenceSplitter, WaitsForTheCharacterAfterAMark) {
  SentenceSplitter s;
  EXPECT_TRUE(s.push("It is 3.").empty());  // 3.14 or the end of a sentence?
  EXPECT_TRUE(s.push("14 now").empty());
  EXPECT_EQ(s.push(". Next"), (V{"It is 3.14 now."}));
  EXPECT_EQ(s.finish(), (V{"Next"}));
}

TEST(SentenceSplitter, ClosingQuotesStayWithTheirSentence) {
  EXPECT_EQ(split_all("He said \"stop.\" Then ran."), (V{"He said \"stop.\"", "Then ran."}));
  EXPECT_EQ(split_all("“Go!” she said."), (V{"“Go!”", "she said."}));
}

TEST(SentenceSplitter, UnicodeMarks) {
  EXPECT_EQ(split_all("Well… maybe. 好的。走吧！"), (V{"Well…", "maybe.", "好的。", "走吧！"}));
}

TEST(SentenceSplitter, ClauseModeSplitsLongClausesOnly) {
  SplitterOptions o;
  o.mode = SplitMode::clause;
  o.min_clause_chars = 10;
  EXPECT_EQ(split_all("Yes, but the storm is coming, and the boats are out; we wait. Done.", o),
            (V{"Yes, but the storm is coming,", "and the boats are out;", "we wait.", "Done."}));
  EXPECT_EQ(split_all("One thing at a time - then the next, slowly.", o),
            (V{"One thing at a time -", "then the next,", "slowly."}));
  EXPECT_EQ(split_all("It costs 1,000 gold", o), (V{"It costs 1,000 gold"}));
}

TEST(SentenceSplitter, LongTextWithoutMarksIsCutAtASpace) {
  SplitterOptions o;
  o.max_chars = 20;
  const auto out = split_all("aaaa bbbb cccc dddd eeee ffff gggg", o);
  ASSERT_GE(out.size(), 2u);
  for (const auto& p : out) EXPECT_LE(p.size(), 20u) << p;
  std::string joined;
  for (const auto& p : out) joined += (joined.empty() ? "" : " ") + p;
  EXPECT_EQ(joined, "aaaa bbbb cccc dddd eeee ffff gggg");
}

TEST(SentenceSplitter, NothingEmptyIsEmitted) {
  EXPECT_TRUE(split_all("   \n\n  ").empty());
  EXPECT_EQ(split_all("\nHi.\n\nYo"), (V{"Hi.", "Yo"}));
}

TEST(ThinkSplitter, SeparatesReasoningEvenWhenTagsAreSplit) {
  ThinkSplitter t;
  std::string spoken, thinking;
  for (std::string_view piece : {"<thi", "nk>Who is", " this?</th", "ink>\nHello <b>there</b>", "<",
                                 "think", "ing>x</thinking> end"}) {
    auto p = t.push(piece);
    spoken += p.spoken;
    thinking += p.thinking;
  }
  auto p = t.finish();
  spoken += p.spoken;
  thinking += p.thinking;
  EXPECT_EQ(thinking, "Who is this?x");
  EXPECT_EQ(spoken, "\nHello <b>there</b> end");
}

TEST(ThinkSplitter, AnUnfinishedTagIsSpokenText) {
  ThinkSplitter t;
  EXPECT_EQ(t.push("a <thi").spoken, "a ");
  EXPECT_EQ(t.finish().spoken, "<thi");
}

TEST(NamePrefix, DropsTheSpeakersOwnName) {
  NamePrefix n("Old Wick");
  std::string out = n.push(" old w");
  out += n.push("ick: Aye.");
  out += n.finish();
  EXPECT_EQ(out, " Aye.");
  NamePrefix m("Mira");
  EXPECT_EQ(m.push("Mi"), "");
  EXPECT_EQ(m.push("ght be."), "Might be.");
  NamePrefix k("Tor");
  EXPECT_EQ(k.push("To"), "");
  EXPECT_EQ(k.finish(), "To");
}

}  // namespace
