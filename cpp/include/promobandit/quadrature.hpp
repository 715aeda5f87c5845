// Exact Thompson-sampling propensities by quadrature, instead of counting wins over
// posterior draws.
//
// With independent scores X_b (a Beta posterior draw shifted by a bias, or a normal
// score), the probability that X_a is the largest is
//     P(a) = integral of f_a(x) * prod_{b != a} F_b(x) dx,
// one integral per arm, all of them over one set of nodes here:
//   * each score's range is its mean +- kQuadSpanSd standard deviations, clipped to
//     its support; below the largest lower end no score can win, and a score whose
//     range ends there gets 0 (its true value is below the tail mass, ~1e-20);
//   * the ranges' ends cut the axis into segments, each split into panels at most
//     kQuadPanelSd standard deviations of the narrowest score covering it, so every
//     density is smooth on the scale of a panel;
//   * on each panel a 6-point Gauss-Legendre rule integrates; F_b at the nodes comes
//     from the same node values through the rule's cumulative-integration matrix
//     (exact for polynomials of degree 5), the densities are unnormalised (log density
//     minus its value at the mean) and each F_b is normalised by its own total, so no
//     log-Beta function is needed;
//   * the propensities are normalised to sum to 1 and floored at kQuadFloor, so an
//     arm that can win is never logged with propensity 0.
// The error against 10^6-draw Monte Carlo is below 0.003 absolute on the states in
// tests/test_propensity_quadrature.py (Beta shapes >= 1, counts up to 10^4, biases,
// normal scores); a Beta shape below 1 puts an infinite density at the support's end,
// which the fixed panels resolve less well (0.02 off in the one such state measured).
// The cost is 2-70 microseconds for K = 10 (more when the posteriors' widths differ a
// lot: the narrow ones set the panels), and no draws at all.
// Mirrored operation for operation in python/promobandit/_numba/quadrature.py.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#include <immintrin.h>
#endif

#include "promobandit/phi_table.hpp"

