// C++ checks of the policy kernels' batch loops, straight on the headers (no
// Python): a batch is bit for bit the same as that many single calls, any split of
// its rows over threads gives the same bits, the Thompson propensity estimate is
// (wins + 1) / (draws + K_eligible) on its fixed stream, the mask cache changes no
// number, and the kind codes and counter slots are the ones Python reads from _core.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "check.hpp"
#include "promobandit/linear.hpp"
#include "promobandit/multiarmed.hpp"
#include "promobandit/quadrature.hpp"
#include "promobandit/rng.hpp"
#include "promobandit/state.hpp"

using namespace promobandit;
using promobandit::test::same_bits;

namespace {

constexpr uint64_t kSeed = 20240611;

// Masks (n, K) with arm `removed` inactive and every row keeping an eligible arm,
// and biases (n, K) in [-0.1, 0.1): drawn from a stream of their own.
struct Rows {
  std::vector<uint8_t> masks;
  std::vector<double> biases;
  Rows(int64_t n, int64_t K, int64_t removed) {
    Stream rs(7, 7, kPurposeUser);
    masks.assign(static_cast<size_t>(n * K), 1);
    biases.resize(static_cast<size_t>(n * K));
    for (int64_t i = 0; i < n; ++i) {
      // Runs of equal rows (i / 4) so the mask cache both hits and misses.
      Stream rm(11, static_cast<uint64_t>(i / 4), kPurposeUser);
      for (int64_t a = 0; a < K; ++a) masks[i * K + a] = rm.uniform() < 0.7 ? 1 : 0;
      masks[i * K + (removed + 1) % K] = 1;
      for (int64_t a = 0; a < K; ++a) biases[i * K + a] = 0.2 * rs.uniform() - 0.1;
    }
  }
};

// ---- multi-armed ------------------------------------------------------------------------

struct Mab {
  std::vector<double> stats, cache, post;
  std::vector<uint8_t> active, pmask;
  std::vector<int64_t> counters;
  MabParams p;
  MabState s;

  Mab(int kind, int64_t K) {
    stats.assign(static_cast<size_t>(3 * K), 0.0);
    cache.assign(static_cast<size_t>(K), 0.0);
    post.assign(static_cast<size_t>(K * kBetaPostCols), 0.0);
    active.assign(static_cast<size_t>(K), 1);
    pmask.assign(static_cast<size_t>(K), 0);
    counters.assign(kNumCounters, 0);
    counters[kCtrPropensityAt] = -1;
    counters[kCtrSeed] = static_cast<int64_t>(kSeed);
    p.kind = kind;
    p.seed = kSeed;
    p.propensity_draws = 200;
    p.propensity_refresh = 5;
    const double hyper[6][4] = {{1, 1, 0, 0}, {0.5, 1, 1, 1}, {1, 0, 0, 0},
                                {1, 0, 0, 0}, {0.1, 0.5, 0, 0}, {0.2, 0.5, 0, 0}};
    for (int j = 0; j < 4; ++j) p.p[j] = hyper[kind][j];
    bind();
  }
  Mab(const Mab& o)
      : stats(o.stats), cache(o.cache), post(o.post), active(o.active), pmask(o.pmask), counters(o.counters),
        p(o.p) {
    bind();
  }
  Mab& operator=(const Mab&) = delete;

  void bind() {
    s.n_arms = static_cast<int64_t>(active.size());
    s.stats = stats.data();
    s.active = active.data();
    s.counters = counters.data();
    s.prop_cache = cache.data();
    s.prop_mask = pmask.data();
    s.prop_post = post.data();
  }

  // n updates with rewards in [0, 1] (Bernoulli for Beta TS), arm i mod K.
  void learn(int64_t n) {
    Stream rs(3, 3, kPurposeUser);
    for (int64_t i = 0; i < n; ++i) {
      const int64_t a = i % s.n_arms;
      const double u = rs.uniform();
      const double r = p.kind == kBetaTS ? (u < 0.1 + 0.1 * static_cast<double>(a) ? 1.0 : 0.0) : u;
      mab_update(p, s, a, r, 1.0);
    }
  }

