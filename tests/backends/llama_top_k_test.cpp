// top_k_candidates (src/backends/llama_top_k.hpp) against llama.cpp's own samplers: where it
// answers, the chain given its candidates draws exactly what it draws from the whole vocabulary.
#include "backends/llama_top_k.hpp"

#include <gtest/gtest.h>
#include <llama.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <random>
#include <vector>

namespace {

using chimera::backends::top_k_candidates;

// Every token a candidate, as llama_sampler_sample's CPU path builds the array.
std::vector<llama_token_data> whole(const std::vector<float>& logits) {
  std::vector<llama_token_data> v(logits.size());
  for (std::size_t t = 0; t < logits.size(); ++t) {
    v[t] = {static_cast<llama_token>(t), logits[t], 0.0f};
  }
  return v;
}

// What llama.cpp's top-k sampler keeps of every token as a candidate.
std::vector<llama_token_data> llamas_top_k(const std::vector<float>& logits, int k) {
  auto all = whole(logits);
  llama_token_data_array a{all.data(), all.size(), -1, false};
  llama_sampler* top_k = llama_sampler_init_top_k(k);
  llama_sampler_apply(top_k, &a);
  llama_sampler_free(top_k);
  return {a.data, a.data + a.size};
}

// The chain the engine builds for a plain completion at a temperature.
llama_sampler* completion_chain(int k, uint32_t seed) {
  llama_sampler* chain = llama_sampler_chain_init(llama_sampler_chain_default_params());
  llama_sampler_chain_add(chain, llama_sampler_init_top_k(k));
  llama_sampler_chain_add(chain, llama_sampler_init_top_p(0.95f, 1));
  llama_sampler_chain_add(chain, llama_sampler_init_min_p(0.05f, 1));
  llama_sampler_chain_add(chain, llama_sampler_init_temp(0.8f));
  llama_sampler_chain_add(chain, llama_sampler_init_dist(seed));
  return chain;
}

std::vector<float> random_logits(std::mt19937& rng, int n, float spread) {
  std::normal_distribution<float> d(0.0f, spread);
  std::vector<float> v(static_cast<std::size_t>(n));
  for (auto& x : v) x = d(rng);
  return v;
}

TEST(TopKCandidates, AreWhatLlamaCppsTopKSamplerKeeps) {
  std::mt19937 rng(7);
  for (const int n : {2, 50, 1000, 32000}) {
    for (const int k : {1, 5, 40, 128}) {
      if (k >= n) continue;
      for (int round = 0; round < 5; ++round) {
        const auto logits = random_logits(rng, n, round == 0 ? 0.01f : 3.0f);
        std::vector<llama_token_data> fast;
        ASSERT_TRUE(top_k_candidates(logits.data(), n, k, fast)) << n << " " << k;
        const auto theirs = llamas_top_k(logits, k);
        ASSERT_EQ(theirs.size(), fast.size());
        for (std::size_t i = 0; i < theirs.size(); ++i) {
          EXPECT_EQ(theirs[i].id, fast[i].id) << "n " << n << " k " << k << " at " << i;
          EXPECT_EQ(theirs[i].logit, fast[i].logit);
          EXPECT_EQ(theirs[i].p, fast[i].p);
        }
      }
    }
  }
}

// The bound from the blocks' maxima must never leave out a candidate, whatever the logits'
// order, the vocabulary's size against the block of 32 (fewer blocks than k + 1, a partial last
// block), and where values repeat: where the answer is given, it is llama.cpp's.
TEST(TopKCandidates, AreLlamaCppsForAnyOrderAndSize) {
  std::mt19937 rng(13);
  int answered = 0;
  for (const int n : {2, 31, 33, 100, 1000, 1025, 32003, 151936}) {
    for (const int k : {1, 7, 40, 128}) {
      if (k >= n) continue;
      for (int shape = 0; shape < 6; ++shape) {
        auto logits = random_logits(rng, n, 3.0f);
        if (shape == 1) std::sort(logits.begin(), logits.end());  // the largest last
        if (shape == 2) std::sort(logits.begin(), logits.end(), std::greater<>());
        if (shape == 3) {  // coarse values: ties, inside the k + 1 or beyond them
          for (auto& x : logits) x = std::round(x * 16.0f) / 16.0f;
        }
        if (shape == 4) {  // every large logit in the last, partial block
          for (int t = n - n % 32; t < n; ++t) logits[static_cast<std::size_t>(t)] += 100.0f;
        }
        if (shape == 5) {  // masked tokens (-inf), as a bias would leave them
          for (std::size_t t = 0; t < logits.size(); t += 3) {
            logits[t] = -std::numeric_limits<float>::infinity();
          }
        }
        std::vector<llama_token_data> fast;
        const bool given = top_k_candidates(logits.data(), n, k, fast);
        if (shape != 3 && shape != 5) {
          ASSERT_TRUE(given) << "n " << n << " k " << k << " shape " << shape;
        }
        if (!given) continue;
        ++answered;
        const auto theirs = llamas_top_k(logits, k);
        ASSERT_EQ(theirs.size(), fast.size());
        for (std::size_t i = 0; i < theirs.size(); ++i) {
          ASSERT_EQ(theirs[i].id, fast[i].id) << "n " << n << " k " << k << " shape " << shape;
          ASSERT_EQ(theirs[i].logit, fast[i].logit);
        }
      }
    }
  }
  EXPECT_GT(answered, 100);
}

TEST(TopKCandidates, GiveTheChainsSeededDrawsExactly) {
  std::mt19937 rng(11);
  for (const uint32_t seed : {1u, 42u, 4242u}) {
    llama_sampler* slow_chain = completion_chain(40, seed);
    llama_sampler* fast_chain = completion_chain(40, seed);
    for (int draw = 0; draw < 200; ++draw) {
      // Nearly uniform logits (a random-weight model's) and peaked ones.
      const auto logits = random_logits(rng, 32000, draw % 2 == 0 ? 0.05f : 4.0f);
      auto all = whole(logits);
      llama_token_data_array slow{all.data(), all.size(), -1, false};
      llama_sampler_apply(slow_chain, &slow);
      std::vector<llama_token_data> cand;
      ASSERT_TRUE(top_k_candidates(logits.data(), 32000, 40, cand));
      llama_token_data_array fast{cand.data(), cand.size(), -1, true};
      llama_sampler_apply(fast_chain, &fast);
      ASSERT_GE(slow.selected, 0);
      ASSERT_GE(fast.selected, 0);
      const llama_token a = slow.data[slow.selected].id;
      const llama_token b = fast.data[fast.selected].id;
      ASSERT_EQ(a, b) << "seed " << seed << " draw " << draw;
      llama_sampler_accept(slow_chain, a);
      llama_sampler_accept(fast_chain, b);
    }
    llama_sampler_free(slow_chain);
    llama_sampler_free(fast_chain);
  }
}

TEST(TopKCandidates, DeclineWhereLlamaCppsOrderIsNotUnique) {
  std::vector<llama_token_data> out;
  std::vector<float> logits(100);
  for (std::size_t i = 0; i < logits.size(); ++i) logits[i] = static_cast<float>(i);

  EXPECT_TRUE(top_k_candidates(logits.data(), 100, 3, out));
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[0].id, 99);
  EXPECT_EQ(out[2].id, 97);

