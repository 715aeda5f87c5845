// Disjoint linear bandits: LinUCB (Li et al., 2010) and linear Thompson sampling
// (Agrawal & Goyal, 2013), one ridge-regression model per arm.
//
// Per arm: A = lambda*I + sum w x x^T (precision), b = sum w r x, and A^{-1},
// theta = A^{-1} b kept current by Sherman-Morrison rank-one updates, with an
// exact refresh (Cholesky inverse of A) every `refresh_every` updates of that arm
// so rounding cannot drift. The batch loops (rows over threads, each thread with its
// own scratch), the Thompson propensity estimate and the scratch layout live here
// too, so cpp/tests/ reaches them and the binding only checks, converts and calls.
// Mirrored in python/promobandit/_numba/linear.py.
#pragma once

#include <cmath>
#include <exception>
#include <cstdint>
#include <limits>
#include <algorithm>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#include <immintrin.h>
#endif

#include "promobandit/linalg.hpp"
#include "promobandit/multiarmed.hpp"  // bias_of
#include "promobandit/parallel.hpp"
#include "promobandit/quadrature.hpp"
#include "promobandit/rng.hpp"
#include "promobandit/state.hpp"

// The row loops are compiled twice, for AVX2 and for baseline x86-64, and picked at
// load time (GCC function multiversioning; no -march in a wheel). FMA stays off
// (-ffp-contract=off, and "avx2" does not enable it), so both versions give the same
// bits as each other and as the Numba backend.
// An exception must never leave a multiversioned function: GCC (12 here) calls a
// target_clones function through a dispatcher it treats as nothrow, so a throw inside
// (a refresh that finds A no longer positive definite, an allocation) reached
// std::terminate and ended the Python process. The clones (*_mv) catch everything and
// hand it back; the plain functions below them rethrow it in the caller.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define PB_MULTIVERSION __attribute__((target_clones("avx2", "default")))
#else
#define PB_MULTIVERSION
#endif

namespace promobandit {

struct LinParams {
  int kind = kLinUCB;
  double decay = 1.0;          // gamma in (0, 1]; see lin_update
  double exploration = 1.0;    // LinUCB: alpha (width of the bound); LinTS: v (posterior scale)
  double ridge = 1.0;          // lambda: prior precision of every weight
  int64_t refresh_every = 64;  // exact refresh of an arm's inverse after this many of its updates
  int64_t propensity_draws = 0;
  uint64_t seed = 0;
  // kPropensityQuadrature: LinTS propensities exact by quadrature over the normal
  // scores (quadrature.hpp) instead of counted over propensity_draws draws.
  int propensity_method = kPropensityDraws;
  bool first_on_ties = false;  // exact ties to the lowest id instead of at random
  // Batch-update mode "accumulate": update_batch adds the batch's sums to A and b, then
  // refreshes A^{-1} and theta exactly once per arm (lin_accumulate_rows); false keeps
  // the sequential Sherman-Morrison rows (lin_update_rows). Single updates are unchanged.
  bool batch_accumulate = false;
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

// Rows scored together by lin_moments_block: the lanes of its vectorised loops.
constexpr int64_t kLinRowBlock = 8;

// Scratch the caller owns: K means, K variances, d for A^{-1} x, 2 d^2 for inversion,
// then a block of kLinRowBlock rows: their contexts transposed (d x R), their means and
// variances (K x R each); laid out in that order in one buffer of lin_scratch_size(K, d)
// doubles.
struct LinScratch {
  double* mean;
  double* var;
  double* u;
  double* work;
  double* xt;
  double* bmean;
  double* bvar;
};

inline int64_t lin_scratch_size(int64_t K, int64_t d) {
  return 2 * K + d + 2 * d * d + kLinRowBlock * (d + 2 * K);
}

inline LinScratch lin_scratch_view(double* buf, int64_t K, int64_t d) {
  double* xt = buf + 2 * K + d + 2 * d * d;
  double* bmean = xt + kLinRowBlock * d;
  return LinScratch{buf, buf + K, buf + 2 * K, buf + 2 * K + d, xt, bmean,
                    bmean + kLinRowBlock * K};
}

// One thread's scratch, owned: reset(K, d) sizes and zeroes it and returns the view.
class LinWorkspace {
 public:
  LinScratch reset(int64_t K, int64_t d) {
    buf_.assign(static_cast<size_t>(lin_scratch_size(K, d)), 0.0);
    return lin_scratch_view(buf_.data(), K, d);
  }

