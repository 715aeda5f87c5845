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
// Reuse between updates: p (with each arm's posterior mean and sd when it was computed)
// is kept until some eligible arm's posterior mean moved by more than `tolerance` of its
// sd then, or its sd changed by more than `tolerance` of itself. Shifting one score by
// delta of its sd changes any win probability by at most about 0.4 delta (the total
// variation between the two normals it approximates), and in practice by far less; the
// tests hold the error of reused probabilities against 10^6-draw Monte Carlo on the
// current posterior to <= 0.01 along learning runs. Under matching a reused p is still
// exactly the probability of the decision made: the decision is Thompson sampling on a
// slightly older posterior, as every row of a batch is.
// Mirrored operation for operation in python/promobandit/_numba/beta_matching.py.
#pragma once

#include <cmath>
#include <cstdint>

namespace promobandit {

// Mean and sd of Beta(a, b).
inline void beta_mean_sd(double a, double b, double* mean, double* sd) {
  const double s = a + b;
  *mean = a / s;
  *sd = std::sqrt(a * b / (s * s * (s + 1.0)));
}

// True when Beta(a, b) is no longer within `tolerance` of the posterior (mean0, sd0) a
// cache was computed with (see the header comment); sd0 <= 0 means no snapshot.
inline bool beta_moved(double mean0, double sd0, double a, double b, double tolerance) {
  if (!(sd0 > 0.0)) return true;
  double m, sd;
  beta_mean_sd(a, b, &m, &sd);
  return std::fabs(m - mean0) > tolerance * sd0 || std::fabs(sd - sd0) > tolerance * sd0;
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
