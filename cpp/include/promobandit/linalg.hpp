// Small dense linear algebra for per-arm models (d up to a few hundred).
// Plain loops in a fixed order: the Numba mirror (_numba/linalg.py) must give
// bit-identical results, which rules out BLAS and reassociation.
#pragma once

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace promobandit {

// In-place lower Cholesky factor of a symmetric positive-definite d x d matrix
// (row-major, lower triangle written, upper triangle zeroed). Returns false if
// the matrix is not numerically positive definite.
inline bool cholesky_lower(double* a, int64_t d) {
  for (int64_t j = 0; j < d; ++j) {
    double s = a[j * d + j];
    for (int64_t k = 0; k < j; ++k) s -= a[j * d + k] * a[j * d + k];
    if (!(s > 0.0)) return false;
    const double ljj = std::sqrt(s);
    a[j * d + j] = ljj;
    for (int64_t i = j + 1; i < d; ++i) {
      double t = a[i * d + j];
      for (int64_t k = 0; k < j; ++k) t -= a[i * d + k] * a[j * d + k];
      a[i * d + j] = t / ljj;
    }
    for (int64_t i = 0; i < j; ++i) a[i * d + j] = 0.0;
  }
  return true;
}

// inv = A^{-1} for SPD A (d x d), via A = L L^T; `work` needs 2*d*d doubles.
inline bool spd_inverse(const double* a, double* inv, int64_t d, double* work) {
  double* l = work;
  double* li = work + d * d;
  for (int64_t i = 0; i < d * d; ++i) l[i] = a[i];
  if (!cholesky_lower(l, d)) return false;
  // li = L^{-1} (lower triangular) by forward substitution:
  //   li[i][c] = (0 - sum_{k=c}^{i-1} l[i][k] li[k][c]) / l[i][i], k ascending.
  // Row by row, so the columns' sums of one row are independent chains side by side
  // (column by column, each element waited on the division of the one above it); every
  // element still takes its own operations in the same order, so the same bits.
  for (int64_t i = 0; i < d * d; ++i) li[i] = 0.0;
  for (int64_t i = 0; i < d; ++i) {
    const double lii = l[i * d + i];
    for (int64_t c = 0; c < i; ++c) {
      double s = 0.0;
      for (int64_t k = c; k < i; ++k) s -= l[i * d + k] * li[k * d + c];
      li[i * d + c] = s / lii;
    }
    li[i * d + i] = 1.0 / lii;
  }
  // inv = L^{-T} L^{-1}: inv[i][j] = sum_{k >= max(i,j)} li[k][i] * li[k][j], k ascending,
  // accumulated with k outermost so the inner loop runs along a row (it vectorises; each
  // element's sum keeps its order), then mirrored.
  for (int64_t i = 0; i < d; ++i) {
    for (int64_t j = 0; j <= i; ++j) inv[i * d + j] = 0.0;
  }
  for (int64_t k = 0; k < d; ++k) {
    const double* lk = li + k * d;
    for (int64_t i = 0; i <= k; ++i) {
      const double lki = lk[i];
      double* row = inv + i * d;
      for (int64_t j = 0; j <= i; ++j) row[j] += lki * lk[j];
    }
  }
  for (int64_t i = 0; i < d; ++i) {
    for (int64_t j = 0; j < i; ++j) inv[j * d + i] = inv[i * d + j];
  }
  return true;
}

// y = M x for a symmetric d x d row-major matrix, computed as y = sum_k x[k] * M[k, :]
// (row axpys): every y[j] accumulates in k order, so the inner loop vectorises
// without reassociation and stays bit-identical to the Numba mirror.
inline void symv(const double* m, const double* x, double* y, int64_t d) {
  for (int64_t j = 0; j < d; ++j) y[j] = 0.0;
  for (int64_t k = 0; k < d; ++k) {
    const double xk = x[k];
    const double* row = m + k * d;
    for (int64_t j = 0; j < d; ++j) y[j] += xk * row[j];
  }
}

// Dot product with four interleaved partial sums in a fixed order (lanes k mod 4,
// combined as (s0 + s1) + (s2 + s3)): shorter dependency chains, same bits everywhere.
inline double dot(const double* a, const double* b, int64_t d) {
  double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
  int64_t k = 0;
  for (; k + 4 <= d; k += 4) {
    s0 += a[k] * b[k];
    s1 += a[k + 1] * b[k + 1];
    s2 += a[k + 2] * b[k + 2];
    s3 += a[k + 3] * b[k + 3];
  }
  for (; k < d; ++k) s0 += a[k] * b[k];
  return (s0 + s1) + (s2 + s3);
}

}  // namespace promobandit
