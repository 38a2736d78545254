// Record framing must not depend on where the socket happens to split the byte stream.
#include <chimera/http/framing.hpp>

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

namespace {

using chimera::http::FrameStatus;
using chimera::http::NdjsonFramer;
using chimera::http::SseEvent;
using chimera::http::SseFramer;

// Cuts `s` into pieces at random points; about one piece per `mean` bytes, with some empty ones.
std::vector<std::string> random_split(const std::string& s, std::mt19937& rng, int mean) {
  std::vector<std::string> pieces;
  std::uniform_int_distribution<int> len(0, 2 * mean);
  std::size_t i = 0;
  while (i < s.size()) {
    const auto n = std::min<std::size_t>(static_cast<std::size_t>(len(rng)), s.size() - i);
    pieces.push_back(s.substr(i, n));
    i += n;
  }
  return pieces;
}

std::vector<std::string> ndjson_records(const std::vector<std::string>& pieces, bool finish) {
  NdjsonFramer f(1 << 20);
  std::vector<std::string> out;
  auto on = [&](std::string_view r) {
    out.emplace_back(r);
    return true;
  };
  for (const auto& p : pieces) EXPECT_EQ(f.feed(p, on), FrameStatus::ok);
  if (finish) EXPECT_EQ(f.finish(on), FrameStatus::ok);
  return out;
}

struct Ev {
  std::string event, data, id;
  bool operator==(const Ev&) const = default;
};

std::vector<Ev> sse_events(const std::vector<std::string>& pieces) {
  SseFramer f(1 << 20);
  std::vector<Ev> out;
  for (const auto& p : pieces) {
    EXPECT_EQ(
        f.feed(p,
               [&](const SseEvent& e) {
                 out.push_back({std::string(e.event), std::string(e.data), std::string(e.id)});
                 return true;
               }),
        FrameStatus::ok);
  }
  return out;
}

// A stream in Ollama's shape, with multi-byte UTF-8 (2, 3 and 4 bytes), escapes and both line
// endings.
const std::vector<std::string> kRecords = {
    R"({"model":"m","message":{"role":"assistant","content":"Hé"},"done":false})",
    R"({"model":"m","message":{"role":"assistant","content":"llo, 世界 🦙"},"done":false})",
    R"({"model":"m","message":{"role":"assistant","content":"a \"quoted\"\\nline"},"done":false})",
    R"({"model":"m","message":{"role":"assistant","content":"ünïcödé ✓"},"done":false})",
    R"({"model":"m","done":true,"done_reason":"stop","eval_count":4,"eval_duration":1000})",
};

std::string ndjson_stream() {
  std::string s;
  for (std::size_t i = 0; i < kRecords.size(); ++i) {
    s += kRecords[i];
    s += (i % 2 == 0) ? "\r\n" : "\n";
    if (i == 1) s += "\n";  // an empty line, which is skipped
  }
  return s;
}

TEST(NdjsonFramer, WholeStreamGivesEveryRecord) {
  EXPECT_EQ(ndjson_records({ndjson_stream()}, true), kRecords);
}

TEST(NdjsonFramer, ThousandsOfRandomSplitsGiveTheSameRecords) {
  const std::string stream = ndjson_stream();
  std::mt19937 rng(12345);
  for (int trial = 0; trial < 3000; ++trial) {
    const int mean = 1 + trial % 40;
    const auto records = ndjson_records(random_split(stream, rng, mean), true);
    ASSERT_EQ(records, kRecords) << "trial " << trial;
  }
}

TEST(NdjsonFramer, EverySingleSplitPointIncludingInsideUtf8AndCrLf) {
  const std::string stream = ndjson_stream();
  for (std::size_t cut = 0; cut <= stream.size(); ++cut) {
    ASSERT_EQ(ndjson_records({stream.substr(0, cut), stream.substr(cut)}, true), kRecords)
        << "cut at " << cut;
  }
}

TEST(NdjsonFramer, ByteAtATime) {
  const std::string stream = ndjson_stream();
  std::vector<std::string> bytes;
  for (char c : stream) bytes.emplace_back(1, c);
  EXPECT_EQ(ndjson_records(bytes, true), kRecords);
}

