// Probes of this machine's real limits, the yardsticks the benchmarks divide by:
//
// - stream_probe: memory bandwidth, STREAM-like, every thread reading (or
//   writing) its own contiguous slice of arrays far larger than the last-level
//   cache, at the same time. "read" sums one array (what top-k scoring at B = 1
//   does with the item matrix); "triad" is STREAM's a = b + s * c with
//   non-temporal stores, counted as STREAM counts it (3 arrays, no
//   write-allocate traffic).
// - fma_probe: the floating-point peak, many independent fused multiply-add
//   chains in registers (no memory traffic), on every thread at once.
// - clock_probe: the core clock under load, a chain of dependent integer adds
//   (one cycle each on every x86 core since the Pentium Pro), so the FMA peak can
//   be read as cores x clock x lanes x 2 x FMA units per cycle.
//
// Threads are started once per probe and meet at a barrier before and after
// each repetition; the calling thread times the span between the barriers, so
// a repetition is timed with every thread working and no thread start inside.
// Each thread first touches its own slice, so pages live where they are read.
// Not a decision path: results are timings, and the checksums only prove the
// work was done.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "promobandit/parallel.hpp"

#if defined(__x86_64__) || defined(_M_X64)
#define PROMOBANDIT_PROBE_X86 1
#include <immintrin.h>
#else
#define PROMOBANDIT_PROBE_X86 0
#endif

namespace promobandit {

enum class ProbeIsa : int { Auto = 0, Scalar = 1, Avx2 = 2, Avx512 = 3 };

inline bool probe_isa_supported(ProbeIsa isa) {
  switch (isa) {
    case ProbeIsa::Auto:
    case ProbeIsa::Scalar:
      return true;
#if PROMOBANDIT_PROBE_X86 && (defined(__GNUC__) || defined(__clang__))
    case ProbeIsa::Avx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case ProbeIsa::Avx512:
      return __builtin_cpu_supports("avx512f") && probe_isa_supported(ProbeIsa::Avx2);
#endif
    default:
      return false;
  }
}

inline ProbeIsa probe_best_isa() {
  if (probe_isa_supported(ProbeIsa::Avx512)) return ProbeIsa::Avx512;
  if (probe_isa_supported(ProbeIsa::Avx2)) return ProbeIsa::Avx2;
  return ProbeIsa::Scalar;
}

inline const char* probe_isa_name(ProbeIsa isa) {
  switch (isa) {
    case ProbeIsa::Scalar: return "scalar";
    case ProbeIsa::Avx2: return "avx2";
    case ProbeIsa::Avx512: return "avx512";
    default: return "auto";
  }
}

// float32 lanes in one register of `isa` (the portable code is counted as its
// 8 independent scalar chains, so "lanes" there means chains, not SIMD).
inline int probe_lanes(ProbeIsa isa) {
  switch (isa) {
    case ProbeIsa::Avx512: return 16;
    case ProbeIsa::Avx2: return 8;
    default: return 1;
  }
}

namespace probe_detail {

// A reusable barrier for a fixed number of threads (C++17 has no std::barrier).
// Waiters yield the core (sched_yield) rather than spin hot, so on a shared machine
// a waiting prober gives its core to the one still working. Atomics, not a
// condition variable: std::condition_variable::wait needs GLIBCXX_3.4.30 (GCC 12's
// libstdc++), which would lift the wheel above manylinux_2_34.
class Barrier {
 public:
  explicit Barrier(int n) : n_(n) {}
  void wait() {
    const uint64_t gen = gen_.load(std::memory_order_acquire);
    if (count_.fetch_add(1, std::memory_order_acq_rel) + 1 == n_) {
      count_.store(0, std::memory_order_relaxed);
      gen_.fetch_add(1, std::memory_order_release);
    } else {
      while (gen_.load(std::memory_order_acquire) == gen) std::this_thread::yield();
    }
  }