  bool same_as(const Mab& o) const {
    return same_bits(stats.data(), o.stats.data(), static_cast<long>(stats.size())) &&
           same_bits(cache.data(), o.cache.data(), static_cast<long>(cache.size())) &&
           same_bits(post.data(), o.post.data(), static_cast<long>(post.size())) &&
           pmask == o.pmask && counters == o.counters;
  }
};

void test_mab_batches() {
  const int64_t K = 6, n = 300, removed = 2;
  Rows rows(n, K, removed);
  for (int kind = kBetaTS; kind <= kSoftmax; ++kind) {
    Mab base(kind, K);
    base.learn(50);
    base.active[removed] = 0;
    for (int variant = 0; variant < 3; ++variant) {
      const uint8_t* m = variant >= 1 ? rows.masks.data() : nullptr;
      const double* b = variant == 2 ? rows.biases.data() : nullptr;
      // n single selects
      Mab one(base);
      std::vector<int64_t> arms1(n);
      std::vector<double> props1(n);
      for (int64_t i = 0; i < n; ++i) {
        auto r = mab_select(one.p, one.s, m ? m + i * K : nullptr, b ? b + i * K : nullptr);
        arms1[i] = r.first;
        props1[i] = r.second;
      }
      // one batch on 1, 3 and all threads
      for (int threads : {1, 3, 0}) {
        Mab batch(base);
        std::vector<int64_t> arms(n);
        std::vector<double> props(n);
        mab_select_batch(batch.p, batch.s, m, b, n, threads, arms.data(), props.data());
        CHECK(arms == arms1);
        CHECK(same_bits(props.data(), props1.data(), n));
        CHECK(batch.same_as(one));
        CHECK(batch.counters[kCtrDecisions] == n);
      }
      for (int64_t i = 0; i < n; ++i) {
        CHECK(base.active[arms1[i]] && (m == nullptr || m[i * K + arms1[i]]));
      }
    }
    // update_batch is n updates, with and without weights, with and without decay
    for (double decay : {1.0, 0.99}) {
      Mab one(base), batch(base), weighted(base), weighted1(base);
      one.p.decay = batch.p.decay = weighted.p.decay = weighted1.p.decay = decay;
      std::vector<int64_t> arms(n);
      std::vector<double> rewards(n), weights(n);
      Stream rs(5, 5, kPurposeUser);
      for (int64_t i = 0; i < n; ++i) {
        arms[i] = (i * 7) % K;
        rewards[i] = rs.uniform() < 0.5 ? 1.0 : 0.0;
        weights[i] = 2.0 * rs.uniform();
      }
      for (int64_t i = 0; i < n; ++i) mab_update(one.p, one.s, arms[i], rewards[i], 1.0);
      mab_update_batch(batch.p, batch.s, arms.data(), rewards.data(), nullptr, n);
      CHECK(batch.same_as(one));
      for (int64_t i = 0; i < n; ++i) {
        mab_update(weighted1.p, weighted1.s, arms[i], rewards[i], weights[i]);
      }
      mab_update_batch(weighted.p, weighted.s, arms.data(), rewards.data(), weights.data(), n);
      CHECK(weighted.same_as(weighted1));
      CHECK(weighted.counters[kCtrUpdates] == base.counters[kCtrUpdates] + n);
    }
    // the mask cache of action distributions changes no number
    for (int variant = 0; variant < 3; ++variant) {
      const uint8_t* m = variant >= 1 ? rows.masks.data() : nullptr;
      const double* b = variant == 2 ? rows.biases.data() : nullptr;
      std::vector<double> cached(static_cast<size_t>(n * K)), direct(static_cast<size_t>(n * K));
      mab_action_probabilities_rows(base.p, base.s, m, b, n, cached.data());
      for (int64_t i = 0; i < n; ++i) {
        mab_action_probabilities(base.p, base.s, m ? m + i * K : nullptr,
                                 b ? b + i * K : nullptr, direct.data() + i * K);
      }
      CHECK(same_bits(cached.data(), direct.data(), n * K));
      for (int64_t i = 0; i < n; ++i) {
        double total = 0.0;
        for (int64_t a = 0; a < K; ++a) total += cached[i * K + a];
        CHECK(std::fabs(total - 1.0) < 1e-12);
        CHECK(cached[i * K + removed] == 0.0);
      }
    }
  }
}

// Beta TS by probability matching, win probabilities reused under a tolerance: a batch is
// n single selects bit for bit (arms, propensities, cache and snapshot) on any split of
// its rows; a propensity is the chosen arm's exact probability over their sum; learning
// one decision at a time reuses the cache for some updates and refills it for others.
void test_mab_matching() {
  const int64_t K = 6, n = 300, removed = 2;
  Rows rows(n, K, removed);
  Mab base(kBetaTS, K);
  base.p.propensity_method = kPropensityQuadrature;
  base.p.matching = true;
  base.p.propensity_tolerance = 0.005;
  base.p.propensity_refresh = 1;
  base.learn(300);
  base.active[removed] = 0;
  for (int variant = 0; variant < 3; ++variant) {
    const uint8_t* m = variant >= 1 ? rows.masks.data() : nullptr;
    const double* b = variant == 2 ? rows.biases.data() : nullptr;
    Mab one(base);
    std::vector<int64_t> arms1(n);
    std::vector<double> props1(n);
    for (int64_t i = 0; i < n; ++i) {
      auto r = mab_select(one.p, one.s, m ? m + i * K : nullptr, b ? b + i * K : nullptr);
      arms1[i] = r.first;
      props1[i] = r.second;
      CHECK(r.second > 0.0 && r.second <= 1.0);
      CHECK(base.active[r.first] && (m == nullptr || m[i * K + r.first]));
    }
    for (int threads : {1, 2, 3, 0}) {
      Mab batch(base);
      std::vector<int64_t> arms(n);
      std::vector<double> props(n);
      mab_select_batch(batch.p, batch.s, m, b, n, threads, arms.data(), props.data());
      CHECK(arms == arms1);
      CHECK(same_bits(props.data(), props1.data(), n));
      CHECK(batch.same_as(one));
    }
  }
  {  // without a bias the propensity is the cached probability over the cache's sum
    Mab one(base);
    std::vector<double> exact(K);
    mab_action_probabilities(one.p, one.s, nullptr, nullptr, exact.data());
    double total = 0.0;
    for (int64_t a = 0; a < K; ++a) total += exact[a];
    auto r = mab_select(one.p, one.s, nullptr, nullptr);
    CHECK(r.second == exact[r.first] / total);
  }
  {  // one decision at a time: some updates reuse the cache, others refill it
    Mab one(base);
    Stream rs(9, 9, kPurposeUser);
    int64_t refills = 0, reuses = 0;
    for (int64_t i = 0; i < 3000; ++i) {
      const int64_t at = one.counters[kCtrPropensityAt];
      auto r = mab_select(one.p, one.s, nullptr, nullptr);
      if (one.counters[kCtrPropensityAt] != at) ++refills; else ++reuses;
      const double pr = 0.1 + 0.1 * static_cast<double>(r.first);
      mab_update(one.p, one.s, r.first, rs.uniform() < pr ? 1.0 : 0.0, 1.0);
    }
    CHECK(refills > 0 && reuses > 0);
    Mab exact(base);  // tolerance 0: a refill after every update
    exact.p.propensity_tolerance = 0.0;
    for (int64_t i = 0; i < 50; ++i) {
      auto r = mab_select(exact.p, exact.s, nullptr, nullptr);
      CHECK(exact.counters[kCtrPropensityAt] == exact.counters[kCtrUpdates]);
      mab_update(exact.p, exact.s, r.first, 1.0, 1.0);
    }
  }
}

// The node grid kept between updates (beta_grid.hpp): a policy whose columns are cached
// gives, at every refill, the same bits as one that recomputes every column (no cache)
// and writes the same snapshot; between two refills with no new grid at most one column
// is recomputed when one arm was updated; the grid resolves the live arms it is used for
// except right after it was cut.
void test_mab_beta_grid() {
  const int64_t K = 10;
  for (int matching = 0; matching < 2; ++matching) {
    Mab inc(kBetaTS, K), fresh(kBetaTS, K);
    std::vector<double> snap_inc(2 * K, 0.0), snap_fresh(2 * K, 0.0);
    BetaGrid cache;
    for (Mab* m : {&inc, &fresh}) {
      m->p.propensity_method = kPropensityQuadrature;
      m->p.matching = matching == 1;
      m->p.propensity_tolerance = 0.0;  // a refill after every update
      m->p.propensity_refresh = 1;
    }
    inc.s.quad_grid = snap_inc.data();
    inc.s.grid = &cache;
    fresh.s.quad_grid = snap_fresh.data();
    Stream rs(21, 21, kPurposeUser);
    int64_t cols = 0, grids = 0, one_column = 0;
    for (int64_t i = 0; i < 4000; ++i) {
      const auto r = mab_select(inc.p, inc.s, nullptr, nullptr);
      const auto rf = mab_select(fresh.p, fresh.s, nullptr, nullptr);
      CHECK(r.first == rf.first);
      CHECK(same_bits(&r.second, &rf.second, 1));
      CHECK(same_bits(inc.cache.data(), fresh.cache.data(), K));
      CHECK(same_bits(snap_inc.data(), snap_fresh.data(), 2 * K));
      if (i > 0 && cache.grids_built == grids) {
        CHECK(cache.columns_computed - cols <= 1);
        one_column += cache.columns_computed - cols == 1 ? 1 : 0;
      }
      cols = cache.columns_computed;
      grids = cache.grids_built;
      const double pr = 0.05 + 0.04 * static_cast<double>(r.first);
      const double reward = rs.uniform() < pr ? 1.0 : 0.0;
      mab_update(inc.p, inc.s, r.first, reward, 1.0);
      mab_update(fresh.p, fresh.s, rf.first, reward, 1.0);
    }
    CHECK(one_column > 3000);        // most refills recomputed one column
    CHECK(cache.grids_built < 200);  // and few cut a new grid
    std::printf("beta grid (matching %d): %lld grids, %lld columns over 4000 updates\n", matching,
                static_cast<long long>(cache.grids_built),
                static_cast<long long>(cache.columns_computed));
  }
}

// The Thompson estimate, counted here from its definition: `draws` rounds of
// posterior draws on the stream (seed, policy version, propensity), the winner of
// each round among the eligible arms, then (wins + 1) / (draws + K_eligible).
void test_mab_propensity_loop() {
  const int64_t K = 5;
  for (int kind : {kBetaTS, kGaussianTS}) {
    Mab f(kind, K);
    f.learn(40);
    f.active[3] = 0;
    const uint8_t mask[K] = {1, 1, 0, 1, 1};  // eligible: 0, 1, 4
    const int64_t k_elig = 3;
    const uint64_t version = static_cast<uint64_t>(f.counters[kCtrUpdates]);
    std::vector<double> wins(K, 0.0);
    Stream rp(kSeed, version, kPurposePropensity);
    for (int64_t m = 0; m < f.p.propensity_draws; ++m) {
      int64_t best = -1;
      double best_v = 0.0;
      for (int64_t a = 0; a < K; ++a) {
        if (!f.active[a] || !mask[a]) continue;
        const double v = mab_posterior_draw(f.p, f.s, a, rp);
        if (best < 0 || v > best_v) {
          best = a;
          best_v = v;
        }
      }
      wins[best] += 1.0;
    }
    std::vector<double> est(K);
    mab_ts_propensities(f.p, f.s, mask, nullptr, version, est.data());
    for (int64_t a = 0; a < K; ++a) {
      const bool elig = f.active[a] && mask[a];
      const double want =
          elig ? (wins[a] + 1.0) / (static_cast<double>(f.p.propensity_draws) + k_elig) : 0.0;
      CHECK(est[a] == want);
    }
    // through the cache: filled once, reused for the same eligible set, refreshed
    // after propensity_refresh updates
    CHECK(mab_ts_propensity(f.p, f.s, mask, nullptr, 4) == est[4]);
    CHECK(f.counters[kCtrPropensityAt] == static_cast<int64_t>(version));
    CHECK(mab_ts_propensity(f.p, f.s, mask, nullptr, 0) == est[0]);
    for (int64_t i = 0; i < f.p.propensity_refresh - 1; ++i) mab_update(f.p, f.s, 0, 1.0, 1.0);
    CHECK(mab_ts_propensity(f.p, f.s, mask, nullptr, 1) == est[1]);  // still cached
    CHECK(f.counters[kCtrPropensityAt] == static_cast<int64_t>(version));
    mab_update(f.p, f.s, 0, 1.0, 1.0);
    mab_ts_propensity(f.p, f.s, mask, nullptr, 1);
    CHECK(f.counters[kCtrPropensityAt] == f.counters[kCtrUpdates]);
    // no draws: NaN, as the binding's propensity_draws=0 promises
    f.p.propensity_draws = 0;
    CHECK(std::isnan(mab_ts_propensity(f.p, f.s, mask, nullptr, 0)));
  }
}

// ---- linear -----------------------------------------------------------------------------

struct Lin {
  std::vector<double> A, A_inv, b, theta, n;
  std::vector<int64_t> since, counters;
  std::vector<uint8_t> active;
  LinParams p;
  LinState s;
  LinWorkspace ws;
  LinScratch w{};

