// Beta Thompson sampling by probability matching, and when an arm's posterior has moved
// enough that cached win probabilities must be recomputed.
//
// Thompson sampling chooses arm a with probability p_a = P(a's posterior draw (+ bias)
// is the largest), which quad_max_propensities (quadrature.hpp) computes exactly. So one
// uniform u from the decision stream and the inverse CDF of p choose the arm with the
// same distribution as drawing K Beta variates and taking the largest, to the
// quadrature's accuracy, and the logged propensity is exactly the probability with which
// the arm was drawn. While the state is fixed (a batch) p is computed once, and every
// decision costs one uniform and a cumulative search.
//
// Reuse between updates: p is kept, with each arm's posterior mean and sd when it was
// computed and two sensitivity weights, until a first-order bound on the change of any
// win probability exceeds `tolerance` (an absolute probability):
//     E = sum over eligible arms b of  wm_b |mean_b - mean0_b| / sd0_b
//                                    + ws_b |sd_b - sd0_b| / sd0_b.
// Moving arm b's score up by delta raises p_b by about g_b delta and lowers the others
// by as much in total (g_b: the density of X_b - max of the others at 0), so no win
// probability moves by more than g_b delta. With X_b - max ~ N(m, s^2), g_b sd_b <=
// phi(z) and the derivative in log sd_b is <= phi(z) |z|, where z = Phi^-1(p_b); with
// q = min(p_b, 1 - p_b) and zt = sqrt(2 ln(1/q)) >= |z| (Mills' ratio), phi(z) <=
// wm = min(0.4, q (1 + zt)) and phi(z) |z| <= ws = min(0.25, q (1 + zt^2)). Arms far from
// the lead (p ~ 0) or far ahead of the rest (p ~ 1) weigh little, so a learnt state
// reuses p for many updates while a contested one recomputes often. The tests hold the
// error of reused probabilities against 10^6-draw Monte Carlo on the current posterior
// to <= 0.01 along learning runs. Under matching a reused p is still exactly the
// probability of the decision made: the decision is Thompson sampling on a slightly
// older posterior, as every row of a batch is.
// Mirrored operation for operation in python/promobandit/_numba/beta_matching.py.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "promobandit/rng.hpp"

namespace promobandit {

// Mean and sd of Beta(a, b).
inline void beta_mean_sd(double a, double b, double* mean, double* sd) {
  const double s = a + b;
  *mean = a / s;
  *sd = std::sqrt(a * b / (s * s * (s + 1.0)));
}

constexpr int kBetaPostCols = 4;  // a snapshot row: mean0, sd0, wm, ws

// The snapshot row of Beta(a, b) whose win probability is prob (see the header comment).
inline void beta_snapshot(double a, double b, double prob, double* row) {
  beta_mean_sd(a, b, &row[0], &row[1]);
  double q = prob < 1.0 - prob ? prob : 1.0 - prob;
  if (!(q > 0.0)) {
    row[2] = 0.0;
    row[3] = 0.0;
    return;
  }
  const double zt2 = 2.0 * std::log(1.0 / q);
  const double wm = q * (1.0 + std::sqrt(zt2));
  const double ws = q * (1.0 + zt2);
  row[2] = wm < 0.4 ? wm : 0.4;
  row[3] = ws < 0.25 ? ws : 0.25;
}

// Arm b's term of the bound E for its current posterior Beta(a, b); +inf without a
// snapshot (sd0 <= 0).
inline double beta_drift(const double* row, double a, double b) {
  if (!(row[1] > 0.0)) return std::numeric_limits<double>::infinity();
  double m, sd;
  beta_mean_sd(a, b, &m, &sd);
  return row[2] * (std::fabs(m - row[0]) / row[1]) + row[3] * (std::fabs(sd - row[1]) / row[1]);
}

// The first uniform of Stream(seed, stream, purpose), bit for bit, from one Philox block
// (a Stream computes two blocks at once; a matching decision needs only two words).
inline double first_uniform(uint64_t seed, uint64_t stream, uint32_t purpose) {
  uint32_t ctr[4] = {0, purpose, static_cast<uint32_t>(stream),
                     static_cast<uint32_t>(stream >> 32)};
  uint32_t key[2] = {static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32)};
  uint32_t out[4];
  philox4x32_10(ctr, key, out);
  const uint32_t a = out[0] >> 5;  // as Stream::uniform: 27 + 26 bits
  const uint32_t b = out[1] >> 6;
  return (static_cast<double>(a) * 67108864.0 + static_cast<double>(b) + 0.5) *
         (1.0 / 9007199254740992.0);
}

