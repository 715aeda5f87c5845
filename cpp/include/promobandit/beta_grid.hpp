// Beta TS win probabilities on a node grid kept between updates, so that an update
// of one arm recomputes one column instead of the whole quadrature.
//
// The quadrature is the one of quad_max_propensities (quadrature.hpp): composite
// 6-point Gauss-Legendre over panels, each density unnormalised (log density minus its
// value at the mean), each CDF integrated at the nodes by the rule's cumulative matrix
// and normalised by its own total. What differs is who sets the panels:
//   * the grid is a pure function of a *snapshot*: one (alpha, beta) per arm (0, 0 for
//     an arm not in it), kept in the policy's state (the `quad_grid` array, K x 2), so
//     a saved and restored policy rebuilds the same grid and decides bit for bit as the
//     original. Each snapshot arm's range is its mean +- kGridSpanSd sds clipped to
//     [0, 1] (8, not quad_max_propensities' 12: the mass beyond is at most 1.2e-4, for
//     the exponential-like Beta(1, b) with b large, far under the 0.01 error bound,
//     and the narrower ranges mean a third fewer nodes); the ranges' ends cut
//     [G0, G1] (the lowest start, the highest end) into segments, each split into panels at most kGridPanelSd sds of the narrowest
//     snapshot arm covering it (at most kGridMaxPanels panels; wider in proportion
//     beyond), and log x, log(1 - x) are kept at every node;
//   * an arm's column (its normalised density f and CDF F at every node) is a pure
//     function of the grid and its current (alpha, beta): 2 multiply-adds and an exp per
//     node of its range, then the panel's cumulative sums;
//   * the grid resolves a live arm (one whose range ends above the largest range start,
//     the only arms that can win) when its range lies inside [G0, G1] and every panel
//     meeting its core (mean +- kGridCoreSd sds) is at most kGridMaxPanelSd of its
//     current sds wide; when some live arm is not resolved (its sd shrank to
//     kGridPanelSd / kGridMaxPanelSd = 2/3 of the sd the panels were cut for, its mean
//     moved into coarser panels, or its range left the grid), the snapshot is replaced
//     by the current posteriors of the eligible arms and the grid rebuilt;
//   * the K win probabilities come from the columns over the nodes above the largest
//     range start (below it some score is surely larger): prefix products of F over the
//     live arms in id order, a suffix product running down, each arm's sum of
//     weight * f * prefix * suffix accumulated in kGridLanes interleaved partial sums
//     (fixed order, so the compiler can use vector lanes and every backend adds alike),
//     normalised to sum to 1 and floored at kQuadFloor as quad_max_propensities does.
// The incremental BetaGrid below caches the grid (rebuilt when the state's snapshot
// differs from the one it was built from) and every column with the (alpha, beta) it
// was computed for, so after one update only that arm's column is recomputed; its
// results are bit for bit those of a BetaGrid that starts empty at every call (the
// columns are pure functions), which is what the Numba backend computes
// (_numba/beta_grid.py mirrors it operation for operation).
// Accuracy: panels at most 3 sds against quad_max_propensities' 2; over 200 random
// states (2-11 arms, up to 15,000 counts) a fresh grid, and one kept while the counts
// grew up to 2.5x, were within 6.1e-5 of quad_max_propensities (tests hold 1e-3); the
// error against
// 10^6-draw Monte Carlo is held to <= 0.01 (with the reuse tolerance on top) along
// learning runs in tests/test_beta_incremental.py.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "promobandit/quadrature.hpp"

