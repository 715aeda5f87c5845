// Conversion-model Thompson sampling: two probit heads of the shopper's response
// (P(buy | x, offer), P(whole basket | buy, x, offer)) over shared offer x context
// features phi(x, k, c) = [x, c x, c, e_k] (p = 2 d + 1 + K), each with a Gaussian
// posterior updated online by assumed density filtering (an exact moment match per
// observation); the decision
// maximises the exact value of each offer (the caller's quote of this basket) times the
// response probabilities drawn jointly over the offers (K x K Cholesky per head). The maths and every knob are documented in
// python/promobandit/policies/conversion.py. Mirrored operation for operation in
// python/promobandit/_numba/conversion.py (same loops, same order, same draws).
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "promobandit/rng.hpp"
#include "promobandit/state.hpp"

namespace promobandit {

inline constexpr double kInvSqrt2 = 0.7071067811865476;
inline constexpr double kInvSqrt2Pi = 0.3989422804014327;
// Below this the inverse Mills ratio comes from its asymptotic series (Phi nears underflow).
inline constexpr double kMillsAsymptotic = -30.0;
// The most one observation may shrink the variance along its own direction.
inline constexpr double kMaxShrink = 0.999;
// Quote columns: value if the lead line alone is bought, value if the whole basket is
// (reward units); log price cut of the lead line, of the basket (>= 0).
enum : int { kQValueLead = 0, kQValueBasket = 1, kQCutLead = 2, kQCutBasket = 3, kNQuote = 4 };

struct ConvParams {
  double decay = 1.0;        // forgetting: each update divides both covariances by decay
  double exploration = 1.0;  // v: logits drawn with v times the posterior sd
  int64_t propensity_draws = 0;
  uint64_t seed = 0;
};

struct ConvState {
  int64_t n_arms = 0;  // K
  int64_t dim = 0;     // d
  double* mu = nullptr;     // 2 x p
  double* Sigma = nullptr;  // 2 x p x p
  double* n = nullptr;      // K: sum of update weights
  uint8_t* active = nullptr;
  int64_t* counters = nullptr;
  int64_t p() const { return 2 * dim + 1 + n_arms; }
};

// Scratch of one caller: means, z (2 K), chol (2 K K), sa, sb, phi, u (p each), parts (5).
struct ConvWorkspace {
  std::vector<double> means, z, chol, sa, sb, phi, u, parts, cvec;
  void reset(int64_t K, int64_t p) {
    cvec.assign(K, 0.0);
    means.assign(2 * K, 0.0);
    z.assign(2 * K, 0.0);
    chol.assign(2 * K * K, 0.0);
    sa.assign(p, 0.0);
    sb.assign(p, 0.0);
    phi.assign(p, 0.0);
    u.assign(p, 0.0);
    parts.assign(5, 0.0);
  }
};

// Phi(z), the standard normal CDF: the response probability of a latent score z.
inline double conv_probit(double z) { return 0.5 * std::erfc(-z * kInvSqrt2); }

// N(a) / Phi(a), the inverse Mills ratio; the asymptotic series below kMillsAsymptotic.
inline double conv_mills(double a) {
  if (a < kMillsAsymptotic) {
    const double a2 = a * a;
    return -a / (1.0 - 1.0 / a2 + 3.0 / (a2 * a2));
  }
  return kInvSqrt2Pi * std::exp(-0.5 * a * a) / (0.5 * std::erfc(-a * kInvSqrt2));
}

// The offer-independent parts of the logit moments: [a'Sa, a'Sb, b'Sb, mu.a, mu.b]
// with a = [x, 0, 0, 0], b = [0, x, 1, 0]; sa = S a, sb = S b.
inline void conv_head_moments(const double* mu, const double* S, const double* x, int64_t d,
                              int64_t K, double* sa, double* sb, double* out) {
  const int64_t p = 2 * d + 1 + K;
  // Row by row (Sigma is exactly symmetric): elementwise loops, the same sums in the
  // same order whether or not the compiler vectorises them.
  for (int64_t i = 0; i < p; ++i) {
    sa[i] = 0.0;
    sb[i] = 0.0;
  }
  for (int64_t j = 0; j < d; ++j) {
    const double xj = x[j];
    const double* ra = S + j * p;
    const double* rb = S + (d + j) * p;
    for (int64_t i = 0; i < p; ++i) {
      sa[i] += ra[i] * xj;
      sb[i] += rb[i] * xj;
    }
  }
  const double* rc = S + 2 * d * p;
  for (int64_t i = 0; i < p; ++i) sb[i] += rc[i];
  double asa = 0.0, asb = 0.0, bsb = 0.0, ma = 0.0, mb = 0.0;
  for (int64_t i = 0; i < d; ++i) {
    asa += x[i] * sa[i];
    asb += x[i] * sb[i];
    bsb += x[i] * sb[d + i];
    ma += mu[i] * x[i];
    mb += mu[d + i] * x[i];
  }
  out[0] = asa;
  out[1] = asb;
  out[2] = bsb + sb[2 * d];
  out[3] = ma;
  out[4] = mb + mu[2 * d];
}

// In place: the lower triangle of L (n x n, a covariance) becomes its Cholesky factor;
// a pivot that is not positive gives a zero column (a semi-definite covariance).
inline void conv_cholesky_lower(double* L, int64_t n) {
  for (int64_t j = 0; j < n; ++j) {
    double s = L[j * n + j];
    for (int64_t m = 0; m < j; ++m) s -= L[j * n + m] * L[j * n + m];
    const double piv = s > 0.0 ? std::sqrt(s) : 0.0;
    L[j * n + j] = piv;
    for (int64_t i = j + 1; i < n; ++i) {
      double t = L[i * n + j];
      for (int64_t m = 0; m < j; ++m) t -= L[i * n + m] * L[j * n + m];
      L[i * n + j] = piv > 0.0 ? t / piv : 0.0;
    }
  }
}

// The price cut head h sees for offer k: head 1 the basket's extra log cut over the lead
// line's; head 0 the lead line's cut plus P(whole basket | buy) (at head 1's mean score)
// times that extra cut, the first-order change of the nested choice's inclusive value.
inline double conv_head_cut(const double* quotes, int64_t k, int h, double basket_mean) {
  const double extra = quotes[k * kNQuote + kQCutBasket] - quotes[k * kNQuote + kQCutLead];
  if (h == 1) return extra;
  return quotes[k * kNQuote + kQCutLead] + conv_probit(basket_mean) * extra;
}

// Every offer's score mean (means: 2 x K) and the Cholesky factor of the offers' joint
// score covariance Phi' Sigma Phi (chol: 2 x K x K, lower) under both heads, head 1 first
// (head 0's cut reads its mean). Every offer is included, so the draws do not depend on
// the mask.
inline void conv_moments(const ConvState& s, const double* x, const double* quotes,
                         ConvWorkspace& w) {
  const int64_t K = s.n_arms, d = s.dim, p = s.p();
  for (int hh = 0; hh < 2; ++hh) {
    const int h = 1 - hh;
    const double* mu = s.mu + h * p;
    const double* S = s.Sigma + h * p * p;
    conv_head_moments(mu, S, x, d, K, w.sa.data(), w.sb.data(), w.parts.data());
    const double* parts = w.parts.data();
    const double* sa = w.sa.data();
    const double* sb = w.sb.data();
    double* cvec = w.cvec.data();
    for (int64_t k = 0; k < K; ++k) cvec[k] = conv_head_cut(quotes, k, h, w.means[K + k]);
    double* L = w.chol.data() + h * K * K;
    for (int64_t k = 0; k < K; ++k) {
      const double ck = cvec[k];
      const int64_t jk = 2 * d + 1 + k;
      w.means[h * K + k] = parts[3] + ck * parts[4] + mu[jk];
      for (int64_t m = 0; m <= k; ++m) {
        const double cm = cvec[m];
        const int64_t jm = 2 * d + 1 + m;
        // phi_k' S phi_m with phi = a + c b + e_j (see conv_head_moments)
        L[k * K + m] = parts[0] + cm * parts[1] + sa[jm] + ck * parts[1] + ck * cm * parts[2] +
                       ck * sb[jm] + sa[jk] + cm * sb[jk] + S[jk * p + jm];
      }
    }
    conv_cholesky_lower(L, K);
  }
}

inline double conv_expected_value(double p_buy, double p_basket, const double* quotes,
                                  int64_t k) {
  return p_buy * ((1.0 - p_basket) * quotes[k * kNQuote + kQValueLead] +
                  p_basket * quotes[k * kNQuote + kQValueBasket]);
}

// One joint Thompson draw (K normals for head 0, then K for head 1; logits = mean +
// v L z), the argmax over eligible offers of expected value plus bias, lowest index on ties.
inline int64_t conv_draw(const ConvParams& prm, const ConvState& s, const uint8_t* mask,
                         const double* bias, const double* quotes, ConvWorkspace& w,
                         Stream& st) {
  const int64_t K = s.n_arms;
  double* z = w.z.data();
  for (int64_t i = 0; i < 2 * K; ++i) z[i] = st.normal();
  const double* L0 = w.chol.data();
  const double* L1 = w.chol.data() + K * K;
  int64_t best = -1;
  double best_v = -std::numeric_limits<double>::infinity();
  for (int64_t k = 0; k < K; ++k) {
    if (!(s.active[k] && (mask == nullptr || mask[k]))) continue;
    double z0 = 0.0, z1 = 0.0;
    for (int64_t m = 0; m <= k; ++m) {
      z0 += L0[k * K + m] * z[m];
      z1 += L1[k * K + m] * z[K + m];
    }
    const double l0 = w.means[k] + prm.exploration * z0;
    const double l1 = w.means[K + k] + prm.exploration * z1;
    const double score = conv_expected_value(conv_probit(l0), conv_probit(l1), quotes, k) +
                         (bias == nullptr ? 0.0 : bias[k]);
    if (best < 0 || score > best_v) {
      best = k;
      best_v = score;
    }
  }
  return best;
}

inline int64_t conv_eligible(const ConvState& s, const uint8_t* mask) {
  int64_t n = 0;
  for (int64_t k = 0; k < s.n_arms; ++k) n += (s.active[k] && (mask == nullptr || mask[k]));
  return n;
}

// Decision number t (state untouched): (arm, propensity).
inline std::pair<int64_t, double> conv_choose(const ConvParams& prm, const ConvState& s,
                                              const uint8_t* mask, const double* bias,
                                              const double* x, const double* quotes,
                                              uint64_t t, ConvWorkspace& w) {
  conv_moments(s, x, quotes, w);
  Stream sd(prm.seed, t, kPurposeDecision);
  const int64_t best = conv_draw(prm, s, mask, bias, quotes, w, sd);
  double prop = std::numeric_limits<double>::quiet_NaN();
  if (prm.propensity_draws > 0) {
    Stream sp(prm.seed, t, kPurposePropensity);
    int64_t wins = 0;
    for (int64_t i = 0; i < prm.propensity_draws; ++i) {
      if (conv_draw(prm, s, mask, bias, quotes, w, sp) == best) ++wins;
    }
    prop = (static_cast<double>(wins) + 1.0) /
           (static_cast<double>(prm.propensity_draws) + static_cast<double>(conv_eligible(s, mask)));
  }
  return {best, prop};
}

// n decisions from the next decision number on (rows i: decision t0 + i).
inline void conv_select_batch(const ConvParams& prm, const ConvState& s, const uint8_t* masks,
                              const double* biases, const double* xs, const double* quotes,
                              int64_t n, int64_t* out_arms, double* out_props,
                              ConvWorkspace& w) {
  const int64_t K = s.n_arms, d = s.dim;
  const uint64_t t0 = static_cast<uint64_t>(s.counters[kCtrDecisions]);
  for (int64_t i = 0; i < n; ++i) {
    auto r = conv_choose(prm, s, masks == nullptr ? nullptr : masks + i * K,
                         biases == nullptr ? nullptr : biases + i * K, xs + i * d,
                         quotes + i * K * kNQuote, t0 + static_cast<uint64_t>(i), w);
    out_arms[i] = r.first;
    out_props[i] = r.second;
  }
  s.counters[kCtrDecisions] = static_cast<int64_t>(t0) + n;
}

// Row i: (wins + 1) / (draws + K_eligible) on the evaluation stream i (out: n x K).
inline void conv_action_probabilities(const ConvParams& prm, const ConvState& s,
                                      const uint8_t* masks, const double* biases,
                                      const double* xs, const double* quotes, int64_t n,
                                      int64_t draws, double* out, ConvWorkspace& w) {
  const int64_t K = s.n_arms, d = s.dim;
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t* m = masks == nullptr ? nullptr : masks + i * K;
    const double* b = biases == nullptr ? nullptr : biases + i * K;
    const double* q = quotes + i * K * kNQuote;
    conv_moments(s, xs + i * d, q, w);
    double* o = out + i * K;
    for (int64_t k = 0; k < K; ++k) o[k] = 0.0;
    Stream st(prm.seed, static_cast<uint64_t>(i), kPurposeEvaluation);
    for (int64_t r = 0; r < draws; ++r) o[conv_draw(prm, s, m, b, q, w, st)] += 1.0;
    const double denom = static_cast<double>(draws) + static_cast<double>(conv_eligible(s, m));
    for (int64_t k = 0; k < K; ++k) {
      if (s.active[k] && (m == nullptr || m[k])) o[k] = (o[k] + 1.0) / denom;
    }
  }
}

