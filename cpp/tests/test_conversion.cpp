// The conversion-model kernel (conversion.hpp) on its own: the Cholesky factor, the
// probit and the inverse Mills ratio, the posterior update's invariants, determinism
// of decisions and their independence from the propensity draws.
#include <cmath>
#include <cstdint>
#include <vector>

#include "check.hpp"
#include "promobandit/conversion.hpp"

using namespace promobandit;
using promobandit::test::same_bits;

namespace {

struct Policy {
  int64_t K, d, p;
  std::vector<double> mu, Sigma, n;
  std::vector<uint8_t> active;
  std::vector<int64_t> counters;
  ConvState s;
  ConvWorkspace w;

  Policy(int64_t K_, int64_t d_, uint64_t seed) : K(K_), d(d_), p(2 * d_ + 1 + K_) {
    mu.assign(2 * p, 0.0);
    Sigma.assign(2 * p * p, 0.0);
    for (int h = 0; h < 2; ++h) {
      for (int64_t i = 0; i < p; ++i) Sigma[h * p * p + i * p + i] = i < d ? 1.0 : 25.0;
      for (int64_t k = 0; k < K; ++k) mu[h * p + 2 * d + 1 + k] = -1.0;
    }
    n.assign(K, 0.0);
    active.assign(K, 1);
    counters.assign(kNumCounters, 0);
    counters[kCtrSeed] = static_cast<int64_t>(seed);
    s = ConvState{K, d, mu.data(), Sigma.data(), n.data(), active.data(), counters.data()};
    w.reset(K, p);
  }
};

void quotes_of(int64_t K, int64_t i, std::vector<double>& q) {
  q.assign(K * kNQuote, 0.0);
  for (int64_t k = 0; k < K; ++k) {
    q[k * kNQuote + kQValueLead] = 1.0 - 0.05 * static_cast<double>(k) + 0.01 * (i % 3);
    q[k * kNQuote + kQValueBasket] = 1.8 - 0.08 * static_cast<double>(k);
    q[k * kNQuote + kQCutLead] = 0.04 * static_cast<double>(k);
    q[k * kNQuote + kQCutBasket] = 0.05 * static_cast<double>(k);
  }
}

}  // namespace

int main() {
  // Cholesky of [[4, 2], [2, 3]] is [[2, 0], [1, sqrt(2)]]; a singular one gives a zero column.
  double a[4] = {4.0, 0.0, 2.0, 3.0};
  conv_cholesky_lower(a, 2);
  CHECK(a[0] == 2.0 && a[2] == 1.0 && std::fabs(a[3] - std::sqrt(2.0)) < 1e-15);
  double sing[4] = {1.0, 0.0, 1.0, 1.0};
  conv_cholesky_lower(sing, 2);
  CHECK(sing[0] == 1.0 && sing[2] == 1.0 && sing[3] == 0.0);

  // Phi and the inverse Mills ratio, and the series below -30 meeting the direct formula.
  CHECK(conv_probit(0.0) == 0.5);
  CHECK(std::fabs(conv_probit(1.0) - 0.8413447460685429) < 1e-15);
  CHECK(std::fabs(conv_mills(0.0) - 0.7978845608028654) < 1e-15);
  CHECK(std::fabs(conv_mills(-29.999) / conv_mills(-30.001) - 1.0) < 1e-4);
  CHECK(std::isfinite(conv_mills(-1e6)) && conv_mills(-1e6) > 0.0);

  const int64_t K = 5, d = 3, rows = 400;
  std::vector<double> xs(rows * d), q;
  for (int64_t i = 0; i < rows * d; ++i) xs[i] = std::sin(0.7 * static_cast<double>(i));

  // Two policies with one seed make the same decisions; propensity draws change none.
  Policy one(K, d, 9), two(K, d, 9);
  ConvParams plain{1.0, 0.5, 0, 9}, est{1.0, 0.5, 50, 9};
  for (int64_t i = 0; i < rows; ++i) {
    quotes_of(K, i, q);
    auto r1 = conv_choose(plain, one.s, nullptr, nullptr, xs.data() + i * d, q.data(),
                          static_cast<uint64_t>(i), one.w);
    auto r2 = conv_choose(est, two.s, nullptr, nullptr, xs.data() + i * d, q.data(),
                          static_cast<uint64_t>(i), two.w);
    CHECK(r1.first == r2.first);
    CHECK(std::isnan(r1.second) && r2.second > 0.0 && r2.second <= 1.0);
    const int64_t arm = r1.first, outcome = i % 3;
    const double cuts[2] = {q[arm * kNQuote + kQCutLead], q[arm * kNQuote + kQCutBasket]};
    conv_update_rows(plain, one.s, &arm, &outcome, xs.data() + i * d, cuts, nullptr, 1, one.w);
    conv_update_rows(est, two.s, &arm, &outcome, xs.data() + i * d, cuts, nullptr, 1, two.w);
  }
  CHECK(same_bits(one.mu.data(), two.mu.data(), static_cast<long>(one.mu.size())));
  CHECK(same_bits(one.Sigma.data(), two.Sigma.data(), static_cast<long>(one.Sigma.size())));
  CHECK(one.counters[kCtrUpdates] == rows && one.counters[kCtrDecisions] == 0);

  // The covariance stays exactly symmetric with a positive diagonal, the means finite.
  const int64_t p = one.p;
  bool sym = true, pos = true, finite = true;
  for (int h = 0; h < 2; ++h) {
    for (int64_t i = 0; i < p; ++i) {
      pos = pos && one.Sigma[h * p * p + i * p + i] > 0.0;
      finite = finite && std::isfinite(one.mu[h * p + i]);
      for (int64_t j = 0; j < p; ++j) {
        sym = sym && one.Sigma[h * p * p + i * p + j] == one.Sigma[h * p * p + j * p + i];
      }
    }
  }
  CHECK(sym && pos && finite);

  // Separable data (every shopper buys the basket, whatever the offer): no NaN anywhere.
  Policy sep(K, d, 1);
  for (int64_t i = 0; i < 5000; ++i) {
    quotes_of(K, i, q);
    const int64_t arm = i % K, outcome = 2;
    const double cuts[2] = {q[arm * kNQuote + kQCutLead], q[arm * kNQuote + kQCutBasket]};
    const double weight = 3.0;  // above 1: the shrink cap keeps Sigma positive
    conv_update_rows(plain, sep.s, &arm, &outcome, xs.data() + (i % rows) * d, cuts, &weight, 1,
                     sep.w);
  }
  bool ok = true;
  for (double v : sep.mu) ok = ok && std::isfinite(v);
  for (int64_t i = 0; i < 2 * p; ++i) ok = ok && sep.Sigma[(i / p) * p * p + (i % p) * (p + 1)] > 0.0;
  CHECK(ok);
  std::vector<double> out(K);
  conv_expectations(sep.s, xs.data(), q.data(), 1, out.data(), sep.w);
  for (double v : out) CHECK(std::isfinite(v));
  return promobandit::test::report("test_conversion");
}