namespace promobandit {

enum QuadFamily : int { kQuadBeta = 0, kQuadNormal = 1 };

constexpr double kQuadSpanSd = 12.0;   // each score's range: mean +- this many sds
constexpr double kQuadPanelSd = 2.0;   // panel width: at most this many sds (narrowest score)
constexpr int64_t kQuadMaxPanels = 4096;  // cap on panels per call (wider panels beyond it)
constexpr double kQuadFloor = 1e-12;   // smallest propensity given to an eligible arm
constexpr int kQuadNodes = 6;

// 6-point Gauss-Legendre on [0, 1]: nodes, weights, and kQuadS[i][j] = integral from 0 to
// node i of the j-th Lagrange basis polynomial (cumulative integrals at the nodes).
inline constexpr double kQuadT[kQuadNodes] = {0.03376524289842403, 0.16939530676686776,
                                              0.38069040695840156, 0.6193095930415985,
                                              0.8306046932331322,  0.9662347571015759};
inline constexpr double kQuadW[kQuadNodes] = {0.08566224618958514, 0.18038078652406936,
                                              0.23395696728634552, 0.23395696728634552,
                                              0.18038078652406936, 0.08566224618958514};
inline constexpr double kQuadS[kQuadNodes][kQuadNodes] = {
    {0.04283112309479248, -0.01476372599719705, 0.00932505070647724, -0.00566885804948314,
     0.00285443331509915, -0.00081278017126471},
    {0.09267349143037971, 0.09019039326203344, -0.0203001022932373, 0.01036315624024471,
     -0.00488719292803692, 0.00135556105548489},
    {0.08224792261284486, 0.1960321623332472, 0.11697848364317483, -0.02048252774565842,
     0.00798999189966241, -0.00207562578486614},
    {0.08773787197445339, 0.17239079462441312, 0.2544394950319984, 0.11697848364317057,
     -0.01565137580917854, 0.00341432357674248},
    {0.08430668513410124, 0.18526797945212342, 0.22359381104608458, 0.25425706957958205,
     0.0901903932620232, -0.00701124524078999},
    {0.0864750263608505, 0.1775263532089931, 0.23962582533580185, 0.22463191657987058,
     0.19514451252124712, 0.04283112309479839},
};

// Unnormalised log density of one score at x: Beta(p0, p1) shifted by `shift` (minus
// `off`, its log density at the mean), or N(p0, p1^2).
inline double quad_log_density(int family, double p0, double p1, double shift, double off,
                               double x) {
  if (family == kQuadBeta) {
    const double y = x - shift;
    return (p0 - 1.0) * std::log(y) + (p1 - 1.0) * std::log(1.0 - y) - off;
  }
  const double z = (x - p0) / p1;
  return -0.5 * (z * z);
}

// Mean, sd and range (mean +- span sds, clipped to [0, 1]) of Beta(a, b): the per-call
// quadrature's (span kQuadSpanSd) and the node grid's (beta_grid.hpp) alike.
struct QuadBetaRange {
  double m, sd, lo, hi;
};

inline QuadBetaRange quad_beta_range(double a, double b, double span) {
  QuadBetaRange r;
  r.m = a / (a + b);
  r.sd = std::sqrt(a * b / ((a + b) * (a + b) * (a + b + 1.0)));
  double lo = r.m - span * r.sd;
  double hi = r.m + span * r.sd;
  if (lo < 0.0) lo = 0.0;
  if (hi > 1.0) hi = 1.0;
  r.lo = lo;
  r.hi = hi;
  return r;
}

// The panels of a quadrature over n ranges [lo, hi] with widths sd (entries idx[j], or
// j when idx is nullptr): ends (2 n) gets the ranges' ends sorted ascending (insertion
// sort: n is small), and each of the 2 n - 1 segments between them is split into panels
// of at most panel_sd sds of the narrowest range covering it (seg_np; 0 for an empty
// segment). Beyond max_panels in all, every segment's count shrinks in proportion (a
// segment asking for more than max_panels on its own, only from a degenerate sd, is
// first held to max_panels, so no count overflows). Returns the total. One layout for
// the per-call quadrature below and the node grid kept between updates (beta_grid.hpp).
inline int64_t quad_panel_layout(const double* lo, const double* hi, const double* sd,
                                 const int64_t* idx, int64_t n, double panel_sd,
                                 int64_t max_panels, double* ends, int64_t* seg_np) {
  for (int64_t j = 0; j < n; ++j) {
    const int64_t i = idx ? idx[j] : j;
    ends[2 * j] = lo[i];
    ends[2 * j + 1] = hi[i];
  }
  for (int64_t j = 1; j < 2 * n; ++j) {
    const double v = ends[j];
    int64_t k = j - 1;
    while (k >= 0 && ends[k] > v) {
      ends[k + 1] = ends[k];
      --k;
    }
    ends[k + 1] = v;
  }
  const int64_t n_seg = 2 * n - 1;
  int64_t total = 0;
  for (int64_t g = 0; g < n_seg; ++g) {
    seg_np[g] = 0;
    const double e0 = ends[g], e1 = ends[g + 1];
    if (!(e1 > e0)) continue;
    double width = e1 - e0;
    for (int64_t j = 0; j < n; ++j) {
      const int64_t i = idx ? idx[j] : j;
      if (lo[i] <= e0 && hi[i] >= e1 && panel_sd * sd[i] < width) width = panel_sd * sd[i];
    }
    double q = std::ceil((e1 - e0) / width);
    if (!(q <= static_cast<double>(max_panels))) q = static_cast<double>(max_panels);
    int64_t np_g = static_cast<int64_t>(q);
    if (np_g < 1) np_g = 1;
    seg_np[g] = np_g;
    total += np_g;
  }
  if (total > max_panels) {  // wider panels everywhere, in proportion
    const int64_t old = total;
    total = 0;
    for (int64_t g = 0; g < n_seg; ++g) {
      if (seg_np[g] > 0) {
        const int64_t np_g = (seg_np[g] * max_panels) / old;
        seg_np[g] = np_g > 0 ? np_g : 1;
        total += seg_np[g];
      }
    }
  }
  return total;
}

// out[arms[i]] = P(score i is the largest) for the n scores (p0, p1, shift)[i]:
// Beta(p0, p1) + shift, or N(p0, p1^2) (shift unused; every p1 > 0).
inline void quad_max_propensities(int family, const double* p0, const double* p1,
                                  const double* shift, const int64_t* arms, int64_t n,
                                  double* out) {
  std::vector<double> cen(n), sd(n), lo(n), hi(n), off(n, 0.0);
  for (int64_t i = 0; i < n; ++i) {
    if (family == kQuadBeta) {
      const double a = p0[i], b = p1[i];
      const QuadBetaRange r = quad_beta_range(a, b, kQuadSpanSd);
      off[i] = (a - 1.0) * std::log(r.m) + (b - 1.0) * std::log(1.0 - r.m);  // at the mean
      cen[i] = r.m + shift[i];
      sd[i] = r.sd;
      lo[i] = r.lo + shift[i];
      hi[i] = r.hi + shift[i];
    } else {
      cen[i] = p0[i];
      sd[i] = p1[i];
      lo[i] = p0[i] - kQuadSpanSd * p1[i];
      hi[i] = p0[i] + kQuadSpanSd * p1[i];
    }
  }
  // Below the largest lower end some score is surely above x: no score wins there.
  double top_lo = lo[0];
  for (int64_t i = 1; i < n; ++i) {
    if (lo[i] > top_lo) top_lo = lo[i];
  }
  std::vector<int64_t> live(n);
  int64_t n_live = 0;
  for (int64_t i = 0; i < n; ++i) {
    out[arms[i]] = 0.0;
    if (hi[i] > top_lo) live[n_live++] = i;
  }
  if (n_live == 1) {
    out[arms[live[0]]] = 1.0;
    return;
  }
  // Segment ends and panels per segment: at most kQuadPanelSd sds of the narrowest live
  // score covering it.
  const int64_t n_seg = 2 * n_live - 1;
  std::vector<double> ev(2 * n_live);
  std::vector<int64_t> seg_panels(n_seg, 0);
  const int64_t total = quad_panel_layout(lo.data(), hi.data(), sd.data(), live.data(), n_live,
                                          kQuadPanelSd, kQuadMaxPanels, ev.data(),
                                          seg_panels.data());
  const int64_t n_nodes = total * kQuadNodes;
  std::vector<double> wt(n_nodes), f(n_nodes * n_live), F(n_nodes * n_live), cum(n_live, 0.0);
  double fp[kQuadNodes], lx[kQuadNodes], l1x[kQuadNodes];
  int64_t node = 0;
  for (int64_t g = 0; g < n_seg; ++g) {
    const int64_t np_g = seg_panels[g];
    if (np_g == 0) continue;
    const double e0 = ev[g], e1 = ev[g + 1];
    const double h = (e1 - e0) / static_cast<double>(np_g);
    for (int64_t q = 0; q < np_g; ++q) {
      const double left = e0 + static_cast<double>(q) * h;
      if (family == kQuadBeta) {  // shared by every unshifted score (x - 0.0 == x)
        for (int t = 0; t < kQuadNodes; ++t) {
          const double x = left + h * kQuadT[t];
          if (x > 0.0 && x < 1.0) {
            lx[t] = std::log(x);
            l1x[t] = std::log(1.0 - x);
          }
        }
      }
      for (int64_t j = 0; j < n_live; ++j) {
        const int64_t i = live[j];
        if (!(lo[i] < e1 && hi[i] > e0)) {  // the segment is outside this score's range
          for (int t = 0; t < kQuadNodes; ++t) {
            F[(node + t) * n_live + j] = cum[j];
            f[(node + t) * n_live + j] = 0.0;
          }
          continue;
        }
        for (int t = 0; t < kQuadNodes; ++t) {
          const double x = left + h * kQuadT[t];
          if (x > lo[i] && x < hi[i]) {
            double ld;
            if (family == kQuadBeta && shift[i] == 0.0) {
              ld = (p0[i] - 1.0) * lx[t] + (p1[i] - 1.0) * l1x[t] - off[i];
            } else {
              ld = quad_log_density(family, p0[i], p1[i], shift[i], off[i], x);
            }
            fp[t] = std::exp(ld);
          } else {
            fp[t] = 0.0;
          }
        }
        for (int t = 0; t < kQuadNodes; ++t) {
          double acc = 0.0;
          for (int u = 0; u < kQuadNodes; ++u) acc += kQuadS[t][u] * fp[u];
          const double c = cum[j] + h * acc;
          F[(node + t) * n_live + j] = c > 0.0 ? c : 0.0;
          f[(node + t) * n_live + j] = fp[t];
        }
        double acc = 0.0;
        for (int t = 0; t < kQuadNodes; ++t) acc += kQuadW[t] * fp[t];
        cum[j] += h * acc;
      }
      for (int t = 0; t < kQuadNodes; ++t) wt[node + t] = h * kQuadW[t];
      node += kQuadNodes;
    }
  }
  // P_a = sum over nodes of wt * f_a / Z_a * prod_{b != a} F_b / Z_b (prefix/suffix products).
  std::vector<double> prob(n_live, 0.0), pre(n_live + 1);
  for (int64_t r = 0; r < n_nodes; ++r) {
    const double* Fr = F.data() + r * n_live;
    const double* fr = f.data() + r * n_live;
    pre[0] = 1.0;
    for (int64_t j = 0; j < n_live; ++j) pre[j + 1] = pre[j] * (Fr[j] / cum[j]);
    double suf = 1.0;
    for (int64_t j = n_live - 1; j >= 0; --j) {
      if (fr[j] > 0.0) prob[j] += wt[r] * (fr[j] / cum[j]) * (pre[j] * suf);
      suf = suf * (Fr[j] / cum[j]);
    }
  }
  double s = 0.0;
  for (int64_t j = 0; j < n_live; ++j) s += prob[j];
  for (int64_t j = 0; j < n_live; ++j) out[arms[live[j]]] = prob[j] / s;
  for (int64_t i = 0; i < n; ++i) {
    if (out[arms[i]] < kQuadFloor) out[arms[i]] = kQuadFloor;
  }
}

// n values on the stack up to N, on the heap beyond: no allocation per decision for the
// usual handful of arms.
template <class T, size_t N>
class QuadSmallBuf {
 public:
  explicit QuadSmallBuf(int64_t n) : p_(buf_) {
    if (n > static_cast<int64_t>(N)) {
      heap_.resize(static_cast<size_t>(n));
      p_ = heap_.data();
    }
  }
  QuadSmallBuf(const QuadSmallBuf&) = delete;
  QuadSmallBuf& operator=(const QuadSmallBuf&) = delete;
  T& operator[](int64_t i) { return p_[i]; }
  const T& operator[](int64_t i) const { return p_[i]; }
  T* data() { return p_; }
  const T* data() const { return p_; }

