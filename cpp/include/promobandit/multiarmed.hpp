// Non-contextual bandits over one table of sufficient statistics.
//
// Every arm keeps (n, s1, s2) = (sum of weights, sum of w*r, sum of w*r^2), so
// Beta-Bernoulli TS, Normal-Inverse-Gamma TS, UCB1, UCB-tuned, epsilon-greedy
// and softmax share one update, one merge (addition) and one decay rule; they
// differ only in how they turn the table into a choice. The batch loops live here
// too (rows over threads, the Thompson propensity loop, update rows, the mask
// cache of action distributions), so cpp/tests/ reaches them and the binding only
// checks, converts and calls. Mirrored operation for operation in
// python/promobandit/_numba/multiarmed.py.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <stdexcept>
#include <utility>
#include <vector>

#include "promobandit/beta_grid.hpp"
#include "promobandit/beta_matching.hpp"
#include "promobandit/parallel.hpp"
#include "promobandit/quadrature.hpp"
#include "promobandit/rng.hpp"
#include "promobandit/state.hpp"

namespace promobandit {

// Hyperparameters; the meaning of p[] depends on the kind:
//   BetaTS: p0 = alpha0, p1 = beta0
//   GaussianTS: p0 = mu0, p1 = kappa0, p2 = a0 (shape), p3 = b0 (rate)
//   UCB1, UCBTuned: p0 = exploration coefficient c
//   EpsilonGreedy: p0 = epsilon, p1 = value assumed for arms never updated
//   Softmax: p0 = temperature, p1 = value assumed for arms never updated
struct MabParams {
  int kind = kBetaTS;
  double decay = 1.0;  // gamma in (0, 1]: all statistics are multiplied by it at every update
  double p[4] = {0, 0, 0, 0};
  int64_t propensity_draws = 0;    // Thompson sampling: posterior draws per estimate (0: NaN)
  int64_t propensity_refresh = 1;  // reuse an estimate for up to this many updates
  uint64_t seed = 0;
  // kPropensityQuadrature: Beta TS propensities exact by quadrature (quadrature.hpp)
  // instead of counted over propensity_draws draws; other kinds always count draws.
  int propensity_method = kPropensityDraws;
  bool first_on_ties = false;  // exact ties to the lowest id instead of at random
  // Beta TS with kPropensityQuadrature only (beta_matching.hpp):
  // matching: choose the arm by inverse CDF from the exact win probabilities (one uniform)
  // instead of drawing K posterior samples; the propensity is then that probability.
  bool matching = false;
  // Reuse cached win probabilities after updates until the first-order bound on their
  // change (beta_matching.hpp) exceeds this absolute probability (0: recompute after
  // every update). Needs MabState::prop_post.
  double propensity_tolerance = 0.0;
};

// Views of arrays owned elsewhere (NumPy). stats is K x 3 row-major.
struct MabState {
  int64_t n_arms = 0;
  double* stats = nullptr;
  uint8_t* active = nullptr;      // 0 for removed arms
  int64_t* counters = nullptr;    // kNumCounters
  double* prop_cache = nullptr;   // K: cached propensities (Thompson sampling)
  uint8_t* prop_mask = nullptr;   // K: eligibility the cache was computed for
  double* prop_post = nullptr;    // K x kBetaPostCols: beta_snapshot rows then, or nullptr
  // Beta TS with kPropensityQuadrature: K x 2, the (alpha, beta) snapshot the node grid of
  // the cached win probabilities is cut for (beta_grid.hpp); nullptr: quad_max_propensities
  double* quad_grid = nullptr;
  BetaGrid* grid = nullptr;  // the incremental columns for quad_grid, or nullptr (fresh)
};

inline bool mab_eligible(const MabState& s, const uint8_t* mask, int64_t a) {
  return s.active[a] != 0 && (mask == nullptr || mask[a] != 0);
}

inline int64_t mab_count_eligible(const MabState& s, const uint8_t* mask) {
  int64_t k = 0;
  for (int64_t a = 0; a < s.n_arms; ++a) k += mab_eligible(s, mask, a) ? 1 : 0;
  return k;
}

// Posterior (or empirical) mean reward of arm a.
inline double mab_expectation(const MabParams& p, const MabState& s, int64_t a) {
  const double n = s.stats[a * 3 + 0];
  const double s1 = s.stats[a * 3 + 1];
  switch (p.kind) {
    case kBetaTS: {
      const double alpha = p.p[0] + s1;
      const double beta = p.p[1] + (n - s1);
      return alpha / (alpha + beta);
    }
    case kGaussianTS:
      return (p.p[1] * p.p[0] + s1) / (p.p[1] + n);
    case kEpsilonGreedy:
    case kSoftmax:
      return n > 0.0 ? s1 / n : p.p[1];
    default:  // UCB family: empirical mean, 0 before the first update
      return n > 0.0 ? s1 / n : 0.0;
  }
}

// One posterior draw of arm a's mean reward (Thompson sampling kinds only).
inline double mab_posterior_draw(const MabParams& p, const MabState& s, int64_t a, Stream& rs) {
  const double n = s.stats[a * 3 + 0];
  const double s1 = s.stats[a * 3 + 1];
  if (p.kind == kBetaTS) {
    return rs.beta(p.p[0] + s1, p.p[1] + (n - s1));
  }
  // Normal-Inverse-Gamma posterior from (n, s1, s2) and prior (mu0, kappa0, a0, b0).
  const double s2 = s.stats[a * 3 + 2];
  const double mu0 = p.p[0], k0 = p.p[1], a0 = p.p[2], b0 = p.p[3];
  const double kn = k0 + n;
  const double mun = (k0 * mu0 + s1) / kn;
  const double an = a0 + 0.5 * n;
  double bn = b0;
  if (n > 0.0) {
    const double mean = s1 / n;
    double ss = s2 - s1 * mean;  // sum of squared deviations
    if (ss < 0.0) ss = 0.0;
    const double dm = mean - mu0;
    bn = b0 + 0.5 * ss + 0.5 * (k0 * n / kn) * (dm * dm);
  }
  const double var = bn / rs.gamma(an);  // sigma^2 ~ InvGamma(an, bn)
  return mun + std::sqrt(var / kn) * rs.normal();
}

// A per-request additive adjustment of each arm's score (e.g. minus a budget
// shadow price times the offer's expected cost); nullptr means none. The same
// expression on every path, so backends agree bit for bit.
inline double bias_of(const double* bias, int64_t a) { return bias ? bias[a] : 0.0; }

// Beta TS: every eligible arm's probability of the largest draw, exact by quadrature
// (quad_max_propensities over the Beta(alpha0 + s1, beta0 + n - s1) + bias scores); 0
// for the others.
inline void mab_beta_quadrature(const MabParams& p, const MabState& s, const uint8_t* mask,
                                const double* bias, double* out) {
  const int64_t K = s.n_arms;
  std::vector<double> a(K), b(K), c(K);
  std::vector<int64_t> arms(K);
  int64_t n = 0;
  for (int64_t k = 0; k < K; ++k) {
    out[k] = 0.0;
    if (!mab_eligible(s, mask, k)) continue;
    const double cnt = s.stats[k * 3 + 0], s1 = s.stats[k * 3 + 1];
    a[n] = p.p[0] + s1;
    b[n] = p.p[1] + (cnt - s1);
    c[n] = bias_of(bias, k);
    arms[n] = k;
    ++n;
  }
  quad_max_propensities(kQuadBeta, a.data(), b.data(), c.data(), arms.data(), n, out);
}

// Draws `draws` rounds of posterior samples (purpose: propensity) and fills
// out[a] = (wins_a + 1) / (draws + K_eligible) for eligible arms, 0 otherwise.
// The add-one smoothing keeps every eligible arm's estimate positive, which
// inverse-propensity estimators need; its bias is at most K / draws. With
// kPropensityQuadrature (Beta TS), the exact values by quadrature instead.
inline void mab_ts_propensities(const MabParams& p, const MabState& s, const uint8_t* mask,
                                const double* bias, uint64_t stream, double* out) {
  if (p.propensity_method == kPropensityQuadrature && p.kind == kBetaTS) {
    mab_beta_quadrature(p, s, mask, bias, out);
    return;
  }
  const int64_t K = s.n_arms;
  int64_t k_elig = 0;
  for (int64_t a = 0; a < K; ++a) {
    out[a] = 0.0;
    k_elig += mab_eligible(s, mask, a) ? 1 : 0;
  }
  Stream rp(p.seed, stream, kPurposePropensity);
  for (int64_t m = 0; m < p.propensity_draws; ++m) {
    TieArgmax am(p.first_on_ties);  // ties (rare for draws) from the same stream
    for (int64_t a = 0; a < K; ++a) {
      if (!mab_eligible(s, mask, a)) continue;
      am.offer(a, mab_posterior_draw(p, s, a, rp) + bias_of(bias, a), rp);
    }
    out[am.best] += 1.0;
  }
  const double denom = static_cast<double>(p.propensity_draws) + static_cast<double>(k_elig);
  for (int64_t a = 0; a < K; ++a) {
    if (mab_eligible(s, mask, a)) out[a] = (out[a] + 1.0) / denom;
  }
}

// Are the cached Beta TS win probabilities computed on the node grid of s.quad_grid?
inline bool mab_uses_grid(const MabParams& p, const MabState& s) {
  return p.kind == kBetaTS && p.propensity_method == kPropensityQuadrature &&
         s.quad_grid != nullptr;
}

// The eligible arms' win probabilities (no bias) on the node grid of snap (K x 2: the
// state's quad_grid, replaced when it does not resolve every live arm, or a copy of it;
// beta_grid.hpp), through s.grid's columns when there is one; the same values without.
inline void mab_beta_grid(const MabParams& p, const MabState& s, const uint8_t* mask, double* snap,
                          double* out) {
  const int64_t K = s.n_arms;
  QuadSmallBuf<double, 64> ab(2 * K);
  QuadSmallBuf<uint8_t, 32> elig(K);
  for (int64_t k = 0; k < K; ++k) {
    const double cnt = s.stats[k * 3 + 0], s1 = s.stats[k * 3 + 1];
    ab[2 * k] = p.p[0] + s1;
    ab[2 * k + 1] = p.p[1] + (cnt - s1);
    elig[k] = mab_eligible(s, mask, k) ? 1 : 0;
  }
  if (s.grid != nullptr) {
    beta_grid_propensities(*s.grid, ab.data(), elig.data(), K, snap, out);
  } else {
    BetaGrid fresh;
    beta_grid_propensities(fresh, ab.data(), elig.data(), K, snap, out);
  }
}

// True when the Beta TS win probabilities may be reused under p.propensity_tolerance:
// no eligible arm's posterior moved beyond it since the cache was filled (beta_drift).
inline bool mab_beta_within_tolerance(const MabParams& p, const MabState& s, const uint8_t* mask) {
  if (!(p.propensity_tolerance > 0.0) || s.prop_post == nullptr || p.kind != kBetaTS ||
      p.propensity_method != kPropensityQuadrature) {
    return false;
  }
  double e = 0.0;
  for (int64_t a = 0; a < s.n_arms; ++a) {
    if (!mab_eligible(s, mask, a)) continue;
    const double cnt = s.stats[a * 3 + 0], s1 = s.stats[a * 3 + 1];
    e += beta_drift(s.prop_post + a * kBetaPostCols, p.p[0] + s1, p.p[1] + (cnt - s1));
  }
  return e <= p.propensity_tolerance;
}

// The cached propensities of every arm for `mask` (no bias), refilled when the eligible
// set changed, or after propensity_refresh updates unless within propensity_tolerance.
inline const double* mab_ts_cached(const MabParams& p, MabState& s, const uint8_t* mask) {
  const int64_t K = s.n_arms;
  const int64_t updates = s.counters[kCtrUpdates];
  const int64_t at = s.counters[kCtrPropensityAt];
  bool valid = at >= 0;
  for (int64_t a = 0; valid && a < K; ++a) {
    valid = s.prop_mask[a] == (mab_eligible(s, mask, a) ? 1 : 0);
  }
  if (valid && updates - at >= p.propensity_refresh) valid = mab_beta_within_tolerance(p, s, mask);
  if (!valid) {
    if (mab_uses_grid(p, s)) {
      mab_beta_grid(p, s, mask, s.quad_grid, s.prop_cache);
    } else {
      mab_ts_propensities(p, s, mask, nullptr, static_cast<uint64_t>(updates), s.prop_cache);
    }
    for (int64_t a = 0; a < K; ++a) s.prop_mask[a] = mab_eligible(s, mask, a) ? 1 : 0;
    s.counters[kCtrPropensityAt] = updates;
    if (s.prop_post != nullptr && p.kind == kBetaTS) {
      for (int64_t a = 0; a < K; ++a) {
        const double cnt = s.stats[a * 3 + 0], s1 = s.stats[a * 3 + 1];
        beta_snapshot(p.p[0] + s1, p.p[1] + (cnt - s1), s.prop_cache[a],
                      s.prop_post + a * kBetaPostCols);
      }
    }
  }
  return s.prop_cache;
}

// Propensity of `arm` under Thompson sampling. Without a bias the estimate is a
// function of (state, eligible set) only, so it is cached and reused for the same
// eligibility for less than propensity_refresh updates; with a bias it is drawn
// afresh (same stream: the policy version).
inline double mab_ts_propensity(const MabParams& p, MabState& s, const uint8_t* mask,
                                const double* bias, int64_t arm) {
  if (p.propensity_draws <= 0) return std::numeric_limits<double>::quiet_NaN();
  if (bias != nullptr) {
    const int64_t K = s.n_arms;
    const int64_t updates = s.counters[kCtrUpdates];
    std::vector<double> tmp(static_cast<size_t>(K));
    mab_ts_propensities(p, s, mask, bias, static_cast<uint64_t>(updates), tmp.data());
    return tmp[static_cast<size_t>(arm)];
  }
  return mab_ts_cached(p, s, mask)[arm];
}

// The eligible arm with the highest mean + bias and the number of eligible arms: the
// greedy choice of epsilon-greedy, and softmax's maximum. Exact ties are broken at
// random from `ties` (see TieArgmax); *argmax gets the argmax with its tie count.
inline std::pair<int64_t, int64_t> mab_greedy(const MabParams& p, const MabState& s,
                                              const uint8_t* mask, const double* bias,
                                              double* best_value, Stream& ties,
                                              TieArgmax* argmax) {
  int64_t k_elig = 0;
  TieArgmax am(p.first_on_ties);
  for (int64_t a = 0; a < s.n_arms; ++a) {
    if (!mab_eligible(s, mask, a)) continue;
    ++k_elig;
    am.offer(a, mab_expectation(p, s, a) + bias_of(bias, a), ties);
  }
  *best_value = am.value;
  *argmax = am;
  return {am.best, k_elig};
}

// UCB score of eligible arm a (+ bias): +inf for an arm never updated, so that every
// arm is played once (in random order) before bounds are trusted.
inline double mab_ucb_score(const MabParams& p, const MabState& s, const double* bias, int64_t a,
                            double log_total) {
  const double n = s.stats[a * 3 + 0];
  if (!(n > 0.0)) return std::numeric_limits<double>::infinity();
  const double mean = s.stats[a * 3 + 1] / n;
  double bonus;
  if (p.kind == kUCB1) {
    bonus = p.p[0] * std::sqrt(2.0 * log_total / n);
  } else {
    double var = s.stats[a * 3 + 2] / n - mean * mean;
    if (var < 0.0) var = 0.0;
    double v = var + std::sqrt(2.0 * log_total / n);
    if (v > 0.25) v = 0.25;
    bonus = p.p[0] * std::sqrt(log_total / n * v);
  }
  return mean + bonus + bias_of(bias, a);
}

// log of the total count over active arms (at least log 1), UCB's ln N.
inline double mab_ucb_log_total(const MabState& s) {
  double total = 0.0;
  for (int64_t a = 0; a < s.n_arms; ++a) {
    if (s.active[a]) total += s.stats[a * 3 + 0];
  }
  return std::log(total > 1.0 ? total : 1.0);
}

// Decision number t among the eligible arms (active and not masked out), without
// touching state: returns the arm and its exact propensity, or NaN for Thompson
// sampling (see mab_select). Rows of a batch can run on any thread. The caller
// guarantees at least one eligible arm.
inline std::pair<int64_t, double> mab_choose(const MabParams& p, const MabState& s,
                                             const uint8_t* mask, const double* bias, uint64_t t) {
  const int64_t K = s.n_arms;
  Stream rs(p.seed, t, kPurposeDecision);
  Stream ties(p.seed, t, kPurposeTie);  // no block is computed unless a tie occurs
  int64_t best = -1;
  double prop = 1.0;
  switch (p.kind) {
    case kBetaTS:
    case kGaussianTS: {
      TieArgmax am(p.first_on_ties);
      for (int64_t a = 0; a < K; ++a) {
        if (!mab_eligible(s, mask, a)) continue;
        am.offer(a, mab_posterior_draw(p, s, a, rs) + bias_of(bias, a), ties);
      }
      best = am.best;
      prop = std::numeric_limits<double>::quiet_NaN();
      break;
    }
    case kUCB1:
    case kUCBTuned: {
      const double log_total = mab_ucb_log_total(s);
      TieArgmax am(p.first_on_ties);
      for (int64_t a = 0; a < K; ++a) {
        if (!mab_eligible(s, mask, a)) continue;
        am.offer(a, mab_ucb_score(p, s, bias, a, log_total), ties);
      }
      best = am.best;
      prop = am.share();
      break;
    }
    case kEpsilonGreedy: {
      double greedy_v;
      TieArgmax gm;
      const auto [greedy, k_elig] = mab_greedy(p, s, mask, bias, &greedy_v, ties, &gm);
      const double eps = p.p[0];
      const double u_explore = rs.uniform();
      const double u_arm = rs.uniform();
      if (u_explore < eps) {
        int64_t j = static_cast<int64_t>(u_arm * static_cast<double>(k_elig));
        if (j >= k_elig) j = k_elig - 1;
        for (int64_t a = 0; a < K; ++a) {
          if (!mab_eligible(s, mask, a)) continue;
          if (j == 0) {
            best = a;
            break;
          }
          --j;
        }
      } else {
        best = greedy;
      }
      // The greedy share goes to the tied maxima equally.
      const bool tied = gm.shares(best, mab_expectation(p, s, best) + bias_of(bias, best));
      prop = eps / static_cast<double>(k_elig) + (tied ? (1.0 - eps) * gm.share() : 0.0);
      break;
    }
    case kSoftmax: {
      const double tau = p.p[0];
      double vmax;
      TieArgmax gm;
      mab_greedy(p, s, mask, bias, &vmax, ties, &gm);
      double z = 0.0;
      for (int64_t a = 0; a < K; ++a) {
        if (!mab_eligible(s, mask, a)) continue;
        z += std::exp((mab_expectation(p, s, a) + bias_of(bias, a) - vmax) / tau);
      }
      const double u = rs.uniform() * z;
      double cum = 0.0;
      int64_t last = -1;
      for (int64_t a = 0; a < K; ++a) {
        if (!mab_eligible(s, mask, a)) continue;
        last = a;
        const double w = std::exp((mab_expectation(p, s, a) + bias_of(bias, a) - vmax) / tau);
        cum += w;
        if (u < cum) {
          best = a;
          prop = w / z;
          break;
        }
      }
      if (best < 0) {  // u rounded up to z: take the last eligible arm
        best = last;
        prop = std::exp((mab_expectation(p, s, best) + bias_of(bias, best) - vmax) / tau) / z;
      }
      break;
    }
    default:
      throw std::invalid_argument("unknown multi-armed policy kind");
  }
  return {best, prop};
}

inline bool mab_is_thompson(const MabParams& p) { return p.kind == kBetaTS || p.kind == kGaussianTS; }

// Beta TS by probability matching (beta_matching.hpp)?
inline bool mab_is_matching(const MabParams& p) {
  return p.matching && p.kind == kBetaTS && p.propensity_method == kPropensityQuadrature;
}

// Decision number t by probability matching from the win probabilities `probs` (K).
inline std::pair<int64_t, double> mab_match(const MabParams& p, const double* probs, int64_t K,
                                            uint64_t t) {
  double prop;
  const int64_t arm = match_draw(probs, K, first_uniform(p.seed, t, kPurposeDecision), &prop);
  return {arm, prop};
}

// One matching decision: the cached probabilities without a bias, fresh ones with it.
inline std::pair<int64_t, double> mab_match_select(const MabParams& p, MabState& s,
                                                   const uint8_t* mask, const double* bias,
                                                   uint64_t t) {
  if (bias == nullptr) return mab_match(p, mab_ts_cached(p, s, mask), s.n_arms, t);
  std::vector<double> probs(static_cast<size_t>(s.n_arms));
  mab_beta_quadrature(p, s, mask, bias, probs.data());
  return mab_match(p, probs.data(), s.n_arms, t);
}

// One decision: mab_choose with the next decision number, plus the Thompson
// sampling propensity (which may fill the cache) and the decision counter.
inline std::pair<int64_t, double> mab_select(const MabParams& p, MabState& s, const uint8_t* mask,
                                             const double* bias) {
  const uint64_t t = static_cast<uint64_t>(s.counters[kCtrDecisions]);
  std::pair<int64_t, double> r;
  if (mab_is_matching(p)) {
    r = mab_match_select(p, s, mask, bias, t);
  } else {
    r = mab_choose(p, s, mask, bias, t);
    if (mab_is_thompson(p)) r.second = mab_ts_propensity(p, s, mask, bias, r.first);
  }
  s.counters[kCtrDecisions] = static_cast<int64_t>(t + 1);
  return r;
}

// The policy's probability of every arm under `mask` (0 for ineligible arms): exact
// for UCB (one-hot), epsilon-greedy and softmax; for Thompson sampling the same
// estimate the propensities use (p.propensity_draws draws, stream = updates), so
// logged propensities and evaluated distributions agree.
inline void mab_action_probabilities(const MabParams& p, const MabState& s, const uint8_t* mask,
                                     const double* bias, double* out) {
  const int64_t K = s.n_arms;
  if (p.kind == kBetaTS || p.kind == kGaussianTS) {
    mab_ts_propensities(p, s, mask, bias, static_cast<uint64_t>(s.counters[kCtrUpdates]), out);
    return;
  }
  for (int64_t a = 0; a < K; ++a) out[a] = 0.0;
  Stream ties(p.seed, 0, kPurposeTie);  // only the maximum's value and tie count are read
  if (p.kind == kUCB1 || p.kind == kUCBTuned) {  // the tied maxima share the choice equally
    const double log_total = mab_ucb_log_total(s);
    TieArgmax am(p.first_on_ties);
    for (int64_t a = 0; a < K; ++a) {
      if (mab_eligible(s, mask, a)) am.offer(a, mab_ucb_score(p, s, bias, a, log_total), ties);
    }
    for (int64_t a = 0; a < K; ++a) {
      if (mab_eligible(s, mask, a) && am.shares(a, mab_ucb_score(p, s, bias, a, log_total))) {
        out[a] = am.share();
      }
    }
    return;
  }
  double vmax;
  TieArgmax gm;
  const auto [greedy, k_elig] = mab_greedy(p, s, mask, bias, &vmax, ties, &gm);
  (void)greedy;
  if (p.kind == kEpsilonGreedy) {
    for (int64_t a = 0; a < K; ++a) {
      if (!mab_eligible(s, mask, a)) continue;
      out[a] = p.p[0] / static_cast<double>(k_elig);
      if (gm.shares(a, mab_expectation(p, s, a) + bias_of(bias, a))) {
        out[a] += (1.0 - p.p[0]) * gm.share();
      }
    }
    return;
  }
  double z = 0.0;  // softmax, same arithmetic as mab_choose
  for (int64_t a = 0; a < K; ++a) {
    if (mab_eligible(s, mask, a)) {
      z += std::exp((mab_expectation(p, s, a) + bias_of(bias, a) - vmax) / p.p[0]);
    }
  }
  for (int64_t a = 0; a < K; ++a) {
    if (mab_eligible(s, mask, a)) {
      out[a] = std::exp((mab_expectation(p, s, a) + bias_of(bias, a) - vmax) / p.p[0]) / z;
    }
  }
}

// Adds one weighted observation; with decay < 1 every arm's statistics are first
// multiplied by the decay (discounted bandits: arms not played regain uncertainty).
inline void mab_update(const MabParams& p, MabState& s, int64_t arm, double reward, double weight) {
  if (p.decay < 1.0) {
    const int64_t n = s.n_arms * 3;
    for (int64_t i = 0; i < n; ++i) s.stats[i] *= p.decay;
  }
  double* row = s.stats + arm * 3;
  row[0] += weight;
  row[1] += weight * reward;
  row[2] += weight * (reward * reward);
  s.counters[kCtrUpdates] += 1;
}

// ---- batches: the loops every caller of a row-wise kernel runs -------------------------
//
// masks and biases are (n, K) row-major or nullptr (every arm eligible, no bias); the
// caller guarantees an eligible arm in every row and n_threads as parallel_for takes it.

// Rows [lo, hi) of a batch: row i is decision number t0 + i, state untouched.
inline void mab_choose_rows(const MabParams& p, const MabState& s, const uint8_t* masks,
                            const double* biases, int64_t lo, int64_t hi, uint64_t t0,
                            int64_t* arms, double* props) {
  const int64_t K = s.n_arms;
  for (int64_t i = lo; i < hi; ++i) {
    auto r = mab_choose(p, s, masks ? masks + i * K : nullptr, biases ? biases + i * K : nullptr,
                        t0 + static_cast<uint64_t>(i));
    arms[i] = r.first;
    props[i] = r.second;
  }
}

// The Thompson sampling propensities of a batch's chosen arms, in row order through
// the one-entry cache, exactly as n single selects fill and reuse it (no update runs
// between the rows, so every row draws on the same stream: the policy version).
inline void mab_ts_propensity_rows(const MabParams& p, MabState& s, const uint8_t* masks,
                                   const double* biases, const int64_t* arms, int64_t n,
                                   double* props) {
  const int64_t K = s.n_arms;
  for (int64_t i = 0; i < n; ++i) {
    props[i] = mab_ts_propensity(p, s, masks ? masks + i * K : nullptr,
                                 biases ? biases + i * K : nullptr, arms[i]);
  }
}

// Probability matching over a batch, bit for bit as n calls of mab_select: without masks
// or biases the probabilities are the cache's (filled at most once) and rows split over
// threads; with biases every row computes its own (rows over threads); with masks only,
// rows run in order through the one-entry cache, as single selects do.
inline void mab_match_rows(const MabParams& p, MabState& s, const uint8_t* masks,
                           const double* biases, int64_t n, int n_threads, uint64_t t0,
                           int64_t* arms, double* props) {
  const int64_t K = s.n_arms;
  if (biases != nullptr) {
    parallel_for(n, n_threads, 2, [&](int64_t lo, int64_t hi, int) {
      std::vector<double> probs(static_cast<size_t>(K));
      for (int64_t i = lo; i < hi; ++i) {
        mab_beta_quadrature(p, s, masks ? masks + i * K : nullptr, biases + i * K, probs.data());
        const auto r = mab_match(p, probs.data(), K, t0 + static_cast<uint64_t>(i));
        arms[i] = r.first;
        props[i] = r.second;
      }
    });
    return;
  }
  if (masks != nullptr) {
    for (int64_t i = 0; i < n; ++i) {
      const auto r = mab_match(p, mab_ts_cached(p, s, masks + i * K), K, t0 + static_cast<uint64_t>(i));
      arms[i] = r.first;
      props[i] = r.second;
    }
    return;
  }
  const MatchCdf cdf(mab_ts_cached(p, s, nullptr), K);
  parallel_for(n, n_threads, 2 * kRowsPerThread, [&](int64_t lo, int64_t hi, int) {
    // the uniforms first, in lanes, into props (overwritten by the propensities below)
    first_uniforms(p.seed, t0 + static_cast<uint64_t>(lo), kPurposeDecision, hi - lo, props + lo);
    for (int64_t i = lo; i < hi; ++i) arms[i] = cdf.draw(props[i], &props[i]);
  });
}

// n decisions, bit for bit the same as n calls of mab_select: the choices are pure
// functions of (state, decision number), so the rows split over threads in any way
// give the same arms; the propensities then go through the cache in row order.
inline void mab_select_batch(const MabParams& p, MabState& s, const uint8_t* masks,
                             const double* biases, int64_t n, int n_threads, int64_t* arms,
                             double* props) {
  const uint64_t t0 = static_cast<uint64_t>(s.counters[kCtrDecisions]);
  if (mab_is_matching(p)) {
    mab_match_rows(p, s, masks, biases, n, n_threads, t0, arms, props);
  } else {
    parallel_for(n, n_threads, 2 * kRowsPerThread, [&](int64_t lo, int64_t hi, int) {
      mab_choose_rows(p, s, masks, biases, lo, hi, t0, arms, props);
    });
    if (mab_is_thompson(p)) mab_ts_propensity_rows(p, s, masks, biases, arms, n, props);
  }
  s.counters[kCtrDecisions] = static_cast<int64_t>(t0 + static_cast<uint64_t>(n));
}

// n updates in row order; weights nullptr means 1 for every row. The caller has
// checked every row, so a batch is applied whole.
inline void mab_update_batch(const MabParams& p, MabState& s, const int64_t* arms,
                             const double* rewards, const double* weights, int64_t n) {
  for (int64_t i = 0; i < n; ++i) mab_update(p, s, arms[i], rewards[i], weights ? weights[i] : 1.0);
}

// (n, K) action distributions into out. Without a bias a row's distribution is a
// pure function of the state and its eligible set, so it is computed once per
// distinct mask row and copied to the others (Beta TS by quadrature: on the node grid
// of the state's quad_grid, as the logged propensities, never changing it); rows with
// a bias are never shared.
inline void mab_action_probabilities_rows(const MabParams& p, const MabState& s,
                                          const uint8_t* masks, const double* biases, int64_t n,
                                          double* out) {
  const int64_t K = s.n_arms;
  std::map<std::vector<uint8_t>, int64_t> seen;  // mask row -> first row computed with it
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t* m = masks ? masks + i * K : nullptr;
    double* o = out + i * K;
    if (biases) {
      mab_action_probabilities(p, s, m, biases + i * K, o);
      continue;
    }
    std::vector<uint8_t> key;
    if (m) key.assign(m, m + K);
    auto it = seen.find(key);
    if (it != seen.end()) {
      std::copy(out + it->second * K, out + (it->second + 1) * K, o);
      continue;
    }
    if (mab_uses_grid(p, s)) {  // the node grid of the logged probabilities, on a copy
      std::vector<double> snap(s.quad_grid, s.quad_grid + 2 * K);
      mab_beta_grid(p, s, m, snap.data(), o);
    } else {
      mab_action_probabilities(p, s, m, nullptr, o);
    }
    seen.emplace(std::move(key), i);
  }
}

// Every arm's posterior (or empirical) mean into out (K).
inline void mab_expectations(const MabParams& p, const MabState& s, double* out) {
  for (int64_t a = 0; a < s.n_arms; ++a) out[a] = mab_expectation(p, s, a);
}

}  // namespace promobandit