namespace promobandit {

constexpr double kGridPanelSd = 2.0;     // panels cut at most this many sds of the narrowest arm
constexpr double kGridMaxPanelSd = 3.0;  // rebuild when a live arm's core panels exceed this
constexpr double kGridSpanSd = 8.0;      // each arm's range: mean +- this many sds
constexpr double kGridCoreSd = 6.0;      // a live arm's core: mean +- this many sds
constexpr int64_t kGridMaxPanels = 2048;  // cap on panels per grid (wider panels beyond it)
constexpr int kGridLanes = 4;            // interleaved partial sums in the combination

// Mean, sd and range (mean +- kGridSpanSd sds clipped to [0, 1]) of Beta(a, b).
using BetaRange = QuadBetaRange;

inline BetaRange beta_range(double a, double b) { return quad_beta_range(a, b, kGridSpanSd); }

// Log density of Beta(a, b) at its mean m (the column's offset; two logs, so computed
// only where a column is).
inline double beta_log_density_at_mean(double a, double b, double m) {
  return (a - 1.0) * std::log(m) + (b - 1.0) * std::log(1.0 - m);
}

// The nodes of the grid cut for a snapshot (K rows of alpha, beta; alpha = 0: absent).
struct BetaGridNodes {
  std::vector<double> ends;     // segment ends, ascending (n_seg + 1)
  std::vector<double> seg_h;    // panel width per segment (0: no panels)
  std::vector<int64_t> seg_np;  // panels per segment
  std::vector<double> x, wt, lx, l1x;  // per node
  int64_t n_nodes = 0;
  double g0 = 0.0, g1 = 0.0;

  void build(const double* snap, int64_t K) {
    std::vector<double> lo, hi, sd;
    for (int64_t k = 0; k < K; ++k) {
      if (!(snap[2 * k] > 0.0)) continue;
      const BetaRange r = beta_range(snap[2 * k], snap[2 * k + 1]);
      lo.push_back(r.lo);
      hi.push_back(r.hi);
      sd.push_back(r.sd);
    }
    const int64_t n = static_cast<int64_t>(lo.size());
    const int64_t n_seg = 2 * n - 1;
    ends.assign(static_cast<size_t>(2 * n), 0.0);
    seg_h.assign(static_cast<size_t>(n_seg > 0 ? n_seg : 0), 0.0);
    seg_np.assign(static_cast<size_t>(n_seg > 0 ? n_seg : 0), 0);
    const int64_t total = quad_panel_layout(lo.data(), hi.data(), sd.data(), nullptr, n,
                                            kGridPanelSd, kGridMaxPanels, ends.data(),
                                            seg_np.data());
    n_nodes = total * kQuadNodes;
    x.assign(static_cast<size_t>(n_nodes), 0.0);
    wt.assign(static_cast<size_t>(n_nodes), 0.0);
    lx.assign(static_cast<size_t>(n_nodes), 0.0);
    l1x.assign(static_cast<size_t>(n_nodes), 0.0);
    int64_t node = 0;
    for (int64_t g = 0; g < n_seg; ++g) {
      const int64_t np_g = seg_np[g];
      if (np_g == 0) continue;
      const double e0 = ends[g], e1 = ends[g + 1];
      const double h = (e1 - e0) / static_cast<double>(np_g);
      seg_h[g] = h;
      for (int64_t q = 0; q < np_g; ++q) {
        const double left = e0 + static_cast<double>(q) * h;
        for (int t = 0; t < kQuadNodes; ++t) {
          const double xv = left + h * kQuadT[t];
          x[node + t] = xv;
          wt[node + t] = h * kQuadW[t];
          lx[node + t] = std::log(xv);
          l1x[node + t] = std::log(1.0 - xv);
        }
        node += kQuadNodes;
      }
    }
    g0 = n > 0 ? ends[0] : 0.0;
    g1 = n > 0 ? ends[2 * n - 1] : 0.0;
  }

  // Does the grid resolve an arm with range r (see the header comment)?
  bool resolves(const BetaRange& r) const {
    if (r.lo < g0 || r.hi > g1) return false;
    double c0 = r.m - kGridCoreSd * r.sd, c1 = r.m + kGridCoreSd * r.sd;
    if (c0 < r.lo) c0 = r.lo;
    if (c1 > r.hi) c1 = r.hi;
    const double h_max = kGridMaxPanelSd * r.sd;
    const int64_t n_seg = static_cast<int64_t>(seg_np.size());
    for (int64_t g = 0; g < n_seg; ++g) {
      if (seg_np[g] == 0) continue;
      if (ends[g] < c1 && ends[g + 1] > c0 && seg_h[g] > h_max) return false;
    }
    return true;
  }