 private:
  T buf_[N];
  std::vector<T> heap_;
  T* p_;
};

// ---- Normal scores, one arm at a time: the LinTS propensity of the chosen arm ----------
//
// For independent normal scores N(m_i, sd_i^2) (every sd > 0) the probability that
// score t is the largest is one integral,
//     P(t) = integral of phi((x - m_t) / sd_t) / sd_t * prod_{i != t} Phi((x - m_i) / sd_i) dx,
// with Phi from a table and its Taylor series (quad_phi), so a decision's propensity
// needs its own arm's integral only:
//   * x runs over t's range m_t +- kQuadNormalSpanSd sd_t, from the largest lower end of
//     the other ranges (below it some score is above x but for a tail of Phi(-6) = 1e-9);
//   * a score whose range ends below that point is dropped (its Phi is 1 to within 1e-9
//     there); Phi(z) above kQuadNormalPhiOneZ is 1.0 (its distance to 1 is below half an
//     ulp), and a node whose running product falls below kQuadNormalNegligible adds 0
//     (the live scores multiplied in, highest mean first, so that happens early; at most
//     kQuadNormalMaxPanels x 6 nodes, so what is dropped stays below 4e-11 in all);
//   * uniform panels at most kQuadNormalPanelSd sds of the narrowest live score wide,
//     each with the 6-point Gauss-Legendre rule above; more than kQuadNormalMaxPanels of
//     them (a score far narrower than the target's) and quad_max_propensities decides.
// Error: the K integrals of a state must sum to 1 within the 1e-6 that a logged action
// distribution is checked against (evaluate/log.py), since each is logged unnormalised
// (a decision computes its own arm's only). Over 1,500 random states (2-10 scores, sds
// spread up to e^+-2, measured when this was written) 1.5-sd panels give sums within
// 8.4e-8 of 1 and values within 3.3e-7 of quad_max_propensities (2-sd panels: 1.6e-6,
// too loose; 4-sd: 6e-4); with quad_phi and the 1e-13 cut, 1,500 such states (n uniform
// in 2..10, means N(0, 0.5^2), sds 0.3 e^U(-2,2)) gave sums within 8.8e-9 of 1 and values
// within 2.4e-8. Cost for K = 10 with similar sds: 8 panels x 6 nodes x at most 9
// quad_phi, 8 scores at a time in AVX-512 lanes where the CPU has them (quad_phi8_avx512);
// a one-at-a-time LinTS decision with this propensity cost 2.3 us more than without (it
// was 8 us with erfc one score at a time).
// Mirrored operation for operation in _numba/quadrature.py (normal_propensity).
constexpr double kQuadNormalSpanSd = 6.0;
constexpr double kQuadNormalPanelSd = 1.5;
constexpr int64_t kQuadNormalMaxPanels = 64;
constexpr double kQuadNormalPhiOneZ = 8.3;
constexpr double kQuadNormalNegligible = 1e-13;
constexpr double kQuadInvSqrt2Pi = 0.3989422804014327;

// Phi(z), the standard normal CDF, for z < kQuadNormalPhiOneZ, from the table of
// phi_table.hpp (Phi and phi at z0 = -8.5 + i / 64): the Taylor series of order 6 around
// the nearest table point, |e| = |z - z0| <= 1/128,
//   Phi(z0 + e) = Phi(z0) + phi(z0) e (1 + e (-He1/2 + e (He2/6 + e (-He3/24
//                 + e (He4/120 - e He5/720))))),
// He_k the Hermite polynomials at z0 (the k-th derivative of phi is (-1)^k He_k phi); the
// first term left out is below 1e-18. No exp or erfc: about a quarter of erfc's time, and
// IEEE operations only, so the Numba mirror (_numba/quadrature.py: phi) gives the same
// bits. 0 below the table (Phi(-8.5) = 1e-17: the running product then stops).
constexpr double kQuadInv6 = 1.0 / 6.0;
constexpr double kQuadInv24 = 1.0 / 24.0;
constexpr double kQuadInv120 = 1.0 / 120.0;
constexpr double kQuadInv720 = 1.0 / 720.0;

inline double quad_phi(double z) {
  const double t = (z - phi_table::kZ0) * phi_table::kScale + 0.5;
  if (!(t >= 0.0)) return 0.0;
  int64_t i = static_cast<int64_t>(t);
  if (i >= phi_table::kPoints) i = phi_table::kPoints - 1;
  const double z0 = phi_table::kZ0 + static_cast<double>(i) / phi_table::kScale;
  const double e = z - z0;
  const double h2 = z0 * z0 - 1.0;
  const double h3 = z0 * h2 - 2.0 * z0;
  const double h4 = z0 * h3 - 3.0 * h2;
  const double h5 = z0 * h4 - 4.0 * h3;
  double p = h4 * kQuadInv120 - e * (h5 * kQuadInv720);
  p = e * p - h3 * kQuadInv24;
  p = e * p + h2 * kQuadInv6;
  p = e * p - 0.5 * z0;
  p = e * p + 1.0;
  return phi_table::kCdf[i] + phi_table::kPdf[i] * (e * p);
}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define PB_QUAD_AVX512 1
// GCC 12's AVX-512 intrinsics pass undefined vectors as unused merge sources, which
// -Wuninitialized reports from inside the intrinsic headers.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
// Factor j of node x for the 8 live scores (mean lm[j], sd ls[j]) of a block, in lanes:
// quad_phi((x - lm[j]) / ls[j]) where that z is below kQuadNormalPhiOneZ, else 1.0 (the
// scalar loop multiplies nothing there, and prod * 1.0 is prod). The same IEEE operations
// per lane as quad_phi (no FMA), so the same bits.
__attribute__((target("avx512f"))) inline void quad_phi8_avx512(double x, const double* lm,
                                                               const double* ls,
                                                               double* out) {
  const __m512d z = _mm512_div_pd(_mm512_sub_pd(_mm512_set1_pd(x), _mm512_loadu_pd(lm)),
                                  _mm512_loadu_pd(ls));
  const __mmask8 below = _mm512_cmp_pd_mask(z, _mm512_set1_pd(kQuadNormalPhiOneZ),
                                            _CMP_LT_OQ);
  const __m512d t = _mm512_add_pd(
      _mm512_mul_pd(_mm512_sub_pd(z, _mm512_set1_pd(phi_table::kZ0)),
                    _mm512_set1_pd(phi_table::kScale)),
      _mm512_set1_pd(0.5));
  const __mmask8 inside = _mm512_cmp_pd_mask(t, _mm512_setzero_pd(), _CMP_GE_OQ);
  const __m512d tc = _mm512_min_pd(
      _mm512_mask_blend_pd(inside, _mm512_setzero_pd(), t),
      _mm512_set1_pd(static_cast<double>(phi_table::kPoints - 1)));
  const __m256i i = _mm512_cvttpd_epi32(tc);
  const __m512d z0 = _mm512_add_pd(_mm512_set1_pd(phi_table::kZ0),
                                   _mm512_div_pd(_mm512_cvtepi32_pd(i),
                                                 _mm512_set1_pd(phi_table::kScale)));
  const __m512d e = _mm512_sub_pd(z, z0);
  const __m512d h2 = _mm512_sub_pd(_mm512_mul_pd(z0, z0), _mm512_set1_pd(1.0));
  const __m512d h3 = _mm512_sub_pd(_mm512_mul_pd(z0, h2),
                                   _mm512_mul_pd(_mm512_set1_pd(2.0), z0));
  const __m512d h4 = _mm512_sub_pd(_mm512_mul_pd(z0, h3),
                                   _mm512_mul_pd(_mm512_set1_pd(3.0), h2));
  const __m512d h5 = _mm512_sub_pd(_mm512_mul_pd(z0, h4),
                                   _mm512_mul_pd(_mm512_set1_pd(4.0), h3));
  __m512d p = _mm512_sub_pd(_mm512_mul_pd(h4, _mm512_set1_pd(kQuadInv120)),
                            _mm512_mul_pd(e, _mm512_mul_pd(h5, _mm512_set1_pd(kQuadInv720))));
  p = _mm512_sub_pd(_mm512_mul_pd(e, p), _mm512_mul_pd(h3, _mm512_set1_pd(kQuadInv24)));
  p = _mm512_add_pd(_mm512_mul_pd(e, p), _mm512_mul_pd(h2, _mm512_set1_pd(kQuadInv6)));
  p = _mm512_sub_pd(_mm512_mul_pd(e, p), _mm512_mul_pd(_mm512_set1_pd(0.5), z0));
  p = _mm512_add_pd(_mm512_mul_pd(e, p), _mm512_set1_pd(1.0));
  const __m512d cdf = _mm512_i32gather_pd(i, phi_table::kCdf, 8);
  const __m512d pdf = _mm512_i32gather_pd(i, phi_table::kPdf, 8);
  __m512d phi = _mm512_add_pd(cdf, _mm512_mul_pd(pdf, _mm512_mul_pd(e, p)));
  phi = _mm512_mask_blend_pd(inside, _mm512_setzero_pd(), phi);
  phi = _mm512_mask_blend_pd(below, _mm512_set1_pd(1.0), phi);
  _mm512_storeu_pd(out, phi);
}
#pragma GCC diagnostic pop

inline bool quad_cpu_has_avx512() {
  static const bool has = __builtin_cpu_supports("avx512f");
  return has;
}
#endif

inline double quad_normal_propensity(const double* m, const double* sd, int64_t n,
                                     int64_t target) {
  const double mt = m[target], st = sd[target];
  double lo = mt - kQuadNormalSpanSd * st;
  const double hi = mt + kQuadNormalSpanSd * st;
  for (int64_t i = 0; i < n; ++i) {
    if (i == target) continue;
    const double lo_i = m[i] - kQuadNormalSpanSd * sd[i];
    if (lo_i > lo) lo = lo_i;
  }
  if (!(hi > lo)) return kQuadFloor;
  QuadSmallBuf<int64_t, 32> live(n);
  int64_t n_live = 0;
  double h_sd = st;
  for (int64_t i = 0; i < n; ++i) {
    if (i != target && m[i] + kQuadNormalSpanSd * sd[i] > lo) {
      // Insertion by mean, highest first (ties: lower index first): at a node below the
      // top scores the running product falls below kQuadNormalNegligible after the
      // first few factors and the node stops there.
      int64_t j = n_live++;
      while (j > 0 && m[live[j - 1]] < m[i]) {
        live[j] = live[j - 1];
        --j;
      }
      live[j] = i;
      if (sd[i] < h_sd) h_sd = sd[i];
    }
  }
  int64_t n_panels = static_cast<int64_t>(std::ceil((hi - lo) / (kQuadNormalPanelSd * h_sd)));
  if (n_panels < 1) n_panels = 1;
  if (n_panels > kQuadNormalMaxPanels) {
    std::vector<int64_t> arms(static_cast<size_t>(n));
    std::vector<double> zero(static_cast<size_t>(n), 0.0), out(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) arms[static_cast<size_t>(i)] = i;
    quad_max_propensities(kQuadNormal, m, sd, zero.data(), arms.data(), n, out.data());
    return out[static_cast<size_t>(target)];
  }
  const double h = (hi - lo) / static_cast<double>(n_panels);
  const double dens = kQuadInvSqrt2Pi / st;
  double total = 0.0;
  // Where the CPU has AVX-512 and 4 or more scores are live, every live score's factor of
  // a node is computed at once, 8 lanes at a time (quad_phi8_avx512: the same operations
  // per score as quad_phi, and 1.0 where quad_phi is skipped), then multiplied in the same
  // order as one at a time.
  bool lanes = false;
#ifdef PB_QUAD_AVX512
  lanes = n_live >= 4 && quad_cpu_has_avx512();
#endif
  const int64_t padded = lanes ? (n_live + 7) / 8 * 8 : 0;
  QuadSmallBuf<double, 32> lm(padded), ls(padded), f(padded);
  for (int64_t j = 0; j < padded; ++j) {
    lm[j] = j < n_live ? m[live[j]] : 0.0;
    ls[j] = j < n_live ? sd[live[j]] : 1.0;
  }
  for (int64_t q = 0; q < n_panels; ++q) {
    const double left = lo + static_cast<double>(q) * h;
    for (int t = 0; t < kQuadNodes; ++t) {
      const double x = left + h * kQuadT[t];
      const double z = (x - mt) / st;
      double prod = (h * kQuadW[t]) * (dens * std::exp(-0.5 * (z * z)));
#ifdef PB_QUAD_AVX512
      for (int64_t j0 = 0; j0 < padded; j0 += 8) {
        quad_phi8_avx512(x, lm.data() + j0, ls.data() + j0, f.data() + j0);
      }
#endif
      for (int64_t j = 0; j < n_live; ++j) {
        if (lanes) {
          prod *= f[j];
        } else {
          const int64_t i = live[j];
          const double zi = (x - m[i]) / sd[i];
          if (zi < kQuadNormalPhiOneZ) prod *= quad_phi(zi);
        }
        if (prod < kQuadNormalNegligible) {
          prod = 0.0;
          break;
        }
      }
      total += prod;
    }
  }
  if (total < kQuadFloor) return kQuadFloor;
  return total < 1.0 ? total : 1.0;
}

}  // namespace promobandit
