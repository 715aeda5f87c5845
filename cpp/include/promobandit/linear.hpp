// Disjoint linear bandits: LinUCB (Li et al., 2010) and linear Thompson sampling
// (Agrawal & Goyal, 2013), one ridge-regression model per arm.
//
// Per arm: A = lambda*I + sum w x x^T (precision), b = sum w r x, and A^{-1},
// theta = A^{-1} b kept current by Sherman-Morrison rank-one updates, with an
// exact refresh (Cholesky inverse of A) every `refresh_every` updates of that arm
// so rounding cannot drift. Mirrored in python/promobandit/_numba/linear.py.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <utility>

#include "promobandit/linalg.hpp"
#include "promobandit/multiarmed.hpp"  // counter slots
#include "promobandit/rng.hpp"

namespace promobandit {

enum LinKind : int { kLinUCB = 0, kLinTS = 1 };

struct LinParams {
  int kind = kLinUCB;
  double decay = 1.0;          // gamma in (0, 1]; see lin_update
  double exploration = 1.0;    // LinUCB: alpha (width of the bound); LinTS: v (posterior scale)
  double ridge = 1.0;          // lambda: prior precision of every weight
  int64_t refresh_every = 64;  // exact refresh of an arm's inverse after this many of its updates
  int64_t propensity_draws = 0;
  uint64_t seed = 0;
};

struct LinState {
  int64_t n_arms = 0;
  int64_t dim = 0;
  double* A = nullptr;       // K x d x d
  double* A_inv = nullptr;   // K x d x d
  double* b = nullptr;       // K x d
  double* theta = nullptr;   // K x d
  double* n = nullptr;       // K: sum of weights
  int64_t* since_refresh = nullptr;  // K
  uint8_t* active = nullptr;         // K
  int64_t* counters = nullptr;       // kNumCounters
};

// Scratch the caller owns: K means, K variances, d for A^{-1} x, 2 d^2 for inversion.
struct LinScratch {
  double* mean;
  double* var;
  double* u;
  double* work;
};

inline bool lin_eligible(const LinState& s, const uint8_t* mask, int64_t a) {
  return s.active[a] != 0 && (mask == nullptr || mask[a] != 0);
}

// Recomputes A^{-1} and theta of arm a exactly from A and b.
inline void lin_refresh_arm(LinState& s, int64_t a, double* work) {
  const int64_t d = s.dim;
  if (!spd_inverse(s.A + a * d * d, s.A_inv + a * d * d, d, work)) {
    throw std::domain_error("linear bandit: precision matrix lost positive definiteness");
  }
  symv(s.A_inv + a * d * d, s.b + a * d, s.theta + a * d, d);
  s.since_refresh[a] = 0;
}

// mean_a = theta_a . x and var_a = x^T A_a^{-1} x for the eligible arms.
inline void lin_moments(const LinState& s, const uint8_t* mask, const double* x, LinScratch& w) {
  const int64_t d = s.dim;
  for (int64_t a = 0; a < s.n_arms; ++a) {
    if (!lin_eligible(s, mask, a)) continue;
    w.mean[a] = dot(s.theta + a * d, x, d);
    symv(s.A_inv + a * d * d, x, w.u, d);
    const double q = dot(x, w.u, d);
    w.var[a] = q > 0.0 ? q : 0.0;
  }
}

// The LinUCB choice: the highest mean + alpha * sqrt(var) (+ bias), lowest id on ties.
inline int64_t lin_ucb_best(const LinParams& p, const LinState& s, const uint8_t* mask,
                            const double* bias, const LinScratch& w) {
  int64_t best = -1;
  double best_v = -std::numeric_limits<double>::infinity();
  for (int64_t a = 0; a < s.n_arms; ++a) {
    if (!lin_eligible(s, mask, a)) continue;
    const double score = w.mean[a] + p.exploration * std::sqrt(w.var[a]) + bias_of(bias, a);
    if (best < 0 || score > best_v) {
      best = a;
      best_v = score;
    }
  }
  return best;
}

// One Thompson draw: every eligible arm's score theta~.x ~ N(mean, v^2 var) (+ bias),
// drawn in arm order from `rs`; returns the arm with the highest (lowest id on ties).
inline int64_t lin_ts_draw(const LinParams& p, const LinState& s, const uint8_t* mask,
                           const double* bias, const LinScratch& w, Stream& rs) {
  int64_t best = -1;
  double best_v = -std::numeric_limits<double>::infinity();
  for (int64_t a = 0; a < s.n_arms; ++a) {
    if (!lin_eligible(s, mask, a)) continue;
    const double score =
        w.mean[a] + p.exploration * std::sqrt(w.var[a]) * rs.normal() + bias_of(bias, a);
    if (best < 0 || score > best_v) {
      best = a;
      best_v = score;
    }
  }
  return best;
}

// Decision number t for context x (length d), without touching state, so rows of
// a batch can run on any thread (each with its own scratch). The caller
// guarantees an eligible arm.
inline std::pair<int64_t, double> lin_choose(const LinParams& p, const LinState& s,
                                             const uint8_t* mask, const double* bias,
                                             const double* x, uint64_t t, LinScratch& w) {
  lin_moments(s, mask, x, w);
  int64_t best = -1;
  double prop = 1.0;
  if (p.kind == kLinUCB) {
    best = lin_ucb_best(p, s, mask, bias, w);
  } else {
    // theta~ ~ N(theta, v^2 A^{-1}) gives theta~ . x ~ N(mean, v^2 var): draw the
    // score directly, the same decision distribution at O(K) draws instead of O(K d).
    Stream rs(p.seed, t, kPurposeDecision);
    best = lin_ts_draw(p, s, mask, bias, w, rs);
    if (p.propensity_draws <= 0) {
      prop = std::numeric_limits<double>::quiet_NaN();
    } else {
      Stream rp(p.seed, t, kPurposePropensity);
      int64_t wins = 0, k_elig = 0;
      for (int64_t a = 0; a < s.n_arms; ++a) k_elig += lin_eligible(s, mask, a) ? 1 : 0;
      for (int64_t m = 0; m < p.propensity_draws; ++m) {
        wins += (lin_ts_draw(p, s, mask, bias, w, rp) == best) ? 1 : 0;
      }
      // Same add-one smoothing as the multi-armed Thompson estimate.
      prop = (static_cast<double>(wins) + 1.0) /
             (static_cast<double>(p.propensity_draws) + static_cast<double>(k_elig));
    }
  }
  return {best, prop};
}

// The policy's probability of every arm for context x (0 for ineligible arms):
// LinUCB one-hot; LinTS estimated from `draws` draws of the scores on the stream
// (seed, stream, evaluation), as (wins + 1) / (draws + K_eligible).
inline void lin_action_probabilities(const LinParams& p, const LinState& s, const uint8_t* mask,
                                     const double* bias, const double* x, uint64_t stream,
                                     int64_t draws, LinScratch& w, double* out) {
  const int64_t K = s.n_arms;
  lin_moments(s, mask, x, w);
  for (int64_t a = 0; a < K; ++a) out[a] = 0.0;
  if (p.kind == kLinUCB) {
    out[lin_ucb_best(p, s, mask, bias, w)] = 1.0;
    return;
  }
  Stream rp(p.seed, stream, kPurposeEvaluation);
  int64_t k_elig = 0;
  for (int64_t a = 0; a < K; ++a) k_elig += lin_eligible(s, mask, a) ? 1 : 0;
  for (int64_t m = 0; m < draws; ++m) out[lin_ts_draw(p, s, mask, bias, w, rp)] += 1.0;
  const double denom = static_cast<double>(draws) + static_cast<double>(k_elig);
  for (int64_t a = 0; a < K; ++a) {
    if (lin_eligible(s, mask, a)) out[a] = (out[a] + 1.0) / denom;
  }
}

// One decision with the next decision number.
inline std::pair<int64_t, double> lin_select(const LinParams& p, LinState& s, const uint8_t* mask,
                                             const double* bias, const double* x, LinScratch& w) {
  const uint64_t t = static_cast<uint64_t>(s.counters[kCtrDecisions]);
  auto r = lin_choose(p, s, mask, bias, x, t, w);
  s.counters[kCtrDecisions] = static_cast<int64_t>(t + 1);
  return r;
}

// Adds one weighted observation (x, r) to arm `arm`. With decay < 1 every arm
// forgets first: A <- gamma*A + (1-gamma)*lambda*I, b <- gamma*b, n <- gamma*n (the
// prior keeps its weight), and every arm is refreshed exactly, O(K d^3).
inline void lin_update(const LinParams& p, LinState& s, int64_t arm, double reward,
                       const double* x, double weight, LinScratch& w) {
  const int64_t d = s.dim;
  const int64_t K = s.n_arms;
  if (p.decay < 1.0) {
    const double g = p.decay;
    const double shrink = (1.0 - g) * p.ridge;
    for (int64_t a = 0; a < K; ++a) {
      double* A = s.A + a * d * d;
      for (int64_t i = 0; i < d * d; ++i) A[i] *= g;
      for (int64_t i = 0; i < d; ++i) A[i * d + i] += shrink;
      for (int64_t i = 0; i < d; ++i) s.b[a * d + i] *= g;
      s.n[a] *= g;
    }
  }
  double* A = s.A + arm * d * d;
  double* Ai = s.A_inv + arm * d * d;
  double* b = s.b + arm * d;
  for (int64_t i = 0; i < d; ++i) {
    const double wx = weight * x[i];
    for (int64_t j = 0; j < d; ++j) A[i * d + j] += wx * x[j];
    b[i] += wx * reward;
  }
  s.n[arm] += weight;
  if (p.decay < 1.0) {
    for (int64_t a = 0; a < K; ++a) lin_refresh_arm(s, a, w.work);
  } else {
    s.since_refresh[arm] += 1;
    if (s.since_refresh[arm] >= p.refresh_every) {
      lin_refresh_arm(s, arm, w.work);
    } else {
      // Sherman-Morrison: (A + w x x^T)^{-1} = A^{-1} - w u u^T / (1 + w x.u), u = A^{-1} x.
      symv(Ai, x, w.u, d);
      const double c = weight / (1.0 + weight * dot(x, w.u, d));
      for (int64_t i = 0; i < d; ++i) {
        const double cu = c * w.u[i];
        for (int64_t j = 0; j < d; ++j) Ai[i * d + j] -= cu * w.u[j];
      }
      symv(Ai, b, s.theta + arm * d, d);
    }
  }
  s.counters[kCtrUpdates] += 1;
}

}  // namespace promobandit