  Lin(int kind, int64_t K, int64_t d) {
    A.assign(static_cast<size_t>(K * d * d), 0.0);
    A_inv = A;
    for (int64_t a = 0; a < K; ++a) {
      for (int64_t i = 0; i < d; ++i) A[a * d * d + i * d + i] = A_inv[a * d * d + i * d + i] = 1.0;
    }
    b.assign(static_cast<size_t>(K * d), 0.0);
    theta = b;
    n.assign(static_cast<size_t>(K), 0.0);
    since.assign(static_cast<size_t>(K), 0);
    active.assign(static_cast<size_t>(K), 1);
    counters.assign(kNumCounters, 0);
    counters[kCtrPropensityAt] = -1;
    counters[kCtrSeed] = static_cast<int64_t>(kSeed);
    p.kind = kind;
    p.exploration = 0.5;
    p.ridge = 1.0;
    p.refresh_every = 8;
    p.propensity_draws = 50;
    p.seed = kSeed;
    bind(K, d);
  }
  Lin(const Lin& o)
      : A(o.A), A_inv(o.A_inv), b(o.b), theta(o.theta), n(o.n), since(o.since),
        counters(o.counters), active(o.active), p(o.p) {
    bind(static_cast<int64_t>(o.n.size()), o.s.dim);
  }
  Lin& operator=(const Lin&) = delete;

