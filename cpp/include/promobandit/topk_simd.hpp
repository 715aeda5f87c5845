// Vector primitives for the top-k softmax scorer (topk.hpp), one set per ISA.
//
// Every set implements the same *16-lane virtual vector* `V`: AVX-512 holds it
// in one zmm register, AVX2 in two ymm registers (lanes 0-7, 8-15), the
// portable fallback in a float[16]. Each primitive is one IEEE operation per
// lane (fma is fused, single rounding), and the cross-lane sums (`reduce16`)
// pair lanes in the same tree on every ISA, so the kernels built on these
// primitives give bit-identical results on every ISA; only speed differs.
//
// The AVX2 and AVX-512 sets are compiled with GCC/Clang target attributes
// (pushed around their definitions), never with -march flags, so a wheel
// built for baseline x86-64 carries them and topk.hpp picks one at run time.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__x86_64__) || defined(_M_X64)
#define PROMOBANDIT_TOPK_X86 1
#include <immintrin.h>
#else
#define PROMOBANDIT_TOPK_X86 0
#endif

namespace promobandit {
namespace topk_detail {

// IEEE half -> float, exact (portable path and error reporting; F16C in the fast paths).
inline float half_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1Fu;
  const uint32_t mant = h & 0x3FFu;
  uint32_t bits;
  if (exp == 0) {
    // Zero or subnormal: mant * 2^-24 is exact in float.
    float f = static_cast<float>(mant) * 5.9604644775390625e-08f;
    return sign ? -f : f;
  } else if (exp == 31) {
    bits = sign | 0x7F800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 112u) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

// bfloat16 bits -> float, exact (bfloat16 is the top half of a float).
inline float bf16_to_float(uint16_t b) {
  const uint32_t bits = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

// Index of item L of a reduce16 result inside the stage-1 layout (see reduce16).
constexpr int kReduce16Lane[16] = {0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15};

// ---------------------------------------------------------------------------
// Portable fallback: 16 floats, one IEEE operation per lane.
struct OpsScalar {
  struct V {
    float v[16];
  };
  static constexpr const char* kName = "scalar";
  static constexpr int kMR = 4;  // microkernel rows (users) per register tile
  static constexpr int kNV = 1;  // microkernel vectors (16 items each) per row
  static constexpr bool kHasTranspose16 = false;  // packing falls back to scalar copies

  static V zero() { return set1(0.0f); }
  static V set1(float x) {
    V r;
    for (int i = 0; i < 16; ++i) r.v[i] = x;
    return r;
  }
  static V load(const float* p) {
    V r;
    std::memcpy(r.v, p, sizeof r.v);
    return r;
  }
  static V load_partial(const float* p, int n) {
    V r = zero();
    for (int i = 0; i < n; ++i) r.v[i] = p[i];
    return r;
  }
  static V load_f16(const uint16_t* p) { return load_f16_partial(p, 16); }
  static V load_f16_partial(const uint16_t* p, int n) {
    V r = zero();
    for (int i = 0; i < n; ++i) r.v[i] = half_to_float(p[i]);
    return r;
  }
  static V load_bf16(const uint16_t* p) { return load_bf16_partial(p, 16); }
  static V load_bf16_partial(const uint16_t* p, int n) {
    V r = zero();
    for (int i = 0; i < n; ++i) r.v[i] = bf16_to_float(p[i]);
    return r;
  }
  static float cvt_f16(uint16_t h) { return half_to_float(h); }
  static void store(float* p, V a) { std::memcpy(p, a.v, sizeof a.v); }
  static V add(V a, V b) {
    for (int i = 0; i < 16; ++i) a.v[i] = a.v[i] + b.v[i];
    return a;
  }
  static V sub(V a, V b) {
    for (int i = 0; i < 16; ++i) a.v[i] = a.v[i] - b.v[i];
    return a;
  }
  static V mul(V a, V b) {
    for (int i = 0; i < 16; ++i) a.v[i] = a.v[i] * b.v[i];
    return a;
  }
  // max(a, b) with the x86 maxps rule: a > b ? a : b (b when either is NaN).
  static V max(V a, V b) {
    for (int i = 0; i < 16; ++i) a.v[i] = a.v[i] > b.v[i] ? a.v[i] : b.v[i];
    return a;
  }
  static V fma(V a, V b, V c) {
    for (int i = 0; i < 16; ++i) a.v[i] = std::fma(a.v[i], b.v[i], c.v[i]);
    return a;
  }
  static uint32_t gt_bits(V a, V b) {
    uint32_t m = 0;
    for (int i = 0; i < 16; ++i) m |= static_cast<uint32_t>(a.v[i] > b.v[i]) << i;
    return m;
  }
  static uint32_t nonfinite_bits(V a) {
    uint32_t m = 0;
    for (int i = 0; i < 16; ++i) m |= static_cast<uint32_t>(!std::isfinite(a.v[i])) << i;
    return m;
  }
  static V select(uint32_t bits, V a, V b) {
    for (int i = 0; i < 16; ++i) a.v[i] = ((bits >> i) & 1u) ? a.v[i] : b.v[i];
    return a;
  }
  static V add_masked(V acc, V x, uint32_t bits) {
    for (int i = 0; i < 16; ++i) acc.v[i] = ((bits >> i) & 1u) ? acc.v[i] + x.v[i] : acc.v[i];
    return acc;
  }
  static float hmax(V a) {
    float m = a.v[0];
    for (int i = 1; i < 16; ++i) m = a.v[i] > m ? a.v[i] : m;
    return m;
  }
  // Round to the nearest integer, ties to even (the default rounding mode).
  static V round(V a) {
    for (int i = 0; i < 16; ++i) a.v[i] = std::nearbyint(a.v[i]);
    return a;
  }
  // a * 2^n for integral n with a normal result (exact).
  static V scale2(V a, V n) { return mul(a, pow2i(n)); }
  // 2^n for integral n in [-126, 127], built from the exponent bits.
  static V pow2i(V n) {
    V r;
    for (int i = 0; i < 16; ++i) {
      const uint32_t bits = static_cast<uint32_t>(static_cast<int32_t>(n.v[i]) + 127) << 23;
      std::memcpy(&r.v[i], &bits, sizeof(float));
    }
    return r;
  }
  static uint32_t nonzero_bytes(const uint8_t* p) {
    uint32_t m = 0;
    for (int i = 0; i < 16; ++i) m |= static_cast<uint32_t>(p[i] != 0) << i;
    return m;
  }
  // out[k] lane j = in[j] lane k (unused while kHasTranspose16 is false; kept correct).
  static void transpose16(const V* in, V* out) {
    for (int k = 0; k < 16; ++k) {
      for (int j = 0; j < 16; ++j) out[k].v[j] = in[j].v[k];
    }
  }
  // out lane j = sum of the 16 lanes of acc[j], in the tree
  // ((l0+l8)+(l4+l12)) + ((l2+l10)+(l6+l14)) + (((l1+l9)+(l5+l13)) + ((l3+l11)+(l7+l15))),
  // i.e. a[i]=l[i]+l[i+8], b[i]=a[i]+a[i+4], c[i]=b[i]+b[i+2], c[0]+c[1].
  static V reduce16(const V* acc) {
    V r;
    for (int j = 0; j < 16; ++j) {
      float a[8], b[4], c[2];
      for (int i = 0; i < 8; ++i) a[i] = acc[j].v[i] + acc[j].v[i + 8];
      for (int i = 0; i < 4; ++i) b[i] = a[i] + a[i + 4];
      for (int i = 0; i < 2; ++i) c[i] = b[i] + b[i + 2];
      r.v[j] = c[0] + c[1];
    }
    return r;
  }
};

}  // namespace topk_detail
}  // namespace promobandit

#if PROMOBANDIT_TOPK_X86

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#elif defined(__GNUC__)
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#endif

namespace promobandit {
namespace topk_detail {

// AVX2 + FMA + F16C: the 16-lane vector as two ymm registers.
struct OpsAvx2 {
  struct V {
    __m256 lo, hi;
  };
  static constexpr const char* kName = "avx2";
  static constexpr int kMR = 6;  // 6 x 16 register tile: 12 accumulators of 16 ymm
  static constexpr int kNV = 1;
  static constexpr bool kHasTranspose16 = false;

