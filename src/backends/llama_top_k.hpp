// A draw's candidates, or a greedy draw's choice, from the logits without an entry per token of
// the vocabulary (private header of the in-process engine).
//
// A sampler chain that starts with llama.cpp's top-k sampler fills an array with every token of
// the vocabulary (32,000 and more) and partially sorts it, only for the chain to keep the k
// likeliest. Where those k are unambiguous, they can be found in two passes over the logits that
// write k + 1 entries, and the chain given them already sorted: its top-k sampler then keeps them
// as they are, and every later sampler (top-p, min-p, temperature, the seeded draw) sees exactly
// the array it would have seen. They are ambiguous where two of the k + 1 largest logits are equal
// (llama.cpp's partial sort then keeps, and orders, equal ones as its heap happens to leave
// them) or a logit is NaN: the caller then takes llama.cpp's own path.
//
// A greedy chain's choice is found in one pass (greedy_choice): the first of the largest logits, as
// llama.cpp's greedy sampler picks it, NaN included. chain_choice applies a chain to what either
// gives.
//
// Thread safety: functions of their arguments; top_k_candidates keeps scratch memory per thread.
#pragma once

#include <llama.h>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <functional>
#include <limits>
#include <stdexcept>
#include <vector>

namespace chimera::backends {

// The k largest of logits[0, n) as llama.cpp's top-k sampler leaves them (descending logit,
// p 0), in `out`; false (out unspecified) where that is not unique: two equal logits among the
// k + 1 largest, a NaN, or k outside [1, n).
//
// Two passes. The first takes the largest logit of each block of 32 (four at a time, in vector
// registers) and looks for NaNs; the k + 1-th largest of those maxima (in a large vocabulary, of
// the maxima of groups of blocks) is a bound no larger than the k + 1-th largest logit, since
// k + 1 blocks each hold a logit at least that large. The second looks only into the blocks
// whose maximum reaches the bound (those of about k + 1 blocks or groups), and keeps the k + 1
// largest of their logits in a descending list. Whatever the order they come in, the list ends with
// the k + 1 largest values of the whole vocabulary, and where those are all different, their tokens
// are unique too. Each draw's own thread keeps the block maxima between calls.
inline bool top_k_candidates(const float* logits, int n, int k,
                             std::vector<llama_token_data>& out) {
  if (k < 1 || k >= n) return false;
  const auto keep = static_cast<std::size_t>(k) + 1;  // one more: a tie at the k-th is seen
  constexpr int kBlock = 32;
  using Floats = float __attribute__((vector_size(16)));
  using Mask = int __attribute__((vector_size(16)));

  // 1. Each block's maximum; a NaN anywhere declines (llama.cpp's comparisons would order it as
  // they happen to).
  const int full_blocks = n / kBlock;
  const bool partial = full_blocks * kBlock < n;
  const auto blocks = static_cast<std::size_t>(full_blocks) + (partial ? 1 : 0);
  static thread_local std::vector<float> maxima;
  static thread_local std::vector<float> order;
  maxima.resize(blocks);
  Mask nan = {0, 0, 0, 0};
  for (int b = 0; b < full_blocks; ++b) {
    const float* p = logits + static_cast<std::ptrdiff_t>(b) * kBlock;
    Floats m;
    std::memcpy(&m, p, sizeof m);
    nan |= m != m;
    for (int g = 1; g < kBlock / 4; ++g) {
      Floats x;
      std::memcpy(&x, p + 4 * g, sizeof x);
      nan |= x != x;
      m = x > m ? x : m;
    }
    maxima[static_cast<std::size_t>(b)] = std::max(std::max(m[0], m[1]), std::max(m[2], m[3]));
  }
  if ((nan[0] | nan[1] | nan[2] | nan[3]) != 0) return false;
  if (partial) {
    float m = -std::numeric_limits<float>::infinity();
    for (int t = full_blocks * kBlock; t < n; ++t) {
      if (logits[t] != logits[t]) return false;
      m = std::max(m, logits[t]);
    }
    maxima[blocks - 1] = m;
  }

  // 2. The bound, then the candidates at or above it. A large vocabulary's maxima are taken a
  // few blocks together first (the largest of each group), so that the bound is chosen among
  // about 16 per candidate kept rather than among every block's.
  float bound = -std::numeric_limits<float>::infinity();
  std::size_t group = 1;
  while (blocks / (2 * group) >= 16 * keep) group *= 2;
  const std::size_t groups = (blocks + group - 1) / group;
  if (groups >= keep) {
    order.resize(groups);
    for (std::size_t g = 0; g < groups; ++g) {
      const std::size_t end = std::min(blocks, (g + 1) * group);
      float m = maxima[g * group];
      for (std::size_t b = g * group + 1; b < end; ++b) m = std::max(m, maxima[b]);
      order[g] = m;
    }
    std::nth_element(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(keep - 1),
                     order.end(), std::greater<>());
    bound = order[keep - 1];
  }
  out.clear();
  out.reserve(keep + 1);
  const auto consider = [&](llama_token t) {
    const float x = logits[t];
    if (out.size() == keep && !(x > out.back().logit)) return;  // not a candidate
    // Insertion into the descending list; an equal logit goes after its equals (either way the
    // tie makes the list unusable unless it falls beyond the k + 1 kept).
    std::size_t i = out.size();
    out.push_back({t, x, 0.0f});
    while (i > 0 && out[i - 1].logit < x) {
      out[i] = out[i - 1];
      --i;
    }
    out[i] = {t, x, 0.0f};
    if (out.size() > keep) out.pop_back();
  };
  for (std::size_t b = 0; b < blocks; ++b) {
    if (maxima[b] < bound) continue;
    const int from = static_cast<int>(b) * kBlock;
    const int to = std::min(n, from + kBlock);
    for (int t = from; t < to; ++t) {
      if (!(logits[t] < bound)) consider(t);
    }
  }
  if (out.size() < keep) return false;
  for (std::size_t i = 1; i < out.size(); ++i) {
    if (!(out[i - 1].logit > out[i].logit)) return false;
  }
  out.resize(static_cast<std::size_t>(k));
  return true;
}

// The token llama.cpp's greedy sampler picks from logits[0, n) (n >= 1): the first whose logit
// is larger than every one before it chose, so the first of equal largest ones; a NaN is never
// larger, and a NaN first stays the choice.
inline llama_token greedy_choice(const float* logits, int n) {
  using Floats = float __attribute__((vector_size(16)));
  using Mask = int __attribute__((vector_size(16)));
  constexpr int kGroups = 8;
  llama_token best = 0;
  llama_token t = 1;
  // Blocks of 32 are compared with the best so far four at a time and passed over when none is
  // larger (NaNs compare false, as in the scalar loop); a block with one is looked at in order.
  for (; t + 4 * kGroups <= n; t += 4 * kGroups) {
    const float b = logits[best];
    const Floats bound = {b, b, b, b};
    Mask any = {0, 0, 0, 0};
    for (int g = 0; g < kGroups; ++g) {
      Floats x;
      std::memcpy(&x, logits + t + 4 * g, sizeof x);
      any |= x > bound;
    }
    if ((any[0] | any[1] | any[2] | any[3]) == 0) continue;
    for (int j = 0; j < 4 * kGroups; ++j) {
      if (logits[t + j] > logits[best]) best = t + j;
    }
  }
  for (; t < n; ++t) {
    if (logits[t] > logits[best]) best = t;
  }
  return best;
}

// The token `chain` draws from `candidates`: the chain applied to them (the choice is not
// accepted); throws when the chain selects none.
inline llama_token chain_choice(llama_sampler* chain, llama_token_data_array& candidates) {
  llama_sampler_apply(chain, &candidates);
  if (candidates.selected < 0 || static_cast<std::size_t>(candidates.selected) >= candidates.size) {
    throw std::runtime_error("the sampler chain selected no token");
  }
  return candidates.data[candidates.selected].id;
}

}  // namespace chimera::backends