  void bind(int64_t K, int64_t d) {
    s.n_arms = K;
    s.dim = d;
    s.A = A.data();
    s.A_inv = A_inv.data();
    s.b = b.data();
    s.theta = theta.data();
    s.n = n.data();
    s.since_refresh = since.data();
    s.active = active.data();
    s.counters = counters.data();
    w = ws.reset(K, d);
  }

  bool same_as(const Lin& o) const {
    auto eq = [](const std::vector<double>& x, const std::vector<double>& y) {
      return x.size() == y.size() && same_bits(x.data(), y.data(), static_cast<long>(x.size()));
    };
    return eq(A, o.A) && eq(A_inv, o.A_inv) && eq(b, o.b) && eq(theta, o.theta) && eq(n, o.n) &&
           since == o.since && counters == o.counters;
  }
};

std::vector<double> contexts(int64_t n, int64_t d, uint64_t stream) {
  Stream rs(13, stream, kPurposeUser);
  std::vector<double> x(static_cast<size_t>(n * d));
  for (auto& v : x) v = rs.normal();
  return x;
}

void test_lin_batches() {
  const int64_t K = 5, d = 4, n = 300, removed = 1;
  Rows rows(n, K, removed);
  const std::vector<double> X = contexts(n, d, 1), Xl = contexts(n, d, 2);
  for (int kind : {kLinUCB, kLinTS}) {
    Lin base(kind, K, d);
    std::vector<int64_t> arms(n);
    std::vector<double> rewards(n), weights(n);
    Stream rs(17, 17, kPurposeUser);
    for (int64_t i = 0; i < n; ++i) {
      arms[i] = (i * 3) % K;
      rewards[i] = Xl[i * d] - 0.5 * Xl[i * d + 1] + 0.1 * rs.normal();
      weights[i] = 0.5 + rs.uniform();
    }
    // update rows are n updates (and cross refresh_every, so exact refreshes run)
    for (double decay : {1.0, 0.995}) {
      Lin one(base), batch(base);
      one.p.decay = batch.p.decay = decay;
      for (int64_t i = 0; i < n; ++i) {
        lin_update(one.p, one.s, arms[i], rewards[i], Xl.data() + i * d, weights[i], one.w);
      }
      lin_update_rows(batch.p, batch.s, arms.data(), rewards.data(), Xl.data(), weights.data(), n,
                      batch.w);
      CHECK(batch.same_as(one));
    }
    lin_update_rows(base.p, base.s, arms.data(), rewards.data(), Xl.data(), nullptr, n, base.w);
    base.active[removed] = 0;
    for (int variant = 0; variant < 3; ++variant) {
      const uint8_t* m = variant >= 1 ? rows.masks.data() : nullptr;
      const double* b = variant == 2 ? rows.biases.data() : nullptr;
      Lin one(base);
      std::vector<int64_t> arms1(n);
      std::vector<double> props1(n);
      for (int64_t i = 0; i < n; ++i) {
        auto r = lin_select(one.p, one.s, m ? m + i * K : nullptr, b ? b + i * K : nullptr,
                            X.data() + i * d, one.w);
        arms1[i] = r.first;
        props1[i] = r.second;
      }
      for (int threads : {1, 3, 0}) {
        Lin batch(base);
        std::vector<int64_t> out_arms(n);
        std::vector<double> out_props(n);
        lin_select_batch(batch.p, batch.s, m, b, X.data(), n, threads, out_arms.data(),
                         out_props.data());
        CHECK(out_arms == arms1);
        CHECK(same_bits(out_props.data(), props1.data(), n));
        CHECK(batch.same_as(one));
      }
      // action distributions: any split of the rows gives the same bits
      std::vector<double> ap1(static_cast<size_t>(n * K)), ap3(static_cast<size_t>(n * K));
      lin_action_probabilities_rows(base.p, base.s, m, b, X.data(), n, 64, 1, ap1.data());
      lin_action_probabilities_rows(base.p, base.s, m, b, X.data(), n, 64, 3, ap3.data());
      CHECK(same_bits(ap1.data(), ap3.data(), n * K));
      for (int64_t i = 0; i < n; ++i) {
        double total = 0.0;
        for (int64_t a = 0; a < K; ++a) total += ap1[i * K + a];
        CHECK(std::fabs(total - 1.0) < 1e-12);
        CHECK(ap1[i * K + removed] == 0.0);
      }
    }
    // expectations are theta_a . x
    std::vector<double> e(static_cast<size_t>(n * K));
    lin_expectations(base.s, X.data(), n, e.data());
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t a = 0; a < K; ++a) {
        double want = 0.0;
        for (int64_t j = 0; j < d; ++j) want += base.theta[a * d + j] * X[i * d + j];
        CHECK(std::fabs(e[i * K + a] - want) < 1e-12);
      }
    }
  }
}