  static V zero() { return {_mm256_setzero_ps(), _mm256_setzero_ps()}; }
  static V set1(float x) { return {_mm256_set1_ps(x), _mm256_set1_ps(x)}; }
  static V load(const float* p) { return {_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8)}; }
  static __m256i lane_lt(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  static V load_partial(const float* p, int n) {
    return {_mm256_maskload_ps(p, lane_lt(n)), _mm256_maskload_ps(p + 8, lane_lt(n - 8))};
  }
  static V load_f16(const uint16_t* p) {
    return {_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))),
            _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 8)))};
  }
  static V load_f16_partial(const uint16_t* p, int n) {
    alignas(32) uint16_t tmp[16] = {};
    std::memcpy(tmp, p, static_cast<size_t>(n) * sizeof(uint16_t));
    return load_f16(tmp);
  }
  static __m256 bf16x8(const uint16_t* p) {
    const __m256i x = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(x, 16));
  }
  static V load_bf16(const uint16_t* p) { return {bf16x8(p), bf16x8(p + 8)}; }
  static V load_bf16_partial(const uint16_t* p, int n) {
    alignas(32) uint16_t tmp[16] = {};
    std::memcpy(tmp, p, static_cast<size_t>(n) * sizeof(uint16_t));
    return load_bf16(tmp);
  }
  static float cvt_f16(uint16_t h) { return _cvtsh_ss(h); }
  static void store(float* p, V a) {
    _mm256_storeu_ps(p, a.lo);
    _mm256_storeu_ps(p + 8, a.hi);
  }
  static V add(V a, V b) { return {_mm256_add_ps(a.lo, b.lo), _mm256_add_ps(a.hi, b.hi)}; }
  static V sub(V a, V b) { return {_mm256_sub_ps(a.lo, b.lo), _mm256_sub_ps(a.hi, b.hi)}; }
  static V mul(V a, V b) { return {_mm256_mul_ps(a.lo, b.lo), _mm256_mul_ps(a.hi, b.hi)}; }
  static V max(V a, V b) { return {_mm256_max_ps(a.lo, b.lo), _mm256_max_ps(a.hi, b.hi)}; }
  static V fma(V a, V b, V c) {
    return {_mm256_fmadd_ps(a.lo, b.lo, c.lo), _mm256_fmadd_ps(a.hi, b.hi, c.hi)};
  }
  static uint32_t gt_bits(V a, V b) {
    return static_cast<uint32_t>(_mm256_movemask_ps(_mm256_cmp_ps(a.lo, b.lo, _CMP_GT_OQ))) |
           (static_cast<uint32_t>(_mm256_movemask_ps(_mm256_cmp_ps(a.hi, b.hi, _CMP_GT_OQ)))
            << 8);
  }
  static uint32_t nonfinite_bits(V a) {
    // x - x is NaN exactly when x is inf or NaN.
    const __m256 dl = _mm256_sub_ps(a.lo, a.lo), dh = _mm256_sub_ps(a.hi, a.hi);
    return static_cast<uint32_t>(_mm256_movemask_ps(_mm256_cmp_ps(dl, dl, _CMP_UNORD_Q))) |
           (static_cast<uint32_t>(_mm256_movemask_ps(_mm256_cmp_ps(dh, dh, _CMP_UNORD_Q)))
            << 8);
  }
  static __m256 lanes_of(uint32_t bits) {
    const __m256i lane = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    const __m256i b = _mm256_and_si256(_mm256_set1_epi32(static_cast<int>(bits)), lane);
    return _mm256_castsi256_ps(_mm256_cmpeq_epi32(b, lane));
  }
  static V select(uint32_t bits, V a, V b) {
    return {_mm256_blendv_ps(b.lo, a.lo, lanes_of(bits)),
            _mm256_blendv_ps(b.hi, a.hi, lanes_of(bits >> 8))};
  }
  // acc + (x where bit set, else +0): equal to a masked add since acc is never -0.
  static V add_masked(V acc, V x, uint32_t bits) {
    return {_mm256_add_ps(acc.lo, _mm256_and_ps(x.lo, lanes_of(bits))),
            _mm256_add_ps(acc.hi, _mm256_and_ps(x.hi, lanes_of(bits >> 8)))};
  }
  static float hmax(V a) {
    alignas(32) float t[16];
    store(t, a);
    float m = t[0];
    for (int i = 1; i < 16; ++i) m = t[i] > m ? t[i] : m;
    return m;
  }
  static V round(V a) {
    constexpr int kMode = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
    return {_mm256_round_ps(a.lo, kMode), _mm256_round_ps(a.hi, kMode)};
  }
  static V scale2(V a, V n) { return mul(a, pow2i(n)); }
  static V pow2i(V n) {
    const __m256i b = _mm256_set1_epi32(127);
    return {_mm256_castsi256_ps(
                _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n.lo), b), 23)),
            _mm256_castsi256_ps(
                _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n.hi), b), 23))};
  }
  static uint32_t nonzero_bytes(const uint8_t* p) {
    const __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    const int eq = _mm_movemask_epi8(_mm_cmpeq_epi8(x, _mm_setzero_si128()));
    return static_cast<uint32_t>(~eq) & 0xFFFFu;
  }
  // out[k] lane j = in[j] lane k (unused while kHasTranspose16 is false; kept correct).
  static void transpose16(const V* in, V* out) {
    alignas(32) float t[16][16];
    for (int j = 0; j < 16; ++j) store(t[j], in[j]);
    alignas(32) float o[16];
    for (int k = 0; k < 16; ++k) {
      for (int j = 0; j < 16; ++j) o[j] = t[j][k];
      out[k] = load(o);
    }
  }
  // Same pairing as OpsScalar::reduce16 (see the AVX-512 version for the layout).
  static V reduce16(const V* acc) {
    __m256 c[8][2];
    for (int p = 0; p < 8; ++p) {  // a[i] = l[i] + l[i+8]: item 2p in c[p][0], 2p+1 in c[p][1]
      c[p][0] = _mm256_add_ps(acc[2 * p].lo, acc[2 * p].hi);
      c[p][1] = _mm256_add_ps(acc[2 * p + 1].lo, acc[2 * p + 1].hi);
    }
    __m256 dlo[4], dhi[4];
    for (int q = 0; q < 4; ++q) {  // b[i] = a[i] + a[i+4]: 128-bit blocks [item, item+1 | ...]
      const __m256* P = c[2 * q];
      const __m256* Q = c[2 * q + 1];
      dlo[q] = _mm256_add_ps(_mm256_permute2f128_ps(P[0], P[1], 0x20),
                             _mm256_permute2f128_ps(P[0], P[1], 0x31));
      dhi[q] = _mm256_add_ps(_mm256_permute2f128_ps(Q[0], Q[1], 0x20),
                             _mm256_permute2f128_ps(Q[0], Q[1], 0x31));
    }
    __m256 flo[2], fhi[2];
    for (int s = 0; s < 2; ++s) {  // c[i] = b[i] + b[i+2]
      flo[s] = _mm256_add_ps(_mm256_shuffle_ps(dlo[2 * s], dlo[2 * s + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                             _mm256_shuffle_ps(dlo[2 * s], dlo[2 * s + 1], _MM_SHUFFLE(3, 2, 3, 2)));
      fhi[s] = _mm256_add_ps(_mm256_shuffle_ps(dhi[2 * s], dhi[2 * s + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                             _mm256_shuffle_ps(dhi[2 * s], dhi[2 * s + 1], _MM_SHUFFLE(3, 2, 3, 2)));
    }
    alignas(32) float g[16];  // c[0] + c[1]
    _mm256_store_ps(g, _mm256_add_ps(_mm256_shuffle_ps(flo[0], flo[1], _MM_SHUFFLE(2, 0, 2, 0)),
                                     _mm256_shuffle_ps(flo[0], flo[1], _MM_SHUFFLE(3, 1, 3, 1))));
    _mm256_store_ps(g + 8, _mm256_add_ps(_mm256_shuffle_ps(fhi[0], fhi[1], _MM_SHUFFLE(2, 0, 2, 0)),
                                         _mm256_shuffle_ps(fhi[0], fhi[1], _MM_SHUFFLE(3, 1, 3, 1))));
    alignas(32) float out[16];
    for (int j = 0; j < 16; ++j) out[j] = g[kReduce16Lane[j]];
    return load(out);
  }
};

}  // namespace topk_detail
}  // namespace promobandit

#if defined(__clang__)
#pragma clang attribute pop
#elif defined(__GNUC__)
#pragma GCC pop_options
#endif

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c"))), apply_to = function)
#elif defined(__GNUC__)
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c")
#endif

namespace promobandit {
namespace topk_detail {

// AVX-512 (F, BW, DQ, VL): the 16-lane vector in one zmm register.
struct OpsAvx512 {
  struct V {
    __m512 v;
  };
  static constexpr const char* kName = "avx512";
  static constexpr int kMR = 14;  // 14 x 32 register tile: 28 of 32 zmm accumulate
  static constexpr int kNV = 2;
  static constexpr bool kHasTranspose16 = true;

  static V zero() { return {_mm512_setzero_ps()}; }
  static V set1(float x) { return {_mm512_set1_ps(x)}; }
  static V load(const float* p) { return {_mm512_loadu_ps(p)}; }
  static __mmask16 first(int n) {
    return static_cast<__mmask16>(n >= 16 ? 0xFFFFu : ((1u << n) - 1u));
  }
  static V load_partial(const float* p, int n) { return {_mm512_maskz_loadu_ps(first(n), p)}; }
  static V load_f16(const uint16_t* p) {
    return {_mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)))};
  }
  static V load_f16_partial(const uint16_t* p, int n) {
    return {_mm512_cvtph_ps(_mm256_maskz_loadu_epi16(first(n), p))};
  }
  static V bf16(__m256i h) {
    return {_mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16))};
  }
  static V load_bf16(const uint16_t* p) {
    return bf16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  static V load_bf16_partial(const uint16_t* p, int n) {
    return bf16(_mm256_maskz_loadu_epi16(first(n), p));
  }
  static float cvt_f16(uint16_t h) { return _cvtsh_ss(h); }
  static void store(float* p, V a) { _mm512_storeu_ps(p, a.v); }
  static V add(V a, V b) { return {_mm512_add_ps(a.v, b.v)}; }
  static V sub(V a, V b) { return {_mm512_sub_ps(a.v, b.v)}; }
  static V mul(V a, V b) { return {_mm512_mul_ps(a.v, b.v)}; }
  static V max(V a, V b) { return {_mm512_max_ps(a.v, b.v)}; }
  static V fma(V a, V b, V c) { return {_mm512_fmadd_ps(a.v, b.v, c.v)}; }
  static uint32_t gt_bits(V a, V b) { return _mm512_cmp_ps_mask(a.v, b.v, _CMP_GT_OQ); }
  // fpclass 0x99: QNaN | +inf | -inf | SNaN.
  static uint32_t nonfinite_bits(V a) { return _mm512_fpclass_ps_mask(a.v, 0x99); }
  static V select(uint32_t bits, V a, V b) {
    return {_mm512_mask_blend_ps(static_cast<__mmask16>(bits), b.v, a.v)};
  }
  static V add_masked(V acc, V x, uint32_t bits) {
    return {_mm512_mask_add_ps(acc.v, static_cast<__mmask16>(bits), acc.v, x.v)};
  }
  static float hmax(V a) { return _mm512_reduce_max_ps(a.v); }
  static V round(V a) {
    return {_mm512_roundscale_ps(a.v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)};
  }
  // vscalefps: a * 2^floor(n), exact here (n integral, result normal), one instruction.
  static V scale2(V a, V n) { return {_mm512_scalef_ps(a.v, n.v)}; }
  static V pow2i(V n) {
    const __m512i e = _mm512_add_epi32(_mm512_cvtps_epi32(n.v), _mm512_set1_epi32(127));
    return {_mm512_castsi512_ps(_mm512_slli_epi32(e, 23))};
  }
  static uint32_t nonzero_bytes(const uint8_t* p) {
    const __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    return _mm_test_epi8_mask(x, x);
  }
  // out[k] lane j = in[j] lane k (a 16 x 16 transpose; moves only, no arithmetic).
  static void transpose16(const V* in, V* out) {
    __m512 r[16], t[16];
    for (int i = 0; i < 16; ++i) r[i] = in[i].v;
    for (int i = 0; i < 8; ++i) {
      t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
      t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 4; ++i) {
      const __m512d a = _mm512_castps_pd(t[4 * i]), b = _mm512_castps_pd(t[4 * i + 1]);
      const __m512d c = _mm512_castps_pd(t[4 * i + 2]), e = _mm512_castps_pd(t[4 * i + 3]);
      r[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
      r[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
      r[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, e));
      r[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, e));
    }
    for (int i = 0; i < 4; ++i) {
      t[i] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0x88);
      t[i + 4] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0xdd);
      t[i + 8] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0x88);
      t[i + 12] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0xdd);
    }
    for (int i = 0; i < 4; ++i) {
      out[i].v = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
      out[i + 8].v = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xdd);
      out[i + 4].v = _mm512_shuffle_f32x4(t[i + 4], t[i + 12], 0x88);
      out[i + 12].v = _mm512_shuffle_f32x4(t[i + 4], t[i + 12], 0xdd);
    }
  }
  // Transposed tree sum of 16 vectors (see OpsScalar::reduce16 for the pairing).
  static V reduce16(const V* acc) {
    __m512 c[8];
    for (int p = 0; p < 8; ++p) {  // lanes 0-7: a[] of item 2p, lanes 8-15: a[] of item 2p+1
      const __m512 A = acc[2 * p].v, B = acc[2 * p + 1].v;
      c[p] = _mm512_add_ps(_mm512_shuffle_f32x4(A, B, _MM_SHUFFLE(1, 0, 1, 0)),
                           _mm512_shuffle_f32x4(A, B, _MM_SHUFFLE(3, 2, 3, 2)));
    }
    __m512 d[4];
    for (int q = 0; q < 4; ++q) {  // 128-bit block j: b[] of item 4q + j
      const __m512 P = c[2 * q], Q = c[2 * q + 1];
      d[q] = _mm512_add_ps(_mm512_shuffle_f32x4(P, Q, _MM_SHUFFLE(2, 0, 2, 0)),
                           _mm512_shuffle_f32x4(P, Q, _MM_SHUFFLE(3, 1, 3, 1)));
    }
    __m512 f[2];
    for (int s = 0; s < 2; ++s) {  // block j: c[] of items 8s + j, 8s + 4 + j
      f[s] = _mm512_add_ps(_mm512_shuffle_ps(d[2 * s], d[2 * s + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                           _mm512_shuffle_ps(d[2 * s], d[2 * s + 1], _MM_SHUFFLE(3, 2, 3, 2)));
    }
    // Block j: items j, 4 + j, 8 + j, 12 + j; permute into item order.
    const __m512 g = _mm512_add_ps(_mm512_shuffle_ps(f[0], f[1], _MM_SHUFFLE(2, 0, 2, 0)),
                                   _mm512_shuffle_ps(f[0], f[1], _MM_SHUFFLE(3, 1, 3, 1)));
    const __m512i idx = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    return {_mm512_permutexvar_ps(idx, g)};
  }
};

}  // namespace topk_detail
}  // namespace promobandit

#if defined(__clang__)
#pragma clang attribute pop
#elif defined(__GNUC__)
#pragma GCC pop_options
#endif

#endif  // PROMOBANDIT_TOPK_X86