  // Column of Beta(a, b) with range r: fh (normalised density) and Fh (normalised CDF)
  // at every node, as quad_max_propensities computes them for a score over its range.
  void column(double a, double b, const BetaRange& r, double* fh, double* Fh) const {
    double fp[kQuadNodes], cv[kQuadNodes];
    const double off = beta_log_density_at_mean(a, b, r.m);
    double cum = 0.0;
    int64_t node = 0;
    int64_t first = -1, last = -1;  // the panels' nodes computed: [first, last)
    const int64_t n_seg = static_cast<int64_t>(seg_np.size());
    for (int64_t g = 0; g < n_seg; ++g) {
      const int64_t np_g = seg_np[g];
      if (np_g == 0) continue;
      if (!(r.lo < ends[g + 1] && r.hi > ends[g])) {  // outside the range: f 0, F cum
        for (int64_t i = node; i < node + np_g * kQuadNodes; ++i) {
          fh[i] = 0.0;
          Fh[i] = cum;
        }
        node += np_g * kQuadNodes;
        continue;
      }
      const double h = seg_h[g];
      if (first < 0) first = node;
      for (int64_t q = 0; q < np_g; ++q) {
        for (int t = 0; t < kQuadNodes; ++t) {
          const double xv = x[node + t];
          fp[t] = (xv > r.lo && xv < r.hi)
                      ? std::exp((a - 1.0) * lx[node + t] + (b - 1.0) * l1x[node + t] - off)
                      : 0.0;
        }
        for (int t = 0; t < kQuadNodes; ++t) {
          double acc = 0.0;
          for (int u = 0; u < kQuadNodes; ++u) acc += kQuadS[t][u] * fp[u];
          const double c = cum + h * acc;
          cv[t] = c > 0.0 ? c : 0.0;
        }
        double acc = 0.0;
        for (int t = 0; t < kQuadNodes; ++t) acc += kQuadW[t] * fp[t];
        cum += h * acc;
        for (int t = 0; t < kQuadNodes; ++t) {
          fh[node + t] = fp[t];
          Fh[node + t] = cv[t];
        }
        node += kQuadNodes;
      }
      last = node;
    }
    if (first < 0) first = last = 0;  // no panel meets the range (the grid cannot resolve it)
    // normalise by the total; outside the computed panels f is 0 and F is 0 before
    // them and 1 after them, so only those panels are scaled
    const double inv = 1.0 / cum;
    for (int64_t i = first; i < last; ++i) {
      fh[i] = fh[i] * inv;
      Fh[i] = Fh[i] * inv;
    }
    for (int64_t i = last; i < n_nodes; ++i) Fh[i] = 1.0;
  }
};

// The win probabilities from the live arms' columns (see the header comment): out[arm]
// for arm in live (n_live >= 2), nodes [r0, r1); pre is scratch of n_live * (r1 - r0).
inline void beta_grid_combine(const BetaGridNodes& g, const int64_t* live, int64_t n_live,
                              const double* const* fh, const double* const* Fh, int64_t r0,
                              int64_t r1, double* __restrict pre, double* __restrict suf,
                              double* __restrict prob, double* out) {
  const int64_t w = r1 - r0;
  // pre_j = prod over live arms before j of F, per node
  for (int64_t i = 0; i < w; ++i) pre[i] = 1.0;
  for (int64_t j = 1; j < n_live; ++j) {
    const double* __restrict prev = pre + (j - 1) * w;
    double* __restrict cur = pre + j * w;
    const double* __restrict F = Fh[j - 1] + r0;
    for (int64_t i = 0; i < w; ++i) cur[i] = prev[i] * F[i];
  }
  for (int64_t i = 0; i < w; ++i) suf[i] = 1.0;
  const double* __restrict wt = g.wt.data() + r0;
  double total = 0.0;
  for (int64_t j = n_live - 1; j >= 0; --j) {
    const double* __restrict f = fh[j] + r0;
    const double* __restrict F = Fh[j] + r0;
    const double* __restrict pj = pre + j * w;
    double acc[kGridLanes] = {0.0, 0.0, 0.0, 0.0};
    int64_t i = 0;
    for (; i + kGridLanes <= w; i += kGridLanes) {
      for (int l = 0; l < kGridLanes; ++l) {
        acc[l] += wt[i + l] * f[i + l] * (pj[i + l] * suf[i + l]);
        suf[i + l] = suf[i + l] * F[i + l];
      }
    }
    for (int l = 0; i < w; ++i, ++l) {
      acc[l] += wt[i] * f[i] * (pj[i] * suf[i]);
      suf[i] = suf[i] * F[i];
    }
    prob[j] = (acc[0] + acc[1]) + (acc[2] + acc[3]);
  }
  for (int64_t j = 0; j < n_live; ++j) total += prob[j];
  for (int64_t j = 0; j < n_live; ++j) out[live[j]] = prob[j] / total;
}

// First node with x > top_lo, and the end of the nodes with x < top_hi (x ascending).
inline void beta_grid_window(const BetaGridNodes& g, double top_lo, double top_hi, int64_t* r0,
                             int64_t* r1) {
  int64_t lo = 0, hi = g.n_nodes;
  while (lo < hi) {  // first x > top_lo
    const int64_t mid = (lo + hi) / 2;
    if (g.x[mid] > top_lo) hi = mid; else lo = mid + 1;
  }
  *r0 = lo;
  hi = g.n_nodes;
  while (lo < hi) {  // first x >= top_hi
    const int64_t mid = (lo + hi) / 2;
    if (g.x[mid] >= top_hi) hi = mid; else lo = mid + 1;
  }
  *r1 = lo;
}

// The eligible arms' (alpha, beta) and ranges; top_lo, top_hi over them; the live arms.
struct BetaGridArms {
  std::vector<double> a, b;
  std::vector<BetaRange> r;
  std::vector<int64_t> elig, live;
  double top_lo = 0.0, top_hi = 0.0;
};

// The incremental cache: the grid of the last snapshot seen and every arm's column.
struct BetaGrid {
  std::vector<double> snap;  // the snapshot the nodes were built from (K x 2)
  BetaGridNodes nodes;
  bool built = false;
  std::vector<double> col_ab;  // K x 2: the (alpha, beta) of each column; alpha 0: none
  std::vector<uint8_t> col_ok;  // whether the grid resolves that arm
  std::vector<double> fh, Fh;  // K x n_nodes, arm-major
  std::vector<double> pre, suf, prob;  // combination scratch
  std::vector<const double*> fcols, Fcols;
  BetaGridArms arms;
  int64_t columns_computed = 0;  // a count for tests: columns recomputed so far
  int64_t grids_built = 0;       // and grids built