// batch_accumulate: lin_accumulate_rows equals the sequential rows up to rounding (1e-9
// relative on A, A^{-1}, b, theta, n; decay 1 and < 1), leaves A exactly symmetric, its
// lane loop (lin_accumulate_upper) gives the bits of the plain per-element loop, and a batch
// whose sums overflow is refused with nothing written.
void test_lin_accumulate() {
  auto rel = [](const std::vector<double>& x, const std::vector<double>& y) {
    double scale = 0.0, diff = 0.0;
    for (size_t i = 0; i < x.size(); ++i) {
      scale = std::fmax(scale, std::fabs(y[i]));
      diff = std::fmax(diff, std::fabs(x[i] - y[i]));
    }
    return diff / (scale > 0.0 ? scale : 1.0);
  };
  const int64_t K = 5, n = 400;
  for (int64_t d : {1, 4, 20, 23}) {
    const std::vector<double> X = contexts(n, d, 3);
    std::vector<int64_t> arms(n);
    std::vector<double> rewards(n), weights(n);
    Stream rs(19, 19, kPurposeUser);
    for (int64_t i = 0; i < n; ++i) {
      arms[i] = (i * 7) % K == 4 ? 4 : (i * 7) % 4;  // arm 4 gets fewer rows
      rewards[i] = X[i * d] + 0.1 * rs.normal();
      weights[i] = 0.5 + rs.uniform();
    }
    for (double decay : {1.0, 0.99}) {
      Lin seq(kLinUCB, K, d), acc(kLinUCB, K, d);
      seq.p.decay = acc.p.decay = decay;
      seq.p.refresh_every = 1 << 30;
      acc.p.batch_accumulate = true;
      LinAccumulator buffers;
      for (int64_t half = 0; half < 2; ++half) {
        const int64_t lo = half * (n / 2);
        lin_update_rows(seq.p, seq.s, arms.data() + lo, rewards.data() + lo, X.data() + lo * d,
                        weights.data() + lo, n / 2, seq.w);
        lin_accumulate_rows(acc.p, acc.s, arms.data() + lo, rewards.data() + lo,
                            X.data() + lo * d, weights.data() + lo, n / 2, buffers);
      }
      CHECK(rel(acc.A, seq.A) < 1e-9);
      CHECK(rel(acc.A_inv, seq.A_inv) < 1e-9);
      CHECK(rel(acc.b, seq.b) < 1e-9);
      CHECK(rel(acc.theta, seq.theta) < 1e-9);
      CHECK(rel(acc.n, seq.n) < 1e-9);
      CHECK(acc.counters == seq.counters);
      for (int64_t a = 0; a < K; ++a) {
        for (int64_t i = 0; i < d; ++i) {
          for (int64_t j = 0; j < d; ++j) {
            CHECK(acc.A[a * d * d + i * d + j] == acc.A[a * d * d + j * d + i]);
          }
        }
      }
      // a batch whose sums overflow: refused, nothing written
      Lin before(acc);
      std::vector<double> huge(X.begin(), X.begin() + 8 * d);
      huge[7 * d] = 1e200;
      bool threw = false;
      try {
        lin_accumulate_rows(acc.p, acc.s, arms.data(), rewards.data(), huge.data(),
                            weights.data(), 8, buffers);
      } catch (const std::invalid_argument&) {
        threw = true;
      }
      CHECK(threw);
      CHECK(acc.same_as(before));
    }
    // the lane loop against the plain per-element loop, bit for bit
    const int64_t m = 37;
    std::vector<double> A0 = contexts(d, d, 4), XA = contexts(m, d, 5), WXT = contexts(d, m, 6);
    std::vector<double> lanes(A0), plain(A0);
    lin_accumulate_upper(lanes.data(), XA.data(), WXT.data(), m, d);
    for (int64_t i = 0; i < d; ++i) {
      for (int64_t j = i; j < d; ++j) {
        double v = plain[i * d + j];
        for (int64_t r = 0; r < m; ++r) v += WXT[i * m + r] * XA[r * d + j];
        plain[i * d + j] = v;
      }
    }
    for (int64_t i = 0; i < d; ++i) {
      CHECK(same_bits(lanes.data() + i * d + i, plain.data() + i * d + i, d - i));
    }
  }
}