// One assumed-density-filtering step of a probit head on phi (see the Python module).
inline void conv_head_step(double* mu, double* S, const double* phi, double y, double weight,
                           double* u, int64_t p) {
  double s = 0.0, m = 0.0;
  for (int64_t i = 0; i < p; ++i) u[i] = 0.0;
  for (int64_t j = 0; j < p; ++j) {  // phi is sparse (2 d + 2 nonzeros); Sigma is symmetric
    const double f = phi[j];
    if (f != 0.0) {
      const double* row = S + j * p;
      for (int64_t i = 0; i < p; ++i) u[i] += row[i] * f;
    }
  }
  for (int64_t i = 0; i < p; ++i) {
    s += phi[i] * u[i];
    m += mu[i] * phi[i];
  }
  const double t = y > 0.5 ? 1.0 : -1.0;
  const double var = 1.0 + s;
  const double sd = std::sqrt(var);
  const double a = t * m / sd;
  const double v = conv_mills(a);
  const double w = v * (v + a);
  const double step = weight * t * v / sd;
  double r = weight * w / var;
  if (r * s > kMaxShrink) r = kMaxShrink / s;
  for (int64_t i = 0; i < p; ++i) {
    const double ui = u[i];
    double* row = S + i * p;
    // u_i u_j = u_j u_i exactly: Sigma stays symmetric
    for (int64_t j = 0; j < p; ++j) row[j] -= r * (ui * u[j]);
    mu[i] += step * ui;
  }
}