 private:
  const int n_;
  std::atomic<int> count_{0};
  std::atomic<uint64_t> gen_{0};
};

// Runs body(worker, rep) on `threads` threads for `reps` repetitions; returns the
// seconds of each repetition as seen by worker 0 between two barriers. setup(worker)
// runs once per thread before the first repetition (first touch of its slice).
// The first worker exception is rethrown after every thread has joined.
template <class Setup, class Body>
std::vector<double> timed_reps(int threads, int reps, Setup&& setup, Body&& body) {
  Barrier bar(threads);
  std::vector<double> secs(static_cast<size_t>(reps), 0.0);
  std::exception_ptr first;
  std::mutex mu;
  auto run = [&](int w) {
    // Every thread passes every barrier even after an exception, so none waits forever.
    bool failed = false;
    auto guarded = [&](auto&& f) {
      if (failed) return;
      try {
        f();
      } catch (...) {
        failed = true;
        std::lock_guard<std::mutex> g(mu);
        if (!first) first = std::current_exception();
      }
    };
    guarded([&] { setup(w); });
    for (int r = 0; r < reps; ++r) {
      bar.wait();
      const auto t0 = std::chrono::steady_clock::now();
      guarded([&] { body(w, r); });
      bar.wait();
      if (w == 0) {
        secs[static_cast<size_t>(r)] =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      }
    }
  };
  std::vector<std::thread> workers;
  workers.reserve(static_cast<size_t>(threads - 1));
  for (int w = 1; w < threads; ++w) workers.emplace_back(run, w);
  run(0);
  for (auto& t : workers) t.join();
  if (first) std::rethrow_exception(first);
  return secs;
}

// 64-byte aligned float buffer, not initialised (each thread touches its slice).
struct AlignedFloats {
  float* p = nullptr;
  explicit AlignedFloats(int64_t n) {
    const size_t bytes = (static_cast<size_t>(n) * sizeof(float) + 63) / 64 * 64;
    p = static_cast<float*>(std::aligned_alloc(64, bytes));
    if (p == nullptr) throw std::bad_alloc();
  }
  ~AlignedFloats() { std::free(p); }
  AlignedFloats(const AlignedFloats&) = delete;
  AlignedFloats& operator=(const AlignedFloats&) = delete;
};

// Portable kernels: 8 independent accumulators so the adds are not one chain.
inline double read_scalar(const float* a, int64_t n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) acc[j] += a[i + j];
  double s = 0;
  for (int j = 0; j < 8; ++j) s += acc[j];
  for (; i < n; ++i) s += a[i];
  return s;
}

inline void triad_scalar(float* a, const float* b, const float* c, float s, int64_t n) {
  for (int64_t i = 0; i < n; ++i) a[i] = b[i] + s * c[i];
}

// 8 chains of x = x * m + add, `iters` times: 16 flops per iteration.
inline double fma_scalar(int64_t iters, float m, float add) {
  float x[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  for (int64_t i = 0; i < iters; ++i)
    for (int j = 0; j < 8; ++j) x[j] = x[j] * m + add;
  double s = 0;
  for (int j = 0; j < 8; ++j) s += x[j];
  return s;
}
constexpr int kFmaChainsScalar = 8;

}  // namespace probe_detail
}  // namespace promobandit

#if PROMOBANDIT_PROBE_X86