// first_uniform of the streams t0, t0 + 1, ..., t0 + n - 1 into u, bit for bit, eight
// streams at a time in lanes (independent Philox chains the compiler can vectorise and
// the core can overlap: a lone chain waits on its multiplies).
inline void first_uniforms(uint64_t seed, uint64_t t0, uint32_t purpose, int64_t n, double* u) {
  using namespace philox_detail;
  constexpr int L = 8;
  int64_t i = 0;
  for (; i + L <= n; i += L) {
    uint32_t c0[L], c1[L], c2[L], c3[L];
    for (int l = 0; l < L; ++l) {
      const uint64_t t = t0 + static_cast<uint64_t>(i + l);
      c0[l] = 0;
      c1[l] = purpose;
      c2[l] = static_cast<uint32_t>(t);
      c3[l] = static_cast<uint32_t>(t >> 32);
    }
    uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
    for (int r = 0; r < 10; ++r) {
      for (int l = 0; l < L; ++l) {
        const uint64_t p0 = static_cast<uint64_t>(M0) * c0[l];
        const uint64_t p1 = static_cast<uint64_t>(M1) * c2[l];
        const uint32_t n0 = static_cast<uint32_t>(p1 >> 32) ^ c1[l] ^ k0;
        const uint32_t n2 = static_cast<uint32_t>(p0 >> 32) ^ c3[l] ^ k1;
        c1[l] = static_cast<uint32_t>(p1);
        c3[l] = static_cast<uint32_t>(p0);
        c0[l] = n0;
        c2[l] = n2;
      }
      k0 += W0;
      k1 += W1;
    }
    for (int l = 0; l < L; ++l) {
      const uint32_t a = c0[l] >> 5, b = c1[l] >> 6;
      u[i + l] = (static_cast<double>(a) * 67108864.0 + static_cast<double>(b) + 0.5) *
                 (1.0 / 9007199254740992.0);
    }
  }
  for (; i < n; ++i) u[i] = first_uniform(seed, t0 + static_cast<uint64_t>(i), purpose);
}

// The arm drawn by inverse CDF from K probabilities `prob` (0 for arms that cannot be
// chosen) with a uniform u in [0, 1): the first arm whose cumulative probability exceeds
// u * total (total = their sum, 1 up to rounding and the quadrature's floor); its
// propensity is prob[arm] / total, the probability with which it was drawn. Built once
// per probability vector, so a batch's rows each pay only the search.
struct MatchCdf {
  const double* prob = nullptr;
  std::vector<double> cum;  // running sums over the arms with prob > 0, in id order
  std::vector<int64_t> arm;
  double total = 0.0;

  MatchCdf(const double* p, int64_t K) : prob(p) {
    for (int64_t a = 0; a < K; ++a) {
      if (p[a] > 0.0) {
        total += p[a];
        cum.push_back(total);
        arm.push_back(a);
      }
    }
  }

  int64_t draw(double u, double* prop) const {
    const double target = u * total;
    const size_t n = cum.size();
    size_t j = 0;
    while (j + 1 < n && !(target < cum[j])) ++j;  // u * total rounded up: the last arm
    const int64_t a = arm[j];
    *prop = prob[a] / total;
    return a;
  }
};

inline int64_t match_draw(const double* prob, int64_t K, double u, double* prop) {
  return MatchCdf(prob, K).draw(u, prop);
}

}  // namespace promobandit
