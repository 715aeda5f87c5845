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

// The arm drawn by inverse CDF from the K probabilities `prob` (0 for arms that cannot be
// chosen) with the uniform u in [0, 1): the first arm whose cumulative probability
// exceeds u * total (total = their sum, 1 up to rounding and the quadrature's floor).
// *prop gets prob[arm] / total, the probability with which the arm was drawn.
inline int64_t match_draw(const double* prob, int64_t K, double u, double* prop) {
  double total = 0.0;
  int64_t last = -1;
  for (int64_t a = 0; a < K; ++a) {
    if (prob[a] > 0.0) {
      total += prob[a];
      last = a;
    }
  }
  const double target = u * total;
  double cum = 0.0;
  int64_t arm = last;  // u * total rounded up to total: the last arm that can be chosen
  for (int64_t a = 0; a < K; ++a) {
    if (!(prob[a] > 0.0)) continue;
    cum += prob[a];
    if (target < cum) {
      arm = a;
      break;
    }
  }
  *prop = prob[arm] / total;
  return arm;
}

}  // namespace promobandit