// Twelve independent FMA chains x[o] .. x[o + 11], written out so that every
// accumulator lives in a register.
#define PB_PROBE_FMA1(f, j) x[j] = f(x[j], vm, va);
#define PB_PROBE_FMA12(f, o)                                                              \
  PB_PROBE_FMA1(f, (o) + 0) PB_PROBE_FMA1(f, (o) + 1) PB_PROBE_FMA1(f, (o) + 2)          \
  PB_PROBE_FMA1(f, (o) + 3) PB_PROBE_FMA1(f, (o) + 4) PB_PROBE_FMA1(f, (o) + 5)          \
  PB_PROBE_FMA1(f, (o) + 6) PB_PROBE_FMA1(f, (o) + 7) PB_PROBE_FMA1(f, (o) + 8)          \
  PB_PROBE_FMA1(f, (o) + 9) PB_PROBE_FMA1(f, (o) + 10) PB_PROBE_FMA1(f, (o) + 11)

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#elif defined(__GNUC__)
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#endif
namespace promobandit {
namespace probe_detail {

// 8 ymm accumulators: 256 bytes in flight per iteration, enough to keep loads queued.
inline double read_avx2(const float* a, int64_t n) {
  __m256 acc[8];
  for (auto& v : acc) v = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 64 <= n; i += 64)
    for (int j = 0; j < 8; ++j) acc[j] = _mm256_add_ps(acc[j], _mm256_load_ps(a + i + 8 * j));
  alignas(32) float lanes[8];
  __m256 t = acc[0];
  for (int j = 1; j < 8; ++j) t = _mm256_add_ps(t, acc[j]);
  _mm256_store_ps(lanes, t);
  double s = 0;
  for (float x : lanes) s += x;
  for (; i < n; ++i) s += a[i];
  return s;
}

inline void triad_avx2(float* a, const float* b, const float* c, float s, int64_t n) {
  const __m256 vs = _mm256_set1_ps(s);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_stream_ps(a + i, _mm256_fmadd_ps(vs, _mm256_load_ps(c + i), _mm256_load_ps(b + i)));
  for (; i < n; ++i) a[i] = b[i] + s * c[i];
  _mm_sfence();
}

// 12 independent chains (latency 4-5 cycles x 2 FMA pipes needs >= 10 in flight),
// leaving 4 of the 16 ymm registers for the constants.
constexpr int kFmaChainsAvx2 = 12;
inline double fma_avx2(int64_t iters, float m, float add) {
  const __m256 vm = _mm256_set1_ps(m), va = _mm256_set1_ps(add);
  __m256 x[kFmaChainsAvx2];
  for (int j = 0; j < kFmaChainsAvx2; ++j) x[j] = _mm256_set1_ps(1.0f + 0.125f * j);
  for (int64_t i = 0; i < iters; ++i) {
    // Unrolled by hand: a loop over j would keep x in memory (load, fma, store).
    PB_PROBE_FMA12(_mm256_fmadd_ps, 0)
  }
  __m256 t = x[0];
  for (int j = 1; j < kFmaChainsAvx2; ++j) t = _mm256_add_ps(t, x[j]);
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, t);
  double s = 0;
  for (float v : lanes) s += v;
  return s;
}

}  // namespace probe_detail
}  // namespace promobandit
#if defined(__clang__)
#pragma clang attribute pop
#elif defined(__GNUC__)
#pragma GCC pop_options
#endif

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx2,fma"))), apply_to = function)
#elif defined(__GNUC__)
#pragma GCC push_options
#pragma GCC target("avx512f,avx2,fma")
#endif
namespace promobandit {
namespace probe_detail {

inline double read_avx512(const float* a, int64_t n) {
  __m512 acc[8];
  for (auto& v : acc) v = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 128 <= n; i += 128)
    for (int j = 0; j < 8; ++j) acc[j] = _mm512_add_ps(acc[j], _mm512_load_ps(a + i + 16 * j));
  __m512 t = acc[0];
  for (int j = 1; j < 8; ++j) t = _mm512_add_ps(t, acc[j]);
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, t);
  double s = 0;
  for (float x : lanes) s += x;
  for (; i < n; ++i) s += a[i];
  return s;
}

inline void triad_avx512(float* a, const float* b, const float* c, float s, int64_t n) {
  const __m512 vs = _mm512_set1_ps(s);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_stream_ps(a + i, _mm512_fmadd_ps(vs, _mm512_load_ps(c + i), _mm512_load_ps(b + i)));
  for (; i < n; ++i) a[i] = b[i] + s * c[i];
  _mm_sfence();
}

