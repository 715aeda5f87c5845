// Fused top-k softmax scoring: for item embeddings E (N x d) and users U (B x d),
// the k best items per user by score_i = E[i] . u + bias[i] (descending score,
// ties to the lowest id), their scores, their softmax probabilities at
// temperature T among the k, and under the full softmax over all eligible
// items, whose normaliser log sum_i exp(score_i / T) is accumulated in the same
// pass (per item block: max, then sum of exp; blocks merged in a fixed order),
// without ever holding N scores per user.
//
// Eligibility: an item is eligible for a user when its mask byte is nonzero
// (no mask: all items) and it is not in the user's exclusion list. Ineligible
// items are left out of the top-k AND of the normaliser.
//
// Arithmetic: item matrices are float32, IEEE float16 or bfloat16, widened to
// float32; products are accumulated in float32 with fused multiply-add;
// probabilities and the normaliser are float64 (exp of float32 terms, summed
// per block in float32 lanes, merged in float64). Results are bit-identical
// for every thread count and every ISA (AVX-512, AVX2, portable): the work
// split never changes an operation or its order. The streaming kernel
// (B <= kSmallBatch) and the batched kernel sum the d products in different
// orders (16 strided partial sums then a tree, vs one running sum), so the same
// user can get scores that differ in the last bit between a call with at most
// kSmallBatch users and one with more.
//
// Speed: B <= kSmallBatch streams E once at memory bandwidth (threads split the
// item blocks); larger B is blocked like a GEMM (threads split the item blocks too:
// each block is packed once, by its thread, and reused by every user from L2; when
// threads split the users, every thread packed every block). AVX-512 and AVX2 code paths are
// compiled with target attributes and chosen at run time, never -march.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "promobandit/parallel.hpp"
#include "promobandit/topk_simd.hpp"

// Loop unrolling hint for the register-tile loops (fixed trip counts).
#define PROMOBANDIT_PRAGMA(x) _Pragma(#x)
#if defined(__clang__)
#define PROMOBANDIT_UNROLL(n) PROMOBANDIT_PRAGMA(unroll n)
#elif defined(__GNUC__)
#define PROMOBANDIT_UNROLL(n) PROMOBANDIT_PRAGMA(GCC unroll n)
#else
#define PROMOBANDIT_UNROLL(n)
#endif