// LinTS: (wins + 1) / (draws + K_eligible), the wins counted here from score draws
// on the stream (seed, decision number, propensity), and the same number from
// lin_choose for the arm it chose.
void test_lin_propensity_loop() {
  const int64_t K = 4, d = 3;
  Lin f(kLinTS, K, d);
  const std::vector<double> X = contexts(60, d, 3);
  for (int64_t i = 0; i < 60; ++i) {
    lin_update(f.p, f.s, i % K, X[i * d] + 0.2 * X[i * d + 2], X.data() + i * d, 1.0, f.w);
  }
  const uint8_t mask[K] = {1, 0, 1, 1};
  const double* x = X.data() + 5 * d;
  const uint64_t t = 123;
  lin_moments(f.s, mask, x, f.w);
  std::vector<double> wins(K, 0.0);
  Stream rp(kSeed, t, kPurposePropensity);
  for (int64_t m = 0; m < f.p.propensity_draws; ++m) {
    wins[lin_ts_draw(f.p, f.s, mask, nullptr, f.w, rp, rp)] += 1.0;
  }
  for (int64_t a = 0; a < K; ++a) {
    if (!mask[a]) continue;
    const double want = (wins[a] + 1.0) / (static_cast<double>(f.p.propensity_draws) + 3.0);
    CHECK(lin_ts_propensity(f.p, f.s, mask, nullptr, f.w, t, a) == want);
  }
  const auto chosen = lin_choose(f.p, f.s, mask, nullptr, x, t, f.w);
  CHECK(chosen.second == lin_ts_propensity(f.p, f.s, mask, nullptr, f.w, t, chosen.first));
  f.p.propensity_draws = 0;
  CHECK(std::isnan(lin_ts_propensity(f.p, f.s, mask, nullptr, f.w, t, 0)));
}

