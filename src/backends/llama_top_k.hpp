// A draw's candidates, or a greedy draw's choice, from one pass over the logits (private header
// of the in-process engine).
//
// A sampler chain that starts with llama.cpp's top-k sampler fills an array with every token of
// the vocabulary (32,000 and more) and partially sorts it, only for the chain to keep the k
// likeliest. Where those k are unambiguous, they can be found in one pass that writes k + 1
// entries, and the chain given them already sorted: its top-k sampler then keeps them as they
// are, and every later sampler (top-p, min-p, temperature, the seeded draw) sees exactly the
// array it would have seen. They are ambiguous where two of the k + 1 largest logits are equal
// (llama.cpp's partial sort then keeps, and orders, equal ones as its heap happens to leave
// them) or a logit is NaN: the caller then takes llama.cpp's own path.
//
// A greedy chain's choice is found the same way (greedy_choice): the first of the largest
// logits, as llama.cpp's greedy sampler picks it, NaN included.
//
// Thread safety: pure functions of their arguments.
#pragma once

#include <llama.h>

#include <cstddef>
#include <cstring>
#include <vector>

namespace chimera::backends {

// The k largest of logits[0, n) as llama.cpp's top-k sampler leaves them (descending logit,
// p 0), in `out`; false (out unspecified) where that is not unique: two equal logits among the
// k + 1 largest, a NaN, or k outside [1, n).
inline bool top_k_candidates(const float* logits, int n, int k,
                             std::vector<llama_token_data>& out) {
  if (k < 1 || k >= n) return false;
  const auto keep = static_cast<std::size_t>(k) + 1;  // one more: a tie at the k-th is seen
  out.clear();
  out.reserve(keep + 1);
  const auto consider = [&](llama_token t) {
    const float x = logits[t];
    if (x != x) return false;  // NaN: llama.cpp's comparisons would order it as they happen to
    if (out.size() == keep && !(x > out.back().logit)) return true;  // not a candidate
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
    return true;
  };
  // Logits are compared with the smallest kept four at a time, in vector registers, 32 to a
  // block: nearly every block holds no candidate and no NaN (!(x <= least) is true for both)
  // and is passed over at once; in the others only the groups of four with one are looked at.
  using Floats = float __attribute__((vector_size(16)));
  using Mask = int __attribute__((vector_size(16)));
  constexpr int kGroups = 8;
  llama_token t = 0;
  for (; t + 4 * kGroups <= n; t += 4 * kGroups) {
    if (out.size() < keep) {
      for (int j = 0; j < 4 * kGroups; ++j) {
        if (!consider(t + j)) return false;
      }
      continue;
    }
    const float least = out.back().logit;
    const Floats bound = {least, least, least, least};
    Mask hit[kGroups];
    Mask any = {0, 0, 0, 0};
    for (int g = 0; g < kGroups; ++g) {
      Floats x;
      std::memcpy(&x, logits + t + 4 * g, sizeof x);
      hit[g] = ~(x <= bound);
      any |= hit[g];
    }
    if ((any[0] | any[1] | any[2] | any[3]) == 0) continue;
    for (int g = 0; g < kGroups; ++g) {
      if ((hit[g][0] | hit[g][1] | hit[g][2] | hit[g][3]) == 0) continue;
      for (int j = 0; j < 4; ++j) {
        if (!consider(t + 4 * g + j)) return false;
      }
    }
  }
  for (; t < n; ++t) {
    if (!consider(t)) return false;
  }
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

}  // namespace chimera::backends