namespace promobandit {

enum class ItemType : int { F32 = 0, F16 = 1, BF16 = 2 };

// Which instruction set runs the kernels; Auto picks the best one the CPU has.
enum class TopkIsa : int { Auto = 0, Scalar = 1, Avx2 = 2, Avx512 = 3 };

struct TopkArgs {
  const void* items = nullptr;  // (n_items, dim) row-major, of item_type
  ItemType item_type = ItemType::F32;
  int64_t n_items = 0;
  int64_t dim = 0;
  const float* users = nullptr;  // (n_users, dim) row-major
  int64_t n_users = 0;
  int64_t k = 1;                 // 1 <= k <= n_items
  double temperature = 1.0;      // > 0; probabilities use score / temperature
  const float* bias = nullptr;   // (n_items,) added to every score, or null
  const uint8_t* mask = nullptr;  // (n_items,) or (n_users, n_items) bytes, nonzero = eligible
  bool mask_per_user = false;
  // Exclusions in CSR form: row r's excluded ids, sorted ascending and unique, are
  // excl_ids[excl_offsets[r] .. excl_offsets[r + 1]); one shared row unless per user.
  const int64_t* excl_ids = nullptr;
  const int64_t* excl_offsets = nullptr;
  bool excl_per_user = false;
};

struct TopkOutputs {
  int64_t* ids = nullptr;          // (n_users, k)
  float* scores = nullptr;         // (n_users, k), bias included, before / temperature
  double* probs_topk = nullptr;    // (n_users, k), softmax among the k
  double* probs_full = nullptr;    // (n_users, k), softmax over all eligible items
  double* log_normalizer = nullptr;  // (n_users,), log sum over eligible of exp(score / T)
};

// What went wrong, if anything; outputs are only complete when ok().
struct TopkStatus {
  int64_t nonfinite_user = -1;  // first (user, item) whose score is inf or NaN
  int64_t nonfinite_item = -1;
  int64_t short_user = -1;      // first user with fewer than k eligible items
  bool ok() const { return nonfinite_user < 0 && short_user < 0; }
};

namespace topk_detail {

// Items per block of the streaming kernel: a user's score buffer (8 KiB) stays in L1.
constexpr int64_t kStreamBlock = 2048;
#if defined(__GNUC__) || defined(__clang__)
#define PROMOBANDIT_PREFETCH(p) __builtin_prefetch(p)
#else
#define PROMOBANDIT_PREFETCH(p) ((void)0)
#endif

// How far ahead of the row being read the single-user kernel prefetches: about
// DRAM latency x bandwidth per core, so the stream never waits on a miss.
constexpr int64_t kPrefetchBytes = 4096;
// Calls with up to this many users use the streaming kernel (each item row read
// once for all of them, memory bound like B = 1); more users use the GEMM-style
// kernel, whose item packing pays off from about this many users on.
constexpr int64_t kSmallBatch = 4;
// Streaming calls with fewer blocks than this run on one thread (a thread start
// costs about as much as scoring a block).
constexpr int64_t kStreamSerialBlocks = 4;
// Bytes of packed float item block the batched kernel keeps in L2 (a quarter
// of a 1 MiB L2, leaving room for the score buffer and the user rows).
constexpr int64_t kBatchPackBytes = 256 * 1024;
// Batched calls below this many multiply-adds (B * N * d) run on one thread.
constexpr double kBatchParallelMinWork = 4.0 * 1024 * 1024;

// Items per block of the batched kernel for dimension d: a multiple of 64 (every
// panel width), independent of the ISA so results are too.
inline int64_t batch_block(int64_t d) {
  int64_t nb = kBatchPackBytes / (static_cast<int64_t>(sizeof(float)) * std::max<int64_t>(d, 1));
  nb = std::min<int64_t>(std::max<int64_t>(nb, 256), 4096);
  return nb / 64 * 64;
}

// exp2_neg (topk_body.hpp): clamp, and 2^f ~ 1 + f*(P1 + f*(P2 + ...)) on
// |f| <= 1/2, least-squares fitted for relative error (max 1.7e-7 in float).
constexpr float kExp2Floor = -124.0f;
constexpr float kExp2P[6] = {1.0f, 0.6931470036506653f, 0.24022242426872253f,
                             0.055507343262434006f, 0.009671514853835106f,
                             0.0013264600420370698f};

// log2(e) / T in float: block sums use 2^((s - max) * log2(e) / T) = exp((s - max) / T).
inline float log2e_over(double temperature) {
  return static_cast<float>(1.4426950408889634 / temperature);
}

struct F32 {
  using elem = float;
};
struct F16 {
  using elem = uint16_t;
};
struct BF16 {
  using elem = uint16_t;
};

inline int ctz32(uint32_t x) {
#if defined(__GNUC__) || defined(__clang__)
  return __builtin_ctz(x);
#else
  int i = 0;
  while (!(x & 1u)) {
    x >>= 1;
    ++i;
  }
  return i;
#endif
}

struct Cand {
  float s;
  int64_t id;
};

// The total order of results: higher score first, then lower id.
inline bool better(const Cand& a, const Cand& b) {
  return a.s > b.s || (a.s == b.s && a.id < b.id);
}

// The k best candidates offered so far, worst on top.
class Heap {
 public:
  explicit Heap(int64_t k) : k_(k) { c_.reserve(static_cast<size_t>(std::min<int64_t>(k, 4096))); }
  // Scores a new item must beat to enter (-inf until k items are held).
  float threshold() const {
    return static_cast<int64_t>(c_.size()) < k_ ? -std::numeric_limits<float>::infinity()
                                                : c_.front().s;
  }
  void offer(float s, int64_t id) {
    const Cand c{s, id};
    if (static_cast<int64_t>(c_.size()) < k_) {
      c_.push_back(c);
      std::push_heap(c_.begin(), c_.end(), Worse());
    } else if (better(c, c_.front())) {
      replace_worst(c);
    }
  }
  std::vector<Cand>& items() { return c_; }