void test_lin_scratch_layout() {
  const int64_t K = 7, d = 5;
  CHECK(lin_scratch_size(K, d) == 2 * K + d + 2 * d * d + kLinRowBlock * (d + 2 * K));
  LinWorkspace ws;
  const LinScratch w = ws.reset(K, d);
  CHECK(w.var == w.mean + K);
  CHECK(w.u == w.var + K);
  CHECK(w.work == w.u + d);
  CHECK(w.xt == w.work + 2 * d * d);
  CHECK(w.bmean == w.xt + kLinRowBlock * d);
  CHECK(w.bvar == w.bmean + kLinRowBlock * K);
  CHECK(w.bvar + kLinRowBlock * K == w.mean + lin_scratch_size(K, d));
  for (int64_t i = 0; i < lin_scratch_size(K, d); ++i) CHECK(w.mean[i] == 0.0);
}

// The codes Python reads from _core.POLICY_KINDS and _core.COUNTER_SLOTS: pinned here
// because saved states carry them (tests/test_codes.py pins the same on the Python side).
void test_codes() {
  struct Want {
    const char* name;
    int code;
  };
  const Want mab[] = {{"BETA_TS", 0}, {"GAUSSIAN_TS", 1}, {"UCB1", 2},
                      {"UCB_TUNED", 3}, {"EPSILON_GREEDY", 4}, {"SOFTMAX", 5}};
  const Want lin[] = {{"LIN_UCB", 0}, {"LIN_TS", 1}};
  const Want slots[] = {{"DECISIONS", 0}, {"UPDATES", 1}, {"PROPENSITY_AT", 2}, {"SEED", 3}};
  int i = 0;
  for (const auto& c : kMabKindNames) {
    CHECK(std::string(c.name) == mab[i].name && c.code == mab[i].code);
    CHECK(is_mab_kind(c.code));
    ++i;
  }
  CHECK(i == 6);
  i = 0;
  for (const auto& c : kLinKindNames) {
    CHECK(std::string(c.name) == lin[i].name && c.code == lin[i].code);
    CHECK(is_lin_kind(c.code));
    ++i;
  }
  CHECK(i == 2);
  i = 0;
  for (const auto& c : kCounterSlotNames) {
    CHECK(std::string(c.name) == slots[i].name && c.code == slots[i].code);
    ++i;
  }
  CHECK(i == kNumCounters);
  CHECK(!is_mab_kind(-1) && !is_mab_kind(6) && !is_lin_kind(2));
}

}  // namespace

