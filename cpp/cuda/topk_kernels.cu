// CUDA top-k softmax scorer: one kernel path in two launches.
//
// 1. score_chunks: a block takes kUsersPerBlock users and a chunk of kChunk
//    items; each thread scores kChunk / kThreads items for every user of the
//    block (float32, fused multiply-add over k = 0..d-1 in order: the same
//    arithmetic as the C++ batched kernel, so the scores agree bit for bit),
//    then per user the block writes the chunk's log-sum-exp partial (max, and
//    the sum of 2^((s - max) * log2(e) / T) over a fixed reduction tree) and its
//    best min(k, kChunk) candidates, bitonic-sorted by (score desc, id asc).
// 2. merge_chunks: a block per user folds the chunks' sorted candidate lists
//    into a running top-kp (best-of-pairs then a bitonic merge) and the
//    partials into the normaliser, in chunk order, then writes the outputs.
//
// Every reduction has a fixed shape and order, so results are reproducible
// run to run. Ineligible items (mask / exclusions) are out of both the top-k
// and the normaliser.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "topk_cuda.hpp"

namespace promobandit {
namespace cuda {
namespace {

constexpr int kThreads = 256;                      // threads per block, both kernels
constexpr int kUsersPerBlock = 8;                  // users scored together in kernel 1
constexpr int kChunk = 1024;                       // items per block in kernel 1
constexpr int kItemsPerThread = kChunk / kThreads;  // 4
constexpr int64_t kSentinelId = INT64_MAX;
// Same constants as the CPU kernels (topk.hpp): 2^t for t <= 0, clamp, polynomial.
constexpr float kExp2Floor = -124.0f;
__constant__ float kExp2P[6] = {1.0f, 0.6931470036506653f, 0.24022242426872253f,
                                0.055507343262434006f, 0.009671514853835106f,
                                0.0013264600420370698f};

__device__ __forceinline__ float load_item(const float* p, int64_t i) { return p[i]; }
__device__ __forceinline__ float load_item(const __half* p, int64_t i) {
  return __half2float(p[i]);
}
__device__ __forceinline__ float load_item(const __nv_bfloat16* p, int64_t i) {
  return __bfloat162float(p[i]);
}

__device__ __forceinline__ bool better(float s1, int64_t i1, float s2, int64_t i2) {
  return s1 > s2 || (s1 == s2 && i1 < i2);
}

__device__ __forceinline__ float exp2_neg(float t) {
  t = fmaxf(t, kExp2Floor);
  const float n = rintf(t);
  const float f = __fsub_rn(t, n);
  float p = kExp2P[5];
  for (int i = 4; i >= 0; --i) p = __fmaf_rn(p, f, kExp2P[i]);
  return __fmul_rn(p, __int_as_float((static_cast<int>(n) + 127) << 23));
}

__device__ bool excluded(const int64_t* row, int64_t cols, int64_t id) {
  int64_t lo = 0, hi = cols;  // first position with row[pos] >= id
  while (lo < hi) {
    const int64_t mid = (lo + hi) / 2;
    if (row[mid] < id) lo = mid + 1; else hi = mid;
  }
  return lo < cols && row[lo] == id;
}

// Sum or max over the block with a fixed tree; every thread gets the result.
template <class T, bool kMax>
__device__ T block_reduce(T v, T* red) {
  red[threadIdx.x] = v;
  __syncthreads();
  for (int stride = kThreads / 2; stride > 0; stride >>= 1) {
    if (threadIdx.x < stride) {
      const T o = red[threadIdx.x + stride];
      red[threadIdx.x] = kMax ? (o > red[threadIdx.x] ? o : red[threadIdx.x])
                              : red[threadIdx.x] + o;
    }
    __syncthreads();
  }
  const T r = red[0];
  __syncthreads();
  return r;
}

// Sorts n (a power of two) keys best first by (score desc, id asc).
__device__ void bitonic_sort(float* s, int64_t* id, int n) {
  for (int size = 2; size <= n; size <<= 1) {
    for (int stride = size / 2; stride > 0; stride >>= 1) {
      for (int t = threadIdx.x; t < n / 2; t += kThreads) {
        const int pos = 2 * t - (t & (stride - 1));
        const int other = pos + stride;
        const bool best_first = (pos & size) == 0;
        const bool swap = best_first ? better(s[other], id[other], s[pos], id[pos])
                                     : better(s[pos], id[pos], s[other], id[other]);
        if (swap) {
          const float ts = s[pos];
          s[pos] = s[other];
          s[other] = ts;
          const int64_t ti = id[pos];
          id[pos] = id[other];
          id[other] = ti;
        }
      }
      __syncthreads();
    }
  }
}

struct Workspace {
  float* cand_s;    // (n_users, n_chunks, kc)
  int64_t* cand_i;  // (n_users, n_chunks, kc)
  float* part_m;    // (n_users, n_chunks)
  float* part_s;
};

size_t align_up(size_t x) { return (x + 255) / 256 * 256; }

int64_t n_chunks_of(int64_t n_items) { return (n_items + kChunk - 1) / kChunk; }

int64_t kc_of(int64_t k) { return k < kChunk ? k : kChunk; }

Workspace carve(void* base, int64_t n_items, int64_t n_users, int64_t k) {
  const size_t nc = static_cast<size_t>(n_chunks_of(n_items));
  const size_t nu = static_cast<size_t>(n_users);
  const size_t kc = static_cast<size_t>(kc_of(k));
  char* p = static_cast<char*>(base);
  Workspace w;
  w.cand_i = reinterpret_cast<int64_t*>(p);
  p += align_up(nu * nc * kc * sizeof(int64_t));
  w.cand_s = reinterpret_cast<float*>(p);
  p += align_up(nu * nc * kc * sizeof(float));
  w.part_m = reinterpret_cast<float*>(p);
  p += align_up(nu * nc * sizeof(float));
  w.part_s = reinterpret_cast<float*>(p);
  return w;
}

template <class T>
__global__ void __launch_bounds__(kThreads)
score_chunks(const T* __restrict__ items, int64_t n_items, int64_t d,
             const float* __restrict__ users, int64_t n_users,
             const float* __restrict__ bias, const uint8_t* __restrict__ mask,
             bool mask_per_user, const int64_t* __restrict__ excl, int64_t excl_cols,
             bool excl_per_user, float log2e_t, int64_t kc, Workspace w,
             unsigned long long* status) {
  extern __shared__ unsigned char smem_raw[];
  float* u_sh = reinterpret_cast<float*>(smem_raw);                    // (kUsersPerBlock, d)
  float* sc_sh = u_sh + kUsersPerBlock * d;                             // (kUsersPerBlock, kChunk)
  float* red = sc_sh + kUsersPerBlock * kChunk;                         // (kThreads,)
  int64_t* key_i = reinterpret_cast<int64_t*>(red + kThreads);          // (kChunk,)
  float* key_s = reinterpret_cast<float*>(key_i + kChunk);              // (kChunk,)

  const int64_t chunk = blockIdx.x;
  const int64_t n_chunks = gridDim.x;
  const int64_t u0 = static_cast<int64_t>(blockIdx.y) * kUsersPerBlock;
  const int nu = static_cast<int>(n_users - u0 < kUsersPerBlock ? n_users - u0 : kUsersPerBlock);
  const int64_t i_base = chunk * kChunk;

  for (int64_t x = threadIdx.x; x < kUsersPerBlock * d; x += kThreads) {
    const int64_t r = x / d;
    u_sh[x] = r < nu ? users[(u0 + r) * d + x % d] : 0.0f;
  }
  __syncthreads();

  float acc[kItemsPerThread][kUsersPerBlock];
#pragma unroll
  for (int j = 0; j < kItemsPerThread; ++j) {
#pragma unroll
    for (int r = 0; r < kUsersPerBlock; ++r) acc[j][r] = 0.0f;
  }
  for (int64_t kk = 0; kk < d; ++kk) {
    float uk[kUsersPerBlock];
#pragma unroll
    for (int r = 0; r < kUsersPerBlock; ++r) uk[r] = u_sh[r * d + kk];
#pragma unroll
    for (int j = 0; j < kItemsPerThread; ++j) {
      const int64_t i = i_base + threadIdx.x + j * kThreads;
      const float e = i < n_items ? load_item(items, i * d + kk) : 0.0f;
#pragma unroll
      for (int r = 0; r < kUsersPerBlock; ++r) acc[j][r] = __fmaf_rn(e, uk[r], acc[j][r]);
    }
  }
#pragma unroll
  for (int j = 0; j < kItemsPerThread; ++j) {
    const int local = threadIdx.x + j * kThreads;
    const int64_t i = i_base + local;
#pragma unroll
    for (int r = 0; r < kUsersPerBlock; ++r) {
      float s = -INFINITY;
      if (r < nu && i < n_items) {
        const int64_t user = u0 + r;
        s = acc[j][r];
        if (bias != nullptr) s = __fadd_rn(s, bias[i]);
        bool ok = true;
        if (!isfinite(s)) {
          atomicMin(&status[0], static_cast<unsigned long long>(user * n_items + i));
          ok = false;
        }
        if (ok && mask != nullptr && mask[(mask_per_user ? user : 0) * n_items + i] == 0) ok = false;
        if (ok && excl != nullptr &&
            excluded(excl + (excl_per_user ? user : 0) * excl_cols, excl_cols, i)) {
          ok = false;
        }
        if (!ok) s = -INFINITY;
      }
      sc_sh[r * kChunk + local] = s;
    }
  }
  __syncthreads();

  for (int r = 0; r < nu; ++r) {
    const int64_t user = u0 + r;
    const float* row = sc_sh + r * kChunk;
    float m = -INFINITY;
#pragma unroll
    for (int j = 0; j < kItemsPerThread; ++j) m = fmaxf(m, row[threadIdx.x + j * kThreads]);
    m = block_reduce<float, true>(m, red);
    float s = 0.0f;
    if (m > -INFINITY) {
#pragma unroll
      for (int j = 0; j < kItemsPerThread; ++j) {
        const float x = row[threadIdx.x + j * kThreads];
        if (x > -INFINITY) s = __fadd_rn(s, exp2_neg(__fmul_rn(__fsub_rn(x, m), log2e_t)));
      }
    }
    s = block_reduce<float, false>(s, red);
    if (threadIdx.x == 0) {
      w.part_m[user * n_chunks + chunk] = m;
      w.part_s[user * n_chunks + chunk] = s;
    }
    for (int t = threadIdx.x; t < kChunk; t += kThreads) {
      key_s[t] = row[t];
      key_i[t] = row[t] > -INFINITY ? i_base + t : kSentinelId;
    }
    __syncthreads();
    bitonic_sort(key_s, key_i, kChunk);
    float* cs = w.cand_s + (user * n_chunks + chunk) * kc;
    int64_t* ci = w.cand_i + (user * n_chunks + chunk) * kc;
    for (int64_t t = threadIdx.x; t < kc; t += kThreads) {
      cs[t] = key_s[t];
      ci[t] = key_i[t];
    }
    __syncthreads();
  }
}

__global__ void __launch_bounds__(kThreads)
merge_chunks(int64_t n_chunks, int64_t k, int64_t kc, int kp, double temperature, Workspace w,
             int64_t* ids, float* scores, double* probs_topk, double* probs_full,
             double* log_normalizer, unsigned long long* status) {
  extern __shared__ unsigned char smem_raw[];
  int64_t* r_i = reinterpret_cast<int64_t*>(smem_raw);  // (kp,) running best, best first
  int64_t* t_i = r_i + kp;                              // (kp,) incoming chunk list
  double* red = reinterpret_cast<double*>(t_i + kp);    // (kThreads,)
  float* r_s = reinterpret_cast<float*>(red + kThreads);
  float* t_s = r_s + kp;

  const int64_t user = blockIdx.x;
  for (int t = threadIdx.x; t < kp; t += kThreads) {
    r_s[t] = -INFINITY;
    r_i[t] = kSentinelId;
  }
  __syncthreads();
  for (int64_t c = 0; c < n_chunks; ++c) {
    const float* cs = w.cand_s + (user * n_chunks + c) * kc;
    const int64_t* ci = w.cand_i + (user * n_chunks + c) * kc;
    for (int t = threadIdx.x; t < kp; t += kThreads) {
      t_s[t] = t < kc ? cs[t] : -INFINITY;
      t_i[t] = t < kc ? ci[t] : kSentinelId;
    }
    __syncthreads();
    // The best kp of two best-first lists: pairwise best of R[j] and T[kp-1-j]
    // is bitonic and holds exactly them; a half-cleaner cascade sorts it.
    for (int t = threadIdx.x; t < kp; t += kThreads) {
      const int o = kp - 1 - t;
      if (better(t_s[o], t_i[o], r_s[t], r_i[t])) {
        r_s[t] = t_s[o];
        r_i[t] = t_i[o];
      }
    }
    __syncthreads();
    for (int stride = kp / 2; stride > 0; stride >>= 1) {
      for (int t = threadIdx.x; t < kp / 2; t += kThreads) {
        const int pos = 2 * t - (t & (stride - 1));
        const int other = pos + stride;
        if (better(r_s[other], r_i[other], r_s[pos], r_i[pos])) {
          const float ts = r_s[pos];
          r_s[pos] = r_s[other];
          r_s[other] = ts;
          const int64_t ti = r_i[pos];
          r_i[pos] = r_i[other];
          r_i[other] = ti;
        }
      }
      __syncthreads();
    }
  }
  const double inv_t = 1.0 / temperature;
  // Normaliser: chunk partials merged in chunk order (as RowLse::merge on the CPU).
  __shared__ double lse[2];
  if (threadIdx.x == 0) {
    double big_m = -INFINITY, big_s = 0.0;
    for (int64_t c = 0; c < n_chunks; ++c) {
      const double m = w.part_m[user * n_chunks + c];
      const double s = w.part_s[user * n_chunks + c];
      if (!(s > 0.0)) continue;
      if (!(big_s > 0.0)) {
        big_m = m;
        big_s = s;
      } else if (m > big_m) {
        big_s = big_s * exp((big_m - m) * inv_t) + s;
        big_m = m;
      } else {
        big_s += s * exp((m - big_m) * inv_t);
      }
    }
    lse[0] = big_m;
    lse[1] = big_s;
    if (r_i[k - 1] == kSentinelId || !(big_s > 0.0)) {
      atomicMin(&status[1], static_cast<unsigned long long>(user));
    }
  }
  __syncthreads();
  const double big_m = lse[0];
  const double log_s = log(lse[1]);
  const double top = r_s[0];
  double part = 0.0;
  for (int64_t j = threadIdx.x; j < k; j += kThreads) part += exp((r_s[j] - top) * inv_t);
  const double sum_k = block_reduce<double, false>(part, red);
  for (int64_t j = threadIdx.x; j < k; j += kThreads) {
    const double s = r_s[j];
    ids[user * k + j] = r_i[j];
    scores[user * k + j] = r_s[j];
    probs_topk[user * k + j] = exp((s - top) * inv_t) / sum_k;
    probs_full[user * k + j] = exp((s - big_m) * inv_t - log_s);
  }
  if (threadIdx.x == 0) log_normalizer[user] = big_m * inv_t + log_s;
}

template <class T>
const char* launch_scores(const TopkArgs& a, const Workspace& w, cudaStream_t stream) {
  const size_t smem = sizeof(float) * (kUsersPerBlock * a.dim + kUsersPerBlock * kChunk + kThreads) +
                      (sizeof(int64_t) + sizeof(float)) * kChunk;
  cudaError_t err = cudaFuncSetAttribute(score_chunks<T>,
                                         cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         static_cast<int>(smem));
  if (err != cudaSuccess) return cudaGetErrorString(err);
  const dim3 grid(static_cast<unsigned>(n_chunks_of(a.n_items)),
                  static_cast<unsigned>((a.n_users + kUsersPerBlock - 1) / kUsersPerBlock));
  const float log2e_t = static_cast<float>(1.4426950408889634 / a.temperature);
  score_chunks<T><<<grid, kThreads, smem, stream>>>(
      static_cast<const T*>(a.items), a.n_items, a.dim, a.users, a.n_users, a.bias, a.mask,
      a.mask_per_user, a.excl, a.excl_cols, a.excl_per_user, log2e_t, kc_of(a.k), w, a.status);
  err = cudaGetLastError();
  return err == cudaSuccess ? nullptr : cudaGetErrorString(err);
}

}  // namespace

size_t topk_workspace_bytes(int64_t n_items, int64_t n_users, int64_t k) {
  const size_t nc = static_cast<size_t>(n_chunks_of(n_items));
  const size_t nu = static_cast<size_t>(n_users);
  const size_t kc = static_cast<size_t>(kc_of(k));
  return align_up(nu * nc * kc * sizeof(int64_t)) + align_up(nu * nc * kc * sizeof(float)) +
         2 * align_up(nu * nc * sizeof(float));
}

int device_count() {
  int n = 0;
  const cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) {
    cudaGetLastError();  // no device or no driver: clear the sticky-free error, report none
    return 0;
  }
  return n;
}

const char* topk_launch(const TopkArgs& a, int device, void* stream_handle) {
  if (a.k < 1 || a.k > kMaxK || a.k > a.n_items) return "k out of range for the cuda backend";
  if (a.workspace_bytes < topk_workspace_bytes(a.n_items, a.n_users, a.k)) {
    return "workspace too small";
  }
  if ((a.n_users + kUsersPerBlock - 1) / kUsersPerBlock > 65535) {
    return "too many users in one call (at most 524280)";
  }
  cudaError_t err = cudaSetDevice(device);
  if (err != cudaSuccess) return cudaGetErrorString(err);
  cudaStream_t stream = static_cast<cudaStream_t>(stream_handle);
  const Workspace w = carve(a.workspace, a.n_items, a.n_users, a.k);
  const char* why = nullptr;
  switch (a.item_type) {
    case 1: why = launch_scores<__half>(a, w, stream); break;
    case 2: why = launch_scores<__nv_bfloat16>(a, w, stream); break;
    default: why = launch_scores<float>(a, w, stream); break;
  }
  if (why != nullptr) return why;
  int kp = 1;
  while (kp < a.k) kp <<= 1;
  const size_t smem = (sizeof(int64_t) + sizeof(float)) * 2 * static_cast<size_t>(kp) +
                      sizeof(double) * kThreads;
  err = cudaFuncSetAttribute(merge_chunks, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             static_cast<int>(smem));
  if (err != cudaSuccess) return cudaGetErrorString(err);
  merge_chunks<<<static_cast<unsigned>(a.n_users), kThreads, smem, stream>>>(
      n_chunks_of(a.n_items), a.k, kc_of(a.k), kp, a.temperature, w, a.ids, a.scores,
      a.probs_topk, a.probs_full, a.log_normalizer, a.status);
  err = cudaGetLastError();
  return err == cudaSuccess ? nullptr : cudaGetErrorString(err);
}

}  // namespace cuda
}  // namespace promobandit