 private:
  // The heap's order as a type (inlined; a function pointer was called per comparison).
  struct Worse {
    bool operator()(const Cand& a, const Cand& b) const { return better(a, b); }
  };
  // The worst candidate (the top) replaced by c, which is better: one sift-down (half
  // the comparisons of pop_heap then push_heap). Which k candidates are held never
  // depends on the heap's layout: the worst one always leaves.
  void replace_worst(const Cand& c) {
    const size_t n = c_.size();
    size_t i = 0;
    for (;;) {
      const size_t l = 2 * i + 1;
      if (l >= n) break;
      const size_t r = l + 1;
      const size_t w = (r < n && better(c_[l], c_[r])) ? r : l;  // the worse child
      if (!better(c, c_[w])) break;  // c is no better than it: c's place is here
      c_[i] = c_[w];
      i = w;
    }
    c_[i] = c;
  }
  int64_t k_;
  std::vector<Cand> c_;
};

// One item block's share of the normaliser: s = sum exp((score - m) / T).
struct BlockLse {
  float m = -std::numeric_limits<float>::infinity();
  double s = 0.0;
};

// Running normaliser of one user, merged block by block in increasing block order.
struct RowLse {
  float m = -std::numeric_limits<float>::infinity();
  double s = 0.0;
  void merge(const BlockLse& p, double temperature) {
    if (!(p.s > 0.0)) return;
    if (!(s > 0.0)) {
      m = p.m;
      s = p.s;
      return;
    }
    const double inv_t = 1.0 / temperature;
    if (p.m > m) {
      s = s * std::exp((static_cast<double>(m) - static_cast<double>(p.m)) * inv_t) + p.s;
      m = p.m;
    } else {
      s += p.s * std::exp((static_cast<double>(p.m) - static_cast<double>(m)) * inv_t);
    }
  }
};

struct BadPair {
  int64_t user = -1, item = -1;
  void offer(int64_t u, int64_t i) {
    if (user < 0 || u < user || (u == user && i < item)) {
      user = u;
      item = i;
    }
  }
};

struct RowCtx {
  const uint8_t* mask = nullptr;  // this user's (n_items,) mask, or null
  const int64_t* excl = nullptr;  // this user's sorted excluded ids
  int64_t n_excl = 0;
};

inline RowCtx row_ctx(const TopkArgs& a, int64_t user) {
  RowCtx r;
  if (a.mask != nullptr) r.mask = a.mask + (a.mask_per_user ? user * a.n_items : 0);
  if (a.excl_ids != nullptr && a.excl_offsets != nullptr) {
    const int64_t row = a.excl_per_user ? user : 0;
    r.excl = a.excl_ids + a.excl_offsets[row];
    r.n_excl = a.excl_offsets[row + 1] - a.excl_offsets[row];
  }
  return r;
}

// Sum of 16 float lanes in double, in the reduce16 tree order.
inline double tree_sum16(const float* l) {
  double a[8], b[4];
  for (int i = 0; i < 8; ++i) a[i] = static_cast<double>(l[i]) + static_cast<double>(l[i + 8]);
  for (int i = 0; i < 4; ++i) b[i] = a[i] + a[i + 4];
  return (b[0] + b[2]) + (b[1] + b[3]);
}

// Writes row `row` of the outputs from the candidates (any order, >= k of them
// unless the row has fewer than k eligible items: then returns false).
inline bool finalize_row(std::vector<Cand>& c, int64_t k, const RowLse& lse, double temperature,
                         const TopkOutputs& o, int64_t row) {
  if (static_cast<int64_t>(c.size()) < k || !(lse.s > 0.0)) return false;
  std::partial_sort(c.begin(), c.begin() + k, c.end(), better);
  const double inv_t = 1.0 / temperature;
  const double log_s = std::log(lse.s);
  const double top = static_cast<double>(c[0].s);
  int64_t* ids = o.ids + row * k;
  float* scores = o.scores + row * k;
  double* pt = o.probs_topk + row * k;
  double* pf = o.probs_full + row * k;
  double sum_k = 0.0;
  for (int64_t j = 0; j < k; ++j) {
    const double s = static_cast<double>(c[static_cast<size_t>(j)].s);
    ids[j] = c[static_cast<size_t>(j)].id;
    scores[j] = c[static_cast<size_t>(j)].s;
    pt[j] = std::exp((s - top) * inv_t);
    sum_k += pt[j];
    pf[j] = std::exp((s - static_cast<double>(lse.m)) * inv_t - log_s);
  }
  for (int64_t j = 0; j < k; ++j) pt[j] /= sum_k;
  o.log_normalizer[row] = static_cast<double>(lse.m) * inv_t + log_s;
  return true;
}

namespace scalar {
using O = OpsScalar;
#include "promobandit/topk_body.hpp"
}  // namespace scalar

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
namespace avx2 {
using O = OpsAvx2;
#include "promobandit/topk_body.hpp"
}  // namespace avx2
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
namespace avx512 {
using O = OpsAvx512;
#include "promobandit/topk_body.hpp"
}  // namespace avx512
}  // namespace topk_detail
}  // namespace promobandit
#if defined(__clang__)
#pragma clang attribute pop
#elif defined(__GNUC__)
#pragma GCC pop_options
#endif