 private:
  std::vector<double> buf_;
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

#if defined(__GNUC__)
#define PB_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define PB_ALWAYS_INLINE inline
#endif

// Moments of R contexts at once for every arm (ineligible ones too: their numbers are
// never read). XT holds the contexts transposed (d x R: XT[j * R + r] is x_r[j]); mean
// and var are K x R. Per context, in this order of operations:
//   mean = sum_j theta_j x_j                                      (j ascending)
//   var  = max(0, sum_i x_i (Ainv_ii x_i + 2 s_i)),  s_i = sum_{j > i} Ainv_ij x_j
// (i, j ascending; the upper triangle of the symmetric A^{-1}, d(d+1)/2 products instead
// of d^2). The loops run across the R contexts innermost, so they vectorise without
// reassociating any one context's sum: every lane does the scalar operations of R = 1,
// which is what makes a batch of n the same bits as n single decisions, and the Numba
// mirror (moments in _numba/linear.py) the same bits again.
template <int R>
PB_ALWAYS_INLINE void lin_moments_block(const LinState& s, const double* XT, double* mean,
                                        double* var) {
  const int64_t K = s.n_arms, d = s.dim;
  for (int64_t a = 0; a < K; ++a) {
    const double* th = s.theta + a * d;
    const double* Ai = s.A_inv + a * d * d;
    double m[R], q[R];
    for (int r = 0; r < R; ++r) m[r] = q[r] = 0.0;
    for (int64_t j = 0; j < d; ++j) {
      const double c = th[j];
      const double* xj = XT + j * R;
      for (int r = 0; r < R; ++r) m[r] += c * xj[r];
    }
    for (int64_t i = 0; i < d; ++i) {
      const double* row = Ai + i * d;
      double acc[R];
      for (int r = 0; r < R; ++r) acc[r] = 0.0;
      for (int64_t j = i + 1; j < d; ++j) {
        const double c = row[j];
        const double* xj = XT + j * R;
        for (int r = 0; r < R; ++r) acc[r] += c * xj[r];
      }
      const double aii = row[i];
      const double* xi = XT + i * R;
      for (int r = 0; r < R; ++r) q[r] += xi[r] * (aii * xi[r] + 2.0 * acc[r]);
    }
    for (int r = 0; r < R; ++r) {
      mean[a * R + r] = m[r];
      var[a * R + r] = q[r] > 0.0 ? q[r] : 0.0;
    }
  }
}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define PB_LIN_AVX2 1
// Blocks of 8 rows in AVX2 with GCC vector types (two 4-lane vectors), picked at run time
// where the CPU has AVX2 (lin_moments8): GCC's own vectoriser leaves the template's loops
// scalar, and 4-lane vectors without AVX compile badly, hence an explicit AVX2 function
// rather than a clone. The same IEEE multiply and add per lane as the template (no FMA:
// -ffp-contract=off, and "avx2" does not enable it), so the same bits; the broadcasts
// are built lane by lane ({t, t, t, t}) so the sign of a zero survives.
typedef double pb_lin_v4d __attribute__((vector_size(32)));

// An unaligned load of 4 doubles (a macro: a function returning a vector type would
// change the ABI between the AVX2 and baseline clones).
#define PB_LIN_LOAD4(v, p) __builtin_memcpy(&(v), (p), sizeof(v))

__attribute__((target("avx2"))) inline void lin_moments8_avx2(const LinState& s,
                                                              const double* XT, double* mean,
                                                              double* var) {
  const int64_t K = s.n_arms, d = s.dim;
  const pb_lin_v4d zero = {0.0, 0.0, 0.0, 0.0};
  const pb_lin_v4d two = {2.0, 2.0, 2.0, 2.0};
  for (int64_t a = 0; a < K; ++a) {
    const double* th = s.theta + a * d;
    const double* Ai = s.A_inv + a * d * d;
    pb_lin_v4d m0 = zero, m1 = zero, q0 = zero, q1 = zero;
    for (int64_t j = 0; j < d; ++j) {
      const double t = th[j];
      const pb_lin_v4d c = {t, t, t, t};
      pb_lin_v4d x0, x1;
      PB_LIN_LOAD4(x0, XT + j * 8);
      PB_LIN_LOAD4(x1, XT + j * 8 + 4);
      m0 += c * x0;
      m1 += c * x1;
    }
    // Rows i and i + 1 of A^{-1} together, so each context column x_j loaded serves both
    // (the loads, not the arithmetic, bound the one-row loop); each sum keeps its order.
    int64_t i = 0;
    for (; i + 2 <= d; i += 2) {
      const double* row = Ai + i * d;
      const double* row1 = row + d;
      pb_lin_v4d acc0 = zero, acc1 = zero, bcc0 = zero, bcc1 = zero;
      pb_lin_v4d x0, x1;
      {
        const double t = row[i + 1];
        const pb_lin_v4d c = {t, t, t, t};
        PB_LIN_LOAD4(x0, XT + (i + 1) * 8);
        PB_LIN_LOAD4(x1, XT + (i + 1) * 8 + 4);
        acc0 += c * x0;
        acc1 += c * x1;
      }
      for (int64_t j = i + 2; j < d; ++j) {
        const double t = row[j], u = row1[j];
        const pb_lin_v4d c = {t, t, t, t}, e = {u, u, u, u};
        PB_LIN_LOAD4(x0, XT + j * 8);
        PB_LIN_LOAD4(x1, XT + j * 8 + 4);
        acc0 += c * x0;
        acc1 += c * x1;
        bcc0 += e * x0;
        bcc1 += e * x1;
      }
      {
        const double t = row[i];
        const pb_lin_v4d aii = {t, t, t, t};
        PB_LIN_LOAD4(x0, XT + i * 8);
        PB_LIN_LOAD4(x1, XT + i * 8 + 4);
        q0 += x0 * (aii * x0 + two * acc0);
        q1 += x1 * (aii * x1 + two * acc1);
      }
      {
        const double t = row1[i + 1];
        const pb_lin_v4d aii = {t, t, t, t};
        PB_LIN_LOAD4(x0, XT + (i + 1) * 8);
        PB_LIN_LOAD4(x1, XT + (i + 1) * 8 + 4);
        q0 += x0 * (aii * x0 + two * bcc0);
        q1 += x1 * (aii * x1 + two * bcc1);
      }
    }
    for (; i < d; ++i) {  // the last row of an odd d: nothing above the diagonal
      const double t = Ai[i * d + i];
      const pb_lin_v4d aii = {t, t, t, t};
      pb_lin_v4d x0, x1;
      PB_LIN_LOAD4(x0, XT + i * 8);
      PB_LIN_LOAD4(x1, XT + i * 8 + 4);
      q0 += x0 * (aii * x0 + two * zero);
      q1 += x1 * (aii * x1 + two * zero);
    }
    __builtin_memcpy(mean + a * 8, &m0, sizeof m0);
    __builtin_memcpy(mean + a * 8 + 4, &m1, sizeof m1);
    double q[8];
    __builtin_memcpy(q, &q0, sizeof q0);
    __builtin_memcpy(q + 4, &q1, sizeof q1);
    for (int r = 0; r < 8; ++r) var[a * 8 + r] = q[r] > 0.0 ? q[r] : 0.0;
  }
}
// y[j] += a * x[j] for j < d, 4 lanes at a time (each element one multiply and one add,
// as in the scalar loops).
__attribute__((target("avx2"))) PB_ALWAYS_INLINE void lin_axpy_avx2(double* y, double a,
                                                                   const double* x, int64_t d) {
  const pb_lin_v4d av = {a, a, a, a};
  int64_t j = 0;
  for (; j + 4 <= d; j += 4) {
    pb_lin_v4d xv, yv;
    PB_LIN_LOAD4(xv, x + j);
    PB_LIN_LOAD4(yv, y + j);
    yv += av * xv;
    __builtin_memcpy(y + j, &yv, sizeof yv);
  }
  for (; j < d; ++j) y[j] += a * x[j];
}

// lin_observe in AVX2: the same element operations (y - p is y + (-p) exactly).
__attribute__((target("avx2"))) inline void lin_observe_avx2(double* A, double* Ai, double* b,
                                                            const double* x, double weight,
                                                            double reward, double* u, int64_t d,
                                                            bool rank_one) {
  for (int64_t i = 0; i < d; ++i) {
    const double wx = weight * x[i];
    lin_axpy_avx2(A + i * d, wx, x, d);
    b[i] += wx * reward;
  }
  if (!rank_one) return;
  for (int64_t j = 0; j < d; ++j) u[j] = 0.0;
  for (int64_t k = 0; k < d; ++k) lin_axpy_avx2(u, x[k], Ai + k * d, d);
  const double c = weight / (1.0 + weight * dot(x, u, d));
  for (int64_t i = 0; i < d; ++i) lin_axpy_avx2(Ai + i * d, -(c * u[i]), u, d);
}

// lin_moments8 in AVX-512 where the CPU has it: the 8 contexts of a block in one 8-lane
// vector instead of two 4-lane ones; the same IEEE multiply and add per lane in the same
// order as lin_moments8_avx2 and the template (no FMA), so the same bits.
typedef double pb_lin_v8d __attribute__((vector_size(64)));
#define PB_LIN_LOAD8(v, p) __builtin_memcpy(&(v), (p), sizeof(v))

// G arms [a0, a0 + G) of lin_moments8_avx512 together: each lane's sums keep the
// template's order (the mean over j ascending; per row i of A^{-1}, acc = A_i,i+1 x_i+1 +
// ... in j order; q over i ascending), but the G arms' (and rows i, i + 1's) sums are
// independent chains interleaved in one loop, so the adds' latency is hidden (one arm at a
// time left the loop waiting on its two chains: about 1.5x the arithmetic's time).
template <int G>
__attribute__((target("avx512f"))) PB_ALWAYS_INLINE void lin_moments8_avx512_arms(
    const LinState& s, const double* XT, double* mean, double* var, int64_t a0) {
  const int64_t d = s.dim;
  const pb_lin_v8d zero = {0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0};
  const pb_lin_v8d two = {2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0};
  const double* th[G];
  const double* Ai[G];
  pb_lin_v8d m[G], q[G];
#pragma GCC unroll 4
  for (int g = 0; g < G; ++g) {
    th[g] = s.theta + (a0 + g) * d;
    Ai[g] = s.A_inv + (a0 + g) * d * d;
    m[g] = zero;
    q[g] = zero;
  }
  for (int64_t j = 0; j < d; ++j) {
    pb_lin_v8d x;
    PB_LIN_LOAD8(x, XT + j * 8);
#pragma GCC unroll 4
    for (int g = 0; g < G; ++g) {
      const double t = th[g][j];
      const pb_lin_v8d c = {t, t, t, t, t, t, t, t};
      m[g] += c * x;
    }
  }
  int64_t i = 0;
  for (; i + 2 <= d; i += 2) {
    pb_lin_v8d acc[G], bcc[G], x;
    PB_LIN_LOAD8(x, XT + (i + 1) * 8);
#pragma GCC unroll 4
    for (int g = 0; g < G; ++g) {
      const double t = Ai[g][i * d + i + 1];
      const pb_lin_v8d c = {t, t, t, t, t, t, t, t};
      acc[g] = zero;
      acc[g] += c * x;
      bcc[g] = zero;
    }
    for (int64_t j = i + 2; j < d; ++j) {
      PB_LIN_LOAD8(x, XT + j * 8);
#pragma GCC unroll 4
      for (int g = 0; g < G; ++g) {
        const double t = Ai[g][i * d + j], u = Ai[g][(i + 1) * d + j];
        const pb_lin_v8d c = {t, t, t, t, t, t, t, t}, e = {u, u, u, u, u, u, u, u};
        acc[g] += c * x;
        bcc[g] += e * x;
      }
    }
    pb_lin_v8d x1;
    PB_LIN_LOAD8(x, XT + i * 8);
    PB_LIN_LOAD8(x1, XT + (i + 1) * 8);
#pragma GCC unroll 4
    for (int g = 0; g < G; ++g) {
      const double t = Ai[g][i * d + i], u = Ai[g][(i + 1) * d + i + 1];
      const pb_lin_v8d aii = {t, t, t, t, t, t, t, t}, bii = {u, u, u, u, u, u, u, u};
      q[g] += x * (aii * x + two * acc[g]);
      q[g] += x1 * (bii * x1 + two * bcc[g]);
    }
  }
  for (; i < d; ++i) {  // the last row of an odd d: nothing above the diagonal
    pb_lin_v8d x;
    PB_LIN_LOAD8(x, XT + i * 8);
#pragma GCC unroll 4
    for (int g = 0; g < G; ++g) {
      const double t = Ai[g][i * d + i];
      const pb_lin_v8d aii = {t, t, t, t, t, t, t, t};
      q[g] += x * (aii * x + two * zero);
    }
  }
#pragma GCC unroll 4
  for (int g = 0; g < G; ++g) {
    __builtin_memcpy(mean + (a0 + g) * 8, &m[g], sizeof m[g]);
    double qq[8];
    __builtin_memcpy(qq, &q[g], sizeof q[g]);
    for (int r = 0; r < 8; ++r) var[(a0 + g) * 8 + r] = qq[r] > 0.0 ? qq[r] : 0.0;
  }
}

__attribute__((target("avx512f"))) inline void lin_moments8_avx512(const LinState& s,
                                                                  const double* XT,
                                                                  double* mean, double* var) {
  const int64_t K = s.n_arms;
  int64_t a = 0;
  for (; a + 4 <= K; a += 4) lin_moments8_avx512_arms<4>(s, XT, mean, var, a);
  switch (K - a) {
    case 3: lin_moments8_avx512_arms<3>(s, XT, mean, var, a); break;
    case 2: lin_moments8_avx512_arms<2>(s, XT, mean, var, a); break;
    case 1: lin_moments8_avx512_arms<1>(s, XT, mean, var, a); break;
    default: break;
  }
}
#undef PB_LIN_LOAD8

// LinUCB's choice for the 8 rows of a block from their moments (mean, var: K x 8), every
// arm eligible and no bias: each arm's score is lin_ucb_score's operations (mean +
// alpha * sqrt(var), + 0.0 for the absent bias) in lanes, and each lane keeps the first
// highest arm, as TieArgmax does (a NaN score is passed over, or kept when it is the
// first, there too). The arm goes to arms[r] with propensity 1. Returns the mask of the
// lanes whose highest score is tied exactly between two or more arms (with first_on_ties
// none): those rows go through lin_decide, which breaks the tie from the row's stream. A
// branch-free vector argmax instead of one unpredictable branch per arm.
// GCC 12's _mm512_sqrt_pd passes an undefined vector as its unused merge source, which
// -Wuninitialized reports from inside the intrinsic header.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
__attribute__((target("avx512f"))) inline unsigned lin_ucb_block8_avx512(
    const LinParams& p, const double* mean, const double* var, int64_t K, int64_t* arms,
    double* props) {
  const __m512d alpha = _mm512_set1_pd(p.exploration), nobias = _mm512_setzero_pd();
#define PB_LIN_UCB_SCORE8(a)                                                              \
  _mm512_add_pd(_mm512_add_pd(_mm512_loadu_pd(mean + (a) * 8),                            \
                              _mm512_mul_pd(alpha, _mm512_sqrt_pd(_mm512_loadu_pd(var + (a) * 8)))), \
                nobias)
  __m512d best = PB_LIN_UCB_SCORE8(0);
  __m512i idx = _mm512_setzero_si512();
  __mmask8 tied = 0;
  for (int64_t a = 1; a < K; ++a) {
    const __m512d v = PB_LIN_UCB_SCORE8(a);
    const __mmask8 gt = _mm512_cmp_pd_mask(v, best, _CMP_GT_OQ);
    const __mmask8 eq = _mm512_cmp_pd_mask(v, best, _CMP_EQ_OQ);
    best = _mm512_mask_blend_pd(gt, best, v);
    idx = _mm512_mask_blend_epi64(gt, idx, _mm512_set1_epi64(a));
    tied = static_cast<__mmask8>((tied & ~gt) | eq);
  }
#undef PB_LIN_UCB_SCORE8
  _mm512_storeu_si512(arms, idx);
  _mm512_storeu_pd(props, _mm512_set1_pd(1.0));
  return p.first_on_ties ? 0u : static_cast<unsigned>(tied);
}
#pragma GCC diagnostic pop

inline bool lin_cpu_has_avx512() {
  static const bool has = __builtin_cpu_supports("avx512f");
  return has;
}

inline bool lin_cpu_has_avx2() {
  static const bool has = __builtin_cpu_supports("avx2");
  return has;
}

// lin_accumulate_upper in AVX2: A[i][j] += WXT[i][r] * XA[r][j] over the rows r in order,
// columns in lanes, 16, 8 then 4 at a time (each element the scalar loop's multiply and
// add in the same row order, so the same bits). A block starts at the multiple of 4 at or
// below i: its columns left of the diagonal are computed too and then overwritten by the
// mirror of the upper triangle (lin_accumulate_rows).
__attribute__((target("avx2"))) inline void lin_accumulate_upper_avx2(double* A,
                                                                     const double* XA,
                                                                     const double* WXT,
                                                                     int64_t m, int64_t d) {
  for (int64_t i = 0; i < d; ++i) {
    double* Ar = A + i * d;
    const double* wi = WXT + i * m;
    int64_t j = i & ~int64_t{3};
    for (; j + 16 <= d; j += 16) {
      pb_lin_v4d a0, a1, a2, a3;
      PB_LIN_LOAD4(a0, Ar + j);
      PB_LIN_LOAD4(a1, Ar + j + 4);
      PB_LIN_LOAD4(a2, Ar + j + 8);
      PB_LIN_LOAD4(a3, Ar + j + 12);
      for (int64_t r = 0; r < m; ++r) {
        const double t = wi[r];
        const pb_lin_v4d c = {t, t, t, t};
        const double* x = XA + r * d + j;
        pb_lin_v4d x0, x1, x2, x3;
        PB_LIN_LOAD4(x0, x);
        PB_LIN_LOAD4(x1, x + 4);
        PB_LIN_LOAD4(x2, x + 8);
        PB_LIN_LOAD4(x3, x + 12);
        a0 += c * x0;
        a1 += c * x1;
        a2 += c * x2;
        a3 += c * x3;
      }
      __builtin_memcpy(Ar + j, &a0, sizeof a0);
      __builtin_memcpy(Ar + j + 4, &a1, sizeof a1);
      __builtin_memcpy(Ar + j + 8, &a2, sizeof a2);
      __builtin_memcpy(Ar + j + 12, &a3, sizeof a3);
    }
    for (; j + 8 <= d; j += 8) {
      pb_lin_v4d a0, a1;
      PB_LIN_LOAD4(a0, Ar + j);
      PB_LIN_LOAD4(a1, Ar + j + 4);
      for (int64_t r = 0; r < m; ++r) {
        const double t = wi[r];
        const pb_lin_v4d c = {t, t, t, t};
        const double* x = XA + r * d + j;
        pb_lin_v4d x0, x1;
        PB_LIN_LOAD4(x0, x);
        PB_LIN_LOAD4(x1, x + 4);
        a0 += c * x0;
        a1 += c * x1;
      }
      __builtin_memcpy(Ar + j, &a0, sizeof a0);
      __builtin_memcpy(Ar + j + 4, &a1, sizeof a1);
    }
    for (; j + 4 <= d; j += 4) {
      pb_lin_v4d a0;
      PB_LIN_LOAD4(a0, Ar + j);
      for (int64_t r = 0; r < m; ++r) {
        const double t = wi[r];
        const pb_lin_v4d c = {t, t, t, t};
        pb_lin_v4d x0;
        PB_LIN_LOAD4(x0, XA + r * d + j);
        a0 += c * x0;
      }
      __builtin_memcpy(Ar + j, &a0, sizeof a0);
    }
    for (; j < d; ++j) {
      double acc = Ar[j];
      for (int64_t r = 0; r < m; ++r) acc += wi[r] * XA[r * d + j];
      Ar[j] = acc;
    }
  }
}
#undef PB_LIN_LOAD4
#endif

// Moments of a block of kLinRowBlock rows: lin_moments_block<8>, in AVX-512 or AVX2 where
// the CPU has it (the same bits either way).
inline void lin_moments8(const LinState& s, const double* XT, double* mean, double* var) {
  static_assert(kLinRowBlock == 8, "lin_moments8 scores blocks of 8 rows");
#ifdef PB_LIN_AVX2
  if (lin_cpu_has_avx512()) {
    lin_moments8_avx512(s, XT, mean, var);
    return;
  }
  if (lin_cpu_has_avx2()) {
    lin_moments8_avx2(s, XT, mean, var);
    return;
  }
#endif
  lin_moments_block<8>(s, XT, mean, var);
}

// mean_a = theta_a . x and var_a = x^T A_a^{-1} x (lin_moments_block with R = 1) for
// every arm; the mask is not needed (the ineligible arms' numbers are never read) and
// kept for the callers' symmetry.
inline void lin_moments(const LinState& s, const uint8_t* /*mask*/, const double* x,
                        LinScratch& w) {
  lin_moments_block<1>(s, x, w.mean, w.var);
}

inline double lin_ucb_score(const LinParams& p, const double* bias, const LinScratch& w,
                            int64_t a) {
  return w.mean[a] + p.exploration * std::sqrt(w.var[a]) + bias_of(bias, a);
}

// The LinUCB choice: the highest mean + alpha * sqrt(var) (+ bias), exact ties broken at
// random from `ties` (a cold start ties every arm); *argmax gets it with its tie count.
inline int64_t lin_ucb_best(const LinParams& p, const LinState& s, const uint8_t* mask,
                            const double* bias, const LinScratch& w, Stream& ties,
                            TieArgmax* argmax) {
  TieArgmax am(p.first_on_ties);
  for (int64_t a = 0; a < s.n_arms; ++a) {
    if (lin_eligible(s, mask, a)) am.offer(a, lin_ucb_score(p, bias, w, a), ties);
  }
  *argmax = am;
  return am.best;
}

// One Thompson draw: every eligible arm's score theta~.x ~ N(mean, v^2 var) (+ bias),
// drawn in arm order from `rs`; returns the arm with the highest, exact ties broken
// from `ties` (which may be `rs` itself).
inline int64_t lin_ts_draw(const LinParams& p, const LinState& s, const uint8_t* mask,
                           const double* bias, const LinScratch& w, Stream& rs, Stream& ties) {
  TieArgmax am(p.first_on_ties);
  for (int64_t a = 0; a < s.n_arms; ++a) {
    if (!lin_eligible(s, mask, a)) continue;
    const double score =
        w.mean[a] + p.exploration * std::sqrt(w.var[a]) * rs.normal() + bias_of(bias, a);
    am.offer(a, score, ties);
  }
  return am.best;
}

// LinTS exact propensities: the eligible arms' scores N(mean + bias, v^2 var), compacted.
struct LinTsScores {
  QuadSmallBuf<double, 32> m, sd;
  QuadSmallBuf<int64_t, 32> arms;
  int64_t n = 0, n_zero = 0;

