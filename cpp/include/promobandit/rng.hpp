// Counter-based random numbers: Philox4x32-10 (Salmon et al., SC'11) and the
// draws built on it. Written once here and once in python/promobandit/_numba/rng.py;
// both must produce bit-identical streams, so every formula below is mirrored
// operation for operation there (no FMA contraction, same libm calls).
#pragma once

#include <cmath>
#include <cstdint>

#include "promobandit/ziggurat_tables.hpp"

namespace promobandit {

namespace philox_detail {
constexpr uint32_t M0 = 0xD2511F53u;
constexpr uint32_t M1 = 0xCD9E8D57u;
constexpr uint32_t W0 = 0x9E3779B9u;
constexpr uint32_t W1 = 0xBB67AE85u;
}  // namespace philox_detail

// One Philox4x32-10 block: 4 counter words and 2 key words in, 4 words out.
inline void philox4x32_10(const uint32_t ctr_in[4], const uint32_t key_in[2], uint32_t out[4]) {
  using namespace philox_detail;
  uint32_t c0 = ctr_in[0], c1 = ctr_in[1], c2 = ctr_in[2], c3 = ctr_in[3];
  uint32_t k0 = key_in[0], k1 = key_in[1];
  for (int r = 0; r < 10; ++r) {
    const uint64_t p0 = static_cast<uint64_t>(M0) * c0;
    const uint64_t p1 = static_cast<uint64_t>(M1) * c2;
    const uint32_t n0 = static_cast<uint32_t>(p1 >> 32) ^ c1 ^ k0;
    const uint32_t n1 = static_cast<uint32_t>(p1);
    const uint32_t n2 = static_cast<uint32_t>(p0 >> 32) ^ c3 ^ k1;
    const uint32_t n3 = static_cast<uint32_t>(p0);
    c0 = n0; c1 = n1; c2 = n2; c3 = n3;
    k0 += W0;
    k1 += W1;
  }
  out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

// Two consecutive blocks (counter[0] = c and c + 1) at once: the two dependency
// chains interleave, which nearly halves the cost per word on out-of-order CPUs.
inline void philox4x32_10_x2(const uint32_t ctr_in[4], const uint32_t key_in[2], uint32_t out[8]) {
  using namespace philox_detail;
  uint32_t a0 = ctr_in[0], a1 = ctr_in[1], a2 = ctr_in[2], a3 = ctr_in[3];
  uint32_t b0 = ctr_in[0] + 1u, b1 = ctr_in[1], b2 = ctr_in[2], b3 = ctr_in[3];
  uint32_t k0 = key_in[0], k1 = key_in[1];
  for (int r = 0; r < 10; ++r) {
    const uint64_t pa0 = static_cast<uint64_t>(M0) * a0, pa1 = static_cast<uint64_t>(M1) * a2;
    const uint64_t pb0 = static_cast<uint64_t>(M0) * b0, pb1 = static_cast<uint64_t>(M1) * b2;
    const uint32_t na0 = static_cast<uint32_t>(pa1 >> 32) ^ a1 ^ k0, na2 = static_cast<uint32_t>(pa0 >> 32) ^ a3 ^ k1;
    const uint32_t nb0 = static_cast<uint32_t>(pb1 >> 32) ^ b1 ^ k0, nb2 = static_cast<uint32_t>(pb0 >> 32) ^ b3 ^ k1;
    a1 = static_cast<uint32_t>(pa1); a3 = static_cast<uint32_t>(pa0); a0 = na0; a2 = na2;
    b1 = static_cast<uint32_t>(pb1); b3 = static_cast<uint32_t>(pb0); b0 = nb0; b2 = nb2;
    k0 += W0;
    k1 += W1;
  }
  out[0] = a0; out[1] = a1; out[2] = a2; out[3] = a3;
  out[4] = b0; out[5] = b1; out[6] = b2; out[7] = b3;
}

// Purposes keep the draws of one decision apart from the draws that estimate
// its propensity, so turning propensities on or off never changes a decision.
enum : uint32_t {
  kPurposeDecision = 0,
  kPurposePropensity = 1,
  kPurposeUser = 2,
  kPurposeEvaluation = 3,  // action distributions for off-policy evaluation
  kPurposeTie = 4,         // breaking exact ties of a decision's argmax
};

// A stream of draws addressed by (seed, stream id, purpose). The counter is
// (block, purpose, stream_lo, stream_hi) and the key is (seed_lo, seed_hi), so any
// draw of any stream can be computed without the others: thread count and batch
// boundaries cannot change results.
class Stream {
 public:
  Stream(uint64_t seed, uint64_t stream, uint32_t purpose = kPurposeDecision) {
    key_[0] = static_cast<uint32_t>(seed);
    key_[1] = static_cast<uint32_t>(seed >> 32);
    ctr_[0] = 0;
    ctr_[1] = purpose;
    ctr_[2] = static_cast<uint32_t>(stream);
    ctr_[3] = static_cast<uint32_t>(stream >> 32);
  }

  uint32_t next_u32() {
    if (pos_ == 8) {
      philox4x32_10_x2(ctr_, key_, buf_);
      ctr_[0] += 2;
      pos_ = 0;
    }
    return buf_[pos_++];
  }

  // Uniform on the open interval (0, 1) with 53 random bits.
  double uniform() {
    const uint32_t a = next_u32() >> 5;  // 27 bits
    const uint32_t b = next_u32() >> 6;  // 26 bits
    return (static_cast<double>(a) * 67108864.0 + static_cast<double>(b) + 0.5) *
           (1.0 / 9007199254740992.0);
  }

  // Uniform on (0, 1) with 32 random bits: enough for acceptance tests.
  double uniform32() { return (static_cast<double>(next_u32()) + 0.5) * (1.0 / 4294967296.0); }

  // Standard normal by the ziggurat method (Marsaglia & Tsang 2000): one 32-bit
  // word per draw in ~98.8% of cases, bits 0-6 choosing the layer and bits 7-31 the
  // signed value, so layer and value never share bits.
  double normal() {
    using namespace ziggurat;
    for (;;) {
      const uint32_t w = next_u32();
      const int64_t iz = static_cast<int64_t>(w & 127u);
      const int64_t j = static_cast<int64_t>(static_cast<int32_t>(w)) >> 7;
      const double x = static_cast<double>(j) * wn[iz];
      if ((j < 0 ? -j : j) < kn[iz]) return x;
      if (iz == 0) {  // the tail beyond kTail, by Marsaglia's exponential method
        double xt, y;
        do {
          xt = -std::log(uniform32()) / kTail;
          y = -std::log(uniform32());
        } while (y + y < xt * xt);
        return j > 0 ? kTail + xt : -kTail - xt;
      }
      if (fn[iz] + uniform32() * (fn[iz - 1] - fn[iz]) < std::exp(-0.5 * x * x)) return x;
    }
  }

  // Gamma(shape, scale=1) by Marsaglia & Tsang (2000); shape < 1 by the
  // boost gamma(shape + 1) * U^(1/shape).
  double gamma(double shape) {
    if (shape < 1.0) {
      const double g = gamma(shape + 1.0);
      const double u = uniform();
      return g * std::pow(u, 1.0 / shape);
    }
    const double d = shape - 1.0 / 3.0;
    const double c = 1.0 / std::sqrt(9.0 * d);
    for (;;) {
      double x, v;
      do {
        x = normal();
        v = 1.0 + c * x;
      } while (v <= 0.0);
      v = v * v * v;
      const double u = uniform32();
      const double x2 = x * x;
      if (u < 1.0 - 0.0331 * (x2 * x2)) return d * v;
      if (std::log(u) < 0.5 * x2 + d * (1.0 - v + std::log(v))) return d * v;
    }
  }

  // Beta(a, b) as X / (X + Y) with X ~ Gamma(a), Y ~ Gamma(b).
  double beta(double a, double b) {
    const double x = gamma(a);
    const double y = gamma(b);
    const double s = x + y;
    // Both gammas underflow only for tiny shapes; fall back to the mean.
    if (!(s > 0.0)) return a / (a + b);
    return x / s;
  }

 private:
  uint32_t key_[2];
  uint32_t ctr_[4];
  uint32_t buf_[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int pos_ = 8;
};

// Argmax over values offered in arm order, exact ties broken uniformly at random by
// reservoir sampling: the m-th arm equal to the best so far replaces it when
// uniform32 * m < 1 (one draw from `ties` per tie, none without a tie), so each of m
// tied arms wins with probability 1/m (to 2^-32). A tie-free argmax consumes no draw,
// so decisions without ties are those of a plain argmax. `count` ends as the number
// of arms tied at the maximum (the 1/count is the choice's share among them).
// With first_on_ties the first tied arm stays (the lowest id: MABWiser's rule, which
// promobandit.compat reproduces) and no draw is made.
struct TieArgmax {
  int64_t best = -1;
  double value = 0.0;
  int64_t count = 0;
  bool first_on_ties = false;

  TieArgmax() = default;
  explicit TieArgmax(bool first) : first_on_ties(first) {}

  void offer(int64_t a, double v, Stream& ties) {
    if (best < 0 || v > value) {
      best = a;
      value = v;
      count = 1;
    } else if (v == value) {
      ++count;
      if (!first_on_ties && ties.uniform32() * static_cast<double>(count) < 1.0) best = a;
    }
  }

  // The chosen arm's share among the tied maxima: 1/count, or 1 with first_on_ties.
  double share() const { return first_on_ties ? 1.0 : 1.0 / static_cast<double>(count); }
  // Whether arm a (with value v) gets that share.
  bool shares(int64_t a, double v) const { return first_on_ties ? a == best : v == value; }
};

}  // namespace promobandit
