// Conversion-model Thompson sampling: two logistic heads of the shopper's response
// (P(buy | x, offer), P(whole basket | buy, x, offer)) over shared offer x context
// features phi(x, k, c) = [x, c x, c, e_k] (p = 2 d + 1 + K), each with a Gaussian
// (Laplace) posterior updated online by one Newton step per observation; the decision
// maximises the exact value of each offer (the caller's quote of this basket) times the
// sampled response probabilities. The maths and every knob are documented in
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

// Logits are clamped to +-kLogitClamp before the sigmoid (exp stays finite).
inline constexpr double kLogitClamp = 35.0;
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

// Scratch of one caller: means, sds (2 K), sa, sb, phi, u (p each), parts (5).
struct ConvWorkspace {
  std::vector<double> means, sds, sa, sb, phi, u, parts;
  void reset(int64_t K, int64_t p) {
    means.assign(2 * K, 0.0);
    sds.assign(2 * K, 0.0);
    sa.assign(p, 0.0);
    sb.assign(p, 0.0);
    phi.assign(p, 0.0);
    u.assign(p, 0.0);
    parts.assign(5, 0.0);
  }
};

inline double conv_sigmoid(double z) {
  if (z > kLogitClamp) {
    z = kLogitClamp;
  } else if (z < -kLogitClamp) {
    z = -kLogitClamp;
  }
  return 1.0 / (1.0 + std::exp(-z));
}

// The offer-independent parts of the logit moments: [a'Sa, a'Sb, b'Sb, mu.a, mu.b]
// with a = [x, 0, 0, 0], b = [0, x, 1, 0]; sa = S a, sb = S b.
inline void conv_head_moments(const double* mu, const double* S, const double* x, int64_t d,
                              int64_t K, double* sa, double* sb, double* out) {
  const int64_t p = 2 * d + 1 + K;
  for (int64_t i = 0; i < p; ++i) {
    const double* row = S + i * p;
    double s1 = 0.0, s2 = 0.0;
    for (int64_t j = 0; j < d; ++j) {
      s1 += row[j] * x[j];
      s2 += row[d + j] * x[j];
    }
    sa[i] = s1;
    sb[i] = s2 + row[2 * d];
  }
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

// Every eligible offer's logit mean and sd under both heads (means, sds: 2 x K).
inline void conv_moments(const ConvState& s, const uint8_t* mask, const double* x,
                         const double* quotes, ConvWorkspace& w) {
  const int64_t K = s.n_arms, d = s.dim, p = s.p();
  for (int h = 0; h < 2; ++h) {
    const double* mu = s.mu + h * p;
    const double* S = s.Sigma + h * p * p;
    conv_head_moments(mu, S, x, d, K, w.sa.data(), w.sb.data(), w.parts.data());
    const double* parts = w.parts.data();
    for (int64_t k = 0; k < K; ++k) {
      if (!(s.active[k] && (mask == nullptr || mask[k]))) continue;
      double c = quotes[k * kNQuote + kQCutLead];
      if (h == 1) c = quotes[k * kNQuote + kQCutBasket] - quotes[k * kNQuote + kQCutLead];
      const int64_t j = 2 * d + 1 + k;
      const double mean = parts[3] + c * parts[4] + mu[j];
      const double var = parts[0] + 2.0 * c * parts[1] + c * c * parts[2] + 2.0 * w.sa[j] +
                         2.0 * c * w.sb[j] + S[j * p + j];
      w.means[h * K + k] = mean;
      w.sds[h * K + k] = var > 0.0 ? std::sqrt(var) : 0.0;
    }
  }
}

inline double conv_expected_value(double p_buy, double p_basket, const double* quotes,
                                  int64_t k) {
  return p_buy * ((1.0 - p_basket) * quotes[k * kNQuote + kQValueLead] +
                  p_basket * quotes[k * kNQuote + kQValueBasket]);
}

// One Thompson draw (head 0 then head 1, offer by offer), the argmax of expected value
// plus bias, lowest index on ties.
inline int64_t conv_draw(const ConvParams& prm, const ConvState& s, const uint8_t* mask,
                         const double* bias, const double* quotes, const ConvWorkspace& w,
                         Stream& st) {
  const int64_t K = s.n_arms;
  int64_t best = -1;
  double best_v = -std::numeric_limits<double>::infinity();
  for (int64_t k = 0; k < K; ++k) {
    if (!(s.active[k] && (mask == nullptr || mask[k]))) continue;
    const double z0 = w.means[k] + prm.exploration * w.sds[k] * st.normal();
    const double z1 = w.means[K + k] + prm.exploration * w.sds[K + k] * st.normal();
    const double score = conv_expected_value(conv_sigmoid(z0), conv_sigmoid(z1), quotes, k) +
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
  conv_moments(s, mask, x, quotes, w);
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
    conv_moments(s, m, xs + i * d, q, w);
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

// One online Laplace (Newton) step of a logistic head on phi (see the Python module).
inline void conv_head_step(double* mu, double* S, const double* phi, double y, double weight,
                           double* u, int64_t p) {
  double s = 0.0, m = 0.0;
  for (int64_t i = 0; i < p; ++i) {
    const double* row = S + i * p;
    double acc = 0.0;
    for (int64_t j = 0; j < p; ++j) acc += row[j] * phi[j];
    u[i] = acc;
  }
  for (int64_t i = 0; i < p; ++i) {
    s += phi[i] * u[i];
    m += mu[i] * phi[i];
  }
  const double pr = conv_sigmoid(m);
  const double g = weight * pr * (1.0 - pr);
  const double den = 1.0 + g * s;
  const double r = g / den;
  const double step = weight * (y - pr) / den;
  for (int64_t i = 0; i < p; ++i) {
    const double ru = r * u[i];
    double* row = S + i * p;
    for (int64_t j = 0; j < p; ++j) row[j] -= ru * u[j];
    mu[i] += step * u[i];
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
    conv_fill_phi(w.phi.data(), x, cut_lead, arm, d, p);
    conv_head_step(s.mu, s.Sigma, w.phi.data(), outcome > 0 ? 1.0 : 0.0, weight, w.u.data(), p);
    if (outcome > 0) {
      conv_fill_phi(w.phi.data(), x, cut_basket - cut_lead, arm, d, p);
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
  std::vector<uint8_t> all(static_cast<size_t>(K), 1);
  ConvState everything = s;
  everything.active = all.data();
  for (int64_t i = 0; i < n; ++i) {
    const double* q = quotes + i * K * kNQuote;
    conv_moments(everything, nullptr, xs + i * d, q, w);
    for (int64_t k = 0; k < K; ++k) {
      out[i * K + k] = conv_expected_value(conv_sigmoid(w.means[k]), conv_sigmoid(w.means[K + k]),
                                           q, k);
    }
  }
}

}  // namespace promobandit