  LinTsScores(const LinParams& p, const LinState& s, const uint8_t* mask, const double* bias,
              const LinScratch& w)
      : m(s.n_arms), sd(s.n_arms), arms(s.n_arms) {
    for (int64_t a = 0; a < s.n_arms; ++a) {
      if (!lin_eligible(s, mask, a)) continue;
      m[n] = w.mean[a] + bias_of(bias, a);
      sd[n] = p.exploration * std::sqrt(w.var[a]);
      n_zero += sd[n] > 0.0 ? 0 : 1;
      arms[n] = a;
      ++n;
    }
  }

  // The probability of the i-th eligible arm: quad_normal_propensity when every sd is
  // positive; with every sd 0 (v = 0, or a zero context) the choice is the argmax and the
  // tied maxima share it (with first_on_ties the first tied arm gets it all); false for a
  // mix of zero and positive sds, which the callers then estimate by draws.
  bool prob(bool first_on_ties, int64_t i, double* out) const {
    if (n_zero == n) {
      double top = m[0];
      for (int64_t j = 1; j < n; ++j) top = m[j] > top ? m[j] : top;
      int64_t tied = 0, first = -1;
      for (int64_t j = 0; j < n; ++j) {
        if (m[j] == top) {
          ++tied;
          if (first < 0) first = j;
        }
      }
      *out = m[i] != top ? 0.0 : !first_on_ties ? 1.0 / static_cast<double>(tied)
                                                : (i == first ? 1.0 : 0.0);
      return true;
    }
    if (n_zero > 0) return false;
    *out = quad_normal_propensity(m.data(), sd.data(), n, i);
    return true;
  }
};

// LinTS: every eligible arm's probability of the highest score, exact, into out (0 for
// the others), one quad_normal_propensity per arm (so each is the chosen arm's logged
// propensity, bit for bit); false for a mix of zero and positive sds.
inline bool lin_ts_quadrature(const LinParams& p, const LinState& s, const uint8_t* mask,
                              const double* bias, const LinScratch& w, double* out) {
  const LinTsScores sc(p, s, mask, bias, w);
  for (int64_t a = 0; a < s.n_arms; ++a) out[a] = 0.0;
  for (int64_t i = 0; i < sc.n; ++i) {
    if (!sc.prob(p.first_on_ties, i, out + sc.arms[i])) return false;
  }
  return true;
}

// LinTS propensity of `arm` at decision t, given the moments in w: with the quadrature
// method its exact probability (LinTsScores::prob, that arm's integral only); otherwise,
// or where quadrature cannot run, the share of p.propensity_draws score draws on the
// stream (seed, t, propensity) that `arm` wins, as (wins + 1) / (draws + K_eligible), the
// multi-armed estimate's add-one smoothing; NaN when propensity_draws is 0.
inline double lin_ts_propensity(const LinParams& p, const LinState& s, const uint8_t* mask,
                                const double* bias, const LinScratch& w, uint64_t t,
                                int64_t arm) {
  if (p.propensity_draws <= 0) return std::numeric_limits<double>::quiet_NaN();
  if (p.propensity_method == kPropensityQuadrature) {
    const LinTsScores sc(p, s, mask, bias, w);
    for (int64_t i = 0; i < sc.n; ++i) {
      double v;
      if (sc.arms[i] == arm && sc.prob(p.first_on_ties, i, &v)) return v;
    }
  }
  Stream rp(p.seed, t, kPurposePropensity);
  int64_t wins = 0, k_elig = 0;
  for (int64_t a = 0; a < s.n_arms; ++a) k_elig += lin_eligible(s, mask, a) ? 1 : 0;
  for (int64_t m = 0; m < p.propensity_draws; ++m) {
    wins += (lin_ts_draw(p, s, mask, bias, w, rp, rp) == arm) ? 1 : 0;
  }
  return (static_cast<double>(wins) + 1.0) /
         (static_cast<double>(p.propensity_draws) + static_cast<double>(k_elig));
}

// Decision number t from the moments already in w (w.mean, w.var): the arm and its
// propensity, state untouched.
inline std::pair<int64_t, double> lin_decide(const LinParams& p, const LinState& s,
                                             const uint8_t* mask, const double* bias, uint64_t t,
                                             LinScratch& w) {
  int64_t best = -1;
  double prop = 1.0;
  Stream ties(p.seed, t, kPurposeTie);  // no block is computed unless a tie occurs
  if (p.kind == kLinUCB) {
    TieArgmax am;
    best = lin_ucb_best(p, s, mask, bias, w, ties, &am);
    prop = am.share();
  } else {
    // theta~ ~ N(theta, v^2 A^{-1}) gives theta~ . x ~ N(mean, v^2 var): draw the
    // score directly, the same decision distribution at O(K) draws instead of O(K d).
    Stream rs(p.seed, t, kPurposeDecision);
    best = lin_ts_draw(p, s, mask, bias, w, rs, ties);
    prop = lin_ts_propensity(p, s, mask, bias, w, t, best);
  }
  return {best, prop};
}

// Decision number t for context x (length d), without touching state, so rows of
// a batch can run on any thread (each with its own scratch). The caller
// guarantees an eligible arm.
inline std::pair<int64_t, double> lin_choose(const LinParams& p, const LinState& s,
                                             const uint8_t* mask, const double* bias,
                                             const double* x, uint64_t t, LinScratch& w) {
  lin_moments(s, mask, x, w);
  return lin_decide(p, s, mask, bias, t, w);
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
  if (p.kind == kLinUCB) {  // the tied maxima share the choice equally
    Stream ties(p.seed, stream, kPurposeTie);
    TieArgmax am;
    lin_ucb_best(p, s, mask, bias, w, ties, &am);
    for (int64_t a = 0; a < K; ++a) {
      if (lin_eligible(s, mask, a) && am.shares(a, lin_ucb_score(p, bias, w, a))) {
        out[a] = am.share();
      }
    }
    return;
  }
  // draws == 0 with the quadrature method: the exact distribution the propensities use.
  if (draws == 0 && p.propensity_method == kPropensityQuadrature &&
      lin_ts_quadrature(p, s, mask, bias, w, out)) {
    return;
  }
  if (draws == 0) draws = 1000;  // quadrature could not run (zero and positive sds mix)
  Stream rp(p.seed, stream, kPurposeEvaluation);
  int64_t k_elig = 0;
  for (int64_t a = 0; a < K; ++a) k_elig += lin_eligible(s, mask, a) ? 1 : 0;
  for (int64_t m = 0; m < draws; ++m) out[lin_ts_draw(p, s, mask, bias, w, rp, rp)] += 1.0;
  const double denom = static_cast<double>(draws) + static_cast<double>(k_elig);
  for (int64_t a = 0; a < K; ++a) {
    if (lin_eligible(s, mask, a)) out[a] = (out[a] + 1.0) / denom;
  }
}

// One observation's arithmetic on one arm: A += w x x^T and b += w r x, then, when
// rank_one, Sherman-Morrison: (A + w x x^T)^{-1} = A^{-1} - c u u^T with u = A^{-1} x
// (symv's order) and c = w / (1 + w x.u). In AVX2 where the CPU has it, the same bits.
inline void lin_observe(double* A, double* Ai, double* b, const double* x, double weight,
                        double reward, double* u, int64_t d, bool rank_one) {
#ifdef PB_LIN_AVX2
  if (lin_cpu_has_avx2()) {
    lin_observe_avx2(A, Ai, b, x, weight, reward, u, d, rank_one);
    return;
  }
#endif
  for (int64_t i = 0; i < d; ++i) {
    const double wx = weight * x[i];
    for (int64_t j = 0; j < d; ++j) A[i * d + j] += wx * x[j];
    b[i] += wx * reward;
  }
  if (!rank_one) return;
  symv(Ai, x, u, d);
  const double c = weight / (1.0 + weight * dot(x, u, d));
  for (int64_t i = 0; i < d; ++i) {
    const double cu = c * u[i];
    for (int64_t j = 0; j < d; ++j) Ai[i * d + j] -= cu * u[j];
  }
}

// Adds one weighted observation (x, r) to arm `arm`: A, b, n and A^{-1} (Sherman-Morrison,
// or an exact refresh every refresh_every updates), but not theta = A^{-1} b, which the
// caller recomputes before the next decision (lin_update, lin_update_rows). With decay < 1
// every arm forgets first: A <- gamma*A + (1-gamma)*lambda*I, b <- gamma*b, n <- gamma*n
// (the prior keeps its weight), and every arm is refreshed exactly (theta too), O(K d^3).
inline void lin_update_stats(const LinParams& p, LinState& s, int64_t arm, double reward,
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
  // A^{-1} by Sherman-Morrison unless this update refreshes it exactly.
  const bool refresh = p.decay < 1.0 || s.since_refresh[arm] + 1 >= p.refresh_every;
  lin_observe(s.A + arm * d * d, s.A_inv + arm * d * d, s.b + arm * d, x, weight, reward, w.u, d,
              !refresh);
  s.n[arm] += weight;
  if (p.decay < 1.0) {
    for (int64_t a = 0; a < K; ++a) lin_refresh_arm(s, a, w.work);
  } else {
    s.since_refresh[arm] += 1;
    if (refresh) lin_refresh_arm(s, arm, w.work);
  }
  s.counters[kCtrUpdates] += 1;
}

// One update, theta of the arm recomputed at once (lin_update_stats, then theta).
inline void lin_update(const LinParams& p, LinState& s, int64_t arm, double reward,
                       const double* x, double weight, LinScratch& w) {
  lin_update_stats(p, s, arm, reward, x, weight, w);
  const int64_t d = s.dim;
  if (p.decay >= 1.0) symv(s.A_inv + arm * d * d, s.b + arm * d, s.theta + arm * d, d);
}

// ---- batches: the loops every caller of a row-wise kernel runs -------------------------
//
// X is (n, d) row-major; masks and biases are (n, K) row-major or nullptr (every arm
// eligible, no bias); the caller guarantees an eligible arm in every row.

// Rows [lo, hi) of a batch: row i is decision number t0 + i for context X[i], state
// untouched. Whole blocks of kLinRowBlock rows get their moments together
// (lin_moments_block, vectorised across the rows), the rest one at a time: the same
// operations per row either way, so the split changes no bit.
PB_MULTIVERSION inline void lin_choose_rows_mv(const LinParams& p, const LinState& s,
                                               const uint8_t* masks, const double* biases,
                                               const double* X, int64_t lo, int64_t hi,
                                               uint64_t t0, int64_t* arms, double* props,
                                               LinScratch& w, std::exception_ptr* err) noexcept {
 try {
  constexpr int R = static_cast<int>(kLinRowBlock);
  const int64_t K = s.n_arms, d = s.dim;
#ifdef PB_LIN_AVX2
  // LinUCB rows with every arm eligible and no bias choose in lanes (lin_ucb_block8).
  bool ucb_block = p.kind == kLinUCB && masks == nullptr && biases == nullptr &&
                   K > 0 && lin_cpu_has_avx512();
  for (int64_t a = 0; ucb_block && a < K; ++a) ucb_block = s.active[a] != 0;
#endif
  int64_t i = lo;
  for (; i + R <= hi; i += R) {
    for (int r = 0; r < R; ++r) {
      for (int64_t j = 0; j < d; ++j) w.xt[j * R + r] = X[(i + r) * d + j];
    }
    lin_moments8(s, w.xt, w.bmean, w.bvar);
    unsigned slow = (1u << R) - 1u;  // the rows lin_decide still has to choose
#ifdef PB_LIN_AVX2
    if (ucb_block) {
      slow = lin_ucb_block8_avx512(p, w.bmean, w.bvar, K, arms + i, props + i);
    }
#endif
    for (int r = 0; r < R; ++r) {
      if (((slow >> r) & 1u) == 0) continue;
      for (int64_t a = 0; a < K; ++a) {
        w.mean[a] = w.bmean[a * R + r];
        w.var[a] = w.bvar[a * R + r];
      }
      const int64_t row = i + r;
      auto c = lin_decide(p, s, masks ? masks + row * K : nullptr,
                          biases ? biases + row * K : nullptr, t0 + static_cast<uint64_t>(row), w);
      arms[row] = c.first;
      props[row] = c.second;
    }
  }
  for (; i < hi; ++i) {
    lin_moments_block<1>(s, X + i * d, w.mean, w.var);
    auto c = lin_decide(p, s, masks ? masks + i * K : nullptr, biases ? biases + i * K : nullptr,
                        t0 + static_cast<uint64_t>(i), w);
    arms[i] = c.first;
    props[i] = c.second;
  }
 } catch (...) {
  *err = std::current_exception();
 }
}

inline void lin_choose_rows(const LinParams& p, const LinState& s, const uint8_t* masks,
                            const double* biases, const double* X, int64_t lo, int64_t hi,
                            uint64_t t0, int64_t* arms, double* props, LinScratch& w) {
  std::exception_ptr err;
  lin_choose_rows_mv(p, s, masks, biases, X, lo, hi, t0, arms, props, w, &err);
  if (err) std::rethrow_exception(err);
}

// n updates in row order; weights nullptr means 1 for every row. The caller has
// checked every row, so a batch is applied whole. Each row is lin_update's exact
// rank-one step; theta = A^{-1} b of an arm is recomputed once, after the batch's last
// row for that arm (no decision reads theta in between, and A^{-1} and b are then what
// n single updates leave, so theta is too, bit for bit).
PB_MULTIVERSION inline void lin_update_rows_mv(const LinParams& p, LinState& s,
                                               const int64_t* arms, const double* rewards,
                                               const double* X, const double* weights,
                                               int64_t n, LinScratch& w,
                                               std::exception_ptr* err) noexcept {
 try {
  const int64_t d = s.dim;
  std::vector<uint8_t> touched(static_cast<size_t>(s.n_arms), 0);
  for (int64_t i = 0; i < n; ++i) {
    lin_update_stats(p, s, arms[i], rewards[i], X + i * d, weights ? weights[i] : 1.0, w);
    touched[static_cast<size_t>(arms[i])] = 1;
  }
  if (p.decay < 1.0) return;  // every arm was refreshed exactly, theta included
  for (int64_t a = 0; a < s.n_arms; ++a) {
    if (touched[static_cast<size_t>(a)]) symv(s.A_inv + a * d * d, s.b + a * d, s.theta + a * d, d);
  }
 } catch (...) {
  *err = std::current_exception();
 }
}

inline void lin_update_rows(const LinParams& p, LinState& s, const int64_t* arms,
                            const double* rewards, const double* X, const double* weights,
                            int64_t n, LinScratch& w) {
  std::exception_ptr err;
  lin_update_rows_mv(p, s, arms, rewards, X, weights, n, w, &err);
  if (err) std::rethrow_exception(err);
}

// ---- the batch-update mode "accumulate" (LinParams::batch_accumulate) --------------------
//
// A batch adds its sums to every touched arm: A_a += sum_r w_r x_r x_r^T and
// b_a += sum_r w_r r_r x_r (n_a += sum_r w_r) over the arm's rows in row order, each
// element as the sequential update computes it (wx_i = w x_i, then A_ij += wx_i x_j and
// b_i += wx_i r), on the upper triangle, mirrored to the lower one; then A^{-1} (Cholesky,
// as lin_refresh_arm) and theta = A^{-1} b once per touched arm. The state after a batch
// is thus a function of its sums: the sequential rows' A and b, with A^{-1} and theta
// exact instead of carried by Sherman-Morrison (equal up to float rounding). With decay
// gamma < 1, row i of n weighs gamma^(n-1-i) (powers by repeated multiplication from the
// last row) and every arm first becomes gamma^n A + (1 - gamma^n) lambda I, gamma^n b,
// gamma^n n (what n sequential decays give), and every arm is refreshed.
// The new statistics are built beside the state and written only once every touched arm
// has finite ones and a positive-definite A: a batch that fails is refused whole.

// Buffers of lin_accumulate_rows, reused across calls by their owner (one per thread).
struct LinAccumulator {
  std::vector<int64_t> start, order, arms;
  std::vector<double> gk, xa, wxt, rw, wr, A, Ai, b, theta, n, work;
};

// A[i][j] += WXT[i][r] * XA[r][j] for j >= i, r ascending: XA holds the arm's m contexts
// (m x d), WXT their weighted transpose (d x m, WXT[i][r] = w_r x_r[i]). In AVX2 where the
// CPU has it, the same bits.
inline void lin_accumulate_upper(double* A, const double* XA, const double* WXT, int64_t m,
                                 int64_t d) {
#ifdef PB_LIN_AVX2
  if (lin_cpu_has_avx2()) {
    lin_accumulate_upper_avx2(A, XA, WXT, m, d);
    return;
  }
#endif
  for (int64_t i = 0; i < d; ++i) {
    for (int64_t j = i; j < d; ++j) {
      double acc = A[i * d + j];
      for (int64_t r = 0; r < m; ++r) acc += WXT[i * m + r] * XA[r * d + j];
      A[i * d + j] = acc;
    }
  }
}

inline bool lin_all_finite(const double* v, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(v[i])) return false;
  }
  return true;
}

// n updates as one batch of sums (see above); weights nullptr means 1 for every row. The
// caller has checked every row; the batch is applied whole or not at all.
inline void lin_accumulate_rows(const LinParams& p, LinState& s, const int64_t* arms,
                                const double* rewards, const double* X, const double* weights,
                                int64_t n, LinAccumulator& acc) {
  if (n <= 0) return;
  const int64_t K = s.n_arms, d = s.dim, dd = d * d;
  const bool decays = p.decay < 1.0;
  // The rows grouped by arm, in row order within an arm (a stable counting sort).
  acc.start.assign(static_cast<size_t>(K + 1), 0);
  for (int64_t i = 0; i < n; ++i) acc.start[static_cast<size_t>(arms[i] + 1)] += 1;
  for (int64_t a = 0; a < K; ++a) acc.start[a + 1] += acc.start[a];
  acc.order.resize(static_cast<size_t>(n));
  {
    std::vector<int64_t> pos(acc.start.begin(), acc.start.end() - 1);
    for (int64_t i = 0; i < n; ++i) acc.order[static_cast<size_t>(pos[arms[i]]++)] = i;
  }
  double gn = 1.0;  // gamma^n
  if (decays) {
    acc.gk.resize(static_cast<size_t>(n));
    acc.gk[n - 1] = 1.0;
    for (int64_t i = n - 2; i >= 0; --i) acc.gk[i] = acc.gk[i + 1] * p.decay;
    gn = acc.gk[0] * p.decay;
  }
  acc.arms.clear();
  for (int64_t a = 0; a < K; ++a) {
    if (decays || acc.start[a + 1] > acc.start[a]) acc.arms.push_back(a);
  }
  const int64_t T = static_cast<int64_t>(acc.arms.size());
  acc.A.resize(static_cast<size_t>(T * dd));
  acc.Ai.resize(static_cast<size_t>(T * dd));
  acc.b.resize(static_cast<size_t>(T * d));
  acc.theta.resize(static_cast<size_t>(T * d));
  acc.n.resize(static_cast<size_t>(T));
  acc.work.resize(static_cast<size_t>(2 * dd));
  for (int64_t t = 0; t < T; ++t) {
    const int64_t a = acc.arms[t];
    double* A = acc.A.data() + t * dd;
    double* b = acc.b.data() + t * d;
    const double* A0 = s.A + a * dd;
    const double* b0 = s.b + a * d;
    if (decays) {
      for (int64_t k = 0; k < dd; ++k) A[k] = gn * A0[k];
      const double shrink = (1.0 - gn) * p.ridge;
      for (int64_t i = 0; i < d; ++i) A[i * d + i] += shrink;
      for (int64_t i = 0; i < d; ++i) b[i] = gn * b0[i];
      acc.n[t] = gn * s.n[a];
    } else {
      for (int64_t k = 0; k < dd; ++k) A[k] = A0[k];
      for (int64_t i = 0; i < d; ++i) b[i] = b0[i];
      acc.n[t] = s.n[a];
    }
    const int64_t lo = acc.start[a], m = acc.start[a + 1] - lo;
    if (m > 0) {
      acc.xa.resize(static_cast<size_t>(m * d));
      acc.wxt.resize(static_cast<size_t>(m * d));
      acc.rw.resize(static_cast<size_t>(m));
      acc.wr.resize(static_cast<size_t>(m));
      double* XA = acc.xa.data();
      double* WXT = acc.wxt.data();
      double na = acc.n[t];
      for (int64_t r = 0; r < m; ++r) {
        const int64_t row = acc.order[lo + r];
        double w = weights ? weights[row] : 1.0;
        if (decays) w *= acc.gk[row];
        const double* x = X + row * d;
        for (int64_t i = 0; i < d; ++i) {
          XA[r * d + i] = x[i];
          WXT[i * m + r] = w * x[i];
        }
        acc.rw[r] = rewards[row];
        acc.wr[r] = w;
        na += w;
      }
      acc.n[t] = na;
      lin_accumulate_upper(A, XA, WXT, m, d);
      // b_i += (w_r x_r[i]) r_r over r ascending, the elements i in the inner loop (they
      // vectorise; one element's sum over the rows was a chain of dependent adds).
      for (int64_t r = 0; r < m; ++r) {
        const double wr = acc.wr[r], rr = acc.rw[r];
        const double* xr = XA + r * d;
        for (int64_t i = 0; i < d; ++i) b[i] += (wr * xr[i]) * rr;
      }
    }
    for (int64_t i = 1; i < d; ++i) {
      for (int64_t j = 0; j < i; ++j) A[i * d + j] = A[j * d + i];
    }
    double* Ai = acc.Ai.data() + t * dd;
    double* th = acc.theta.data() + t * d;
    const bool ok = lin_all_finite(A, dd) && lin_all_finite(b, d) && std::isfinite(acc.n[t]) &&
                    spd_inverse(A, Ai, d, acc.work.data());
    if (ok) symv(Ai, b, th, d);
    if (!ok || !lin_all_finite(Ai, dd) || !lin_all_finite(th, d)) {
      throw std::invalid_argument(
          "update_batch: arm " + std::to_string(a) +
          "'s statistics would not be finite, or its precision matrix not positive definite, "
          "after this batch (a reward, weight or context too large in magnitude); the batch "
          "was refused whole, the policy is unchanged");
    }
  }
  for (int64_t t = 0; t < T; ++t) {  // every arm checked: write them
    const int64_t a = acc.arms[t];
    std::copy(acc.A.begin() + t * dd, acc.A.begin() + (t + 1) * dd, s.A + a * dd);
    std::copy(acc.Ai.begin() + t * dd, acc.Ai.begin() + (t + 1) * dd, s.A_inv + a * dd);
    std::copy(acc.b.begin() + t * d, acc.b.begin() + (t + 1) * d, s.b + a * d);
    std::copy(acc.theta.begin() + t * d, acc.theta.begin() + (t + 1) * d, s.theta + a * d);
    s.n[a] = acc.n[t];
    s.since_refresh[a] = 0;
  }
  s.counters[kCtrUpdates] += n;
}

// One decision for context x with the next decision number.
inline std::pair<int64_t, double> lin_select(const LinParams& p, LinState& s, const uint8_t* mask,
                                             const double* bias, const double* x, LinScratch& w) {
  const uint64_t t = static_cast<uint64_t>(s.counters[kCtrDecisions]);
  int64_t arm;
  double prop;
  lin_choose_rows(p, s, mask, bias, x, 0, 1, t, &arm, &prop, w);
  s.counters[kCtrDecisions] = static_cast<int64_t>(t + 1);
  return {arm, prop};
}

// n decisions, bit for bit the same as n calls of lin_select: every row is a pure
// function of (state, decision number, its context), so the rows split over threads
// (each with its own scratch) in any way give the same arms and propensities.
inline void lin_select_batch(const LinParams& p, LinState& s, const uint8_t* masks,
                             const double* biases, const double* X, int64_t n, int n_threads,
                             int64_t* arms, double* props) {
  const uint64_t t0 = static_cast<uint64_t>(s.counters[kCtrDecisions]);
  std::vector<LinWorkspace> ws(static_cast<size_t>(resolve_threads(n_threads)));
  parallel_for(n, n_threads, 2 * kRowsPerThread, [&](int64_t lo, int64_t hi, int worker) {
    LinScratch w = ws[static_cast<size_t>(worker)].reset(s.n_arms, s.dim);
    lin_choose_rows(p, s, masks, biases, X, lo, hi, t0, arms, props, w);
  });
  s.counters[kCtrDecisions] = static_cast<int64_t>(t0 + static_cast<uint64_t>(n));
}

// (n, K) action distributions into out: row i on the evaluation stream i, so any
// split of the rows over threads gives the same numbers.
inline void lin_action_probabilities_rows(const LinParams& p, const LinState& s,
                                          const uint8_t* masks, const double* biases,
                                          const double* X, int64_t n, int64_t draws,
                                          int n_threads, double* out) {
  const int64_t K = s.n_arms, d = s.dim;
  std::vector<LinWorkspace> ws(static_cast<size_t>(resolve_threads(n_threads)));
  parallel_for(n, n_threads, 2 * kRowsPerThread, [&](int64_t lo, int64_t hi, int worker) {
    LinScratch w = ws[static_cast<size_t>(worker)].reset(K, d);
    for (int64_t i = lo; i < hi; ++i) {
      lin_action_probabilities(p, s, masks ? masks + i * K : nullptr,
                               biases ? biases + i * K : nullptr, X + i * d,
                               static_cast<uint64_t>(i), draws, w, out + i * K);
    }
  });
}

// theta_a . x_i for every row and arm into out (n, K), summed as the decisions' means
// (lin_moments_block: j ascending), so the expectations are the numbers decided on.
inline void lin_expectations(const LinState& s, const double* X, int64_t n, double* out) {
  const int64_t K = s.n_arms, d = s.dim;
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t a = 0; a < K; ++a) {
      const double* th = s.theta + a * d;
      const double* x = X + i * d;
      double m = 0.0;
      for (int64_t j = 0; j < d; ++j) m += th[j] * x[j];
      out[i * K + a] = m;
    }
  }
}

// Exact refresh of every arm (after a merge summed A and b); work holds 2 d^2.
inline void lin_refresh_all(LinState& s, double* work) {
  for (int64_t a = 0; a < s.n_arms; ++a) lin_refresh_arm(s, a, work);
}

}  // namespace promobandit