  void use_snapshot(const double* s, int64_t K) {
    bool same = built && static_cast<int64_t>(snap.size()) == 2 * K;
    for (int64_t i = 0; same && i < 2 * K; ++i) same = snap[i] == s[i];
    if (same) return;
    snap.assign(s, s + 2 * K);
    nodes.build(s, K);
    built = true;
    ++grids_built;
    col_ab.assign(static_cast<size_t>(2 * K), 0.0);
    col_ok.assign(static_cast<size_t>(K), 0);
    fh.assign(static_cast<size_t>(K * nodes.n_nodes), 0.0);
    Fh.assign(static_cast<size_t>(K * nodes.n_nodes), 0.0);
  }

  bool has_column(int64_t k, double a, double b) const {
    return col_ab[2 * k] == a && col_ab[2 * k + 1] == b;
  }

  void compute_column(int64_t k, double a, double b, const BetaRange& r) {
    const int64_t N = nodes.n_nodes;
    nodes.column(a, b, r, fh.data() + k * N, Fh.data() + k * N);
    col_ab[2 * k] = a;
    col_ab[2 * k + 1] = b;
    col_ok[k] = nodes.resolves(r) ? 1 : 0;
    ++columns_computed;
  }
};

// ab: K x 2 posteriors, elig: K flags. Fills arms; returns the number of live arms.
inline int64_t beta_grid_arms(const double* ab, const uint8_t* elig, int64_t K, BetaGridArms& s) {
  s.a.assign(static_cast<size_t>(K), 0.0);
  s.b.assign(static_cast<size_t>(K), 0.0);
  s.r.resize(static_cast<size_t>(K));
  s.elig.clear();
  s.live.clear();
  s.top_lo = 0.0;
  s.top_hi = 0.0;
  bool first = true;
  for (int64_t k = 0; k < K; ++k) {
    if (!elig[k]) continue;
    s.a[k] = ab[2 * k];
    s.b[k] = ab[2 * k + 1];
    s.r[k] = beta_range(s.a[k], s.b[k]);
    s.elig.push_back(k);
    if (first || s.r[k].lo > s.top_lo) s.top_lo = s.r[k].lo;
    first = false;
  }
  first = true;
  for (int64_t k : s.elig) {
    if (s.r[k].hi > s.top_lo) {
      s.live.push_back(k);
      if (first || s.r[k].hi > s.top_hi) s.top_hi = s.r[k].hi;
      first = false;
    }
  }
  return static_cast<int64_t>(s.live.size());
}

// The win probabilities of the eligible arms (ab: K x 2 posteriors, elig: K flags, at
// least one) into out (0 for the others), through the cache; snap (K x 2, the state's
// quad_grid) is replaced when the grid does not resolve every live arm.
inline void beta_grid_propensities(BetaGrid& c, const double* ab, const uint8_t* elig, int64_t K,
                                   double* snap, double* out) {
  BetaGridArms& s = c.arms;  // scratch kept between calls: no allocation per call
  const int64_t n_live = beta_grid_arms(ab, elig, K, s);
  for (int64_t k = 0; k < K; ++k) out[k] = 0.0;
  if (n_live == 1) {  // as quad_max_propensities: the only arm that can win
    out[s.live[0]] = 1.0;
    return;
  }
  bool have = false;
  for (int64_t i = 0; i < 2 * K && !have; ++i) have = snap[i] != 0.0;
  bool ok = have;
  if (have) {
    c.use_snapshot(snap, K);
    for (int64_t k : s.live) {
      if (!c.has_column(k, s.a[k], s.b[k])) c.compute_column(k, s.a[k], s.b[k], s.r[k]);
      if (!c.col_ok[k]) {
        ok = false;
        break;
      }
    }
  }
  if (!ok) {  // a new snapshot: the eligible arms' current posteriors
    for (int64_t k = 0; k < K; ++k) {
      snap[2 * k] = elig[k] ? s.a[k] : 0.0;
      snap[2 * k + 1] = elig[k] ? s.b[k] : 0.0;
    }
    c.use_snapshot(snap, K);
  }
  const int64_t N = c.nodes.n_nodes;
  c.fcols.resize(static_cast<size_t>(n_live));
  c.Fcols.resize(static_cast<size_t>(n_live));
  c.prob.resize(static_cast<size_t>(n_live));
  for (int64_t j = 0; j < n_live; ++j) {
    const int64_t k = s.live[j];
    if (!c.has_column(k, s.a[k], s.b[k])) c.compute_column(k, s.a[k], s.b[k], s.r[k]);
    c.fcols[j] = c.fh.data() + k * N;
    c.Fcols[j] = c.Fh.data() + k * N;
  }
  int64_t r0, r1;
  beta_grid_window(c.nodes, s.top_lo, s.top_hi, &r0, &r1);
  const int64_t w = r1 > r0 ? r1 - r0 : 0;
  c.pre.resize(static_cast<size_t>(n_live * w));
  c.suf.resize(static_cast<size_t>(w));
  beta_grid_combine(c.nodes, s.live.data(), n_live, c.fcols.data(), c.Fcols.data(), r0, r0 + w,
                    c.pre.data(), c.suf.data(), c.prob.data(), out);
  for (int64_t k : s.elig) {
    if (out[k] < kQuadFloor) out[k] = kQuadFloor;
  }
}

}  // namespace promobandit