#endif  // PROMOBANDIT_TOPK_X86

namespace promobandit {

inline bool topk_isa_supported(TopkIsa isa) {
  switch (isa) {
    case TopkIsa::Auto:
    case TopkIsa::Scalar:
      return true;
#if PROMOBANDIT_TOPK_X86 && (defined(__GNUC__) || defined(__clang__))
    case TopkIsa::Avx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
             __builtin_cpu_supports("f16c");
    case TopkIsa::Avx512:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
             topk_isa_supported(TopkIsa::Avx2);
#endif
    default:
      return false;
  }
}

inline TopkIsa topk_best_isa() {
  if (topk_isa_supported(TopkIsa::Avx512)) return TopkIsa::Avx512;
  if (topk_isa_supported(TopkIsa::Avx2)) return TopkIsa::Avx2;
  return TopkIsa::Scalar;
}

inline const char* topk_isa_name(TopkIsa isa) {
  switch (isa) {
    case TopkIsa::Scalar: return "scalar";
    case TopkIsa::Avx2: return "avx2";
    case TopkIsa::Avx512: return "avx512";
    default: return "auto";
  }
}

// Runs the scorer (n_threads <= 0: all hardware threads). Throws
// std::invalid_argument on inconsistent arguments; reports bad data
// (non-finite scores, rows with fewer than k eligible items) in the status.
inline TopkStatus topk_softmax(const TopkArgs& a, const TopkOutputs& o, int n_threads = 0,
                               TopkIsa isa = TopkIsa::Auto) {
  if (a.items == nullptr || a.users == nullptr) throw std::invalid_argument("topk: null input");
  if (o.ids == nullptr || o.scores == nullptr || o.probs_topk == nullptr ||
      o.probs_full == nullptr || o.log_normalizer == nullptr) {
    throw std::invalid_argument("topk: null output");
  }
  if (a.n_items < 1 || a.dim < 1 || a.n_users < 1) {
    throw std::invalid_argument("topk: need at least one item, one dimension and one user");
  }
  if (a.k < 1 || a.k > a.n_items) {
    throw std::invalid_argument("k: expected 1 <= k <= " + std::to_string(a.n_items) + ", got " +
                                std::to_string(a.k));
  }
  const double t = a.temperature;
  if (!(t > 0.0) || !std::isfinite(t) || !std::isfinite(topk_detail::log2e_over(t))) {
    throw std::invalid_argument("temperature: expected a finite number > 0 whose reciprocal is a "
                                "finite float32");
  }
  if (isa == TopkIsa::Auto) isa = topk_best_isa();
  if (!topk_isa_supported(isa)) {
    throw std::invalid_argument(std::string("isa: this CPU does not support ") +
                                topk_isa_name(isa));
  }
#if PROMOBANDIT_TOPK_X86
  if (isa == TopkIsa::Avx512) return topk_detail::avx512::run(a, o, n_threads);
  if (isa == TopkIsa::Avx2) return topk_detail::avx2::run(a, o, n_threads);
#endif
  return topk_detail::scalar::run(a, o, n_threads);
}

}  // namespace promobandit