// 24 independent chains of the 32 zmm registers (latency 4 x 2 pipes = 8 needed;
// more hides the odd stall).
constexpr int kFmaChainsAvx512 = 24;
inline double fma_avx512(int64_t iters, float m, float add) {
  const __m512 vm = _mm512_set1_ps(m), va = _mm512_set1_ps(add);
  __m512 x[kFmaChainsAvx512];
  for (int j = 0; j < kFmaChainsAvx512; ++j) x[j] = _mm512_set1_ps(1.0f + 0.125f * j);
  for (int64_t i = 0; i < iters; ++i) {
    PB_PROBE_FMA12(_mm512_fmadd_ps, 0)
    PB_PROBE_FMA12(_mm512_fmadd_ps, 12)
  }
  __m512 t = x[0];
  for (int j = 1; j < kFmaChainsAvx512; ++j) t = _mm512_add_ps(t, x[j]);
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, t);
  double s = 0;
  for (float v : lanes) s += v;
  return s;
}

}  // namespace probe_detail
}  // namespace promobandit
#if defined(__clang__)
#pragma clang attribute pop
#elif defined(__GNUC__)
#pragma GCC pop_options
#endif

#undef PB_PROBE_FMA12
#undef PB_PROBE_FMA1
#endif  // PROMOBANDIT_PROBE_X86