TEST(NdjsonFramer, LastLineWithoutNewlineIsKeptAtFinish) {
  EXPECT_EQ(ndjson_records({"{\"a\":1}\n{\"b\":", "2}"}, true),
            (std::vector<std::string>{"{\"a\":1}", "{\"b\":2}"}));
  EXPECT_EQ(ndjson_records({"{\"a\":1}\n{\"b\":", "2}"}, false),
            (std::vector<std::string>{"{\"a\":1}"}));
}

TEST(NdjsonFramer, OverlongRecordIsReportedEvenWhenSplit) {
  NdjsonFramer f(16);
  auto on = [](std::string_view) { return true; };
  EXPECT_EQ(f.feed("0123456789", on), FrameStatus::ok);
  EXPECT_EQ(f.feed("0123456789", on), FrameStatus::too_long);
  NdjsonFramer g(16);
  EXPECT_EQ(g.feed(std::string(40, 'x') + "\n", on), FrameStatus::too_long);
  NdjsonFramer h(16);
  EXPECT_EQ(h.feed(std::string(16, 'x') + "\n", on), FrameStatus::ok);  // exactly the limit
}

TEST(NdjsonFramer, CallbackCanStop) {
  NdjsonFramer f(1024);
  int n = 0;
  EXPECT_EQ(f.feed("a\nb\nc\n", [&](std::string_view) { return ++n < 2; }), FrameStatus::stopped);
  EXPECT_EQ(n, 2);
}

// An SSE stream in llama-server's and OpenAI's shape, plus the corners of the standard: comments,
// multi-line data, event names, ids, CR-only and CRLF line endings, a field without a colon,
// "data:" without a space.
std::string sse_stream() {
  return ": keep-alive comment\r\n"
         "data: {\"choices\":[{\"delta\":{\"content\":\"Hé\"}}]}\r\n\r\n"
         "data: {\"choices\":[{\"delta\":{\"content\":\"世界 🦙\"}}]}\n\n"
         "event: error\rdata: {\"error\":{\"message\":\"boom\"}}\r\r"
         "id: 7\ndata: first line\ndata:second line\n\n"
         "data\n\n"
         "event: ignored-without-data\n\n"
         "retry: 100\ndata: [DONE]\r\n\r\n";
}

const std::vector<Ev> kEvents = {
    {"", R"({"choices":[{"delta":{"content":"Hé"}}]})", ""},
    {"", R"({"choices":[{"delta":{"content":"世界 🦙"}}]})", ""},
    {"error", R"({"error":{"message":"boom"}})", ""},
    {"", "first line\nsecond line", "7"},
    {"", "", "7"},
    {"", "[DONE]", "7"},
};

TEST(SseFramer, WholeStreamGivesEveryEvent) {
  EXPECT_EQ(sse_events({sse_stream()}), kEvents);
}

TEST(SseFramer, ThousandsOfRandomSplitsGiveTheSameEvents) {
  const std::string stream = sse_stream();
  std::mt19937 rng(777);
  for (int trial = 0; trial < 3000; ++trial) {
    const int mean = 1 + trial % 30;
    ASSERT_EQ(sse_events(random_split(stream, rng, mean)), kEvents) << "trial " << trial;
  }
}

TEST(SseFramer, EverySingleSplitPointIncludingBetweenCrAndLf) {
  const std::string stream = sse_stream();
  for (std::size_t cut = 0; cut <= stream.size(); ++cut) {
    ASSERT_EQ(sse_events({stream.substr(0, cut), stream.substr(cut)}), kEvents) << "cut at " << cut;
  }
}

TEST(SseFramer, UnterminatedEventIsNotDispatched) {
  SseFramer f(1024);
  int n = 0;
  EXPECT_EQ(f.feed("data: a\n\ndata: b\n", [&](const SseEvent&) { return ++n, true; }),
            FrameStatus::ok);
  EXPECT_EQ(n, 1);
  EXPECT_TRUE(f.has_unterminated_event());
}

TEST(SseFramer, OverlongEventIsReported) {
  SseFramer f(32);
  auto on = [](const SseEvent&) { return true; };
  EXPECT_EQ(f.feed("data: " + std::string(20, 'x') + "\n", on), FrameStatus::ok);
  EXPECT_EQ(f.feed("data: " + std::string(20, 'x') + "\n", on), FrameStatus::too_long);
  SseFramer g(32);
  EXPECT_EQ(g.feed("data: " + std::string(100, 'x'), on), FrameStatus::too_long);
}

}  // namespace