// Exact ties: each of m tied arms wins about 1/m of the time, a tie-free argmax draws
// nothing from the tie stream, and the tie count is the number tied at the maximum.
void test_tie_argmax() {
  const double vals[5] = {0.5, 1.0, 0.25, 1.0, 1.0};
  int64_t wins[5] = {0, 0, 0, 0, 0};
  const int64_t rounds = 30000;
  for (int64_t r = 0; r < rounds; ++r) {
    Stream ties(kSeed, static_cast<uint64_t>(r), kPurposeTie);
    TieArgmax am;
    for (int64_t a = 0; a < 5; ++a) am.offer(a, vals[a], ties);
    CHECK(am.count == 3 && am.value == 1.0);
    wins[am.best] += 1;
  }
  CHECK(wins[0] == 0 && wins[2] == 0);
  for (int64_t a : {1, 3, 4}) {  // Binomial(30000, 1/3): sd 82; 6 sd
    CHECK(std::fabs(static_cast<double>(wins[a]) - rounds / 3.0) < 6 * 82.0);
  }
  Stream untouched(kSeed, 0, kPurposeTie), fresh(kSeed, 0, kPurposeTie);
  TieArgmax am;
  for (int64_t a = 0; a < 4; ++a) am.offer(a, static_cast<double>(a), untouched);
  CHECK(am.best == 3 && am.count == 1 && untouched.next_u32() == fresh.next_u32());
}

// Quadrature propensities: symmetric arms share 1/K; two normal scores give the closed
// form P(X_0 > X_1) = Phi((m0 - m1) / sqrt(s0^2 + s1^2)); every set sums to 1.
void test_quadrature() {
  const int64_t K = 5;
  std::vector<double> a(K, 3.0), b(K, 7.0), c(K, 0.0), out(K);
  std::vector<int64_t> arms = {0, 1, 2, 3, 4};
  quad_max_propensities(kQuadBeta, a.data(), b.data(), c.data(), arms.data(), K, out.data());
  for (int64_t i = 0; i < K; ++i) CHECK(std::fabs(out[i] - 0.2) < 1e-6);
  const double m[2] = {0.3, 0.1}, sd[2] = {0.2, 0.1}, z[2] = {0.0, 0.0};
  const int64_t two[2] = {0, 1};
  double o2[2];
  quad_max_propensities(kQuadNormal, m, sd, z, two, 2, o2);
  const double want = 0.5 * std::erfc(-(0.2 / std::sqrt(0.05)) / std::sqrt(2.0));
  CHECK(std::fabs(o2[0] - want) < 1e-6 && std::fabs(o2[0] + o2[1] - 1.0) < 1e-12);
}

// The normal family one arm at a time (quad_normal_propensity, LinTS's default): the
// closed form of two scores, 1/K for identical ones, and within 1e-3 of the generic
// quadrature on random states, a score 30x narrower than the target (the fallback)
// included; each state's K integrals sum to 1 within 1e-6 (evaluate/log.py's check).
void test_quad_normal_propensity() {
  const double m2[2] = {0.3, 0.1}, sd2[2] = {0.2, 0.1};
  const double want = 0.5 * std::erfc(-(0.2 / std::sqrt(0.05)) / std::sqrt(2.0));
  CHECK(std::fabs(quad_normal_propensity(m2, sd2, 2, 0) - want) < 1e-3);
  CHECK(std::fabs(quad_normal_propensity(m2, sd2, 2, 1) - (1.0 - want)) < 1e-3);
  const double m5[5] = {0.1, 0.1, 0.1, 0.1, 0.1}, sd5[5] = {0.3, 0.3, 0.3, 0.3, 0.3};
  for (int64_t i = 0; i < 5; ++i) {
    CHECK(std::fabs(quad_normal_propensity(m5, sd5, 5, i) - 0.2) < 1e-3);
  }
  Stream rs(31, 0, kPurposeUser);
  for (int state = 0; state < 200; ++state) {
    const int64_t n = 2 + static_cast<int64_t>(rs.uniform() * 9.0);
    std::vector<double> m(n), sd(n), zero(n, 0.0), gen(n);
    std::vector<int64_t> arms(n);
    for (int64_t i = 0; i < n; ++i) {
      m[i] = 0.3 * rs.normal();
      sd[i] = 0.2 * std::exp(rs.normal());
      arms[i] = i;
    }
    if (state % 10 == 0) sd[0] = sd[1] / 30.0;  // the narrow score: the generic fallback
    quad_max_propensities(kQuadNormal, m.data(), sd.data(), zero.data(), arms.data(), n,
                          gen.data());
    double total = 0.0;
    for (int64_t i = 0; i < n; ++i) {
      const double v = quad_normal_propensity(m.data(), sd.data(), n, i);
      CHECK(v >= kQuadFloor && v <= 1.0);
      CHECK(std::fabs(v - gen[i]) < 1e-3);
      total += v;
    }
    CHECK(std::fabs(total - 1.0) < 1e-6);  // a logged distribution sums to 1 within 1e-6
  }
}

int main() {
  test_quadrature();
  test_quad_normal_propensity();
  test_tie_argmax();
  test_codes();
  test_lin_scratch_layout();
  test_mab_propensity_loop();
  test_mab_batches();
  test_mab_matching();
  test_mab_beta_grid();
  test_lin_propensity_loop();
  test_lin_batches();
  test_lin_accumulate();
  return test::report("test_policies");
}