namespace promobandit {

struct ProbeResult {
  std::vector<double> seconds;  // one per repetition
  double work_per_rep = 0;      // bytes (stream) or flops (fma) or cycles (clock), all threads
  int threads = 1;
  ProbeIsa isa = ProbeIsa::Scalar;
  double checksum = 0;          // sum over threads of the last repetition's results
};

namespace probe_detail {
inline ProbeIsa resolve_isa(ProbeIsa isa) {
  if (isa == ProbeIsa::Auto) isa = probe_best_isa();
  if (!probe_isa_supported(isa)) {
    throw std::invalid_argument(std::string("isa: this CPU does not support ") +
                                probe_isa_name(isa));
  }
  return isa;
}
inline void check_reps(int reps) {
  if (reps < 1) throw std::invalid_argument("reps: expected >= 1, got " + std::to_string(reps));
}
}  // namespace probe_detail

// Memory bandwidth: kind "read" (sum of one array of n_bytes, every element 1.0f,
// so the checksum is the element count) or "triad" (a = b + 3 c over three arrays of
// n_bytes each, non-temporal stores; checksum: a's first and last element, 7 each,
// b = 1, c = 2). n_bytes is rounded down to whole 64-byte lines per thread.
inline ProbeResult stream_probe(const std::string& kind, int64_t n_bytes, int n_threads, int reps,
                                ProbeIsa isa = ProbeIsa::Auto) {
  using namespace probe_detail;
  if (kind != "read" && kind != "triad") {
    throw std::invalid_argument("kind: expected 'read' or 'triad', got '" + kind + "'");
  }
  check_reps(reps);
  isa = resolve_isa(isa);
  const int t = resolve_threads(n_threads);
  // Each thread's slice is whole 64-byte lines (16 floats), so every load is aligned.
  const int64_t per = n_bytes / 64 / t * 16;
  if (per < 16) {
    throw std::invalid_argument("n_bytes: expected at least 64 bytes per thread, got " +
                                std::to_string(n_bytes));
  }
  const int64_t n = per * t;
  const bool triad = kind == "triad";
  AlignedFloats a(n);
  std::unique_ptr<AlignedFloats> b, c;
  if (triad) {
    b = std::make_unique<AlignedFloats>(n);
    c = std::make_unique<AlignedFloats>(n);
  }
  std::vector<double> sums(static_cast<size_t>(t), 0.0);
  auto setup = [&](int w) {
    const int64_t lo = w * per;
    std::fill(a.p + lo, a.p + lo + per, 1.0f);
    if (triad) {
      std::fill(b->p + lo, b->p + lo + per, 1.0f);
      std::fill(c->p + lo, c->p + lo + per, 2.0f);
    }
  };
  auto body = [&](int w, int) {
    const int64_t lo = w * per;
    if (!triad) {
#if PROMOBANDIT_PROBE_X86
      if (isa == ProbeIsa::Avx512) sums[w] = read_avx512(a.p + lo, per);
      else if (isa == ProbeIsa::Avx2) sums[w] = read_avx2(a.p + lo, per);
      else
#endif
        sums[w] = read_scalar(a.p + lo, per);
    } else {
#if PROMOBANDIT_PROBE_X86
      if (isa == ProbeIsa::Avx512) triad_avx512(a.p + lo, b->p + lo, c->p + lo, 3.0f, per);
      else if (isa == ProbeIsa::Avx2) triad_avx2(a.p + lo, b->p + lo, c->p + lo, 3.0f, per);
      else
#endif
        triad_scalar(a.p + lo, b->p + lo, c->p + lo, 3.0f, per);
      sums[w] = static_cast<double>(a.p[lo]) + a.p[lo + per - 1];
    }
  };
  ProbeResult r;
  r.seconds = timed_reps(t, reps, setup, body);
  r.work_per_rep = static_cast<double>(n) * sizeof(float) * (triad ? 3 : 1);
  r.threads = t;
  r.isa = isa;
  for (double s : sums) r.checksum += s;
  return r;
}

// FMA throughput: every thread runs `iters` iterations of independent FMA chains
// in registers. Flops counted: iters x chains x lanes x 2 per thread.
inline ProbeResult fma_probe(int64_t iters, int n_threads, int reps, ProbeIsa isa = ProbeIsa::Auto) {
  using namespace probe_detail;
  if (iters < 1) throw std::invalid_argument("iters: expected >= 1, got " + std::to_string(iters));
  check_reps(reps);
  isa = resolve_isa(isa);
  const int t = resolve_threads(n_threads);
  std::vector<double> sums(static_cast<size_t>(t), 0.0);
  // m < 1 and a small addend keep every chain finite and away from subnormals:
  // x converges to add / (1 - m) = 1.
  const float m = 0.999f, add = 0.001f;
  int chains = kFmaChainsScalar;
  auto body = [&](int w, int) {
#if PROMOBANDIT_PROBE_X86
    if (isa == ProbeIsa::Avx512) sums[w] = fma_avx512(iters, m, add);
    else if (isa == ProbeIsa::Avx2) sums[w] = fma_avx2(iters, m, add);
    else
#endif
      sums[w] = fma_scalar(iters, m, add);
  };
#if PROMOBANDIT_PROBE_X86
  if (isa == ProbeIsa::Avx512) chains = kFmaChainsAvx512;
  else if (isa == ProbeIsa::Avx2) chains = kFmaChainsAvx2;
#endif
  ProbeResult r;
  r.seconds = timed_reps(t, reps, [](int) {}, body);
  r.work_per_rep = static_cast<double>(iters) * chains * probe_lanes(isa) * 2.0 * t;
  r.threads = t;
  r.isa = isa;
  for (double s : sums) r.checksum += s;
  return r;
}

// Core clock: `iters` iterations of 8 dependent one-cycle integer adds on one
// thread per core at once (so the clock is the all-core clock). work_per_rep is
// the cycles of one thread (8 x iters); cycles / seconds is the clock in Hz.
// Only on x86 with GCC/Clang (inline assembly); elsewhere work_per_rep is 0.
inline ProbeResult clock_probe(int64_t iters, int n_threads, int reps) {
  using namespace probe_detail;
  if (iters < 1) throw std::invalid_argument("iters: expected >= 1, got " + std::to_string(iters));
  check_reps(reps);
  const int t = resolve_threads(n_threads);
  std::vector<double> sums(static_cast<size_t>(t), 0.0);
  auto body = [&](int w, int) {
    uint64_t x = static_cast<uint64_t>(w);
#if PROMOBANDIT_PROBE_X86 && (defined(__GNUC__) || defined(__clang__))
    for (int64_t i = 0; i < iters; ++i) {
      // Eight adds, each waiting for the one before: 8 cycles per iteration; the
      // loop counter runs beside them on the other ALUs.
      __asm__ volatile(
          "add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\t"
          "add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0"
          : "+r"(x));
    }
#endif
    sums[w] = static_cast<double>(x);
  };
  ProbeResult r;
  r.seconds = timed_reps(t, reps, [](int) {}, body);
#if PROMOBANDIT_PROBE_X86 && (defined(__GNUC__) || defined(__clang__))
  r.work_per_rep = 8.0 * static_cast<double>(iters);
#endif
  r.threads = t;
  r.isa = ProbeIsa::Scalar;
  for (double s : sums) r.checksum += s;
  return r;
}

}  // namespace promobandit