  auto tie_inside = logits;
  tie_inside[98] = 99.0f;  // the first two equal
  EXPECT_FALSE(top_k_candidates(tie_inside.data(), 100, 3, out));

  auto tie_at_the_edge = logits;
  tie_at_the_edge[96] = 97.0f;  // the third and the fourth equal: which one stays is the heap's
  EXPECT_FALSE(top_k_candidates(tie_at_the_edge.data(), 100, 3, out));

  auto tie_beyond = logits;
  tie_beyond[10] = 95.0f;  // equal to the fifth: beyond the k + 1 that decide
  EXPECT_TRUE(top_k_candidates(tie_beyond.data(), 100, 3, out));

  // A NaN anywhere: below the candidates, among them, in the last, partial block of 32.
  for (const std::size_t at : {5u, 70u, 97u, 99u}) {
    auto nan = logits;
    nan[at] = std::numeric_limits<float>::quiet_NaN();
    EXPECT_FALSE(top_k_candidates(nan.data(), 100, 3, out)) << "NaN at " << at;
  }

  auto minus_inf = logits;  // masked tokens are candidates like any other
  minus_inf[99] = -std::numeric_limits<float>::infinity();
  ASSERT_TRUE(top_k_candidates(minus_inf.data(), 100, 3, out));
  EXPECT_EQ(out[0].id, 98);

  EXPECT_FALSE(top_k_candidates(logits.data(), 100, 0, out));
  EXPECT_FALSE(top_k_candidates(logits.data(), 100, 100, out));
}

}  // namespace

namespace {

using chimera::backends::greedy_choice;

llama_token llama_greedy(const std::vector<float>& logits) {
  auto all = whole(logits);
  llama_token_data_array a{all.data(), all.size(), -1, false};
  llama_sampler* greedy = llama_sampler_init_greedy();
  llama_sampler_apply(greedy, &a);
  llama_sampler_free(greedy);
  return all[static_cast<std::size_t>(a.selected)].id;
}

TEST(GreedyChoice, IsWhatLlamaCppsGreedySamplerPicks) {
  std::mt19937 rng(3);
  for (const int n : {1, 3, 31, 32, 33, 1000, 32000}) {
    for (int round = 0; round < 20; ++round) {
      const auto logits = random_logits(rng, n, round % 2 == 0 ? 0.01f : 3.0f);
      EXPECT_EQ(greedy_choice(logits.data(), n), llama_greedy(logits)) << n << " " << round;
    }
  }
  std::vector<float> logits(100, 1.0f);  // all equal: the first
  EXPECT_EQ(greedy_choice(logits.data(), 100), llama_greedy(logits));
  logits[40] = 2.0f;
  logits[70] = 2.0f;  // equal largest: the first of them
  EXPECT_EQ(greedy_choice(logits.data(), 100), 40);
  EXPECT_EQ(llama_greedy(logits), 40);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  auto nan_inside = logits;
  nan_inside[50] = nan;  // never larger
  EXPECT_EQ(greedy_choice(nan_inside.data(), 100), llama_greedy(nan_inside));
  auto nan_first = logits;
  nan_first[0] = nan;  // nothing is larger than it: it stays
  EXPECT_EQ(greedy_choice(nan_first.data(), 100), llama_greedy(nan_first));
  EXPECT_EQ(greedy_choice(nan_first.data(), 100), 0);
}

}  // namespace