inline void conv_fill_phi(double* phi, const double* x, double c, int64_t k, int64_t d,
                          int64_t p) {
  for (int64_t i = 0; i < p; ++i) phi[i] = 0.0;
  for (int64_t i = 0; i < d; ++i) {
    phi[i] = x[i];
    phi[d + i] = c * x[i];
  }
  phi[2 * d] = c;
  phi[2 * d + 1 + k] = 1.0;
}

// Learns from n outcomes in order (0 none, 1 lead line, 2 whole basket); cuts: n x 2
// (cut_lead, cut_basket) of the chosen offers. Arguments are checked by the caller.
inline void conv_update_rows(const ConvParams& prm, const ConvState& s, const int64_t* arms,
                             const int64_t* outcomes, const double* xs, const double* cuts,
                             const double* weights, int64_t n, ConvWorkspace& w) {
  const int64_t d = s.dim, p = s.p();
  for (int64_t r = 0; r < n; ++r) {
    const int64_t arm = arms[r], outcome = outcomes[r];
    const double* x = xs + r * d;
    const double weight = weights == nullptr ? 1.0 : weights[r];
    const double cut_lead = cuts[2 * r], cut_basket = cuts[2 * r + 1];
    if (prm.decay < 1.0) {
      const double inv = 1.0 / prm.decay;
      for (int64_t i = 0; i < 2 * p * p; ++i) s.Sigma[i] *= inv;
    }
    const double extra = cut_basket - cut_lead;
    // head 0's cut reads P(whole basket | buy) at head 1's mean before this update
    conv_fill_phi(w.phi.data(), x, extra, arm, d, p);
    double m1 = 0.0;
    for (int64_t i = 0; i < p; ++i) m1 += s.mu[p + i] * w.phi[i];
    conv_fill_phi(w.phi.data(), x, cut_lead + conv_probit(m1) * extra, arm, d, p);
    conv_head_step(s.mu, s.Sigma, w.phi.data(), outcome > 0 ? 1.0 : 0.0, weight, w.u.data(), p);
    if (outcome > 0) {
      conv_fill_phi(w.phi.data(), x, extra, arm, d, p);
      conv_head_step(s.mu + p, s.Sigma + p * p, w.phi.data(), outcome == 2 ? 1.0 : 0.0, weight,
                     w.u.data(), p);
    }
    s.n[arm] += weight;
    s.counters[kCtrUpdates] += 1;
  }
}

// Expected value of every offer at the posterior mean (out: n x K).
inline void conv_expectations(const ConvState& s, const double* xs, const double* quotes,
                              int64_t n, double* out, ConvWorkspace& w) {
  const int64_t K = s.n_arms, d = s.dim;
  for (int64_t i = 0; i < n; ++i) {
    const double* q = quotes + i * K * kNQuote;
    conv_moments(s, xs + i * d, q, w);
    for (int64_t k = 0; k < K; ++k) {
      out[i * K + k] = conv_expected_value(conv_probit(w.means[k]), conv_probit(w.means[K + k]),
                                           q, k);
    }
  }
}

}  // namespace promobandit
